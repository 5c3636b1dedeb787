import FoundationEssentials
import KVFile
import KVFileText

/// How pairs are written and read by dump, load and get --all (kvfile(1), FORMATS):
///
/// - ndjson: one object per line, `{"key":"…","value":"…"}`; a key or value
///   that is not valid UTF-8 is written as `"key_base64"` / `"value_base64"`
///   (standard base64) instead.
/// - json: one object, keys sorted, indented by 4 like the KeyValueStore
///   service's `GET /all`; a value that is not UTF-8 becomes
///   `{"base64": "…"}`. Keys must be UTF-8 (use ndjson otherwise).
/// - text: `key<TAB>value` per line for people, with `\t`, `\n`, `\\` and
///   other control or non-UTF-8 bytes escaped as `\xNN`.
enum PairFormat: String, CaseIterable {
    case text, json, ndjson
}

enum PairWriter {
    static func ndjsonLine(_ key: [UInt8], _ value: [UInt8], expiresAt: UInt64 = 0) -> String {
        PairJSON.ndjsonLine(key, value, expiresAt: expiresAt)
    }

    static func textLine(_ key: [UInt8], _ value: [UInt8]) -> String {
        escaped(key) + "\t" + escaped(value) + "\n"
    }

    static func escaped(_ bytes: [UInt8]) -> String {
        let text = String(validating: bytes, as: UTF8.self)
        guard let text else { return bytes.map(hexEscape).joined() }
        var out = ""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\\": out += "\\\\"
            case "\t": out += "\\t"
            case "\n": out += "\\n"
            case _ where scalar.value < 0x20 || scalar.value == 0x7F: out += hexEscape(UInt8(scalar.value))
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    private static func hexEscape(_ byte: UInt8) -> String {
        switch byte {
        case UInt8(ascii: "\\"): return "\\\\"
        case UInt8(ascii: "\t"): return "\\t"
        case UInt8(ascii: "\n"): return "\\n"
        default: break
        }
        if byte >= 0x20 && byte < 0x7F { return String(UnicodeScalar(byte)) }
        let hex = String(byte, radix: 16)
        return "\\x" + (byte < 16 ? "0" : "") + hex
    }

    /// The json form, written to `out` as it goes.
    struct JSONDocument {
        private var writer: PairJSON.ObjectWriter

        init(_ out: OutputBuffer) {
            writer = PairJSON.ObjectWriter { out.write($0) }
        }

        mutating func add(_ key: [UInt8], _ value: [UInt8]) throws {
            do {
                try writer.add(key, value)
            } catch {
                throw CLIError(message: "key \(KeyText.describe(error.key)) is not UTF-8 and cannot be a JSON object key; use --format ndjson", code: .invalidInput)
            }
        }

        func finish() { writer.finish() }
    }
}

/// Parses what dump writes (ndjson lines or a json document).
enum PairReader {
    private struct Line: Decodable {
        var key: String?
        var key_base64: String?
        var value: String?
        var value_base64: String?
        var expires_at: UInt64?
    }

    static func bytes(text: String?, base64: String?, field: String, line: Int) throws -> [UInt8] {
        if let text { return Array(text.utf8) }
        if let base64 {
            guard let data = Data(base64Encoded: base64) else {
                throw CLIError(message: "line \(line): \(field)_base64 is not valid base64", code: .invalidInput)
            }
            return Array(data)
        }
        throw CLIError(message: "line \(line): missing \"\(field)\" (or \"\(field)_base64\")", code: .invalidInput)
    }

    /// One ndjson line → (key, value, expires_at in ms since the epoch or 0).
    static func ndjsonLine(_ line: ArraySlice<UInt8>, number: Int) throws -> ([UInt8], [UInt8], UInt64) {
        let parsed: Line
        do {
            parsed = try JSONDecoder().decode(Line.self, from: Data(line))
        } catch {
            throw CLIError(message: "line \(number): not a JSON object with \"key\" and \"value\" strings and an optional \"expires_at\" (milliseconds since the Unix epoch, a whole number) (\(describe(error)))", code: .invalidInput)
        }
        // Milliseconds: a number below 10^11 (March 1973) is taken for seconds given by mistake.
        if let expiresAt = parsed.expires_at, expiresAt != 0, expiresAt < 100_000_000_000 {
            throw CLIError(message: "line \(number): expires_at \(expiresAt) looks like seconds; it is milliseconds since the Unix epoch (\(expiresAt)000)", code: .invalidInput)
        }
        return (try bytes(text: parsed.key, base64: parsed.key_base64, field: "key", line: number),
                try bytes(text: parsed.value, base64: parsed.value_base64, field: "value", line: number),
                parsed.expires_at ?? 0)
    }

    /// A whole json document → pairs, in document order, keys byte for byte (see ``PairDocumentParser``).
    static func jsonDocument(_ data: [UInt8]) throws -> [([UInt8], [UInt8])] {
        var parser = PairDocumentParser(data)
        do {
            return try parser.parse().map { ($0.key, $0.value) }
        } catch {
            throw CLIError(message: "input is not a JSON object of keys to values (at byte \(error.offset): \(error.message))", code: .invalidInput)
        }
    }

    private static func describe(_ error: Error) -> String {
        switch error {
        case DecodingError.dataCorrupted(let context): return context.debugDescription
        case DecodingError.typeMismatch(_, let context): return context.debugDescription
        case DecodingError.keyNotFound(let key, _): return "missing \(key.stringValue)"
        case DecodingError.valueNotFound(_, let context): return context.debugDescription
        default: return "\(error)"
        }
    }
}
