// Every raw system call the engine makes lives here: retried on EINTR, failures
// turned into KVFileError with the path and errno. Nothing else touches errno.
#if canImport(Glibc)
@preconcurrency import Glibc
#endif
import CKVFileSupport

enum Syscalls {
    static func errorText(_ code: Int32) -> String {
        guard let text = strerror(code) else { return "errno \(code)" }
        return String(cString: text)
    }

    /// States what failed: the call, the path, the system's words for errno, and
    /// what that means for the store (remedies are the tool's).
    static func ioError(_ operation: String, _ path: String, _ code: Int32) -> KVFileError {
        let meaning: String
        switch code {
        case ENOSPC, EDQUOT: meaning = " The disk is full."
        case EROFS: meaning = " The file system is read-only."
        case EIO: meaning = " The device reported an I/O error."
        default: meaning = ""
        }
        return KVFileError(.io, "\(operation) \(path): \(errorText(code)).\(meaning)", path: path, errno: code)
    }

    @inline(__always)
    static func retrying(_ call: () -> Int) -> (Int, Int32) {
        while true {
            let result = call()
            if result >= 0 { return (result, 0) }
            let code = Glibc.errno
            if code != EINTR { return (result, code) }
        }
    }

    /// A test's fault twin for `path`, if one is installed (debug builds only), after it had its say on `call`.
    @inline(__always)
    static func inject(_ call: FileCall, _ path: String) throws(KVFileError) -> (any FaultTwin)? {
        guard let faults = FileCallSeam.twin(covering: path) else { return nil }
        try faults.check(call, path)
        return faults
    }

    static func open(_ path: String, _ flags: Int32, _ mode: mode_t = 0o644) throws(KVFileError) -> Int32 {
        _ = try inject(.open, path)
        let (fd, code) = retrying { Int(Glibc.open(path, flags | O_CLOEXEC, mode)) }
        if fd < 0 { throw ioError("cannot open", path, code) }
        return Int32(fd)
    }

    /// Like `open`, but returns nil for ENOENT.
    static func openIfExists(_ path: String, _ flags: Int32) throws(KVFileError) -> Int32? {
        _ = try inject(.open, path)
        let (fd, code) = retrying { Int(Glibc.open(path, flags | O_CLOEXEC, 0o644)) }
        if fd < 0 {
            if code == ENOENT { return nil }
            throw ioError("cannot open", path, code)
        }
        return Int32(fd)
    }

    /// An unnamed file in `directory` for scratch data (gone when closed).
    static func openUnnamed(in directory: String) throws(KVFileError) -> Int32 {
        _ = try inject(.open, directory)
        let fd = kvf_open_unnamed(directory)
        if fd < 0 { throw ioError("cannot make a temporary file in", directory, Glibc.errno) }
        return fd
    }

    /// True when `path` names a file that can be opened for reading.
    static func exists(_ path: String) throws(KVFileError) -> Bool {
        guard let fd = try openIfExists(path, O_RDONLY) else { return false }
        close(fd)
        return true
    }

    static func close(_ fd: Int32) {
        _ = Glibc.close(fd)  // never retried: Linux frees the descriptor even on EINTR
    }

    /// Writes every byte or throws.
    static func pwriteAll(_ fd: Int32, _ buffer: UnsafeRawBufferPointer, at offset: Int, path: String) throws(KVFileError) {
        let faults = try inject(.write, path)
        let limit = faults?.writeLimit ?? Int.max
        var done = 0
        while done < buffer.count {
            let (n, code) = retrying {
                Glibc.pwrite(fd, buffer.baseAddress! + done, min(limit, buffer.count - done), off_t(offset + done))
            }
            if n < 0 { throw ioError("cannot write to", path, code) }
            if n == 0 { throw ioError("cannot write to", path, EIO) }
            done += n
        }
    }

    /// Reads up to `buffer.count` bytes; returns how many (short only at end of file).
    static func preadFully(_ fd: Int32, _ buffer: UnsafeMutableRawBufferPointer, at offset: Int, path: String) throws(KVFileError) -> Int {
        let faults = try inject(.read, path)
        var done = 0
        while done < buffer.count {
            let (n, code) = retrying {
                Glibc.pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset + done))
            }
            if n < 0 { throw ioError("cannot read", path, code) }
            if n == 0 { break }
            done += n
        }
        faults?.didRead(path, at: offset, UnsafeMutableRawBufferPointer(rebasing: buffer[0..<done]))
        return done
    }

    static func fdatasync(_ fd: Int32, path: String) throws(KVFileError) {
        try sync(fd, path: path) { Glibc.fdatasync(fd) }
    }

    static func fsync(_ fd: Int32, path: String) throws(KVFileError) {
        try sync(fd, path: path) { Glibc.fsync(fd) }
    }

    /// A failed sync may have dropped the data it could not write: the twin
    /// then keeps the file as it was at its last good sync, for good.
    private static func sync(_ fd: Int32, path: String, _ call: () -> Int32) throws(KVFileError) {
        let faults: (any FaultTwin)?
        do throws(KVFileError) {
            faults = try inject(.sync, path)
        } catch {
            FileCallSeam.twin(covering: path)?.syncFailed(fd, path)
            throw error
        }
        let (r, code) = retrying { Int(call()) }
        if r < 0 {
            faults?.syncFailed(fd, path)
            throw ioError("cannot sync", path, code)
        }
        faults?.didSync(fd, path)
    }

    /// fsync of a directory, so that created, renamed and removed names are durable.
    static func syncDirectory(_ path: String) throws(KVFileError) {
        _ = try inject(.syncDirectory, path)
        let fd = try open(path, O_RDONLY | O_DIRECTORY)
        defer { close(fd) }
        try fsync(fd, path: path)
    }

    /// Maps `length` bytes of `fd` (shared when `writable`, else private and read-only).
    static func map(_ fd: Int32, length: Int, writable: Bool, shared: Bool, path: String) throws(KVFileError) -> UnsafeMutableRawPointer {
        _ = try inject(.map, path)
        let mapping = mmap(nil, length, writable ? PROT_READ | PROT_WRITE : PROT_READ, shared ? MAP_SHARED : MAP_PRIVATE, fd, 0)
        guard let mapping, mapping != UnsafeMutableRawPointer(bitPattern: -1) else {
            throw ioError("cannot map", path, errno)
        }
        return mapping
    }

    /// Replaces a shared mapping of `fd` at `base` by a read-only one of the
    /// same pages, in place (readers of the range never see it unmapped).
    /// False when the kernel refused: the old mapping stays.
    static func remapReadOnly(_ base: UnsafeRawPointer, length: Int, fd: Int32) -> Bool {
        let mapping = mmap(UnsafeMutableRawPointer(mutating: base), length, PROT_READ, MAP_SHARED | MAP_FIXED, fd, 0)
        return mapping == UnsafeMutableRawPointer(mutating: base)
    }

    static func ftruncate(_ fd: Int32, _ length: Int, path: String) throws(KVFileError) {
        _ = try inject(.truncate, path)
        let (r, code) = retrying { Int(Glibc.ftruncate(fd, off_t(length))) }
        if r < 0 { throw ioError("cannot truncate", path, code) }
    }

    static func fileSize(_ fd: Int32, path: String) throws(KVFileError) -> Int {
        var info = stat()
        let (r, code) = retrying { Int(Glibc.fstat(fd, &info)) }
        if r < 0 { throw ioError("cannot stat", path, code) }
        return Int(info.st_size)
    }

    /// How many names the open file has (0 once it was removed).
    static func linkCount(_ fd: Int32, path: String) throws(KVFileError) -> Int {
        var info = stat()
        let (r, code) = retrying { Int(Glibc.fstat(fd, &info)) }
        if r < 0 { throw ioError("cannot stat", path, code) }
        return Int(info.st_nlink)
    }

    enum PathKind { case missing, directory, regularFile, other }

    static func kind(of path: String) throws(KVFileError) -> PathKind {
        var info = stat()
        let (r, code) = retrying { Int(stat(path, &info)) }
        if r < 0 {
            if code == ENOENT { return .missing }
            throw ioError("cannot stat", path, code)
        }
        switch info.st_mode & S_IFMT {
        case S_IFDIR: return .directory
        case S_IFREG: return .regularFile
        default: return .other
        }
    }

    static func makeDirectory(_ path: String) throws(KVFileError) {
        let (r, code) = retrying { Int(Glibc.mkdir(path, 0o755)) }
        if r < 0 && code == ENOENT {
            throw KVFileError(.io, "cannot create directory \(path): its parent directory does not exist. Create it first (mkdir -p).", path: path, errno: code)
        }
        if r < 0 && code != EEXIST { throw ioError("cannot create directory", path, code) }
    }

    static func rename(_ from: String, _ to: String) throws(KVFileError) {
        let faults = try inject(.rename, to)
        faults?.willRemove(to)
        let (r, code) = retrying { Int(Glibc.rename(from, to)) }
        if r < 0 { throw ioError("cannot rename \(from) to", to, code) }
    }

    /// A second name for a file (hard link).
    static func link(_ from: String, _ to: String) throws(KVFileError) {
        _ = try inject(.rename, to)
        let (r, code) = retrying { Int(Glibc.link(from, to)) }
        if r < 0 { throw ioError("cannot link \(from) to", to, code) }
    }

    static func unlink(_ path: String) throws(KVFileError) {
        try inject(.unlink, path)?.willRemove(path)
        let (r, code) = retrying { Int(Glibc.unlink(path)) }
        if r < 0 && code != ENOENT { throw ioError("cannot remove", path, code) }
    }

    /// The names in a directory, without "." and "..".
    static func listDirectory(_ path: String) throws(KVFileError) -> [String] {
        guard let dir = opendir(path) else { throw ioError("cannot list", path, Glibc.errno) }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) { pointer in
                pointer.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// True when another process holds an exclusive lock on `fd`'s file (a shared one is taken and let go at once).
    static func isLockedByOther(_ fd: Int32) -> Bool {
        let (r, code) = retrying { Int(flock(fd, LOCK_SH | LOCK_NB)) }
        if r == 0 { _ = flock(fd, LOCK_UN) }
        return r != 0 && code == EWOULDBLOCK
    }

    /// Takes a shared flock on `fd`, waiting for it; false when it cannot be taken.
    @discardableResult
    static func lockShared(_ fd: Int32) -> Bool {
        retrying { Int(flock(fd, LOCK_SH)) }.0 == 0
    }

    /// True when some other descriptor holds a lock (shared or exclusive) on `fd`'s file:
    /// an exclusive one is taken and let go at once when nobody does.
    static func isLockedByAnyone(_ fd: Int32) -> Bool {
        let (r, code) = retrying { Int(flock(fd, LOCK_EX | LOCK_NB)) }
        if r == 0 { _ = flock(fd, LOCK_UN) }
        return r != 0 && code == EWOULDBLOCK
    }

    /// Tries to take an exclusive flock without waiting; false when another holder has it.
    static func tryLockExclusive(_ fd: Int32, path: String) throws(KVFileError) -> Bool {
        let (r, code) = retrying { Int(flock(fd, LOCK_EX | LOCK_NB)) }
        if r == 0 { return true }
        if code == EWOULDBLOCK { return false }
        throw ioError("cannot lock", path, code)
    }

    /// Grows a file from `from` to `to` bytes with real disk blocks (zeros), so
    /// later stores into a mapping of it cannot hit a full disk.
    static func reserve(_ fd: Int32, from: Int, to: Int, path: String) throws(KVFileError) {
        guard to > from else { return }
        let faults = try inject(.reserve, path)
        let code = faults?.takeSpace(to - from) == false ? ENOSPC : kvf_fallocate(fd, Int64(from), Int64(to - from))
        if code == 0 { return }
        if code == EOPNOTSUPP || code == ENOSYS {
            // A file system without fallocate: grow the file (never shrink it); blocks come on first write.
            if try fileSize(fd, path: path) < to { try ftruncate(fd, to, path: path) }
            return
        }
        throw ioError("cannot reserve \(to - from) bytes in", path, code)
    }

    /// Gives back the disk space of [from, to) without changing the file's size
    /// (space reserved and not used); file systems that cannot keep it reserved.
    /// Returns false when the file system cannot punch holes (nothing changed then).
    @discardableResult
    static func release(_ fd: Int32, from: Int, to: Int, path: String) -> Bool {
        guard to > from else { return true }
        return kvf_punch_hole(fd, Int64(from), Int64(to - from)) == 0
    }

    /// Gives back a mapping made with ``map(_:length:writable:shared:path:)``.
    static func unmap(_ address: UnsafeRawPointer, length: Int) {
        _ = munmap(UnsafeMutableRawPointer(mutating: address), length)
    }

    /// How the kernel should read ahead in a mapping: `.random` for lookups, `.sequential` for scans;
    /// `.free` drops anonymous pages (they read as zeros after).
    enum Advice { case random, sequential, free }

    static func advise(_ address: UnsafeRawPointer, length: Int, _ advice: Advice) {
        let flag = switch advice {
        case .random: MADV_RANDOM
        case .sequential: MADV_SEQUENTIAL
        case .free: MADV_DONTNEED
        }
        _ = madvise(UnsafeMutableRawPointer(mutating: address), length, flag)
    }

    /// Watches `directory` for entries created, removed, renamed or written
    /// (inotify); returns a non-blocking descriptor to poll.
    static func watchDirectory(_ directory: String) throws(KVFileError) -> Int32 {
        let fd = inotify_init1(Int32(IN_CLOEXEC | IN_NONBLOCK))
        if fd < 0 { throw ioError("cannot watch", directory, Glibc.errno) }
        let mask = UInt32(IN_CREATE | IN_MOVED_TO | IN_DELETE | IN_MOVED_FROM | IN_MODIFY | IN_CLOSE_WRITE)
        if inotify_add_watch(fd, directory, mask) < 0 {
            let code = Glibc.errno
            close(fd)
            throw ioError("cannot watch", directory, code)
        }
        return fd
    }

    /// Waits until `fd` is readable or `milliseconds` pass; true when it is readable.
    static func waitReadable(_ fd: Int32, milliseconds: Int) -> Bool {
        var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&entry, 1, Int32(milliseconds)) > 0
    }

    /// Reads a non-blocking descriptor until nothing is left, throwing the bytes away.
    static func drain(_ fd: Int32) {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while buffer.withUnsafeMutableBytes({ read(fd, $0.baseAddress!, $0.count) }) > 0 {}
    }

    /// Writes one byte at offset 0, ignoring failure (a wake-up signal, not data).
    static func touch(_ fd: Int32) {
        var byte: UInt8 = 1
        _ = pwrite(fd, &byte, 1, 0)
    }

    /// True when every page of the `count` bytes at `address` is in memory
    /// (mincore), so reading them cannot wait for the disk. False for bytes
    /// not mapped.
    static func isInMemory(_ address: UnsafeRawPointer, count: Int) -> Bool {
        let pageSize = 4096
        var start = Int(bitPattern: address) & ~(pageSize - 1)
        let end = Int(bitPattern: address) + max(count, 1)
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 64) { vector in
            while start < end {
                let pages = min(64, (end - start + pageSize - 1) / pageSize)
                guard mincore(UnsafeMutableRawPointer(bitPattern: start), pages * pageSize, vector.baseAddress!) == 0 else { return false }
                for page in 0..<pages where vector[page] & 1 == 0 { return false }
                start += pages * pageSize
            }
            return true
        }
    }

    static func sleep(milliseconds: Int) {
        var request = timespec(tv_sec: milliseconds / 1000, tv_nsec: (milliseconds % 1000) * 1_000_000)
        var remaining = timespec()
        while nanosleep(&request, &remaining) != 0 && Glibc.errno == EINTR { request = remaining }
    }

    /// Milliseconds since the Unix epoch.
    static func wallClockMilliseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return UInt64(now.tv_sec) * 1000 + UInt64(now.tv_nsec) / 1_000_000
    }

    /// Monotonic nanoseconds, for timeouts and intervals.
    static func monotonicNanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
    }

    /// Monotonic milliseconds.
    static func monotonicMilliseconds() -> UInt64 { monotonicNanoseconds() / 1_000_000 }

    static var processID: Int32 { getpid() }
}
