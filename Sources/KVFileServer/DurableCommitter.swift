import Dispatch
import KVFile
import Synchronization

/// Group commit for the server: a request that wrote waits (without holding
/// a thread) until one `sync()` on a dedicated queue covers its write. All
/// requests that arrive while a sync runs share the next one.
final class DurableCommitter: Sendable {
    private struct State {
        var waiters: [CheckedContinuation<Void, any Error>] = []
        var running = false
    }

    private let state = Mutex(State())
    private let queue = DispatchQueue(label: "kvfile-server.sync")
    private let sync: @Sendable () throws -> Void

    /// `sync` makes everything written so far durable.
    init(sync: @escaping @Sendable () throws -> Void) {
        self.sync = sync
    }

    /// Returns once everything this task wrote before the call is on stable storage.
    func waitDurable() async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let start = state.withLock { state -> Bool in
                state.waiters.append(continuation)
                if state.running { return false }
                state.running = true
                return true
            }
            if start { queue.async { self.drain() } }
        }
    }

    private func drain() {
        while true {
            let batch = state.withLock { state -> [CheckedContinuation<Void, any Error>] in
                let batch = state.waiters
                state.waiters.removeAll(keepingCapacity: true)
                if batch.isEmpty { state.running = false }
                return batch
            }
            if batch.isEmpty { return }
            // Every write in this batch finished before its waiter was queued,
            // so this sync covers all of them.
            let result = Result { try sync() }
            for waiter in batch { waiter.resume(with: result) }
        }
    }
}
