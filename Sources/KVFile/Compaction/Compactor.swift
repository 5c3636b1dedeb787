#if canImport(Glibc)
@preconcurrency import Glibc
#endif
import Synchronization

// Online compaction (see man/kvfile.5, "Compaction"). Readers and writers
// keep going throughout: the copy reads immutable sealed segments and checks
// liveness under short read locks; the switch to the new segments happens
// under short write locks, a few thousand keys at a time, and is safe at any
// point because old and new copies of a record are the same record.

/// A record compaction copied: where it was and where it is now.
private struct Move {
    var oldSegment: UInt32
    var oldOffset: UInt32
    var newSegment: UInt32
    var newOffset: UInt32
    var keyOffset: UInt16
    var keyLength: UInt16
    var size: UInt32
}

private struct CompactionPlan {
    var inputs: [Segment]
    /// The smallest sequence number in any segment compaction leaves alone.
    var nonInputMinSeq: UInt64
    var baseSeq: UInt64
}

/// What a compaction needs from the store it compacts, besides the state it
/// shares: whether it is open, and sealing what the writer rolled away from.
protocol CompactionHost: AnyObject, Sendable {
    /// Throws when the store was closed.
    func checkOpen() throws(KVFileError)
    /// Seals every segment rolled away (outside the write lock).
    func finishSeals() throws(KVFileError)
    /// Makes every write so far durable.
    func sync() throws(KVFileError)
}

/// Compacts a writer's sealed segments, one compaction at a time. Its
/// dependencies are explicit: the store's lock, state, writer and failure
/// record, and the host's two calls above.
final class Compactor: @unchecked Sendable {
    private let directory: String
    private let segmentSize: Int
    /// When to compact by itself (nil: only on demand).
    private let policy: CompactionPolicy?
    private let lock: ReadWriteLock
    private let state: StoreState
    private let writer: SegmentWriter
    private let failure: WriterFailure
    /// Where automatic compactions run; the store stops and waits for them when it closes.
    private let background: BackgroundThreads
    private unowned let host: CompactionHost
    /// One compaction at a time.
    private let mutex = PlainMutex()
    /// What the last compaction did (guarded by `lock`).
    private(set) var lastResult: CompactionResult?
    #if DEBUG
    /// Tests set this to simulate a crash at a compaction step (return true to crash there).
    nonisolated(unsafe) var failpointHook: ((CompactionStep) -> Bool)?
    #endif

    /// The active segment when automatic compaction last looked.
    private let lastActiveSeen = Atomic<UInt32>(0)
    private let autoCompactionRunning = Atomic<Bool>(false)

    init(directory: String, segmentSize: Int, policy: CompactionPolicy?, lock: ReadWriteLock, state: StoreState,
         writer: SegmentWriter, failure: WriterFailure, background: BackgroundThreads, host: CompactionHost) {
        self.directory = directory
        self.segmentSize = segmentSize
        self.policy = policy
        self.lock = lock
        self.background = background
        self.state = state
        self.writer = writer
        self.failure = failure
        self.host = host
    }

    /// Waits for a compaction under way (another thread's) to end.
    func waitUntilIdle() { mutex.withLock {} }

    /// After a write, outside the lock: once the writer rolled to a new
    /// segment, considers compacting by itself.
    @inline(__always)
    func afterWrite(activeID: UInt32) {
        if policy != nil && activeID != lastActiveSeen.load(ordering: .relaxed) { consider(activeID: activeID) }
    }

    /// Starts a compaction on a background thread when the policy says the sealed segments are dead enough.
    private func consider(activeID: UInt32) {
        lastActiveSeen.store(activeID, ordering: .relaxed)
        guard let policy, !background.isStopping else { return }
        // The same choice compaction makes, so a round started here has work and the loop below ends.
        let worthIt = lock.withReadLock { !policy.inputs(from: state.segments.filter { $0.id != activeID }).isEmpty }
        guard worthIt, autoCompactionRunning.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else { return }
        // The host (the store) is held while the round runs, as a caller of compact() is.
        let started = background.start { [self, host = self.host] in
            // Segments sealed while a round ran started no compaction of their
            // own (this one was running), so look again until nothing is left.
            var rounds = 0
            var succeeded = true
            while rounds < 16 && !background.isStopping {
                guard let result = try? compact(sealActive: false, policy: policy) else { succeeded = false; break }
                if result.inputSegments == 0 { break }
                rounds += 1
            }
            autoCompactionRunning.store(false, ordering: .releasing)
            // A roll between the last plan and the line above was missed too.
            if succeeded { consider(activeID: lock.withReadLock { writer.segment.id }) }
            withExtendedLifetime(host) {}
        }
        if !started { autoCompactionRunning.store(false, ordering: .releasing) }
    }

    /// Rewrites the sealed segments (those `policy` picks, or all) into fresh
    /// ones holding only live records and the tombstones still needed; with
    /// `sealActive` the active segment is sealed first so it is included.
    func compact(sealActive: Bool, policy: CompactionPolicy?) throws(KVFileError) -> CompactionResult {
        try mutex.withLock { () throws(KVFileError) -> CompactionResult in
            let started = Syscalls.monotonicNanoseconds()
            let plan = try lock.withWriteLock { () throws(KVFileError) -> CompactionPlan in
                try host.checkOpen()
                try failure.check()
                if sealActive {
                    try writer.sealIfNotEmpty(nextSeq: state.nextSeq)
                    state.noteRolled(to: writer.end)
                }
                return Compactor.plan(state: state, activeID: writer.segment.id, policy: policy)
            }
            // Inputs must be sealed (synced, with hint files) before they are replaced.
            try host.finishSeals()
            guard !plan.inputs.isEmpty else {
                return CompactionResult(inputSegments: 0, outputSegments: 0, bytesBefore: 0, bytesAfter: 0,
                                        recordsCopied: 0, recordsDropped: 0, seconds: 0)
            }
            let output = CompactionOutput(directory: directory, segmentSize: segmentSize, baseSeq: plan.baseSeq) { [self] in
                lock.withWriteLock { state.allocateSegmentID() }
            }
            var moves: [Move] = []
            var dropped = 0
            do throws(KVFileError) {
                try failpoint(.planned)
                let decidedBefore: UInt64
                (dropped, moves, decidedBefore) = try copyLiveRecords(plan, into: output)
                try failpoint(.copied)
                try output.finish(decidedBefore: decidedBefore)
                try failpoint(.outputsSynced)
            } catch {
                if !error.isInjectedCrash { output.abandon() }
                throw error
            }
            // The writes that replaced what the copy dropped reach the disk before the drop
            // commits: after a power loss a key must still have its old record or its new one.
            try host.sync()
            let marker = CompactionMarker(inputs: plan.inputs.map(\.id), outputs: output.finished.map(\.id))
            try marker.write(directory: directory)
            try failpoint(.markerWritten)
            for out in output.finished {
                for name in [FileNames.hint(out.id), FileNames.segment(out.id)] {
                    try Syscalls.rename(StoreFiles.temporary(of: StoreFiles(directory).file(name)), StoreFiles(directory).file(name))
                }
            }
            try Syscalls.syncDirectory(directory)
            try failpoint(.outputsRenamed)
            let outputs = try openOutputs(output.finished)
            try switchOver(from: plan.inputs, to: outputs, moves: moves)
            try failpoint(.indexSwitched)
            for input in plan.inputs {
                try Syscalls.unlink(StoreFiles(directory).hint(input.id))
                try Syscalls.unlink(StoreFiles(directory).segment(input.id))
            }
            try Syscalls.syncDirectory(directory)
            try failpoint(.inputsRemoved)
            try Syscalls.unlink(StoreFiles(directory).marker)
            try Syscalls.syncDirectory(directory)

            let result = CompactionResult(
                inputSegments: plan.inputs.count, outputSegments: outputs.count,
                bytesBefore: plan.inputs.reduce(0) { $0 + $1.length + $1.hintBytes },
                bytesAfter: outputs.reduce(0) { $0 + $1.length + $1.hintBytes },
                recordsCopied: output.recordsCopied, recordsDropped: dropped,
                seconds: Double(Syscalls.monotonicNanoseconds() - started) / 1e9)
            lock.withWriteLock { lastResult = result }
            return result
        }
    }

    /// Chooses the sealed segments to compact: all of them on demand, or by policy.
    private static func plan(state: StoreState, activeID: UInt32, policy: CompactionPolicy?) -> CompactionPlan {
        let sealed = state.segments.filter { $0.id != activeID }
        let inputs = policy?.inputs(from: sealed) ?? sealed
        let inputIDs = Set(inputs.map(\.id))
        let nonInputMinSeq = state.segments.filter { !inputIDs.contains($0.id) }.map(\.minSeq).min() ?? UInt64.max
        return CompactionPlan(inputs: inputs, nonInputMinSeq: nonInputMinSeq, baseSeq: state.nextSeq)
    }

    /// Copies every live record of the inputs, then the tombstones still
    /// needed; returns how many records were dropped, and the writer's next
    /// sequence number once every record was judged: whatever was dropped had
    /// been superseded by a record below it, so resuming the change feed at or
    /// after it finds every old value in the log.
    private func copyLiveRecords(_ plan: CompactionPlan, into output: CompactionOutput) throws(KVFileError)
        -> (dropped: Int, moves: [Move], decidedBefore: UInt64) {
        var dropped = 0
        var moves: [Move] = []
        // Newest tombstone per key among the inputs.
        var tombstones: [[UInt8]: (seq: UInt64, segment: Segment, offset: Int, header: RecordHeader)] = [:]
        var pending: [(offset: Int, header: RecordHeader)] = []
        pending.reserveCapacity(4096)
        for segment in plan.inputs {
            let copyPending = { [self] () throws(KVFileError) in
                lock.yieldToWaitingWriters()
                func key(_ index: Int) -> UnsafeRawBufferPointer {
                    let record = pending[index]
                    return UnsafeRawBufferPointer(start: segment.base + record.offset + record.header.keyOffset, count: record.header.keyLength)
                }
                let live: [Bool] = try lock.withReadLock { () throws(KVFileError) -> [Bool] in
                    try host.checkOpen()
                    var live = [Bool](repeating: false, count: pending.count)
                    for index in pending.indices {
                        // Lookups are cache misses: start the slot of the one eight ahead
                        // now, and the entries of the one four ahead (its slot is in by then).
                        if index + 8 < pending.count { state.index.prefetch(key(index + 8)) }
                        if index + 4 < pending.count { state.index.prefetchEntries(key(index + 4)) }
                        let record = pending[index]
                        guard record.header.operation != .deleted, let location = state.index.lookup(key(index)) else { continue }
                        live[index] = location.segment == segment.id && Int(location.offset) == record.offset
                    }
                    return live
                }
                for (index, record) in pending.enumerated() {
                    let start = segment.base + record.offset
                    if record.header.operation == .deleted {
                        let key = Array(UnsafeRawBufferPointer(start: start + record.header.keyOffset, count: record.header.keyLength))
                        if let known = tombstones[key] {
                            dropped += 1
                            if known.seq > record.header.seq { continue }
                        }
                        tombstones[key] = (record.header.seq, segment, record.offset, record.header)
                    } else if live[index] {
                        let (newSegment, newOffset) = try output.append(start, header: record.header)
                        moves.append(Move(
                            oldSegment: segment.id, oldOffset: UInt32(record.offset),
                            newSegment: newSegment, newOffset: UInt32(newOffset),
                            keyOffset: UInt16(record.header.keyOffset), keyLength: UInt16(record.header.keyLength),
                            size: UInt32(record.header.totalLength)))
                    } else {
                        dropped += 1
                    }
                }
                pending.removeAll(keepingCapacity: true)
            }
            let end = try SegmentScanner.scan(segment.bytes(from: RecordFormat.segmentHeaderSize), baseOffset: RecordFormat.segmentHeaderSize,
                                              rule: segment.damageRule(fileSize: segment.length).0) {
                (offset, header, _) throws(KVFileError) in
                pending.append((offset, header))
                if pending.count == 4096 { try copyPending() }
            }
            try copyPending()
            switch end {
            case .clean: break
            case .tornTail(let at, let reason), .corrupt(let at, let reason):
                throw KVFileError.corrupt(segment.path, offset: at, "\(reason) (in a sealed segment; compaction stopped)")
            }
        }
        // A tombstone is needed while its key has no newer value and some
        // segment compaction leaves alone may hold an older one (Bitcask's rule).
        let (needed, decidedBefore) = lock.withReadLock {
            (tombstones.filter { key, tombstone in
                plan.nonInputMinSeq < tombstone.seq && key.withUnsafeBytes { state.index.lookup($0) == nil }
            }, state.nextSeq)
        }
        dropped += tombstones.count - needed.count
        for (_, tombstone) in needed.sorted(by: { $0.value.seq < $1.value.seq }) {
            _ = try output.append(tombstone.segment.base + tombstone.offset, header: tombstone.header)
        }
        return (dropped, moves, decidedBefore)
    }

    private func openOutputs(_ finished: [CompactionOutput.Finished]) throws(KVFileError) -> [Segment] {
        var segments: [Segment] = []
        for out in finished {
            let segmentPath = StoreFiles(directory).segment(out.id)
            let segment = try Segment(id: out.id, path: segmentPath, file: OwnedFile(opening: segmentPath, O_RDONLY),
                                      header: out.header, length: out.length, mapCapacity: out.length)
            segment.minSeq = out.minSeq
            segment.hintBytes = out.hintBytes
            segments.append(segment)
        }
        return segments
    }

    /// Points the index at the copies, a slice at a time so no writer waits
    /// long, then forgets the inputs. Keys written meanwhile keep their newer location.
    private func switchOver(from inputs: [Segment], to outputs: [Segment], moves: [Move]) throws(KVFileError) {
        try lock.withWriteLock { () throws(KVFileError) in
            try host.checkOpen()
            for segment in outputs { state.add(segment) }
        }
        var index = 0
        while index < moves.count {
            lock.yieldToWaitingWriters()
            let end = min(index + 1024, moves.count)
            lock.withWriteLock {
                func key(_ move: Move, in old: Segment) -> UnsafeRawBufferPointer {
                    UnsafeRawBufferPointer(start: old.base + Int(move.oldOffset) + Int(move.keyOffset), count: Int(move.keyLength))
                }
                // Moves run input by input and output by output: look each segment up once per run.
                var oldSegment: Segment?
                var newSegment: Segment?
                func segment(_ id: UInt32, cached: inout Segment?) -> Segment? {
                    if let segment = cached, segment.id == id { return segment }
                    cached = state.segment(id)
                    return cached
                }
                var aheadSegment: Segment?
                for position in index..<end {
                    if position + 8 < end, let ahead = segment(moves[position + 8].oldSegment, cached: &aheadSegment) {
                        state.index.prefetch(key(moves[position + 8], in: ahead))
                    }
                    if position + 4 < end, let ahead = segment(moves[position + 4].oldSegment, cached: &aheadSegment) {
                        state.index.prefetchEntries(key(moves[position + 4], in: ahead))
                    }
                    let move = moves[position]
                    guard let old = segment(move.oldSegment, cached: &oldSegment),
                          state.index.relocate(key(move, in: old), from: move.oldSegment, offset: move.oldOffset,
                                                to: move.newSegment, newOffset: move.newOffset) != nil
                    else { continue }
                    old.liveBytes -= Int(move.size)
                    segment(move.newSegment, cached: &newSegment)?.liveBytes += Int(move.size)
                }
            }
            index = end
        }
        lock.withWriteLock {
            for input in inputs { state.remove(input.id) }
            state.recomputeOldestSeq()
        }
    }

    /// Where tests crash a compaction (debug builds only).
    @inline(__always)
    private func failpoint(_ step: CompactionStep) throws(KVFileError) {
        #if DEBUG
        if let hook = failpointHook, hook(step) {
            throw KVFileError(.io, "injected crash at compaction step \(step.rawValue)", errno: KVFileError.injectedCrashErrno)
        }
        #endif
    }
}

extension KVFileError {
    #if DEBUG
    /// Marks errors the tests' failpoints raise, which must leave files as a crash would.
    static let injectedCrashErrno: Int32 = -9999
    var isInjectedCrash: Bool { errno == KVFileError.injectedCrashErrno }
    #else
    var isInjectedCrash: Bool { false }
    #endif
}
