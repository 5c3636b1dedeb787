// kvfile-bench: LevelDB db_bench-style flags and output over the exact
// shared benchmark workload (version 1), so figures compare with the peers'.
#if canImport(Glibc)
@preconcurrency import Glibc
#endif
import KVFile

struct BenchConfig {
    var benchmarks = ["fillseq", "fillrandom", "overwrite", "readrandom", "readmissing", "deleterandom", "open"]
    var num = 1_000_000
    var valueSize = 100
    var sync = false
    var db = "/tmp/kvfile-bench"
    var segmentSize = 64 << 20
    var threads = 8
    /// Internal: run as the second-process tailer of watchlatency.
    var tailChild: String?

    static let usage = """
        usage: kvfile-bench [--benchmarks=LIST] [--num=N] [--value_size=V] [--sync=0|1] [--db=DIR]
                            [--segment_size=BYTES] [--threads=T]
          LIST: comma-separated, run in order: fillseq fillrandom overwrite readrandom
                readmissing readathand deleterandom compact open watchlatency fillsync
                (default: fillseq,fillrandom,overwrite,readrandom,readmissing,deleterandom,open)
          compact: compaction MB/s while one thread keeps overwriting, and its longest put
          watchlatency: put in this process to event in a second process, p50/p99
          fillsync: durable puts/s with 1 thread and with --threads threads (group commit)
          readathand: readrandom with the read that declines to wait (the server's GETs)
          The workload is the shared benchmark workload, version 1. DIR is deleted and recreated.
        """

    static func parse(_ arguments: [String]) -> Result<BenchConfig, BenchUsageError> {
        var config = BenchConfig()
        for argument in arguments {
            if argument == "--help" || argument == "-h" { return .failure(BenchUsageError(message: usage, code: 0)) }
            guard argument.hasPrefix("--"), let equals = argument.firstIndex(of: "=") else {
                return .failure(BenchUsageError(message: "kvfile-bench: cannot parse \(argument)\n" + usage, code: 64))
            }
            let name = String(argument[argument.index(argument.startIndex, offsetBy: 2)..<equals])
            let value = String(argument[argument.index(after: equals)...])
            switch name {
            case "benchmarks": config.benchmarks = value.split(separator: ",").map(String.init)
            case "num": guard let n = Int(value), n > 0 else { return .failure(.bad(argument)) }; config.num = n
            case "value_size": guard let n = Int(value), n >= 0 else { return .failure(.bad(argument)) }; config.valueSize = n
            case "sync": guard value == "0" || value == "1" else { return .failure(.bad(argument)) }; config.sync = value == "1"
            case "db": guard !value.isEmpty else { return .failure(.bad(argument)) }; config.db = value
            case "segment_size": guard let n = Int(value), n >= 4096 else { return .failure(.bad(argument)) }; config.segmentSize = n
            case "threads": guard let n = Int(value), n >= 1, n <= 256 else { return .failure(.bad(argument)) }; config.threads = n
            case "tail_child": config.tailChild = value
            default: return .failure(BenchUsageError(message: "kvfile-bench: unknown flag --\(name)\n" + usage, code: 64))
            }
        }
        let known: Set = ["fillseq", "fillrandom", "overwrite", "readrandom", "readmissing", "deleterandom", "open",
                          "compact", "watchlatency", "fillsync", "readathand"]
        if let unknown = config.benchmarks.first(where: { !known.contains($0) }) {
            return .failure(BenchUsageError(message: "kvfile-bench: unknown benchmark \(unknown)\n" + usage, code: 64))
        }
        return .success(config)
    }
}

struct BenchUsageError: Error {
    var message: String
    var code: Int32
    static func bad(_ argument: String) -> BenchUsageError {
        BenchUsageError(message: "kvfile-bench: bad value in \(argument)\n" + BenchConfig.usage, code: 64)
    }
}

@main
enum BenchMain {
    static func main() {
        switch BenchConfig.parse(Array(CommandLine.arguments.dropFirst())) {
        case .failure(let error):
            print(error.message)
            exit(error.code)
        case .success(let config):
            if let directory = config.tailChild {
                WatchLatency.runChild(directory: directory, count: config.num)
                return
            }
            do {
                try BenchRunner(config: config).run()
            } catch {
                print("kvfile-bench: \(error)")
                exit(1)
            }
        }
    }
}
