import ArgumentParser
import KVFile

struct GetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "get",
        abstract: "Print the value of a key, or every pair with --all.",
        discussion: """
            Writes the value's exact bytes to standard output. When standard \
            output is a terminal and the value does not end in a newline, one is \
            added for readability; into a pipe or file nothing is added. Exits 1, \
            printing nothing, when the key has no value. Never takes the writer's \
            lock, so it works while another process writes. --all prints every \
            pair as `kvfile dump` does. A value whose deadline (put --ttl) has \
            passed is no value. --ttl prints the seconds the value has left \
            (rounded up), or -1 when it never expires.

            Examples:
              kvfile get ./cache.kv greeting
              kvfile get ./cache.kv photo > photo.jpg
              if value=$(kvfile get ./cache.kv token); then echo "$value"; fi
              kvfile get ./cache.kv --all --format json
              kvfile get --ttl ./cache.kv session:42
            """
    )

    @OptionGroup var access: StoreAccessOptions

    @Argument(help: "The key to look up (leave out with --all).")
    var key: String?

    @Flag(name: .long, help: "Print every pair instead of one value.")
    var all = false

    @Flag(name: .customLong("version"), help: "Print the key's version (the sequence number of the write that set its value) instead of the value, for put/delete --if-version.")
    var printVersion = false

    @Flag(name: .customLong("ttl"), help: "Print the seconds until the value expires (rounded up; -1: never) instead of the value.")
    var printTTL = false

    @Option(name: .long, help: "With --all: text, json or ndjson.")
    var format: PairFormat?

    func validate() throws {
        if all && key != nil { throw ValidationError("give either a KEY or --all, not both") }
        if !all && key == nil { throw ValidationError("missing KEY (or --all for every pair)") }
        if let format, format != .text, !all {
            throw ValidationError("--format \(format.rawValue) is for --all (one key's value is printed as it is stored)")
        }
        if printTTL && (printVersion || all) { throw ValidationError("--ttl prints one key's time left: not with --version or --all") }
    }

    func run() throws {
        try runReportingErrors {
            let store = try access.openForReading()
            guard let key else {
                try Dumper.dump(store, format: format ?? .text, prefix: [])
                return .success
            }
            if printTTL {
                guard let deadline = try store.expiry(of: RawArguments.keyBytes(of: key)) else { return .notFound }
                let now = WallClock.milliseconds()
                let left = deadline == 0 ? "-1" : String((max(deadline, now + 1) - now + 999) / 1000)
                Array("\(left)\n".utf8).withUnsafeBytes { OutputBuffer.writeOrExit($0, to: 1) }
                return .success
            }
            if printVersion {
                let version = try RawArguments.keyBytes(of: key).withUnsafeBytes { raw in try store.withVersionedValue(forKey: raw) { _, seq in seq } }
                guard version > 0 else { return .notFound }
                Array("\(version)\n".utf8).withUnsafeBytes { OutputBuffer.writeOrExit($0, to: 1) }
                return .success
            }
            return try Self.printValue(of: key, in: store)
        }
    }

    /// `kvfile get STORE KEY`: writes the value of `key` to standard output.
    static func printValue(of key: String, in store: Store) throws -> CLIExitCode {
        guard let value = try store.get(RawArguments.keyBytes(of: key)) else { return .notFound }
        value.withUnsafeBytes { OutputBuffer.writeOrExit($0, to: 1) }
        if Terminal.isTerminal(1) && value.last != UInt8(ascii: "\n") {
            [UInt8(ascii: "\n")].withUnsafeBytes { OutputBuffer.writeOrExit($0, to: 1) }
        }
        return .success
    }
}
