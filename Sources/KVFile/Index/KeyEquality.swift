#if canImport(Glibc)
import Glibc
#endif

/// Key comparison for the lookup paths. Most keys are 8 to 16 bytes: two
/// overlapping 8-byte loads compare them without a call to `memcmp`.
enum KeyEquality {
    @inline(__always)
    static func equal(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, count: Int) -> Bool {
        if count >= 8 && count <= 16 {
            return a.loadUnaligned(as: UInt64.self) == b.loadUnaligned(as: UInt64.self)
                && a.loadUnaligned(fromByteOffset: count - 8, as: UInt64.self)
                    == b.loadUnaligned(fromByteOffset: count - 8, as: UInt64.self)
        }
        return memcmp(a, b, count) == 0
    }
}
