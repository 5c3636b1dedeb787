import ArgumentParser
import KVFile

struct LoadCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "load",
        abstract: "Add the pairs that `kvfile dump` wrote, from standard input.",
        discussion: """
            Reads ndjson (default) or json as `kvfile dump` writes them and puts \
            every pair, in atomic batches of up to --batch pairs, so that \
            `kvfile dump A --format ndjson | kvfile load B` makes B hold what A \
            holds, binary keys and values included. Existing keys are \
            overwritten; other keys stay. Bad input stops the load with the line \
            number; batches before it stay written. Reports the count on \
            standard error.

            Examples:
              kvfile dump ./cache.kv --format ndjson > backup.ndjson
              kvfile load ./restored.kv < backup.ndjson
              echo '{"key":"a","value":"1"}' | kvfile load ./cache.kv
              kvfile load ./cache.kv --format json < pairs.json
            """
    )

    @OptionGroup var access: StoreAccessOptions
    @OptionGroup var write: WriteOptions
    @OptionGroup var lock: LockOptions

    @Option(name: .long, help: "ndjson or json.")
    var format: LoadFormat = .ndjson

    @Option(name: .long, help: "Pairs per atomic batch.")
    var batch: Int = 1000

    @Flag(name: .shortAndLong, help: "Print nothing but errors.")
    var quiet = false

    func validate() throws {
        if batch < 1 { throw ValidationError("--batch must be at least 1") }
    }

    func run() throws {
        try runReportingErrors {
            if Terminal.isTerminal(0) && !quiet {
                Terminal.error("reading pairs from standard input; end with Ctrl-D")
            }
            try Terminal.requireStandardInput()  // before the store is created for it
            let store = try access.openForWriting(lock: lock, durability: write.mode, create: true)
            let progress = Progress("loading", quiet: quiet)
            var loaded = 0
            var expired = 0
            var pending = WriteBatch()
            func flush() throws {
                if pending.isEmpty { return }
                try store.write(pending)
                loaded += pending.count
                pending = WriteBatch()
                progress.update(loaded, nil)
            }
            switch format {
            case .json:
                // One document: read whole, then written batch by batch.
                for (index, (key, value)) in try PairReader.jsonDocument(Terminal.readStandardInput()).enumerated() {
                    if let problem = Self.problem(key: key, value: value) {
                        throw CLIError(message: "pair \(index + 1) of the document: \(problem)", code: .invalidInput)
                    }
                    pending.put(key, value)
                    if pending.count >= batch { try flush() }
                }
            case .ndjson:
                // Line by line as input arrives: memory holds one batch, and each batch is written as soon as it is complete.
                try Terminal.forEachInputLine { line, lineNumber in
                    if line.allSatisfy({ $0 == 32 || $0 == 9 || $0 == 13 }) { return }
                    let (key, value, expiresAt) = try PairReader.ndjsonLine(line, number: lineNumber)
                    if let problem = Self.problem(key: key, value: value) {
                        throw CLIError(message: "line \(lineNumber): \(problem)", code: .invalidInput)
                    }
                    // A pair that expired meanwhile is not loaded (as if it had been deleted).
                    if expiresAt != 0 && expiresAt <= WallClock.milliseconds() {
                        expired += 1
                        return
                    }
                    pending.put(key, value, expiresAt: expiresAt)
                    if pending.count >= batch { try flush() }
                }
            }
            try flush()
            try store.close()
            progress.finish()
            if !quiet {
                Terminal.error("loaded \(loaded) \(loaded == 1 ? "pair" : "pairs") into \(access.store)" + (expired > 0 ? "; left out \(expired) whose expires_at had passed" : ""))
            }
            return .success
        }
    }
}

extension LoadCommand {
    /// Why a store cannot hold this pair (nil: it can), checked as the pair is read so
    /// the message names its line (the store's own check, at the batch's write, cannot).
    static func problem(key: [UInt8], value: [UInt8]) -> String? {
        if let problem = RawArguments.keyProblem(key) { return problem }
        if value.count > RecordFormat.maxValueLength {
            return "value of \(value.count) bytes for key \(KeyText.describe(key)) is larger than the limit (\(RecordFormat.maxValueLength) bytes)"
        }
        return nil
    }
}

/// What `load` reads: the machine forms `dump` writes (its text form is for people).
enum LoadFormat: String, CaseIterable, ExpressibleByArgument {
    case ndjson, json
}
