#if canImport(Glibc)
import Glibc
#endif
import CKVFileSupport
import Synchronization

/// Group commit for durability `.always`: the first writer that needs a sync
/// becomes the leader and syncs everything written so far; writers that
/// arrive meanwhile wait and are all released by that one sync, or lead the
/// next one for whatever came after it.
///
/// Waiters sleep on a futex word that each finished sync bumps, not on a
/// condition variable: a condition variable's waiters wake one after another
/// through its mutex, and with many writers on few cores those handoffs, not
/// the disk, set the pace.
final class GroupCommit: @unchecked Sendable {
    /// Log position known to be on stable storage.
    private let durable: Atomic<UInt64>
    private let leading = Atomic<Bool>(false)
    /// Writers between the start of their write and its sync.
    private let inFlight = Atomic<Int>(0)
    /// Of those, how many sleep until the next sync ends.
    private let waiting = Atomic<Int>(0)
    /// Bumped after every sync; waiters sleep while it is unchanged.
    private let epoch = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)

    init(durable: UInt64) {
        self.durable = Atomic(durable)
        epoch.initialize(to: 0)
    }

    deinit {
        epoch.deallocate()
    }

    /// Returns once `position` is durable. `sync` makes everything written so
    /// far durable and returns the position it covered; one caller at a time runs it.
    func waitDurable(_ position: UInt64, sync: () throws(KVFileError) -> UInt64) throws(KVFileError) {
        while durable.load(ordering: .acquiring) < position {
            if leading.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged {
                try lead(sync)
                continue
            }
            let seen = kvf_word_load(epoch)
            // Checked after reading the epoch: a sync that ends from here on changes it, so the wait below returns.
            if durable.load(ordering: .acquiring) >= position { return }
            if !leading.load(ordering: .sequentiallyConsistent) { continue }
            waiting.add(1, ordering: .sequentiallyConsistent)
            kvf_futex_wait(epoch, seen)
            waiting.subtract(1, ordering: .sequentiallyConsistent)
        }
    }

    private func lead(_ sync: () throws(KVFileError) -> UInt64) throws(KVFileError) {
        // Writers still between their write and the wait would need a sync of
        // their own right after this one: give them a moment to join.
        var spins = 0
        while inFlight.load(ordering: .relaxed) - 1 > waiting.load(ordering: .relaxed) && spins < 50 {
            sched_yield()
            spins += 1
        }
        let result: Result<UInt64, KVFileError>
        do throws(KVFileError) { result = .success(try sync()) } catch { result = .failure(error) }
        if case .success(let covered) = result { advance(to: covered) }
        leading.store(false, ordering: .sequentiallyConsistent)
        kvf_word_increment(epoch)
        // A waiter that registers after this load saw the new epoch already and does not sleep.
        if waiting.load(ordering: .sequentiallyConsistent) > 0 { kvf_futex_wake_all(epoch) }
        if case .failure(let error) = result { throw error }
    }

    /// The log position known to be on stable storage.
    var durablePosition: UInt64 { durable.load(ordering: .acquiring) }

    /// A writer that will call `waitDurable` starts its write.
    func writerStarted() {
        inFlight.add(1, ordering: .relaxed)
    }

    /// A writer that called `writerStarted` is done (synced, wrote nothing, or failed).
    func writerFinished() {
        inFlight.subtract(1, ordering: .relaxed)
    }

    /// Records that everything up to `position` is durable (a sealed segment was synced).
    func advance(to position: UInt64) {
        var current = durable.load(ordering: .relaxed)
        while current < position {
            let (exchanged, original) = durable.compareExchange(
                expected: current, desired: position, ordering: .acquiringAndReleasing)
            if exchanged { return }
            current = original
        }
    }
}
