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
    /// Where rolled segments wait for their seal.
    private let seals: SealQueue
    /// Numbers for new segments, and where they join the store.
    private let registry: SegmentRegistry
    /// Bytes of the batch being staged in the mapping, past `segment.length`.
    private var stagedBytes = 0
    /// Room for the records of an append, kept between appends (no allocation per append).
    private var appendedBuffer: [Appended] = []
    /// Compressed value of the record being encoded.
    private let compressed = GrowableBuffer(capacity: 1 << 12)
    private let compressor = LZ4Compressor()
    /// How far ahead of the records space is reserved.
    static let reserveStep = 4 << 20

    init(directory: String, segmentSize: Int, active: Segment, hints: HintBuilder, seals: SealQueue, registry: SegmentRegistry) {
        self.directory = directory
        self.segmentSize = segmentSize
        self.segment = active
        self.hints = hints
        self.seals = seals
        self.registry = registry
        // The block map of the records already there (it may have been cut off or lost).
        active.storeMapEntry(block: 0, start: RecordFormat.segmentHeaderSize)
        if !hints.sizesKnown {
            // Reopened through the index after a crash: the map of the records before is intact.
            let block = hints.coveredFrom / BlockMap.blockSize
            mappedBlock = active.mapEntryIsEmpty(block: block) ? block - 1 : block
        }
        hints.forEachFirstStartInBlocks { noteRecordStart($0) }
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

    /// Where the log ends.
    var end: LogPosition { LogPosition(segment: segment.id, offset: segment.length) }

    /// One record to append. Its key and value bytes need stay valid only
    /// while the writer looks at it (see ``append(count:timestamp:state:record:apply:)``).
    struct LogRecord {
        var operation: ChangeKind
        var seq: UInt64
        var deadline: UInt64 = 0
        /// A delete that records an expiry.
        var expired = false
        /// Where the key's record before this one is (updates and deletes).
        var prior: Prior = .none
        var key: UnsafeRawBufferPointer
        var value: UnsafeRawBufferPointer?
    }

    /// The record a new record follows for its key (the change feed's old value).
    enum Prior {
        case none
        /// A record already in the log.
        case at(KeyLocation)
        /// Record `index` of the same append (a key written twice in a batch).
        case inBatch(Int)

        /// What sizes the record before it is staged: exact, or the longest a prior in the batch can take.
        var sizing: PriorLocation? {
            switch self {
            case .none: nil
            case .at(let location): PriorLocation(location)
            case .inBatch: PriorLocation(segment: UInt32.max, offset: UInt32.max)
            }
        }

        /// Where it is, given the records of the append staged before the one it belongs to.
        func resolved(before: [Appended]) -> PriorLocation? {
            switch self {
            case .none: nil
            case .at(let location): PriorLocation(location)
            case .inBatch(let index): PriorLocation(before[index].location)
            }
        }
    }

    /// A record written into the mapping: what it did and where it is (its
    /// key bytes are those in the mapping).
    struct Appended {
        var operation: ChangeKind
        var key: UnsafeRawBufferPointer
        var location: KeyLocation
    }

    /// What an append did.
    struct AppendResult {
        /// Where the log ends after it (in a new segment when it rolled; the one before waits in the seal queue).
        var end: LogPosition
    }

    /// Appends `count` records as one batch, which a reader of the log sees
    /// whole or not at all (every record but the last is marked as
    /// continuing). Makes room first (rolling to a new segment when the
    /// active one is full; reserving disk space), encodes the records into
    /// the mapping, passes them to `apply` (where the caller updates its
    /// index), and only then makes them part of the log. `record(i, use)`
    /// hands record `i` to `use` while its bytes are valid; it may be called
    /// twice for a record (once to size it). Under the store's write lock.
    @inline(__always)
    func append(
        count: Int, timestamp: UInt64,
        record: (_ index: Int, _ use: (LogRecord) -> Void) -> Void,
        apply: (_ records: ArraySlice<Appended>) -> Void
    ) throws(KVFileError) -> AppendResult {
        precondition(count > 0 && stagedBytes == 0, "an append of no records, or inside another")
        var firstSeq: UInt64 = 0
        var bytes = 0
        var single: (size: Int, compressedLength: Int?)?
        if count == 1 {
            // One record: sized exactly (its value compressed once, here).
            record(0) { one in
                firstSeq = one.seq
                single = prepare(one, timestamp: timestamp)
            }
            bytes = single!.size
        } else {
            // A batch: sized by its values uncompressed (compression only shrinks what it is used on).
            for index in 0..<count {
                record(index) { one in
                    if index == 0 { firstSeq = one.seq }
                    bytes += RecordCodec.encodedLength(
                        seq: one.seq, timestamp: timestamp, deadline: one.deadline, prior: one.prior.sizing, keyLength: one.key.count,
                        storedLength: one.value?.count ?? 0, rawLength: one.value.map(\.count))
                }
            }
        }
        if bytes > RecordFormat.maxBatchBytes {
            throw KVFileError(.invalidArgument, "batch of \(count) records needs \(bytes) bytes; the limit is \(RecordFormat.maxBatchBytes) (1 GiB). Split it into smaller batches.")
        }
        try makeRoom(for: bytes, nextSeq: firstSeq)
        // A local array: no exclusivity check of a stored property per record.
        var appended: [Appended] = []
        swap(&appended, &appendedBuffer)
        defer { swap(&appended, &appendedBuffer) }
        appended.removeAll(keepingCapacity: true)
        for index in 0..<count {
            record(index) { one in
                let prepared = single ?? prepare(one, timestamp: timestamp)
                appended.append(stage(one, continues: index < count - 1, timestamp: timestamp, prepared: prepared, before: appended))
            }
        }
        apply(appended[...])
        segment.length += stagedBytes
        stagedBytes = 0
        return AppendResult(end: end)
    }

    /// Makes sure `bytes` more fit in the active segment, sealing it and
    /// starting the next when they do not (a segment always takes at least
    /// one batch), and reserves the disk space for them.
    private func makeRoom(for bytes: Int, nextSeq: UInt64) throws(KVFileError) {
        precondition(stagedBytes == 0, "makeRoom in the middle of a batch")
        let used = segment.length
        let hasRecords = used > RecordFormat.segmentHeaderSize
        if (hasRecords && used + bytes > segmentSize) || used + bytes > segment.recordCapacity {
            try roll(nextSeq: nextSeq, needing: bytes)
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
    private func prepare(_ record: LogRecord, timestamp: UInt64) -> (size: Int, compressedLength: Int?) {
        var compressedLength: Int?
        if let value = record.value, value.count >= RecordFormat.minCompressibleLength {
            compressed.count = 0
            let destination = compressed.reserve(LZ4Compressor.bound(value.count))
            compressedLength = compressor.compress(value, into: destination)
        }
        let storedLength = compressedLength ?? record.value?.count ?? 0
        let size = RecordCodec.encodedLength(
            seq: record.seq, timestamp: timestamp, deadline: record.deadline, prior: record.prior.sizing,
            keyLength: record.key.count, storedLength: storedLength,
            rawLength: compressedLength == nil ? nil : record.value!.count)
        return (size, compressedLength)
    }

    /// Encodes a prepared record into the mapping after those staged before
    /// it, notes its hint entry, returns where it is. Not part of the log until the append ends.
    /// `before` holds the records of the append staged before this one.
    @inline(__always)
    private func stage(_ record: LogRecord, continues: Bool, timestamp: UInt64, prepared: (size: Int, compressedLength: Int?),
                       before: [Appended]) -> Appended {
        let offset = segment.length + stagedBytes
        precondition(offset + prepared.size <= segment.allocated, "stage past the reserved space")
        let stored: UnsafeRawBufferPointer
        if let length = prepared.compressedLength {
            stored = UnsafeRawBufferPointer(start: compressed.base, count: length)
        } else {
            stored = record.value ?? UnsafeRawBufferPointer(start: nil, count: 0)
        }
        noteRecordStart(offset)
        let prior = record.prior.resolved(before: before)
        let written = RecordCodec.encode(
            to: segment.writableBase + offset, operation: record.operation, continues: continues, seq: record.seq, timestamp: timestamp,
            deadline: record.deadline, expired: record.expired, prior: prior, key: record.key, stored: stored,
            rawLength: prepared.compressedLength == nil ? nil : record.value!.count)
        stagedBytes += written
        let key = UnsafeRawBufferPointer(start: segment.base + offset + written - stored.count - record.key.count, count: record.key.count)
        hints.add(operation: record.operation, seq: record.seq, size: written, key: key)
        return Appended(operation: record.operation, key: key, location: KeyLocation(
            segment: segment.id, offset: UInt32(offset), size: UInt32(written), seq: record.seq))
    }

    /// Starts a segment of the current format when the active one is older
    /// (a version-1 segment has no block map): the old one is sealed as it is.
    func upgradeActive(nextSeq: UInt64) throws(KVFileError) {
        precondition(stagedBytes == 0, "upgrade in the middle of a batch")
        if segment.header.version < RecordFormat.version { try roll(nextSeq: nextSeq, needing: 0) }
    }

    /// Seals the active segment when it holds records, so compaction can take it.
    func sealIfNotEmpty(nextSeq: UInt64) throws(KVFileError) {
        precondition(stagedBytes == 0, "seal in the middle of a batch")
        if segment.length > RecordFormat.segmentHeaderSize { try roll(nextSeq: nextSeq, needing: 0) }
    }

    /// Starts the next segment; the old one goes to the seal queue. The new
    /// segment's header is not synced here: if it is lost in a crash, the
    /// segment counts as one whose creation was cut short (empty).
    private func roll(nextSeq: UInt64, needing bytes: Int) throws(KVFileError) {
        let next = try SegmentWriter.createSegment(
            id: registry.allocateSegmentID(), baseSeq: nextSeq, directory: directory,
            capacity: max(segmentSize, RecordFormat.segmentHeaderSize + bytes), durable: false)
        registry.add(next)
        seals.add(PendingSeal(segment: segment, hints: hints))
        segment = next
        hints = HintBuilder(keepsEntries: false)
        mappedBlock = 0
    }

    /// Finishes sealing: cut, sync, hint file (written only after the sync, so
    /// a sound hint file means a complete segment), directory sync. Returns the
    /// hint file's size, for the caller to record under the store's lock.
    static func seal(_ pending: PendingSeal, directory: String, failure: WriterFailure) throws(KVFileError) -> Int {
        pending.segment.dropWriteAccess()  // nothing writes to it any more
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
        hints = try hints.withAllSizes(scanning: segment)  // after a crash: read them
        // Room for the whole list at once: it can be a megabyte, and growing copies it again and again.
        let list = GrowableBuffer(capacity: BlockMap.listMarker.count + hints.sizesByteCount + BlockMap.trailerSize + 16)
        BlockMap.listMarker.withUnsafeBytes { list.append($0) }
        hints.appendSizes(to: list)
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
    static func openForAppending(id: UInt32, path: String, file: consuming OwnedFile, header: SegmentHeader, length: Int, capacity: Int) throws(KVFileError) -> Segment {
        let mapOffset = Int(header.mapOffset)
        let mapEnd = BlockMap.regionEnd(mapOffset: mapOffset)
        if mapOffset > 0 { try Syscalls.reserve(file.fd, from: mapOffset, to: mapEnd, path: path) }
        let segment = try Segment(id: id, path: path, file: file, header: header, length: length,
                                  mapCapacity: mapOffset > 0 ? mapEnd : capacity, writable: true)
        segment.allocated = length
        return segment
    }

    /// Creates an empty segment file with its header, durably, mapped for writing.
    static func createSegment(id: UInt32, baseSeq: UInt64, directory: String, capacity: Int, durable: Bool = true) throws(KVFileError) -> Segment {
        try IndexFormat.checkSegmentID(id, store: directory)
        let path = StoreFiles(directory).segment(id)
        let file = try OwnedFile(opening: path, O_RDWR | O_CREAT | O_EXCL)
        let fd = file.fd
        do throws(KVFileError) {
            let header = activeHeader(id: id, baseSeq: baseSeq, capacity: capacity)
            try withBytes(header.encoded()) { (bytes) throws(KVFileError) in try Syscalls.pwriteAll(fd, bytes, at: 0, path: path) }
            if durable {
                try Syscalls.fdatasync(fd, path: path)
                try Syscalls.syncDirectory(directory)
            }
            let segment = try openForAppending(id: id, path: path, file: file, header: header,
                                               length: RecordFormat.segmentHeaderSize, capacity: capacity)
            segment.storeMapEntry(block: 0, start: RecordFormat.segmentHeaderSize)
            return segment
        } catch {
            // Remove what was created (the file closes as this returns, or closed already).
            try? Syscalls.unlink(path)
            throw error
        }
    }
}

extension PriorLocation {
    /// Where the record at `location` is.
    init(_ location: KeyLocation) { self.init(segment: location.segment, offset: location.offset) }
}
