import ArgumentParser
import KVFile

struct KeysCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keys",
        abstract: "Print the keys, sorted, one per line.",
        discussion: """
            Keys only, sorted by their bytes, one per line (with -0, each \
            ended by a NUL byte instead, for xargs -0; keys may hold newlines). \
            --limit N stops after N keys; --after KEY starts after KEY, so the \
            last key of one page is the cursor of the next. Memory stays small \
            however many keys the store holds. Never takes the writer's lock.

            Examples:
              kvfile keys ./cache.kv
              kvfile keys ./cache.kv --prefix user: --limit 100
              kvfile keys ./cache.kv --prefix tmp: -0 | xargs -0 -n1 kvfile delete ./cache.kv
              last=$(kvfile keys ./big.kv --limit 1000 | tail -n 1); kvfile keys ./big.kv --after "$last" --limit 1000
            """
    )

    @OptionGroup var access: StoreAccessOptions

    @Option(name: .long, help: "Only keys that start with this.")
    var prefix: String = ""

    @Option(name: .long, help: ArgumentHelp("Start after this key (a cursor: the last key printed before).", valueName: "key"))
    var after: String?

    @Option(name: .long, help: ArgumentHelp("Print at most this many keys.", valueName: "n"))
    var limit: Int?

    @Flag(name: [.customShort("0"), .customLong("null")], help: "End each key with a NUL byte instead of a newline.")
    var nul = false

    func validate() throws {
        if let limit, limit < 1 { throw ValidationError("--limit must be at least 1") }
    }

    func run() throws {
        try runReportingErrors {
            let store = try access.openForReading()
            let prefixBytes = RawArguments.bytes(of: prefix)
            var cursor = after.map(RawArguments.bytes(of:))
            var left = limit ?? Int.max
            let out = OutputBuffer()
            let end: UInt8 = nul ? 0 : 10
            // Page by page (10,000 keys each), so memory stays small for any store.
            while left > 0 {
                let requested = min(left, 10_000)
                let page = try store.keys(prefix: prefixBytes, after: cursor, limit: requested)
                for key in page {
                    out.write(key)
                    out.write(CollectionOfOne(end))
                }
                left -= page.count
                guard page.count == requested, let last = page.last else { break }
                cursor = last
            }
            out.flush()
            return .success
        }
    }
}
