#if canImport(Glibc)
@preconcurrency import Glibc
#endif
import CKVFileSupport
import Synchronization

/// Where the latest record of a key lives.
struct KeyLocation: Equatable {
    var segment: UInt32
    var offset: UInt32
    /// Bytes of the whole record. 0 marks a key deleted at `seq`; such marks
    /// exist only while an index is being built.
    var size: UInt32
    var seq: UInt64
    /// When the value expires (ms since the Unix epoch; 0: never), from the record's header.
    var deadline: UInt64 = 0

    var isDeletionMark: Bool { size == 0 }

    /// True when the value's deadline has passed at `now` (ms since the epoch):
    /// every reader then treats the key as having no value.
    @inline(__always)
    func isExpired(at now: UInt64) -> Bool { deadline != 0 && deadline <= now }

    /// Whether readers see a value here now (wall clock read only for values with a deadline).
    @inline(__always)
    var isLive: Bool { deadline == 0 || deadline > Syscalls.wallClockMilliseconds() }
}

/// What probing the index for a key found.
enum IndexProbe {
    case found(KeyLocation)
    case notFound
    /// A slot names a segment this process has not opened (a writer rolled or compacted since).
    case unknownSegment(UInt32)
    /// A slot whose tag matches names bytes that are not a record: the index does not match the log.
    case damaged(segment: UInt32, offset: UInt32)
    /// A page of an index closed cleanly fails its checksum (file offset).
    case pageDamaged(Int)
    /// A writer replaced the index file: open the new one.
    case replaced
}

/// The hash index of every live key: open-addressing slots of 8 bytes that
/// name where the key's latest record starts (segment, offset) plus 7 bits of
/// the key's hash. Key bytes live only in the log: a probe reads the record a
/// slot names to compare keys, so a lookup touches the slot's cache line and
/// the record's.
///
/// Kept in the store's `kvfile.index` file (layout in ``IndexFormat``), mapped
/// shared: the writer changes it in place with single 8-byte stores, and
/// readers in other processes probe it without locks. Or kept in anonymous
/// memory, for a reader whose store has no usable index file yet.
///
/// Growth never pauses: a resize places a table twice the size in the file,
/// and each change then moves 16 slots of the old one over. Readers probe the
/// old table first, then the new: a slot is copied into the new table before
/// the old one is marked deleted, so a key is always in one of them.
///
/// Not thread-safe within a process for changes: the store's lock guards it.
/// Probing from other processes is safe at any time.
final class SharedIndex: @unchecked Sendable {
    /// The index file, or nil for anonymous memory.
    var path: String?
    private let fd: Int32
    let base: UnsafeMutableRawPointer
    /// True for the writer's index (and anonymous ones), which this process changes.
    let writable: Bool
    let seed: UInt64

    /// Open segments by id: the index reads keys from them.
    private(set) var segmentsByID: [Segment?] = [nil]
    /// The same segments, not retained, for the lookups of every probe and
    /// write (a retain and a release each were a tenth of a put's time).
    /// `segmentsByID` keeps them alive; both change only under the store's
    /// write lock, and whoever looks keys up holds at least its read lock
    /// (a change feed's own index: its mutex).
    private var borrowedByID: [Unmanaged<Segment>?] = [nil]

    // The layout as the writer knows it (readers of a shared file read the header instead).
    private var table: UnsafeMutablePointer<UInt64>
    private var mask: Int
    private var oldTable: UnsafeMutablePointer<UInt64>?
    private var oldMask = 0
    private var migrated = 0
    private static let migrationStep = 16

    /// Pages of each table changed since the index was last closed cleanly (their checksums are stale).
    private var dirtyPages: [UInt64] = []
    private var oldDirtyPages: [UInt64] = []
    /// Every page's checksum is stale (the index was not closed cleanly, or was just built).
    private var allPagesDirty = true

    /// The writer of an index closed cleanly checks each page of the table it
    /// found against its checksum the first time it reads it (so opening costs
    /// no pass over the file): that table, and the pages checked so far.
    private var uncheckedSlots: UnsafeMutablePointer<UInt64>?
    private var checkedPages: UnsafeMutablePointer<UInt64>?
    /// The first page of it found to fail its checksum (file offset): the
    /// index is then replaced at the next open, and this writer refuses writes.
    /// Atomic: pages are checked by lookups, which run in parallel under the store's read lock.
    var damagedPage: Int? {
        let at = damagedPageStorage.load(ordering: .acquiring)
        return at < 0 ? nil : at
    }
    private let damagedPageStorage = Atomic<Int>(-1)

    // MARK: opening

    /// Bytes of address space mapped at `base`: tables never reach past it.
    private let reserved: Int

    private init(path: String?, fd: Int32, base: UnsafeMutableRawPointer, writable: Bool, seed: UInt64, reserved: Int = IndexFormat.addressSpace) {
        self.path = path
        self.fd = fd
        self.base = base
        self.writable = writable
        self.seed = seed
        self.reserved = reserved
        table = UnsafeMutablePointer<UInt64>(bitPattern: 8)!
        mask = 0
    }

    deinit {
        checkedPages?.deallocate()
        Syscalls.unmap(base, length: reserved)
        if fd >= 0 { Syscalls.close(fd) }
    }

    /// An empty index in anonymous memory, sized for `expectedKeys`.
    static func anonymous(expectedKeys: Int = 0) throws(KVFileError) -> SharedIndex {
        let capacity = capacity(for: expectedKeys)
        let least = IndexFormat.tablesStart + 3 * IndexFormat.tableBytes(capacity: capacity * 2)
        // All the address space the largest table needs, or (where the kernel will not
        // reserve that much: strict overcommit, a ulimit) less, and then at most what fits.
        for size in [IndexFormat.addressSpace, 1 << 32, 1 << 30, least] where size >= least {
            let mapping = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
            guard let mapping, mapping != UnsafeMutableRawPointer(bitPattern: -1) else { continue }
            let index = SharedIndex(path: nil, fd: -1, base: mapping, writable: true, seed: UInt64.random(in: 0...UInt64.max), reserved: size)
            index.initializeHeader(capacity: capacity)
            return index
        }
        throw KVFileError(.io, "cannot reserve \(least) bytes of memory for an index of \(expectedKeys) keys", errno: Glibc.errno)
    }

    /// Creates a new, empty index file at `path` (replacing one there), sized for `expectedKeys`.
    static func create(path: String, expectedKeys: Int) throws(KVFileError) -> SharedIndex {
        let file = try OwnedFile(opening: path, O_RDWR | O_CREAT | O_TRUNC)
        let mapping = try Syscalls.map(file.fd, length: IndexFormat.addressSpace, writable: true, shared: true, path: path)
        let fd = file.fd
        // From here the index owns the descriptor and the mapping.
        let index = SharedIndex(path: path, fd: file.release(), base: mapping, writable: true, seed: UInt64.random(in: 0...UInt64.max))
        let capacity = capacity(for: expectedKeys)
        // Space reserved, not a hole: a store into the mapping must never fault on a full disk.
        try Syscalls.reserve(fd, from: 0, to: IndexFormat.tablesStart + IndexFormat.tableBytes(capacity: capacity), path: path)
        index.initializeHeader(capacity: capacity)
        // Built from a log that may hold deadlines, due or not: the next writer's open finds out.
        index.mayHoldDeadlines = true
        index.earliestDeadline = 1
        return index
    }

    /// Maps an existing index file: writable for the writer. Checks only that
    /// it is an index of this version whose tables fit in the file; whether
    /// it matches the log is for ``IndexValidator`` to say.
    static func open(path: String, writable: Bool) throws(KVFileError) -> SharedIndex? {
        guard let file = try OwnedFile.openIfExists(path, writable ? O_RDWR : O_RDONLY) else { return nil }
        let size = try Syscalls.fileSize(file.fd, path: path)
        guard size >= IndexFormat.tablesStart else {
            throw KVFileError.corrupt(path, offset: size, "the index file is shorter than its header")
        }
        let mapping = try Syscalls.map(file.fd, length: IndexFormat.addressSpace, writable: writable, shared: true, path: path)
        let index: SharedIndex
        do throws(KVFileError) {
            let magic = UnsafeRawPointer(mapping).loadUnaligned(as: Magic.self)
            // From here the index owns the descriptor and the mapping.
            index = SharedIndex(path: path, fd: file.release(), base: mapping, writable: writable,
                                seed: UnsafeRawPointer(mapping).loadLE(at: IndexFormat.seedAt, as: UInt64.self))
            guard equalMagic(magic, IndexFormat.magic) else {
                throw KVFileError.corrupt(path, offset: 0, "not a kvfile index (bad magic)")
            }
            let version = index.header32(IndexFormat.versionAt)
            guard version == IndexFormat.version else {
                throw KVFileError(.unsupportedVersion, "\(path) is an index of version \(version); this kvfile reads version \(IndexFormat.version)", path: path)
            }
            let layout = index.readLayout()
            let needed = max(layout.tableOffset + IndexFormat.tableBytes(capacity: layout.capacity),
                             layout.oldTableOffset == 0 ? 0 : layout.oldTableOffset + IndexFormat.tableBytes(capacity: layout.oldCapacity))
            guard layout.capacity >= IndexFormat.minCapacity, layout.capacity <= IndexFormat.maxCapacity,
                  layout.capacity & (layout.capacity - 1) == 0, layout.tableOffset >= IndexFormat.tablesStart,
                  layout.oldTableOffset == 0 || (layout.oldTableOffset >= IndexFormat.tablesStart && layout.oldCapacity >= IndexFormat.minCapacity
                      && layout.oldCapacity <= IndexFormat.maxCapacity && layout.oldCapacity & (layout.oldCapacity - 1) == 0),
                  needed <= size, needed <= IndexFormat.addressSpace,
                  index.header(IndexFormat.migratedAt) <= UInt64(layout.oldCapacity) else {
                throw KVFileError.corrupt(path, offset: IndexFormat.tableAt, "the index file's tables do not fit in its \(size) bytes")
            }
            if writable { index.adoptLayout(layout) }
        } catch {
            // The mapping (if made) goes with the object; the descriptor with it too.
            throw error
        }
        return index
    }

    private static func capacity(for keys: Int) -> Int {
        var capacity = IndexFormat.minCapacity
        while capacity * 7 / 10 < keys && capacity < IndexFormat.maxCapacity { capacity *= 2 }
        return capacity
    }

    private func initializeHeader(capacity: Int) {
        let p = base
        p.storeBytes(of: IndexFormat.magic, as: Magic.self)
        p.storeLE(IndexFormat.version, at: IndexFormat.versionAt)
        p.storeLE(IndexFormat.stateOpen, at: IndexFormat.stateAt)
        p.storeLE(seed, at: IndexFormat.seedAt)
        storeBoot()
        storeIdentity()
        setHeader(IndexFormat.regionEndAt, UInt64(IndexFormat.tablesStart + IndexFormat.tableBytes(capacity: capacity)))
        let layout = Layout(tableOffset: IndexFormat.tablesStart, capacity: capacity, oldTableOffset: 0, oldCapacity: 0)
        publish(layout, migrated: 0)
        adoptLayout(layout)
    }

    /// The file's device and inode numbers; nil for anonymous memory.
    private var fileIdentity: (device: UInt64, inode: UInt64)? {
        var info = stat()
        guard path != nil, fstat(fd, &info) == 0 else { return nil }
        return (UInt64(info.st_dev), UInt64(info.st_ino))
    }

    private func storeIdentity() {
        guard let identity = fileIdentity else { return }
        base.storeLE(identity.device, at: IndexFormat.identityAt)
        base.storeLE(identity.inode, at: IndexFormat.identityAt + 8)
    }

    /// False when the file is not the one a writer marked open (a copy of a
    /// store taken while a writer ran: its index may be ahead of its segments).
    var isTheFileMarkedOpen: Bool {
        let (device, inode) = (header(IndexFormat.identityAt), header(IndexFormat.identityAt + 8))
        if device == 0 && inode == 0 { return true }  // an earlier writer did not record it
        guard let identity = fileIdentity else { return false }
        return identity == (device, inode)
    }

    /// True when the identity recorded is this file's own: the index was not
    /// copied since a writer last opened it (false when none was recorded).
    var recordsItsOwnIdentity: Bool {
        let (device, inode) = (header(IndexFormat.identityAt), header(IndexFormat.identityAt + 8))
        guard device != 0 || inode != 0, let identity = fileIdentity else { return false }
        return identity == (device, inode)
    }

    private func storeBoot() {
        let boot = BootID.current
        base.storeLE(boot.0, at: IndexFormat.bootAt)
        base.storeLE(boot.1, at: IndexFormat.bootAt + 8)
    }

    // MARK: header fields

    @inline(__always) func header(_ at: Int) -> UInt64 { kvf_load_relaxed_u64(base + at) }
    @inline(__always) private func setHeader(_ at: Int, _ value: UInt64) { kvf_store_relaxed_u64(base + at, value) }
    func header32(_ at: Int) -> UInt32 { UnsafeRawPointer(base).loadLE(at: at, as: UInt32.self) }

    var state: UInt32 { header32(IndexFormat.stateAt) }
    var bootMatches: Bool {
        let boot = BootID.current
        return boot != (0, 0) && header(IndexFormat.bootAt) == boot.0 && header(IndexFormat.bootAt + 8) == boot.1
    }

    /// Live keys. (The counts are statistics: a count that went wrong, in an
    /// index that does not match its slots, reads as 0 rather than trapping.)
    var count: Int { min(max(0, Int(Int64(bitPattern: header(IndexFormat.keysAt)))), IndexFormat.maxCapacity) }
    /// Sum of the record sizes of live keys.
    var liveBytes: Int { max(0, Int(Int64(bitPattern: header(IndexFormat.liveBytesAt)))) }
    /// Where the log ends as far as the index knows: segment << 32 | offset.
    var logEnd: UInt64 {
        get { header(IndexFormat.logEndAt) }
        set { setHeader(IndexFormat.logEndAt, newValue) }
    }
    var nextSeq: UInt64 {
        get { header(IndexFormat.nextSeqAt) }
        set { setHeader(IndexFormat.nextSeqAt, newValue) }
    }

    /// Slots of the table (and of the one a resize empties).
    var capacity: Int {
        let layout = readLayout()
        return layout.capacity + layout.oldCapacity
    }
    /// Bytes the tables take.
    var memoryBytes: Int {
        let layout = readLayout()
        return IndexFormat.tableBytes(capacity: layout.capacity) + (layout.oldTableOffset == 0 ? 0 : IndexFormat.tableBytes(capacity: layout.oldCapacity))
    }
    var isResizing: Bool { readLayout().oldTableOffset != 0 }
    /// Disk space the index file takes (0 in memory).
    var diskBytes: Int {
        var info = stat()
        guard fd >= 0, fstat(fd, &info) == 0 else { return 0 }
        return Int(info.st_blocks) * 512
    }
    /// A key could not be added (the largest table is full).
    private(set) var isFull = false

    // MARK: layout

    struct Layout: Equatable {
        var tableOffset: Int
        var capacity: Int
        var oldTableOffset: Int
        var oldCapacity: Int
    }

    /// The layout as the header tells it, read consistently (a seqlock: the
    /// writer makes `layout` odd while it changes the fields).
    func readLayout() -> Layout {
        readSettledLayout() ?? Layout(
            tableOffset: Int(header(IndexFormat.tableAt)), capacity: Int(header(IndexFormat.capacityAt)),
            oldTableOffset: Int(header(IndexFormat.oldTableAt)), oldCapacity: Int(header(IndexFormat.oldCapacityAt)))
    }

    /// The layout, or nil when it stays mid-change (a writer died while
    /// changing it: a probe then reports the index replaced, and the reader opens the store again).
    func readSettledLayout() -> Layout? {
        // The writer's own view, once it has taken the file's (`adoptLayout`).
        if writable && mask > 0 { return currentLayout }
        for spin in 0..<20_000 {
            let before = kvf_load_acquire_u64(base + IndexFormat.layoutAt)
            let layout = Layout(
                tableOffset: Int(header(IndexFormat.tableAt)), capacity: Int(header(IndexFormat.capacityAt)),
                oldTableOffset: Int(header(IndexFormat.oldTableAt)), oldCapacity: Int(header(IndexFormat.oldCapacityAt)))
            kvf_fence_acquire()
            let after = kvf_load_relaxed_u64(base + IndexFormat.layoutAt)
            if before & 1 == 0 && before == after { return layout }
            if spin > 100 { sched_yield() }
        }
        return nil
    }

    private var layoutVersion: UInt64 { kvf_load_acquire_u64(base + IndexFormat.layoutAt) }

    private func publish(_ layout: Layout, migrated: Int) {
        let version = header(IndexFormat.layoutAt)
        kvf_store_relaxed_u64(base + IndexFormat.layoutAt, version | 1)
        kvf_fence_release()
        setHeader(IndexFormat.tableAt, UInt64(layout.tableOffset))
        setHeader(IndexFormat.capacityAt, UInt64(layout.capacity))
        setHeader(IndexFormat.oldTableAt, UInt64(layout.oldTableOffset))
        setHeader(IndexFormat.oldCapacityAt, UInt64(layout.oldCapacity))
        setHeader(IndexFormat.migratedAt, UInt64(migrated))
        kvf_store_release_u64(base + IndexFormat.layoutAt, (version | 1) + 1)
    }

    /// True when the header's layout is mid-change (a writer died while changing it).
    var layoutTorn: Bool { header(IndexFormat.layoutAt) & 1 != 0 }

    private func adoptLayout(_ layout: Layout) {
        table = (base + layout.tableOffset).assumingMemoryBound(to: UInt64.self)
        mask = layout.capacity - 1
        dirtyPages = [UInt64](repeating: 0, count: (layout.capacity / IndexFormat.slotsPerPage + 63) / 64 + 1)
        if layout.oldTableOffset != 0 {
            oldTable = (base + layout.oldTableOffset).assumingMemoryBound(to: UInt64.self)
            oldMask = layout.oldCapacity - 1
            oldDirtyPages = [UInt64](repeating: 0, count: (layout.oldCapacity / IndexFormat.slotsPerPage + 63) / 64 + 1)
            migrated = Int(header(IndexFormat.migratedAt))
        } else {
            oldTable = nil
            oldMask = 0
            oldDirtyPages = []
            migrated = 0
        }
    }

    private var currentLayout: Layout {
        Layout(tableOffset: UnsafeRawPointer(table) - UnsafeRawPointer(base), capacity: mask + 1,
               oldTableOffset: oldTable.map { UnsafeRawPointer($0) - UnsafeRawPointer(base) } ?? 0, oldCapacity: oldTable == nil ? 0 : oldMask + 1)
    }

    // MARK: segments

    @inline(__always)
    func segment(_ id: UInt32) -> Segment? {
        let index = Int(id)
        return index < segmentsByID.count ? segmentsByID[index] : nil
    }

    /// `body` with segment `id` borrowed (see `borrowedByID`); nil when it is not open.
    @inline(__always)
    func withSegment<R>(_ id: UInt32, _ body: (Segment) -> R) -> R? {
        let index = Int(id)
        guard index < borrowedByID.count, let segment = borrowedByID[index] else { return nil }
        return segment._withUnsafeGuaranteedRef(body)
    }

    func addSegment(_ segment: Segment) {
        let index = Int(segment.id)
        if index >= segmentsByID.count {
            segmentsByID.append(contentsOf: repeatElement(nil, count: index - segmentsByID.count + 1))
            borrowedByID.append(contentsOf: repeatElement(nil, count: index - borrowedByID.count + 1))
        }
        segmentsByID[index] = segment
        borrowedByID[index] = Unmanaged.passUnretained(segment)
    }

    func removeSegment(_ id: UInt32) {
        guard Int(id) < segmentsByID.count else { return }
        borrowedByID[Int(id)] = nil
        segmentsByID[Int(id)] = nil
    }

    // MARK: reading records

    private enum SlotMatch {
        case match(RecordHeader)
        case other
        case unknownSegment(UInt32)
        case damaged
    }

    /// Compares `key` with the key of the record `slot` names.
    @inline(__always)
    private func match(_ slot: UInt64, _ key: UnsafeRawBufferPointer) -> SlotMatch {
        let id = IndexFormat.segment(slot)
        return withSegment(id) { match(slot, key, in: $0) } ?? .unknownSegment(id)
    }

    @inline(__always)
    private func match(_ slot: UInt64, _ key: UnsafeRawBufferPointer, in segment: Segment) -> SlotMatch {
        let offset = Int(IndexFormat.offset(slot))
        var limit = segment.indexReadLimit
        var header = offset >= RecordFormat.segmentHeaderSize && offset < limit ? RecordCodec.peek(segment.base + offset, available: limit - offset) : nil
        if header == nil && !writable {
            // A writer may have appended past the size this reader saw.
            limit = segment.refreshReadLimit()
            header = offset >= RecordFormat.segmentHeaderSize && offset < limit ? RecordCodec.peek(segment.base + offset, available: limit - offset) : nil
        }
        guard let header else { return .damaged }
        if header.keyLength == key.count && KeyEquality.equal(segment.base + offset + header.keyOffset, key.baseAddress!, count: key.count) {
            return .match(header)
        }
        // Another key where the tag matched: a hash collision (1 in 128), or this key's
        // record with damaged key bytes, which must not read as no value.
        if SharedIndex.failsChecksum(segment, at: offset, header, limit: limit) { return .damaged }
        return .other
    }

    /// True when the whole record at `offset`, within `limit`, fails its checksum.
    @inline(__always)
    private static func failsChecksum(_ segment: Segment, at offset: Int, _ header: RecordHeader, limit: Int) -> Bool {
        offset + header.totalLength <= limit && !RecordCodec.checksumMatches(segment.base + offset, header)
    }

    /// The key and header of the record `slot` names (nil when it names no record).
    @inline(__always)
    private func record(_ slot: UInt64) -> (key: UnsafeRawBufferPointer, header: RecordHeader)? {
        withSegment(IndexFormat.segment(slot)) { record(slot, in: $0) } ?? nil
    }

    @inline(__always)
    private func record(_ slot: UInt64, in segment: Segment) -> (key: UnsafeRawBufferPointer, header: RecordHeader)? {
        let offset = Int(IndexFormat.offset(slot))
        var limit = segment.indexReadLimit
        // A reader: the writer may have appended past the size seen.
        if !writable && offset + 64 > limit { limit = segment.refreshReadLimit() }
        guard offset >= RecordFormat.segmentHeaderSize, offset < limit,
              let header = RecordCodec.peek(segment.base + offset, available: limit - offset) else { return nil }
        return (UnsafeRawBufferPointer(start: segment.base + offset + header.keyOffset, count: header.keyLength), header)
    }

    @inline(__always)
    private static func location(_ slot: UInt64, _ header: RecordHeader) -> KeyLocation {
        KeyLocation(segment: IndexFormat.segment(slot), offset: IndexFormat.offset(slot),
                    size: slot & markBit != 0 ? 0 : UInt32(header.totalLength), seq: header.seq, deadline: header.deadline)
    }

    /// True when the key bytes of the record `slot` names do not hash to the
    /// slot's tag and the record fails its checksum: damage in the key, which a
    /// walk of every key must not list as a key nobody wrote.
    private func keyIsDamaged(_ key: UnsafeRawBufferPointer, slot: UInt64, header: RecordHeader) -> Bool {
        guard IndexFormat.tag(KeyHash.hash(key.baseAddress!, key.count, seed: seed)) != IndexFormat.slotTag(slot) else { return false }
        return withSegment(IndexFormat.segment(slot)) {
            SharedIndex.failsChecksum($0, at: Int(IndexFormat.offset(slot)), header, limit: $0.indexReadLimit)
        } ?? false
    }

    /// Marks a key deleted while an index is built (the slot names its tombstone).
    private static let markBit: UInt64 = 1 << 63

    // MARK: pages checked on first read (the writer)

    /// Starts checking each page of the current table on its first read (an index closed cleanly).
    func checkPagesWhenRead() {
        guard writable, path != nil, oldTable == nil else { return }
        let words = (mask + 1) / IndexFormat.slotsPerPage / 64 + 1
        checkedPages = .allocate(capacity: words)
        checkedPages!.initialize(repeating: 0, count: words)
        uncheckedSlots = table
    }

    /// Reads a slot the writer is about to rely on; the page is checked first when it was never read.
    @inline(__always)
    private func load(_ slots: UnsafeMutablePointer<UInt64>, _ index: Int) -> UInt64 {
        if slots == uncheckedSlots { checkPage(of: index) }
        return kvf_load_acquire_u64(slots + index)
    }

    private func checkPage(of index: Int) {
        guard let checkedPages, let slots = uncheckedSlots else { return }
        let page = index / IndexFormat.slotsPerPage
        let bit: UInt64 = 1 << UInt64(page & 63)
        // Lookups check pages in parallel (under the store's read lock): the bits are set atomically.
        if kvf_load_relaxed_u64(checkedPages + (page >> 6)) & bit != 0 { return }
        let capacity = slots == table ? mask + 1 : oldMask + 1
        let tableOffset = UnsafeRawPointer(slots) - UnsafeRawPointer(base)
        let at = tableOffset + page * IndexFormat.pageSize
        let stored = UnsafeRawPointer(base + tableOffset + capacity * 8).loadLE(at: page * 4, as: UInt32.self)
        kvf_fetch_or_relaxed_u64(checkedPages + (page >> 6), bit)
        guard CRC32C.checksum(UnsafeRawPointer(base + at), IndexFormat.pageSize) != stored,
              damagedPageStorage.compareExchange(expected: -1, desired: at, ordering: .acquiringAndReleasing).exchanged
        else { return }
        // Readers that map the file stop trusting it at once; the next writer builds it anew.
        retire()
    }

    /// The table checked page by page is gone (a resize emptied it).
    private func forgetUncheckedTable(_ slots: UnsafeMutablePointer<UInt64>) {
        guard slots == uncheckedSlots else { return }
        uncheckedSlots = nil
        checkedPages?.deallocate()
        checkedPages = nil
    }

    // MARK: probing

    private enum Found {
        case at(UnsafeMutablePointer<UInt64>, index: Int, slot: UInt64, header: RecordHeader)
        case none
        case problem(IndexProbe)
    }

    @inline(__always)
    private func find(_ key: UnsafeRawBufferPointer, hash: UInt64, in table: UnsafeMutablePointer<UInt64>, mask: Int, reportingDamage: Bool = false) -> Found {
        var probes = 0
        return find(key, hash: hash, in: table, mask: mask, probes: &probes, reportingDamage: reportingDamage)
    }

    /// `probes` tells how many slots past the first one were read.
    @inline(__always)
    /// `reportingDamage`: a writable index answers damage as a reader's does (a
    /// reader's own index in memory); the writer's own probes go past it.
    private func find(_ key: UnsafeRawBufferPointer, hash: UInt64, in table: UnsafeMutablePointer<UInt64>, mask: Int, probes: inout Int,
                      reportingDamage: Bool = false) -> Found {
        var index = Int(truncatingIfNeeded: hash) & mask
        let tag = IndexFormat.tag(hash)
        probes = 0
        while probes <= mask {
            let slot = load(table, index)
            if slot == IndexFormat.emptySlot { return .none }
            if slot != IndexFormat.deletedSlot && IndexFormat.slotTag(slot) == tag {
                switch match(slot, key) {
                case .match(let header): return .at(table, index: index, slot: slot, header: header)
                case .other: break
                case .unknownSegment(let id):
                    if !writable { return .problem(.unknownSegment(id)) }
                case .damaged:
                    // The writer probes past it: a slot naming no record holds no key.
                    if !writable || reportingDamage { return .problem(.damaged(segment: IndexFormat.segment(slot), offset: IndexFormat.offset(slot))) }
                }
            }
            index = (index + 1) & mask
            probes += 1
        }
        return .none
    }

    /// The writer's probe: the old table first (see the type's comment), then the table.
    @inline(__always)
    private func findWriting(_ key: UnsafeRawBufferPointer, hash: UInt64, reportingDamage: Bool = false) -> Found {
        if let oldTable {
            let found = find(key, hash: hash, in: oldTable, mask: oldMask, reportingDamage: reportingDamage)
            if case .at = found { return found }
            if case .problem = found { return found }
        }
        return find(key, hash: hash, in: table, mask: mask, reportingDamage: reportingDamage)
    }

    // MARK: whole writes

    /// The writer calls this before it applies a write (all records of a
    /// batch) and `endChange` after: readers in other processes see the write whole.
    @inline(__always)
    func beginChange() {
        if path != nil { kvf_store_release_u64(base + IndexFormat.changesAt, header(IndexFormat.changesAt) | 1) }
    }

    @inline(__always)
    func endChange() {
        if path != nil { kvf_store_release_u64(base + IndexFormat.changesAt, (header(IndexFormat.changesAt) | 1) &+ 1) }
    }

    /// For a reader: runs `body` until no write was applied meanwhile, and
    /// returns its result; nil when writes kept coming (after `attempts`).
    /// With `walks`, `body` runs at most that many times (a walk of every key
    /// costs), and only a result taken while nothing changed is returned.
    func readConsistently<R>(attempts: Int = 1000, walks: Int? = nil, _ body: () throws -> R) rethrows -> R? {
        var runs = 0
        for attempt in 0..<attempts {
            let before = kvf_load_acquire_u64(base + IndexFormat.changesAt)
            if before & 1 != 0 {
                // A write is being applied: it takes microseconds (or its writer died: the caller finds out).
                if attempt > 16 { sched_yield() }
                continue
            }
            let result = try body()
            runs += 1
            if kvf_load_acquire_u64(base + IndexFormat.changesAt) == before && before & 1 == 0 { return result }
            if let walks, runs >= walks { return nil }
        }
        return nil
    }

    /// Looks `key` up. Safe while another process changes the index: a
    /// reader sees a write (a batch) whole or not at all.
    ///
    /// `reportingDamage`: a writable index (the writer's, or a reader's own in
    /// memory) answers a damaged record on the key's probe path as a reader of
    /// a shared one does (the store's reads and writes ask so); without it, it
    /// probes past such a record, as building and compaction need.
    func probe(_ key: UnsafeRawBufferPointer, reportingDamage: Bool = false) -> IndexProbe {
        let hash = KeyHash.hash(key.baseAddress!, key.count, seed: seed)
        if writable {
            let found = findWriting(key, hash: hash, reportingDamage: reportingDamage)
            if let damagedPage { return .pageDamaged(damagedPage) }
            if case .at(_, _, let slot, let header) = found { return .found(SharedIndex.location(slot, header)) }
            if case .problem(let problem) = found { return problem }
            return .notFound
        }
        if state == IndexFormat.stateReplaced { return .replaced }
        if let found = readConsistently({ probeShared(key, hash: hash) }) { return found }
        // A write has been under way for a long while: when its writer died in it, the
        // index may hold part of a batch, so it is not used until a writer repairs it.
        if isTornByDeadWriter { return .replaced }
        return probeShared(key, hash: hash)
    }

    /// True when a write was left half applied (`changes` odd) and no writer
    /// holds the store's lock: the writer died in the middle of it.
    var isTornByDeadWriter: Bool {
        guard let path, kvf_load_acquire_u64(base + IndexFormat.changesAt) & 1 != 0 else { return false }
        let directory = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
        return !LockFile.isHeld(directory: directory) && kvf_load_acquire_u64(base + IndexFormat.changesAt) & 1 != 0
    }

    private func probeShared(_ key: UnsafeRawBufferPointer, hash: UInt64) -> IndexProbe {
        while true {
            let version = layoutVersion
            guard let layout = readSettledLayout() else { return .replaced }
            for (offset, capacity) in [(layout.oldTableOffset, layout.oldCapacity), (layout.tableOffset, layout.capacity)] where offset != 0 {
                var probes = 0
                let found = find(key, hash: hash, in: (base + offset).assumingMemoryBound(to: UInt64.self), mask: capacity - 1, probes: &probes)
                // A file closed cleanly is trusted page by page: each page read must match its checksum.
                if let bad = verifyPages(tableOffset: offset, capacity: capacity, first: Int(truncatingIfNeeded: hash) & (capacity - 1), probes: probes) {
                    return .pageDamaged(bad)
                }
                switch found {
                case .at(_, _, let slot, let header): return .found(SharedIndex.location(slot, header))
                case .problem(let problem): return problem
                case .none: continue
                }
            }
            // Not found: unless a resize moved keys meanwhile, in which case look again.
            if layoutVersion == version { return .notFound }
        }
    }

    /// File offsets of pages whose checksums held (a reader of an index closed cleanly).
    private let verifiedPages = Mutex<Set<Int>>([])

    /// For a reader: the first page of slots `first` … `first + probes` that
    /// fails its checksum while the file is closed cleanly (a writer that opens it
    /// makes the checksums stale, and is trusted instead).
    private func verifyPages(tableOffset: Int, capacity: Int, first: Int, probes: Int) -> Int? {
        guard state == IndexFormat.stateClosed else { return nil }
        kvf_fence_acquire()
        let pages = capacity / IndexFormat.slotsPerPage
        let firstPage = first / IndexFormat.slotsPerPage
        let lastPage = (first + probes) / IndexFormat.slotsPerPage
        for step in 0...(lastPage - firstPage) {
            let page = (firstPage + step) % pages
            let at = tableOffset + page * IndexFormat.pageSize
            if verifiedPages.withLock({ $0.contains(at) }) { continue }
            let stored = UnsafeRawPointer(base + tableOffset + capacity * 8).loadLE(at: page * 4, as: UInt32.self)
            if CRC32C.checksum(UnsafeRawPointer(base + at), IndexFormat.pageSize) == stored {
                verifiedPages.withLock { _ = $0.insert(at) }
            } else if state == IndexFormat.stateClosed {
                return at
            }
        }
        return nil
    }

    /// Removes the index file of the store in `directory` (the writer's lock
    /// held), telling readers that map it to open the store again.
    static func remove(directory: String) throws(KVFileError) {
        let path = StoreFiles(directory).index
        if let index = try? open(path: path, writable: true) { index.retire() }
        if try Syscalls.exists(path) {
            try Syscalls.unlink(path)
        }
    }

    /// Tells readers that map this file that a new index file replaced it.
    func retire() {
        guard writable, path != nil else { return }
        base.storeLE(IndexFormat.stateReplaced, at: IndexFormat.stateAt)
    }

    /// Looks `key` up; nil when absent (or when the index cannot say: see ``probe(_:)``).
    @inline(__always)
    func lookup(_ key: UnsafeRawBufferPointer) -> KeyLocation? {
        if case .found(let location) = probe(key) { return location }
        return nil
    }

    /// True when probing for `key` reads only pages in memory: the slots it
    /// probes and the start of each record whose tag matches (where the probe
    /// compares keys). For callers that must not wait for the disk; an index
    /// in anonymous memory always is.
    func probeIsInMemory(_ key: UnsafeRawBufferPointer) -> Bool {
        guard path != nil else { return true }
        let hash = KeyHash.hash(key.baseAddress!, key.count, seed: seed)
        if writable {
            if let oldTable, !slotsAreInMemory(hash, key, table: oldTable, mask: oldMask) { return false }
            return slotsAreInMemory(hash, key, table: table, mask: mask)
        }
        guard let layout = readSettledLayout() else { return false }
        for (offset, capacity) in [(layout.oldTableOffset, layout.oldCapacity), (layout.tableOffset, layout.capacity)] where offset != 0 {
            let slots = (base + offset).assumingMemoryBound(to: UInt64.self)
            if !slotsAreInMemory(hash, key, table: slots, mask: capacity - 1) { return false }
        }
        return true
    }

    private func slotsAreInMemory(_ hash: UInt64, _ key: UnsafeRawBufferPointer, table: UnsafeMutablePointer<UInt64>, mask: Int) -> Bool {
        var index = Int(truncatingIfNeeded: hash) & mask
        let tag = IndexFormat.tag(hash)
        var page = -1
        for _ in 0...min(mask, 64) {
            let address = UnsafeRawPointer(table + index)
            if Int(bitPattern: address) >> 12 != page {
                guard ResidentPages.contain(address, count: 8) else { return false }
                page = Int(bitPattern: address) >> 12
            }
            let slot = kvf_load_acquire_u64(table + index)
            if slot == IndexFormat.emptySlot { return true }
            if slot != IndexFormat.deletedSlot && IndexFormat.slotTag(slot) == tag, let segment = segment(IndexFormat.segment(slot)) {
                guard recordKeyIsInMemory(segment, offset: Int(IndexFormat.offset(slot)), keyLength: key.count) else { return false }
                // The probe stops at the key's slot.
                if case .match = match(slot, key) { return true }
            }
            index = (index + 1) & mask
        }
        return true
    }

    /// True when the header of the record at `offset`, and its key when it is
    /// as long as the one looked for, are in memory (what `match` reads).
    private func recordKeyIsInMemory(_ segment: Segment, offset: Int, keyLength: Int) -> Bool {
        let limit = segment.indexReadLimit
        guard offset >= RecordFormat.segmentHeaderSize, offset < limit else { return true }
        let start = segment.base + offset
        guard ResidentPages.contain(start, count: 1) else { return false }
        let toPageEnd = 4096 - (Int(bitPattern: start) & 4095)
        guard let header = RecordCodec.peek(start, available: min(toPageEnd, limit - offset)) else {
            // The header runs onto the next page.
            return ResidentPages.contain(start, count: min(RecordFormat.maxRecordHeaderSize + keyLength, limit - offset))
        }
        return header.keyLength != keyLength || ResidentPages.contain(start + header.keyOffset, count: keyLength)
    }

    /// Starts loading the slot `key` hashes to (bulk loading).
    @inline(__always)
    func prefetch(_ key: UnsafeRawBufferPointer) {
        let hash = KeyHash.hash(key.baseAddress!, key.count, seed: seed)
        kvf_prefetch(table + (Int(truncatingIfNeeded: hash) & mask))
    }

    /// Starts loading the records of the first two slots `key` probes whose tags match.
    @inline(__always)
    func prefetchEntries(_ key: UnsafeRawBufferPointer) {
        let hash = KeyHash.hash(key.baseAddress!, key.count, seed: seed)
        var index = Int(truncatingIfNeeded: hash) & mask
        let tag = IndexFormat.tag(hash)
        for _ in 0..<2 {
            let slot = table[index]
            if slot == IndexFormat.emptySlot { return }
            if slot != IndexFormat.deletedSlot && IndexFormat.slotTag(slot) == tag, let segment = segment(IndexFormat.segment(slot)) {
                let offset = Int(IndexFormat.offset(slot))
                if offset < segment.indexReadLimit { kvf_prefetch(segment.base + offset) }
            }
            index = (index + 1) & mask
        }
    }

    /// For the writer: calls `body` with each entry among up to `count` slots
    /// of the current table from slot `start` (old table entries not yet
    /// moved by a resize are left out); returns where to go on, or nil at
    /// the table's end. A sweep in steps, between which the table may change.
    func forEachEntry(fromSlot start: Int, count: Int, _ body: (UnsafeRawBufferPointer, KeyLocation) -> Void) -> Int? {
        let layout = currentLayout
        // Slots are numbered through the old table (while a resize moves keys) and then the current one.
        let tables = [(layout.oldTableOffset, layout.oldCapacity), (layout.tableOffset, layout.capacity)].filter { $0.0 != 0 }
        let total = tables.reduce(0) { $0 + $1.1 }
        guard start < total else { return nil }
        let end = min(total, start + count)
        var first = 0
        for (offset, capacity) in tables {
            let slots = (base + offset).assumingMemoryBound(to: UInt64.self)
            let (lower, upper) = (max(start, first), min(end, first + capacity))
            for index in lower..<max(lower, upper) {
                let slot = load(slots, index - first)
                if slot == IndexFormat.emptySlot || slot == IndexFormat.deletedSlot { continue }
                if let (key, header) = record(slot) { body(key, SharedIndex.location(slot, header)) }
            }
            first += capacity
        }
        return end < total ? end : nil
    }

    /// Identifies the table layout: it changes when a resize starts or ends.
    var layoutIdentity: [Int] {
        let layout = currentLayout
        return [layout.tableOffset, layout.capacity, layout.oldTableOffset, layout.oldCapacity]
    }

    /// Calls `body` with every entry's key and location, in table order. While
    /// another process changes the index, a key that lives throughout is met
    /// at least once (the old table goes first, as in a probe); one added or
    /// removed meanwhile may or may not be, and a key may be met twice.
    /// Returns how many slots named a record this process cannot read (a
    /// segment it has not opened): a reader then looks again.
    @discardableResult
    func forEach(_ body: (UnsafeRawBufferPointer, KeyLocation) throws -> Void) rethrows -> Int {
        var unreadable = 0
        let layout = writable ? currentLayout : readLayout()
        for (offset, capacity) in [(layout.oldTableOffset, layout.oldCapacity), (layout.tableOffset, layout.capacity)] where offset != 0 {
            let slots = (base + offset).assumingMemoryBound(to: UInt64.self)
            for index in 0..<capacity {
                // A reader of a file closed cleanly checks each page's checksum before it trusts its slots.
                if !writable && index % IndexFormat.slotsPerPage == 0,
                   verifyPages(tableOffset: offset, capacity: capacity, first: index, probes: 0) != nil {
                    return unreadable + capacity
                }
                let slot = writable ? load(slots, index) : kvf_load_acquire_u64(slots + index)
                if slot == IndexFormat.emptySlot || slot == IndexFormat.deletedSlot { continue }
                guard let (key, header) = record(slot), !keyIsDamaged(key, slot: slot, header: header) else {
                    unreadable += 1
                    continue
                }
                try body(key, SharedIndex.location(slot, header))
            }
        }
        return unreadable
    }

    // MARK: changes (the writer, under the store's lock)

    @inline(__always)
    private func store(_ value: UInt64, in slots: UnsafeMutablePointer<UInt64>, at index: Int) {
        kvf_store_release_u64(slots + index, value)
        let page = index / IndexFormat.slotsPerPage
        if slots == table {
            dirtyPages[page >> 6] |= 1 << UInt64(page & 63)
        } else if !oldDirtyPages.isEmpty {
            oldDirtyPages[page >> 6] |= 1 << UInt64(page & 63)
        }
    }

    private func addCounts(keys: Int, bytes: Int) {
        setHeader(IndexFormat.keysAt, UInt64(bitPattern: Int64(count + keys)))
        setHeader(IndexFormat.liveBytesAt, UInt64(bitPattern: Int64(liveBytes + bytes)))
    }

    private var deletedSlots: Int {
        // No more than the slots there are, whatever the header says (no overflow below).
        get { Int(min(header(IndexFormat.deletedAt), UInt64(IndexFormat.maxCapacity))) }
        // An index that does not match its slots (damage the checks missed) must not trap the writer.
        set { setHeader(IndexFormat.deletedAt, UInt64(max(0, newValue))) }
    }

    /// Sets `key` to `location` and returns what it replaced.
    @discardableResult
    @inline(__always)
    func set(_ key: UnsafeRawBufferPointer, _ location: KeyLocation) -> KeyLocation? {
        migrateSome()
        let hash = KeyHash.hash(key.baseAddress!, key.count, seed: seed)
        let value = IndexFormat.slot(segment: location.segment, offset: location.offset, hash: hash) | (location.isDeletionMark ? SharedIndex.markBit : 0)
        if case .at(let slots, let index, let slot, let header) = findWriting(key, hash: hash) {
            let old = SharedIndex.location(slot, header)
            store(value, in: slots, at: index)
            addCounts(keys: 0, bytes: Int(location.size) - Int(old.size))
            return old
        }
        insertNew(value, hash: hash, size: Int(location.size))
        return nil
    }

    private func insertNew(_ value: UInt64, hash: UInt64, size: Int) {
        var index = Int(truncatingIfNeeded: hash) & mask
        var probes = 0
        while true {
            let slot = load(table, index)
            if slot == IndexFormat.emptySlot || slot == IndexFormat.deletedSlot { break }
            index = (index + 1) & mask
            probes += 1
            if probes > mask {
                isFull = true
                return
            }
        }
        if table[index] == IndexFormat.deletedSlot { deletedSlots -= 1 }
        store(value, in: table, at: index)
        addCounts(keys: 1, bytes: size)
        if (count + deletedSlots) * 10 > (mask + 1) * 7 { resize() }
    }

    /// Removes `key` and returns where it was.
    @discardableResult
    func remove(_ key: UnsafeRawBufferPointer) -> KeyLocation? {
        migrateSome()
        let hash = KeyHash.hash(key.baseAddress!, key.count, seed: seed)
        guard case .at(let slots, let index, let slot, let header) = findWriting(key, hash: hash) else { return nil }
        let old = SharedIndex.location(slot, header)
        let slotMask = slots == table ? mask : oldMask
        // An empty next slot ends every probe through this one, so this one can be empty too.
        if load(slots, (index + 1) & slotMask) == IndexFormat.emptySlot {
            store(IndexFormat.emptySlot, in: slots, at: index)
        } else {
            store(IndexFormat.deletedSlot, in: slots, at: index)
            if slots == table { deletedSlots += 1 }
        }
        addCounts(keys: -1, bytes: -Int(old.size))
        return old
    }

    /// Moves `key` to (`newSegment`, `newOffset`) when it still points at
    /// (`segment`, `offset`); returns its record size when it moved (compaction's switch-over).
    @inline(__always)
    func relocate(_ key: UnsafeRawBufferPointer, from segment: UInt32, offset: UInt32, to newSegment: UInt32, newOffset: UInt32) -> UInt32? {
        let hash = KeyHash.hash(key.baseAddress!, key.count, seed: seed)
        guard case .at(let slots, let index, let slot, let header) = findWriting(key, hash: hash),
              IndexFormat.segment(slot) == segment, IndexFormat.offset(slot) == offset else { return nil }
        store(IndexFormat.slot(segment: newSegment, offset: newOffset, hash: hash), in: slots, at: index)
        return UInt32(header.totalLength)
    }

    /// While building: applies a record found on disk unless the index already
    /// holds a newer one for the key. A deletion (`size` 0) leaves a mark so
    /// that an older value met later cannot bring the key back.
    @inline(__always)
    func applyLoaded(_ key: UnsafeRawBufferPointer, _ location: KeyLocation) -> (applied: Bool, replaced: KeyLocation?) {
        let hash = KeyHash.hash(key.baseAddress!, key.count, seed: seed)
        migrateSome()
        let value = IndexFormat.slot(segment: location.segment, offset: location.offset, hash: hash) | (location.isDeletionMark ? SharedIndex.markBit : 0)
        if case .at(let slots, let index, let slot, let header) = findWriting(key, hash: hash) {
            if header.seq >= location.seq { return (false, nil) }
            // Replaced where it was found (one probe, not a second one through `set`).
            let old = SharedIndex.location(slot, header)
            store(value, in: slots, at: index)
            addCounts(keys: 0, bytes: Int(location.size) - Int(old.size))
            return (true, old)
        }
        insertNew(value, hash: hash, size: Int(location.size))
        return (true, nil)
    }

    /// The last resize could not get its space: the table fills until one can.
    private var resizeFailed = false

    /// False when `newKeys` more keys would not fit: past the largest table,
    /// or past 90% of this one when it could not grow (a full disk).
    func hasRoom(forNewKeys newKeys: Int) -> Bool {
        if (count + newKeys) * 10 > IndexFormat.maxCapacity * 7 { return false }
        if resizeFailed {
            if (count + deletedSlots + newKeys) * 10 > (mask + 1) * 7 { resize() }
            if resizeFailed && (count + deletedSlots + newKeys) * 10 > (mask + 1) * 9 { return false }
        }
        return true
    }

    // MARK: growth

    /// Starts moving to a table twice the size (or the same size when deleted
    /// markers, not keys, filled it); later changes move it over.
    private func resize() {
        while oldTable != nil { migrateSome() }
        var capacity = mask + 1
        if count * 10 > capacity * 5 { capacity = min(capacity * 2, IndexFormat.maxCapacity) }
        let bytes = IndexFormat.tableBytes(capacity: capacity)
        let current = currentLayout
        let currentEnd = current.tableOffset + IndexFormat.tableBytes(capacity: current.capacity)
        // The space before the table when the new one fits there (it was released when emptied), else after it.
        let place = IndexFormat.tablesStart + bytes <= current.tableOffset ? IndexFormat.tablesStart : currentEnd
        let end = place + bytes
        if end > reserved {
            // Past the address space this index could reserve: it stays and refuses new keys before it is full.
            resizeFailed = true
            return
        }
        if let path {
            // Reserved before it is used (also space a released table left): a store must never fault on a full disk.
            // Without it the table stays and keeps filling; `hasRoom` refuses new keys before it is full.
            guard (try? Syscalls.reserve(fd, from: place, to: end, path: path)) != nil else {
                resizeFailed = true
                return
            }
        }
        resizeFailed = false
        if end > Int(header(IndexFormat.regionEndAt)) { setHeader(IndexFormat.regionEndAt, UInt64(end)) }
        let layout = Layout(tableOffset: place, capacity: capacity, oldTableOffset: current.tableOffset, oldCapacity: current.capacity)
        publish(layout, migrated: 0)
        adoptLayout(layout)
        // Pages of the new table nothing stores into still need their checksums at the next clean close.
        allPagesDirty = true
        deletedSlots = 0
        migrateSome()
    }

    /// Moves the next `migrationStep` slots of the old table, if any, into the table.
    private func migrateSome() {
        guard let old = oldTable else { return }
        let end = min(migrated + SharedIndex.migrationStep, oldMask + 1)
        // Each move reads its key from the log: the records of this step started loading
        // at the step before (the first step starts its own), those of the next one now,
        // so they arrive while the caller's write goes on.
        if migrated == 0 { prefetchRecords(old, from: 0, to: end) }
        prefetchRecords(old, from: end, to: min(end + SharedIndex.migrationStep, oldMask + 1))
        for index in migrated..<end {
            let slot = old[index]
            if slot == IndexFormat.emptySlot || slot == IndexFormat.deletedSlot { continue }
            if let (key, _) = record(slot) {
                let hash = KeyHash.hash(key.baseAddress!, key.count, seed: seed)
                var target = Int(truncatingIfNeeded: hash) & mask
                while table[target] != IndexFormat.emptySlot && table[target] != IndexFormat.deletedSlot { target = (target + 1) & mask }
                if table[target] == IndexFormat.deletedSlot { deletedSlots -= 1 }
                // Copied before the old slot goes: a reader always finds the key in one of the tables.
                store(slot, in: table, at: target)
            }  // else: a slot naming no record is dropped
            // A marker, not empty: probes of keys not moved yet run through here.
            store(IndexFormat.deletedSlot, in: old, at: index)
        }
        migrated = end
        setHeader(IndexFormat.migratedAt, UInt64(end))
        if migrated > oldMask { finishMigration() }
    }

    /// Starts loading the records that slots `from..<to` of `slots` name (segments borrowed: this runs on every write of a resize).
    @inline(__always)
    private func prefetchRecords(_ slots: UnsafeMutablePointer<UInt64>, from: Int, to: Int) {
        for index in from..<to {
            let slot = load(slots, index)
            guard slot > IndexFormat.deletedSlot else { continue }
            let offset = Int(IndexFormat.offset(slot))
            withSegment(IndexFormat.segment(slot)) { segment in
                if offset < segment.indexReadLimit { kvf_prefetch(segment.base + offset) }
            }
        }
    }

    private func finishMigration() {
        guard let old = oldTable else { return }
        let offset = UnsafeRawPointer(old) - UnsafeRawPointer(base)
        let bytes = IndexFormat.tableBytes(capacity: oldMask + 1)
        var layout = currentLayout
        layout.oldTableOffset = 0
        layout.oldCapacity = 0
        publish(layout, migrated: 0)
        forgetUncheckedTable(old)
        oldTable = nil
        oldMask = 0
        oldDirtyPages = []
        migrated = 0
        // The old table's space becomes zeros (a later table may be placed there).
        if let path {
            if !Syscalls.release(fd, from: offset, to: offset + bytes, path: path) { memset(base + offset, 0, bytes) }
        } else {
            Syscalls.advise(base + offset, length: bytes, .free)
        }
    }

    /// After a writer died in the middle of moving a step of slots: a slot
    /// copied to the new table whose old copy was not yet marked is marked now.
    func finishInterruptedMigrationStep() {
        guard let old = oldTable else { return }
        for index in migrated..<min(migrated + SharedIndex.migrationStep, oldMask + 1) {
            let slot = old[index]
            guard slot != IndexFormat.emptySlot && slot != IndexFormat.deletedSlot, let (key, _) = record(slot) else { continue }
            let hash = KeyHash.hash(key.baseAddress!, key.count, seed: seed)
            if case .at = find(key, hash: hash, in: table, mask: mask) { store(IndexFormat.deletedSlot, in: old, at: index) }
        }
    }

    // MARK: closing and checking

    /// Every page's checksum must be computed at the next clean close (the index was built, or found not closed cleanly).
    func markAllPagesDirty() { allPagesDirty = true }

    /// The page checksums hold (a writer checked them when it opened an index closed cleanly): only pages it changes need new ones.
    func markPagesClean() { allPagesDirty = false }

    /// Marks the file open by a writer of this boot (not synced: page checksums catch what a crash leaves).
    func markOpen() {
        // Boot and identity first: a reader that sees state open must see them too.
        storeBoot()
        storeIdentity()
        atomicMemoryFence(ordering: .releasing)
        base.storeLE(IndexFormat.stateOpen, at: IndexFormat.stateAt)
    }

    /// Writes the page checksums of changed pages and the header's, marks the
    /// index closed cleanly and syncs it. The log must be synced before.
    func closeCleanly() throws(KVFileError) {
        // A damaged index stays replaced: the next writer builds it anew.
        guard let path, damagedPage == nil else { return }
        while oldTable != nil { migrateSome() }
        let layout = currentLayout
        writePageChecksums(tableOffset: layout.tableOffset, capacity: layout.capacity, dirty: allPagesDirty ? nil : dirtyPages)
        // First every page and its checksum on disk, then the header that says so: a power loss in
        // between leaves the header of the last close (or one left open), never one over older pages.
        try Syscalls.fdatasync(fd, path: path)
        for page in 0..<IndexFormat.segmentTablePages {
            let crc = CRC32C.checksum(UnsafeRawPointer(base + IndexFormat.segmentTableAt + page * IndexFormat.pageSize), IndexFormat.pageSize)
            base.storeLE(crc, at: IndexFormat.segmentPageCRCsAt + page * 4)
        }
        setHeader(IndexFormat.changesAt, (header(IndexFormat.changesAt) | 1) &+ 1)
        kvf_fence_release()
        base.storeLE(IndexFormat.stateClosed, at: IndexFormat.stateAt)
        storeBoot()
        base.storeLE(CRC32C.checksum(UnsafeRawPointer(base), IndexFormat.headerCRCAt), at: IndexFormat.headerCRCAt)
        try Syscalls.fdatasync(fd, path: path)
        allPagesDirty = false
        for index in dirtyPages.indices { dirtyPages[index] = 0 }
    }

    private func writePageChecksums(tableOffset: Int, capacity: Int, dirty: [UInt64]?) {
        let pages = capacity / IndexFormat.slotsPerPage
        let crcs = base + tableOffset + capacity * 8
        for page in 0..<pages {
            if let dirty, dirty[page >> 6] & (1 << UInt64(page & 63)) == 0 { continue }
            crcs.storeLE(CRC32C.checksum(UnsafeRawPointer(base + tableOffset + page * IndexFormat.pageSize), IndexFormat.pageSize), at: page * 4)
        }
    }

    /// For an index closed cleanly: true when its header checksum holds.
    var headerChecksumHolds: Bool {
        CRC32C.checksum(UnsafeRawPointer(base), IndexFormat.headerCRCAt) == header32(IndexFormat.headerCRCAt)
    }

    /// For an index closed cleanly: the first page of the segment table whose checksum does not hold, as a file offset.
    func firstBadSegmentTablePage() -> Int? {
        for page in 0..<IndexFormat.segmentTablePages {
            let at = IndexFormat.segmentTableAt + page * IndexFormat.pageSize
            if CRC32C.checksum(UnsafeRawPointer(base + at), IndexFormat.pageSize) != header32(IndexFormat.segmentPageCRCsAt + page * 4) { return at }
        }
        return nil
    }

    /// For an index closed cleanly: the first page (of the segment table or
    /// of a slot table) whose checksum does not hold, as a file offset.
    func firstBadPage() -> Int? {
        if let bad = firstBadSegmentTablePage() { return bad }
        let layout = readLayout()
        let pages = layout.capacity / IndexFormat.slotsPerPage
        let crcs = UnsafeRawPointer(base + layout.tableOffset + layout.capacity * 8)
        for page in 0..<pages {
            let at = layout.tableOffset + page * IndexFormat.pageSize
            if CRC32C.checksum(UnsafeRawPointer(base + at), IndexFormat.pageSize) != crcs.loadLE(at: page * 4, as: UInt32.self) { return at }
        }
        return nil
    }

    // MARK: the segment table

    /// Publishes a new entry (made by `segmentEntry(_:create:)`) under `id`, its header checksum stored first.
    func publishSegmentEntry(_ entry: UnsafeMutableRawPointer, id: UInt32, headerChecksum: UInt32) {
        entry.storeLE(headerChecksum, at: 4)
        kvf_fence_release()
        entry.storeLE(id, at: 0)
    }

    /// Whether values with deadlines may be in the log: a writer sets it before
    /// it writes one, and its sweep clears it after a walk that met none.
    var mayHoldDeadlines: Bool {
        get { header(IndexFormat.deadlinesAt) != 0 }
        set { if writable && path != nil { setHeader(IndexFormat.deadlinesAt, newValue ? 1 : 0) } }
    }

    /// No value in the log has a deadline before this (ms since the epoch; 0:
    /// none known): a writer that opens after it walks the index to record
    /// the expiries due.
    var earliestDeadline: UInt64 {
        get { header(IndexFormat.earliestDeadlineAt) }
        set { if writable && path != nil { setHeader(IndexFormat.earliestDeadlineAt, newValue) } }
    }

    /// The highest segment number ever handed out in this store (so none is used twice, even after compaction removed it).
    var highestSegmentID: UInt32 {
        get { UInt32(truncatingIfNeeded: header(IndexFormat.highestSegmentAt)) }
        set { if writable { setHeader(IndexFormat.highestSegmentAt, UInt64(newValue)) } }
    }

    /// The segment table entry of `id`, made (unpublished) when `create`; nil when there is none (or no room).
    func segmentEntry(_ id: UInt32, create: Bool) -> UnsafeMutableRawPointer? {
        var free: UnsafeMutableRawPointer?
        for index in 0..<IndexFormat.segmentEntries {
            let p = base + IndexFormat.segmentTableAt + index * IndexFormat.segmentEntrySize
            let entryID = UnsafeRawPointer(p).loadLE(at: 0, as: UInt32.self)
            if entryID == id { return p }
            if entryID == 0 && free == nil { free = p }
        }
        guard create, writable, let free else { return nil }
        memset(free, 0, IndexFormat.segmentEntrySize)
        free.storeLE(UInt64.max, at: 8)
        return free
    }

    /// The ids of the segments the table lists.
    func listedSegments() -> [UInt32] {
        (0..<IndexFormat.segmentEntries).compactMap { index in
            let id = UnsafeRawPointer(base + IndexFormat.segmentTableAt + index * IndexFormat.segmentEntrySize).loadLE(at: 0, as: UInt32.self)
            return id == 0 ? nil : id
        }.sorted()
    }

    func dropSegmentEntry(_ id: UInt32) {
        if let p = segmentEntry(id, create: false) { memset(p, 0, IndexFormat.segmentEntrySize) }
    }
}
