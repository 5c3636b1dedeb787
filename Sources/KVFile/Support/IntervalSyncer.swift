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
    private var thread: pthread_t?

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
        let context = Unmanaged.passRetained(self).toOpaque()
        var handle = pthread_t()
        let result = pthread_create(&handle, nil, { raw in
            let syncer = Unmanaged<IntervalSyncer>.fromOpaque(raw!).takeRetainedValue()
            syncer.run()
            return nil
        }, context)
        if result == 0 { thread = handle } else { Unmanaged<IntervalSyncer>.fromOpaque(context).release() }
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
        if let thread { pthread_join(thread, nil) }
        thread = nil
    }
}
