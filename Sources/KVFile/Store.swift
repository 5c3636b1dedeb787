#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// An open kvfile store: a directory of append-only, checksummed segment
/// files with a hash index of every live key in a file of its own, which the
/// writer and every reader map.
///
/// One process at a time may open a store for writing (an OS lock on
/// `kvfile.lock` enforces it); any number may open it read-only at the same
/// time. Readers share the writer's index file (`kvfile.index`) and see each
/// write as soon as its `put` returns; a reader of a store whose index cannot
/// be used builds an index in memory and calls ``refresh()`` to see newer writes. A `Store` is safe to share
/// between threads and tasks: reads run in parallel, writes one at a time.
///
/// ```swift
/// let store = try Store(path: "./cache.kv")
/// try store.put("greeting", "hello")
/// let value = try store.getString("greeting")   // "hello"
/// try store.close()
/// ```
public final class Store: @unchecked Sendable {
    /// The store directory, as given.
    public let path: String
    /// The options it was opened with.
    public let options: StoreOptions

    let lock = ReadWriteLock()
    var state: StoreState {
        didSet { usesOwnIndex.store(writer == nil && state.index.path == nil, ordering: .relaxed) }
    }
    /// A reader whose index is its own (the shared file could not be used): it looks again now and then.
    private let usesOwnIndex = Atomic<Bool>(false)
    private let lastLookAtSharedIndex = Atomic<UInt64>(0)
    private var loader: StoreLoader
    /// nil for a read-only store.
    let writer: SegmentWriter?
    private var lockFile: LockFile?
    /// Closed or not (shared with the write path and the seal scheduler).
    private let openState: OpenState
    private var closed: Bool {
        get { openState.isClosed }
        set { if newValue { openState.markClosed() } }
    }

    /// Compacts the sealed segments (writers only; set at the end of `init`).
    private(set) var compactor: Compactor?
    #if DEBUG
    /// Tests set this to simulate a crash at a compaction step (return true to crash there).
    var compactionFailpoint: ((CompactionStep) -> Bool)? {
        get { compactor?.failpointHook }
        set { compactor?.failpointHook = newValue }
    }
    #endif

    /// Automatic compaction and background seals: `close()` stops and waits for them.
    private let background = BackgroundThreads()
    /// Deadlines: what the index says of them, the writer's sweep (writers only; set in `init`).
    private var expiry: ExpiryKeeper?
    /// Puts, deletes and batches of a writer (set in `init`).
    private var writePath: WritePath?

    /// Wakes change-feed tailers (writers only).
    private let watchNotifier: WatchNotifier?

    /// Seals rolled segments and runs group commit for durability `.always` and `sync()` (writers only).
    private var sealer: SealScheduler?
    private var syncer: IntervalSyncer?
    /// A failed sync or removed files: every later write and sync fails (writers only).
    let failure = WriterFailure()

    /// Opens (and, for a writer with `createIfMissing`, creates) the store in directory `path`.
    ///
    /// Opening after a crash cuts a torn tail off the active segment; damage
    /// anywhere else fails with ``KVFileError/Code/corrupt`` naming the file and offset.
    /// - Throws: ``KVFileError`` `.storeNotFound` (no store and not allowed to create one), `.notAStore`, `.locked` (another writer past the lock timeout), `.corrupt` (damage other than a torn tail), `.unsupportedVersion`, `.invalidArgument` (options out of range), `.io`.
    public init(path: String, options: StoreOptions = StoreOptions()) throws(KVFileError) {
        try options.validate()
        var directory = path
        while directory.count > 1 && directory.hasSuffix("/") { directory.removeLast() }
        self.path = directory
        self.options = options
        openState = OpenState(path: directory)
        let writing = !options.readOnly
        var loader = StoreLoader(directory: directory, writer: writing, segmentSize: options.segmentSize)

        var names = try StoreDirectory.prepare(directory, options: options)
        var activeHints = HintBuilder()
        if writing {
            lockFile = try LockFile.acquire(directory: directory, timeoutMilliseconds: options.lockTimeoutMilliseconds)
            // Another writer may have changed the directory while we waited.
            names = try Syscalls.listDirectory(directory)
            let interrupted = try StoreDirectory.finishInterruptedCompaction(directory, names: names)
            if interrupted { names = try Syscalls.listDirectory(directory) }
            try StoreDirectory.removeLeftovers(directory, names: names)
            (state, activeHints) = try IndexedOpen.openWriter(names: names, loader: &loader, compactionWasInterrupted: interrupted)
        } else if let shared = try IndexedOpen.openReader(names: names, loader: &loader) {
            state = shared
        } else {
            state = try StoreDirectory.load(names: names, loader: &loader).state
        }
        self.loader = loader
        usesOwnIndex.store(!writing && state.index.path == nil, ordering: .relaxed)

        if writing {
            if state.activeSegment == nil {
                let first = try SegmentWriter.createSegment(
                    id: state.allocateSegmentID(), baseSeq: state.nextSeq, directory: directory, capacity: options.segmentSize)
                state.add(first)
            }
            try Syscalls.syncDirectory(directory)
            let seals = SealQueue()
            writer = SegmentWriter(directory: directory, segmentSize: options.segmentSize, active: state.activeSegment!, hints: activeHints,
                                   seals: seals, registry: state)
            let upgrade = state.activeSegment!.header.version < RecordFormat.version
            watchNotifier = WatchNotifier(directory: directory)
            sealer = SealScheduler(queue: seals, writer: writer!, directory: directory, lock: lock, failure: failure,
                                   background: background, openState: openState)
            if case .interval(let milliseconds) = options.durability {
                let syncer = IntervalSyncer(milliseconds: milliseconds) { [weak self] in try? self?.sync() }
                syncer.start()
                self.syncer = syncer
            }
            compactor = Compactor(directory: directory, segmentSize: options.segmentSize, policy: options.autoCompaction,
                                  lock: lock, state: state, writer: writer!, failure: failure, background: background, host: self)
            if upgrade {
                // A store written before an earlier version: its active segment is sealed and new records go to one in this version.
                try writer!.upgradeActive(nextSeq: state.nextSeq)
                state.noteRolled(to: writer!.end)
                try finishSeals()
            }
            let expiry = ExpiryKeeper(lock: lock, state: state, background: background, host: self)
            self.expiry = expiry
            writePath = WritePath(
                path: directory, durability: options.durability, lock: lock, state: state, writer: writer!, failure: failure,
                sealer: sealer!, compactor: compactor!, expiry: expiry, watchNotifier: watchNotifier,
                openState: openState)
            // Expiries that passed while no writer was open are recorded now (a walk of the
            // index, only when the earliest deadline the index knows has passed).
            if expiry.somePassedWhileClosed { try recordDueExpiries() }
            expiry.startSweep()
        } else {
            writer = nil
            watchNotifier = nil
        }
    }

    deinit {
        if !closed { try? close() }
    }

    /// True when the store was opened without the writer lock.
    public var isReadOnly: Bool { writer == nil }

    // MARK: reading

    /// The value of `key`, or nil when it has none.
    /// - Throws: ``KVFileError`` `.closed` after ``close()``; `.corrupt` when the record the index names is damaged (never returned as data); `.io` when a file cannot be read.
    public func get(_ key: [UInt8]) throws(KVFileError) -> [UInt8]? {
        try withBytes(key) { (key) throws(KVFileError) in try get(raw: key) }
    }

    /// The value of `key` (UTF-8), or nil when it has none.
    /// - Throws: ``KVFileError``, as `get` does.
    public func get(_ key: String) throws(KVFileError) -> [UInt8]? {
        try get(Array(key.utf8))
    }

    /// The value of `key` decoded as UTF-8 (invalid bytes become U+FFFD), or nil.
    /// - Throws: ``KVFileError``, as `get` does.
    public func getString(_ key: String) throws(KVFileError) -> String? {
        try get(key).map { String(decoding: $0, as: UTF8.self) }
    }

    /// Calls `body` with the value of `key` (nil when absent) without copying
    /// it into an array. The bytes are valid only inside `body`, which must
    /// not write to this store.
    /// - Throws: ``KVFileError``, as `get` does. Rethrows what `body` throws.
    public func withValue<R>(forKey key: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer?) throws -> R) throws -> R {
        try withLocation(key) { location throws -> R in
            guard let location else { return try body(nil) }
            return try RecordReader.withValue(at: location, key: key, in: state, body)
        }
    }

    /// Like ``withValue(forKey:_:)``, also passing the sequence number of the
    /// write that set the value (0 when absent): a version for caches and ETags.
    /// - Throws: ``KVFileError``, as `get` does. Rethrows what `body` throws.
    public func withVersionedValue<R>(
        forKey key: UnsafeRawBufferPointer, _ body: (_ value: UnsafeRawBufferPointer?, _ seq: UInt64) throws -> R
    ) throws -> R {
        try withLocation(key) { location throws -> R in
            guard let location else { return try body(nil, 0) }
            return try RecordReader.withValue(at: location, key: key, in: state) { try body($0, location.seq) }
        }
    }

    /// Like ``withVersionedValue(forKey:_:)`` when the answer is at hand;
    /// returns nil without calling `body` when giving it would wait: for the
    /// store's lock (a writer switching segments or files holds it), for the
    /// disk (a page of the index slots or of the record is not in memory), or
    /// to repair or reopen the index. For code on threads that must not block
    /// (Swift's cooperative pool, an event loop): answer inline when this
    /// returns a value, else call ``withVersionedValue(forKey:_:)`` on a
    /// thread that may wait.
    /// - Throws: ``KVFileError``, as `get` does. Rethrows what `body` throws.
    public func withVersionedValueIfAtHand<R>(
        forKey key: UnsafeRawBufferPointer, _ body: (_ value: UnsafeRawBufferPointer?, _ seq: UInt64) throws -> R
    ) throws -> R? {
        // A reader with an index of its own looks at the shared file now and then (lookAgainAtSharedIndex): the blocking read does that.
        if usesOwnIndex.load(ordering: .relaxed) && Syscalls.monotonicMilliseconds() &- lastLookAtSharedIndex.load(ordering: .relaxed) >= 250 {
            return nil
        }
        var answer: R?
        let answered = try lock.withReadLockIfFree { () throws -> Bool in
            try checkOpen()
            guard !key.isEmpty else {
                answer = try body(nil, 0)
                return true
            }
            guard state.index.probeIsInMemory(key) else { return false }
            switch state.index.probe(key, reportingDamage: true) {
            case .found(let location) where location.isLive:
                guard let segment = state.segment(location.segment), Int(location.offset) + Int(location.size) <= segment.mappedLength,
                      ResidentPages.contain(segment.base + Int(location.offset), count: Int(location.size)) else { return false }
                answer = try RecordReader.withValue(at: location, key: key, in: state) { try body($0, location.seq) }
            case .found, .notFound: answer = try body(nil, 0)
            default: return false
            }
            return true
        }
        return answered == true ? answer : nil
    }

    /// A reader with an index of its own switches to the shared file once it can
    /// be used (a writer built it, or rebuilt a damaged one): at most every 250 ms it looks.
    @inline(__always)
    private func lookAgainAtSharedIndex() {
        guard usesOwnIndex.load(ordering: .relaxed) else { return }
        let now = Syscalls.monotonicMilliseconds()
        guard now &- lastLookAtSharedIndex.load(ordering: .relaxed) >= 250 else { return }
        lastLookAtSharedIndex.store(now, ordering: .relaxed)
        lock.withWriteLock {
            guard !closed, state.index.path == nil, let names = try? Syscalls.listDirectory(path),
                  let shared = try? IndexedOpen.openReader(names: names, loader: &loader) else { return }
            state = shared
        }
    }

    private func get(raw key: UnsafeRawBufferPointer) throws(KVFileError) -> [UInt8]? {
        try lookUp(key, readingValue: true)?.value
    }

    /// Where `key`'s live value is (nil: it has none) and, with `readingValue`,
    /// the value: one probe under the read lock, the index mended if it must be.
    private func lookUp(_ key: UnsafeRawBufferPointer, readingValue: Bool) throws(KVFileError) -> (location: KeyLocation, value: [UInt8]?)? {
        lookAgainAtSharedIndex()
        var attempt = 0
        while true {
            let (found, problem) = try lock.withReadLock { () throws(KVFileError) -> ((location: KeyLocation, value: [UInt8]?)?, IndexProbe?) in
                try checkOpen()
                guard !key.isEmpty else { return (nil, nil) }
                switch state.index.probe(key, reportingDamage: true) {
                case .found(let location) where location.isLive:
                    return ((location, readingValue ? try RecordReader.value(at: location, key: key, in: state) : nil), nil)
                case .found, .notFound: return (nil, nil)
                case let problem: return (nil, problem)
                }
            }
            guard let problem else { return found }
            try mendIndex(problem, attempt: attempt)
            attempt += 1
        }
    }

    /// Calls `body` under the read lock with where `key` lives (nil: nowhere).
    private func withLocation<R>(_ key: UnsafeRawBufferPointer, _ body: (KeyLocation?) throws -> R) throws -> R {
        lookAgainAtSharedIndex()
        var attempt = 0
        while true {
            let (result, problem) = try lock.withReadLock { () throws -> (R?, IndexProbe?) in
                try checkOpen()
                guard !key.isEmpty else { return (try body(nil), nil) }
                switch state.index.probe(key, reportingDamage: true) {
                case .found(let location) where location.isLive: return (try body(location), nil)
                case .found, .notFound: return (try body(nil), nil)
                case let problem: return (nil, problem)
                }
            }
            guard let problem else { return result! }
            try mendIndex(problem, attempt: attempt)
            attempt += 1
        }
    }

    /// True when `key` has a value.
    /// - Throws: ``KVFileError``, as `get` does.
    public func contains(_ key: [UInt8]) throws(KVFileError) -> Bool {
        try withBytes(key) { (raw) throws(KVFileError) in try lookUp(raw, readingValue: false) != nil }
    }

    /// True when `key` (UTF-8) has a value.
    /// - Throws: ``KVFileError``, as `get` does.
    public func contains(_ key: String) throws(KVFileError) -> Bool { try contains(Array(key.utf8)) }

    /// The number of live keys.
    public var count: Int { lock.withReadLock { state.index.count } }

    /// Calls `body` with every live key and its value, sorted by key bytes,
    /// as they were when the call began. Only keys starting with `prefix`
    /// when one is given. Other threads may read and write meanwhile. Memory
    /// stays bounded: past 8 MiB of keys and locations, they are sorted in runs
    /// in an unnamed temporary file beside the store (in `$TMPDIR` or `/tmp`
    /// when the store's directory cannot hold one) and merged (a 16 KiB buffer
    /// per run); where no run can be written, the rest stays in memory.
    /// - Throws: ``KVFileError``, as `get` does. Rethrows what `body` throws.
    public func forEach(prefix: [UInt8] = [], _ body: (_ key: [UInt8], _ value: [UInt8]) throws -> Void) throws {
        try forEach(prefix: prefix) { key, value, _ in try body(key, value) }
    }

    /// Like ``forEach(prefix:_:)``, also passing when each value expires
    /// (milliseconds since the Unix epoch; 0: never). Values already expired
    /// when the call began are left out.
    /// - Throws: ``KVFileError``, as `get` does. Rethrows what `body` throws.
    public func forEach(prefix: [UInt8] = [], _ body: (_ key: [UInt8], _ value: [UInt8], _ expiresAt: UInt64) throws -> Void) throws {
        try openNewSegments()
        let snapshot = try snapshot { StoreSnapshot.entries(of: $0, prefix: prefix, chunkBytes: options.snapshotChunkBytes) }
        var bodyError: (any Error)?
        try snapshot.forEachSorted { (key, entry, segment) throws(KVFileError) -> Bool in
            let value = try RecordReader.value(in: segment, offset: Int(entry.offset), size: Int(entry.size), key: key)
            do {
                try body(Array(key), value, entry.deadline)
            } catch {
                bodyError = error
                return false
            }
            return true
        }
        if let bodyError { throw bodyError }
    }

    /// Every live key starting with `prefix`, sorted by bytes (sorted as
    /// ``forEach(prefix:_:)`` sorts; the array returned holds them all).
    /// - Throws: ``KVFileError``, as `get` does.
    public func keys(prefix: [UInt8] = []) throws(KVFileError) -> [[UInt8]] {
        try openNewSegments()
        let snapshot = try snapshot { StoreSnapshot.entries(of: $0, prefix: prefix, chunkBytes: options.snapshotChunkBytes) }
        var keys: [[UInt8]] = []
        try snapshot.forEachSorted { (key, _, _) throws(KVFileError) -> Bool in
            keys.append(Array(key))
            return true
        }
        return keys
    }

    /// Up to `limit` live keys that start with `prefix` and sort after
    /// `after`, sorted by bytes: a page of keys. Pass the last key of a page
    /// as `after` to get the next one. Memory grows with `limit`, not with
    /// the store (one pass over the index).
    /// - Throws: ``KVFileError``, as `get` does.
    public func keys(prefix: [UInt8] = [], after: [UInt8]?, limit: Int) throws(KVFileError) -> [[UInt8]] {
        try openNewSegments()
        return try snapshot { StoreSnapshot.keys(of: $0, prefix: prefix, after: after, limit: limit) }
    }

    /// Counts and sizes, as `kvfile stat` shows them.
    /// - Throws: ``KVFileError``, as `get` does.
    public func stats() throws(KVFileError) -> StoreStats {
        try openNewSegments()
        return try lock.withReadLock { () throws(KVFileError) -> StoreStats in
            try checkOpen()
            var stats = state.stats()
            stats.lastCompaction = compactor?.lastResult
            return stats
        }
    }

    /// For a read-only store: reads what writers appended since open or the
    /// last refresh. A writer's store, and a reader of a shared index, are
    /// always current (the reader only opens segments that appeared).
    /// - Throws: ``KVFileError`` `.closed`, `.corrupt`, `.io` (see the reads).
    public func refresh() throws(KVFileError) {
        guard writer == nil else { return }
        lastLookAtSharedIndex.store(0, ordering: .relaxed)
        lookAgainAtSharedIndex()
        if lock.withReadLock({ state.index.path != nil }) {
            // A shared index is always current: only segments may be new.
            return try lock.withWriteLock { () throws(KVFileError) in
                try checkOpen()
                try refreshSharedIndex()
            }
        }
        try lock.withWriteLock { () throws(KVFileError) in
            try checkOpen()
            let names = try Syscalls.listDirectory(path)
            let caughtUp: Bool
            do throws(KVFileError) {
                caughtUp = try loader.catchUpAll(loader.resolveSegments(names), state: state)
            } catch where error.isNotFound {
                caughtUp = false  // a compaction removed a file while we read: read afresh
            }
            if !caughtUp {
                state = try StoreDirectory.load(names: names, loader: &loader, expectedKeys: state.index.count).state
            }
        }
    }

    /// A reader of a shared index met something it cannot read past: opens new
    /// segments, or opens the index again, or (at last) builds an index of its own.
    private func mendIndex(_ problem: IndexProbe, attempt: Int) throws(KVFileError) {
        try lock.withWriteLock { () throws(KVFileError) in
            try checkOpen()
            if state.index.writable, case .pageDamaged(let at) = problem {
                // The writer found a page of its index failing its checksum: it stops (the next open builds the index anew).
                throw failure.record(KVFileError.corrupt(StoreFiles(path).index, offset: at,
                    "a page of the index file fails its checksum; the store must be opened again, which builds the index anew"))
            }
            if case .damaged(let segment, let offset) = problem, state.index.path == nil || attempt > 0 {
                // Still there in an index read from the log itself: the record is damaged, not the index.
                throw KVFileError.corrupt(StoreFiles(path).segment(segment), offset: Int(offset),
                                          "the record an index slot names for this key fails its checksum")
            }
            guard state.index.path != nil, !state.index.writable else { return }
            if case .unknownSegment(let id) = problem, attempt < 64 {
                // Opened by number (a writer rolls often); now and then the whole directory, to forget removed ones.
                if attempt % 8 == 7 { return try refreshSharedIndex() }
                do throws(KVFileError) {
                    try loader.openForIndex(id, into: state)
                } catch where error.isNotFound {
                    try refreshSharedIndex()
                }
                return
            }
            let names = try Syscalls.listDirectory(path)
            if attempt < 2, case .replaced = problem, let shared = try IndexedOpen.openReader(names: names, loader: &loader) {
                state = shared
                return
            }
            state = try StoreDirectory.load(names: names, loader: &loader).state
        }
    }

    /// `take` applied to the state under the read lock. A reader of a shared
    /// index that writes keep changing (or that names new segments) looks
    /// again, and at last takes it from a point-in-time copy of its own.
    private func snapshot<R>(_ take: (StoreState) -> R?) throws(KVFileError) -> R {
        lookAgainAtSharedIndex()
        for _ in 0..<3 {
            let taken = try lock.withReadLock { () throws(KVFileError) -> R? in
                try checkOpen()
                return take(state)
            }
            if let taken { return taken }
            try openNewSegments()
        }
        var copyLoader = StoreLoader(directory: path, writer: false, segmentSize: options.segmentSize)
        let copy = try StoreDirectory.load(names: Syscalls.listDirectory(path), loader: &copyLoader).state
        guard let taken = take(copy) else {
            // A copy read from the log itself names a record it cannot read: the log is damaged there.
            throw KVFileError(.corrupt, "store \(path): a record the log's own index names cannot be read (damage in a segment)", path: path)
        }
        return taken
    }

    /// A reader of a shared index opens the segments that appeared since (its
    /// index may name records in them), before it walks every key.
    private func openNewSegments() throws(KVFileError) {
        guard writer == nil, lock.withReadLock({ state.index.path != nil && !state.index.writable }) else { return }
        try lock.withWriteLock { () throws(KVFileError) in
            try checkOpen()
            if state.index.path != nil && !state.index.writable { try refreshSharedIndex() }
        }
    }

    /// Opens segments that appeared and forgets those compaction removed (under the write lock).
    private func refreshSharedIndex() throws(KVFileError) {
        let names = try Syscalls.listDirectory(path)
        if state.index.state == IndexFormat.stateReplaced {
            if let shared = try IndexedOpen.openReader(names: names, loader: &loader) {
                state = shared
            } else {
                state = try StoreDirectory.load(names: names, loader: &loader).state
            }
            return
        }
        let ids = try loader.resolveSegments(names)
        // Forgotten only once their files are gone: a compaction's inputs are still named by slots until its switch-over.
        let present = Set(FileNames.segmentIDs(in: names)).union(ids)
        for id in state.segmentIDs where !present.contains(id) { state.remove(id) }
        for segment in state.segments { segment.refreshReadLimit() }
        for id in ids where state.segment(id) == nil {
            do throws(KVFileError) {
                try loader.openForIndex(id, into: state)
            } catch where error.isNotFound {
                continue  // removed meanwhile
            }
        }
        state.nextSeq = max(state.nextSeq, state.index.nextSeq)
        state.newestSeq = state.nextSeq - 1
        state.recomputeOldestSeq()
    }

    // MARK: writing

    /// Sets `key` to `value`; the receipt tells the write's sequence number
    /// and whether it created the key or replaced a value (a value that
    /// expired counts as none). With `expiresAt` (milliseconds since the Unix
    /// epoch, by the wall clock; 0: never) the value expires then: every
    /// reader in every process treats the key as absent from that moment. A
    /// write without one clears an earlier expiry.
    /// - Throws: ``KVFileError`` `.readOnly` for a store opened read-only; `.invalidArgument` for an empty key, a key over 4 KiB or a value over 64 MiB; `.capacityExhausted` when the store's sequence numbers or index slots are used up; `.syncFailed` or `.storeRemoved` once a sync failed or the store's files were removed (every later write fails); `.io` when a file cannot be written (``KVFileError/isDiskFull`` for a full disk); `.closed` after ``close()``.
    @discardableResult
    public func put(_ key: [UInt8], _ value: [UInt8], expiresAt: UInt64 = 0) throws(KVFileError) -> WriteReceipt {
        try withBytes(key) { (key) throws(KVFileError) -> WriteReceipt in
            try withBytes(value) { (value) throws(KVFileError) -> WriteReceipt in
                var current: UInt64 = 0
                return try put(key: key, value: value, condition: nil, deadline: expiresAt, current: &current)!
            }
        }
    }

    /// Sets `key` to `value`, both as UTF-8.
    /// - Throws: ``KVFileError``, as `put(_:_:expiresAt:)` does.
    @discardableResult
    public func put(_ key: String, _ value: String) throws(KVFileError) -> WriteReceipt {
        try put(Array(key.utf8), Array(value.utf8))
    }

    /// Sets `key` to `value` only when `key` has no value; returns whether it did.
    /// The check and the write are one atomic step.
    /// - Throws: ``KVFileError``, as `put(_:_:expiresAt:)` does.
    @discardableResult
    public func putIfAbsent(_ key: [UInt8], _ value: [UInt8]) throws(KVFileError) -> Bool {
        if case .written = try put(key, value, if: .absent) { return true }
        return false
    }

    /// Sets `key` to `value` from raw buffers, without making arrays: the
    /// fastest way to write. The buffers are copied before this returns.
    /// - Throws: ``KVFileError``, as `put(_:_:expiresAt:)` does.
    @discardableResult
    public func put(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) throws(KVFileError) -> WriteReceipt {
        var current: UInt64 = 0
        return try put(key: key, value: value, condition: nil, deadline: 0, current: &current)!
    }

    /// One put, with or without a condition checked under the write lock;
    /// nil (and the key's version in `current`) when the condition does not hold.
    @inline(__always)
    private func put(
        key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, condition: WriteCondition?, deadline: UInt64, current: inout UInt64
    ) throws(KVFileError) -> WriteReceipt? {
        // The key is copied for the message only when the value is too large.
        try Limits.check(keyLength: key.count, valueLength: value.count,
                         key: value.count > RecordFormat.maxValueLength && key.count <= RecordFormat.maxKeyLength ? Array(key) : nil)
        return try writeOne(key: key, value: value, deadline: deadline) { existing throws(KVFileError) -> ChangeKind? in
            if let condition {
                current = existing?.seq ?? 0
                guard condition.holds(for: current) else { return nil }
            }
            try Limits.checkIndexRoom(state.index, newKeys: existing == nil ? 1 : 0)
            return existing == nil ? .created : .updated
        }
    }

    /// Sets `key` to `value` when `condition` holds, in one atomic step (an
    /// expired value counts as none: `.absent` holds). `expiresAt` as for ``put(_:_:expiresAt:)``.
    /// - Throws: ``KVFileError``, as `put(_:_:expiresAt:)` does.
    public func put(
        key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, if condition: WriteCondition, expiresAt: UInt64 = 0
    ) throws(KVFileError) -> ConditionalWriteResult {
        var current: UInt64 = 0
        let receipt = try put(key: key, value: value, condition: condition, deadline: expiresAt, current: &current)
        return receipt.map { .written($0) } ?? .conditionFailed(currentVersion: current)
    }

    /// Sets `key` to `value` (both arrays) when `condition` holds.
    /// - Throws: ``KVFileError``, as `put(_:_:expiresAt:)` does.
    public func put(_ key: [UInt8], _ value: [UInt8], if condition: WriteCondition, expiresAt: UInt64 = 0) throws(KVFileError) -> ConditionalWriteResult {
        try withBytes(key) { (key) throws(KVFileError) -> ConditionalWriteResult in
            try withBytes(value) { (value) throws(KVFileError) -> ConditionalWriteResult in
                try put(key: key, value: value, if: condition, expiresAt: expiresAt)
            }
        }
    }

    /// When the value of `key` expires, in milliseconds since the Unix epoch:
    /// 0 when it never does, nil when the key has no value.
    /// - Throws: ``KVFileError``, as `get` does.
    public func expiry(of key: [UInt8]) throws(KVFileError) -> UInt64? {
        // The record is read whole: its checksum covers the deadline (a damaged one must not read as "none").
        try withBytes(key) { (raw) throws(KVFileError) in try lookUp(raw, readingValue: true)?.location.deadline }
    }

    /// Removes the expiry of `key`'s value (writes the same value without a
    /// deadline); false when the key has no value. A value without one is left alone.
    /// - Throws: ``KVFileError``, as `put(_:_:expiresAt:)` does.
    @discardableResult
    public func persist(_ key: [UInt8]) throws(KVFileError) -> Bool {
        while true {
            let found = try withBytes(key) { (raw) throws(KVFileError) in try lookUp(raw, readingValue: true) }
            guard let found, let value = found.value else {
                try expireIfDue(key)  // an expired value: its expiry is recorded
                return false
            }
            if found.location.deadline == 0 { return true }
            // Written only if nobody changed the key meanwhile; else look again.
            if case .written = try put(key, value, if: .version(anyOf: [found.location.seq])) { return true }
        }
    }

    /// Removes `key` when `condition` holds, in one atomic step.
    /// - Throws: ``KVFileError``, as `put(_:_:expiresAt:)` does.
    public func delete(key: UnsafeRawBufferPointer, if condition: WriteCondition) throws(KVFileError) -> ConditionalWriteResult {
        try Limits.check(keyLength: key.count, valueLength: nil)
        var current: UInt64 = 0
        var held = false
        let receipt = try writeOne(key: key, value: nil) { existing throws(KVFileError) -> ChangeKind? in
            current = existing?.seq ?? 0
            held = condition.holds(for: current)
            return held && existing != nil ? .deleted : nil
        }
        if let receipt { return .written(receipt) }
        return held ? .nothingToDelete : .conditionFailed(currentVersion: current)
    }

    /// Writes one record (see ``WritePath/writeOne(key:value:deadline:decide:)``).
    @inline(__always)
    private func writeOne(
        key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer?, deadline: UInt64 = 0,
        decide: (KeyLocation?) throws(KVFileError) -> ChangeKind?
    ) throws(KVFileError) -> WriteReceipt? {
        _ = try requireWriter()
        return try writePath!.writeOne(key: key, value: value, deadline: deadline, decide: decide)
    }

    // MARK: expiry

    /// Records the expiry of `key` when its value's deadline has passed (a
    /// tombstone flagged as an expiry, which the change feed reports once).
    /// Otherwise writes nothing and returns the value's deadline (0: none or
    /// no value), for the sweep to look again then.
    @discardableResult
    func expireIfDue(_ key: [UInt8]) throws(KVFileError) -> UInt64 {
        var deadline: UInt64 = 0
        _ = try withBytes(key) { (key) throws(KVFileError) in
            try writeOne(key: key, value: nil) { existing in
                deadline = existing?.deadline ?? 0
                return nil
            }
        }
        return deadline
    }

    /// Records every expiry whose deadline has passed (see ``ExpiryKeeper``): what compaction does first.
    func recordDueExpiries() throws(KVFileError) {
        _ = try requireWriter()
        try expiry?.recordDue()
    }

    /// Removes `key`; returns false when it had no value (an expired value
    /// has none: its expiry is recorded then, and nothing else).
    /// - Throws: ``KVFileError``, as `put(_:_:expiresAt:)` does.
    @discardableResult
    public func delete(_ key: [UInt8]) throws(KVFileError) -> Bool {
        try withBytes(key) { (key) throws(KVFileError) -> Bool in try delete(key: key) }
    }

    /// Removes `key` given as a raw buffer; returns false when it had no value.
    /// - Throws: ``KVFileError``, as `put(_:_:expiresAt:)` does.
    @discardableResult
    public func delete(key: UnsafeRawBufferPointer) throws(KVFileError) -> Bool {
        try Limits.check(keyLength: key.count, valueLength: nil)
        return try writeOne(key: key, value: nil) { existing throws(KVFileError) -> ChangeKind? in
            existing == nil ? nil : .deleted
        } != nil
    }

    /// Removes `key` (UTF-8); returns false when it had no value.
    /// - Throws: ``KVFileError``, as `put(_:_:expiresAt:)` does.
    @discardableResult
    public func delete(_ key: String) throws(KVFileError) -> Bool { try delete(Array(key.utf8)) }

    /// Applies every change of `batch` atomically, in order, when each of its
    /// checks holds (all are checked first, under the writer's lock); else
    /// writes nothing and says which check failed. Deletes of keys that have
    /// no value at that point record nothing.
    /// - Throws: ``KVFileError`` `.readOnly` for a store opened read-only; `.invalidArgument` for an empty key, a key over 4 KiB or a value over 64 MiB, a batch over 1 GiB; `.capacityExhausted` when the store's sequence numbers or index slots are used up; `.syncFailed` or `.storeRemoved` once a sync failed or the store's files were removed (every later write fails); `.io` when a file cannot be written (``KVFileError/isDiskFull`` for a full disk); `.closed` after ``close()``.
    @discardableResult
    public func write(_ batch: WriteBatch) throws(KVFileError) -> BatchResult {
        for change in batch.changes {
            switch change {
            case .put(let key, let value, _): try Limits.check(keyLength: key.count, valueLength: value.count, key: key)
            case .delete(let key): try Limits.check(keyLength: key.count, valueLength: nil, key: key)
            }
        }
        for check in batch.checks { try Limits.check(keyLength: check.key.count, valueLength: nil, key: check.key) }
        _ = try requireWriter()
        return try writePath!.write(batch)
    }

    // MARK: compaction

    /// Compacts on demand: seals the active segment, then rewrites every
    /// sealed segment into fresh ones holding only live records (with their
    /// original sequence numbers) and the tombstones still needed, and removes
    /// the old files. Readers and writers keep working meanwhile. A crash at
    /// any point leaves a store that opens to the same contents. Expiries
    /// that passed and were not recorded yet are recorded first, so their
    /// values are reclaimed.
    /// - Throws: ``KVFileError`` `.readOnly`; `.corrupt` when a sealed segment is damaged (compaction stops, nothing is lost); `.syncFailed`, `.storeRemoved`, `.io`, `.closed` as for writes.
    @discardableResult
    public func compact() throws(KVFileError) -> CompactionResult {
        try recordDueExpiries()
        return try compact(sealActive: true, policy: nil)
    }

    func compact(sealActive: Bool, policy: CompactionPolicy?) throws(KVFileError) -> CompactionResult {
        _ = try requireWriter()
        return try compactor!.compact(sealActive: sealActive, policy: policy)
    }

    /// Forces everything written so far onto stable storage.
    /// - Throws: ``KVFileError`` `.syncFailed` (the data since the last good sync may be lost; the store refuses writes from then on), `.storeRemoved`, `.io`, `.closed`.
    public func sync() throws(KVFileError) {
        guard let writer, let sealer else { return }
        try failure.check()
        try sealer.finishSeals()
        let position = try lock.withReadLock { () throws(KVFileError) -> LogPosition in
            try checkOpen()
            return writer.end
        }
        try sealer.syncUpTo(position)
    }

    /// Seals the segments rolls left behind (cut, sync, hint file) outside the write lock.
    /// Also waits for a seal another thread has under way.
    func finishSeals() throws(KVFileError) {
        try sealer?.finishSeals()
    }

    /// Syncs a writer's data, releases the lock, and makes the store unusable.
    /// Calling it again does nothing.
    /// - Throws: ``KVFileError`` `.syncFailed` or `.io` when the last sync fails (the store is closed all the same).
    public func close() throws(KVFileError) {
        // No compaction or seal of ours may touch the files once the lock is released.
        background.stopAndWait()
        compactor?.waitUntilIdle()  // a compaction another thread called
        syncer?.stop()
        syncer = nil
        do throws(KVFileError) {
            try finishSeals()
        } catch {
            // Retrying cannot help after a failed sync or removed files: close, and say why.
            guard (try? failure.check()) == nil else { throw error }
            lock.withWriteLock { closed = true }
            lockFile = nil
            throw error
        }
        let closing = lock.withWriteLock {
            if closed { return false }
            closed = true
            return true
        }
        defer { lockFile = nil }
        if closing, let writer {
            // After any group-commit sync under way: none may store into the map once the file is cut.
            try sealer!.withSyncsPaused { () throws(KVFileError) in
                // A write that rolled after the seals above left one more: no write comes now.
                // (Like the sync below, a failure here leaves the store closed all the same.)
                try sealer!.sealWhilePaused()
                try lock.withWriteLock { () throws(KVFileError) in
                    try writer.syncForClose(failure: failure)
                    // After the log is on disk: the index says it covers all of it and was closed cleanly.
                    state.noteCommitted(logEnd: writer.end)
                    try state.index.closeCleanly()
                }
            }
        }
    }

    /// Throws when the store cannot take writes: it is closed, a sync failed
    /// (``KVFileError/Code/syncFailed``), or its files were removed while it
    /// was open (``KVFileError/Code/storeRemoved``, looked at now). A
    /// read-only store only checks that it is open.
    /// - Throws: ``KVFileError`` `.closed`, `.syncFailed`, `.storeRemoved`.
    public func checkHealth() throws(KVFileError) {
        let segment = try lock.withReadLock { () throws(KVFileError) -> Segment? in
            try checkOpen()
            return writer?.segment
        }
        if let segment { try failure.checkLinked(segment, store: path) }
    }

    #if DEBUG
    /// Tests: stops using the store the way a crash would — no sync, no trim,
    /// the lock released — after letting background seals and compactions end.
    func abandonForCrashTest() {
        background.stopAndWait()
        syncer?.stop()
        syncer = nil
        compactor?.waitUntilIdle()
        sealer?.withSyncsPaused {}
        lock.withWriteLock { closed = true }
        lockFile = nil
    }
    #endif

    @inline(__always)
    func checkOpen() throws(KVFileError) {
        try openState.check()
    }

    func requireWriter() throws(KVFileError) -> SegmentWriter {
        guard let writer else {
            throw KVFileError(.readOnly, "store \(path) was opened read-only; open it without readOnly to write")
        }
        return writer
    }
}

extension Store: CompactionHost {}

extension Store: ExpiryHost {
    var isClosed: Bool { closed }
}
