import KVFile

/// Pairs as JSON (kvfile(1), FORMATS): `dump`, `get --all`, and the server's
/// `GET /all` and `GET /v1/keys` print exactly these.
public enum PairJSON {
    /// One NDJSON line: `{"key":"…","value":"…"}` plus a newline; non-UTF-8
    /// bytes as `key_base64` / `value_base64`.
    /// With `expiresAt` (ms since the Unix epoch) the line ends with `"expires_at":N`.
    public static func ndjsonLine(_ key: [UInt8], _ value: [UInt8], expiresAt: UInt64 = 0) -> String {
        var line: [UInt8] = []
        key.withUnsafeBytes { key in value.withUnsafeBytes { value in appendNDJSONLine(key, value, expiresAt: expiresAt, to: &line) } }
        return String(decoding: line, as: UTF8.self)
    }

    /// Appends the line `ndjsonLine` returns to `out`, as bytes (dump writes a million of them).
    public static func appendNDJSONLine(_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer, expiresAt: UInt64, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "{"))
        JSONText.appendBytesField("key", key, to: &out)
        out.append(UInt8(ascii: ","))
        JSONText.appendBytesField("value", value, to: &out)
        if expiresAt != 0 {
            out.append(contentsOf: Array(",\"expires_at\":\(expiresAt)".utf8))
        }
        out.append(contentsOf: [UInt8(ascii: "}"), UInt8(ascii: "\n")])
    }

    /// A key that cannot be a JSON object key.
    public struct NonUTF8Key: Error {
        public var key: [UInt8]
        public var message: String {
            "key \(KeyText.describe(key)) is not UTF-8 and cannot be a JSON object key; use the NDJSON form"
        }
    }

    /// Builds one JSON object of keys to values, keys in the order added
    /// (callers add them sorted), indented by 4 like the KeyValueStore
    /// service's `GET /all`. A value that is not UTF-8 becomes `{"base64": "…"}`.
    /// Pieces go to `emit` as they are made, so a large document streams.
    public struct ObjectWriter {
        private var first = true
        private let emit: (String) -> Void

        public init(emit: @escaping (String) -> Void) {
            self.emit = emit
            emit("{")
        }

        public mutating func add(_ key: [UInt8], _ value: [UInt8]) throws(NonUTF8Key) {
            guard let keyText = String(validating: key, as: UTF8.self) else { throw NonUTF8Key(key: key) }
            emit((first ? "\n    " : ",\n    ") + JSONText.quoted(keyText) + ": ")
            first = false
            if let text = String(validating: value, as: UTF8.self) {
                emit(JSONText.quoted(text))
            } else {
                emit("{\"base64\": " + JSONText.quoted(JSONText.base64(value)) + "}")
            }
        }

        /// Closes the object (and ends the line).
        public func finish() {
            emit(first ? "}\n" : "\n}\n")
        }
    }
}
