import KVFile
#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// Command-line arguments as the bytes the shell passed.
///
/// Swift decodes argv as UTF-8 and replaces invalid bytes with U+FFFD, which
/// would make `$'k\xfe'` and `$'k\xff'` the same key; and the argument
/// parser takes `-5` for an option. Before parsing, such arguments are
/// replaced by placeholders (U+2060, invisible, then the text) that map back
/// to their exact bytes; commands read keys and values through `bytes(of:)`.
enum RawArguments {
    private static let mark: Character = "\u{2060}"
    nonisolated(unsafe) private static var placeholders: [String: [UInt8]] = [:]

    /// argv without the program name, with placeholders where needed. Call once, before parsing.
    static func prepare() -> [String] {
        var result: [String] = []
        for index in 1..<Int(CommandLine.argc) {
            guard let pointer = CommandLine.unsafeArgv[index] else { continue }
            let bytes = Array(UnsafeRawBufferPointer(start: pointer, count: strlen(pointer)))
            let text = String(decoding: bytes, as: UTF8.self)
            let valid = String(validating: bytes, as: UTF8.self) != nil
            // "-0" is `keys -0` (NUL-separated output); other "-N…" are numbers.
            let negativeNumber = bytes.count >= 2 && bytes[0] == UInt8(ascii: "-") && (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[1])
                && bytes != Array("-0".utf8)
            guard !valid || negativeNumber else {
                result.append(text)
                continue
            }
            // Arguments that look alike as text get more marks, so each maps back to its own bytes.
            var placeholder = String(mark) + text
            while let other = placeholders[placeholder], other != bytes { placeholder = String(mark) + placeholder }
            placeholders[placeholder] = bytes
            result.append(placeholder)
        }
        return result
    }

    /// The exact bytes of an argument the parser returned.
    static func bytes(of argument: String) -> [UInt8] {
        if argument.first == mark, let bytes = placeholders[argument] { return bytes }
        return Array(argument.utf8)
    }

    /// The bytes of a KEY argument, which must be a key a store can hold (65 otherwise,
    /// as writes answer; a read of such a key said "no value", exit 1).
    static func keyBytes(of argument: String) throws -> [UInt8] {
        let key = bytes(of: argument)
        if let problem = keyProblem(key) { throw CLIError(message: problem, code: .invalidInput) }
        return key
    }

    /// Why a store cannot hold `key` (nil: it can), in the words of the store's own check.
    static func keyProblem(_ key: [UInt8]) -> String? {
        if key.isEmpty { return "a key must not be empty" }
        if key.count > RecordFormat.maxKeyLength { return "key of \(key.count) bytes is longer than the limit (\(RecordFormat.maxKeyLength) bytes)" }
        return nil
    }

    /// A message that may quote placeholders, with their marks taken out.
    static func withoutMarks(_ message: String) -> String {
        guard message.contains(mark) else { return message }
        return String(message.filter { $0 != mark })
    }

    /// The argument as text (numbers, seq values): placeholders lose their marks.
    static func text(of argument: String) -> String {
        if argument.first == mark, let bytes = placeholders[argument] { return String(decoding: bytes, as: UTF8.self) }
        return argument
    }
}
