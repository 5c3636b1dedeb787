/// How kvfile names a key in a message (the engine's errors, the tool's and
/// the server's): in double quotes (`"` and `\` escaped) when it is printable
/// UTF-8, else as `0x` and hex; at most 64 characters or bytes of it, then "…".
public enum KeyText {
    /// The key as a message shows it, e.g. `"user:42"` or `0x00ff`.
    public static func describe(_ key: some Collection<UInt8>) -> String {
        let limit = 64
        if let text = String(validating: Array(key), as: UTF8.self),
           text.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value != 0x7F && !(0x80..<0xA0).contains($0.value) }) {
            var quoted = "\""
            for scalar in text.unicodeScalars.prefix(limit) {
                if scalar == "\"" || scalar == "\\" { quoted.unicodeScalars.append("\\") }
                quoted.unicodeScalars.append(scalar)
            }
            return quoted + (text.unicodeScalars.count > limit ? "…\"" : "\"")
        }
        return "0x" + key.prefix(limit).map { byte in
            let digits = String(byte, radix: 16)
            return byte < 16 ? "0" + digits : digits
        }.joined() + (key.count > limit ? "…" : "")
    }
}
