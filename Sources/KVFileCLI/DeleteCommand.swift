import ArgumentParser
import KVFile

struct DeleteCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "delete",
        abstract: "Remove a key.",
        discussion: """
            Exits 1 when the key had no value (nothing is written then), or with \
            --if-version when the key is at another version.

            Examples:
              kvfile delete ./cache.kv greeting
              kvfile delete ./cache.kv stale-key || echo "was not there"
            """
    )

    @OptionGroup var access: StoreAccessOptions
    @OptionGroup var write: WriteOptions
    @OptionGroup var lock: LockOptions

    @Argument(help: "The key to remove.")
    var key: String

    @Option(name: .long, help: ArgumentHelp("Remove only while the key is at this version (`kvfile get --version`); exit 1 otherwise.", valueName: "n"))
    var ifVersion: UInt64?

    func run() throws {
        try runReportingErrors {
            try Self.delete(key, from: access.store, lockTimeout: lock.lockTimeout, durability: write.mode, ifVersion: ifVersion)
        }
    }

    /// Removes `key` from the store at `path`; `.notFound` when it had no value (or another version).
    static func delete(_ key: String, from path: String, lockTimeout: Int, durability: Durability, ifVersion: UInt64?) throws -> CLIExitCode {
        let store = try StoreAccessOptions.openForWriting(path, lockTimeout: lockTimeout, durability: durability, create: false)
        let existed: Bool
        if let ifVersion {
            let result = try RawArguments.bytes(of: key).withUnsafeBytes { try store.delete(key: $0, if: .version(anyOf: [ifVersion])) }
            if case .conditionFailed(let current) = result {
                Terminal.error("not removed: the key is at version \(current), not \(ifVersion)")
            }
            if case .written = result { existed = true } else { existed = false }
        } else {
            existed = try store.delete(RawArguments.bytes(of: key))
        }
        try store.close()
        return existed ? .success : .notFound
    }
}
