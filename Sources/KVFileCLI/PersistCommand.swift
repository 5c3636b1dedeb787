import ArgumentParser
import KVFile

struct PersistCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "persist",
        abstract: "Remove a value's expiry (put --ttl), keeping the value.",
        discussion: """
            Writes the same value again without a deadline: a new version, which \
            the change feed shows as kvs_updated with the same value. Exits 1 \
            when the key has no value (or it has already expired: its expiry is \
            recorded then); a value without an expiry is left as it is.

            Examples:
              kvfile put --ttl 1h ./cache.kv report "$(make-report)"
              kvfile persist ./cache.kv report
            """
    )

    @OptionGroup var access: StoreAccessOptions
    @OptionGroup var write: WriteOptions
    @OptionGroup var lock: LockOptions

    @Argument(help: "The key whose value should no longer expire.")
    var key: String

    func run() throws {
        try runReportingErrors {
            let store = try access.openForWriting(lock: lock, durability: write.mode)
            let found = try store.persist(RawArguments.keyBytes(of: key))
            try store.close()
            return found ? .success : .notFound
        }
    }
}
