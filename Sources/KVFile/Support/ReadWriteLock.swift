#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// A pthread reader–writer lock: many concurrent readers, one writer.
final class ReadWriteLock: @unchecked Sendable {
    private let lock: UnsafeMutablePointer<pthread_rwlock_t>
    /// Writers waiting for the lock, so a long job taking it in slices can let them in between.
    private let waitingWriters = Atomic<Int>(0)

    init() {
        lock = .allocate(capacity: 1)
        var attributes = pthread_rwlockattr_t()
        pthread_rwlockattr_init(&attributes)
        // Writers first, so a stream of readers cannot starve puts.
        pthread_rwlockattr_setkind_np(&attributes, Int32(PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP))
        pthread_rwlock_init(lock, &attributes)
        pthread_rwlockattr_destroy(&attributes)
    }

    deinit {
        pthread_rwlock_destroy(lock)
        lock.deallocate()
    }

    @inline(__always)
    func withReadLock<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        pthread_rwlock_rdlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        return try body()
    }

    /// Runs `body` under the read lock if it is free now; nil when a writer holds it or waits for it.
    @inline(__always)
    func withReadLockIfFree<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T? {
        guard pthread_rwlock_tryrdlock(lock) == 0 else { return nil }
        defer { pthread_rwlock_unlock(lock) }
        return try body()
    }

    @inline(__always)
    func withWriteLock<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        if pthread_rwlock_trywrlock(lock) != 0 {
            waitingWriters.add(1, ordering: .relaxed)
            pthread_rwlock_wrlock(lock)
            waitingWriters.subtract(1, ordering: .relaxed)
        }
        defer { pthread_rwlock_unlock(lock) }
        return try body()
    }

    /// Between two slices of a long job: lets writers that wait take the lock
    /// first (pthread rwlocks let the releasing thread barge back in).
    func yieldToWaitingWriters() {
        var spins = 0
        while waitingWriters.load(ordering: .relaxed) > 0 && spins < 10_000 {
            sched_yield()
            spins += 1
        }
    }
}

/// A plain pthread mutex.
final class PlainMutex: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>

    init() {
        mutex = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    @inline(__always)
    func withLock<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }
}
