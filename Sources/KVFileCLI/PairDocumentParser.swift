import FoundationEssentials
import KVFileText

/// Reads the json form of `kvfile dump`: one object whose keys are the
/// store's keys and whose values are strings or `{"base64": "…"}`.
///
/// Keys are kept as the exact UTF-8 bytes the document spells, in document
/// order: a decoder into a `[String: …]` dictionary would merge keys that are
/// the same text in different Unicode forms (NFC "é" and NFD "é" are equal
/// Swift strings) and lose pairs.
struct PairDocumentParser {
    private let bytes: [UInt8]
    private var position = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    struct Failure: Error {
        var offset: Int
        var message: String
    }

    /// The pairs, in document order (a key given twice appears twice; the last one wins when applied).
    mutating func parse() throws(Failure) -> [(key: [UInt8], value: [UInt8])] {
        var pairs: [(key: [UInt8], value: [UInt8])] = []
        skipSpace()
        try expect(UInt8(ascii: "{"), "a JSON object")
        skipSpace()
        if peek() == UInt8(ascii: "}") {
            position += 1
        } else {
            while true {
                skipSpace()
                let key = try string()
                skipSpace()
                try expect(UInt8(ascii: ":"), "':' after a key")
                skipSpace()
                let value = try value(of: key)
                pairs.append((key, value))
                skipSpace()
                if peek() == UInt8(ascii: ",") { position += 1; continue }
                try expect(UInt8(ascii: "}"), "',' or '}'")
                break
            }
        }
        skipSpace()
        if position < bytes.count { throw Failure(offset: position, message: "text after the object") }
        return pairs
    }

    private func peek() -> UInt8? { position < bytes.count ? bytes[position] : nil }

    private mutating func skipSpace() {
        while let byte = peek(), byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 { position += 1 }
    }

    private mutating func expect(_ byte: UInt8, _ what: String) throws(Failure) {
        guard peek() == byte else { throw Failure(offset: position, message: "expected \(what)") }
        position += 1
    }

    /// A value: a string, or an object with one "base64" string member.
    private mutating func value(of key: [UInt8]) throws(Failure) -> [UInt8] {
        if peek() == UInt8(ascii: "\"") { return try string() }
        let start = position
        guard peek() == UInt8(ascii: "{") else { throw Failure(offset: position, message: "a value must be a string or {\"base64\": \"…\"}") }
        position += 1
        skipSpace()
        guard try string() == Array("base64".utf8) else { throw Failure(offset: start, message: "a value must be a string or {\"base64\": \"…\"}") }
        skipSpace()
        try expect(UInt8(ascii: ":"), "':' after \"base64\"")
        skipSpace()
        let encoded = try string()
        skipSpace()
        try expect(UInt8(ascii: "}"), "'}' after the base64 text")
        guard let decoded = Data(base64Encoded: String(decoding: encoded, as: UTF8.self)) else {
            throw Failure(offset: start, message: "the value of \(JSONText.quoted(String(decoding: key, as: UTF8.self))) is not valid base64")
        }
        return Array(decoded)
    }

    /// A JSON string, unescaped, as UTF-8 bytes.
    private mutating func string() throws(Failure) -> [UInt8] {
        try expect(UInt8(ascii: "\""), "a string")
        var out: [UInt8] = []
        let start = position
        while true {
            guard let byte = peek() else { throw Failure(offset: start, message: "unterminated string") }
            switch byte {
            case UInt8(ascii: "\""):
                position += 1
                guard String(validating: out, as: UTF8.self) != nil else {
                    throw Failure(offset: start, message: "string is not valid UTF-8")
                }
                return out
            case UInt8(ascii: "\\"):
                position += 1
                try escape(into: &out)
            case 0..<0x20:
                throw Failure(offset: position, message: "control character in a string")
            default:
                out.append(byte)
                position += 1
            }
        }
    }

    private mutating func escape(into out: inout [UInt8]) throws(Failure) {
        guard let byte = peek() else { throw Failure(offset: position, message: "unterminated escape") }
        position += 1
        switch byte {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(byte)
        case UInt8(ascii: "b"): out.append(0x08)
        case UInt8(ascii: "f"): out.append(0x0C)
        case UInt8(ascii: "n"): out.append(0x0A)
        case UInt8(ascii: "r"): out.append(0x0D)
        case UInt8(ascii: "t"): out.append(0x09)
        case UInt8(ascii: "u"):
            var scalar = try hex4()
            if (0xD800..<0xDC00).contains(scalar) {
                guard peek() == UInt8(ascii: "\\"), position + 1 < bytes.count, bytes[position + 1] == UInt8(ascii: "u") else {
                    throw Failure(offset: position, message: "unpaired surrogate in \\u escape")
                }
                position += 2
                let low = try hex4()
                guard (0xDC00..<0xE000).contains(low) else { throw Failure(offset: position, message: "unpaired surrogate in \\u escape") }
                scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
            } else if (0xDC00..<0xE000).contains(scalar) {
                throw Failure(offset: position, message: "unpaired surrogate in \\u escape")
            }
            out.append(contentsOf: Array(String(Character(Unicode.Scalar(scalar)!)).utf8))
        default:
            throw Failure(offset: position - 1, message: "unknown escape \\\(Character(Unicode.Scalar(byte)))")
        }
    }

    private mutating func hex4() throws(Failure) -> UInt32 {
        guard position + 4 <= bytes.count else { throw Failure(offset: position, message: "short \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[position]
            let digit: UInt32
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(byte - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(byte - UInt8(ascii: "A") + 10)
            default: throw Failure(offset: position, message: "bad hex digit in \\u escape")
            }
            value = value << 4 | digit
            position += 1
        }
        return value
    }
}
