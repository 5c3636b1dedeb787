/// A writer's puts, deletes and batches, under the store's write lock: the
/// version checks, the expiry a write meets, one ``SegmentWriter/append(count:timestamp:state:record:apply:)``
/// whose records the index takes as one change, then (outside the lock) the
/// sync durability asks for, the tailers' wake-up and the compaction trigger.
final class WritePath: @unchecked Sendable {
    private let path: String
    private let durable: Bool
    private let lock: ReadWriteLock
    private let state: StoreState
    private let writer: SegmentWriter
    private let failure: WriterFailure
    private let sealer: SealScheduler
    private let compactor: Compactor
    private let expiry: ExpiryKeeper
    private let watchNotifier: WatchNotifier?
    private let openState: OpenState

    init(path: String, durability: Durability, lock: ReadWriteLock, state: StoreState, writer: SegmentWriter,
         failure: WriterFailure, sealer: SealScheduler, compactor: Compactor, expiry: ExpiryKeeper,
         watchNotifier: WatchNotifier?, openState: OpenState) {
        self.path = path
        durable = durability == .always
        self.lock = lock
        self.state = state
        self.writer = writer
        self.failure = failure
        self.sealer = sealer
        self.compactor = compactor
        self.expiry = expiry
        self.watchNotifier = watchNotifier
        self.openState = openState
    }

    /// Writes one record under the write lock. `decide` sees the key's current
    /// location (nil when it has no value, or its value expired) and returns
    /// the operation to record, or nil to write nothing. A value whose
    /// deadline passed is first recorded as expired (a tombstone in the same
    /// batch), so the change feed reports the expiry before the write.
    /// Returns what was written, or nil when `decide` wrote nothing.
    @inline(__always)
    func writeOne(
        key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer?, deadline: UInt64 = 0,
        decide: (KeyLocation?) throws(KVFileError) -> ChangeKind?
    ) throws(KVFileError) -> WriteReceipt? {
        if durable { sealer.groupCommit.writerStarted() }
        defer { if durable { sealer.groupCommit.writerFinished() } }
        var timestamp: UInt64 = 0
        var receipt: WriteReceipt?
        let position = try lock.withWriteLock { () throws(KVFileError) -> LogPosition? in
            timestamp = Syscalls.wallClockMilliseconds()
            try checkWritable(now: timestamp)
            let found = try currentLocation(key)
            var existing = found
            try checkIndexPages()
            let expiring = existing.map { $0.isExpired(at: timestamp) } ?? false
            if expiring { existing = nil }
            let operation = try decide(existing)
            guard operation != nil || expiring else { return nil }
            if deadline != 0 && operation != nil { expiry.noteDeadlineWrite(deadline) }
            let seq = state.nextSeq
            let count = (expiring ? 1 : 0) + (operation == nil ? 0 : 1)
            try Limits.checkSequence(seq, count: count, store: path)
            // The expiry's tombstone first, in the same batch, so the change feed reports it before the write.
            let end = try append(count: count, firstSeq: seq, timestamp: timestamp) { index, use in
                if expiring && index == 0 {
                    use(.init(operation: .deleted, seq: seq, expired: true, prior: .at(found!), key: key, value: nil))
                } else {
                    let prior: SegmentWriter.Prior = operation == .created ? .none : existing.map { .at($0) } ?? .none
                    use(.init(operation: operation!, seq: seq + UInt64(index), deadline: deadline, prior: prior, key: key, value: value))
                }
            }
            if let operation { receipt = WriteReceipt(seq: seq + UInt64(count - 1), operation: operation) }
            return end
        }
        guard let position else { return nil }
        try afterWrite(position, now: timestamp)
        if deadline != 0 && receipt != nil { expiry.sweepLater(Array(key), deadline: deadline) }
        return receipt
    }

    /// Writes a batch whole, after its version checks (limits checked by the caller).
    func write(_ batch: WriteBatch) throws(KVFileError) -> BatchResult {
        if durable { sealer.groupCommit.writerStarted() }
        defer { if durable { sealer.groupCommit.writerFinished() } }
        var timestamp: UInt64 = 0
        var result = BatchResult.written
        let position = try lock.withWriteLock { () throws(KVFileError) -> LogPosition? in
            timestamp = Syscalls.wallClockMilliseconds()
            try checkWritable(now: timestamp)
            for check in batch.checks {
                // An expired value counts as none.
                let current = try withBytes(check.key) { (raw) throws(KVFileError) in
                    try currentLocation(raw).map { $0.isExpired(at: timestamp) ? 0 : $0.seq } ?? 0
                }
                if !check.condition.holds(for: current) {
                    try checkIndexPages()
                    result = .checkFailed(key: check.key, currentVersion: current)
                    return nil
                }
            }
            let records = try BatchPlanner.plan(batch, now: timestamp) { (raw) throws(KVFileError) in try currentLocation(raw) }
            try checkIndexPages()
            if records.isEmpty { return nil }
            if let earliest = records.lazy.map(\.deadline).filter({ $0 != 0 }).min() { expiry.noteDeadlineWrite(earliest) }
            try Limits.checkIndexRoom(state.index, newKeys: records.lazy.filter { $0.operation == .created }.count)
            let firstSeq = state.nextSeq
            try Limits.checkSequence(firstSeq, count: records.count, store: path)
            return try append(count: records.count, firstSeq: firstSeq, timestamp: timestamp) { index, use in
                let record = records[index]
                record.key.withUnsafeBytes { key in
                    Limits.withOptionalBytes(record.value) { value in
                        use(.init(operation: record.operation, seq: firstSeq + UInt64(index), deadline: record.deadline,
                                  expired: record.expired, prior: record.prior, key: key, value: value))
                    }
                }
            }
        }
        guard let position else { return result }
        try afterWrite(position, now: timestamp)
        for case .put(let key, _, let deadline) in batch.changes where deadline != 0 { expiry.sweepLater(key, deadline: deadline) }
        return result
    }

    /// Where `key`'s latest record is (nil: it has none). Throws when its probe
    /// meets a damaged record, which may be this key's: a write would not know
    /// the key's value (a conditional one could wrongly hold), and readers would
    /// meet the damage before the new record.
    @inline(__always)
    private func currentLocation(_ key: UnsafeRawBufferPointer) throws(KVFileError) -> KeyLocation? {
        switch state.index.probe(key, reportingDamage: true) {
        case .found(let location): return location
        case .damaged(let segment, let offset):
            throw KVFileError.corrupt(StoreFiles(path).segment(segment), offset: Int(offset),
                                      "a record where this key's value may be cannot be read, so the write is refused")
        default: return nil
        }
    }

    /// Under the write lock, after the lookups of a write: a page of the index
    /// that failed its checksum stops the writer before it writes anything.
    @inline(__always)
    private func checkIndexPages() throws(KVFileError) {
        guard let at = state.index.damagedPage else { return }
        throw failure.record(KVFileError.corrupt(StoreFiles(path).index, offset: at,
            "a page of the index file fails its checksum; the store must be opened again, which builds the index anew"))
    }

    /// Under the write lock, first: throws when the store is closed, a sync
    /// failed, or (writers that do not sync each put; durable ones look after
    /// each sync) its files were removed. `now`: the write's wall-clock time.
    @inline(__always)
    private func checkWritable(now: UInt64) throws(KVFileError) {
        try openState.check()
        try failure.check()
        if !durable { try failure.checkLinkedNow(writer.segment, store: path, now: now) }
    }

    /// Under the write lock: appends `count` records with sequence numbers
    /// from `firstSeq` and applies them to the index as one change, which
    /// readers in other processes see whole. Returns where the log ends.
    @inline(__always)
    private func append(
        count: Int, firstSeq: UInt64, timestamp: UInt64, record: (_ index: Int, _ use: (SegmentWriter.LogRecord) -> Void) -> Void
    ) throws(KVFileError) -> LogPosition {
        let appended = try writer.append(count: count, timestamp: timestamp, record: record) { records in
            state.nextSeq = firstSeq + UInt64(count)
            state.index.beginChange()
            for record in records { state.applyNewest(key: record.key, operation: record.operation, location: record.location) }
        }
        state.noteCommitted(logEnd: appended.end)
        state.index.endChange()
        return appended.end
    }

    /// After a write, outside the lock: sync when durability asks for it, wake
    /// tailers, and after a segment was sealed consider compacting.
    @inline(__always)
    private func afterWrite(_ position: LogPosition, now milliseconds: UInt64) throws(KVFileError) {
        if durable {
            try sealer.syncUpTo(position)  // also seals: cheap here, every record in the old segment was synced already
        } else if sealer.hasPendingSeals {
            sealer.sealInBackground()
        }
        watchNotifier?.notify(now: milliseconds)
        compactor.afterWrite(activeID: position.segment)
    }
}
