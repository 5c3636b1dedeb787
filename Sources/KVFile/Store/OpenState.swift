/// Whether a store is still open, shared by the store and the parts that
/// work for it (the write path, the seal scheduler), so they can check it
/// without holding on to the store. Read and changed under the store's lock.
final class OpenState: @unchecked Sendable {
    let path: String
    /// Private to this file, so the compiler checks its accesses statically
    /// (a check at run time on every read and write costs more than the read).
    private var closed = false

    init(path: String) { self.path = path }

    var isClosed: Bool { closed }

    func markClosed() { closed = true }

    @inline(__always)
    func check() throws(KVFileError) {
        if closed { throw KVFileError(.closed, "store \(path) is closed; open it again to use it") }
    }
}
