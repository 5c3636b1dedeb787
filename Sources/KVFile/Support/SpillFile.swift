#if canImport(Glibc)
import Glibc
#endif

/// Scratch bytes on disk, in an unnamed file that is gone when this closes:
/// where a snapshot of every key sorts in bounded memory. Made beside the
/// store (same disk, no name another process could see or a writer could
/// take for a leftover), else in $TMPDIR or /tmp (a store this process may not write to).
final class SpillFile {
    private let fd: Int32
    /// The directory it lives in, for messages.
    let directory: String
    private(set) var end = 0

    init(near store: String) throws(KVFileError) {
        (fd, directory) = try Self.openUnnamed(near: store)
    }

    private static func openUnnamed(near store: String) throws(KVFileError) -> (Int32, String) {
        var candidates = [store]
        if let temporary = getenv("TMPDIR").map({ String(cString: $0) }), !temporary.isEmpty { candidates.append(temporary) }
        candidates.append("/tmp")
        var lastError: KVFileError?
        for directory in candidates {
            do throws(KVFileError) {
                return (try Syscalls.openUnnamed(in: directory), directory)
            } catch {
                lastError = error
            }
        }
        throw lastError!
    }

    deinit { Syscalls.close(fd) }

    func append(_ bytes: UnsafeRawBufferPointer) throws(KVFileError) {
        try Syscalls.pwriteAll(fd, bytes, at: end, path: directory)
        end += bytes.count
    }

    /// Reads up to `buffer.count` bytes at `offset` (fewer only at the end).
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws(KVFileError) -> Int {
        try Syscalls.preadFully(fd, buffer, at: offset, path: directory)
    }
}
