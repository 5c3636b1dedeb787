/// Whether a store is still open, shared by the store and the parts that
/// work for it (the write path, the seal scheduler), so they can check it
/// without holding on to the store. Read and changed under the store's lock.
final class OpenState: @unchecked Sendable {
    let path: String
    var closed = false

    init(path: String) { self.path = path }

    @inline(__always)
    func check() throws(KVFileError) {
        if closed { throw KVFileError(.closed, "store \(path) is closed; open it again to use it") }
    }
}
