#if canImport(Glibc)
import Glibc
#endif

/// A point-in-time list of live keys and where their values are, sorted by
/// key, taken under the read lock and read afterwards without it (the
/// segments it names stay mapped while it holds them). Keys sit in one byte
/// array and entries hold no references, so a chunk sorts without reference
/// counting. Memory stays bounded: past `chunkBytes` of keys and entries, each
/// chunk is sorted and written to a ``SpillFile`` as a run, and the runs and
/// the last chunk are merged when the list is read. Where no run can be
/// written (no temporary file, a full disk), the rest stays in memory.
struct SnapshotList {
    struct Entry {
        var keyStart: Int
        var keyCount: Int
        var segment: UInt32
        var offset: UInt32
        var size: UInt32
        var deadline: UInt64
    }

    private var entries: [Entry] = []
    private var keyBytes: [UInt8] = []
    private var segments: [UInt32: Segment] = [:]
    private let store: String
    private let chunkBytes: Int
    private var spill: SpillFile?
    private var runs: [Range<Int>] = []
    /// Set when a run could not be written: the list keeps the rest in memory.
    private var spillFailed = false

    init(capacity: Int, store: String, chunkBytes: Int) {
        self.store = store
        self.chunkBytes = chunkBytes
        let entryCapacity = min(capacity, chunkBytes / MemoryLayout<Entry>.stride + 1)
        entries.reserveCapacity(entryCapacity)
        keyBytes.reserveCapacity(min(entryCapacity * 16, chunkBytes))
    }

    mutating func append(key: UnsafeRawBufferPointer, segment: Segment, location: KeyLocation) {
        if segments[segment.id] == nil { segments[segment.id] = segment }
        entries.append(Entry(keyStart: keyBytes.count, keyCount: key.count, segment: segment.id,
                             offset: location.offset, size: location.size, deadline: location.deadline))
        keyBytes.append(contentsOf: key)
        if !spillFailed && entries.count * MemoryLayout<Entry>.stride + keyBytes.count >= chunkBytes { spillChunk() }
    }

    /// After the last append: the chunk in memory is sorted (it is merged with the runs, if any).
    mutating func finish() {
        sortByKey()
    }

    private mutating func sortByKey() {
        keyBytes.withUnsafeBytes { keys in
            entries.sort {
                KeyOrder.precedes(UnsafeRawBufferPointer(rebasing: keys[$0.keyStart..<($0.keyStart + $0.keyCount)]),
                                  UnsafeRawBufferPointer(rebasing: keys[$1.keyStart..<($1.keyStart + $1.keyCount)]))
            }
        }
    }

    /// Sorts the chunk, appends it to the spill file as one run of records
    /// (u16 key length, key, u32 segment, u32 offset, u32 size, u64 deadline),
    /// and empties it; when that fails, the chunk stays and so does what follows.
    private mutating func spillChunk() {
        sortByKey()
        do throws(KVFileError) {
            if spill == nil { spill = try SpillFile(near: store) }
            let file = spill!
            let start = file.end
            let buffer = GrowableBuffer(capacity: SpilledRecord.bufferSize)
            try withBytes(keyBytes) { (keys) throws(KVFileError) in
                for entry in entries {
                    if buffer.count + SpilledRecord.maxSize > SpilledRecord.bufferSize {
                        try file.append(UnsafeRawBufferPointer(start: buffer.base, count: buffer.count))
                        buffer.count = 0
                    }
                    SpilledRecord.encode(entry, key: UnsafeRawBufferPointer(rebasing: keys[entry.keyStart..<(entry.keyStart + entry.keyCount)]), into: buffer)
                }
            }
            try file.append(UnsafeRawBufferPointer(start: buffer.base, count: buffer.count))
            runs.append(start..<file.end)
        } catch {
            spillFailed = true
            return
        }
        entries.removeAll(keepingCapacity: true)
        keyBytes.removeAll(keepingCapacity: true)
    }

    /// Calls `body` with each key, its entry and segment, in key order, until it returns false.
    func forEachSorted(_ body: (UnsafeRawBufferPointer, Entry, Segment) throws(KVFileError) -> Bool) throws(KVFileError) {
        try withBytes(keyBytes) { (keys) throws(KVFileError) in
            guard let spill, !runs.isEmpty else {
                for entry in entries {
                    let key = UnsafeRawBufferPointer(rebasing: keys[entry.keyStart..<(entry.keyStart + entry.keyCount)])
                    guard try body(key, entry, segments[entry.segment]!) else { return }
                }
                return
            }
            var merge = try RunMerge(file: spill, runs: runs, inMemory: MemoryRun(entries: entries, keys: keys))
            try merge.forEach { (key, entry) throws(KVFileError) in try body(key, entry, segments[entry.segment]!) }
        }
    }
}

/// One entry of a spilled run.
enum SpilledRecord {
    static let fixedSize = 2 + 4 + 4 + 4 + 8
    static let maxSize = fixedSize + RecordFormat.maxKeyLength
    /// Each run is read through a buffer this size (a record always fits), so a
    /// merge holds about 1/512 of the keys' bytes: a buffer per 8 MiB chunk.
    static let bufferSize = 1 << 14

    static func encode(_ entry: SnapshotList.Entry, key: UnsafeRawBufferPointer, into buffer: GrowableBuffer) {
        let p = buffer.reserve(fixedSize + key.count)
        p.storeLE(UInt16(key.count), at: 0)
        if key.count > 0 { (p + 2).copyMemory(from: key.baseAddress!, byteCount: key.count) }
        let q = p + 2 + key.count
        q.storeLE(entry.segment, at: 0)
        q.storeLE(entry.offset, at: 4)
        q.storeLE(entry.size, at: 8)
        q.storeLE(entry.deadline, at: 12)
        buffer.count += fixedSize + key.count
    }
}

/// A sorted run the merge reads: its current key and entry, and a step to the next.
private protocol SortedRun: AnyObject {
    var key: UnsafeRawBufferPointer { get }
    var entry: SnapshotList.Entry { get }
    /// Moves to the next record; false past the last.
    func advance() throws(KVFileError) -> Bool
}

/// The last chunk, still in memory (sorted).
private final class MemoryRun: SortedRun {
    private let entries: [SnapshotList.Entry]
    private let keys: UnsafeRawBufferPointer
    private var index = -1
    private(set) var key = UnsafeRawBufferPointer(start: nil, count: 0)
    private(set) var entry = SnapshotList.Entry(keyStart: 0, keyCount: 0, segment: 0, offset: 0, size: 0, deadline: 0)

    /// `keys` must stay valid while the run is read.
    init(entries: [SnapshotList.Entry], keys: UnsafeRawBufferPointer) {
        self.entries = entries
        self.keys = keys
    }

    func advance() throws(KVFileError) -> Bool {
        index += 1
        guard index < entries.count else { return false }
        entry = entries[index]
        key = UnsafeRawBufferPointer(rebasing: keys[entry.keyStart..<(entry.keyStart + entry.keyCount)])
        return true
    }
}

/// Reads one spilled run record by record through a buffer of its own.
private final class FileRun: SortedRun {
    private let file: SpillFile
    private var next: Int
    private let end: Int
    private let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: SpilledRecord.bufferSize, alignment: 8)
    private var position = 0
    private var filled = 0
    private var length = 0
    private(set) var key = UnsafeRawBufferPointer(start: nil, count: 0)
    private(set) var entry = SnapshotList.Entry(keyStart: 0, keyCount: 0, segment: 0, offset: 0, size: 0, deadline: 0)

    init(file: SpillFile, run: Range<Int>) {
        self.file = file
        next = run.lowerBound
        end = run.upperBound
    }

    deinit { buffer.deallocate() }

    func advance() throws(KVFileError) -> Bool {
        position += length
        length = 0
        guard try have(2) else {
            if filled > position { throw spillDamaged() }
            return false
        }
        let keyCount = Int((UnsafeRawPointer(buffer.baseAddress!) + position).loadLE(at: 0, as: UInt16.self))
        guard keyCount <= RecordFormat.maxKeyLength, try have(SpilledRecord.fixedSize + keyCount) else { throw spillDamaged() }
        let record = UnsafeRawPointer(buffer.baseAddress!) + position
        key = UnsafeRawBufferPointer(start: record + 2, count: keyCount)
        let q = record + 2 + keyCount
        entry = SnapshotList.Entry(keyStart: 0, keyCount: keyCount, segment: q.loadLE(at: 0, as: UInt32.self),
                                   offset: q.loadLE(at: 4, as: UInt32.self), size: q.loadLE(at: 8, as: UInt32.self),
                                   deadline: q.loadLE(at: 12, as: UInt64.self))
        length = SpilledRecord.fixedSize + keyCount
        return true
    }

    /// True when `count` bytes from `position` are in the buffer (reading more when they are not).
    private func have(_ count: Int) throws(KVFileError) -> Bool {
        if filled - position >= count { return true }
        let kept = filled - position
        if kept > 0 && position > 0 { memmove(buffer.baseAddress!, buffer.baseAddress! + position, kept) }
        position = 0
        filled = kept
        let wanted = min(buffer.count - filled, end - next)
        if wanted > 0 {
            let got = try file.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[filled..<(filled + wanted)]), at: next)
            // The run was written whole: a short read means the file lost bytes.
            if got < wanted { throw spillDamaged() }
            next += got
            filled += got
        }
        return filled - position >= count
    }

    private func spillDamaged() -> KVFileError {
        KVFileError(.io, "a sorted run of keys in a temporary file in \(file.directory) reads back short or damaged", path: file.directory)
    }
}

/// The k-way merge of sorted runs, smallest key first (a min-heap).
private struct RunMerge {
    private var heap: [any SortedRun] = []

    init(file: SpillFile, runs: [Range<Int>], inMemory: MemoryRun) throws(KVFileError) {
        let all: [any SortedRun] = runs.map { FileRun(file: file, run: $0) } + [inMemory]
        for run in all where try run.advance() { heap.append(run) }
        for index in stride(from: heap.count / 2 - 1, through: 0, by: -1) { siftDown(index) }
    }

    mutating func forEach(_ body: (UnsafeRawBufferPointer, SnapshotList.Entry) throws(KVFileError) -> Bool) throws(KVFileError) {
        while let top = heap.first {
            guard try body(top.key, top.entry) else { return }
            if try !top.advance() {
                heap.swapAt(0, heap.count - 1)
                heap.removeLast()
            }
            if !heap.isEmpty { siftDown(0) }
        }
    }

    private mutating func siftDown(_ start: Int) {
        var parent = start
        while true {
            let left = 2 * parent + 1, right = left + 1
            var smallest = parent
            if left < heap.count && KeyOrder.precedes(heap[left].key, heap[smallest].key) { smallest = left }
            if right < heap.count && KeyOrder.precedes(heap[right].key, heap[smallest].key) { smallest = right }
            if smallest == parent { return }
            heap.swapAt(parent, smallest)
            parent = smallest
        }
    }
}

enum StoreSnapshot {
    /// Nil when the state is a shared index that a writer changed while it was
    /// walked, or that names segments this process has not opened.
    static func entries(of state: StoreState, prefix: [UInt8], chunkBytes: Int) -> SnapshotList? {
        let now = Syscalls.wallClockMilliseconds()
        return consistently(state) {
            var list = SnapshotList(capacity: prefix.isEmpty ? state.index.count : 16, store: state.directory, chunkBytes: chunkBytes)
            let unreadable = state.index.forEach { key, location in
                if !prefix.isEmpty && (key.count < prefix.count || !key.starts(with: prefix)) { return }
                if location.isExpired(at: now) { return }
                guard let segment = state.segment(location.segment) else { return }
                list.append(key: key, segment: segment, location: location)
            }
            list.finish()
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
