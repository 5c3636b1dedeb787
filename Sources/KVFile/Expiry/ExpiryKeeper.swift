import Synchronization

/// What the expiry machinery needs from the store: whether it is closed
/// (asked under its lock) and writing an expiry's tombstone.
protocol ExpiryHost: AnyObject, Sendable {
    var isClosed: Bool { get }
    /// Records the expiry of `key` when its deadline has passed; else returns its deadline (0: none).
    func expireIfDue(_ key: [UInt8]) throws(KVFileError) -> UInt64
}

/// A writer's side of expiry (man/kvfile.5, "Expiry"): keeps the index's
/// deadline fields (may any value have one; the earliest known), walks the
/// index for values whose deadlines passed, and runs the sweep that records
/// each expiry within about a quarter of a second of its deadline.
final class ExpiryKeeper: @unchecked Sendable {
    private let lock: ReadWriteLock
    private let state: StoreState
    private let background: BackgroundThreads
    /// Weak: the sweep thread must not keep a store alive that its owner dropped.
    private weak var host: ExpiryHost?
    /// The writer's keys with deadlines, for its sweep.
    private let expiries = ExpiryQueue()
    /// Writes with deadlines this writer made (a walk clears the index's flag only if none came during it).
    private let deadlineWrites = Atomic<UInt64>(0)

    init(lock: ReadWriteLock, state: StoreState, background: BackgroundThreads, host: ExpiryHost) {
        self.lock = lock
        self.state = state
        self.background = background
        self.host = host
    }

    /// True when the earliest deadline the index knows has passed: expiries
    /// may have passed while no writer was open, and a walk records them.
    var somePassedWhileClosed: Bool {
        let earliest = state.index.earliestDeadline
        return state.index.mayHoldDeadlines && earliest != 0 && earliest <= Syscalls.wallClockMilliseconds()
    }

    /// After a put with a deadline: the sweep records its expiry when it comes.
    func sweepLater(_ key: [UInt8], deadline: UInt64) {
        expiries.add(key, deadline: deadline)
    }

    /// Under the write lock, before a record with `deadline` is written.
    @inline(__always)
    func noteDeadlineWrite(_ deadline: UInt64) {
        deadlineWrites.add(1, ordering: .relaxed)
        if !state.index.mayHoldDeadlines { state.index.mayHoldDeadlines = true }
        let earliest = state.index.earliestDeadline
        if earliest == 0 || deadline < earliest { state.index.earliestDeadline = deadline }
    }

    /// After a whole walk of the index: what it learnt. `soonest` is the
    /// earliest deadline still ahead (0: none), `found` how many deadlines it met.
    private func noteWalk(soonest: UInt64, found: Int, writesAtStart: UInt64, now: UInt64) {
        lock.withWriteLock {
            guard host?.isClosed == false else { return }
            if deadlineWrites.load(ordering: .relaxed) == writesAtStart {
                // Nothing was written meanwhile: the walk saw it all.
                if found == 0 { state.index.mayHoldDeadlines = false }
                state.index.earliestDeadline = soonest
            } else {
                // Writes came meanwhile: keep what they noted, if it is still ahead.
                let noted = state.index.earliestDeadline
                let ahead = noted > now ? noted : 0
                state.index.earliestDeadline = [soonest, ahead].filter { $0 != 0 }.min() ?? 0
            }
        }
    }

    /// Records every expiry whose deadline has passed, walking the whole index
    /// (in steps, under the read lock).
    func recordDue() throws(KVFileError) {
        guard let host else { return }
        var walk = DeadlineWalk()
        var due: [[UInt8]] = []
        var ahead: UInt64 = 0
        let now = Syscalls.wallClockMilliseconds()
        while walk.cursor != nil {
            walkStep(&walk) { key, deadline in
                if deadline <= now {
                    due.append(Array(key))
                } else if ahead == 0 || deadline < ahead {
                    ahead = deadline
                }
            }
        }
        guard walk.started else { return }
        for key in due { _ = try host.expireIfDue(key) }
        noteWalk(soonest: ahead, found: walk.found, writesAtStart: walk.writesAtStart, now: now)
    }

    /// Where a walk of the index for values with deadlines is, and what it met.
    private struct DeadlineWalk {
        var cursor: Int? = 0
        var started = false
        var layout: [Int] = []
        var found = 0
        var writesAtStart: UInt64 = 0
        var startedAt: UInt64 = 0
    }

    /// One step of a walk: the next slots of the index under the read lock,
    /// `body` called with each value's key and deadline. It starts again
    /// when a resize moved keys between steps, and ends at once when the
    /// store is closed or the index says no value has a deadline.
    private func walkStep(_ walk: inout DeadlineWalk, _ body: (UnsafeRawBufferPointer, UInt64) -> Void) {
        guard let start = walk.cursor else { return }
        walk.cursor = lock.withReadLock { () -> Int? in
            guard host?.isClosed == false, walk.started || state.index.mayHoldDeadlines else { return nil }
            if !walk.started {
                walk = DeadlineWalk(cursor: 0, started: true, layout: state.index.layoutIdentity,
                                    writesAtStart: deadlineWrites.load(ordering: .relaxed), startedAt: Syscalls.wallClockMilliseconds())
            }
            let next = state.index.forEachEntry(fromSlot: start, count: 4096) { key, location in
                guard location.deadline != 0 else { return }
                walk.found += 1
                body(key, location.deadline)
            }
            if state.index.layoutIdentity != walk.layout {
                // A resize moved keys between the steps: walk again from the start of the new layout.
                walk.layout = state.index.layoutIdentity
                walk.found = 0
                return 0
            }
            return next
        }
    }

    /// The writer's expiry sweep: after the store has been open a second (a
    /// writer open for one command records only the expiries it meets), it
    /// walks the index in steps for values with deadlines (when the index
    /// says there may be any), then records each expiry within about a
    /// quarter of a second of its deadline.
    func startSweep() {
        // The thread holds the store only while it works: a store dropped without close still goes away (and its lock with it).
        background.start { [weak self, background] in
            guard background.sleep(milliseconds: 1000) else { return }
            var walk = DeadlineWalk()
            var soonest: UInt64 = 0
            while let keeper = self, let host = keeper.host {
                let pause = keeper.sweepStep(&walk, soonest: &soonest, host: host)
                guard background.sleep(milliseconds: pause) else { return }
            }
        }
    }

    /// One step of the sweep: the next slots of the index (until it was
    /// walked once), then the expiries due. Returns how long to rest.
    private func sweepStep(_ walk: inout DeadlineWalk, soonest: inout UInt64, host: ExpiryHost) -> Int {
        if walk.cursor != nil {
            walkStep(&walk) { key, deadline in
                expiries.add(Array(key), deadline: deadline)
                // Due ones included: until this writer has recorded them, a writer opening next should look.
                if soonest == 0 || deadline < soonest { soonest = deadline }
            }
            if walk.cursor == nil && walk.started {
                // The values due now are queued and recorded below; later opens look at what is ahead.
                noteWalk(soonest: soonest, found: walk.found, writesAtStart: walk.writesAtStart, now: walk.startedAt)
            }
        }
        let due = expiries.takeDue(now: Syscalls.wallClockMilliseconds(), limit: 256)
        for (index, entry) in due.enumerated() {
            if background.isStopping {
                for later in due[index...] { expiries.add(later.key, deadline: later.deadline) }
                break
            }
            do throws(KVFileError) {
                // Not expired (written again, or the clock went back): look again at its deadline.
                let deadline = try host.expireIfDue(entry.key)
                if deadline != 0 { expiries.add(entry.key, deadline: deadline) }
            } catch {
                // The writer's failure: its next write reports it; these wait for the next step.
                for later in due[index...] { expiries.add(later.key, deadline: later.deadline) }
                break
            }
        }
        return walk.cursor != nil ? 1 : (due.count == 256 ? 0 : 250)
    }
}
