#if canImport(Glibc)
@preconcurrency import Glibc
#endif

extension Store {
    /// The store's changes as an `AsyncSequence`, derived from its log like
    /// any other process would (a ``LogTailer`` on a thread of its own), so it
    /// also sees writes from other processes. It ends with an error when
    /// history a resume needs was compacted away; cancel the task or drop the
    /// iterator to stop it.
    ///
    /// ```swift
    /// for try await event in store.changes(from: .now) {
    ///     print(event.topic, String(decoding: event.key, as: UTF8.self))
    /// }
    /// ```
    public func changes(from start: FeedStart = .now) -> AsyncThrowingStream<ChangeEvent, Error> {
        let path = self.path
        return AsyncThrowingStream(bufferingPolicy: .bufferingNewest(1 << 16)) { continuation in
            let stop = StopFlag()
            continuation.onTermination = { _ in stop.set() }
            let tailer: LogTailer
            do {
                tailer = try LogTailer(path: path, start: start)
            } catch {
                continuation.finish(throwing: error)
                return
            }
            let started = BackgroundThread.start {
                while !stop.isSet {
                    do {
                        for event in try tailer.poll() {
                            if case .dropped = continuation.yield(event) {
                                continuation.finish(throwing: KVFileError(.io, "change feed of \(path): the consumer fell more than 65536 events behind"))
                                return
                            }
                        }
                    } catch {
                        continuation.finish(throwing: error)
                        return
                    }
                    tailer.wait(milliseconds: 100)
                }
                continuation.finish()
            }
            if !started { continuation.finish(throwing: KVFileError(.io, "cannot start the change feed thread")) }
        }
    }
}

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
