#if canImport(Glibc)
import Glibc
#endif

/// Small files replaced whole (the compaction marker, hint files): written
/// under a temporary name, synced, then renamed into place, so a reader
/// finds the old file or the whole new one and never a part.
enum AtomicFile {
    /// Writes `bytes` to `path` through `StoreFiles.temporary(of: path)`. With
    /// `rename: false` the file stays under its temporary name (compaction
    /// renames its outputs later); `syncDirectory` makes the rename durable
    /// (callers that rename more files first sync once after). The temporary
    /// file is removed when a step fails.
    static func write(_ bytes: [UInt8], to path: String, rename: Bool = true, syncDirectory directory: String?) throws(KVFileError) {
        let temporaryPath = StoreFiles.temporary(of: path)
        let fd = try Syscalls.open(temporaryPath, O_WRONLY | O_CREAT | O_TRUNC)
        do throws(KVFileError) {
            try withBytes(bytes) { (raw) throws(KVFileError) in try Syscalls.pwriteAll(fd, raw, at: 0, path: temporaryPath) }
            try Syscalls.fdatasync(fd, path: temporaryPath)
        } catch {
            Syscalls.close(fd)
            try? Syscalls.unlink(temporaryPath)
            throw error
        }
        Syscalls.close(fd)
        guard rename else { return }
        try Syscalls.rename(temporaryPath, path)
        if let directory { try Syscalls.syncDirectory(directory) }
    }
}
