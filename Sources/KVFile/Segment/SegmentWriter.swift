#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// Appends records to the active segment, rolls to a new segment when it is
/// full, and writes the hint file of each segment it seals. Used only under
/// the store's write lock.
///
/// Records are stored straight into a shared, writable mapping of the active
/// segment: no system call per write, and the bytes are in the page cache —
/// visible to every other process and safe from a crash of this one — as
/// soon as the store returns. Space is reserved ahead with fallocate, so a
/// full disk fails a write cleanly instead of faulting; a sealed or closed
/// segment is cut back to its records.
final class SegmentWriter {
    private let directory: String
    private let segmentSize: Int
    private(set) var segment: Segment
    private var hints: HintBuilder
    /// Bytes of the batch being staged in the mapping, past `segment.length`.
    private var stagedBytes = 0
    /// Compressed value of the record being encoded.
    private let compressed = GrowableBuffer(capacity: 1 << 12)
    private let compressor = LZ4Compressor()
    /// How far ahead of the records space is reserved.
    static let reserveStep = 4 << 20

    init(directory: String, segmentSize: Int, active: Segment, hints: HintBuilder) {
        self.directory = directory
        self.segmentSize = segmentSize
        self.segment = active
        self.hints = hints
    }

    /// Where the log ends: segment id in the high half, offset in the low half.
    /// Grows with every write, across rolls, so it can order syncs.
    var position: UInt64 { UInt64(segment.id) << 32 | UInt64(segment.length) }

    /// A record staged in the mapping, not yet part of the log.
    struct Staged {
        var operation: Operation
        var seq: UInt64
        var offset: Int
        var size: Int
        var keyOffset: Int
        var keyLength: Int
    }

    /// Makes sure `bytes` more fit in the active segment, sealing it and
    /// starting the next when they do not (a segment always takes at least
    /// one batch), and reserves the disk space for them.
    func makeRoom(for bytes: Int, nextSeq: UInt64, state: StoreState) throws(KVFileError) {
        precondition(stagedBytes == 0, "makeRoom in the middle of a batch")
        let used = segment.length
        let hasRecords = used > RecordFormat.segmentHeaderSize
        if (hasRecords && used + bytes > segmentSize) || used + bytes > segment.mappedLength {
            try roll(nextSeq: nextSeq, needing: bytes, state: state)
        }
        let needed = segment.length + bytes
        if needed > segment.allocated {
            var target = min(max(needed, segment.allocated + SegmentWriter.reserveStep), segment.mappedLength)
            do throws(KVFileError) {
                try Syscalls.reserve(segment.fd, from: segment.allocated, to: target, path: segment.path)
            } catch where (error.errno == ENOSPC || error.errno == EDQUOT) && target > needed {
                // Not room for a step ahead: reserve what this write needs, no more.
                target = needed
                try Syscalls.reserve(segment.fd, from: segment.allocated, to: target, path: segment.path)
            }
            segment.allocated = target
        }
    }

    /// Compresses the value when that pays and returns the exact encoded record size.
    @inline(__always)
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

    /// Encodes a record after `prepare` (and `makeRoom`) into the mapping,
    /// after the records staged before it. Not part of the log until `commitStaged`.
    @inline(__always)
    func stage(
        operation: Operation, continues: Bool, seq: UInt64, timestamp: UInt64,
        key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer?, prepared: (size: Int, compressedLength: Int?)
    ) -> Staged {
        let offset = segment.length + stagedBytes
        precondition(offset + prepared.size <= segment.allocated, "stage past the reserved space")
        let stored: UnsafeRawBufferPointer
        if let length = prepared.compressedLength {
            stored = UnsafeRawBufferPointer(start: compressed.base, count: length)
        } else {
            stored = value ?? UnsafeRawBufferPointer(start: nil, count: 0)
        }
        let written = RecordCodec.encode(
            to: segment.writableBase + offset, operation: operation, continues: continues, seq: seq, timestamp: timestamp,
            key: key, stored: stored, rawLength: prepared.compressedLength == nil ? nil : value!.count)
        stagedBytes += written
        return Staged(
            operation: operation, seq: seq, offset: offset, size: written,
            keyOffset: offset + written - stored.count - key.count, keyLength: key.count)
    }

    /// Records the hint entry of a staged record.
    @inline(__always)
    func addHint(_ staged: Staged) {
        hints.add(operation: staged.operation, seq: staged.seq, size: staged.size,
                  key: UnsafeRawBufferPointer(start: segment.base + staged.keyOffset, count: staged.keyLength))
    }

    /// Makes the staged records part of the log.
    @inline(__always)
    func commitStaged() {
        segment.length += stagedBytes
        stagedBytes = 0
    }

    /// Erases staged records, so that no later scan can mistake them for part of the log.
    func discardStaged() {
        if stagedBytes > 0 { memset(segment.writableBase + segment.length, 0, stagedBytes) }
        stagedBytes = 0
    }

    /// Seals the active segment when it holds records, so compaction can take it.
    func sealIfNotEmpty(nextSeq: UInt64, state: StoreState) throws(KVFileError) {
        precondition(stagedBytes == 0, "seal in the middle of a batch")
        if segment.length > RecordFormat.segmentHeaderSize { try roll(nextSeq: nextSeq, needing: 0, state: state) }
    }

    /// A segment the writer left that still needs its tail cut, a sync and its hint file.
    struct PendingSeal {
        var segment: Segment
        var hints: HintBuilder
    }

    /// Segments rolled away from under the write lock, sealed later outside it
    /// (``Store`` calls `takePendingSeals` after each write), so that a roll
    /// never makes other writers wait for a sync.
    private(set) var pendingSeals: [PendingSeal] = []

    func restorePendingSeals(_ seals: [PendingSeal]) {
        pendingSeals = seals + pendingSeals
    }

    func takePendingSeals() -> [PendingSeal] {
        defer { pendingSeals = [] }
        return pendingSeals
    }

    /// Starts the next segment; the old one goes to `pendingSeals`. The new
    /// segment's header is not synced here: if it is lost in a crash, the
    /// segment counts as one whose creation was cut short (empty).
    private func roll(nextSeq: UInt64, needing bytes: Int, state: StoreState) throws(KVFileError) {
        let next = try SegmentWriter.createSegment(
            id: state.allocateSegmentID(), baseSeq: nextSeq, directory: directory,
            capacity: max(segmentSize, RecordFormat.segmentHeaderSize + bytes), durable: false)
        state.add(next)
        pendingSeals.append(PendingSeal(segment: segment, hints: hints))
        segment = next
        hints = HintBuilder()
    }

    /// Finishes sealing: cut, sync, hint file (written only after the sync, so
    /// a sound hint file means a complete segment), directory sync. Returns the
    /// hint file's size, for the caller to record under the store's lock.
    static func seal(_ pending: PendingSeal, directory: String, failure: WriterFailure) throws(KVFileError) -> Int {
        try trimAndSync(pending.segment, directory: directory, failure: failure)
        let hintBytes = try HintWriter.write(pending.hints, segmentID: pending.segment.id,
                                             segmentLength: pending.segment.length, directory: directory)
        try Syscalls.syncDirectory(directory)
        return hintBytes
    }

    /// Cuts the reserved space after the records off and syncs the segment.
    static func trimAndSync(_ segment: Segment, directory: String, failure: WriterFailure) throws(KVFileError) {
        try failure.check()
        if segment.allocated > segment.length {
            try Syscalls.ftruncate(segment.fd, segment.length, path: segment.path)
            segment.allocated = segment.length
        }
        try failure.syncData(segment, store: directory)
    }

    /// Creates an empty segment file with its header, durably, mapped for writing.
    static func createSegment(id: UInt32, baseSeq: UInt64, directory: String, capacity: Int, durable: Bool = true) throws(KVFileError) -> Segment {
        let path = directory + "/" + FileNames.segment(id)
        let fd = try Syscalls.open(path, O_RDWR | O_CREAT | O_EXCL)
        do throws(KVFileError) {
            let header = SegmentHeader(segmentID: id, baseSeq: baseSeq, createdMilliseconds: Syscalls.wallClockMilliseconds())
            try withBytes(header.encoded()) { (bytes) throws(KVFileError) in try Syscalls.pwriteAll(fd, bytes, at: 0, path: path) }
            if durable {
                try Syscalls.fdatasync(fd, path: path)
                try Syscalls.syncDirectory(directory)
            }
            let segment = try Segment(id: id, path: path, fd: fd, header: header, length: RecordFormat.segmentHeaderSize,
                                      mapCapacity: capacity, writable: true)
            segment.allocated = RecordFormat.segmentHeaderSize
            return segment
        } catch {
            Syscalls.close(fd)
            try? Syscalls.unlink(path)
            throw error
        }
    }
}
