import Foundation
@testable import KVFile
import Testing

/// Starts `kvfile watch` (or a shell pipeline) in the background, output to a file.
final class Background {
    let process = Process()
    let outputPath: String

    init(_ executable: String, _ arguments: [String], output: String) throws {
        outputPath = output
        _ = FileManager.default.createFile(atPath: output, contents: nil)
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: output))
        process.standardError = FileHandle.standardError
        try process.run()
    }

    var lines: [String] {
        ((try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    /// Waits until the process ends; false after `seconds`.
    func waitForExit(seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        return !process.isRunning
    }

    func waitForLines(_ count: Int, seconds: Double = 10) -> [String] {
        let deadline = Date().addingTimeInterval(seconds)
        while lines.count < count && Date() < deadline { usleep(10_000) }
        return lines
    }

    deinit { if process.isRunning { process.terminate() } }
}

func event(_ line: String) -> [String: Any] {
    (try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]) ?? [:]
}

@Suite struct WatchTests {
    @Test func aTailerInThisProcessFollowsAWriterProcessFieldByField() throws {
        let dir = TemporaryDirectory()
        let store = dir.sub("s")
        #expect(try kvfile("put", store, "seed", "0").status == 0)
        let tailer = try LogTailer(path: store, start: .now)
        // The writer: puts, overwrites, deletes, a batch (load), a compaction; small enough values to roll segments.
        var script = ""
        var model: [String: String] = ["seed": "0"]
        var expected: [(String, String, String?, String?)] = []  // topic, key, new, old
        func put(_ key: String, _ value: String) {
            script += "\"$0\" put \"$1\" '\(key)' '\(value)' || exit 1\n"
            expected.append((model[key] == nil ? "kvs_created" : "kvs_updated", key, value, model[key]))
            model[key] = value
        }
        func delete(_ key: String) {
            script += "\"$0\" delete \"$1\" '\(key)' || exit 1\n"
            expected.append(("kvs_deleted", key, nil, model[key]))
            model[key] = nil
        }
        for i in 0..<12 { put("k\(i % 4)", "value \(i)") }
        delete("k1")
        delete("seed")
        script += "printf '%s\\n' '{\"key\":\"b1\",\"value\":\"x\"}' '{\"key\":\"k0\",\"value\":\"batched\"}' | \"$0\" load -q \"$1\" || exit 1\n"
        expected.append(("kvs_created", "b1", "x", nil))
        expected.append(("kvs_updated", "k0", "batched", model["k0"]))
        model["b1"] = "x"; model["k0"] = "batched"
        script += "\"$0\" compact -q \"$1\" || exit 1\n"
        put("after-compact", "yes")
        put("k0", "final")
        let writer = Process()
        writer.executableURL = URL(fileURLWithPath: "/bin/sh")
        writer.arguments = ["-c", script, kvfileBinary, store]
        try writer.run()
        var events: [ChangeEvent] = []
        let deadline = Date().addingTimeInterval(20)
        while events.count < expected.count && Date() < deadline {
            events += try tailer.poll()
            if events.count < expected.count { tailer.wait(milliseconds: 100) }
        }
        writer.waitUntilExit()
        #expect(writer.terminationStatus == 0)
        #expect(events.count == expected.count)
        for (event, want) in zip(events, expected) {
            #expect(event.topic.rawValue == want.0)
            #expect(String(decoding: event.key, as: UTF8.self) == want.1)
            #expect(event.newValue.map { String(decoding: $0, as: UTF8.self) } == want.2)
            #expect(event.oldValue.map { String(decoding: $0, as: UTF8.self) } == want.3)
        }
        #expect(events.map(\.seq) == Array(2...UInt64(expected.count + 1)))
    }

    @Test func watchPrintsNDJSONAndStopsAfterCount() throws {
        let dir = TemporaryDirectory()
        let store = dir.sub("s")
        #expect(try kvfile("put", store, "seed", "0").status == 0)
        // --since 1 (the seed's seq) makes the test independent of how fast watch starts.
        let watch = try Background(kvfileBinary, ["watch", store, "--since", "1", "--count", "3", "--json-values"], output: dir.sub("out"))
        #expect(try kvfile("put", store, "artists", #"[{"first_name": "Cesária"}]"#).status == 0)
        #expect(try kvfile("put", store, "artists", "plain text").status == 0)
        #expect(try kvfile("load", "-q", store, input: Array(#"{"key":"bin","value_base64":"AP8="}"#.utf8)).status == 0)
        #expect(watch.waitForExit(seconds: 10))
        #expect(watch.process.terminationStatus == 0)
        let lines = watch.lines
        #expect(lines.count == 3)
        #expect(lines[0].hasPrefix(#"{"topic":"kvs_created","seq":2,"ts":"#))
        #expect(lines[0].hasSuffix(#","key":"artists","new_value":[{"first_name":"Cesária"}]}"#))
        let second = event(lines[1])
        #expect(second["topic"] as? String == "kvs_updated")
        #expect(second["new_value"] as? String == "plain text")
        #expect((second["old_value"] as? [[String: String]])?.first?["first_name"] == "Cesária")
        #expect(event(lines[2])["new_value_base64"] as? String == "AP8=")
    }

    @Test func resumeTopicFilterAndHistoryCompacted() throws {
        let dir = TemporaryDirectory()
        let store = dir.sub("s")
        for i in 0..<5 { _ = try kvfile("put", store, "k", "v\(i)") }
        _ = try kvfile("delete", store, "k")
        let resumed = try kvfile("watch", store, "--since", "3", "--count", "3")
        #expect(resumed.text.split(separator: "\n").map { event(String($0))["seq"] as? Int } == [4, 5, 6])
        let deletes = try kvfile("watch", store, "--from-start", "--topic", "kvs_deleted", "--count", "1")
        #expect(event(deletes.text.trimmingCharacters(in: .newlines))["old_value"] as? String == "v4")
        let compacted = try kvfile("compact", store)
        #expect(compacted.text.contains("watchers resume after seq 6 or later"), "\(compacted.text)")
        let gone = try kvfile("watch", store, "--since", "2")
        #expect(gone.status == 3)
        #expect(gone.stderr.contains("oldest point to resume from is seq 6"))
        let badTopic = try kvfile("watch", store, "--topic", "kvs_renamed")
        #expect(badTopic.status == 64)
    }

    /// Defect: after a compaction that overlapped a delete and an update (the
    /// writer goes on while compaction copies), `watch --since` the floor it
    /// reported printed no kvs_deleted and called the update kvs_created: the
    /// records they replaced were gone, the floor lay below the writes.
    @Test func watchSinceTheFloorOfACompactionThatOverlappedWritesPrintsTheirOldValues() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("s")
        do {
            var options = StoreOptions()
            options.autoCompaction = nil
            let store = try Store(path: path, options: options)
            for i in 0..<40 { try store.put("k\(i % 4)", "v\(i)") }
            store.compactionFailpoint = { step in
                guard step == .planned else { return false }
                #expect(throws: Never.self) {
                    try store.delete("k0")
                    try store.put("k1", "during")
                }
                return false
            }
            try store.compact()
            store.compactionFailpoint = nil
            try store.put("k2", "after")
            try store.close()
        }
        // seq 40 was the floor before: resuming there now says the history is gone and names seq 42.
        let below = try kvfile("watch", path, "--since", "40", "--count", "2")
        #expect(below.status == 3)
        #expect(below.stderr.contains("oldest point to resume from is seq 42"), "\(below.stderr)")
        // stat says where resuming can start.
        #expect(try kvfile("stat", path, "--json").text.contains(#""resume_floor":42"#))
        let atFloor = try kvfile("watch", path, "--since", "42", "--count", "1")
        #expect(atFloor.status == 0)
        let after = event(atFloor.text.trimmingCharacters(in: .newlines))
        #expect(after["topic"] as? String == "kvs_updated")
        #expect(after["old_value"] as? String == "v38")
        // From the start, the picture at the floor has no k0 and k1 = "during".
        let fromStart = try kvfile("watch", path, "--from-start", "--count", "1")
        #expect(event(fromStart.text.trimmingCharacters(in: .newlines))["seq"] as? Int == 43)
        #expect(try kvfile("get", path, "k1").text == "during")
        #expect(try kvfile("get", path, "k0").status == 1)
    }

    /// Defect: `kvfile watch EMPTYDIR` said "A write creates the store.. A
    /// write such as …" (the library gave a remedy, the tool another); `--since -1`
    /// quoted the value with an invisible character before it.
    @Test func watchMessagesSayOneThingOnceAndQuoteWhatWasTyped() throws {
        let dir = TemporaryDirectory()
        let empty = dir.sub("empty")
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        let result = try kvfile("watch", empty)
        #expect(result.status == 66)
        #expect(result.stderr == "kvfile: no store at \(empty): the directory is empty. A write such as `kvfile put \(empty) KEY VALUE` creates it.\n")
        let negative = try kvfile("watch", empty, "--since", "-1")
        #expect(negative.status == 64)
        #expect(negative.stderr.contains("The value '-1' is invalid for '--since <seq>'"), "\(negative.stderr)")
        #expect(!negative.stderr.contains("\u{2060}"))
    }

    /// Defect: `watch --since` past the newest seq (a store recreated or
    /// restored from a backup) waited forever without a word.
    @Test func watchSinceAheadOfTheLogExitsWithAnErrorNamingTheNewestSeq() throws {
        let dir = TemporaryDirectory()
        let store = dir.sub("s")
        for i in 0..<3 { _ = try kvfile("put", store, "k", "v\(i)") }
        let ahead = try kvfile("watch", store, "--since", "1000")
        #expect(ahead.status == 3)
        #expect(ahead.stderr.contains("its log ends at seq 3"))
    }

    @Test func watchIntoAClosedPipeEndsByItself() throws {
        let dir = TemporaryDirectory()
        let store = dir.sub("s")
        _ = try kvfile("put", store, "seed", "0")
        let pipeline = try Background("/bin/sh", ["-c", "\"$0\" watch --since 1 \"$1\" | head -n 2", kvfileBinary, store], output: dir.sub("out"))
        for i in 0..<3 { _ = try kvfile("put", store, "k\(i)", "v") }
        #expect(pipeline.waitForExit(seconds: 10), "kvfile watch | head -n 2 did not end")
        #expect(pipeline.lines.count == 2)
    }

    @Test func sigtermEndsWatchWithStatusZero() throws {
        let dir = TemporaryDirectory()
        let store = dir.sub("s")
        _ = try kvfile("put", store, "seed", "0")
        let watch = try Background(kvfileBinary, ["watch", store], output: dir.sub("out"))
        // Ready once it reports a write made after it started (no fixed sleep).
        let deadline = Date().addingTimeInterval(10)
        var n = 0
        while watch.lines.isEmpty && Date() < deadline {
            _ = try kvfile("put", store, "ready\(n)", "1")
            n += 1
            usleep(20_000)
        }
        #expect(!watch.lines.isEmpty, "kvfile watch reported no write")
        watch.process.terminate()
        let ended = watch.waitForExit(seconds: 5)
        #expect(ended, "SIGTERM did not end kvfile watch")
        guard ended else {
            kill(watch.process.processIdentifier, SIGKILL)
            return
        }
        #expect(watch.process.terminationStatus == 0)
        #expect(watch.process.terminationReason == .exit)
    }

    @Test func execRunsAHandlerPerEventAndSurvivesFailures() throws {
        let dir = TemporaryDirectory()
        let store = dir.sub("s")
        _ = try kvfile("put", store, "seed", "0")
        _ = try kvfile("put", store, "bad", "1")
        _ = try kvfile("put", store, "good", "2")
        let log = dir.sub("handled")
        let result = try kvfile("watch", store, "--from-start", "--count", "3", "--exec",
                                "read line; echo \"$KVFILE_TOPIC $KVFILE_SEQ $KVFILE_KEY\" >> '\(log)'; [ \"$KVFILE_KEY\" != bad ]")
        #expect(result.status == 0)
        #expect(result.stderr.contains("handler failed for seq 2"))
        let handled = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        #expect(handled == "kvs_created 1 seed\nkvs_created 2 bad\nkvs_created 3 good\n")
    }
}
