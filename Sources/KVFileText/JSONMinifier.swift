/// Checks that bytes are exactly one JSON document (RFC 8259) and returns it
/// without insignificant whitespace, so it fits on one NDJSON line. Numbers and
/// strings are kept byte for byte.
public enum JSONMinifier {
    public static func minified(_ bytes: [UInt8]) -> [UInt8]? {
        var parser = Parser(bytes: bytes)
        parser.skipSpace()
        guard parser.value(depth: 0) else { return nil }
        parser.skipSpace()
        return parser.position == bytes.count ? parser.output : nil
    }

    /// The members of a JSON object document, in order: each key as its
    /// string literal (quotes included, as written) and each value minified,
    /// numbers and strings byte for byte. nil when `bytes` is not one JSON object.
    public static func members(ofObject bytes: [UInt8]) -> [(keyLiteral: [UInt8], value: [UInt8])]? {
        var parser = Parser(bytes: bytes)
        parser.skipSpace()
        guard parser.take(UInt8(ascii: "{")) else { return nil }
        var members: [(keyLiteral: [UInt8], value: [UInt8])] = []
        parser.skipSpace()
        if !parser.take(UInt8(ascii: "}")) {
            while true {
                parser.skipSpace()
                let keyStart = parser.output.count
                guard parser.string() else { return nil }
                let key = Array(parser.output[keyStart...])
                parser.skipSpace()
                guard parser.take(UInt8(ascii: ":")) else { return nil }
                parser.skipSpace()
                let valueStart = parser.output.count
                guard parser.value(depth: 1) else { return nil }
                members.append((key, Array(parser.output[valueStart...])))
                parser.skipSpace()
                if parser.take(UInt8(ascii: "}")) { break }
                guard parser.take(UInt8(ascii: ",")) else { return nil }
            }
        }
        parser.skipSpace()
        return parser.position == bytes.count ? members : nil
    }

    private struct Parser {
        let bytes: [UInt8]
        var position = 0
        var output: [UInt8] = []

        init(bytes: [UInt8]) {
            self.bytes = bytes
            output.reserveCapacity(bytes.count)
        }

        var current: UInt8? { position < bytes.count ? bytes[position] : nil }

        mutating func skipSpace() {
            while let c = current, c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D { position += 1 }
        }

        mutating func take(_ c: UInt8) -> Bool {
            guard current == c else { return false }
            output.append(c)
            position += 1
            return true
        }

        mutating func value(depth: Int) -> Bool {
            guard depth < 512, let c = current else { return false }
            switch c {
            case UInt8(ascii: "{"): return object(depth: depth)
            case UInt8(ascii: "["): return array(depth: depth)
            case UInt8(ascii: "\""): return string()
            case UInt8(ascii: "t"): return literal("true")
            case UInt8(ascii: "f"): return literal("false")
            case UInt8(ascii: "n"): return literal("null")
            default: return number()
            }
        }

        mutating func literal(_ word: String) -> Bool {
            for byte in word.utf8 { if !take(byte) { return false } }
            return true
        }

        mutating func object(depth: Int) -> Bool {
            _ = take(UInt8(ascii: "{"))
            skipSpace()
            if take(UInt8(ascii: "}")) { return true }
            while true {
                skipSpace()
                guard string() else { return false }
                skipSpace()
                guard take(UInt8(ascii: ":")) else { return false }
                skipSpace()
                guard value(depth: depth + 1) else { return false }
                skipSpace()
                if take(UInt8(ascii: "}")) { return true }
                guard take(UInt8(ascii: ",")) else { return false }
            }
        }

        mutating func array(depth: Int) -> Bool {
            _ = take(UInt8(ascii: "["))
            skipSpace()
            if take(UInt8(ascii: "]")) { return true }
            while true {
                skipSpace()
                guard value(depth: depth + 1) else { return false }
                skipSpace()
                if take(UInt8(ascii: "]")) { return true }
                guard take(UInt8(ascii: ",")) else { return false }
            }
        }

        mutating func string() -> Bool {
            guard take(UInt8(ascii: "\"")) else { return false }
            while let c = current {
                if c < 0x20 { return false }
                output.append(c)
                position += 1
                if c == UInt8(ascii: "\"") { return true }
                if c == UInt8(ascii: "\\") {
                    guard let e = current else { return false }
                    output.append(e)
                    position += 1
                    if e == UInt8(ascii: "u") {
                        for _ in 0..<4 {
                            guard let h = current, isHex(h) else { return false }
                            output.append(h)
                            position += 1
                        }
                    } else if !"\"\\/bfnrt".utf8.contains(e) {
                        return false
                    }
                }
            }
            return false
        }

        func isHex(_ c: UInt8) -> Bool {
            (c >= 48 && c <= 57) || (c >= 65 && c <= 70) || (c >= 97 && c <= 102)
        }

        mutating func digits() -> Bool {
            var any = false
            while let c = current, c >= 48 && c <= 57 {
                output.append(c)
                position += 1
                any = true
            }
            return any
        }

        mutating func number() -> Bool {
            _ = take(UInt8(ascii: "-"))
            if take(UInt8(ascii: "0")) {
                if let c = current, c >= 48 && c <= 57 { return false }
            } else if !digits() {
                return false
            }
            if take(UInt8(ascii: ".")) { guard digits() else { return false } }
            if current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
                output.append(current!)
                position += 1
                if current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { output.append(current!); position += 1 }
                guard digits() else { return false }
            }
            return true
        }
    }
}
