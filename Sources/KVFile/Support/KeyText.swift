/// How kvfile names a key in a message (the engine's errors, the tool's and
/// the server's): in double quotes when it is printable UTF-8, else as
/// `0x` and hex; at most 64 bytes of it, then "…".
public enum KeyText {
    /// The key as a message shows it, e.g. `"user:42"` or `0x00ff`.
    public static func describe(_ key: some Collection<UInt8>) -> String {
        let prefix = key.prefix(64)
        let suffix = key.count > 64 ? "…" : ""
        if let text = String(validating: Array(prefix), as: UTF8.self), text.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value != 0x7F }) {
            return "\"\(text)\(suffix)\""
        }
        return "0x" + prefix.map { byte in
            let digits = String(byte, radix: 16)
            return byte < 16 ? "0" + digits : digits
        }.joined() + suffix
    }
}
