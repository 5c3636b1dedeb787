import ArgumentParser
import KVFile

/// The store argument every command that opens a store shares.
struct StoreAccessOptions: ParsableArguments {
    @Argument(help: ArgumentHelp("The store directory (created by the first write).", valueName: "store"), completion: .directory)
    var store: String

    /// Opens the store read-only: readers never lock, so they never wait.
    func openForReading() throws(KVFileError) -> Store {
        try Self.openForReading(store)
    }

    /// Opens the store at `path` read-only.
    static func openForReading(_ path: String) throws(KVFileError) -> Store {
        try Store(path: path, options: StoreOptions(readOnly: true, createIfMissing: false))
    }

    /// Opens the store for writing. Only commands that write data create a
    /// missing store (`put`, `load`): `delete` or `compact` of a mistyped path
    /// must not leave an empty store behind.
    func openForWriting(lock: LockOptions, durability: Durability = .none, create: Bool = false) throws(KVFileError) -> Store {
        try Self.openForWriting(store, lockTimeout: lock.lockTimeout, durability: durability, create: create)
    }

    /// Opens the store at `path` for writing.
    static func openForWriting(_ path: String, lockTimeout: Int, durability: Durability, create: Bool) throws(KVFileError) -> Store {
        var options = StoreOptions(readOnly: false, createIfMissing: create)
        options.lockTimeoutMilliseconds = lockTimeout
        options.durability = durability
        return try Store(path: path, options: options)
    }

    func validate() throws {
        if store.isEmpty { throw ValidationError("the store path must not be empty") }
    }
}

/// Options of commands that take the writer's lock.
struct LockOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp(
        "How long to wait for another writer to release the store, in milliseconds.", valueName: "ms"))
    var lockTimeout: Int = LockOptions.defaultTimeout

    static let defaultTimeout = 10_000

    func validate() throws {
        if lockTimeout < 0 { throw ValidationError("--lock-timeout must be 0 or more milliseconds") }
    }
}

/// Options of commands that write.
struct WriteOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp(
        "When writes reach the disk: none, always, interval or interval:MS. Whatever you choose, the tool syncs before it exits.",
        valueName: "mode"))
    var durability: String = "none"

    var mode: Durability { Durability(parsing: durability) ?? .none }

    func validate() throws {
        if Durability(parsing: durability) == nil {
            throw ValidationError("--durability takes none, always, interval or interval:MS (milliseconds), not '\(durability)'")
        }
    }
}

extension PairFormat: ExpressibleByArgument {}

/// Writes bytes to a file descriptor, and maps engine errors to exit codes.
enum Terminal {
    static func write(_ bytes: [UInt8], to fd: Int32) {
        _ = bytes.withUnsafeBytes { writeAll($0, to: fd) }
    }

    /// Writes every byte, retrying on EINTR; returns 0 or the errno that stopped it.
    static func writeAll(_ raw: UnsafeRawBufferPointer, to fd: Int32) -> Int32 {
        var done = 0
        while done < raw.count {
            let n = Glibc.write(fd, raw.baseAddress! + done, raw.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                return errno
            }
            done += n
        }
        return 0
    }

    static func error(_ message: String) {
        write(Array("kvfile: \(message)\n".utf8), to: 2)
    }

    static func isTerminal(_ fd: Int32) -> Bool { isatty(fd) == 1 }

    /// Reads all of standard input; with `limit`, stops reading as soon as
    /// there is more than that and throws `tooLong()` (nothing past the limit is kept in memory).
    static func readStandardInput(limit: Int? = nil, tooLong: () -> CLIError = { CLIError(message: "input too long", code: .invalidInput) }) throws -> [UInt8] {
        var result: [UInt8] = []
        try readStandardInputChunks { chunk in
            result.append(contentsOf: chunk)
            if let limit, result.count > limit { throw tooLong() }
        }
        return result
    }

    /// Fails when standard input was closed when the tool started (checked before a store is created for it).
    static func requireStandardInput() throws {
        if StandardStreams.inputWasClosed.load(ordering: .relaxed) {
            throw CLIError(message: "cannot read standard input: it was closed when kvfile started (give the value as an argument, or redirect it from a file)", code: .ioError)
        }
    }

    /// Calls `body` with each chunk of standard input as it arrives (up to 64 KiB each).
    static func readStandardInputChunks(_ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        try requireStandardInput()
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 16, alignment: 8)
        defer { chunk.deallocate() }
        while true {
            let n = Glibc.read(0, chunk.baseAddress!, chunk.count)
            if n < 0 {
                if errno == EINTR { continue }
                throw CLIError(message: "cannot read standard input: \(String(cString: strerror(errno)))", code: .ioError)
            }
            if n == 0 { return }
            try body(UnsafeRawBufferPointer(rebasing: chunk[0..<n]))
        }
    }

    /// Calls `body` with each line of standard input (without its newline) and its number, as lines arrive.
    static func forEachInputLine(_ body: (ArraySlice<UInt8>, Int) throws -> Void) throws {
        var carry: [UInt8] = []
        var number = 0
        try readStandardInputChunks { chunk in
            var start = 0
            for index in 0..<chunk.count where chunk[index] == 10 {
                number += 1
                if carry.isEmpty {
                    try body(Array(chunk[start..<index])[...], number)
                } else {
                    carry.append(contentsOf: chunk[start..<index])
                    try body(carry[...], number)
                    carry.removeAll(keepingCapacity: true)
                }
                start = index + 1
            }
            carry.append(contentsOf: chunk[start...])
        }
        if !carry.isEmpty { try body(carry[...], number + 1) }
    }
}

#if canImport(Glibc)
@preconcurrency import Glibc
#endif
