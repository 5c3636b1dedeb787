import FoundationEssentials

/// JSON string literals and byte fields as kvfile writes them everywhere
/// (kvfile(1), FORMATS): text that is valid UTF-8 is a JSON string; other
/// bytes go in a `name_base64` field instead, so nothing is lost.
public enum JSONText {
    /// `text` as a JSON string literal, quotes included. Non-ASCII is kept as UTF-8.
    public static func quoted(_ text: String) -> String {
        var text = text
        var out: [UInt8] = []
        text.withUTF8 { appendQuoted(UnsafeRawBufferPointer($0), to: &out) }
        return String(decoding: out, as: UTF8.self)
    }

    /// Appends `bytes`, which must be valid UTF-8, to `out` as a JSON string
    /// literal: only the quote, the backslash, \n, \r and \t get a short
    /// escape; other control characters (below 0x20, and 0x7F) are \u00XX.
    public static func appendQuoted(_ bytes: UnsafeRawBufferPointer, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        // Runs of bytes that need no escape are copied whole.
        var plainFrom = 0
        for (index, byte) in bytes.enumerated() {
            if byte >= 0x20 && byte != 0x7F && byte != UInt8(ascii: "\"") && byte != UInt8(ascii: "\\") { continue }
            out.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[plainFrom..<index]))
            plainFrom = index + 1
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"): out.append(UInt8(ascii: "\\")); out.append(byte)
            case UInt8(ascii: "\n"): out.append(UInt8(ascii: "\\")); out.append(UInt8(ascii: "n"))
            case UInt8(ascii: "\r"): out.append(UInt8(ascii: "\\")); out.append(UInt8(ascii: "r"))
            case UInt8(ascii: "\t"): out.append(UInt8(ascii: "\\")); out.append(UInt8(ascii: "t"))
            case 0..<0x20, 0x7F:
                out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"),
                                        hexDigit(byte >> 4), hexDigit(byte & 15)])
            default: out.append(byte)
            }
        }
        out.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[plainFrom...]))
        out.append(UInt8(ascii: "\""))
    }

    @inline(__always)
    private static func hexDigit(_ nibble: UInt8) -> UInt8 {
        nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "a") + nibble - 10
    }

    /// True when `bytes` are valid UTF-8 (ASCII is answered without making a String).
    public static func isUTF8(_ bytes: UnsafeRawBufferPointer) -> Bool {
        for byte in bytes where byte >= 0x80 { return String(validating: bytes, as: UTF8.self) != nil }
        return true
    }

    /// Standard base64 with padding.
    public static func base64(_ bytes: [UInt8]) -> String { Data(bytes).base64EncodedString() }

    /// A named field holding bytes: `"name":"text"` or `"name_base64":"…"`.
    public static func bytesField(_ name: String, _ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        bytes.withUnsafeBytes { appendBytesField(name, $0, to: &out) }
        return String(decoding: out, as: UTF8.self)
    }

    /// Appends the field `bytesField` returns to `out`.
    public static func appendBytesField(_ name: String, _ bytes: UnsafeRawBufferPointer, to out: inout [UInt8]) {
        let text = isUTF8(bytes)
        var label = text ? name : name + "_base64"
        label.withUTF8 { appendQuoted(UnsafeRawBufferPointer($0), to: &out) }
        out.append(UInt8(ascii: ":"))
        if text {
            appendQuoted(bytes, to: &out)
        } else {
            Array(base64(Array(bytes)).utf8).withUnsafeBytes { appendQuoted($0, to: &out) }
        }
    }

    /// Bytes as lowercase hex, for naming a non-UTF-8 key in a message.
    public static func hex(_ bytes: [UInt8]) -> String {
        bytes.map { byte in
            let digits = String(byte, radix: 16)
            return byte < 16 ? "0" + digits : digits
        }.joined()
    }
}
