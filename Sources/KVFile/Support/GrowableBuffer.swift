#if canImport(Glibc)
import Glibc
#endif

/// A growable run of bytes in memory we manage ourselves, so that the hot
/// append paths reuse one allocation instead of making Arrays.
final class GrowableBuffer {
    private(set) var base: UnsafeMutableRawPointer
    private(set) var capacity: Int
    var count = 0

    init(capacity: Int = 4096) {
        self.capacity = max(capacity, 64)
        base = malloc(self.capacity)!
    }

    deinit { free(base) }

    /// Makes room for `extra` more bytes past `count` and returns where they start.
    @inline(__always)
    func reserve(_ extra: Int) -> UnsafeMutableRawPointer {
        if count + extra > capacity { grow(to: count + extra) }
        return base + count
    }

    private func grow(to needed: Int) {
        var newCapacity = capacity
        while newCapacity < needed { newCapacity = newCapacity + newCapacity / 2 + 64 }
        base = realloc(base, newCapacity)!
        capacity = newCapacity
    }

    func append(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { return }
        reserve(bytes.count).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        count += bytes.count
    }

    @inline(__always)
    func appendVarint(_ value: UInt64) {
        let p = reserve(10)
        count += Varint.write(value, to: p)
    }

    @inline(__always)
    func appendByte(_ value: UInt8) {
        reserve(1).storeBytes(of: value, as: UInt8.self)
        count += 1
    }

    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }
}
