/// A place in the log: a segment and a byte offset in it. Positions only
/// grow as the writer appends, across rolls, so they order syncs and tell
/// where the index stops covering the log.
struct LogPosition: Comparable, Hashable, Sendable {
    var segment: UInt32
    var offset: Int

    init(segment: UInt32, offset: Int) {
        self.segment = segment
        self.offset = offset
    }

    /// From its 64-bit form: segment in the high half, offset in the low half
    /// (the index file's `log end` field, the group commit's counter).
    init(packed: UInt64) {
        segment = UInt32(truncatingIfNeeded: packed >> 32)
        offset = Int(packed & 0xFFFF_FFFF)
    }

    /// The 64-bit form, ordered as positions are.
    var packed: UInt64 { UInt64(segment) << 32 | UInt64(UInt32(truncatingIfNeeded: offset)) }

    static func < (a: LogPosition, b: LogPosition) -> Bool { a.packed < b.packed }
}
