#if canImport(Glibc)
@preconcurrency import Glibc
#endif
import Synchronization

/// One open segment file, mapped read-only for lookups.
///
/// The mapping is made once and never moves: a writer maps the capacity the
/// segment may grow to, a reader maps up to the 4 GiB offset limit, and bytes
/// are only read below `length`, which is known to be on disk. Unmapped and
/// closed when the last reference goes, so a snapshot or a compaction can
/// keep reading a file that has been unlinked.
final class Segment: @unchecked Sendable {
    let id: UInt32
    let path: String
    let fd: Int32
    let base: UnsafeRawPointer
    let mappedLength: Int
    /// Bytes of complete records (plus the header) known to be in the file.
    /// Changed only under the store's write lock; read also without it (a
    /// snapshot's reads in `forEach`), hence atomic.
    var length: Int {
        get { lengthStorage.load(ordering: .acquiring) }
        set { lengthStorage.store(newValue, ordering: .releasing) }
    }
    private let lengthStorage: Atomic<Int>
    /// The segment's entry in the index's segment table, where the counts
    /// below are kept (nil until the segment joins an index).
    var indexEntry: UnsafeMutableRawPointer?
    private var localCounts: (live: Int, minSeq: UInt64, hint: Int) = (0, UInt64.max, 0)

    /// Bytes of records that are the latest for their key.
    var liveBytes: Int {
        get { indexEntry.map { Int(Int64(bitPattern: UnsafeRawPointer($0).loadLE(at: 16, as: UInt64.self))) } ?? localCounts.live }
        set { if let indexEntry { indexEntry.storeLE(UInt64(bitPattern: Int64(newValue)), at: 16) } else { localCounts.live = newValue } }
    }
    /// The smallest sequence number of a record in the segment (UInt64.max while it has none).
    var minSeq: UInt64 {
        get { indexEntry.map { UnsafeRawPointer($0).loadLE(at: 8, as: UInt64.self) } ?? localCounts.minSeq }
        set { if let indexEntry { indexEntry.storeLE(newValue, at: 8) } else { localCounts.minSeq = newValue } }
    }
    /// Size of its hint file (0 while it has none). Set once the segment is
    /// sealed (or found sealed), which the index's entry also records its size at.
    var hintBytes: Int {
        get { indexEntry.map { Int(UnsafeRawPointer($0).loadLE(at: 28, as: UInt32.self)) } ?? localCounts.hint }
        set {
            guard let indexEntry else { return localCounts.hint = newValue }
            indexEntry.storeLE(UInt32(clamping: newValue), at: 28)
            // Sealed: its size from now on (0 stays for a segment not sealed yet).
            if newValue > 0 { indexEntry.storeLE(UInt32(clamping: length), at: 24) }
        }
    }

    /// The size the index recorded when the segment was sealed (0: not sealed, or no index).
    var sealedLength: Int { indexEntry.map { Int(UnsafeRawPointer($0).loadLE(at: 24, as: UInt32.self)) } ?? 0 }

    /// How far records may be read: the reserved space of the writer's active
    /// segment, the file's size as a reader of a shared index last saw it, else the known length.
    @inline(__always) var indexReadLimit: Int { max(length, allocated, fileSizeSeen.load(ordering: .relaxed)) }
    private let fileSizeSeen = Atomic<Int>(0)

    /// For a reader of a shared index: the file may have grown since it was
    /// opened (a writer appends to it); looks at its size again.
    @discardableResult
    func refreshReadLimit() -> Int {
        let size = min((try? Syscalls.fileSize(fd, path: path)) ?? 0, mappedLength)
        fileSizeSeen.store(size, ordering: .relaxed)
        return indexReadLimit
    }
    /// Written by compaction.
    var isCompactionOutput: Bool { header.compacted }
    /// For the writer's active segment: the file's size, which runs ahead of
    /// `length` by space reserved with fallocate so stores into the mapping never fault on a full disk.
    var allocated = 0
    let header: SegmentHeader

    /// Where the block map starts (records lie below it); 0 when the segment has none.
    var mapOffset: Int { Int(header.mapOffset) }

    /// How far records may reach: the map's start, or the whole mapping.
    var recordCapacity: Int { mapOffset > 0 ? min(mapOffset, mappedLength) : mappedLength }

    /// Records the first record start of `block` in the map (writer only; the
    /// mapping covers the map, whose space was reserved when it was made).
    func storeMapEntry(block: Int, start: Int) {
        let at = mapOffset + block * BlockMap.entrySize
        guard mapOffset > 0, at + BlockMap.entrySize <= mappedLength else { return }
        writableBase.storeLE(BlockMap.entry(segmentID: id, block: block, start: start), at: at)
    }

    /// True when the map has no entry for `block` (writer only).
    func mapEntryIsEmpty(block: Int) -> Bool {
        let at = mapOffset + block * BlockMap.entrySize
        guard mapOffset > 0, block >= 0, at + BlockMap.entrySize <= mappedLength else { return true }
        return base.loadLE(at: at, as: UInt32.self) == 0
    }

    /// Stores the watermark: records below `end` are whole on stable storage
    /// (writer only; see ``BlockMap``).
    func storeWatermark(_ end: Int) {
        let at = mapOffset + BlockMap.size(mapOffset: mapOffset)
        guard mapOffset > 0, at + BlockMap.watermarkSize <= mappedLength else { return }
        let (value, crc) = BlockMap.watermark(segmentID: id, end: end)
        writableBase.storeLE(value, at: at)
        writableBase.storeLE(crc, at: at + 8)
    }

    /// How much of the address space a segment may need at most.
    static let addressLimit = (RecordFormat.maxSegmentSize + 4095) & ~4095

    /// Maps `mapCapacity` bytes of `fd`; `writable` for the writer's active segment,
    /// which appends by storing into the mapping.
    /// Takes `file` over: it is closed with the segment, or at once when mapping it fails.
    init(id: UInt32, path: String, file: consuming OwnedFile, header: SegmentHeader, length: Int, mapCapacity: Int, writable: Bool = false) throws(KVFileError) {
        let pageSize = 4096
        let capacity = max(pageSize, (mapCapacity + pageSize - 1) & ~(pageSize - 1))
        let mapping = try Syscalls.map(file.fd, length: capacity, writable: writable, shared: true, path: path)
        Syscalls.advise(mapping, length: capacity, .random)
        self.id = id
        self.path = path
        self.fd = file.release()
        self.base = UnsafeRawPointer(mapping)
        self.mappedLength = capacity
        self.lengthStorage = Atomic(length)
        self.header = header
    }

    deinit {
        Syscalls.unmap(base, length: mappedLength)
        Syscalls.close(fd)
    }

    /// Where the writer stores new records (only for a writable mapping).
    var writableBase: UnsafeMutableRawPointer { UnsafeMutableRawPointer(mutating: base) }

    /// For a segment the writer rolled away from, before its seal syncs it:
    /// the writable mapping is swapped for a read-only one at the same address.
    /// Writing back a page that a writable mapping maps makes the kernel
    /// write-protect it there and flush every CPU's TLB, page by page; with no
    /// writable mapping left, the sync has none of that to do (it was a seventh
    /// of a fill's time). Unmapping moves the pages' dirty state to the page cache.
    func dropWriteAccess() {
        if Syscalls.remapReadOnly(base, length: mappedLength, fd: fd) {
            Syscalls.advise(base, length: mappedLength, .random)
        }
    }

    /// The bytes of the segment from `offset` to `length`.
    func bytes(from offset: Int = 0) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base + offset, count: max(0, length - offset))
    }
}
