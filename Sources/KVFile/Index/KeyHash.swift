/// A fast 64-bit hash of key bytes (wyhash-style multiply-fold mixing).
/// The index file stores where keys hash to: this function is part of the
/// format (man/kvfile.5, "Slot tables") and must not change without a new index version.
enum KeyHash {
    private static let p0: UInt64 = 0xa076_1d64_78bd_642f
    private static let p1: UInt64 = 0xe703_7ed1_a0b4_28db
    private static let p2: UInt64 = 0x8ebc_6af0_9c88_c6e3

    @inline(__always)
    private static func fold(_ a: UInt64, _ b: UInt64) -> UInt64 {
        let product = a.multipliedFullWidth(by: b)
        return product.high ^ product.low
    }

    @inline(__always)
    static func hash(_ p: UnsafeRawPointer, _ count: Int, seed: UInt64) -> UInt64 {
        var h = seed ^ p0
        var position = 0
        while count - position >= 8 {
            h = fold(h ^ UInt64(littleEndian: p.loadUnaligned(fromByteOffset: position, as: UInt64.self)), p1)
            position += 8
        }
        var tail: UInt64 = 0
        var shift: UInt64 = 0
        while position < count {
            tail |= UInt64(p.load(fromByteOffset: position, as: UInt8.self)) << shift
            shift += 8
            position += 1
        }
        return fold(h ^ tail ^ UInt64(count), p2 ^ UInt64(count))
    }
}
