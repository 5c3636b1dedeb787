import Foundation
import Testing

/// Reliability defects seen from a running `kvfile serve`.
@Suite struct ServerTrustTests {
    /// Defect: with the server running, `rm -rf` of its store directory went
    /// unnoticed: every later PUT answered 201, /v1/health said ok, and the
    /// shutdown log said "store synced and closed" while everything was gone.
    @Test func aStoreDirectoryDeletedUnderTheServerFailsWritesAndHealth() throws {
        let dir = TemporaryDirectory()
        let store = dir.sub("r.kv")
        let server = try ServerProcess(store: store, scratch: dir)
        let client = server.client()
        #expect(try client.request("PUT", "/v1/keys/a", body: Array("1".utf8)).status == 201)
        #expect(try client.get("/v1/health").status == 200)
        try FileManager.default.removeItem(atPath: store)

        let put = try client.request("PUT", "/v1/keys/b", body: Array("2".utf8))
        #expect(put.status == 503)
        #expect(put.json["error"] as? String == "storeRemoved")
        #expect((put.json["message"] as? String ?? "").contains("were removed while it was open"))
        let health = try client.get("/v1/health")
        #expect(health.status == 503)
        #expect(health.json["status"] as? String == "failing")
        #expect(try client.request("PUT", "/v1/keys/c", body: Array("3".utf8)).status == 503)
        _ = server.stop()
    }

    @Test func healthAnswersOtherMethodsWith405() throws {
        let dir = TemporaryDirectory()
        let server = try ServerProcess(store: dir.sub("h.kv"), scratch: dir)
        let response = try server.client().request("POST", "/v1/health")
        #expect(response.status == 405)
        #expect(response.header("allow") == "GET, HEAD")
        #expect(server.stop() == 0)
    }
}

@Suite struct ServerFeedTrustTests {
    /// Defect: `?since=` (or a browser's automatic Last-Event-ID after the
    /// store was recreated) past the log's end opened a stream that never said anything.
    @Test func aResumePointAheadOfTheLogGetsAnErrorEventNamingTheNewestSeq() throws {
        let dir = TemporaryDirectory()
        let server = try ServerProcess(store: dir.sub("s.kv"), scratch: dir)
        for index in 0..<3 { _ = try server.client().put("/v1/keys/k\(index)", "v") }
        for sse in [try SSEClient(port: server.port, path: "/v1/events?since=1003"),
                    try SSEClient(port: server.port, headers: ["Last-Event-ID": "4"])] {
            let event = try #require(try sse.next())
            #expect(event.event == "kvfile_error")
            #expect(jsonObject(event.data)["error"] as? String == "resume_ahead_of_log")
            #expect((jsonObject(event.data)["message"] as? String)?.contains("its log ends at seq 3") == true)
            #expect(try sse.next() == nil)
        }
        // The newest seq itself is a fine resume point.
        let current = try SSEClient(port: server.port, path: "/v1/events?since=3")
        _ = try server.client().put("/v1/keys/k9", "v")
        #expect(try current.next(1).map(\.seq) == [4])
        #expect(server.stop() == 0)
    }
}

@Suite struct ServerHostTests {
    /// Defect: the Host header was not checked, so a page whose DNS name was
    /// rebound to 127.0.0.1 could read `/?key=` and `/all` of a local server.
    @Test func aForeignHostNameIsRefusedOnLoopback() throws {
        let dir = TemporaryDirectory()
        let server = try ServerProcess(store: dir.sub("h.kv"), arguments: ["--allow-host", "kv.internal"], scratch: dir)
        let client = server.client()
        #expect(try client.request("PUT", "/v1/keys/secret", body: Array("1".utf8)).status == 201)
        for host in ["evil.example", "evil.example:5000", "127.0.0.1.evil.example"] {
            let response = try client.request("GET", "/all", headers: ["Host": host])
            #expect(response.status == 403, "\(host)")
            #expect(response.json["error"] as? String == "host_not_allowed")
            #expect(!response.text.contains("secret"))
        }
        for host in ["localhost:\(server.port)", "127.0.0.1", "[::1]:\(server.port)", "KV.internal:80"] {
            #expect(try client.request("GET", "/?key=secret", headers: ["Host": host]).status == 200, "\(host)")
        }
        #expect(server.stop() == 0)
    }
}
