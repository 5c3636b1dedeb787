/// File bytes read with pread into a buffer of its own, for a probe.
final class PreadView {
    private let fd: Int32
    private let path: String
    private var buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 8)

    init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
    }

    deinit { buffer.deallocate() }

    /// The bytes at [offset, offset + count) or fewer at the file's end; valid until the next call.
    func view(_ offset: Int, _ count: Int) -> UnsafeRawBufferPointer {
        if count > buffer.count {
            buffer.deallocate()
            buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: 8)
        }
        let n = (try? Syscalls.preadFully(fd, UnsafeMutableRawBufferPointer(rebasing: buffer[0..<count]), at: offset, path: path)) ?? 0
        return UnsafeRawBufferPointer(rebasing: buffer[0..<n])
    }
}
