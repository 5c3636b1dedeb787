import ArgumentParser
import KVFile

struct CompactCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compact",
        abstract: "Give back the space of overwritten and deleted values.",
        discussion: """
            Seals the active segment, then rewrites every segment keeping only \
            the latest value of each key (with its sequence number) and the \
            deletions still needed, and removes the old files. Readers, and \
            `kvfile watch`, keep working meanwhile; a crash at any moment leaves \
            the store as it was or as compacted, never in between. Prints the \
            bytes on disk before and after, and the oldest seq `kvfile watch \
            --since` can now resume after.

            Examples:
              kvfile compact ./cache.kv
              kvfile stat ./cache.kv --json | jq .dead_bytes && kvfile compact ./cache.kv -q
            """
    )

    @OptionGroup var access: StoreAccessOptions
    @OptionGroup var lock: LockOptions

    @Flag(name: .shortAndLong, help: "Print nothing but errors.")
    var quiet = false

    func run() throws {
        try runReportingErrors {
            let store = try access.openForWriting(lock: lock)
            let before = try store.stats()
            let result = try store.compact()
            let after = try store.stats()
            try store.close()
            if !quiet {
                let out = OutputBuffer()
                out.write("compacted \(result.inputSegments) segments into \(result.outputSegments): \(before.segmentBytes + before.hintBytes) bytes before, \(after.segmentBytes + after.hintBytes) after; \(result.recordsCopied) records kept, \(result.recordsDropped) dropped in \(formatSeconds(result.seconds)); "
                          + "watchers resume after seq \(after.resumeFloor) or later\n")
                out.flush()
            }
            return .success
        }
    }

    private func formatSeconds(_ seconds: Double) -> String {
        let millis = Int((seconds * 1000).rounded())
        return millis < 1000 ? "\(millis) ms" : "\(millis / 1000).\(String(millis % 1000 / 10).leftPadded(2)) s"
    }
}

extension String {
    func leftPadded(_ width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}
