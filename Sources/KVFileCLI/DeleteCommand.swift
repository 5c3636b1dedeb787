import ArgumentParser
import KVFile

struct DeleteCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "delete",
        abstract: "Remove a key.",
        discussion: """
            Exits 1 when the key had no value (nothing is written then).

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

    func run() throws {
        try runReportingErrors {
            let store = try access.openForWriting(lock: lock, durability: write.mode)
            let existed = try store.delete(RawArguments.bytes(of: key))
            try store.close()
            return existed ? .success : .notFound
        }
    }
}
