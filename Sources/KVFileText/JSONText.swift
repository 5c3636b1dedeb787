import FoundationEssentials

/// JSON string literals and byte fields as kvfile writes them everywhere
/// (kvfile(1), FORMATS): text that is valid UTF-8 is a JSON string; other
/// bytes go in a `name_base64` field instead, so nothing is lost.
public enum JSONText {
    /// `text` as a JSON string literal, quotes included. Non-ASCII is kept as UTF-8.
    public static func quoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20 || scalar.value == 0x7F:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    /// Standard base64 with padding.
    public static func base64(_ bytes: [UInt8]) -> String { Data(bytes).base64EncodedString() }

    /// A named field holding bytes: `"name":"text"` or `"name_base64":"…"`.
    public static func bytesField(_ name: String, _ bytes: [UInt8]) -> String {
        if let text = String(validating: bytes, as: UTF8.self) {
            return quoted(name) + ":" + quoted(text)
        }
        return quoted(name + "_base64") + ":" + quoted(base64(bytes))
    }

    /// Bytes as lowercase hex, for naming a non-UTF-8 key in a message.
    public static func hex(_ bytes: [UInt8]) -> String {
        bytes.map { byte in
            let digits = String(byte, radix: 16)
            return byte < 16 ? "0" + digits : digits
        }.joined()
    }
}
