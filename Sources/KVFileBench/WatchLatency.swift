import Foundation
import KVFile

/// watchlatency: puts in this process, a LogTailer in a second process (this
/// binary again with --tail_child), latency from just before the put to the
/// event in the child, measured on CLOCK_MONOTONIC, which both processes share.
enum WatchLatency {
    static func monotonicNanoseconds() -> UInt64 {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return UInt64(t.tv_sec) * 1_000_000_000 + UInt64(t.tv_nsec)
    }

    static func run(store: Store, directory: String, count: Int, report: (String) -> Void) throws {
        let child = Process()
        child.executableURL = URL(fileURLWithPath: CommandLine.arguments[0].hasPrefix("/") ? CommandLine.arguments[0] : FileManager.default.currentDirectoryPath + "/" + CommandLine.arguments[0])
        child.arguments = ["--tail_child=" + directory, "--num=\(count)"]
        let output = Pipe()
        child.standardOutput = output
        try child.run()
        let reader = output.fileHandleForReading
        var ready = Data()
        while !String(decoding: ready, as: UTF8.self).contains("ready") {
            let chunk = reader.availableData
            if chunk.isEmpty { break }
            ready.append(chunk)
        }
        var key = Array("watch-latency-00".utf8)
        for i in 0..<count {
            var stamp = monotonicNanoseconds().littleEndian
            let value = withUnsafeBytes(of: &stamp) { Array($0) } + Array(repeating: 0x2E, count: 24)
            key[14] = UInt8(48 + (i / 10) % 10)
            key[15] = UInt8(48 + i % 10)
            try store.put(key, value)
            usleep(200)  // measure latency, not a backlog
        }
        let result = reader.readDataToEndOfFile()
        child.waitUntilExit()
        let text = String(decoding: result, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        report("watchlatency : " + (text.isEmpty ? "child failed" : text))
    }

    /// The child: tail the store, print "ready", then the percentiles after `count` events.
    static func runChild(directory: String, count: Int) {
        do {
            let tailer = try LogTailer(path: directory, start: .now)
            FileHandle.standardOutput.write(Data("ready\n".utf8))
            var latencies: [UInt64] = []
            latencies.reserveCapacity(count)
            let deadline = monotonicNanoseconds() + 120_000_000_000
            while latencies.count < count && monotonicNanoseconds() < deadline {
                for event in try tailer.poll() {
                    let now = monotonicNanoseconds()
                    guard let value = event.newValue, value.count >= 8 else { continue }
                    let sent = value.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
                    latencies.append(now &- sent)
                }
                if latencies.count < count { tailer.wait(milliseconds: 200) }
            }
            latencies.sort()
            func percentile(_ p: Double) -> Double {
                guard !latencies.isEmpty else { return 0 }
                return Double(latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))]) / 1000
            }
            print(String(format: "p50 %.1f µs, p99 %.1f µs, max %.1f µs (%d events, put in one process to event in another)",
                         percentile(0.5), percentile(0.99), percentile(1.0), latencies.count))
        } catch {
            print("tailer failed: \(error)")
        }
    }
}

final class Flag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.lock(); value = true; lock.unlock() }
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }
}

final class ResultBox: @unchecked Sendable {
    private let lock = NSLock()
    private var storedValue: CompactionResult?
    private var storedError: Error?
    var value: CompactionResult? {
        get { lock.lock(); defer { lock.unlock() }; return storedValue }
        set { lock.lock(); storedValue = newValue; lock.unlock() }
    }
    var error: Error? {
        get { lock.lock(); defer { lock.unlock() }; return storedError }
        set { lock.lock(); storedError = newValue; lock.unlock() }
    }
}
