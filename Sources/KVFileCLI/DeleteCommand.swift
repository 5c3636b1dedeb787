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
            let store = try access.openForWriting(lock: lock, durability: write.mode)
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
}
