#if canImport(Glibc)
import Glibc
#endif

/// An open file descriptor with one owner: it closes itself when that owner
/// lets it go, on every path, thrown errors included. A type that keeps a
/// descriptor for its life (a mapped ``Segment``, the index, the lock) takes
/// it over with ``release()`` once nothing can fail any more.
struct OwnedFile: ~Copyable {
    let fd: Int32

    init(fd: Int32) { self.fd = fd }

    /// Opens `path` (close-on-exec; see ``Syscalls/open(_:_:_:)``).
    init(opening path: String, _ flags: Int32, mode: mode_t = 0o644) throws(KVFileError) {
        fd = try Syscalls.open(path, flags, mode)
    }

    /// Opens `path`, or returns nil when there is no such file.
    static func openIfExists(_ path: String, _ flags: Int32) throws(KVFileError) -> OwnedFile? {
        guard let fd = try Syscalls.openIfExists(path, flags) else { return nil }
        return OwnedFile(fd: fd)
    }

    /// Hands the descriptor to a new owner, which closes it itself.
    consuming func release() -> Int32 {
        let fd = self.fd
        discard self
        return fd
    }

    deinit { Syscalls.close(fd) }
}
