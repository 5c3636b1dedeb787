#if canImport(Glibc)
@preconcurrency import Glibc
#endif

extension Store {
    /// How many events ``changes(from:)`` buffers for a consumer that lags.
    static let changeBufferLimit = 1 << 16

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
        // When the consumer falls too far behind, the events already buffered
        // are kept and the stream then ends with an error: a consumer that
        // resumes after the last event it handled misses nothing.
        return AsyncThrowingStream(bufferingPolicy: .bufferingOldest(Store.changeBufferLimit)) { continuation in
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
                    var events: [ChangeEvent] = []
                    do {
                        events = try tailer.poll()
                        for event in events {
                            if case .dropped = continuation.yield(event) {
                                continuation.finish(throwing: KVFileError(
                                    .consumerTooSlow,
                                    "change feed of \(path): the consumer fell \(Store.changeBufferLimit) events behind; "
                                        + "the feed ended after seq \(event.seq - 1), resume after the last event handled"))
                                return
                            }
                        }
                    } catch {
                        continuation.finish(throwing: error)
                        return
                    }
                    if events.isEmpty { tailer.wait(milliseconds: 100) }
                }
                continuation.finish()
            }
            if !started { continuation.finish(throwing: KVFileError(.io, "cannot start the change feed thread")) }
        }
    }
}
