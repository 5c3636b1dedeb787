#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// The writer's lock: an exclusive `flock` on `kvfile.lock`, which holds the
/// holder's pid as text so that a waiting writer can say who has it.
/// The kernel drops the lock when the process dies, so a crash never leaves a stale lock.
final class LockFile {
    let path: String
    private let fd: Int32

    private init(path: String, fd: Int32) {
        self.path = path
        self.fd = fd
    }

    deinit { Syscalls.close(fd) }

    /// Takes the lock of the store in `directory`, waiting up to `timeoutMilliseconds`.
    static func acquire(directory: String, timeoutMilliseconds: Int) throws(KVFileError) -> LockFile {
        let path = StoreFiles(directory).lock
        let file = try OwnedFile(opening: path, O_RDWR | O_CREAT)
        let fd = file.fd
        let deadline = Syscalls.monotonicNanoseconds() + UInt64(timeoutMilliseconds) * 1_000_000
        var pause = 1
        while true {
            if try Syscalls.tryLockExclusive(fd, path: path) { break }
            if Syscalls.monotonicNanoseconds() >= deadline {
                throw lockedError(directory: directory, fd: fd, path: path, waited: timeoutMilliseconds)
            }
            Syscalls.sleep(milliseconds: pause)
            pause = min(pause * 2, 20)
        }
        let text = Array("\(Syscalls.processID)\n".utf8)
        try Syscalls.ftruncate(fd, 0, path: path)
        try withBytes(text) { (bytes) throws(KVFileError) in try Syscalls.pwriteAll(fd, bytes, at: 0, path: path) }
        return LockFile(path: path, fd: file.release())
    }

    /// True while a writer holds the lock of the store in `directory`.
    static func isHeld(directory: String) -> Bool {
        guard let file = try? OwnedFile.openIfExists(StoreFiles(directory).lock, O_RDONLY) else { return false }
        let fd = file.fd
        return Syscalls.isLockedByOther(fd)
    }

    private static func lockedError(directory: String, fd: Int32, path: String, waited: Int) -> KVFileError {
        var buffer = [UInt8](repeating: 0, count: 32)
        let n = (try? withMutableBytes(&buffer) { (bytes) throws(KVFileError) in
            try Syscalls.preadFully(fd, bytes, at: 0, path: path)
        }) ?? 0
        let text = String(decoding: buffer[0..<n], as: UTF8.self).trimmingNewlines()
        let holder: String
        if let pid = Int32(text) {
            holder = pid == Syscalls.processID ? "pid \(pid) (this process: open the store once and share it)" : "pid \(pid)"
        } else {
            holder = "another process"
        }
        return KVFileError(
            .locked,
            "store \(directory) is locked by \(holder); waited \(waited) ms",
            path: path)
    }
}

extension String {
    func trimmingNewlines() -> String {
        var s = Substring(self)
        while let last = s.last, last == "\n" || last == "\r" || last == " " { s = s.dropLast() }
        return String(s)
    }
}
