import ArgumentParser
import KVFile
import KVFileText

struct PutCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "put",
        abstract: "Set a key to a value.",
        discussion: """
            The value is taken byte for byte: from the VALUE argument, or from \
            standard input when VALUE is left out (binary data welcome). The \
            write is on disk when the command exits. With --if-absent nothing is \
            written when the key already has a value, and the exit status is 1: \
            a lock for shell scripts. KEY and VALUE are bytes as the shell \
            passes them, UTF-8 or not. A value that is a negative number works \
            as it is (-5); any other KEY or VALUE that starts with - goes after \
            -- (kvfile put ./s.kv -- -x -y).

            With --ttl or --expire-at the value expires: from its deadline on, \
            every reader in every process sees no value (get exits 1, dump and \
            keys leave it out, --if-absent writes), whether or not a writer runs; \
            the next writer to open (or one that stays open) records the expiry \
            in the change feed (kvs_deleted with "expired": true). A put without --ttl clears an \
            earlier expiry; kvfile persist removes one and keeps the value. \
            Deadlines follow the wall clock.

            Examples:
              kvfile put ./cache.kv greeting hello
              kvfile put ./cache.kv photo < photo.jpg
              date | kvfile put ./cache.kv last-run
              kvfile put --if-absent ./locks.kv nightly-job "$$" || echo "already running"
              kvfile put --ttl 10m ./cache.kv session:42 "$token"
              kvfile put --if-absent --ttl 1h ./locks.kv deploy "$$"    # a lease: free again after an hour
              v=$(kvfile get --version ./s.kv n); kvfile put --if-version "$v" ./s.kv n "$((n+1))"
            """
    )

    @OptionGroup var access: StoreAccessOptions
    @OptionGroup var write: WriteOptions
    @OptionGroup var lock: LockOptions
    @OptionGroup var expiry: ExpiryOptions

    @Flag(name: .long, help: "Write only when the key has no value; exit 1 otherwise.")
    var ifAbsent = false

    @Option(name: .long, help: ArgumentHelp(
        "Write only while the key is at this version (`kvfile get --version`; 0: no value); exit 1 otherwise. Compare-and-set.",
        valueName: "n"))
    var ifVersion: UInt64?

    @Argument(help: "The key (1 to 4096 bytes).")
    var key: String

    @Argument(help: "The value; read from standard input when left out.")
    var value: String?

    func run() throws {
        try runReportingErrors {
            try Self.put(key, value, into: access.store, lockTimeout: lock.lockTimeout, durability: write.mode,
                         deadline: expiry.deadline, ifAbsent: ifAbsent, ifVersion: ifVersion)
        }
    }

    /// Sets `key` in the store at `path` (made when missing) to `value`, or
    /// to standard input when it is nil; `deadline` gives the expiry (0: none).
    /// `.notFound` when a condition kept it from being written.
    static func put(_ key: String, _ value: String?, into path: String, lockTimeout: Int, durability: Durability,
                    deadline: () throws -> UInt64, ifAbsent: Bool, ifVersion: UInt64?) throws -> CLIExitCode {
        let bytes: [UInt8]
        if let value {
            bytes = RawArguments.bytes(of: value)
        } else {
            if Terminal.isTerminal(0) {
                Terminal.error("reading the value from standard input; end it with Ctrl-D")
            }
            bytes = try Terminal.readStandardInput(limit: RecordFormat.maxValueLength) {
                CLIError(message: "value on standard input for key \(KeyText.describe(RawArguments.bytes(of: key))) "
                             + "is larger than the limit of \(RecordFormat.maxValueLength) bytes (64 MiB); stopped reading there",
                         code: .invalidInput)
            }
        }
        _ = try deadline()  // refuses a time already past before the store is touched
        let store = try StoreAccessOptions.openForWriting(path, lockTimeout: lockTimeout, durability: durability, create: true)
        // Measured from when the write can happen (the lock may have been waited for).
        let expiresAt = try deadline()
        let written: Bool
        if let ifVersion {
            switch try store.put(RawArguments.bytes(of: key), bytes, if: .version(anyOf: [ifVersion]), expiresAt: expiresAt) {
            case .written: written = true
            case .conditionFailed(let current):
                Terminal.error("not written: the key is at version \(current), not \(ifVersion)")
                written = false
            case .nothingToDelete: written = false
            }
        } else if ifAbsent {
            if case .written = try store.put(RawArguments.bytes(of: key), bytes, if: .absent, expiresAt: expiresAt) {
                written = true
            } else {
                written = false
            }
        } else {
            try store.put(RawArguments.bytes(of: key), bytes, expiresAt: expiresAt)
            written = true
        }
        try store.close()
        return written ? .success : .notFound
    }
}
