/// A point-in-time list of live keys and where their values are, sorted by
/// key, taken under the read lock and read afterwards without it (the
/// segments it names stay mapped while it holds them). Keys sit in one byte
/// array and entries hold no references, so a list of a million keys is
/// two allocations and sorts without reference counting.
struct SnapshotList {
    struct Entry {
        var keyStart: Int
        var keyCount: Int
        var segment: UInt32
        var offset: UInt32
        var size: UInt32
        var deadline: UInt64
    }

    private(set) var entries: [Entry] = []
    private var keyBytes: [UInt8] = []
    private var segments: [UInt32: Segment] = [:]

    init(capacity: Int) {
        entries.reserveCapacity(capacity)
        keyBytes.reserveCapacity(capacity * 16)
    }

    mutating func append(key: UnsafeRawBufferPointer, segment: Segment, location: KeyLocation) {
        if segments[segment.id] == nil { segments[segment.id] = segment }
        entries.append(Entry(keyStart: keyBytes.count, keyCount: key.count, segment: segment.id,
                             offset: location.offset, size: location.size, deadline: location.deadline))
        keyBytes.append(contentsOf: key)
    }

    mutating func sortByKey() {
        keyBytes.withUnsafeBytes { keys in
            entries.sort {
                KeyOrder.precedes(UnsafeRawBufferPointer(rebasing: keys[$0.keyStart..<($0.keyStart + $0.keyCount)]),
                                  UnsafeRawBufferPointer(rebasing: keys[$1.keyStart..<($1.keyStart + $1.keyCount)]))
            }
        }
    }

    func key(of entry: Entry) -> [UInt8] { Array(keyBytes[entry.keyStart..<(entry.keyStart + entry.keyCount)]) }
    func segment(of entry: Entry) -> Segment { segments[entry.segment]! }
}

enum StoreSnapshot {
    /// Nil when the state is a shared index that a writer changed while it was
    /// walked, or that names segments this process has not opened.
    static func entries(of state: StoreState, prefix: [UInt8]) -> SnapshotList? {
        let now = Syscalls.wallClockMilliseconds()
        return consistently(state) {
            var list = SnapshotList(capacity: prefix.isEmpty ? state.index.count : 16)
            let unreadable = state.index.forEach { key, location in
                if !prefix.isEmpty && (key.count < prefix.count || !key.starts(with: prefix)) { return }
                if location.isExpired(at: now) { return }
                guard let segment = state.segment(location.segment) else { return }
                list.append(key: key, segment: segment, location: location)
            }
            list.sortByKey()
            return unreadable == 0 ? list : nil
        }
    }

    /// `body`'s result, taken while no write was applied (a shared index; any other is guarded by the store's lock).
    private static func consistently<R>(_ state: StoreState, _ body: () -> R?) -> R? {
        if state.index.writable { return body() }
        // A busy writer may keep changing it: a few walks, then the caller takes a copy of its own.
        return state.index.readConsistently(attempts: 2000, walks: 3, body) ?? nil
    }
}

extension StoreSnapshot {
    /// The `limit` smallest live keys that start with `prefix` and sort after
    /// `after` (bytewise), in order: one pass over the index keeping only
    /// `limit` keys (a heap), not a sorted copy of every key.
    static func keys(of state: StoreState, prefix: [UInt8], after: [UInt8]?, limit: Int) -> [[UInt8]]? {
        guard limit > 0 else { return [] }
        let now = Syscalls.wallClockMilliseconds()
        return consistently(state) {
            var heap = KeyHeap()  // the largest kept key on top
            let unreadable = state.index.forEach { key, location in
                if !prefix.isEmpty && (key.count < prefix.count || !key.starts(with: prefix)) { return }
                if location.isExpired(at: now) { return }
                if let after, !after.withUnsafeBytes({ KeyOrder.precedes($0, key) }) { return }
                if heap.count == limit {
                    guard heap.top!.withUnsafeBytes({ KeyOrder.precedes(key, $0) }) else { return }
                    heap.replaceTop(Array(key))
                } else {
                    heap.push(Array(key))
                }
            }
            return unreadable == 0 ? heap.sorted() : nil
        }
    }
}

/// A binary max-heap of keys ordered bytewise.
struct KeyHeap {
    private var items: [[UInt8]] = []
    var count: Int { items.count }
    var top: [UInt8]? { items.first }

    mutating func push(_ key: [UInt8]) {
        items.append(key)
        var child = items.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard KeyOrder.precedes(items[parent], items[child]) else { break }
            items.swapAt(parent, child)
            child = parent
        }
    }

    mutating func replaceTop(_ key: [UInt8]) {
        items[0] = key
        var parent = 0
        while true {
            let left = 2 * parent + 1, right = left + 1
            var largest = parent
            if left < items.count && KeyOrder.precedes(items[largest], items[left]) { largest = left }
            if right < items.count && KeyOrder.precedes(items[largest], items[right]) { largest = right }
            if largest == parent { return }
            items.swapAt(parent, largest)
            parent = largest
        }
    }

    func sorted() -> [[UInt8]] { items.sorted { KeyOrder.precedes($0, $1) } }
}
