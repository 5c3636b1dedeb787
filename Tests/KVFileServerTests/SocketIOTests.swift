import Foundation
import Synchronization
import Testing

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// `/socket.io/`: the KeyValueStore service's `kvstore subscribe`, with the
/// real python-socketio client from PyPI (scripts/install-deps installs it),
/// and the Engine.IO rules checked over raw HTTP.
@Suite struct SocketIOTests {
    /// The defect: `kvstore subscribe` died with "Unexpected status code 404" on
    /// `GET /socket.io/?transport=polling&EIO=4`.
    @Test func kvstoreSubscribeGetsEveryWriteAsAnUpdateAndReconnects() throws {
        let dir = TemporaryDirectory()
        let store = dir.sub("s.kv")
        var server = try ServerProcess(store: store, arguments: ["--ping-interval", "2", "--ping-timeout", "2"], scratch: dir)
        let port = server.port
        let subscriber = try PythonSubscriber(host: "http://localhost:\(port)/")
        #expect(try subscriber.waitFor(["Connected", "transport polling"]))

        let client = server.client()
        _ = try client.put("/", #"{"key": "a", "value": "1"}"#, headers: ["Content-Type": "application/json"])
        _ = try client.put("/", #"{"key": "a", "value": 12345678901234567890}"#, headers: ["Content-Type": "application/json"])
        _ = try client.put("/v1/keys/b", "hello")
        _ = try client.request("DELETE", "/v1/keys/b")
        #expect(try subscriber.waitFor([
            "Key: a Created with Value: 1",
            "Key: a Updated with Value: 12345678901234567890",
            "Key: b Created with Value: hello",
            "Key: b Deleted",
        ]))
        // Pings keep an idle client connected (interval 2 s, timeout 2 s): without them
        // the client gives up after max(interval, timeout) + 5 s.
        sleep(9)
        _ = try client.put("/v1/keys/c", "after the pings")
        #expect(try subscriber.waitFor(["Key: c Created with Value: after the pings"]))

        // The client disconnects and connects again: a new session, from now on.
        try subscriber.send("reconnect")
        #expect(try subscriber.waitFor(["Disconnected", "Connected"]))
        _ = try client.put("/v1/keys/d", "4")
        #expect(try subscriber.waitFor(["Key: d Created with Value: 4"]))

        // The server restarts on the same port: the client reconnects by itself.
        #expect(server.stop() == 0)
        #expect(try subscriber.waitFor(["Disconnected"]))
        server = try ServerProcess(store: store, arguments: ["--ping-interval", "2", "--ping-timeout", "2"], port: port, scratch: dir)
        #expect(try subscriber.waitFor(["Connected"], seconds: 30))
        _ = try server.client().put("/v1/keys/e", "5")
        #expect(try subscriber.waitFor(["Key: e Created with Value: 5"]))
        #expect(subscriber.unexpected.isEmpty, "lines nobody waited for: \(subscriber.unexpected)")
        try subscriber.send("quit")
    }

    @Test func theHandshakeAnnouncesPollingAndTheNamespaceConnectIsAcknowledged() throws {
        let dir = TemporaryDirectory()
        let server = try ServerProcess(store: dir.sub("s.kv"), arguments: ["--ping-interval", "7", "--ping-timeout", "3"], scratch: dir)
        let session = try EngineIOSession(client: server.client())
        let open = jsonObject(String(session.open.dropFirst()))
        #expect(session.open.first == "0")
        #expect(open["upgrades"] as? [String] == [])
        #expect(open["pingInterval"] as? Int == 7000)
        #expect(open["pingTimeout"] as? Int == 3000)
        #expect(open["maxPayload"] as? Int == 1_000_000)
        #expect(try session.post("40") == 200)
        let packets = try session.poll()
        #expect(packets.count == 2)
        #expect(packets.first?.hasPrefix("40{\"sid\":\"") == true)
        #expect(packets.last == #"42["Connected",{"data":"Connected"}]"#)
        // Another namespace is refused the Socket.IO way.
        #expect(try session.post("40/admin,") == 200)
        #expect(try session.poll() == [#"44/admin,{"message":"Invalid namespace"}"#])
        // Leaving the namespace and joining again keeps the session: each change arrives once.
        #expect(try session.post("41\u{1e}40") == 200)
        let again = try session.poll()
        #expect(again.count == 2 && again.first?.hasPrefix("40{") == true, "\(again)")
        _ = try server.client().put("/v1/keys/once", "1")
        #expect(try session.poll() == [#"42["Update","Key: once Created with Value: 1"]"#])
    }

    @Test func badEngineIORequestsGetEngineIOErrors() throws {
        let dir = TemporaryDirectory()
        let server = try ServerProcess(store: dir.sub("s.kv"), scratch: dir)
        let client = server.client()
        let cases: [(String, String, Int)] = [
            ("GET", "/socket.io/?EIO=3&transport=polling", 5),
            ("GET", "/socket.io/?EIO=4&transport=websocket", 0),
            ("GET", "/socket.io/?EIO=4&transport=polling&sid=nosuchsession", 1),
            ("POST", "/socket.io/?EIO=4&transport=polling", 2),
        ]
        for (method, path, code) in cases {
            let result = try client.request(method, path, body: method == "POST" ? Array("40".utf8) : nil)
            #expect(result.status == 400, "\(method) \(path)")
            #expect(jsonObject(result.text)["code"] as? Int == code, "\(method) \(path): \(result.text)")
        }
    }

    /// A payload never holds more than the 16 packets python-socketio accepts; every change arrives once, in order.
    @Test func manyChangesArriveInOrderSixteenPacketsAtMost() throws {
        let dir = TemporaryDirectory()
        let server = try ServerProcess(store: dir.sub("s.kv"), scratch: dir)
        let session = try EngineIOSession(client: server.client())
        #expect(try session.post("40") == 200)
        #expect(try session.poll().count == 2)
        for index in 0..<50 { _ = try server.client().put("/v1/keys/k\(index)", "v\(index)") }
        var updates: [String] = []
        while updates.count < 50 {
            let packets = try session.poll()
            #expect(packets.count <= 16)
            updates += packets.filter { $0 != "2" }
        }
        #expect(updates == (0..<50).map { #"42["Update","Key: k\#($0) Created with Value: v\#($0)"]"# })
    }

    /// A client that stops answering pings is dropped; its next poll is told the session is gone.
    @Test func aVanishedPollerIsDroppedAfterThePingTimeout() throws {
        let dir = TemporaryDirectory()
        let server = try ServerProcess(store: dir.sub("s.kv"), arguments: ["--ping-interval", "1", "--ping-timeout", "1"], scratch: dir)
        let session = try EngineIOSession(client: server.client())
        #expect(try session.post("40") == 200)
        #expect(try session.poll().count == 2)
        sleep(4)
        let late = try server.client().get(session.path)
        #expect(late.status == 400)
        #expect(jsonObject(late.text)["code"] as? Int == 1)
        #expect(server.errors.contains("socket.io: dropped session"))
    }

    /// A second GET while one waits ends the session (Engine.IO's rule), and the waiting one returns.
    @Test func anOverlappingPollEndsTheSession() throws {
        let dir = TemporaryDirectory()
        let server = try ServerProcess(store: dir.sub("s.kv"), scratch: dir)
        let session = try EngineIOSession(client: server.client())
        let first = Mutex<HTTPResult?>(nil)
        let client = server.client(), path = session.path
        let thread = Thread { first.withLock { $0 = try? client.get(path) } }
        thread.start()
        usleep(300_000)
        let second = try server.client().get(session.path)
        let deadline = Date().addingTimeInterval(10)
        while first.withLock({ $0 == nil }) && Date() < deadline { usleep(20_000) }
        // Whichever of the two the server saw second is refused; the other, waiting, gets a noop.
        let answers = [first.withLock { $0 }, second].compactMap { $0 }.map { "\($0.status) \($0.text)" }.sorted()
        #expect(answers.count == 2 && answers[0] == "200 6" && answers[1].hasPrefix("400 "), "\(answers)")
        #expect(try server.client().get(session.path).status == 400)
    }

    /// python-engineio sends custom headers with the handshake only: the
    /// session's later requests are known by its id (the defect: 401 on the
    /// first poll, "Unexpected connection error"). Pages of other origins get no session.
    @Test func withATokenTheHandshakeAuthorizesTheSessionAndForeignPagesGetNone() throws {
        let dir = TemporaryDirectory()
        let server = try ServerProcess(store: dir.sub("s.kv"), arguments: ["--token", "s3cret"], scratch: dir)
        #expect(try server.client().get("/socket.io/?EIO=4&transport=polling").status == 401)
        var authorized = server.client()
        authorized.token = "s3cret"
        let session = try EngineIOSession(client: authorized)
        let plain = EngineIOSession(client: server.client(), open: session.open, path: session.path)
        #expect(try plain.post("40") == 200)
        #expect(try plain.poll().count == 2)
        #expect(try server.client().get("/socket.io/?EIO=4&transport=polling&sid=guessed").status == 401)
        let foreign = try authorized.get("/socket.io/?EIO=4&transport=polling", headers: ["Origin": "https://evil.example"])
        #expect(foreign.status == 403)
    }

    /// Defect (new-user trial): 4,096 handshakes that never joined the
    /// namespace (no token needed without one, no Origin on a page's no-cors
    /// request) filled the session table, and `kvstore subscribe` got 503
    /// until they expired. A full table now gives the oldest of them up.
    @Test func handshakesThatNeverJoinCannotLockOutAClientThatDoes() throws {
        let dir = TemporaryDirectory()
        let server = try ServerProcess(store: dir.sub("s.kv"), scratch: dir)
        // Over one kept-alive connection, as the trial did: each answer read before the next request.
        let connection = try Connection(port: server.port)
        let request = Connection.request(method: "GET", path: "/socket.io/?EIO=4&transport=polling", headers: [:], body: nil)
        var statuses: [Int: Int] = [:]
        var pending: [UInt8] = []
        for _ in 0..<(4096 + 50) {
            try connection.send(request)
            while true {
                if let end = HTTPClient.headerEnd(pending) {
                    let (status, headers) = try HTTPClient.parseHead(pending[0..<end])
                    let length = Int(headers["content-length"] ?? "0") ?? 0
                    if pending.count >= end + 4 + length {
                        statuses[status, default: 0] += 1
                        pending.removeFirst(end + 4 + length)
                        break
                    }
                }
                let chunk = try connection.receive()
                if chunk.isEmpty { throw ServerTestError("closed") }
                pending += chunk
            }
        }
        #expect(statuses == [200: 4096 + 50], "\(statuses)")
        // A client that joins at once still gets its session and its events.
        let session = try EngineIOSession(client: server.client())
        #expect(try session.post("40") == 200)
        #expect(try session.poll().count == 2)
        #expect(try server.client().put("/v1/keys/k", "v").status == 201)
        #expect(try session.poll().contains { $0.contains("Created with Value: v") })
        #expect(server.stop() == 0)
    }

    /// A payload the server cannot read ends its session (it stayed open,
    /// and the next poll just waited); one over the payload limit gets 413.
    @Test func anUnreadableOrOversizedPayloadIsRefused() throws {
        let dir = TemporaryDirectory()
        let server = try ServerProcess(store: dir.sub("s.kv"), scratch: dir)
        let big = try EngineIOSession(client: server.client())
        let oversized = try server.client().request("POST", big.path, body: Array(repeating: UInt8(ascii: "4"), count: 1_100_000))
        #expect(oversized.status == 413)
        let session = try EngineIOSession(client: server.client())
        #expect(try session.post("9nonsense") == 400)
        let after = try server.client().get(session.path)
        #expect(after.status == 400 && jsonObject(after.text)["code"] as? Int == 1, "\(after.status) \(after.text)")
    }

    @Test func aPrefixOnTheConnectURLKeepsOnlyKeysUnderIt() throws {
        let dir = TemporaryDirectory()
        let server = try ServerProcess(store: dir.sub("s.kv"), scratch: dir)
        let session = try EngineIOSession(client: server.client(), query: "&prefix=job%2F")
        #expect(try session.post("40") == 200)
        #expect(try session.poll().count == 2)
        _ = try server.client().put("/v1/keys/other", "x")
        _ = try server.client().put("/v1/keys/job%2F1", "y")
        #expect(try session.poll() == [#"42["Update","Key: job/1 Created with Value: y"]"#])
    }
}

/// One Engine.IO session spoken by hand over the test's HTTP client.
struct EngineIOSession {
    let client: HTTPClient
    let open: String
    let path: String

    init(client: HTTPClient, open: String, path: String) {
        self.client = client
        self.open = open
        self.path = path
    }

    init(client: HTTPClient, query: String = "") throws {
        self.client = client
        let handshake = try client.get("/socket.io/?EIO=4&transport=polling" + query)
        guard handshake.status == 200, let sid = jsonObject(String(handshake.text.dropFirst()))["sid"] as? String else {
            throw ServerTestError("handshake failed: \(handshake.status) \(handshake.text)")
        }
        open = handshake.text
        path = "/socket.io/?EIO=4&transport=polling&sid=" + sid
    }

    func post(_ payload: String) throws -> Int {
        try client.request("POST", path, headers: ["Content-Type": "text/plain;charset=UTF-8"], body: Array(payload.utf8)).status
    }

    /// The packets of one GET poll.
    func poll() throws -> [String] {
        let result = try client.get(path)
        guard result.status == 200 else { throw ServerTestError("poll: \(result.status) \(result.text)") }
        return result.text.split(separator: "\u{1e}").map(String.init)
    }
}

/// Tests/clients/socketio_subscriber.py: python-socketio's Client, as `kvstore subscribe` uses it.
final class PythonSubscriber: @unchecked Sendable {
    private let process = Process()
    private let input = Pipe()
    private let lines = Mutex<[String]>([])
    private let consumed = Mutex(0)

    init(host: String) throws {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("clients/socketio_subscriber.py").path
        let check = Process()
        check.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        check.arguments = ["python3", "-c", "import socketio, requests"]
        check.standardError = FileHandle.nullDevice
        try check.run()
        check.waitUntilExit()
        guard check.terminationStatus == 0 else {
            throw ServerTestError("python3 with python-socketio and requests is needed: run scripts/install-deps")
        }
        let output = Pipe()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-u", script]
        var environment = ProcessInfo.processInfo.environment
        environment["HOST"] = host
        process.environment = environment
        process.standardInput = input
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        let handle = output.fileHandleForReading
        Thread { [weak self] in
            var pending = Data()
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { return }
                pending += chunk
                while let newline = pending.firstIndex(of: 10) {
                    let line = String(decoding: pending[pending.startIndex..<newline], as: UTF8.self)
                    pending = Data(pending[(newline + 1)...])
                    guard let self else { return }
                    self.lines.withLock { $0.append(line) }
                }
            }
        }.start()
    }

    /// True when the next lines printed are `expected`, within `seconds`, in
    /// any order: python-socketio runs each message's handler on a thread of
    /// its own, so lines of one payload can print in any order (the server's
    /// order is checked packet by packet in `manyChangesArriveInOrderSixteenPacketsAtMost`).
    func waitFor(_ expected: [String], seconds: Double = 15) throws -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            let start = consumed.withLock { $0 }
            let available = lines.withLock { Array($0.dropFirst(start)) }
            if available.count >= expected.count {
                consumed.withLock { $0 += expected.count }
                let got = Array(available.prefix(expected.count))
                if got.sorted() != expected.sorted() { throw ServerTestError("expected \(expected), the client printed \(got)") }
                return true
            }
            usleep(20_000)
        }
        throw ServerTestError("expected \(expected) within \(seconds) s; the client printed \(lines.withLock { $0 })")
    }

    /// Lines printed after the last ones waited for.
    var unexpected: [String] { lines.withLock { Array($0.dropFirst(consumed.withLock { $0 })) } }

    func send(_ command: String) throws {
        try input.fileHandleForWriting.write(contentsOf: Data((command + "\n").utf8))
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }
}
