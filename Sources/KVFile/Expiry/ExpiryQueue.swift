/// The keys whose values have a deadline, soonest first: what a writer's
/// expiry sweep records as expired once the wall clock passes it. Held in
/// memory by the writer only; filled by its own writes and by a sweep of
/// the index when it opens (readers decide expiry from the record alone).
final class ExpiryQueue: @unchecked Sendable {
    private struct Entry {
        var deadline: UInt64
        var key: [UInt8]
    }

    private let mutex = PlainMutex()
    private var heap: [Entry] = []

    var count: Int { mutex.withLock { heap.count } }

    func add(_ key: [UInt8], deadline: UInt64) {
        mutex.withLock {
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
    func takeDue(now: UInt64, limit: Int) -> [[UInt8]] {
        mutex.withLock {
            var due: [[UInt8]] = []
            while due.count < limit, let first = heap.first, first.deadline <= now {
                due.append(first.key)
                let last = heap.removeLast()
                guard !heap.isEmpty else { break }
                heap[0] = last
                var parent = 0
                while true {
                    let left = 2 * parent + 1, right = left + 1
                    var smallest = parent
                    if left < heap.count && heap[left].deadline < heap[smallest].deadline { smallest = left }
                    if right < heap.count && heap[right].deadline < heap[smallest].deadline { smallest = right }
                    if smallest == parent { break }
                    heap.swapAt(parent, smallest)
                    parent = smallest
                }
            }
            return due
        }
    }
}
