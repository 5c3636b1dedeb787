import Synchronization

/// When a writer's data reaches the disk: seals the segments rolls left in
/// the seal queue (cut, sync, hint file) outside the write lock, in the
/// background or before a sync that needs them, and runs group commit
/// (``GroupCommit``: one sync covers every writer waiting).
final class SealScheduler: @unchecked Sendable {
    /// The segments waiting for their seal; the writer adds to it when it rolls.
    let queue: SealQueue
    let groupCommit: GroupCommit
    private let directory: String
    private let lock: ReadWriteLock
    private let failure: WriterFailure
    private let background: BackgroundThreads
    private unowned let writer: SegmentWriter
    private let openState: OpenState
    /// Held while sealing or syncing, so no seal or close cuts a segment under a sync.
    private let syncMutex = PlainMutex()
    private let backgroundSealRunning = Atomic<Bool>(false)

    init(queue: SealQueue, writer: SegmentWriter, directory: String, lock: ReadWriteLock, failure: WriterFailure,
         background: BackgroundThreads, openState: OpenState) {
        self.queue = queue
        self.writer = writer
        self.directory = directory
        self.lock = lock
        self.failure = failure
        self.background = background
        self.openState = openState
        groupCommit = GroupCommit(durable: writer.end.packed)
    }

    /// True when a roll left a segment to seal (asked without the lock).
    var hasPendingSeals: Bool { !queue.isEmpty }

    /// Seals the waiting segments. Also waits for a seal another thread has under way.
    func finishSeals() throws(KVFileError) {
        try syncMutex.withLock { () throws(KVFileError) in try sealWaiting() }
    }

    /// Seals on a background thread, so that the write that rolled does not
    /// wait for the sync of a whole segment. Errors surface at the next
    /// `sync()`, `close()` or compaction, which seal again.
    func sealInBackground() {
        guard backgroundSealRunning.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else { return }
        let started = background.start { [self] in
            try? finishSeals()
            backgroundSealRunning.store(false, ordering: .releasing)
        }
        if !started {
            backgroundSealRunning.store(false, ordering: .releasing)
            try? finishSeals()
        }
    }

    /// Returns once every record before `position` is on stable storage:
    /// group commit, with the segments rolled away sealed first (their data comes earlier).
    func syncUpTo(_ position: LogPosition) throws(KVFileError) {
        try groupCommit.waitDurable(position.packed) { () throws(KVFileError) -> UInt64 in
            try syncMutex.withLock { () throws(KVFileError) -> UInt64 in
                while true {
                    try sealWaiting()
                    // The position covered must lie in the segment synced, with every segment before it sealed:
                    // a roll between the seal and this read leaves a segment to seal first.
                    let (segment, end, rolled) = try lock.withReadLock { () throws(KVFileError) in
                        try openState.check()
                        return (writer.segment, writer.end, !queue.isEmpty)
                    }
                    if rolled { continue }
                    // What earlier syncs made durable in this segment, told on this one (kvfile(5), "Block map").
                    let durable = LogPosition(packed: groupCommit.durablePosition)
                    if durable.segment == segment.id { segment.storeWatermark(durable.offset) }
                    try failure.syncData(segment, store: directory)
                    return end.packed
                }
            }
        }
    }

    /// Runs `body` with no seal or sync under way (closing cuts the active segment).
    func withSyncsPaused<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
        try syncMutex.withLock(body)
    }

    /// Inside ``withSyncsPaused(_:)``: seals what waits.
    func sealWhilePaused() throws(KVFileError) { try sealWaiting() }

    /// With `syncMutex` held.
    private func sealWaiting() throws(KVFileError) {
        guard !queue.isEmpty else { return }
        let pending = lock.withWriteLock { queue.takeAll() }
        for (index, seal) in pending.enumerated() {
            do throws(KVFileError) {
                let hintBytes = try SegmentWriter.seal(seal, directory: directory, failure: failure)
                lock.withWriteLock { seal.segment.hintBytes = hintBytes }
            } catch {
                // Keep what is not sealed yet for the next attempt.
                lock.withWriteLock { queue.putBack(Array(pending[index...])) }
                throw error
            }
            groupCommit.advance(to: LogPosition(segment: seal.segment.id, offset: seal.segment.length).packed)
        }
    }
}
