import ArgumentParser
import KVFile
import KVFileText

struct DumpCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dump",
        abstract: "Print every live pair, sorted by key.",
        discussion: """
            Formats: text (key, a tab, the value; one pair per line, with \\t \\n \\\\ \
            and other control or non-UTF-8 bytes escaped as \\xNN), json (one \
            object, keys sorted, indented by 4; a non-UTF-8 value becomes \
            {"base64": "..."}), ndjson (one {"key": ..., "value": ...} object per \
            line; a non-UTF-8 key or value is written as "key_base64" / \
            "value_base64" instead). `kvfile load` reads json and ndjson back \
            exactly.

            JSON strings (ndjson and json): bytes that are valid UTF-8 are \
            written as they are, non-ASCII included; only the quote, the \
            backslash, newline (\\n), carriage return (\\r) and tab (\\t) get a \
            short escape, and the other control characters (below 0x20, and \
            0x7F) are written as \\u00XX. Base64 is the standard alphabet with \
            padding. Keys are bytes: keys that differ only in their Unicode \
            form are different keys, in both directions. Reads without the writer's lock; the output is the store as \
            it was when the dump began. Memory stays small however many keys the \
            store holds: past 8 MiB of keys, they are sorted in runs in an \
            unnamed temporary file beside the store (in $TMPDIR or /tmp when the \
            store's directory cannot hold one) and merged.

            Examples:
              kvfile dump ./cache.kv
              kvfile dump ./cache.kv --format ndjson > backup.ndjson
              kvfile dump ./cache.kv --prefix user: --format json
            """
    )

    @OptionGroup var access: StoreAccessOptions

    @Option(name: .long, help: "text, json or ndjson.")
    var format: PairFormat = .text

    @Option(name: .long, help: "Only keys that start with this.")
    var prefix: String = ""

    func run() throws {
        try runReportingErrors {
            let store = try access.openForReading()
            try Dumper.dump(store, format: format, prefix: RawArguments.bytes(of: prefix))
            return .success
        }
    }
}

enum Dumper {
    static func dump(_ store: Store, format: PairFormat, prefix: [UInt8]) throws {
        let out = OutputBuffer()
        switch format {
        case .text:
            try store.forEach(prefix: prefix) { key, value in out.write(PairWriter.textLine(key, value)) }
        case .ndjson:
            try store.forEach(prefix: prefix) { key, value, expiresAt in
                out.append { bytes in
                    key.withUnsafeBytes { key in value.withUnsafeBytes { value in PairJSON.appendNDJSONLine(key, value, expiresAt: expiresAt, to: &bytes) } }
                }
            }
        case .json:
            var document = PairWriter.JSONDocument(out)
            try store.forEach(prefix: prefix) { key, value in try document.add(key, value) }
            document.finish()
        }
        out.flush()
    }
}
