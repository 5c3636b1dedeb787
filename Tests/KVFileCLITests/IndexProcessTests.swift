import Foundation
@testable import KVFile
import Synchronization
import Testing

/// The shared index seen from real `kvfile` processes: cold reads beside a
/// writer in another process, and writers killed with SIGKILL at any moment.
@Suite struct IndexProcessTests {
    /// Cold `kvfile get` processes while a writer overwrites, deletes, grows
    /// the index and compacts: every value read is one the key had, never
    /// older than one read before, and a put is visible once it returned.
    @Test func coldGetsBesideAChurningWriterNeverGoBackInTime() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("s")
        var options = StoreOptions()
        options.segmentSize = 16 << 10
        let writer = try Store(path: path, options: options)
        let keys = 500
        for k in 0..<keys { try writer.put("key-\(k)", "0") }
        let written = Atomic<Int>(0)
        let stop = Atomic<Bool>(false)
        let thread = Thread {
            var version = 0
            while !stop.load(ordering: .acquiring) {
                version += 1
                let key = "key-\(version % keys)"
                if version % 11 == 0 { _ = try? writer.delete(key) } else { _ = try? writer.put(key, "\(version)") }
                written.store(version, ordering: .releasing)
                if version % 5000 == 0 { _ = try? writer.compact() }
            }
        }
        thread.start()
        defer { stop.store(true, ordering: .releasing) }
        var seen = [Int](repeating: 0, count: keys)
        var problems: [String] = []
        for read in 0..<120 {
            let k = read * 37 % keys
            // What was written before this process starts must be visible to it.
            let before = written.load(ordering: .acquiring)
            let result = try kvfile("get", path, "key-\(k)")
            if result.status == 1 { continue }  // deleted just now
            guard result.status == 0, let version = Int(result.text) else {
                problems.append("key-\(k): exit \(result.status) \(result.stderr)")
                continue
            }
            if version != 0 && version % keys != k { problems.append("key-\(k) read \(version), which it never had") }
            if version < seen[k] { problems.append("key-\(k) read \(version) after \(seen[k])") }
            // The last write of this key before the process started, if it was a put.
            let last = before - ((before - k) % keys + keys) % keys
            if last > 0 && last % 11 != 0 && version < last { problems.append("key-\(k) read \(version), older than \(last) written before") }
            seen[k] = version
        }
        stop.store(true, ordering: .releasing)
        while thread.isExecuting { usleep(1000) }
        #expect(problems.isEmpty, "\(problems.prefix(5))")
        #expect(written.load(ordering: .acquiring) > 1000)
        try writer.close()
    }

    /// SIGKILL of `kvfile load` at random moments (mid-write, mid-roll,
    /// mid-resize of the index): cold reads afterwards give each key a value
    /// from a load that ran, never one older than the last load that finished.
    @Test func killingAWriterAtAnyMomentNeverGivesAWrongValue() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("s")
        let keys = 3000
        func document(_ round: Int) -> [UInt8] {
            Array((0..<keys).map { "{\"key\":\"k\($0)\",\"value\":\"r\(round)-\($0)\"}\n" }.joined().utf8)
        }
        #expect(try kvfile("load", path, "-q", input: document(0)).status == 0)
        var finished = 0
        var random = SystemRandomNumberGenerator()
        let rounds = ProcessInfo.processInfo.environment["KVFILE_STRESS"] == "1" ? 40 : 8
        for round in 1...rounds {
            let input = dir.sub("in-\(round)")
            _ = FileManager.default.createFile(atPath: input, contents: Data(document(round)))
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/bin/sh")
            p.arguments = ["-c", "exec \"$0\" load \"$1\" -q < \"$2\"", kvfileBinary, path, input]
            try p.run()
            usleep(UInt32.random(in: 0..<60_000, using: &random))
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            if p.terminationReason == .exit && p.terminationStatus == 0 { finished = round }
            let dump = try kvfile("dump", path, "--format", "ndjson")
            #expect(dump.status == 0, "round \(round): \(dump.stderr)")
            var values: [String: String] = [:]
            for line in dump.text.split(separator: "\n") {
                guard let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String],
                      let key = object["key"], let value = object["value"] else { continue }
                values[key] = value
            }
            #expect(values.count == keys, "round \(round): \(values.count) keys")
            for k in stride(from: 0, to: keys, by: 1) {
                let value = values["k\(k)"] ?? "missing"
                let parts = value.dropFirst().split(separator: "-")
                guard value.first == "r", parts.count == 2, let from = Int(parts[0]), Int(parts[1]) == k,
                      from >= finished, from <= round else {
                    Issue.record("round \(round) (last finished \(finished)): k\(k) = \(value)")
                    break
                }
            }
            // Cold gets agree with the dump.
            for k in [0, keys / 2, keys - 1] {
                let get = try kvfile("get", path, "k\(k)")
                #expect(get.status == 0 && get.text == values["k\(k)"], "round \(round): get k\(k) = \(get.text), dump said \(values["k\(k)"] ?? "")")
            }
        }
        #expect(try kvfile("check", path).status == 0)
    }

    /// Defect (new-user trial): a store copied file by file while a writer ran
    /// could get an index newer than its segments (state open, this boot). The
    /// copy's `stat` counted keys its log lacks, `put` wrote its record and
    /// then exited 76, and `check` found nothing. An index now records the
    /// file it was marked open in; a copy is another file, and is rebuilt.
    @Test func aStoreCopiedWhileAWriterRanDoesNotTrustTheCopiedIndex() throws {
        let dir = TemporaryDirectory()
        let original = dir.sub("original"), copy = dir.sub("copy")
        let writer = try Store(path: original)
        for i in 1...20 { try writer.put("k\(i)", "v\(i)") }
        // The segments first, the index after 20 more writes: what cp -r of a live store can do.
        try FileManager.default.createDirectory(atPath: copy, withIntermediateDirectories: true)
        for name in try FileManager.default.contentsOfDirectory(atPath: original) where name.hasSuffix(".kvseg") {
            try FileManager.default.copyItem(atPath: original + "/" + name, toPath: copy + "/" + name)
        }
        for i in 21...40 { try writer.put("k\(i)", "v\(i)") }
        try FileManager.default.copyItem(atPath: original + "/kvfile.index", toPath: copy + "/kvfile.index")
        try writer.close()

        let check = try kvfile("check", copy)
        #expect(check.status == 0)
        #expect(check.text.contains("copied while a writer had it open") || check.stderr.contains("copied while a writer had it open"),
                "\(check.text)\(check.stderr)")
        let stat = try kvfile("stat", copy)
        #expect(stat.text.contains("newest_seq      20"), "\(stat.text)")
        try expectOnlyTheLogsKeysAndAPutThatLands(copy)
    }

    /// What a store whose index is ahead of its log must answer, from the log:
    /// k1…k20 and not k21…k40, and a put that lands where a scan finds it.
    private func expectOnlyTheLogsKeysAndAPutThatLands(_ path: String) throws {
        #expect(try kvfile("get", path, "k30").status == 1)
        let put = try kvfile("put", path, "zz", "NEW")
        #expect(put.status == 0, "\(put.stderr)")
        #expect(try kvfile("get", path, "zz").text == "NEW")
        #expect(try kvfile("get", path, "k20").text == "v20")
        let check = try kvfile("check", path)
        #expect(check.status == 0 && !check.text.contains("torn"), "\(check.text)\(check.stderr)")
    }

    /// A backup taken while a writer ran, written back in place after that
    /// writer died (`cp -r backup/. live/`): the index is the same file, open
    /// in this boot, and its log end lies past the restored segments' records.
    /// Trusted, `put` wrote after a gap of zeros (lost at the next recovery)
    /// and stat counted keys the log lacks; the log end is now checked against
    /// the record that must end there.
    @Test func anIndexWrittenBackInPlaceAheadOfItsSegmentsIsNotTrusted() throws {
        let dir = TemporaryDirectory()
        let live = dir.sub("live"), saved = dir.sub("saved")
        let writer = try Store(path: live)
        for i in 1...20 { try writer.put("k\(i)", "v\(i)") }
        try FileManager.default.createDirectory(atPath: saved, withIntermediateDirectories: true)
        let segments = try FileManager.default.contentsOfDirectory(atPath: live).filter { $0.hasSuffix(".kvseg") }
        for name in segments { try FileManager.default.copyItem(atPath: live + "/" + name, toPath: saved + "/" + name) }
        for i in 21...40 { try writer.put("k\(i)", "v\(i)") }
        writer.abandonForCrashTest()  // as kill -9 would leave it: the index open, in this boot
        let inode = { (path: String) throws -> UInt64? in
            (try FileManager.default.attributesOfItem(atPath: path)[.systemFileNumber] as? NSNumber)?.uint64Value
        }
        let indexInode = try inode(live + "/kvfile.index")
        // Written back in place, as cp does over an existing file: same inode, earlier bytes.
        for name in segments { try Data(contentsOf: URL(fileURLWithPath: saved + "/" + name)).write(to: URL(fileURLWithPath: live + "/" + name)) }
        _ = try? FileManager.default.removeItem(atPath: live + "/kvfile.lock")
        #expect(try inode(live + "/kvfile.index") == indexInode)

        let stat = try kvfile("stat", live)
        #expect(stat.status == 0 && stat.text.contains("keys            20\n"), "\(stat.text)\(stat.stderr)")
        try expectOnlyTheLogsKeysAndAPutThatLands(live)
        // Every record where a scan of the log finds it: nothing written after a gap.
        let reopened = try Store(path: live)
        #expect(try reopened.getString("zz") == "NEW" && reopened.count == 21)
        try reopened.close()
    }
}
