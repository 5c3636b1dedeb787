// Unsigned LEB128 varints ("uvarint"), as in protobuf and Go's encoding/binary.
// See man/kvfile.5, "Varints".

enum Varint {
    @inline(__always)
    static func encodedLength(_ value: UInt64) -> Int {
        var v = value
        var n = 1
        while v >= 0x80 { v >>= 7; n += 1 }
        return n
    }

    /// Writes `value` at `p` and returns the number of bytes written (1–10).
    @inline(__always)
    static func write(_ value: UInt64, to p: UnsafeMutableRawPointer) -> Int {
        var v = value
        var i = 0
        while v >= 0x80 {
            p.storeBytes(of: UInt8(truncatingIfNeeded: v) | 0x80, toByteOffset: i, as: UInt8.self)
            v >>= 7
            i += 1
        }
        p.storeBytes(of: UInt8(truncatingIfNeeded: v), toByteOffset: i, as: UInt8.self)
        return i + 1
    }

    enum ReadResult {
        case value(UInt64, length: Int)
        /// The bytes ran out before the varint ended.
        case truncated
        /// More than 10 bytes, or a 10th byte above 1: not a valid uvarint.
        case overlong
    }

    /// Reads a uvarint from `p`, never looking at or past `p + available`.
    @inline(__always)
    static func read(_ p: UnsafeRawPointer, available: Int) -> ReadResult {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        var i = 0
        while i < available {
            let byte = p.load(fromByteOffset: i, as: UInt8.self)
            if i == 9 && byte > 1 { return .overlong }
            result |= UInt64(byte & 0x7F) << shift
            i += 1
            if byte < 0x80 { return .value(result, length: i) }
            shift += 7
            if i == 10 { return .overlong }
        }
        return .truncated
    }
}
