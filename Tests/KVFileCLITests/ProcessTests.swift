import Foundation
import KVFile
import Testing

/// Several processes on one store: a writer and readers, writers contending for the lock.
@Suite struct ProcessTests {
    @Test func aReaderProcessSeesAConsistentPrefixWhileAnotherProcessWrites() throws {
        let dir = TemporaryDirectory()
        let store = dir.sub("shared")
        #expect(try kvfile("put", store, "k0", "v0").status == 0)
        let total = 60
        let script = "for i in $(seq 1 \(total)); do \"$0\" put \"$1\" k$i v$i || exit 1; done"
        let child = Process()
        child.executableURL = URL(fileURLWithPath: "/bin/sh")
        child.arguments = ["-c", script, kvfileBinary, store]
        try child.run()
        let reader = try Store(path: store, options: .reader)
        var lastCount = 0
        var refreshes = 0
        while child.isRunning {
            try reader.refresh()
            refreshes += 1
            let count = reader.count
            #expect(count >= lastCount, "the reader went back in time")
            lastCount = count
            // Keys appear in order, each with its own value.
            for i in 0..<count { #expect(try reader.getString("k\(i)") == "v\(i)") }
            usleep(2000)
        }
        child.waitUntilExit()
        #expect(child.terminationStatus == 0)
        try reader.refresh()
        #expect(reader.count == total + 1)
        #expect(refreshes > 1)
    }

    @Test func twoWriterLoopsBothSucceedByWaitingForTheLock() throws {
        let dir = TemporaryDirectory()
        let store = dir.sub("contended")
        let loops = (0..<2).map { loop -> Process in
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/bin/sh")
            p.arguments = ["-c", "for i in $(seq 1 40); do \"$0\" put \"$1\" l\(loop)-$i x || exit 1; done", kvfileBinary, store]
            return p
        }
        for p in loops { try p.run() }
        for p in loops { p.waitUntilExit() }
        #expect(loops.allSatisfy { $0.terminationStatus == 0 })
        let reader = try Store(path: store, options: .reader)
        #expect(reader.count == 80)
    }

    @Test func aWriterThatCannotGetTheLockNamesTheHolder() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("held")
        let holder = try Store(path: path)
        try holder.put("a", "1")
        let blocked = try kvfile("put", "--lock-timeout", "100", path, "b", "2")
        #expect(blocked.status == 75)
        #expect(blocked.stderr.contains("locked by pid \(getpid())"))
        // Readers never wait for the lock.
        let read = try kvfile("get", path, "a")
        #expect(read.status == 0)
        #expect(read.text == "1")
        try holder.close()
        #expect(try kvfile("put", "--lock-timeout", "100", path, "b", "2").status == 0)
    }

    @Test func aKilledWriterLosesNoAcknowledgedWrite() throws {
        let dir = TemporaryDirectory()
        let store = dir.sub("killed")
        let rounds = ProcessInfo.processInfo.environment["KVFILE_STRESS"] == "1" ? 30 : 3
        var acknowledged = 0
        for round in 0..<rounds {
            // Each put that exited 0 is acknowledged; the kill lands mid-loop.
            let log = dir.sub("ack-\(round)")
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/bin/sh")
            p.arguments = ["-c", "i=0; while true; do i=$((i+1)); \"$0\" put \"$1\" r\(round)-$i v$i && echo $i >> \"$2\" || exit 1; done",
                           kvfileBinary, store, log]
            try p.run()
            usleep(UInt32(150_000 + round * 7_000))
            kill(-p.processIdentifier, SIGKILL)
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            // Also kill any kvfile child the shell had running.
            _ = try? run("/usr/bin/pkill", ["-KILL", "-f", "kvfile put \(store) r\(round)-"])
            let acked = (try? String(contentsOfFile: log, encoding: .utf8))?.split(separator: "\n").compactMap { Int($0) } ?? []
            acknowledged += acked.count
            let reader = try Store(path: store, options: .reader)
            for i in acked { #expect(try reader.getString("r\(round)-\(i)") == "v\(i)") }
        }
        #expect(acknowledged > 0)
        // The next writer recovers whatever the kills left.
        #expect(try kvfile("put", store, "after", "ok").status == 0)
    }
}

/// kill -9 of a real `kvfile compact` at several instants: the store always opens to the same contents.
@Suite struct CompactionKillTests {
    @Test func killingCompactAtAnyMomentLosesNothing() throws {
        let dir = TemporaryDirectory()
        let store = dir.sub("s")
        var lines = ""
        for round in 0..<40 {
            for key in 0..<500 { lines += "{\"key\":\"k\(key)\",\"value\":\"round \(round) \(String(repeating: "v", count: 80))\"}\n" }
        }
        #expect(try kvfile("load", store, "-q", input: Array(lines.utf8)).status == 0)
        let expected = try kvfile("dump", store, "--format", "ndjson").stdout
        let delays: [UInt32] = ProcessInfo.processInfo.environment["KVFILE_STRESS"] == "1"
            ? Array(stride(from: 0, to: 60_000, by: 1_500)) : [0, 2_000, 8_000, 20_000]
        for delay in delays {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: kvfileBinary)
            p.arguments = ["compact", "-q", store]
            try p.run()
            usleep(delay)
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            let dump = try kvfile("dump", store, "--format", "ndjson")
            #expect(dump.status == 0, "after kill at \(delay) µs: \(dump.stderr)")
            #expect(dump.stdout == expected, "contents changed after kill at \(delay) µs")
            // Every other round, add more garbage so the next compaction has work.
            #expect(try kvfile("load", store, "-q", input: Array(lines.utf8)).status == 0)
        }
        #expect(try kvfile("compact", "-q", store).status == 0)
        #expect(try kvfile("dump", store, "--format", "ndjson").stdout == expected)
        #expect(try kvfile("check", "-q", store).status == 0)
    }
}
