#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// Follows a store's log and turns its records into change events, from this
/// process or any other, while another process writes. It opens the store
/// read-only (no lock), wakes on inotify, follows segment rolls, skips the
/// copies compaction makes (they keep their sequence numbers), and keeps
/// reading old files that compaction unlinked until it has caught up past them.
///
/// Old values come from the record each update or delete names as its prior,
/// so starting from now or from a point in the log reads only the segments
/// after that point, not every key. Where a record names no usable prior
/// (written by an older version, or its prior is gone), the tailer loads an
/// index of every key as of the last event delivered, once, and goes on
/// with it.
///
/// Guarantees: a tailer that keeps up delivers every change exactly once, in
/// `seq` order. Resuming with ``FeedStart/after(seq:)`` delivers every change
/// after that point, or fails with ``KVFileError/Code/historyCompacted``
/// naming the oldest point it can resume from; it never skips silently.
///
/// A tailer may be shared between threads: `poll()` calls run one at a time
/// (a lock guards its state), and `wait` may run beside them.
public final class LogTailer: @unchecked Sendable {
    /// The store directory.
    public let path: String
    /// The sequence number of the last change delivered (or passed over as already known).
    public var lastSeq: UInt64 { mutex.withLock { deliveredSeq } }
    /// Guards everything below.
    private let mutex = PlainMutex()
    private var deliveredSeq: UInt64
    private var loader: StoreLoader
    private var state: StoreState
    private let listener: WatchListener
    private var pending: [DeferredRecord] = []
    /// True while old values come from priors (no index of every key is loaded).
    private(set) var followsPriors: Bool
    /// Segments the last two compactions replaced while following priors: a prior may still name one.
    private var retired: [UInt32: Segment] = [:]
    private var retiredBefore: [UInt32: Segment] = [:]
    /// The highest segment number listed so far: numbers are given out in order, so one above it
    /// that is gone by the next listing was a segment created and removed in between.
    private var highestListed: UInt32 = 0
    /// Segments of the log after the start point, mapped but not read yet, in
    /// order: each is read once the events before it are delivered, so a resume
    /// far back holds one segment's records at a time, not the whole log's.
    private var unread: [UInt32] = []
    /// Keys in the tailer's own index (none while it follows priors).
    var indexedKeys: Int { mutex.withLock { state.index.count } }
    /// Segments with records at or before the start point that the tailer read, not only mapped.
    var segmentsRead: Int { mutex.withLock { state.segments.filter { $0.minSeq != UInt64.max }.count } }
    /// Segments after the start point not read yet.
    var unreadSegments: Int { mutex.withLock { unread.count } }

    /// Opens a feed of the store at `path`, starting at `start`.
    /// - Throws: ``KVFileError`` `.storeNotFound` or `.notAStore`; `.historyCompacted` when compaction removed
    ///   the history a resume needs (the message names the oldest seq to resume from); `.resumeAheadOfLog`
    ///   when the resume point is past the log's newest seq; `.corrupt`, `.unsupportedVersion`, `.io`.
    public init(path: String, start: FeedStart = .now) throws(KVFileError) {
        var directory = path
        while directory.count > 1 && directory.hasSuffix("/") { directory.removeLast() }
        self.path = directory
        let names = try StoreDirectory.prepare(directory, options: .reader)
        // Watch before reading, so no change between the two is missed.
        listener = try WatchListener(directory: directory)
        var loader = StoreLoader(directory: directory, writer: false, segmentSize: 0)
        let loaded: StoreState
        let startSeq: UInt64
        switch start {
        case .now:
            (loaded, unread) = try LogTailer.loadAfter(nil, names: names, loader: &loader)
            startSeq = loaded.nextSeq - 1
            followsPriors = true
        case .after(let seq):
            (loaded, unread) = try LogTailer.loadAfter(seq, names: names, loader: &loader)
            let floor = loaded.compactionFloor
            if floor > seq { throw LogTailer.historyCompacted(directory, wanted: seq, oldest: floor) }
            // Events are derived from the log: a resume point past its end was never in it.
            let newest = loaded.nextSeq - 1
            if seq > newest {
                throw KVFileError(.resumeAheadOfLog,
                    "cannot resume the change feed of \(directory) after seq \(seq): its log ends at seq \(newest), so seq \(seq) "
                        + "was never written to it (a seq from another store, or the store was recreated or restored from an older copy since); "
                        + "resume from seq \(newest) or earlier, or start from now",
                    path: directory)
            }
            startSeq = seq
            followsPriors = true
        case .beginning:
            loaded = try StoreDirectory.load(names: names, loader: &loader, deferAbove: 0).state
            let floor = loaded.compactionFloor
            startSeq = floor
            if floor > 0 {
                // Everything up to the floor is the starting picture, not events.
                let before = loaded.deferred.filter { $0.seq <= floor }.sorted { $0.seq < $1.seq }
                let after = loaded.deferred.filter { $0.seq > floor }
                loaded.deferAbove = nil
                for record in before {
                    record.key.withUnsafeBytes { loaded.applyLoaded(key: $0, operation: record.operation, location: record.location) }
                }
                try loaded.finishLoading()
                loaded.deferred = after
            }
            followsPriors = false
        }
        state = loaded
        highestListed = loaded.segmentIDs.last ?? 0
        deliveredSeq = startSeq
        self.loader = loader
        state.deferAbove = startSeq
        pending = state.deferred
        state.deferred = []
    }

    static func historyCompacted(_ path: String, wanted: UInt64, oldest: UInt64) -> KVFileError {
        KVFileError(.historyCompacted,
                    "history of \(path) after seq \(wanted) was compacted away; the oldest point to resume from is seq \(oldest) (or start from now)",
                    path: path)
    }

    /// Reads what the log gained since the last call and returns the new changes, in order:
    /// at most 16,384 at a time (a resume far back takes several calls), so call
    /// it again at once when it returned any, and wait only when it returned none.
    /// - Throws: ``KVFileError`` `.historyCompacted` when a compaction removed events not yet
    ///   delivered; `.sequenceGap` when the log skips sequence numbers it must hold; `.corrupt`, `.io`.
    public func poll() throws(KVFileError) -> [ChangeEvent] {
        try mutex.withLock { () throws(KVFileError) -> [ChangeEvent] in try pollLocked() }
    }

    private func pollLocked() throws(KVFileError) -> [ChangeEvent] {
        if let error = heldError {
            heldError = nil
            throw error
        }
        var events: [ChangeEvent] = []
        do throws(KVFileError) {
            // 1. What the segments we follow gained (even if compaction unlinked them since).
            try catchUpSegments()
            try deliver(into: &events)
            try readUnread(into: &events)
            // 2. New segments; a rebuild when compaction replaced some. A file
            // listed a moment ago may be gone (a compaction removed it): look again.
            try VanishedFiles.retrying(pauseMilliseconds: 1) { () throws(KVFileError) in
                try followDirectory(into: &events)
                try skipPermanentGap(into: &events)
            }
            try readUnread(into: &events)
        } catch {
            // The events read before the error go out first (the error names the last of them).
            if events.isEmpty { throw error }
            heldError = error
        }
        return events
    }

    /// An error met after a poll had gathered events: it returned them, the next poll throws it.
    private var heldError: KVFileError?

    /// How many events a poll returns at most (a resume far back takes several polls; callers poll again at once after events).
    static let eventsPerPoll = 1 << 14

    /// Reads the segments after the start point in turn, each once every
    /// event before it was delivered, through the descriptor the tailer holds
    /// (a compaction may have unlinked the file since).
    private func readUnread(into events: inout [ChangeEvent]) throws(KVFileError) {
        while pending.isEmpty && events.count < LogTailer.eventsPerPoll, let next = unread.first {
            unread.removeFirst()
            guard let segment = state.segment(next) else { continue }
            try loader.catchUp(segment, state: state, hints: nil)
            try deliver(into: &events)
        }
    }

    private func catchUpSegments() throws(KVFileError) {
        for segment in state.segments where !segment.isCompactionOutput && !unread.contains(segment.id) {
            try loader.catchUp(segment, state: state, hints: nil)
        }
    }

    /// A record that does not follow `deliveredSeq` waits for the ones before it.
    /// They can no longer come once every segment was read to its end after
    /// that record was seen (a writer finishes a record before it starts the
    /// next, and a segment before it starts the next): a crash lost them
    /// before they were acknowledged (see kvfile(5), "Sequence numbers").
    /// The feed then goes on after the gap instead of waiting forever.
    private func skipPermanentGap(into events: inout [ChangeEvent]) throws(KVFileError) {
        guard let first = pending.min(by: { $0.seq < $1.seq }), first.seq > deliveredSeq + 1 else { return }
        try catchUpSegments()
        try deliver(into: &events)
        // Not `first`: a reload inside `deliver` appends records unsorted.
        guard let next = pending.min(by: { $0.seq < $1.seq }), next.seq > deliveredSeq + 1 else { return }
        // At or below the compaction floor the missing records may be what a compaction dropped
        // from segments this tailer never held: history is gone, not lost in a crash.
        let floor = state.compactionFloor
        if deliveredSeq < floor { throw LogTailer.historyCompacted(path, wanted: deliveredSeq, oldest: floor) }
        deliveredSeq = next.seq - 1
        try deliver(into: &events)
    }

    private func followDirectory(into events: inout [ChangeEvent]) throws(KVFileError) {
        let names = try Syscalls.listDirectory(path)
        let ids = try loader.resolveSegments(names)
        let present = Set(ids)
        for id in ids where state.segment(id) == nil {
            if try loader.isCompactionOutput(id) {
                // Following priors: the writer's index moved keys there, so priors may name it.
                if followsPriors { try loader.mapWithoutReading(id, into: state) }
                continue
            }
            if unread.isEmpty {
                try loader.loadActive(id, into: state, hints: nil)
            } else {
                // Behind segments not read yet: its turn comes after theirs.
                try LogTailer.queue(id, loader: loader, state: state, unread: &unread)
            }
        }
        try deliver(into: &events)
        if followsPriors {
            try forgetReplaced(present: present, events: &events)
            // Records at or below the floor not delivered yet must be in segments held open:
            // not in one that came and went between two listings (a compaction took it).
            let newest = ids.last ?? 0
            if deliveredSeq < state.compactionFloor && highestListed < newest
                && (highestListed + 1 ..< newest).contains(where: { !present.contains($0) }) {
                throw LogTailer.historyCompacted(path, wanted: deliveredSeq, oldest: state.compactionFloor)
            }
            highestListed = max(highestListed, newest)
            return
        }
        // A segment not taken up above is compaction's output, or a file whose creation is
        // under way or was cut short (nothing in it yet: it is looked at again next time).
        var replaced = state.segmentIDs.contains { !present.contains($0) }
        for id in ids where !replaced && state.segment(id) == nil {
            replaced = try loader.header(of: id) != nil
        }
        guard replaced else { return }
        // What the segments held gained meanwhile, and records read but not delivered
        // yet (a poll delivers a bounded number), go out first with the index held:
        // the reload that follows may start no lower than the compaction's floor, and
        // they may lie below it. Not past a gap, though: records missing there may be
        // what the compaction dropped, which only the reload can tell.
        try catchUpSegments()
        try deliver(into: &events)
        if pending.contains(where: { $0.seq == deliveredSeq + 1 }) { return }
        try reload(names: names)
        try deliver(into: &events)
    }

    /// Following priors, after a compaction replaced segments: the ones it
    /// removed stay while their records are still to be read or delivered
    /// (the tailer holds them open); then they are kept only for priors that
    /// may name them, until the next compaction after that.
    private func forgetReplaced(present: Set<UInt32>, events: inout [ChangeEvent]) throws(KVFileError) {
        guard state.segmentIDs.contains(where: { !present.contains($0) }) else { return }
        // What a removed segment gained since it was last read (a roll, a seal and a compaction may all fit in between).
        try catchUpSegments()
        try deliver(into: &events)
        var gone: [UInt32: Segment] = [:]
        for segment in state.segments where !present.contains(segment.id) && !unread.contains(segment.id) {
            if pending.contains(where: { $0.location.segment == segment.id }) { continue }
            gone[segment.id] = segment
            state.remove(segment.id)
        }
        guard !gone.isEmpty else { return }
        retiredBefore = retired
        retired = gone
    }

    /// Reads the store afresh with an index of every key as of the last event
    /// delivered (after compaction replaced segments, or when a record names no
    /// usable prior): records after it become pending events (those already
    /// pending come again and are skipped).
    private func reload(names: [String]) throws(KVFileError) {
        var fresh = loader
        let rebuilt = try StoreDirectory.load(names: names, loader: &fresh, deferAbove: deliveredSeq).state
        let floor = rebuilt.compactionFloor
        if floor > deliveredSeq { throw LogTailer.historyCompacted(path, wanted: deliveredSeq, oldest: floor) }
        followsPriors = false
        retired = [:]
        retiredBefore = [:]
        loader = fresh
        unread = []
        pending += rebuilt.deferred
        rebuilt.deferred = []
        state = rebuilt
    }

    /// Waits until the store may have changed (inotify), or `milliseconds` pass.
    @discardableResult
    public func wait(milliseconds: Int) -> Bool {
        listener.wait(milliseconds: milliseconds)
    }

    /// The inotify descriptor, for callers that poll it with other descriptors.
    public var waitDescriptor: Int32 { listener.descriptor }

    /// Discards queued wake-ups after the caller's own poll saw the descriptor ready.
    public func drainWakeups() { listener.drain() }

    /// Turns the records that continue the sequence into events, applying each
    /// to the index; at most about `eventsPerPoll` a poll (the rest wait for the next).
    private func deliver(into events: inout [ChangeEvent]) throws(KVFileError) {
        pending += state.deferred
        state.deferred = []
        guard !pending.isEmpty else { return }
        pending.sort { $0.seq < $1.seq }
        var used = 0
        for record in pending {
            if record.seq <= deliveredSeq { used += 1; continue }  // a copy, or already delivered
            if record.seq != deliveredSeq + 1 { break }  // not yet visible
            if events.count >= LogTailer.eventsPerPoll { break }
            if let event = try event(for: record) { events.append(event) }
            if !followsPriors {
                record.key.withUnsafeBytes { state.applyNewest(key: $0, operation: record.operation, location: record.location) }
            }
            deliveredSeq = record.seq
            used += 1
        }
        pending.removeFirst(used)
        state.deferAbove = deliveredSeq
    }

    private func event(for record: DeferredRecord) throws(KVFileError) -> ChangeEvent? {
        let header = try recordHeader(record)
        let old: [UInt8]?
        if followsPriors {
            if record.operation == .created {
                old = nil
            } else if let prior = header?.prior,
                      let value = PriorRecord.value(at: prior, in: segment(named: prior), key: record.key, before: record.seq) {
                old = value
            } else {
                // No usable prior (an older writer's record, or the prior is gone): an index of every key says.
                try reload(names: try Syscalls.listDirectory(path))
                return try event(for: record)
            }
        } else {
            old = try withBytes(record.key) { (key) throws(KVFileError) -> [UInt8]? in
                guard let location = state.index.lookup(key) else { return nil }
                return try RecordReader.value(at: location, key: key, in: state)
            }
        }
        let new: [UInt8]? = try withBytes(record.key) { (key) throws(KVFileError) -> [UInt8]? in
            guard record.operation != .deleted else { return nil }
            return try RecordReader.value(at: record.location, key: key, in: state)
        }
        let topic: ChangeEvent.Topic
        switch (record.operation, old) {
        case (.deleted, nil): return nil
        case (.deleted, _): topic = .deleted
        case (_, nil): topic = .created
        default: topic = .updated
        }
        return ChangeEvent(topic: topic, seq: record.seq, timestamp: header?.timestamp ?? 0, key: record.key, newValue: new, oldValue: old,
                           expiresAt: header?.deadline ?? 0, expired: header?.expired ?? false)
    }

    /// The segment a prior names: one the tailer has, one compaction replaced
    /// since, or a compaction's output that appeared since the directory was
    /// last listed (the writer's index moved keys there). Nil when there is none.
    private func segment(named prior: PriorLocation) -> Segment? {
        if let known = state.segment(prior.segment) ?? retired[prior.segment] ?? retiredBefore[prior.segment] { return known }
        // Only an output: a segment of the log must be read, not just mapped, when the directory is followed.
        guard (try? loader.isCompactionOutput(prior.segment)) == true else { return nil }
        try? loader.mapWithoutReading(prior.segment, into: state)
        return state.segment(prior.segment)
    }

    private func recordHeader(_ record: DeferredRecord) throws(KVFileError) -> RecordHeader? {
        guard let segment = state.segment(record.location.segment) else { return nil }
        let offset = Int(record.location.offset)
        guard case .record(let header) = RecordCodec.decode(segment.base + offset, available: Int(record.location.size)) else {
            throw KVFileError.corrupt(segment.path, offset: offset, "record changed under the tailer")
        }
        return header
    }
}
