#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// A flag set from one thread and read from another.
final class StopFlag: @unchecked Sendable {
    private let mutex = PlainMutex()
    private var value = false
    func set() { mutex.withLock { value = true } }
    var isSet: Bool { mutex.withLock { value } }
}

/// Runs a closure on a detached pthread (the engine does not use Foundation's Thread).
enum BackgroundThread {
    private final class Box {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }

    /// Returns false when no thread could be made.
    @discardableResult
    static func start(_ body: @escaping @Sendable () -> Void) -> Bool {
        let context = Unmanaged.passRetained(Box(body)).toOpaque()
        var thread = pthread_t()
        let result = pthread_create(&thread, nil, { raw in
            let box = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
            box.body()
            return nil
        }, context)
        if result == 0 {
            pthread_detach(thread)
            return true
        }
        Unmanaged<Box>.fromOpaque(context).release()
        return false
    }
}

/// The background threads one owner (a store) starts, so that it can stop
/// them and wait until every one has ended before it lets go of its files.
final class BackgroundThreads: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let ended = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private let stopRequested = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var running = 0
    private var stopping = false
    /// The threads running bodies now (a body may end up closing its owner).
    private var threads: Set<UInt> = []

    init() {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(ended, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(stopRequested, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(stopRequested)
        pthread_cond_destroy(ended)
        pthread_mutex_destroy(mutex)
        stopRequested.deallocate()
        ended.deallocate()
        mutex.deallocate()
    }

    /// Sleeps up to `milliseconds`, waking at once when stopping; returns
    /// false when stopping (the body should end).
    func sleep(milliseconds: Int) -> Bool {
        var deadline = timespec()
        clock_gettime(CLOCK_MONOTONIC, &deadline)
        let nanoseconds = Int(deadline.tv_nsec) + (milliseconds % 1000) * 1_000_000
        deadline.tv_sec += milliseconds / 1000 + nanoseconds / 1_000_000_000
        deadline.tv_nsec = nanoseconds % 1_000_000_000
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while !stopping {
            if pthread_cond_timedwait(stopRequested, mutex, &deadline) == ETIMEDOUT { break }
        }
        return !stopping
    }

    /// True once `stopAndWait` was called: running bodies should end soon.
    var isStopping: Bool {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return stopping
    }

    /// Starts `body` on a thread of its own; false (and nothing runs) when
    /// stopping or when no thread could be made.
    @discardableResult
    func start(_ body: @escaping @Sendable () -> Void) -> Bool {
        pthread_mutex_lock(mutex)
        if stopping {
            pthread_mutex_unlock(mutex)
            return false
        }
        running += 1
        pthread_mutex_unlock(mutex)
        let started = BackgroundThread.start { [self] in
            let me = UInt(pthread_self())
            pthread_mutex_lock(mutex)
            threads.insert(me)
            pthread_mutex_unlock(mutex)
            body()
            finished(me)
        }
        if !started { finished(nil) }
        return started
    }

    private func finished(_ thread: UInt?) {
        pthread_mutex_lock(mutex)
        if let thread { threads.remove(thread) }
        running -= 1
        if running == 0 { pthread_cond_broadcast(ended) }
        pthread_mutex_unlock(mutex)
    }

    /// Refuses new threads and waits until every started one has ended (but
    /// the calling thread, when it is one of them: its owner went away while
    /// it held the last reference, and it ends once this returns).
    func stopAndWait() {
        pthread_mutex_lock(mutex)
        stopping = true
        pthread_cond_broadcast(stopRequested)
        let own = threads.contains(UInt(pthread_self())) ? 1 : 0
        while running > own { pthread_cond_wait(ended, mutex) }
        pthread_mutex_unlock(mutex)
    }
}
