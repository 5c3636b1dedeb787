#if canImport(Glibc)
@preconcurrency import Glibc
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
        fd = (try? Syscalls.open(directory + "/" + WatchFile.name, O_RDWR | O_CREAT)) ?? -1
    }

    deinit { if fd >= 0 { Syscalls.close(fd) } }

    /// After a write: wake the tailers, if there are any.
    func notify(now milliseconds: UInt64) {
        guard fd >= 0 else { return }
        let shouldSignal = mutex.withLock { () -> Bool in
            if milliseconds &- checkedAt >= WatchNotifier.recheckMilliseconds {
                checkedAt = milliseconds
                if flock(fd, LOCK_EX | LOCK_NB) == 0 {
                    flock(fd, LOCK_UN)
                    watched = false
                } else {
                    watched = errno == EWOULDBLOCK
                }
            }
            return watched
        }
        if shouldSignal {
            var byte: UInt8 = 1
            _ = pwrite(fd, &byte, 1, 0)
        }
    }
}

/// The tailer's side: a shared lock that says "someone watches", and an
/// inotify watch on the store directory.
final class WatchListener {
    private let lockFD: Int32
    private let inotifyFD: Int32

    init(directory: String) throws(KVFileError) {
        let path = directory + "/" + WatchFile.name
        let fd = (try? Syscalls.open(path, O_RDWR | O_CREAT)) ?? ((try? Syscalls.open(path, O_RDONLY)) ?? -1)
        if fd >= 0 {
            while flock(fd, LOCK_SH) != 0 && errno == EINTR {}
        }
        lockFD = fd
        let ifd = inotify_init1(Int32(IN_CLOEXEC | IN_NONBLOCK))
        if ifd < 0 {
            if fd >= 0 { Syscalls.close(fd) }
            throw Syscalls.ioError("cannot watch", directory, errno)
        }
        let mask = UInt32(IN_CREATE | IN_MOVED_TO | IN_DELETE | IN_MOVED_FROM | IN_MODIFY | IN_CLOSE_WRITE)
        if inotify_add_watch(ifd, directory, mask) < 0 {
            let code = errno
            Syscalls.close(ifd)
            if fd >= 0 { Syscalls.close(fd) }
            throw Syscalls.ioError("cannot watch", directory, code)
        }
        inotifyFD = ifd
    }

    deinit {
        Syscalls.close(inotifyFD)
        if lockFD >= 0 { Syscalls.close(lockFD) }
    }

    /// Waits until something in the directory changes or `milliseconds` pass; true when something changed.
    func wait(milliseconds: Int) -> Bool {
        var entry = pollfd(fd: inotifyFD, events: Int16(POLLIN), revents: 0)
        let ready = poll(&entry, 1, Int32(milliseconds))
        guard ready > 0 else { return false }
        drain()
        return true
    }

    /// The descriptor to poll, for callers that wait on several things.
    var descriptor: Int32 { inotifyFD }

    /// Reads every queued event (they coalesce; their content does not matter).
    func drain() {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while buffer.withUnsafeMutableBytes({ read(inotifyFD, $0.baseAddress!, $0.count) }) > 0 {}
    }
}
