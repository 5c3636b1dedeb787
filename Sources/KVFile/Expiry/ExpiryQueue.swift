/// The keys whose values have a deadline, soonest first: what a writer's
/// expiry sweep records as expired once the wall clock passes it. Held in
/// memory by the writer only (one entry per key: its earliest deadline);
/// filled by its own writes and by a walk of the index when it opens.
/// Readers decide expiry from the record alone.
final class ExpiryQueue: @unchecked Sendable {
    private struct Entry {
        var deadline: UInt64
        var key: [UInt8]
    }

    private let mutex = PlainMutex()
    private var heap: [Entry] = []
    /// Each queued key's deadline in the heap (a later one waits for it: the
    /// sweep then finds the value not yet expired and queues it again).
    private var queued: [[UInt8]: UInt64] = [:]

    var count: Int { mutex.withLock { queued.count } }

    func add(_ key: [UInt8], deadline: UInt64) {
        mutex.withLock {
            if let known = queued[key], known <= deadline { return }
            queued[key] = deadline
            heap.append(Entry(deadline: deadline, key: key))
            var child = heap.count - 1
            while child > 0 {
                let parent = (child - 1) / 2
                guard heap[child].deadline < heap[parent].deadline else { break }
                heap.swapAt(parent, child)
                child = parent
            }
        }
    }

    /// Removes and returns up to `limit` keys whose deadline is at or before `now`.
    func takeDue(now: UInt64, limit: Int) -> [(key: [UInt8], deadline: UInt64)] {
        mutex.withLock {
            var due: [(key: [UInt8], deadline: UInt64)] = []
            while due.count < limit, let first = heap.first, first.deadline <= now {
                popFirst()
                // An entry a sooner deadline of the same key replaced is stale.
                guard queued[first.key] == first.deadline else { continue }
                queued[first.key] = nil
                due.append((first.key, first.deadline))
            }
            return due
        }
    }

    private func popFirst() {
        let last = heap.removeLast()
        guard !heap.isEmpty else { return }
        heap[0] = last
        var parent = 0
        while true {
            let left = 2 * parent + 1, right = left + 1
            var smallest = parent
            if left < heap.count && heap[left].deadline < heap[smallest].deadline { smallest = left }
            if right < heap.count && heap[right].deadline < heap[smallest].deadline { smallest = right }
            if smallest == parent { return }
            heap.swapAt(parent, smallest)
            parent = smallest
        }
    }
}
