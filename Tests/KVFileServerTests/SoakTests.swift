import Foundation
import Synchronization
import Testing

/// A sustained multi-process run: the server writes (and compacts) a store
/// while reader processes dump it, a `kvfile watch` process and an SSE client
/// follow it; at the end every view is checked against the model. A few
/// seconds by default; `KVFILE_STRESS=1` runs 60 s, `KVFILE_SOAK_SECONDS=N` N s.
@Suite struct SoakTests {
    static let keys = 50

    /// The value of key `k(j)` after the first `m` writes (write i sets k(i % keys) to "i").
    static func expected(afterWrites m: Int, key j: Int) -> Int? {
        guard m >= 1 else { return nil }
        let last = m - ((m - j) % keys + keys) % keys
        return last >= 1 ? last : nil
    }

    /// A dump is a consistent prefix: it equals the model after `m` writes, m = its largest value.
    static func isConsistentPrefix(_ pairs: [String: Int]) -> Bool {
        let m = pairs.values.max() ?? 0
        for j in 0..<keys where pairs["k\(j)"] != expected(afterWrites: m, key: j) { return false }
        return pairs.count == min(m, keys)
    }

    static func parseDump(_ text: String) -> [String: Int] {
        var pairs: [String: Int] = [:]
        for line in text.split(separator: "\n") {
            let object = jsonObject(String(line))
            if let key = object["key"] as? String, let value = (object["value"] as? String).flatMap(Int.init) { pairs[key] = value }
        }
        return pairs
    }

    /// The fields of an event line that the checks look at; seq counted from the first write.
    struct Event: Sendable, Equatable {
        var seq: Int?
        var topic: String?
        var key: String?
        var newValue: String?
        var oldValue: String?

        init(json: String, firstSeq: Int) {
            let object = jsonObject(json)
            seq = (object["seq"] as? Int).map { $0 - firstSeq + 1 }
            topic = object["topic"] as? String
            key = object["key"] as? String
            newValue = object["new_value"] as? String
            oldValue = object["old_value"] as? String
        }
    }

    /// Checks events 1...count: consecutive seqs, the right topic, key, new and old values.
    static func checkEvents(_ events: [Event], count: Int) -> String? {
        guard events.count >= count else { return "only \(events.count) of \(count) events" }
        for (index, event) in events.prefix(count).enumerated() {
            let i = index + 1
            guard event.seq == i else { return "event \(i) has seq \(String(describing: event.seq))" }
            guard event.key == "k\(i % keys)", event.newValue == "\(i)" else { return "event \(i) is \(event)" }
            if i <= keys {
                guard event.topic == "kvs_created", event.oldValue == nil else { return "event \(i) should create: \(event)" }
            } else {
                guard event.topic == "kvs_updated", event.oldValue == "\(i - keys)" else { return "event \(i) should update: \(event)" }
            }
        }
        return nil
    }

    @Test func writerReadersAndFollowersAgreeAfterASustainedRun() throws {
        let environment = ProcessInfo.processInfo.environment
        let seconds = environment["KVFILE_SOAK_SECONDS"].flatMap(Double.init) ?? (environment["KVFILE_STRESS"] == "1" ? 60 : 3)
        let dir = TemporaryDirectory()
        let store = dir.sub("soak.kv")
        let server = try ServerProcess(store: store, arguments: ["--durability", "interval:50"], scratch: dir)
        _ = try server.client().put("/v1/keys/warmup", "x")
        #expect(try server.client().request("DELETE", "/v1/keys/warmup").status == 204)
        // seq 1 and 2 were the warm-up; writes start at seq 3.

        let watchOutput = dir.sub("watch.ndjson")
        _ = FileManager.default.createFile(atPath: watchOutput, contents: nil)
        let watch = Process()
        watch.executableURL = URL(fileURLWithPath: buildDirectory + "/kvfile")
        watch.arguments = ["watch", store, "--since", "2"]
        watch.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: watchOutput))
        try watch.run()
        let sse = try SSEClient(port: server.port, headers: ["Last-Event-ID": "2"], timeoutSeconds: 1)

        let deadline = Date().addingTimeInterval(seconds)
        let written = Atomic<Int>(0)
        let compactions = Atomic<Int>(0)
        let writerError = Mutex<String?>(nil)
        let writerDone = Atomic<Bool>(false)
        let port = server.port
        let writer = Thread {
            let client = HTTPClient(port: port)
            var i = 0
            while Date() < deadline {
                i += 1
                do {
                    let response = try client.put("/v1/keys/k\(i % SoakTests.keys)", "\(i)")
                    guard response.status == 201 || response.status == 200 else {
                        writerError.withLock { $0 = "write \(i): status \(response.status) \(response.text)" }
                        break
                    }
                    written.store(i, ordering: .releasing)
                    if i % 400 == 0 {
                        let compacted = try client.request("POST", "/v1/compact")
                        if compacted.status == 200 { compactions.add(1, ordering: .relaxed) }
                    }
                } catch {
                    writerError.withLock { $0 = "write \(i): \(error)" }
                    break
                }
            }
            writerDone.store(true, ordering: .releasing)
        }
        writer.start()

        // Reader processes: every dump must be the model after some number of writes.
        let dumps = Atomic<Int>(0)
        let inconsistent = Mutex<[String]>([])
        let readers = (0..<2).map { _ in
            Thread {
                while !writerDone.load(ordering: .acquiring) {
                    guard let result = try? kvfile(["dump", store, "--format", "ndjson"]), result.status == 0 else { continue }
                    if !SoakTests.isConsistentPrefix(SoakTests.parseDump(result.output)) {
                        inconsistent.withLock { $0.append(String(result.output.prefix(300))) }
                    }
                    dumps.add(1, ordering: .relaxed)
                }
            }
        }
        readers.forEach { $0.start() }
        // The SSE client reads as events come (a client that stops reading is cut off by design).
        let sseEvents = Mutex<[Event]>([])
        let follower = Thread {
            var giveUp = Date.distantFuture
            while Date() < giveUp {
                if writerDone.load(ordering: .acquiring) {
                    if sseEvents.withLock({ $0.count }) >= written.load(ordering: .acquiring) { return }
                    if giveUp == .distantFuture { giveUp = Date().addingTimeInterval(30) }
                }
                do {
                    guard let event = try sse.next() else { return }
                    if event.event == "kvfile_error" { print("soak: SSE stream ended: \(event.data)") }
                    let parsed = Event(json: event.data, firstSeq: 3)
                    sseEvents.withLock { $0.append(parsed) }
                } catch {
                    continue  // a receive timeout: look at the writer again
                }
            }
        }
        follower.start()
        while !writerDone.load(ordering: .acquiring) { usleep(20_000) }
        while readers.contains(where: { $0.isExecuting }) { usleep(10_000) }

        #expect(writerError.withLock { $0 } == nil)
        let total = written.load(ordering: .acquiring)
        #expect(total > 50)
        #expect(inconsistent.withLock { $0 }.isEmpty, "inconsistent dumps: \(inconsistent.withLock { $0.prefix(2) })")
        #expect(dumps.load(ordering: .relaxed) > 0)

        // The SSE client saw every write, in order, with exact old values.
        while follower.isExecuting { usleep(10_000) }
        let streamed = sseEvents.withLock { $0 }
        let sseProblem = SoakTests.checkEvents(streamed, count: total)
        #expect(sseProblem == nil)
        if sseProblem != nil { print("soak: server log tail:\n" + server.errors.split(separator: "\n").suffix(10).joined(separator: "\n")) }

        // So did the kvfile watch process.
        let watchDeadline = Date().addingTimeInterval(30)
        var lines: [String] = []
        while Date() < watchDeadline {
            lines = ((try? String(contentsOfFile: watchOutput, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
            if lines.count >= total { break }
            usleep(20_000)
        }
        watch.terminate()
        watch.waitUntilExit()
        let watchEvents = lines.map { Event(json: $0, firstSeq: 3) }
        #expect(SoakTests.checkEvents(watchEvents, count: total) == nil)

        // After a graceful stop the store holds exactly the model and checks clean.
        #expect(server.stop() == 0)
        let final = SoakTests.parseDump(try kvfile(["dump", store, "--format", "ndjson"]).output)
        #expect(final.count == min(total, SoakTests.keys))
        #expect(SoakTests.isConsistentPrefix(final) && final.values.max() == total)
        #expect(try kvfile(["check", store]).status == 0)
        let summary = "soak: \(Int(seconds)) s, \(total) writes, \(compactions.load(ordering: .relaxed)) compactions, "
            + "\(dumps.load(ordering: .relaxed)) reader dumps, \(streamed.count) SSE events, \(lines.count) watch events"
        print(summary)
    }
}
