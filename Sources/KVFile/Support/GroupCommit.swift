#if canImport(Glibc)
import Glibc
#endif

/// Group commit for durability `.always`: the first writer that needs a sync
/// becomes the leader and syncs everything written so far; writers that
/// arrive meanwhile wait and are all released by that one sync, or lead the
/// next one for whatever came after it.
final class GroupCommit: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    /// Log position known to be on stable storage.
    private var durable: UInt64
    private var leading = false
    /// Writers between the start of their write and its sync.
    private var inFlight = 0
    /// Of those, how many wait for a leader's sync.
    private var waiting = 0

    init(durable: UInt64) {
        self.durable = durable
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    /// Returns once `position` is durable. `sync` makes everything written so
    /// far durable and returns the position it covered; one caller at a time runs it.
    func waitDurable(_ position: UInt64, sync: () throws(KVFileError) -> UInt64) throws(KVFileError) {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while durable < position {
            if leading {
                waiting += 1
                pthread_cond_wait(condition, mutex)
                waiting -= 1
                continue
            }
            leading = true
            // Writers still between their write and this point would need a
            // sync of their own right after this one: give them a moment to join.
            var spins = 0
            while inFlight - 1 > waiting && spins < 50 {
                pthread_mutex_unlock(mutex)
                sched_yield()
                spins += 1
                pthread_mutex_lock(mutex)
            }
            pthread_mutex_unlock(mutex)
            let result: Result<UInt64, KVFileError>
            do throws(KVFileError) { result = .success(try sync()) } catch { result = .failure(error) }
            pthread_mutex_lock(mutex)
            leading = false
            if case .success(let covered) = result { durable = max(durable, covered) }
            pthread_cond_broadcast(condition)
            if case .failure(let error) = result { throw error }
        }
    }

    /// A writer that will call `waitDurable` starts its write.
    func writerStarted() {
        pthread_mutex_lock(mutex)
        inFlight += 1
        pthread_mutex_unlock(mutex)
    }

    /// A writer that called `writerStarted` is done (synced, wrote nothing, or failed).
    func writerFinished() {
        pthread_mutex_lock(mutex)
        inFlight -= 1
        pthread_mutex_unlock(mutex)
    }

    /// Records that everything up to `position` is durable (a sealed segment was synced).
    func advance(to position: UInt64) {
        pthread_mutex_lock(mutex)
        durable = max(durable, position)
        pthread_mutex_unlock(mutex)
    }
}
