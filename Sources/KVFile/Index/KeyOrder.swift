#if canImport(Glibc)
import Glibc
#endif

/// The order of keys everywhere they are listed (dump, keys, pages of keys):
/// bytewise, a key before every longer key it starts. One `memcmp`, where the
/// generic `lexicographicallyPrecedes` compares a byte at a time.
enum KeyOrder {
    @inline(__always)
    static func precedes(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        a.withUnsafeBufferPointer { x in
            b.withUnsafeBufferPointer { y in precedes(UnsafeRawBufferPointer(x), UnsafeRawBufferPointer(y)) }
        }
    }

    @inline(__always)
    static func precedes(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
        let common = min(a.count, b.count)
        let order = common == 0 ? 0 : memcmp(a.baseAddress!, b.baseAddress!, common)
        return order != 0 ? order < 0 : a.count < b.count
    }
}
