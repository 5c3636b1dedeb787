import HTTPTypes
import Hummingbird
import KVFile
import KVFileText
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// `/socket.io/`: the KeyValueStore service's subscribe feed, Socket.IO v5
/// over Engine.IO v4 long-polling (no WebSocket upgrade). A client that
/// connects to the default namespace gets `Connected` `{"data":"Connected"}`,
/// then one `Update` event per change to the store, in log order, whichever
/// route or process wrote it: `Key: K Created with Value: V`,
/// `Key: K Updated with Value: V`, or `Key: K Deleted`. `?prefix=P` on the
/// connect URL (repeatable) keeps the changes of keys under a prefix.
///
/// A client that leaves a ping unanswered for the ping timeout, or falls
/// `backlog` packets behind, is dropped; its next poll gets Engine.IO's
/// "Session ID unknown" and it reconnects (a new session starts from now).
final class SocketIOServer: Service, Sendable {
    static let maxSessions = 4096

    private struct Sessions {
        var open: [String: SocketIOSession] = [:]
        /// Set at shutdown: no new session starts (nothing would ping or end it).
        var closed = false
    }

    private let hub: SubscriptionHub
    private let sessions = Mutex(Sessions())
    private let pingInterval: Duration
    private let pingTimeout: Duration
    private let backlog: Int
    private let logger: Logger

    init(hub: SubscriptionHub, pingIntervalSeconds: Int, pingTimeoutSeconds: Int, backlog: Int, logger: Logger) {
        self.hub = hub
        pingInterval = .seconds(pingIntervalSeconds)
        pingTimeout = .seconds(pingTimeoutSeconds)
        self.backlog = backlog
        self.logger = logger
    }

    var sessionCount: Int { sessions.withLock { $0.open.count } }

    /// A session that has not joined the namespace within this long is dropped (a handshake alone holds a slot).
    static let connectTimeout = Duration.seconds(10)

    /// True for a request of an open session: its handshake passed the token check, and the session id is a secret.
    func isSessionRequest(_ request: Request) -> Bool {
        guard let query = request.uri.query, query.contains("sid="),
              let sid = (try? URLText.query(query))?.last(where: { $0.name == "sid" }).map({ String(decoding: $0.value, as: UTF8.self) })
        else { return false }
        return sessions.withLock { $0.open[sid] != nil }
    }

    // MARK: requests

    func respond(to request: Request, query: [(name: String, value: [UInt8])]) async throws -> Response {
        func parameter(_ name: String) -> String? {
            query.last { $0.name == name }.map { String(decoding: $0.value, as: UTF8.self) }
        }
        guard parameter("EIO") == "4" else { return Self.failure(.unsupportedProtocolVersion) }
        guard parameter("transport") == "polling" else { return Self.failure(.unknownTransport) }
        guard let sid = parameter("sid") else {
            guard request.method == .get else { return Self.failure(.badHandshakeMethod) }
            return handshake(prefixes: query.filter { $0.name == "prefix" }.map(\.value))
        }
        guard let session = sessions.withLock({ $0.open[sid] }) else { return Self.failure(.unknownSession) }
        switch request.method {
        case .get:
            switch await session.poll() {
            case .payload(let payload): return Self.text(payload)
            case .overlapping:
                remove(session)
                return Self.failure(.badRequest)
            case .ended:
                remove(session)
                return Self.text(String(EngineIOText.noop))
            }
        case .post:
            guard let body = try? await request.body.collect(upTo: EngineIOText.maxPayloadBytes) else {
                return .json("{\"code\":\(EngineIOText.Failure.badRequest.rawValue),\"message\":\"payload over \(EngineIOText.maxPayloadBytes) bytes\"}",
                             status: .contentTooLarge)
            }
            guard let payload = String(validating: body.readableBytesView, as: UTF8.self), receive(payload, in: session) else {
                // Engine.IO ends a session that sent what it cannot read.
                session.finish(.closedByClient)
                remove(session)
                return Self.failure(.badRequest)
            }
            return Self.text("ok")
        default:
            return Self.failure(.badRequest)
        }
    }

    private func handshake(prefixes: [[UInt8]]) -> Response {
        var random = SystemRandomNumberGenerator()
        let sid = Self.newID(&random)
        let session = SocketIOSession(sid: sid, prefixes: prefixes, backlog: backlog, now: .now)
        var evicted: SocketIOSession?
        let refusal = sessions.withLock { sessions -> String? in
            if sessions.closed { return "the server is shutting down" }
            if sessions.open.count >= Self.maxSessions {
                // Full: the oldest handshake that never joined the namespace makes room. Handshakes alone
                // (no token needed without one, no Origin from a page's no-cors request) must not lock
                // out the clients that join at once.
                let waiting = sessions.open.values.compactMap { session in session.waitingToJoinSince.map { (session, $0) } }
                guard let oldest = waiting.min(by: { $0.1 < $1.1 })?.0 else { return "\(Self.maxSessions) sessions are open" }
                sessions.open.removeValue(forKey: oldest.sid)
                evicted = oldest
            }
            sessions.open[sid] = session
            return nil
        }
        evicted?.finish(.neverConnected)
        if let refusal {
            logger.warning("socket.io: refused a session: \(refusal)")
            return .json("{\"code\":\(EngineIOText.Failure.forbidden.rawValue),\"message\":\(JSONText.quoted("no new session: " + refusal + "; try again later"))}",
                         status: .serviceUnavailable)
        }
        return Self.text(EngineIOText.openPacket(sid: sid, pingIntervalMilliseconds: Int(pingInterval.components.seconds) * 1000,
                                                 pingTimeoutMilliseconds: Int(pingTimeout.components.seconds) * 1000))
    }

    /// The packets of a POST; false when one is not Engine.IO or Socket.IO.
    private func receive(_ payload: String, in session: SocketIOSession) -> Bool {
        for packet in EngineIOText.packets(of: payload) {
            switch packet.first {
            case EngineIOText.pong: session.pong()
            case EngineIOText.ping: session.send(String(EngineIOText.pong))  // an Engine.IO v3 habit; harmless
            case EngineIOText.noop: break
            case EngineIOText.close:
                session.finish(.closedByClient)
                remove(session)
            case EngineIOText.message:
                guard receiveSocketIO(packet.dropFirst(), in: session) else { return false }
            default:
                return false
            }
        }
        return true
    }

    private func receiveSocketIO(_ packet: Substring, in session: SocketIOSession) -> Bool {
        guard let type = packet.first else { return false }
        let rest = packet.dropFirst()
        // A namespace other than "/" starts with "/" and ends with ",".
        let namespace: Substring = rest.first == "/" ? rest.prefix { $0 != "," } : "/"
        switch type {
        case "0":
            guard namespace == "/" else {
                session.send(EngineIOText.connectError(namespace: namespace, message: "Invalid namespace"))
                return true
            }
            // Subscribed before the acknowledgement: no change after it is missed.
            guard let subscription = hub.subscribe(after: nil) else { return false }  // "from now" is always in the hub
            if subscription.end != nil {
                session.send(EngineIOText.connectError(namespace: "/", message: "the change feed has stopped; see the server's log"))
                return true
            }
            guard session.connect(subscription) else {
                hub.unsubscribe(subscription)
                return true
            }
            session.send(EngineIOText.connectAck(sid: session.sid))
            session.send(EngineIOText.event("Connected", argumentJSON: "{\"data\":\"Connected\"}"))
            follow(subscription, for: session)
        case "1":
            if namespace == "/", let subscription = session.disconnect() {
                hub.unsubscribe(subscription)
                subscription.finish(.unsubscribed)
            }
        case "2", "3", "5", "6":
            break  // events and acks from clients: this feed only sends
        default:
            return false
        }
        return true
    }

    /// Turns the session's subscription into `Update` packets until either ends.
    private func follow(_ subscription: Subscription, for session: SocketIOSession) {
        let hub = hub
        Task {
            defer { hub.unsubscribe(subscription) }
            for await item in subscription.stream {
                guard case .event(let event) = item else { continue }
                guard session.prefixes.isEmpty || session.prefixes.contains(where: { event.key.starts(with: $0) }) else { continue }
                session.send(EngineIOText.event("Update", argumentJSON: JSONText.quoted(CompatText.update(for: event))), from: subscription)
            }
            switch subscription.end {
            case .slow(let backlog): session.finish(.slow(backlog: backlog))
            case .failed(let message): session.finish(.feedFailed(message))
            case .shutdown: session.finish(.shutdown)
            case .unsubscribed, nil: break
            }
        }
    }

    private func remove(_ session: SocketIOSession) {
        guard sessions.withLock({ $0.open.removeValue(forKey: session.sid) }) != nil else { return }
        if let end = session.end, end != .closedByClient, end != .shutdown {
            logger.log(level: end == .neverConnected ? .debug : .info, "socket.io: dropped session \(session.sid): \(end)")
        }
    }

    // MARK: Service

    /// Pings every session each ping interval and drops the ones that stopped answering.
    func run() async throws {
        let tick = min(Duration.milliseconds(250), pingInterval / 4)
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try await Task.sleep(for: tick)
                self.pingAndReap()
            }
        }
        let open = sessions.withLock { sessions in
            sessions.closed = true
            defer { sessions.open.removeAll() }
            return Array(sessions.open.values)
        }
        for session in open { session.finish(.shutdown) }
    }

    private func pingAndReap() {
        let now = ContinuousClock.now
        let all = sessions.withLock { Array($0.open.values) }
        for session in all where !session.tick(now: now, interval: pingInterval, timeout: pingTimeout, connectTimeout: Self.connectTimeout) {
            remove(session)
        }
    }

    // MARK: helpers

    private static func newID(_ random: inout SystemRandomNumberGenerator) -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        return String((0..<20).map { _ in alphabet[Int((random.next() as UInt8) & 63)] })
    }

    private static func text(_ payload: String) -> Response {
        .bytes(Array(payload.utf8), contentType: "text/plain; charset=UTF-8")
    }

    private static func failure(_ failure: EngineIOText.Failure, status: HTTPResponse.Status = .badRequest) -> Response {
        .json(failure.json, status: status)
    }
}
