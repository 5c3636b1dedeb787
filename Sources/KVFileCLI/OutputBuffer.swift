#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// Buffered writes to standard output. A closed pipe (`kvfile dump | head`)
/// ends the program quietly with status 0, as Unix tools do.
final class OutputBuffer {
    private var bytes: [UInt8] = []
    private let fd: Int32

    init(fd: Int32 = 1) {
        self.fd = fd
        bytes.reserveCapacity(1 << 16)
    }

    func write(_ data: some Sequence<UInt8>) {
        bytes.append(contentsOf: data)
        if bytes.count >= 1 << 16 { flush() }
    }

    func write(_ text: String) { write(text.utf8) }

    /// Lets `body` append bytes to the buffer in place.
    func append(_ body: (inout [UInt8]) -> Void) {
        body(&bytes)
        if bytes.count >= 1 << 16 { flush() }
    }

    func flush() {
        guard !bytes.isEmpty else { return }
        bytes.withUnsafeBytes { OutputBuffer.writeOrExit($0, to: fd) }
        bytes.removeAll(keepingCapacity: true)
    }

    /// Writes all of `raw`, or ends the program: quietly with 0 when the
    /// reader closed the pipe, with 74 and a message for any other failure (a
    /// full disk, /dev/full): output that was cut short must not look complete.
    static func writeOrExit(_ raw: UnsafeRawBufferPointer, to fd: Int32) {
        let failure = Terminal.writeAll(raw, to: fd)
        if failure == EPIPE { exit(0) }
        if failure != 0 {
            Terminal.error("cannot write \(fd == 1 ? "standard output" : "output"): \(String(cString: strerror(failure)))")
            exit(CLIExitCode.ioError.rawValue)
        }
    }
}

/// Progress on standard error, only when it is a terminal and not --quiet.
final class Progress {
    private let enabled: Bool
    private let label: String
    private var lastShown: UInt64 = 0

    init(_ label: String, quiet: Bool) {
        self.label = label
        enabled = !quiet && isatty(2) == 1
    }

    func update(_ done: Int, _ total: Int?) {
        guard enabled else { return }
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let ms = UInt64(now.tv_sec) * 1000 + UInt64(now.tv_nsec) / 1_000_000
        guard ms - lastShown >= 100 else { return }
        lastShown = ms
        let text = total.map { "\r\(label): \(done * 100 / max($0, 1))%" } ?? "\r\(label): \(done)"
        Terminal.write(Array(text.utf8), to: 2)
    }

    func finish() {
        guard enabled, lastShown > 0 else { return }
        Terminal.write(Array("\r\u{1B}[K".utf8), to: 2)
    }
}
