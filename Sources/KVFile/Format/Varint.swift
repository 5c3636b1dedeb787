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

    /// Walks a run of uvarint record sizes at `p` (`count` bytes), the first
    /// record starting at `offset`; calls `body` with each record's start.
    /// Returns where the records end, or nil when a size is zero, runs past
    /// `limit`, or does not read (a list written by no writer).
    @inline(__always)
    static func walkSizes(_ p: UnsafeRawPointer, count: Int, from offset: Int, limit: Int, _ body: (Int) -> Void) -> Int? {
        var position = 0
        var offset = offset
        while position < count {
            guard let size = readSize(p, count: count, at: &position), size > 0, size <= limit - offset else { return nil }
            body(offset)
            offset += size
        }
        return offset
    }

    /// Reads the size at `position` of a run of `count` bytes and moves past
    /// it; nil when it does not read. One or two bytes take no loop.
    @inline(__always)
    private static func readSize(_ p: UnsafeRawPointer, count: Int, at position: inout Int) -> Int? {
        let first = p.load(fromByteOffset: position, as: UInt8.self)
        if first < 0x80 {
            position += 1
            return Int(first)
        }
        if position + 1 < count, case let second = p.load(fromByteOffset: position + 1, as: UInt8.self), second < 0x80 {
            position += 2
            return Int(first & 0x7F) | Int(second) << 7
        }
        guard case .value(let value, let length) = read(p + position, available: count - position), value <= UInt64(Int.max) else { return nil }
        position += length
        return Int(value)
    }
}

extension Varint {
    private static let highBits: UInt64 = 0x8080_8080_8080_8080
    private static let lowBits: UInt64 = 0x7F7F_7F7F_7F7F_7F7F

    /// As ``walkSizes(_:count:from:limit:_:)``, but `body` is called only with
    /// the first record start in each block of `1 << blockShift` bytes (what a
    /// block map's entries name). Eight bytes of sizes are summed at a time
    /// where no block starts among them; the rest is walked size by size.
    static func walkFirstStartsInBlocks(_ p: UnsafeRawPointer, count: Int, from offset: Int, limit: Int, blockShift: Int,
                                        _ body: (Int) -> Void) -> Int? {
        var position = 0
        var offset = offset
        var block = -1
        while position < count {
            if position + 8 <= count {
                let word = UInt64(littleEndian: p.loadUnaligned(fromByteOffset: position, as: UInt64.self))
                let continuing = word & highBits
                // The chunk ends with a whole size: a last byte that continues goes with the next chunk.
                let used = continuing >> 63 == 0 ? 8 : 7
                let usedMask: UInt64 = used == 8 ? ~0 : 0x00FF_FFFF_FFFF_FFFF
                let low = word & lowBits & usedMask
                // Sizes of one or two bytes only (no two continuing bytes in a row), and no
                // byte whose low bits are zero (a size of zero, or a multiple of 128, takes the walk below).
                let lowNotZero = (low &+ lowBits) & highBits
                if continuing & (continuing << 8) == 0 && lowNotZero == highBits & usedMask {
                    // Bytes after a continuing byte hold the high seven bits of their size.
                    let second = (((continuing & usedMask) << 8) >> 7) &* 0xFF
                    let sum = Varint.byteSum(low & ~second) &+ Varint.byteSum(low & second) << 7
                    let end = offset + Int(sum)
                    // No block starts after `offset` and before the chunk's last start (< end).
                    if offset &>> blockShift == block && (end - 1) &>> blockShift == block {
                        guard end <= limit else { return nil }
                        offset = end
                        position += used
                        continue
                    }
                }
            }
            // Size by size (up to the next eight bytes).
            let stop = min(count, position + 8)
            while position < stop {
                guard let size = readSize(p, count: count, at: &position), size > 0, size <= limit - offset else { return nil }
                if offset &>> blockShift != block {
                    block = offset &>> blockShift
                    body(offset)
                }
                offset += size
            }
        }
        return offset
    }

    /// The sum of the eight bytes of `word`.
    @inline(__always)
    private static func byteSum(_ word: UInt64) -> UInt64 {
        let pairs = (word & 0x00FF_00FF_00FF_00FF) &+ (word >> 8 & 0x00FF_00FF_00FF_00FF)
        return (pairs &* 0x0001_0001_0001_0001) >> 48
    }
}
