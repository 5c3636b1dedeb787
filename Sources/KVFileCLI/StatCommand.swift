import ArgumentParser
import KVFile
import KVFileText

struct StatCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stat",
        abstract: "Show the size and shape of a store.",
        discussion: """
            Keys, segment files, bytes on disk, live bytes (the latest record of \
            each key) and dead bytes (what compaction would give back), the range \
            of sequence numbers in the log, the resume floor (the oldest seq \
            `kvfile watch --since` can resume after: compaction removed the \
            history before it), the format version, the index (the \
            shared file kvfile.index, or one built in memory when that file \
            cannot be used: the next writer rebuilds it), its size on disk, \
            slots and load, and each segment's size and dead share. Reads \
            without the writer's lock.

            Examples:
              kvfile stat ./cache.kv
              kvfile stat ./cache.kv --json | jq .dead_bytes
            """
    )

    @OptionGroup var access: StoreAccessOptions

    @Flag(name: .long, help: "Print one JSON object.")
    var json = false

    func run() throws {
        try runReportingErrors {
            let store = try access.openForReading()
            let stats = try store.stats()
            let out = OutputBuffer()
            let fields = StatJSON.fields(stats)
            let segments = stats.segmentDetails
            if json {
                out.write(StatJSON.document(stats))
            } else {
                let width = fields.map(\.0.count).max() ?? 0
                for (name, value) in fields {
                    let shown = value.hasPrefix("\"") ? String(value.dropFirst().dropLast()) : value
                    out.write(name + String(repeating: " ", count: width - name.count + 2) + shown + "\n")
                }
                out.write("\nsegment    bytes        live         dead\n")
                for segment in segments {
                    let name = String(segment.id)
                    let tag = segment.isActive ? "  (active)" : segment.isCompactionOutput ? "  (compacted)" : ""
                    out.write(name.padding(8) + "   " + String(segment.bytes).padding(11) + "  " + String(segment.liveBytes).padding(11)
                              + "  " + percent(segment.deadRatio) + tag + "\n")
                }
            }
            out.flush()
            return .success
        }
    }
}

private func percent(_ value: Double) -> String {
    "\(Int((value * 100).rounded()))%"
}

extension String {
    /// Pads on the right with spaces to `width`.
    func padding(_ width: Int) -> String { self + String(repeating: " ", count: max(0, width - count)) }
}
