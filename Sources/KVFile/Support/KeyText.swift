/// Keys in messages: as text when printable UTF-8, else as hex.
enum KeyText {
    static func describe(_ key: some Collection<UInt8>) -> String {
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
