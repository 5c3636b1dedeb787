import Dispatch
#if canImport(Glibc)
@preconcurrency import Glibc
#endif
import KVFile
import Logging
import ServiceLifecycle
import Synchronization

/// What a subscriber receives.
enum FeedItem: Sendable {
    case event(ChangeEvent)
    /// Nothing happened for a while: a comment keeps proxies and the client's socket awake.
    case keepAlive
}

/// Why a subscription ended.
enum FeedEnd: Sendable, Equatable {
    case slow(backlog: Int)
    case shutdown
    case failed(String)
    /// The subscriber let go (a Socket.IO namespace disconnect).
    case unsubscribed
}

/// One subscriber's bounded queue. Publishing never waits: a subscriber that
/// falls `backlog` events behind is ended (it reconnects with Last-Event-ID).
final class Subscription: Sendable {
    let stream: AsyncStream<FeedItem>
    let id: Int
    /// Only events after this sequence number are for this subscriber.
    let after: UInt64
    private let continuation: AsyncStream<FeedItem>.Continuation
    private let backlog: Int
    private let endReason = Mutex<FeedEnd?>(nil)

    init(id: Int, after: UInt64, backlog: Int) {
        (stream, continuation) = AsyncStream.makeStream(of: FeedItem.self, bufferingPolicy: .bufferingOldest(backlog))
        self.id = id
        self.after = after
        self.backlog = backlog
    }

    /// Why the stream ended (nil while it runs, or when the consumer went away).
    var end: FeedEnd? { endReason.withLock { $0 } }

    func deliver(_ event: ChangeEvent) {
        guard event.seq > after else { return }
        if case .dropped = continuation.yield(.event(event)) { finish(.slow(backlog: backlog)) }
    }

    func keepAlive() {
        _ = continuation.yield(.keepAlive)
    }

    func finish(_ reason: FeedEnd) {
        endReason.withLock { if $0 == nil { $0 = reason } }
        continuation.finish()
    }
}

/// The server's one change feed: a single `LogTailer` (on its own thread)
/// fans events out to every SSE subscriber and keeps the most recent ones, so
/// a client that reconnects with Last-Event-ID is served from memory. A
/// client further behind catches up with a tailer of its own first.
final class SubscriptionHub: Service, Sendable {
    private struct State {
        var lastSeq: UInt64
        var recent: EventRing
        var subscribers: [Int: Subscription] = [:]
        var nextID = 0
        var ended: FeedEnd?
        /// The shortage the feed is waiting out.
        var stalled: String?
    }

    let storePath: String
    private let state: Mutex<State>
    private let stopped = Atomic<Bool>(false)
    private let tailer: LogTailer
    private let backlog: Int
    private let keepAliveMilliseconds: Int
    private let logger: Logger

    /// Follows the store at `storePath` from now on.
    static func open(storePath: String, replayEvents: Int, backlog: Int, keepAliveSeconds: Int, logger: Logger) throws(KVFileError) -> SubscriptionHub {
        let tailer = try LogTailer(path: storePath, start: .now)
        return SubscriptionHub(tailer: tailer, replayEvents: replayEvents, backlog: backlog, keepAliveSeconds: keepAliveSeconds, logger: logger)
    }

    // Not throwing: a throwing initializer of a class with an Atomic crashes the 6.3 optimizer.
    private init(tailer: LogTailer, replayEvents: Int, backlog: Int, keepAliveSeconds: Int, logger: Logger) {
        storePath = tailer.path
        self.tailer = tailer
        state = Mutex(State(lastSeq: tailer.lastSeq, recent: EventRing(capacity: replayEvents)))
        self.backlog = backlog
        keepAliveMilliseconds = max(1, keepAliveSeconds) * 1000
        self.logger = logger
    }

    /// The sequence number of the newest event the hub has published.
    var lastSeq: UInt64 { state.withLock { $0.lastSeq } }

    /// Subscribes for every event after `seq` (nil: from now). Returns nil
    /// when events after `seq` are older than the hub remembers: the caller
    /// must catch up from the log first. An ended hub returns a subscription
    /// that is already finished with the reason.
    func subscribe(after seq: UInt64?) -> Subscription? {
        state.withLock { state -> Subscription? in
            let after = seq ?? state.lastSeq
            var replay: [ChangeEvent] = []
            if after < state.lastSeq {
                guard let events = state.recent.events(after: after) else { return nil }
                replay = events
            }
            let subscription = Subscription(id: state.nextID, after: after, backlog: backlog)
            state.nextID += 1
            if let ended = state.ended {
                subscription.finish(ended)
                return subscription
            }
            for event in replay { subscription.deliver(event) }
            state.subscribers[subscription.id] = subscription
            return subscription
        }
    }

    /// Whether a subscription after `seq` would be served from memory (the log is needed otherwise).
    func canReplay(after seq: UInt64) -> Bool {
        state.withLock { state in seq == state.lastSeq || (seq < state.lastSeq && state.recent.covers(after: seq)) }
    }

    func unsubscribe(_ subscription: Subscription) {
        _ = state.withLock { $0.subscribers.removeValue(forKey: subscription.id) }
    }

    var subscriberCount: Int { state.withLock { $0.subscribers.count } }

    // MARK: Service

    func run() async throws {
        let thread = DispatchQueue(label: "kvfile-server.feed")
        thread.async { self.follow() }
        try? await gracefulShutdown()
        end(.shutdown)
    }

    /// Why the feed cannot read the log now: a shortage it waits out (out of
    /// file descriptors), or the error that ended it. Nil while it reads.
    var problem: String? {
        state.withLock { state in
            if case .failed(let message) = state.ended { return message }
            return state.stalled
        }
    }

    /// The tailer loop: read what the log gained, publish, wait for inotify (or 100 ms).
    private func follow() {
        var lastSent = ContinuousClock.now
        let keepAlive = Duration.milliseconds(keepAliveMilliseconds)
        var pause = 100
        /// A comment to every subscriber when nothing was sent for a while (proxies keep the stream open).
        func keepAliveWhenQuiet() {
            guard ContinuousClock.now - lastSent >= keepAlive else { return }
            lastSent = .now
            state.withLock { state in for subscriber in state.subscribers.values { subscriber.keepAlive() } }
        }
        while !stopped.load(ordering: .relaxed) {
            let events: [ChangeEvent]
            do {
                events = try tailer.poll()
            } catch where FeedShortage.isTransient(error) {
                // Out of descriptors or memory (many connections at once): the feed waits
                // it out and reads on, instead of ending for the rest of the process's life.
                let first = state.withLock { state in
                    defer { state.stalled = error.message }
                    return state.stalled == nil
                }
                if first { logger.warning("change feed waits: \(error.message) (it reads on when the resource is free)") }
                // A sleep, not the tailer's wait: every write wakes that, and the backoff would run at the write rate.
                usleep(useconds_t(pause * 1000))
                pause = min(pause * 2, 2000)
                keepAliveWhenQuiet()
                continue
            } catch {
                logger.error("change feed stopped: \(error.message)")
                end(.failed(error.message))
                return
            }
            if pause != 100 {
                pause = 100
                state.withLock { $0.stalled = nil }
                logger.notice("change feed reads again")
            }
            if events.isEmpty {
                keepAliveWhenQuiet()
                tailer.wait(milliseconds: 100)
                continue
            }
            lastSent = .now
            publish(events)
        }
    }

    private func publish(_ events: [ChangeEvent]) {
        state.withLock { state in
            // A poll read again after a failure never hands an event out twice.
            for event in events where event.seq > state.lastSeq {
                state.recent.append(event)
                state.lastSeq = event.seq
                for subscriber in state.subscribers.values { subscriber.deliver(event) }
            }
            // Drop the ones that overflowed.
            for (id, subscriber) in state.subscribers where subscriber.end != nil {
                state.subscribers.removeValue(forKey: id)
            }
        }
    }

    /// Ends every subscription (graceful shutdown, or a broken log) and refuses new ones.
    func end(_ reason: FeedEnd) {
        stopped.store(true, ordering: .relaxed)
        let subscribers = state.withLock { state -> [Subscription] in
            if state.ended == nil { state.ended = reason }
            defer { state.subscribers = [:] }
            return Array(state.subscribers.values)
        }
        for subscriber in subscribers { subscriber.finish(reason) }
    }
}

/// Errors the feed waits out rather than ending on.
enum FeedShortage {
    static func isTransient(_ error: KVFileError) -> Bool {
        guard error.code == .io, let code = error.errno else { return false }
        return [EMFILE, ENFILE, ENOMEM, ENOBUFS, EAGAIN, EINTR].contains(code)
    }
}

/// The last `capacity` events, oldest first.
struct EventRing: Sendable {
    private var storage: [ChangeEvent] = []
    private var start = 0
    let capacity: Int

    init(capacity: Int) {
        self.capacity = max(1, capacity)
    }

    mutating func append(_ event: ChangeEvent) {
        if storage.count < capacity {
            storage.append(event)
        } else {
            storage[start] = event
            start = (start + 1) % capacity
        }
    }

    /// The events after `seq`, or nil when the oldest one kept is later than `seq + 1`.
    /// Whether every event after `seq` is still here.
    func covers(after seq: UInt64) -> Bool {
        guard !storage.isEmpty else { return false }
        return storage[start].seq <= seq + 1
    }

    func events(after seq: UInt64) -> [ChangeEvent]? {
        guard !storage.isEmpty else { return nil }
        let oldest = storage[start]
        guard oldest.seq <= seq + 1 else { return nil }
        var result: [ChangeEvent] = []
        for index in 0..<storage.count {
            let event = storage[(start + index) % storage.count]
            if event.seq > seq { result.append(event) }
        }
        return result
    }
}
