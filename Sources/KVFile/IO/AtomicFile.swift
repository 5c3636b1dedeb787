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
        do throws(KVFileError) {
            let file = try OwnedFile(opening: temporaryPath, O_WRONLY | O_CREAT | O_TRUNC)
            try withBytes(bytes) { (raw) throws(KVFileError) in try Syscalls.pwriteAll(file.fd, raw, at: 0, path: temporaryPath) }
            try Syscalls.fdatasync(file.fd, path: temporaryPath)
        } catch {
            try? Syscalls.unlink(temporaryPath)
            throw error
        }
        guard rename else { return }
        try Syscalls.rename(temporaryPath, path)
        if let directory { try Syscalls.syncDirectory(directory) }
    }
}
