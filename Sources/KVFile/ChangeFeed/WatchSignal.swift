#if canImport(Glibc)
import Glibc
#endif

// How a writer wakes tailers in other processes (see man/kvfile.5, "Change
// events"). The writer stores records through a memory mapping, which
// inotify does not see, so: every tailer holds a shared flock on
// `kvfile.watch`; the writer checks now and then (without blocking) whether
// anyone does, and while someone does it writes one byte to that file after
// each write, which inotify reports to the tailers' directory watch.

enum WatchFile {
    static let name = "kvfile.watch"
}

/// The writer's side: cheap when nobody watches (no system call per write).
final class WatchNotifier: @unchecked Sendable {
    private let fd: Int32
    private let mutex = PlainMutex()
    private var watched = false
    private var checkedAt: UInt64 = 0
    /// How often to look for watchers, in milliseconds.
    static let recheckMilliseconds: UInt64 = 20

    init(directory: String) {
        fd = (try? Syscalls.open(StoreFiles(directory).watch, O_RDWR | O_CREAT)) ?? -1
    }

    deinit { if fd >= 0 { Syscalls.close(fd) } }

    /// After a write: wake the tailers, if there are any.
    func notify(now milliseconds: UInt64) {
        guard fd >= 0 else { return }
        let shouldSignal = mutex.withLock { () -> Bool in
            if milliseconds &- checkedAt >= WatchNotifier.recheckMilliseconds {
                checkedAt = milliseconds
                watched = Syscalls.isLockedByAnyone(fd)
            }
            return watched
        }
        if shouldSignal { Syscalls.touch(fd) }
    }
}

/// The tailer's side: a shared lock that says "someone watches", and an
/// inotify watch on the store directory.
final class WatchListener {
    private let lockFD: Int32
    private let inotifyFD: Int32

    init(directory: String) throws(KVFileError) {
        let path = StoreFiles(directory).watch
        let fd = (try? Syscalls.open(path, O_RDWR | O_CREAT)) ?? ((try? Syscalls.open(path, O_RDONLY)) ?? -1)
        if fd >= 0 { Syscalls.lockShared(fd) }
        lockFD = fd
        do {
            inotifyFD = try Syscalls.watchDirectory(directory)
        } catch {
            if fd >= 0 { Syscalls.close(fd) }
            throw error
        }
    }

    deinit {
        Syscalls.close(inotifyFD)
        if lockFD >= 0 { Syscalls.close(lockFD) }
    }

    /// Waits until something in the directory changes or `milliseconds` pass; true when something changed.
    func wait(milliseconds: Int) -> Bool {
        guard Syscalls.waitReadable(inotifyFD, milliseconds: milliseconds) else { return false }
        drain()
        return true
    }

    /// The descriptor to poll, for callers that wait on several things.
    var descriptor: Int32 { inotifyFD }

    /// Reads every queued event (they coalesce; their content does not matter).
    func drain() { Syscalls.drain(inotifyFD) }
}
