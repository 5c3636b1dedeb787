#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// A background thread that calls `tick` every `milliseconds` until stopped
/// (durability `.interval`).
final class IntervalSyncer: @unchecked Sendable {
    private let milliseconds: Int
    private let tick: @Sendable () -> Void
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var stopping = false
    /// Set when the thread has ended.
    private let done = StopFlag()

    init(milliseconds: Int, tick: @escaping @Sendable () -> Void) {
        self.milliseconds = milliseconds
        self.tick = tick
        pthread_mutex_init(mutex, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    func start() {
        let done = self.done
        let started = BackgroundThread.start { [self] in
            run()
            done.set()
        }
        if !started { done.set() }
    }

    private func run() {
        pthread_mutex_lock(mutex)
        while !stopping {
            var deadline = timespec()
            clock_gettime(CLOCK_MONOTONIC, &deadline)
            let nanoseconds = deadline.tv_nsec + (milliseconds % 1000) * 1_000_000
            deadline.tv_sec += milliseconds / 1000 + nanoseconds / 1_000_000_000
            deadline.tv_nsec = nanoseconds % 1_000_000_000
            _ = pthread_cond_timedwait(condition, mutex, &deadline)
            if stopping { break }
            pthread_mutex_unlock(mutex)
            tick()
            pthread_mutex_lock(mutex)
        }
        pthread_mutex_unlock(mutex)
    }

    /// Stops the thread and waits for it to end.
    func stop() {
        pthread_mutex_lock(mutex)
        stopping = true
        pthread_cond_signal(condition)
        pthread_mutex_unlock(mutex)
        while !done.isSet { Syscalls.sleep(milliseconds: 1) }
    }
}
