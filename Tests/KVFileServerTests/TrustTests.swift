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
        // Spelled as the API's other codes are (a new-user trial found the engine's camelCase here).
        #expect(put.json["error"] as? String == "store_removed")
        #expect((put.json["message"] as? String ?? "").contains("were removed while it was open"))
        let health = try client.get("/v1/health")
        #expect(health.status == 503)
        #expect(health.json["status"] as? String == "failing" && health.json["error"] as? String == "store_removed")
        #expect(try client.request("PUT", "/v1/keys/c", body: Array("3".utf8)).status == 503)
        // Failures of the store are logged at the default level, not only with --log-level debug.
        #expect(server.errors.contains("error") && server.errors.contains("were removed while it was open"), "\(server.errors)")
        _ = server.stop()
    }

    @Test func healthAnswersOtherMethodsWith405() throws {
        let dir = TemporaryDirectory()
        let server = try ServerProcess(store: dir.sub("h.kv"), scratch: dir)
        let response = try server.client().request("POST", "/v1/health")
        #expect(response.status == 405)
        #expect(response.header("allow") == "GET, HEAD")
        // Allow lists every method a route takes (HEAD included where GET is).
        for (path, allowed) in [("/", "GET, HEAD, PUT"), ("/all", "GET, HEAD"), ("/v1/keys", "GET, HEAD"), ("/v1/stat", "GET, HEAD"),
                                ("/v1/keys/k", "GET, HEAD, PUT, DELETE"), ("/v1/compact", "POST")] {
            let refused = try server.client().request("PATCH", path)
            #expect(refused.status == 405, "\(path)")
            #expect(refused.header("allow") == allowed, "\(path)")
            if path != "/v1/compact" { #expect(try server.client().request("HEAD", path == "/" ? "/?key=k" : path).status != 405, "HEAD \(path)") }
        }
        #expect(server.stop() == 0)
    }
}

@Suite struct ServerFeedTrustTests {
    /// Defect: `?since=` (or a browser's automatic Last-Event-ID after the
    /// store was recreated) past the log's end opened a stream that never said anything.
    @Test func aResumePointAheadOfTheLogGetsAnErrorNamingTheNewestSeq() throws {
        let dir = TemporaryDirectory()
        let server = try ServerProcess(store: dir.sub("s.kv"), scratch: dir)
        for index in 0..<3 { _ = try server.client().put("/v1/keys/k\(index)", "v") }
        // An error status, not a stream (an EventSource retries a stream that closes).
        for refused in [try server.client().get("/v1/events?since=1003"), try server.client().get("/v1/events", headers: ["Last-Event-ID": "4"])] {
            #expect(refused.status == 409)
            #expect(refused.json["error"] as? String == "resume_ahead_of_log")
            #expect((refused.json["message"] as? String)?.contains("its log ends at seq 3") == true)
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
        // Two Host headers (the first one was believed, so "localhost" then a rebound name passed): 400 (new-user trial).
        let connection = try Connection(port: server.port)
        try connection.send(Array("GET /?key=secret HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\nConnection: close\r\n\r\n".utf8))
        var raw: [UInt8] = []
        while true {
            let chunk = try connection.receive()
            if chunk.isEmpty { break }
            raw += chunk
        }
        #expect(String(decoding: raw.prefix(12), as: UTF8.self) == "HTTP/1.1 400", "\(String(decoding: raw.prefix(200), as: UTF8.self))")
        #expect(server.stop() == 0)
    }
}

@Suite struct ServerHTTPCorrectnessTests {
    /// Defect: a body over --max-body sent chunked (no Content-Length) got
    /// 500 with an empty body; it is 413 with the JSON error like any other.
    @Test func aChunkedBodyOverTheLimitGets413() throws {
        let dir = TemporaryDirectory()
        let server = try ServerProcess(store: dir.sub("c.kv"), arguments: ["--max-body", "1000"], scratch: dir)
        let connection = try Connection(port: server.port)
        let chunk = [UInt8](repeating: 65, count: 600)
        var raw = Array("PUT /v1/keys/big HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".utf8)
        for _ in 0..<3 { raw += Array("258\r\n".utf8) + chunk + Array("\r\n".utf8) }
        raw += Array("0\r\n\r\n".utf8)
        try connection.send(raw)
        var response: [UInt8] = []
        while true {
            let part = try connection.receive()
            if part.isEmpty { break }
            response += part
        }
        let parsed = try HTTPClient.parse(response, method: "PUT")
        #expect(parsed.status == 413)
        #expect(parsed.json["error"] as? String == "too_large")
        #expect(try server.client().get("/v1/keys/big").status == 404)
        #expect(server.stop() == 0)
    }
}

@Suite struct ServerStartTests {
    /// Defects: a start that failed (port in use) left a new, empty store
    /// directory behind, and the bind error ended in a stray ")".
    @Test func aFailedStartLeavesNoStoreAndSaysWhy() throws {
        let dir = TemporaryDirectory()
        let first = try ServerProcess(store: dir.sub("first.kv"), scratch: dir)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: buildDirectory + "/kvfile-server")
        process.arguments = [dir.sub("second.kv"), "--port", String(first.port)]
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 74)
        #expect(text.contains("cannot serve on 127.0.0.1:\(first.port): Address already in use (errno 98)"), "\(text)")
        #expect(!text.contains(")) "))
        #expect(!FileManager.default.fileExists(atPath: dir.sub("second.kv")))
        #expect(first.stop() == 0)
    }

    /// Defects: `KVFILE_TOKEN="$UNSET" kvfile serve S --host 0.0.0.0` (and
    /// `--token ''`) served without a token, with only a log line; and
    /// `--cors-origin https://app.example/` (a trailing slash) or `'*'` were
    /// taken and then matched no browser's Origin. Both are usage errors now.
    @Test func anEmptyTokenAndOriginsNoBrowserSendsAreRefusedAtStart() throws {
        let dir = TemporaryDirectory()
        let cases: [([String], [String: String], String)] = [
            (["--token", ""], [:], "--token is empty"),
            ([], ["KVFILE_TOKEN": ""], "KVFILE_TOKEN is set but empty"),
            (["--cors-origin", "https://app.example/"], [:], "an origin has no path"),
            (["--cors-origin", "*"], [:], "name each origin"),
            (["--cors-origin", "app.example"], [:], "SCHEME://HOST"),
            (["--cors-origin", "https://app.example:443"], [:], "default port"),
        ]
        for (arguments, environment, message) in cases {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: buildDirectory + "/kvfile-server")
            process.arguments = [dir.sub("s.kv"), "--port", "0"] + arguments
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
            let errors = Pipe()
            process.standardError = errors
            process.standardOutput = FileHandle.nullDevice
            try process.run()
            let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            #expect(process.terminationStatus == 64 && text.contains(message), "\(arguments) \(environment): \(process.terminationStatus) \(text)")
        }
        #expect(!FileManager.default.fileExists(atPath: dir.sub("s.kv")))
        // A well-formed origin still starts.
        let server = try ServerProcess(store: dir.sub("ok.kv"), arguments: ["--cors-origin", "https://app.example:8443"], scratch: dir)
        #expect(server.stop() == 0)
    }

    /// Hardening (new-user trial): a value stored as text/html was served as a
    /// page of the API's own origin, whose scripts could use the store. Every
    /// response now says nosniff and sandbox.
    @Test func valuesAreNeverPagesOfTheAPIsOrigin() throws {
        let dir = TemporaryDirectory()
        let server = try ServerProcess(store: dir.sub("h.kv"), scratch: dir)
        let client = server.client()
        let page = "<script>fetch('/v1/keys/owned',{method:'PUT',body:'x'})</script>"
        #expect(try client.put("/v1/keys/page", page, headers: ["Content-Type": "text/html"]).status == 201)
        for path in ["/v1/keys/page", "/?key=page"] {
            let response = try client.get(path)
            #expect(response.status == 200 && response.text == page)
            #expect(response.header("x-content-type-options") == "nosniff", "\(path)")
            #expect(response.header("content-security-policy") == "sandbox", "\(path)")
        }
        #expect(server.stop() == 0)
    }
}

@Suite struct ConditionalRequestTests {
    /// Defect: `If-None-Match` matched only one exact strong tag, and `If-Match`
    /// / `If-None-Match: *` were ignored on writes: no lost-update protection.
    @Test func conditionalRequestsFollowRFC9110() throws {
        let dir = TemporaryDirectory()
        let server = try ServerProcess(store: dir.sub("c.kv"), scratch: dir)
        let client = server.client()
        let created = try client.request("PUT", "/v1/keys/k", headers: ["If-None-Match": "*"], body: Array("1".utf8))
        #expect(created.status == 201)
        let version = try #require(created.header("etag"))
        #expect(try client.request("PUT", "/v1/keys/k", headers: ["If-None-Match": "*"], body: Array("x".utf8)).status == 412)

        // GET: weak tags and lists match (weak comparison).
        #expect(try client.get("/v1/keys/k", headers: ["If-None-Match": "W/\(version)"]).status == 304)
        #expect(try client.get("/v1/keys/k", headers: ["If-None-Match": "\"999\", \(version)"]).status == 304)
        #expect(try client.get("/v1/keys/k", headers: ["If-None-Match": "\"999\""]).status == 200)

        // PUT/DELETE with If-Match: compare-and-set by ETag (strong comparison).
        let stale = try client.request("PUT", "/v1/keys/k", headers: ["If-Match": "\"999\""], body: Array("2".utf8))
        #expect(stale.status == 412)
        #expect(stale.json["error"] as? String == "precondition_failed")
        #expect(stale.header("etag") == version)
        #expect(try client.request("PUT", "/v1/keys/k", headers: ["If-Match": "W/\(version)"], body: Array("2".utf8)).status == 412)
        let swapped = try client.request("PUT", "/v1/keys/k", headers: ["If-Match": "\"1000\", \(version)"], body: Array("2".utf8))
        #expect(swapped.status == 200)
        let newVersion = try #require(swapped.header("etag"))
        #expect(try client.get("/v1/keys/k").text == "2")
        #expect(try client.request("DELETE", "/v1/keys/k", headers: ["If-Match": version]).status == 412)
        #expect(try client.request("DELETE", "/v1/keys/k", headers: ["If-Match": newVersion]).status == 204)
        #expect(try client.request("PUT", "/v1/keys/k", headers: ["If-Match": "*"], body: Array("3".utf8)).status == 412)
        #expect(try client.get("/v1/keys/k").status == 404)
        #expect(server.stop() == 0)
    }
}

@Suite struct EventFilterTests {
    /// Defect: the stream opened with a block holding only `retry:`, which
    /// httpx-sse reports as an empty event on every connection. `retry:` now
    /// comes with the first event. And `?prefix=` keeps the keys under a prefix.
    @Test func retryComesWithTheFirstEventAndPrefixFilters() throws {
        let dir = TemporaryDirectory()
        let server = try ServerProcess(store: dir.sub("p.kv"), scratch: dir)
        let sse = try SSEClient(port: server.port, path: "/v1/events?prefix=user%3A&prefix=job%3A")
        for key in ["user:1", "other", "job:7", "userless", "user:2"] {
            _ = try server.client().put("/v1/keys/\(key)", "v")
        }
        let events = try sse.next(3)
        #expect(events.map { jsonObject($0.data)["key"] as? String } == ["user:1", "job:7", "user:2"])
        #expect(events.first?.retry == "1000")
        #expect(events.dropFirst().allSatisfy { $0.retry == nil })
        #expect(sse.blocksWithoutEvent == 0)
        #expect(server.stop() == 0)
    }
}

@Suite struct BrowserAccessTests {
    /// CORS is opt-in: pages of an allowed origin get preflights and headers,
    /// others get none, and cannot make the server compact with a bare POST.
    @Test func corsOnlyForAllowedOriginsAndNoCrossSiteCompaction() throws {
        let dir = TemporaryDirectory()
        let server = try ServerProcess(store: dir.sub("cors.kv"), arguments: ["--cors-origin", "https://app.example"], scratch: dir)
        let client = server.client()
        let preflight = try client.request("OPTIONS", "/v1/keys/k", headers: ["Origin": "https://app.example", "Access-Control-Request-Method": "PUT"])
        #expect(preflight.status == 204)
        #expect(preflight.header("access-control-allow-origin") == "https://app.example")
        #expect(preflight.header("access-control-allow-methods")?.contains("PUT") == true)
        let refused = try client.request("OPTIONS", "/v1/keys/k", headers: ["Origin": "https://evil.example", "Access-Control-Request-Method": "PUT"])
        #expect(refused.status == 403)
        #expect(refused.header("access-control-allow-origin") == nil)
        _ = try client.request("PUT", "/v1/keys/k", body: Array("v".utf8))
        #expect(try client.get("/v1/keys/k", headers: ["Origin": "https://app.example"]).header("access-control-allow-origin") == "https://app.example")
        #expect(try client.get("/v1/keys/k", headers: ["Origin": "https://evil.example"]).header("access-control-allow-origin") == nil)
        let compact = try client.request("POST", "/v1/compact", headers: ["Origin": "https://evil.example", "Content-Type": "text/plain"])
        #expect(compact.status == 403)
        #expect(compact.json["error"] as? String == "cross_origin")
        #expect(try client.request("POST", "/v1/compact").status == 200)
        #expect(server.stop() == 0)
    }

    /// A browser's EventSource cannot send Authorization: it opens the stream
    /// with a one-time ticket instead of putting the token in the URL.
    @Test func eventSourceOpensWithAOneTimeTicket() throws {
        let dir = TemporaryDirectory()
        let server = try ServerProcess(store: dir.sub("t.kv"), arguments: ["--token", "s3cret"], scratch: dir)
        #expect(try SSEClient(port: server.port).status == 401)
        let issued = try HTTPClient(port: server.port, token: "s3cret").request("POST", "/v1/events/ticket")
        #expect(issued.status == 200)
        let ticket = try #require(issued.json["ticket"] as? String)
        #expect(try HTTPClient(port: server.port).request("POST", "/v1/events/ticket").status == 401)
        let stream = try SSEClient(port: server.port, path: "/v1/events?ticket=\(ticket)")
        #expect(stream.status == 200)
        _ = try HTTPClient(port: server.port, token: "s3cret").request("PUT", "/v1/keys/k", body: Array("v".utf8))
        #expect(try stream.next(1).map(\.seq) == [1])
        let again = try HTTPClient(port: server.port).get("/v1/events?ticket=\(ticket)")
        #expect(again.status == 401 && again.text.contains("used or expired"), "a ticket opens one stream: \(again.text)")
        #expect(server.stop() == 0)
    }

    /// Defect: with a token, a browser's EventSource could never reconnect: it
    /// reopens the same URL with Last-Event-ID, and the spent one-time ticket
    /// got 401 "this server needs a token", so the README's resume without a
    /// gap could not work with a token. A used ticket reopens its stream with
    /// Last-Event-ID (while it is open, and for five minutes after it ends).
    @Test func eventSourceReconnectsWithItsTicketAndLastEventID() throws {
        let dir = TemporaryDirectory()
        let server = try ServerProcess(store: dir.sub("t.kv"), arguments: ["--token", "s3cret"], scratch: dir)
        let writer = HTTPClient(port: server.port, token: "s3cret")
        let ticket = try #require(try writer.request("POST", "/v1/events/ticket").json["ticket"] as? String)
        var stream: SSEClient? = try SSEClient(port: server.port, path: "/v1/events?ticket=\(ticket)")
        #expect(stream?.status == 200)
        _ = try writer.request("PUT", "/v1/keys/a", body: Array("1".utf8))
        #expect(try stream?.next(1).map(\.seq) == [1])
        stream = nil  // the connection drops
        _ = try writer.request("PUT", "/v1/keys/b", body: Array("2".utf8))
        // What EventSource sends on its own: the same URL, and the last id it saw.
        let reconnected = try SSEClient(port: server.port, path: "/v1/events?ticket=\(ticket)", headers: ["Last-Event-ID": "1"])
        #expect(reconnected.status == 200)
        #expect(try reconnected.next(1).map(\.seq) == [2], "resumed without a gap")
        // Without Last-Event-ID it is not a reconnect: a used ticket opens nothing new.
        #expect(try SSEClient(port: server.port, path: "/v1/events?ticket=\(ticket)").status == 401)
        #expect(try SSEClient(port: server.port, path: "/v1/events?ticket=nonsense", headers: ["Last-Event-ID": "1"]).status == 401)
        #expect(server.stop() == 0)
    }
}

@Suite struct ServerConnectionTrustTests {
    /// Defect: a connection that sent nothing, or half a request head, or a
    /// request whose body stalled, stayed open for the life of the server (900
    /// half-sent connections were all open after a minute), so anyone who could
    /// connect held its descriptors without a token. Idle connections are
    /// closed after --idle-timeout; an event stream being sent is not cut.
    @Test func silentAndHalfSentConnectionsAreClosedButEventStreamsAreNot() throws {
        let scratch = TemporaryDirectory()
        let server = try ServerProcess(store: scratch.sub("s"), arguments: ["--idle-timeout", "1"], scratch: scratch)
        let stream = try SSEClient(port: server.port)
        let silent = try Connection(port: server.port, timeoutSeconds: 10)
        let halfHead = try Connection(port: server.port, timeoutSeconds: 10)
        try halfHead.send(Array("GET /v1/health HTTP/1.1\r\nHo".utf8))
        let stalledBody = try Connection(port: server.port, timeoutSeconds: 10)
        try stalledBody.send(Array("PUT /v1/keys/k HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n0123456789".utf8))
        let started = Date()
        for connection in [silent, halfHead, stalledBody] {
            // Closed by the server (end of stream, or a reset), not the receive timeout.
            var closed: Bool
            do { closed = try connection.receive().isEmpty } catch { closed = "\(error)".contains("errno \(ECONNRESET)") }
            #expect(closed)
        }
        #expect(Date().timeIntervalSince(started) < 8)
        // The stream, silent for longer than the timeout, still delivers.
        #expect(try server.client().put("/v1/keys/after", "v").status == 201)
        let event = try stream.next()
        #expect(event?.event == "kvs_created" && event?.data.contains("\"after\"") == true, "\(String(describing: event))")
        #expect(server.stop() == 0)
    }

    /// Defect: once the server ran out of file descriptors (many connections
    /// at once), its change feed ended for the rest of the process's life:
    /// every event stream got feed_failed ("cannot list …: Too many open
    /// files") and Socket.IO clients could not connect, while /v1/health kept
    /// saying ok. The feed now waits such a shortage out and reads on, and
    /// health says failing meanwhile.
    @Test func theChangeFeedReadsOnAfterTheServerRanOutOfDescriptors() throws {
        let scratch = TemporaryDirectory()
        let server = try ServerProcess(store: scratch.sub("s"), arguments: ["--idle-timeout", "2"], scratch: scratch)
        let client = server.client()
        #expect(try client.put("/v1/keys/k", "v1").status == 201)
        let stream = try SSEClient(port: server.port, timeoutSeconds: 30)
        // Few descriptors to spare, then more connections than that, held half-sent.
        let pid = server.process.processIdentifier
        let open = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count
        // prlimit(1), util-linux (essential on Debian): the soft limit of the running server.
        func setSoftLimit(_ soft: Int) throws {
            let result = try run("/usr/bin/prlimit", ["--pid", String(pid), "--nofile=\(soft):"])
            #expect(result.status == 0, "\(result.stderr)")
        }
        try setSoftLimit(open + 4)
        var held: [Connection] = []
        for _ in 0..<40 {
            guard let connection = try? Connection(port: server.port, timeoutSeconds: 5) else { break }
            try? connection.send(Array("GET / HTTP/1.1\r\nHo".utf8))
            held.append(connection)
        }
        // Long enough for the feed to look at the log several times with no descriptor to spare.
        usleep(1_500_000)
        #expect(server.errors.contains("change feed waits") || server.output.contains("change feed waits"),
                "the shortage was not met: \(server.errors.suffix(500))")
        held.removeAll()
        try setSoftLimit(open + 64)
        // Descriptors free again: a write reaches the stream opened before, and health is ok.
        var put: HTTPResult?
        for _ in 0..<50 where put == nil {
            put = try? client.put("/v1/keys/k", "v2")
            if put == nil { usleep(100_000) }
        }
        #expect(put?.status == 200)
        let event = try stream.next()
        #expect(event?.event == "kvs_updated" && event?.data.contains("\"v2\"") == true, "\(String(describing: event))")
        var health = try client.get("/v1/health")
        for _ in 0..<40 where health.status != 200 {
            usleep(100_000)
            health = try client.get("/v1/health")
        }
        #expect(health.status == 200 && health.text.contains("\"ok\""), "\(health.text)")
        #expect(server.stop() == 0)
    }
}
