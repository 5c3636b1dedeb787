import ArgumentParser
import KVFile

struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Verify every checksum of every file; --repair salvages a damaged store.",
        discussion: """
            Prints each problem with its file and byte offset, then a summary. \
            Warnings are things the next writer mends by itself (a torn tail after \
            a crash, a missing hint file, an index file it must build anew); \
            errors are damage; past the first damage in a file it reads on from the \
            next record start the block map or hint file knows, so one run names \
            every damaged place. An index closed cleanly is compared with the log \
            key by key. Exits 0 when there is no error, 76 when there is. Reads \
            without the writer's lock.

            --repair rebuilds the index from the log when only the index is \
            wrong. Otherwise it takes the writer's lock, copies every readable record (with \
            its sequence number) into fresh segment files, moves the damaged files \
            into a damaged-TIME directory inside the store, and reports what it \
            dropped. Keys whose latest record was lost fall back to their newest \
            readable earlier version.

            Examples:
              kvfile check ./cache.kv
              kvfile check ./cache.kv --repair
            """
    )

    @OptionGroup var access: StoreAccessOptions
    @OptionGroup var lock: LockOptions

    @Flag(name: .long, help: "Salvage what is readable into a healthy store.")
    var repair = false

    @Flag(name: .shortAndLong, help: "Print only problems.")
    var quiet = false

    func run() throws {
        try runReportingErrors {
            let progress = Progress("checking", quiet: quiet)
            let report = try StoreCheck.run(path: access.store) { done, total in progress.update(done, total) }
            progress.finish()
            let out = OutputBuffer()
            for problem in report.problems { out.write("\(problem)\n") }
            let errors = report.problems.filter { $0.severity == .error }.count
            let warnings = report.problems.count - errors
            if !quiet {
                out.write("\(report.segments) segments, \(report.hintFiles) hint files, \(report.records) records, \(report.bytes) bytes checked: \(errors) errors, \(warnings) warnings\n")
            }
            out.flush()
            guard repair else { return report.isHealthy ? .success : .corrupt }
            if report.problems.isEmpty {
                if !quiet { Terminal.error("nothing to repair") }
                return .success
            }
            if report.problems.allSatisfy({ $0.file == "kvfile.index" }) {
                // The log is sound: only the index, which is built from it, is wrong.
                try StoreRepair.rebuildIndex(path: access.store, lockTimeoutMilliseconds: lock.lockTimeout)
                out.write("repaired: the index was built anew from the log\n")
                out.flush()
                return .success
            }
            let result = try StoreRepair.run(path: access.store, lockTimeoutMilliseconds: lock.lockTimeout)
            for dropped in result.dropped { out.write("dropped: \(dropped.file) at byte offset \(dropped.offset ?? 0): \(dropped.message)\n") }
            out.write("repaired: \(result.keysKept) keys kept from \(result.recordsRead) readable records")
            if let backup = result.backupDirectory { out.write("; damaged files moved to \(backup)") }
            out.write("\n")
            out.flush()
            return .success
        }
    }
}
