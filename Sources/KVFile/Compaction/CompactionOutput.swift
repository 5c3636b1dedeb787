#if canImport(Glibc)
@preconcurrency import Glibc
#endif
import CKVFileSupport

/// Writes the records compaction keeps into fresh segment files, under
/// temporary names, each with its hint file, rolling at the segment size.
/// Records keep their sequence number, timestamp and bytes; only the
/// "batch continues" bit is cleared (and the checksum redone), because a
/// copied record stands alone.
final class CompactionOutput {
    struct Finished {
        var id: UInt32
        var length: Int
        var hintBytes: Int
        var minSeq: UInt64
        var header: SegmentHeader
    }

    private let directory: String
    private let segmentSize: Int
    private let baseSeq: UInt64
    private let allocateID: () -> UInt32
    private(set) var finished: [Finished] = []
    private var current: (id: UInt32, fd: Int32, path: String, length: Int, hints: HintBuilder, minSeq: UInt64, header: SegmentHeader)?
    private let buffer = GrowableBuffer(capacity: 1 << 20)
    /// Bytes of `buffer` already belonging to the file at current.length - buffer.count.
    private(set) var recordsCopied = 0

    init(directory: String, segmentSize: Int, baseSeq: UInt64, allocateID: @escaping () -> UInt32) {
        self.directory = directory
        self.segmentSize = segmentSize
        self.baseSeq = baseSeq
        self.allocateID = allocateID
    }

    /// Every file this output created, for cleaning up after a failure.
    private var createdPaths: [String] = []

    /// Appends one record and returns where it now lives.
    func append(_ record: UnsafeRawPointer, header: RecordHeader) throws(KVFileError) -> (segment: UInt32, offset: Int) {
        let size = header.totalLength
        if let open = current, open.length > RecordFormat.segmentHeaderSize, open.length + size > segmentSize {
            try finishCurrent()
        }
        if current == nil { try startSegment() }
        let offset = current!.length
        let p = buffer.reserve(size)
        p.copyMemory(from: record, byteCount: size)
        if header.continues {
            let kind = p.load(fromByteOffset: 4, as: UInt8.self) & ~RecordFormat.flagContinued
            p.storeBytes(of: kind, toByteOffset: 4, as: UInt8.self)
            p.storeLE(CRC32C.checksum(UnsafeRawPointer(p + 4), size - 4), at: 0)
        }
        buffer.count += size
        current!.length += size
        current!.hints.add(operation: header.operation, seq: header.seq, size: size,
                           key: UnsafeRawBufferPointer(start: record + header.keyOffset, count: header.keyLength))
        current!.minSeq = min(current!.minSeq, header.seq)
        recordsCopied += 1
        if buffer.count >= 1 << 20 { try flush() }
        return (current!.id, offset)
    }

    private func startSegment() throws(KVFileError) {
        let id = allocateID()
        try IndexFormat.checkSegmentID(id, store: directory)
        let path = StoreFiles.temporary(of: StoreFiles(directory).segment(id))
        let fd = try Syscalls.open(path, O_WRONLY | O_CREAT | O_TRUNC)
        createdPaths.append(path)
        createdPaths.append(StoreFiles.temporary(of: StoreFiles(directory).hint(id)))
        let header = SegmentHeader(segmentID: id, baseSeq: baseSeq, createdMilliseconds: Syscalls.wallClockMilliseconds(), compacted: true)
        current = (id, fd, path, RecordFormat.segmentHeaderSize, HintBuilder(), UInt64.max, header)
        let encoded = header.encoded()
        encoded.withUnsafeBytes { buffer.append($0) }
    }

    private func flush() throws(KVFileError) {
        guard let open = current, buffer.count > 0 else { return }
        let offset = open.length - buffer.count
        try Syscalls.pwriteAll(open.fd, buffer.bytes, at: offset, path: open.path)
        // Start writing back now, a megabyte at a time, so the final sync has
        // little left to do and does not hold the file system's journal for long
        // (a long journal commit stalls the writer's stores into its mapping).
        _ = kvf_start_writeback(open.fd, Int64(offset), Int64(buffer.count))
        buffer.count = 0
    }

    private func finishCurrent() throws(KVFileError) {
        guard let open = current else { return }
        try flush()
        try Syscalls.fdatasync(open.fd, path: open.path)
        Syscalls.close(open.fd)
        current = nil
        let hintBytes = try HintWriter.write(open.hints, segmentID: open.id, segmentLength: open.length, directory: directory, rename: false)
        finished.append(Finished(id: open.id, length: open.length, hintBytes: hintBytes, minSeq: open.minSeq, header: open.header))
    }

    /// Flushes and syncs everything; the files keep their temporary names.
    /// There is always at least one output, even with no records: the last
    /// one's base sequence number is `decidedBefore`, the writer's next number
    /// once compaction had judged every record, which bounds the history it
    /// dropped (the change feed's floor; see man/kvfile.5, "COMPACTION").
    func finish(decidedBefore: UInt64) throws(KVFileError) {
        if current == nil { try startSegment() }
        try flush()
        current!.header.baseSeq = max(current!.header.baseSeq, decidedBefore)
        let (fd, path) = (current!.fd, current!.path)
        try withBytes(current!.header.encoded()) { (raw) throws(KVFileError) in try Syscalls.pwriteAll(fd, raw, at: 0, path: path) }
        try finishCurrent()
    }

    /// Removes every file written so far (the compaction did not commit).
    func abandon() {
        if let open = current { Syscalls.close(open.fd) }
        current = nil
        for path in createdPaths { try? Syscalls.unlink(path) }
    }
}
