import ArgumentParser
import KVFile

/// `kvfile incr` and `kvfile decr`: a counter stored as decimal text.
struct IncrementCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "incr",
        abstract: "Add to a counter atomically and print its new value.",
        discussion: """
            The value is decimal text (so `kvfile get` prints a number); a key \
            without a value counts as 0. The read, the addition and the write \
            happen while this process holds the store's writer lock, so \
            concurrent increments from any number of processes all count. Exits \
            65 when the value is not an integer (or the result would overflow a \
            64-bit integer); nothing is written then. With --ttl (or \
            --expire-at) an increment that creates the counter gives it that \
            expiry; an existing counter keeps its own: a fixed window.

            Examples:
              kvfile incr ./app.kv visits
              kvfile incr --ttl 60s ./rate.kv "calls:$USER:$(date +%H%M)"
              kvfile incr ./app.kv stock -5
              kvfile decr ./app.kv stock 2
            """,
        aliases: []
    )

    @OptionGroup var counter: CounterArguments

    @Argument(help: "How much to add (default 1; negative numbers work).")
    var by: String?

    func run() throws {
        try runReportingErrors { try Counter.add(counter, by: by, sign: 1) }
    }
}

struct DecrementCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "decr",
        abstract: "Subtract from a counter atomically and print its new value.",
        discussion: """
            As `kvfile incr`, subtracting (default 1).

            Examples:
              kvfile decr ./app.kv tokens
              kvfile decr ./app.kv tokens 10
            """
    )

    @OptionGroup var counter: CounterArguments

    @Argument(help: "How much to subtract (default 1).")
    var by: String?

    func run() throws {
        try runReportingErrors { try Counter.add(counter, by: by, sign: -1) }
    }
}

/// The store and key `incr` and `decr` share.
struct CounterArguments: ParsableArguments {
    @OptionGroup var access: StoreAccessOptions
    @OptionGroup var write: WriteOptions
    @OptionGroup var lock: LockOptions
    @OptionGroup var expiry: ExpiryOptions

    @Argument(help: "The counter's key.")
    var key: String
}

enum Counter {
    static func add(_ counter: CounterArguments, by: String?, sign: Int64) throws -> CLIExitCode {
        let (access, write, lock, key) = (counter.access, counter.write, counter.lock, counter.key)
        let amountText = by.map(RawArguments.text(of:)) ?? "1"
        guard let amount = Int64(amountText) else {
            throw CLIError(message: "the amount must be an integer, not \(amountText)", code: .usage)
        }
        let keyBytes = try RawArguments.keyBytes(of: key)
        _ = try counter.expiry.deadline()  // refuses a time already past before the store is touched
        let store = try access.openForWriting(lock: lock, durability: write.mode, create: true)
        // This process is the store's one writer while it holds the lock: only the clock can change the key
        // meanwhile (its value expiring), and the write below is conditional on the version read.
        while true {
            let (current, version) = try keyBytes.withUnsafeBytes { raw in
                try store.withVersionedValue(forKey: raw) { value, seq in (value.map { Array($0) }, seq) }
            }
            // A counter keeps its expiry; --ttl sets one when the increment creates it (a fixed window).
            let requested = try counter.expiry.deadline()
            let deadline = current == nil ? requested : (try store.expiry(of: keyBytes) ?? requested)
            if let new = try increment(store, keyBytes, current: current, version: version, deadline: deadline, amount: amount, sign: sign) {
                try store.close()
                Array("\(new)\n".utf8).withUnsafeBytes { OutputBuffer.writeOrExit($0, to: 1) }
                return .success
            }
        }
    }

    /// Writes the new count if the key is still at `version`; nil when its value expired meanwhile.
    private static func increment(
        _ store: Store, _ keyBytes: [UInt8], current: [UInt8]?, version: UInt64, deadline: UInt64, amount: Int64, sign: Int64
    ) throws -> Int64? {
        let old: Int64
        if let current {
            guard let text = String(validating: current, as: UTF8.self), let number = Int64(text.trimmingWhitespace) else {
                try store.close()
                throw CLIError(message: "the value of key \(KeyText.describe(keyBytes)) is not an integer, so it cannot be a counter: \(String(decoding: current.prefix(40), as: UTF8.self))",
                               code: .invalidInput)
            }
            old = number
        } else {
            old = 0
        }
        let (step, stepOverflow) = amount.multipliedReportingOverflow(by: sign)
        let (new, overflow) = old.addingReportingOverflow(step)
        guard !overflow && !stepOverflow else {
            try store.close()
            throw CLIError(message: "\(old) \(sign > 0 ? "+" : "-") \(amount) overflows a 64-bit integer; nothing was written", code: .invalidInput)
        }
        if case .written = try store.put(keyBytes, Array(String(new).utf8), if: .version(anyOf: [version]), expiresAt: deadline) {
            return new
        }
        return nil
    }
}

extension String {
    /// Without leading and trailing spaces, tabs and newlines.
    var trimmingWhitespace: Substring {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }
        guard let start = firstIndex(where: { !isSpace($0) }), let end = lastIndex(where: { !isSpace($0) }) else { return "" }
        return self[start...end]
    }
}
