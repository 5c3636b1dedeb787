import KVFile
import Synchronization

/// One Engine.IO polling session: the packets waiting for the client's next
/// GET, the GET waiting for packets, and the ping the client owes.
final class SocketIOSession: Sendable {
    /// Why a session ended.
    enum End: Sendable, Equatable {
        case closedByClient
        case pingTimeout
        case neverConnected
        case slow(backlog: Int)
        case overlappingPoll
        case shutdown
        case feedFailed(String)
    }

    /// What a GET poll returns.
    enum Poll {
        case payload(String)
        /// Another GET of this session is waiting: Engine.IO ends the session.
        case overlapping
        case ended
    }

    private struct State {
        var outbox: [String] = []
        var outboxBytes = 0
        var waiter: CheckedContinuation<Void, Never>?
        var polling = false
        var end: End?
        var connected = false
        var lastPing: ContinuousClock.Instant
        var pingSent: ContinuousClock.Instant?
        let opened: ContinuousClock.Instant
        var subscription: Subscription?
    }

    /// Bytes a client may fall behind by (besides `backlog` packets) before it is dropped.
    static let maxOutboxBytes = 64 << 20

    let sid: String
    /// Only events of keys under one of these (none: every key).
    let prefixes: [[UInt8]]
    private let backlog: Int
    private let state: Mutex<State>

    init(sid: String, prefixes: [[UInt8]], backlog: Int, now: ContinuousClock.Instant) {
        self.sid = sid
        self.prefixes = prefixes
        self.backlog = backlog
        state = Mutex(State(lastPing: now, opened: now))
    }

    var end: End? { state.withLock { $0.end } }

    /// Waits for packets (the ping timer sends one at least every ping
    /// interval) and returns up to what one payload may carry.
    func poll() async -> Poll {
        let first: Poll? = state.withLock { state in
            if state.end != nil { return .ended }
            if state.polling { return .overlapping }
            if !state.outbox.isEmpty { return .payload(Self.take(&state)) }
            state.polling = true
            return nil
        }
        if let first {
            if case .overlapping = first { finish(.overlappingPoll) }
            return first
        }
        await withCheckedContinuation { continuation in
            let ready = state.withLock { state in
                if !state.outbox.isEmpty || state.end != nil { return true }
                state.waiter = continuation
                return false
            }
            if ready { continuation.resume() }
        }
        return state.withLock { state in
            state.polling = false
            if !state.outbox.isEmpty { return .payload(Self.take(&state)) }
            return .ended
        }
    }

    /// Up to 16 packets and about `maxPayloadBytes`, oldest first, taken out of the outbox.
    private static func take(_ state: inout State) -> String {
        var count = 0
        var bytes = 0
        while count < state.outbox.count && count < EngineIOText.packetsPerPayload
            && (count == 0 || bytes + state.outbox[count].utf8.count < EngineIOText.maxPayloadBytes) {
            bytes += state.outbox[count].utf8.count
            count += 1
        }
        let payload = state.outbox[..<count].joined(separator: String(EngineIOText.separator))
        state.outbox.removeFirst(count)
        state.outboxBytes -= bytes
        return payload
    }

    /// Queues a packet for the next poll; a client `backlog` packets (or
    /// `maxOutboxBytes`) behind is dropped. With `subscription`, only while it
    /// is still the one the client follows (a namespace disconnect ends it).
    func send(_ packet: String, from subscription: Subscription? = nil) {
        let (waiter, overflow) = state.withLock { state -> (CheckedContinuation<Void, Never>?, Bool) in
            guard state.end == nil else { return (nil, false) }
            if let subscription, state.subscription !== subscription { return (nil, false) }
            let bytes = packet.utf8.count
            if state.outbox.count >= backlog || (!state.outbox.isEmpty && state.outboxBytes + bytes > Self.maxOutboxBytes) {
                return (nil, true)
            }
            state.outbox.append(packet)
            state.outboxBytes += bytes
            return (state.waiter.take(), false)
        }
        if overflow { finish(.slow(backlog: backlog)) }
        waiter?.resume()
    }

    /// The client answered the ping.
    func pong() {
        state.withLock { $0.pingSent = nil }
    }

    /// Socket.IO connect to the default namespace: from now on every change
    /// (after `subscription`'s start) goes to this client as an `Update`.
    /// Returns false when the namespace was connected already.
    func connect(_ subscription: Subscription) -> Bool {
        let accepted = state.withLock { state -> Bool in
            guard state.end == nil, !state.connected else { return false }
            state.connected = true
            state.subscription = subscription
            return true
        }
        if !accepted { subscription.finish(.unsubscribed) }
        return accepted
    }

    /// Socket.IO disconnect from the namespace (the session stays open).
    func disconnect() -> Subscription? {
        state.withLock { state in
            state.connected = false
            return state.subscription.take()
        }
    }

    /// Called by the ping timer: sends a ping every `interval`; a client
    /// that leaves one unanswered for `timeout` is ended. Returns false once ended.
    /// When the handshake was, while the client has not joined the namespace (nil once it has, or the session ended).
    var waitingToJoinSince: ContinuousClock.Instant? {
        state.withLock { state in !state.connected && state.subscription == nil && state.end == nil ? state.opened : nil }
    }

    func tick(now: ContinuousClock.Instant, interval: Duration, timeout: Duration, connectTimeout: Duration) -> Bool {
        enum Action { case none, ping, timeOut, neverConnected, ended }
        let action = state.withLock { state -> Action in
            if state.end != nil { return .ended }
            if !state.connected && state.subscription == nil && now - state.opened > connectTimeout { return .neverConnected }
            if let sent = state.pingSent { return now - sent > timeout ? .timeOut : .none }
            guard now - state.lastPing >= interval else { return .none }
            state.lastPing = now
            state.pingSent = now
            return .ping
        }
        switch action {
        case .none: return true
        case .ping: send(String(EngineIOText.ping)); return end == nil
        case .timeOut: finish(.pingTimeout); return false
        case .neverConnected: finish(.neverConnected); return false
        case .ended: return false
        }
    }

    /// Ends the session: a waiting GET returns, the feed stops.
    func finish(_ reason: End) {
        let (waiter, subscription) = state.withLock { state -> (CheckedContinuation<Void, Never>?, Subscription?) in
            if state.end == nil { state.end = reason }
            state.outbox.removeAll()
            state.outboxBytes = 0
            return (state.waiter.take(), state.subscription.take())
        }
        subscription?.finish(.unsubscribed)
        waiter?.resume()
    }
}
