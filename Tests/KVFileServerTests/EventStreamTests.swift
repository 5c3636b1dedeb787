import Foundation
import Synchronization
import Testing

@Suite struct EventStreamTests {
    @Test func twoSubscribersGetEveryEventWithSeqAsId() throws {
        let dir = TemporaryDirectory()
        let server = try ServerProcess(store: dir.sub("s.kv"), scratch: dir)
        let client = server.client()
        let first = try SSEClient(port: server.port)
        let second = try SSEClient(port: server.port, path: "/v1/events?topic=kvs_deleted")
        #expect(first.status == 200)
        #expect(first.headers["content-type"] == "text/event-stream")

        _ = try client.put("/v1/keys/a", "1")
        _ = try client.put("/v1/keys/a", "2")
        _ = try client.request("DELETE", "/v1/keys/a")

        let events = try first.next(3)
        #expect(events.map(\.event) == ["kvs_created", "kvs_updated", "kvs_deleted"])
        #expect(events.map(\.seq) == [1, 2, 3])
        #expect(events[1].data == #"{"topic":"kvs_updated","seq":2,"ts":"# + (jsonObject(events[1].data)["ts"].map { "\($0)" } ?? "?")
                + #","key":"a","new_value":"2","old_value":"1"}"#)
        let deleted = try second.next(1)
        #expect(deleted.map(\.seq) == [3])
        #expect(jsonObject(deleted[0].data)["old_value"] as? String == "2")
    }

    @Test func theEventJSONIsExactlyWhatKvfileWatchPrints() throws {
        let dir = TemporaryDirectory()
        let server = try ServerProcess(store: dir.sub("s.kv"), scratch: dir)
        let client = server.client()
        _ = try client.put("/v1/keys/k", "v1")
        _ = try client.request("PUT", "/v1/keys/k", body: [0xC3, 0x28])
        let sse = try SSEClient(port: server.port, path: "/v1/events?from_start=1")
        let events = try sse.next(2)
        let watch = try kvfile(["watch", dir.sub("s.kv"), "--from-start", "--count", "2"])
        #expect(watch.status == 0)
        #expect(events.map { $0.data + "\n" }.joined() == watch.output)
        #expect(events[1].data.contains("new_value_base64"))
    }

    @Test func lastEventIDResumesWithoutAGapFromMemoryAndFromTheLog() throws {
        let dir = TemporaryDirectory()
        let store = dir.sub("s.kv")
        var server = try ServerProcess(store: store, scratch: dir)
        for index in 1...20 { _ = try server.client().put("/v1/keys/k\(index % 7)", "v\(index)") }

        // Recent history: served from the hub's memory.
        let resumed = try SSEClient(port: server.port, headers: ["Last-Event-ID": "12"])
        _ = try server.client().put("/v1/keys/after", "x")
        #expect(try resumed.next(9).map(\.seq) == Array(13...21))

        // After a restart the hub remembers nothing: the stream catches up from the log.
        #expect(server.stop() == 0)
        server = try ServerProcess(store: store, scratch: dir)
        let fromLog = try SSEClient(port: server.port, headers: ["Last-Event-ID": "5"])
        let caughtUp = try fromLog.next(16)
        #expect(caughtUp.map(\.seq) == Array(6...21))
        _ = try server.client().put("/v1/keys/later", "y")
        let live = try fromLog.next(1)
        #expect(live.map(\.seq) == [22])
        #expect(jsonObject(live[0].data)["key"] as? String == "later")

        // ?since= does the same for clients that cannot set headers.
        let since = try SSEClient(port: server.port, path: "/v1/events?since=20")
        #expect(try since.next(2).map(\.seq) == [21, 22])
        #expect(try SSEClient(port: server.port, headers: ["Last-Event-ID": "x"]).status == 400)
    }

    /// Defect: a resume point compacted away (or past the log's newest change)
    /// was answered 200 with an error event and a close, so a browser's
    /// EventSource reconnected every second forever. It is now 410 (409).
    @Test func aResumePointTheLogCannotServeIsAnErrorStatusNotAStream() throws {
        let dir = TemporaryDirectory()
        let store = dir.sub("s.kv")
        var server = try ServerProcess(store: store, arguments: ["--durability", "none"], scratch: dir)
        for round in 0..<3 {
            for index in 0..<50 { _ = try server.client().put("/v1/keys/k\(index)", String(repeating: "v\(round)", count: 50)) }
        }
        #expect(server.stop() == 0)
        let compact = try kvfile(["compact", store])
        #expect(compact.status == 0, "\(compact.errors)")
        server = try ServerProcess(store: store, scratch: dir)
        let gone = try server.client().get("/v1/events", headers: ["Last-Event-ID": "3"])
        #expect(gone.status == 410, "\(gone.status) \(gone.text)")
        #expect(jsonObject(gone.text)["error"] as? String == "history_compacted")
        #expect((jsonObject(gone.text)["message"] as? String)?.contains("oldest point to resume from") == true)
        let ahead = try server.client().get("/v1/events?since=1000")
        #expect(ahead.status == 409, "\(ahead.status) \(ahead.text)")
        #expect(jsonObject(ahead.text)["error"] as? String == "resume_ahead_of_log")
        // A point the log still holds streams as before.
        let live = try SSEClient(port: server.port, headers: ["Last-Event-ID": "150"])
        #expect(live.status == 200)
        _ = try server.client().put("/v1/keys/after", "x")
        #expect(try live.next()?.seq == 151)
    }

    @Test func aSubscriberThatStopsReadingIsDisconnectedWithAReason() throws {
        let dir = TemporaryDirectory()
        let server = try ServerProcess(store: dir.sub("s.kv"), arguments: ["--subscriber-backlog", "8", "--durability", "none"], scratch: dir)
        let client = server.client()
        let slow = try SSEClient(port: server.port)
        // Far more than the socket buffers hold, while the subscriber reads nothing.
        let value = [UInt8](repeating: 120, count: 60_000)
        for index in 0..<600 { _ = try client.request("PUT", "/v1/keys/k\(index % 10)", body: value) }
        var last: UInt64 = 0
        var reason: String?
        while let event = try slow.next() {
            if event.event == "kvfile_error" {
                reason = jsonObject(event.data)["error"] as? String
            } else {
                #expect(event.seq == last + 1, "events are consecutive up to the disconnect")
                last = event.seq ?? last
            }
        }
        #expect(reason == "slow_subscriber")
        #expect(last < 600)
        // The writer was not held up, and a reconnect resumes where the stream stopped.
        let resumed = try SSEClient(port: server.port, headers: ["Last-Event-ID": String(last)])
        #expect(try resumed.next()?.seq == last + 1)
    }

    @Test func gracefulShutdownEndsStreamsAndKeepsEveryAcknowledgedWrite() throws {
        let dir = TemporaryDirectory()
        let store = dir.sub("s.kv")
        let server = try ServerProcess(store: store, scratch: dir)
        let sse = try SSEClient(port: server.port)
        let acknowledged = Mutex<[String]>([])
        let port = server.port
        let writers = (0..<4).map { writer in
            Thread {
                for index in 0..<10_000 {
                    let key = "w\(writer)-\(index)"
                    guard let response = try? HTTPClient(port: port).put("/v1/keys/\(key)", "value-\(key)") else { return }
                    if response.status == 201 { acknowledged.withLock { $0.append(key) } } else { return }
                }
            }
        }
        writers.forEach { $0.start() }
        while acknowledged.withLock({ $0.count }) < 200 { usleep(5_000) }
        #expect(server.stop(SIGTERM) == 0)
        usleep(200_000)  // writer threads see refused connections and stop

        var sawShutdown = false
        while !sawShutdown, let event = try sse.next() {
            if event.event == "kvfile_error" { sawShutdown = jsonObject(event.data)["error"] as? String == "shutting_down" }
        }
        #expect(sawShutdown)
        let keys = acknowledged.withLock { $0 }
        let dump = try kvfile(["dump", store, "--format", "ndjson"])
        let stored = Set(dump.output.split(separator: "\n").map { jsonObject(String($0))["key"] as? String ?? "" })
        let lost = keys.filter { !stored.contains($0) }
        #expect(lost.isEmpty, "acknowledged but missing: \(lost.prefix(5))")
        #expect(server.errors.contains("stopped; store synced and closed"))
    }
}

