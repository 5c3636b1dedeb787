#if canImport(Glibc)
@preconcurrency import Glibc
#endif
import Synchronization

/// Remembers the first failure after which a writer can no longer tell what
/// is on disk, and fails every later write and sync with it until the store
/// is reopened (which reads what is really there).
///
/// Two such failures: a failed `fdatasync` (Linux may already have dropped
/// the dirty pages it could not write and reports the error once: a later
/// sync that succeeds proves nothing about them — PostgreSQL's "fsyncgate",
/// LevelDB's sticky background error), and the store's files removed while
/// it is open (writes would go to files nobody can find again).
final class WriterFailure: @unchecked Sendable {
    private let failed = Atomic<Bool>(false)
    private let mutex = PlainMutex()
    private var error: KVFileError?
    /// Monotonic milliseconds of the last check that the active segment still has a name.
    private let lastLinkCheck = Atomic<UInt64>(0)

    /// Throws the remembered failure, if any.
    @inline(__always)
    func check() throws(KVFileError) {
        if failed.load(ordering: .acquiring) { throw remembered() }
    }

    private func remembered() -> KVFileError {
        mutex.withLock { error! }
    }

    /// Remembers `failure` unless an earlier one is remembered; returns the one kept.
    @discardableResult
    func record(_ failure: KVFileError) -> KVFileError {
        mutex.withLock { () -> KVFileError in
            if let error { return error }
            error = failure
            failed.store(true, ordering: .releasing)
            return failure
        }
    }

    /// `fdatasync` of a segment holding writes; a failure is remembered.
    func syncData(_ segment: Segment, store: String) throws(KVFileError) {
        try check()
        do throws(KVFileError) {
            try Syscalls.fdatasync(segment.fd, path: segment.path)
        } catch {
            throw record(KVFileError(
                .syncFailed,
                "\(segment.path): fdatasync failed (\(error.errno.map { String(cString: strerror($0)) } ?? error.message)); "
                    + "writes to store \(store) since its last successful sync may not be on disk, and it refuses further "
                    + "writes and syncs until it is reopened",
                path: segment.path, errno: error.errno))
        }
        try checkLinked(segment, store: store)
    }

    /// Fails (and remembers it) when the segment's file has no name left: the
    /// store directory was removed, or the file deleted, under the writer.
    func checkLinked(_ segment: Segment, store: String) throws(KVFileError) {
        try check()
        guard let links = try? Syscalls.linkCount(segment.fd, path: segment.path), links == 0 else { return }
        throw record(KVFileError(
            .storeRemoved,
            "the files of store \(store) were removed while it was open (\(segment.path) has no name left); "
                + "writes to it cannot be found again, so it refuses further writes",
            path: store))
    }

    /// `checkLinked` at most every `intervalMilliseconds` of `now` (the write's wall-clock
    /// time, read once per write: a clock set back only makes the check come sooner),
    /// for writers that do not sync each write.
    @inline(__always)
    func checkLinkedNow(_ segment: Segment, store: String, now: UInt64, intervalMilliseconds: UInt64 = 100) throws(KVFileError) {
        let last = lastLinkCheck.load(ordering: .relaxed)
        guard now &- last >= intervalMilliseconds else { return }
        lastLinkCheck.store(now, ordering: .relaxed)
        try checkLinked(segment, store: store)
    }
}
