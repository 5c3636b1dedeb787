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
    /// Bytes of records that are the latest for their key.
    var liveBytes = 0
    /// The smallest sequence number of a record in the segment (UInt64.max while it has none).
    var minSeq = UInt64.max
    /// Size of its hint file (0 while it has none).
    var hintBytes = 0
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
    init(id: UInt32, path: String, fd: Int32, header: SegmentHeader, length: Int, mapCapacity: Int, writable: Bool = false) throws(KVFileError) {
        let pageSize = 4096
        let capacity = max(pageSize, (mapCapacity + pageSize - 1) & ~(pageSize - 1))
        let mapping = try Syscalls.map(fd, length: capacity, writable: writable, shared: true, path: path)
        _ = madvise(mapping, capacity, MADV_RANDOM)
        self.id = id
        self.path = path
        self.fd = fd
        self.base = UnsafeRawPointer(mapping)
        self.mappedLength = capacity
        self.lengthStorage = Atomic(length)
        self.header = header
    }

    deinit {
        munmap(UnsafeMutableRawPointer(mutating: base), mappedLength)
        Syscalls.close(fd)
    }

    /// Where the writer stores new records (only for a writable mapping).
    var writableBase: UnsafeMutableRawPointer { UnsafeMutableRawPointer(mutating: base) }

    /// The bytes of the segment from `offset` to `length`.
    func bytes(from offset: Int = 0) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base + offset, count: max(0, length - offset))
    }
}
