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
        // The block map of the records already there (it may have been cut off or lost).
        active.storeMapEntry(block: 0, start: RecordFormat.segmentHeaderSize)
        if !hints.sizesKnown {
            // Reopened through the index after a crash: the map of the records before is intact.
            let block = hints.coveredFrom / BlockMap.blockSize
            mappedBlock = active.mapEntryIsEmpty(block: block) ? block - 1 : block
        }
        hints.forEachRecord { offset, _ in noteRecordStart(offset) }
    }

    /// The last block whose map entry is written.
    private var mappedBlock = 0

    /// Writes the map entry of the block `start` lies in when it has none yet.
    @inline(__always)
    private func noteRecordStart(_ start: Int) {
        let block = start / BlockMap.blockSize
        if block > mappedBlock {
            segment.storeMapEntry(block: block, start: start)
            mappedBlock = block
        }
    }

    /// Where the log ends: segment id in the high half, offset in the low half.
    /// Grows with every write, across rolls, so it can order syncs.
    var position: UInt64 { UInt64(segment.id) << 32 | UInt64(segment.length) }

    /// A record staged in the mapping, not yet part of the log.
    struct Staged {
        var operation: ChangeKind
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
        if (hasRecords && used + bytes > segmentSize) || used + bytes > segment.recordCapacity {
            try roll(nextSeq: nextSeq, needing: bytes, state: state)
        }
        let needed = segment.length + bytes
        if needed > segment.allocated {
            var target = min(max(needed, segment.allocated + SegmentWriter.reserveStep), segment.recordCapacity)
            do throws(KVFileError) {
                try Syscalls.reserve(segment.fd, from: segment.allocated, to: target, path: segment.path)
            } catch where error.isDiskFull && target > needed {
                // Not room for a step ahead: reserve what this write needs, no more.
                target = needed
                try Syscalls.reserve(segment.fd, from: segment.allocated, to: target, path: segment.path)
            }
            segment.allocated = target
        }
    }

    /// Compresses the value when that pays and returns the exact encoded record size.
    @inline(__always)
    func prepare(
        seq: UInt64, timestamp: UInt64, deadline: UInt64 = 0, key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer?
    ) -> (size: Int, compressedLength: Int?) {
        var compressedLength: Int?
        if let value, value.count >= RecordFormat.minCompressibleLength {
            compressed.count = 0
            let destination = compressed.reserve(LZ4Compressor.bound(value.count))
            compressedLength = compressor.compress(value, into: destination)
        }
        let storedLength = compressedLength ?? value?.count ?? 0
        let size = RecordCodec.encodedLength(
            seq: seq, timestamp: timestamp, deadline: deadline, keyLength: key.count, storedLength: storedLength,
            rawLength: compressedLength == nil ? nil : value!.count)
        return (size, compressedLength)
    }

    /// Encodes a record after `prepare` (and `makeRoom`) into the mapping,
    /// after the records staged before it. Not part of the log until `commitStaged`.
    @inline(__always)
    func stage(
        operation: ChangeKind, continues: Bool, seq: UInt64, timestamp: UInt64, deadline: UInt64 = 0, expired: Bool = false,
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
        noteRecordStart(offset)
        let written = RecordCodec.encode(
            to: segment.writableBase + offset, operation: operation, continues: continues, seq: seq, timestamp: timestamp,
            deadline: deadline, expired: expired, key: key, stored: stored, rawLength: prepared.compressedLength == nil ? nil : value!.count)
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

    /// Starts a segment of the current format when the active one is older
    /// (a version-1 segment has no block map): the old one is sealed as it is.
    func upgradeActive(nextSeq: UInt64, state: StoreState) throws(KVFileError) {
        precondition(stagedBytes == 0, "upgrade in the middle of a batch")
        if segment.header.version < RecordFormat.version { try roll(nextSeq: nextSeq, needing: 0, state: state) }
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
        hints = HintBuilder(keepsEntries: false)
        mappedBlock = 0
    }

    /// Finishes sealing: cut, sync, hint file (written only after the sync, so
    /// a sound hint file means a complete segment), directory sync. Returns the
    /// hint file's size, for the caller to record under the store's lock.
    static func seal(_ pending: PendingSeal, directory: String, failure: WriterFailure) throws(KVFileError) -> Int {
        try trimAndSync(pending.segment, directory: directory, failure: failure, durableCut: true)
        let hints = try pending.hints.completed(scanning: pending.segment)
        let hintBytes = try HintWriter.write(hints, segmentID: pending.segment.id,
                                             segmentLength: pending.segment.length, directory: directory)
        try Syscalls.syncDirectory(directory)
        return hintBytes
    }

    /// Syncs the segment's records, then cuts off what lies after them
    /// (reserved space, the block map). In that order, a file cut to its
    /// records always holds them whole and synced, which is what tells a
    /// reader that every damage in it is corruption (man/kvfile.5,
    /// "Recovery"). With `durableCut` (sealing: the hint file that follows
    /// records the cut size) the cut is synced too.
    static func trimAndSync(_ segment: Segment, directory: String, failure: WriterFailure, durableCut: Bool) throws(KVFileError) {
        try failure.check()
        try failure.syncData(segment, store: directory)
        if segment.allocated > segment.length || segment.mapOffset > 0 {
            try Syscalls.ftruncate(segment.fd, segment.length, path: segment.path)
            segment.allocated = segment.length
            if durableCut { try failure.syncData(segment, store: directory) }
        }
    }

    /// Syncs the active segment for a clean close and gives it its closed
    /// layout (man/kvfile.5, "Layouts of a segment file"): after the records,
    /// the size of each of them and a closing trailer, and the file cut there —
    /// after the sync, so a closed file always holds whole, synced records. If
    /// the cut does not reach the disk, the open layout says the same through
    /// its watermark. Version 1 is cut to its records.
    func syncForClose(failure: WriterFailure) throws(KVFileError) {
        guard segment.mapOffset > 0 else {
            return try SegmentWriter.trimAndSync(segment, directory: directory, failure: failure, durableCut: false)
        }
        try failure.check()
        let end = segment.length
        let list = GrowableBuffer(capacity: 1 << 12)
        BlockMap.listMarker.withUnsafeBytes { list.append($0) }
        if !hints.sizesKnown { hints = try hints.completed(scanning: segment) }  // after a crash: read them
        hints.forEachRecord { _, size in list.appendVarint(UInt64(size)) }
        let closed = BlockMap.Closed(recordsEnd: end, listBytes: list.count, listCRC: CRC32C.checksum(UnsafeRawPointer(list.base), list.count))
        BlockMap.trailer(closed, segmentID: segment.id).withUnsafeBytes { list.append($0) }
        try Syscalls.pwriteAll(segment.fd, UnsafeRawBufferPointer(start: list.base, count: list.count), at: end, path: segment.path)
        try failure.syncData(segment, store: directory)
        // Now every record is on disk: the open layout may say so too (if the cut below is lost, or not yet seen).
        segment.storeWatermark(end)
        try Syscalls.ftruncate(segment.fd, end + list.count, path: segment.path)
        segment.allocated = min(segment.allocated, end + list.count)
    }

    /// The header of a new active segment whose records may fill `capacity` bytes.
    static func activeHeader(id: UInt32, baseSeq: UInt64, capacity: Int) -> SegmentHeader {
        var header = SegmentHeader(segmentID: id, baseSeq: baseSeq, createdMilliseconds: Syscalls.wallClockMilliseconds())
        let mapOffset = BlockMap.offset(forCapacity: capacity)
        // A segment that may fill 4 GiB has no room for a map offset: it goes without.
        header.mapOffset = mapOffset <= Int(UInt32.max) ? UInt32(mapOffset) : 0
        return header
    }

    /// Maps an active segment for appending: its records, and its block map
    /// (space reserved for it past the records, so storing an entry never
    /// faults on a full disk). The caller has cut the file to `length`.
    static func openForAppending(id: UInt32, path: String, fd: Int32, header: SegmentHeader, length: Int, capacity: Int) throws(KVFileError) -> Segment {
        let mapOffset = Int(header.mapOffset)
        let mapEnd = BlockMap.regionEnd(mapOffset: mapOffset)
        if mapOffset > 0 { try Syscalls.reserve(fd, from: mapOffset, to: mapEnd, path: path) }
        let segment = try Segment(id: id, path: path, fd: fd, header: header, length: length,
                                  mapCapacity: mapOffset > 0 ? mapEnd : capacity, writable: true)
        segment.allocated = length
        return segment
    }

    /// Creates an empty segment file with its header, durably, mapped for writing.
    static func createSegment(id: UInt32, baseSeq: UInt64, directory: String, capacity: Int, durable: Bool = true) throws(KVFileError) -> Segment {
        try IndexFormat.checkSegmentID(id, store: directory)
        let path = StoreFiles(directory).segment(id)
        let fd = try Syscalls.open(path, O_RDWR | O_CREAT | O_EXCL)
        do throws(KVFileError) {
            let header = activeHeader(id: id, baseSeq: baseSeq, capacity: capacity)
            try withBytes(header.encoded()) { (bytes) throws(KVFileError) in try Syscalls.pwriteAll(fd, bytes, at: 0, path: path) }
            if durable {
                try Syscalls.fdatasync(fd, path: path)
                try Syscalls.syncDirectory(directory)
            }
            let segment = try openForAppending(id: id, path: path, fd: fd, header: header,
                                               length: RecordFormat.segmentHeaderSize, capacity: capacity)
            segment.storeMapEntry(block: 0, start: RecordFormat.segmentHeaderSize)
            return segment
        } catch {
            Syscalls.close(fd)
            try? Syscalls.unlink(path)
            throw error
        }
    }
}
