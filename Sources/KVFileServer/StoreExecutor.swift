#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// Threads of the server's own for store calls, so that a call waiting on
/// the disk (a page fault of a cold value, a writer rolling its segment)
/// holds one of these and never one of Swift's few cooperative threads.
/// A task hops here with `withTaskExecutorPreference` and back when the
/// call returns: two hand-offs, where NIO's blocking pool takes three (its
/// answer goes through an event loop).
final class StoreExecutor: TaskExecutor, @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let ready = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var jobs: [UnownedJob] = []
    private var head = 0
    private var idle = 0

    init(threads: Int) {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(ready, nil)
        for _ in 0..<max(1, threads) {
            var thread = pthread_t()
            let context = Unmanaged.passRetained(self).toOpaque()
            pthread_create(&thread, nil, { raw in
                Unmanaged<StoreExecutor>.fromOpaque(raw!).takeRetainedValue().work()
                return nil
            }, context)
            pthread_detach(thread)
        }
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let unowned = UnownedJob(job)
        pthread_mutex_lock(mutex)
        jobs.append(unowned)
        if idle > 0 { pthread_cond_signal(ready) }
        pthread_mutex_unlock(mutex)
    }

    /// A worker: runs jobs as they come, for the life of the process.
    private func work() {
        let executor = asUnownedTaskExecutor()
        while true {
            pthread_mutex_lock(mutex)
            while head == jobs.count {
                idle += 1
                pthread_cond_wait(ready, mutex)
                idle -= 1
            }
            let job = jobs[head]
            head += 1
            if head > 1024 && head * 2 > jobs.count {
                jobs.removeFirst(head)
                head = 0
            }
            pthread_mutex_unlock(mutex)
            job.runSynchronously(on: executor)
        }
    }
}
