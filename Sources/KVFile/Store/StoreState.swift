/// Everything an open store knows in memory. Guarded by the store's lock.
final class StoreState {
    let directory: String
    let index: SharedIndex
    /// Open segments by id; nil where a number is unused.
    /// Ids of open segments, ascending.
    private(set) var segmentIDs: [UInt32] = []
    /// The segment writers append to (the highest-numbered one not written by compaction).
    var activeID: UInt32?
    /// The next sequence number a writer gives out.
    var nextSeq: UInt64 = 1
    /// The smallest and largest sequence numbers in the log (0 when empty).
    var oldestSeq: UInt64 = 0
    var newestSeq: UInt64 = 0
    /// Keys that loading marked deleted; `finishLoading` removes the marks.
    private var deletionMarks: [[UInt8]] = []
    /// For a tailer: records above this sequence number are not applied while
    /// loading but kept in `deferred`, to be delivered as events in order.
    var deferAbove: UInt64?
    var deferred: [DeferredRecord] = []
    /// For a tailer that learns old values from records' priors: records not
    /// deferred are only noticed (their sequence numbers), never indexed.
    var feedOnly = false

    /// The last sequence number that compaction may have dropped history up to
    /// (0 when no compaction ever ran): resuming a change feed needs a point at or after it.
    var compactionFloor: UInt64 {
        segments.filter(\.isCompactionOutput).map { $0.header.baseSeq &- 1 }.max() ?? 0
    }

    init(directory: String, index: SharedIndex) {
        self.directory = directory
        self.index = index
    }

    var activeSegment: Segment? { activeID.flatMap { segment($0) } }

    /// The highest segment number in use or handed out.
    private var lastAllocatedID: UInt32 = 0
    var highestSegmentID: UInt32 { max(segmentIDs.last ?? 0, lastAllocatedID) }

    /// A segment number no other file has or will get (writer rolls and compaction share it),
    /// above every number the index knows was handed out (a removed file's number is not used again).
    func allocateSegmentID() -> UInt32 {
        lastAllocatedID = max(highestSegmentID, index.highestSegmentID) + 1
        index.highestSegmentID = lastAllocatedID
        return lastAllocatedID
    }

    /// Open segments by id: the index's registry (it reads keys from them).
    @inline(__always)
    func segment(_ id: UInt32) -> Segment? { index.segment(id) }

    func add(_ segment: Segment) {
        // Replacing the one with its number (opened first without reading it): see `IndexedOpen`.
        if index.segment(segment.id) == nil {
            segmentIDs.append(segment.id)
            segmentIDs.sort()
        }
        attach(segment)
        if !segment.isCompactionOutput && segment.id > (activeID ?? 0) { activeID = segment.id }
        nextSeq = max(nextSeq, segment.header.baseSeq)
    }

    /// Lets the index read keys from `segment` and keep its counts in the
    /// index's segment table (a new entry starts from the segment's own counts).
    private func attach(_ segment: Segment) {
        index.addSegment(segment)
        guard segment.indexEntry == nil else { return }
        if let entry = index.segmentEntry(segment.id, create: false) {
            segment.indexEntry = entry
        } else if index.writable, let entry = index.segmentEntry(segment.id, create: true) {
            let counts = (segment.liveBytes, segment.minSeq, segment.hintBytes)
            segment.indexEntry = entry
            (segment.liveBytes, segment.minSeq, segment.hintBytes) = counts
            index.publishSegmentEntry(entry, id: segment.id, headerChecksum: segment.header.checksum)
        }
    }

    /// Forgets a segment (compaction replaced it). Its mapping lives on while something references it.
    func remove(_ id: UInt32) {
        guard let segment = segment(id) else { return }
        segmentIDs.removeAll { $0 == id }
        index.removeSegment(id)
        if index.writable { index.dropSegmentEntry(id) }
        // Its counts stay readable (a compaction's result reports them).
        let counts = (segment.liveBytes, segment.minSeq, segment.hintBytes)
        segment.indexEntry = nil
        (segment.liveBytes, segment.minSeq, segment.hintBytes) = counts
    }

    var segments: [Segment] { segmentIDs.compactMap { index.segment($0) } }

    /// Recomputes the oldest sequence number after segments were removed.
    func recomputeOldestSeq() {
        let smallest = segments.map(\.minSeq).min() ?? UInt64.max
        oldestSeq = smallest == UInt64.max ? 0 : smallest
    }

    @inline(__always)
    func notice(seq: UInt64, in segment: Segment?) {
        if oldestSeq == 0 || seq < oldestSeq { oldestSeq = seq }
        if seq > newestSeq { newestSeq = seq }
        if seq >= nextSeq { nextSeq = seq + 1 }
        if let segment, seq < segment.minSeq { segment.minSeq = seq }
    }

    /// Applies a record met while loading or catching up, in any file order:
    /// a record never overrides a newer one for its key, and deletions leave
    /// a mark until `finishLoading` so an older value met later cannot return.
    /// True while a writer reads what its index lacks: records then come in
    /// log order, each newer than what the index holds (see ``applyInLogOrder``).
    var appliesInLogOrder = false

    /// A record met while catching an index up in log order: it replaces an
    /// older record of its key (a delete removes the key); a key the index has
    /// a newer record of is left alone. No deletion marks: nothing older comes later.
    private func applyInLogOrder(key: UnsafeRawBufferPointer, operation: ChangeKind, location: KeyLocation) {
        if let existing = index.lookup(key), existing.seq >= location.seq {
            notice(seq: location.seq, in: segment(location.segment))
            return
        }
        applyNewest(key: key, operation: operation, location: location)
    }

    @inline(__always)
    func applyLoaded(key: UnsafeRawBufferPointer, operation: ChangeKind, location: KeyLocation) {
        if appliesInLogOrder { return applyInLogOrder(key: key, operation: operation, location: location) }
        if let deferAbove, location.seq > deferAbove {
            // Copies made by compaction repeat a sequence number; the tailer skips repeats.
            deferred.append(DeferredRecord(seq: location.seq, operation: operation, location: location, key: Array(key)))
            return
        }
        let holder = segment(location.segment)
        notice(seq: location.seq, in: holder)
        if feedOnly { return }
        var location = location
        if operation == .deleted { location.size = 0 }
        let (applied, replaced) = index.applyLoaded(key, location)
        guard applied else { return }
        if let replaced, !replaced.isDeletionMark { segment(replaced.segment)?.liveBytes -= Int(replaced.size) }
        if operation == .deleted {
            if replaced == nil || !replaced!.isDeletionMark { deletionMarks.append(Array(key)) }
        } else {
            holder?.liveBytes += Int(location.size)
        }
    }

    /// After a write: the index covers the log up to `logEnd` (what a writer
    /// reopening after a crash catches up from).
    @inline(__always)
    func noteCommitted(logEnd: LogPosition) {
        index.logEnd = logEnd.packed
        index.nextSeq = nextSeq
    }

    /// After a roll that no write made (compaction sealing the active segment, an
    /// upgrade): the index's log end moves to the new segment's start, or a reader
    /// could not find the end it records (a sealed file is cut) and would build an
    /// index of its own at every open until the next write.
    func noteRolled(to end: LogPosition) {
        index.beginChange()
        noteCommitted(logEnd: end)
        index.endChange()
    }

    /// Applies a record the writer just wrote: newer than everything known.
    @inline(__always)
    func applyNewest(key: UnsafeRawBufferPointer, operation: ChangeKind, location: KeyLocation) {
        // Segments borrowed, not retained (see `SharedIndex.withSegment`): this runs for every write.
        if index.withSegment(location.segment, { notice(seq: location.seq, in: $0) }) == nil { notice(seq: location.seq, in: nil) }
        let old: KeyLocation?
        if operation == .deleted {
            old = index.remove(key)
        } else {
            old = index.set(key, location)
            index.withSegment(location.segment) { $0.liveBytes += Int(location.size) }
        }
        if let old { index.withSegment(old.segment) { $0.liveBytes -= Int(old.size) } }
    }

    /// Ends a load or catch-up: removes the deletion marks it left.
    /// Throws ``KVFileError/Code/capacityExhausted`` when the index could not hold every key.
    func finishLoading() throws(KVFileError) {
        if index.isFull {
            throw KVFileError(.capacityExhausted,
                "store \(directory) has more keys than the index holds (\(IndexFormat.maxCapacity * 7 / 10) keys); it cannot be opened whole",
                path: directory)
        }
        for key in deletionMarks {
            key.withUnsafeBytes { raw in
                if let location = index.lookup(raw), location.isDeletionMark { index.remove(raw) }
            }
        }
        deletionMarks.removeAll()
    }

    func stats() -> StoreStats {
        let all = segments
        let segmentBytes = all.reduce(0) { $0 + $1.length }
        let hintBytes = all.reduce(0) { $0 + $1.hintBytes }
        let recordBytes = all.reduce(0) { $0 + max(0, $1.length - RecordFormat.segmentHeaderSize) }
        return StoreStats(
            keys: index.count, segments: all.count, segmentBytes: segmentBytes, hintBytes: hintBytes,
            liveBytes: index.liveBytes, deadBytes: recordBytes - index.liveBytes,
            oldestSeq: oldestSeq, newestSeq: newestSeq, formatVersion: Int(RecordFormat.version),
            keydirBytes: index.memoryBytes, indexIsShared: index.path != nil, indexBytes: index.diskBytes, indexSlots: index.capacity,
            segmentDetails: all.map { segment in
                let records = max(0, segment.length - RecordFormat.segmentHeaderSize)
                return SegmentStats(
                    id: segment.id, bytes: segment.length, liveBytes: segment.liveBytes,
                    deadRatio: records == 0 ? 0 : Double(records - segment.liveBytes) / Double(records),
                    isActive: segment.id == activeID, isCompactionOutput: segment.isCompactionOutput)
            },
            resumeFloor: compactionFloor)
    }
}

/// A record a tailer has read but not yet delivered.
struct DeferredRecord {
    var seq: UInt64
    var operation: ChangeKind
    var location: KeyLocation
    var key: [UInt8]
}
