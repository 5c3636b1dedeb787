#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// Appends records to the active segment, rolls to a new segment when it is
/// full, and writes the hint file of each segment it seals. Used only under
/// the store's write lock.
final class SegmentWriter {
    private let directory: String
    private let segmentSize: Int
    private(set) var segment: Segment
    private var hints: HintBuilder
    /// Encoded records not yet handed to the OS.
    private let pending = GrowableBuffer(capacity: 1 << 16)
    /// Compressed value of the record being encoded.
    private let compressed = GrowableBuffer(capacity: 1 << 12)
    private let compressor = LZ4Compressor()

    init(directory: String, segmentSize: Int, active: Segment, hints: HintBuilder) {
        self.directory = directory
        self.segmentSize = segmentSize
        self.segment = active
        self.hints = hints
    }

    /// Where the log ends: segment id in the high half, offset in the low half.
    /// Grows with every write, across rolls, so it can order syncs.
    var position: UInt64 { UInt64(segment.id) << 32 | UInt64(segment.length) }

    /// A record encoded into the pending buffer, not yet written.
    struct Staged {
        var operation: Operation
        var seq: UInt64
        var offset: Int
        var size: Int
        /// Where its key lives in the pending buffer, for the keydir and hints.
        var keyStart: Int
        var keyLength: Int
    }

    /// Bytes staged so far.
    var stagedBytes: Int { pending.count }

    /// Makes sure `bytes` more fit in the active segment, sealing it and
    /// starting the next when they do not (a segment always takes at least one batch).
    func makeRoom(for bytes: Int, nextSeq: UInt64, state: StoreState) throws(KVFileError) {
        let used = segment.length + pending.count
        let hasRecords = used > RecordFormat.segmentHeaderSize
        if (hasRecords && used + bytes > segmentSize) || used + bytes > segment.mappedLength {
            precondition(pending.count == 0, "roll in the middle of a batch")
            try roll(nextSeq: nextSeq, needing: bytes, state: state)
        }
    }

    /// Compresses the value when that pays and returns the exact encoded record size.
    func prepare(seq: UInt64, timestamp: UInt64, key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer?) -> (size: Int, compressedLength: Int?) {
        var compressedLength: Int?
        if let value, value.count >= RecordFormat.minCompressibleLength {
            compressed.count = 0
            let destination = compressed.reserve(LZ4Compressor.bound(value.count))
            compressedLength = compressor.compress(value, into: destination)
        }
        let storedLength = compressedLength ?? value?.count ?? 0
        let size = RecordCodec.encodedLength(
            seq: seq, timestamp: timestamp, keyLength: key.count, storedLength: storedLength,
            rawLength: compressedLength == nil ? nil : value!.count)
        return (size, compressedLength)
    }

    /// Encodes a record after `prepare` into the pending buffer.
    func stage(
        operation: Operation, continues: Bool, seq: UInt64, timestamp: UInt64,
        key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer?, prepared: (size: Int, compressedLength: Int?)
    ) -> Staged {
        let start = pending.count
        let p = pending.reserve(prepared.size)
        let stored: UnsafeRawBufferPointer
        if let length = prepared.compressedLength {
            stored = UnsafeRawBufferPointer(start: compressed.base, count: length)
        } else {
            stored = value ?? UnsafeRawBufferPointer(start: nil, count: 0)
        }
        let written = RecordCodec.encode(
            to: p, operation: operation, continues: continues, seq: seq, timestamp: timestamp,
            key: key, stored: stored, rawLength: prepared.compressedLength == nil ? nil : value!.count)
        pending.count += written
        return Staged(
            operation: operation, seq: seq, offset: segment.length + start, size: written,
            keyStart: start + written - stored.count - key.count, keyLength: key.count)
    }

    /// The key bytes of a staged record (valid until `commit` or `discard`).
    func key(of staged: Staged) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: pending.base + staged.keyStart, count: staged.keyLength)
    }

    /// Hands the pending records to the OS. On failure the segment is cut back
    /// to where it was, so a half-written batch never stays behind.
    func writePending() throws(KVFileError) {
        guard pending.count > 0 else { return }
        do throws(KVFileError) {
            try Syscalls.pwriteAll(segment.fd, pending.bytes, at: segment.length, path: segment.path)
        } catch {
            try? Syscalls.ftruncate(segment.fd, segment.length, path: segment.path)
            pending.count = 0
            throw error
        }
    }

    /// After `writePending` succeeded: records the hint entries and moves the end.
    func commit(_ staged: Staged) {
        hints.add(operation: staged.operation, seq: staged.seq, size: staged.size, key: key(of: staged))
    }

    func finishCommit() {
        segment.length += pending.count
        pending.reset(keepingCapacity: 1 << 22)
    }

    func discardPending() {
        pending.count = 0
    }

    /// Seals the active segment (sync, hint file) and starts the next one.
    private func roll(nextSeq: UInt64, needing bytes: Int, state: StoreState) throws(KVFileError) {
        let sealed = segment
        try Syscalls.fdatasync(sealed.fd, path: sealed.path)
        state.hintBytes += try HintWriter.write(hints, segmentID: sealed.id, segmentLength: sealed.length, directory: directory)
        let next = try SegmentWriter.createSegment(
            id: sealed.id + 1, baseSeq: nextSeq, directory: directory,
            capacity: max(segmentSize, RecordFormat.segmentHeaderSize + bytes))
        state.add(next)
        segment = next
        hints = HintBuilder()
    }

    /// Creates an empty segment file with its header, durably.
    static func createSegment(id: UInt32, baseSeq: UInt64, directory: String, capacity: Int) throws(KVFileError) -> Segment {
        let path = directory + "/" + FileNames.segment(id)
        let fd = try Syscalls.open(path, O_RDWR | O_CREAT | O_EXCL)
        do throws(KVFileError) {
            let header = SegmentHeader(segmentID: id, baseSeq: baseSeq, createdMilliseconds: Syscalls.wallClockMilliseconds())
            try withBytes(header.encoded()) { (bytes) throws(KVFileError) in try Syscalls.pwriteAll(fd, bytes, at: 0, path: path) }
            try Syscalls.fdatasync(fd, path: path)
            try Syscalls.syncDirectory(directory)
            return try Segment(id: id, path: path, fd: fd, header: header, length: RecordFormat.segmentHeaderSize, mapCapacity: capacity)
        } catch {
            Syscalls.close(fd)
            try? Syscalls.unlink(path)
            throw error
        }
    }
}
