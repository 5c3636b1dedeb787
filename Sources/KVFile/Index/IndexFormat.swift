// The index file, kvfile.index (see man/kvfile.5, "The index file"). All
// integers little-endian. The file is mapped by every process that opens the
// store; the writer changes it in place, readers probe it without locks.
//
// Page 0, the header:
//     0  magic        8 bytes "kvfileX\n"
//     8  version      u32 (1)
//    12  state        u32: 1 closed cleanly, 2 open by a writer (or left by one that died), 3 replaced by a new file
//    16  seed         u64: the key hash's seed
//    24  boot id      16 bytes: the boot (/proc/sys/kernel/random/boot_id) of the writer that set `state`
//    40  reserved     u64, 0
//    48  table        u64: file offset of the slot table
//    56  capacity     u64: its slots (a power of two, at least 1024)
//    64  old table    u64: the table a resize is emptying (0: none)
//    72  old capacity u64
//    80  migrated     u64: old-table slots below this have moved
//    88  layout       u64: even; odd while 48..<88 change
//    96  keys         u64: live keys
//   104  live bytes   u64: sum of the record sizes of live keys
//   112  deleted      u64: slots of the table holding the deleted marker
//   120  log end      u64: segment << 32 | offset; every record before it is in the index
//   128  next seq     u64: the sequence number the next write gets
//   136  region end   u64: bytes of the file tables may use (grows with them)
//   144  changes      u64: odd while the writer applies a write (a batch is applied whole)
//   152  highest      u64: the highest segment number ever handed out (none is used twice)
//   160  deadlines    u64: nonzero when the log may hold values with deadlines
//   168  earliest     u64: no deadline in the log is before this (ms; 0: none known)
//   176  segment-table page CRCs: 32 × u32 (valid in state 1)
//   304  identity     u64 device, u64 inode of this file when a writer set state 2 (0, 0: not recorded)
//  4092  header crc   u32: CRC-32C of bytes 0..<4092 (valid in state 1)
//
// Pages 1-32, the segment table: 4096 entries of 32 bytes, one per segment
// the log holds (id 0: free):
//     0 id u32 · 4 segment header crc u32 · 8 min seq u64 · 16 live bytes u64 ·
//    24 size when sealed u32 (0: not sealed) · 28 hint file bytes u32
//
// A slot table: `capacity` u64 slots, then one CRC-32C per 4 KiB page of
// slots (valid in state 1). A slot is 0 (empty), 1 (deleted) or
//     bits 0-31 record offset · 32-55 segment id · 56-62 tag (hash bits 57-63) ·
//     63: 1 only while an index is built (the key is deleted; the slot names its tombstone)
// and a key's probe starts at slot hash & (capacity - 1), going up by one (wrapping).

enum IndexFormat {
    static let fileName = "kvfile.index"
    static let magic: Magic = (0x6B, 0x76, 0x66, 0x69, 0x6C, 0x65, 0x58, 0x0A)  // "kvfileX\n"
    static let version: UInt32 = 1
    static let pageSize = 4096

    static let stateClosed: UInt32 = 1
    static let stateOpen: UInt32 = 2
    /// A writer built a new index file in its place: whoever maps this one opens the new one.
    static let stateReplaced: UInt32 = 3

    // Header fields.
    static let versionAt = 8
    static let stateAt = 12
    static let seedAt = 16
    static let bootAt = 24
    static let tableAt = 48
    static let capacityAt = 56
    static let oldTableAt = 64
    static let oldCapacityAt = 72
    static let migratedAt = 80
    static let layoutAt = 88
    static let keysAt = 96
    static let liveBytesAt = 104
    static let deletedAt = 112
    static let logEndAt = 120
    static let nextSeqAt = 128
    static let regionEndAt = 136
    static let changesAt = 144
    static let highestSegmentAt = 152
    /// Nonzero when the log may hold values with deadlines (a new index says so until a sweep finds none).
    static let deadlinesAt = 160
    /// The earliest deadline a value in the log may have (ms since the epoch; 0: none known).
    static let earliestDeadlineAt = 168
    static let segmentPageCRCsAt = 176
    /// The index file's own device and inode numbers (u64 each) when a writer set
    /// state open: in a copy (cp -r of a live store) they differ, and the copy's
    /// index may be ahead of the copy's segments. 0 and 0: not recorded.
    static let identityAt = 304
    static let headerCRCAt = 4092

    // The segment table.
    static let segmentTableAt = pageSize
    static let segmentEntrySize = 32
    static let segmentEntries = 4096

    /// True when segment table entry `entry` was made for the file whose header is `header` (its CRC is at offset 4).
    static func entry(_ entry: UnsafeRawPointer, describes header: SegmentHeader) -> Bool {
        entry.loadLE(at: 4, as: UInt32.self) == header.checksum
    }
    static let segmentTablePages = segmentEntries * segmentEntrySize / pageSize
    /// Where slot tables may start.
    static let tablesStart = segmentTableAt + segmentTablePages * pageSize

    // Slots.
    static let emptySlot: UInt64 = 0
    static let deletedSlot: UInt64 = 1
    static let minCapacity = 1024
    /// Segment ids a slot can name.
    static let maxSegmentID = UInt32(1 << 24) - 1

    /// Refuses a segment number a slot cannot name.
    static func checkSegmentID(_ id: UInt32, store: String) throws(KVFileError) {
        if id > maxSegmentID {
            throw KVFileError(.capacityExhausted, "store \(store) has used up its segment numbers (the last is \(maxSegmentID))", path: store)
        }
    }
    static let slotsPerPage = pageSize / 8

    @inline(__always) static func tag(_ hash: UInt64) -> UInt64 { hash >> 57 }

    @inline(__always) static func slot(segment: UInt32, offset: UInt32, hash: UInt64) -> UInt64 {
        tag(hash) << 56 | UInt64(segment) << 32 | UInt64(offset)
    }

    @inline(__always) static func segment(_ slot: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: slot >> 32) & 0xFF_FFFF }
    @inline(__always) static func offset(_ slot: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: slot) }
    @inline(__always) static func slotTag(_ slot: UInt64) -> UInt64 { (slot >> 56) & 0x7F }

    /// Bytes of a slot table with its page checksums, rounded up to whole pages.
    static func tableBytes(capacity: Int) -> Int {
        let slotBytes = capacity * 8
        let pages = (slotBytes + pageSize - 1) / pageSize
        return (slotBytes + pages * 4 + pageSize - 1) / pageSize * pageSize
    }

    /// The largest table: 2^28 slots (2 GiB; 188 million keys at 70% load).
    static let maxCapacity = 1 << 28
    /// The address space each process reserves for the file, so growth never remaps: room for
    /// the largest table, the one it replaces and the space earlier ones left (it is only address space).
    static let addressSpace = 1 << 34
}

/// This boot's id: an index left open by a writer that died in this boot is
/// as current as the page cache; one from an earlier boot may have lost writes.
enum BootID {
    static let current: (UInt64, UInt64) = {
        guard let file = try? OwnedFile.openIfExists("/proc/sys/kernel/random/boot_id", 0) else { return (0, 0) }
        let fd = file.fd
        var raw = [UInt8](repeating: 0, count: 64)
        let n = (try? withMutableBytes(&raw) { (bytes) throws(KVFileError) in try Syscalls.preadFully(fd, bytes, at: 0, path: "boot_id") }) ?? 0
        var digits: [UInt8] = []
        for byte in raw[0..<n] where byte != UInt8(ascii: "-") && byte != UInt8(ascii: "\n") { digits.append(byte) }
        guard digits.count == 32, let high = UInt64(String(decoding: digits[0..<16], as: UTF8.self), radix: 16),
              let low = UInt64(String(decoding: digits[16..<32], as: UTF8.self), radix: 16) else { return (0, 0) }
        return (high, low)
    }()
}
