// The on-disk format, version 1, in one place. man/kvfile.5 describes the same
// bytes in prose; change both together, and bump `version` for any change.

/// Constants and limits of the on-disk format (see `man/kvfile.5`).
public enum RecordFormat {
    /// The format version a writer puts into the header of every segment it
    /// creates: 2 adds the block map of active segments, 3 records' expiry
    /// deadlines, 4 the location of a key's prior record (man/kvfile.5).
    public static let version: UInt16 = 4
    /// The segment versions this kvfile reads: 1 (no block map), 2, 3 and 4.
    public static let readableSegmentVersions: ClosedRange<UInt16> = 1...4
    /// The version of hint files and the compaction marker (unchanged since 1).
    static let hintVersion: UInt16 = 1

    /// "kvfileS\n": the first 8 bytes of every segment file.
    static let segmentMagic: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
        (0x6B, 0x76, 0x66, 0x69, 0x6C, 0x65, 0x53, 0x0A)
    /// "kvfileH\n": the first 8 bytes of every hint file.
    static let hintMagic: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
        (0x6B, 0x76, 0x66, 0x69, 0x6C, 0x65, 0x48, 0x0A)

    /// Size of the fixed segment file header; the first record starts here.
    public static let segmentHeaderSize = 40
    /// Size of the fixed hint file header.
    static let hintHeaderSize = 32

    /// The longest key, in bytes. Keys are 1 to 4096 bytes.
    public static let maxKeyLength = 4096
    /// The largest value, in bytes (64 MiB).
    public static let maxValueLength = 64 << 20
    /// The largest sequence number, 2^51 − 1 (the salvage keydir of `check --repair`
    /// packs it with the key length into 8 bytes): at a million writes a second, 71 years of writes.
    public static let maxSeq: UInt64 = (1 << 51) - 1
    /// The largest encoded batch, in bytes (1 GiB): a batch never spans segments.
    public static let maxBatchBytes = 1 << 30
    /// The largest a segment may grow (record offsets are 32-bit).
    public static let maxSegmentSize = Int(UInt32.max)

    /// Values shorter than this are never compressed: LZ4 cannot win on them.
    static let minCompressibleLength = 32

    // The kind byte of a record: bits 0–1 the operation, bit 2 LZ4, bit 3 "batch continues",
    // bit 4 "a deadline follows ts" (puts), bit 5 "this delete is an expiry" (version 3),
    // bit 6 "the prior record's location follows" (updates and deletes, version 4).
    static let opMask: UInt8 = 0x03
    static let flagLZ4: UInt8 = 0x04
    static let flagContinued: UInt8 = 0x08
    static let flagDeadline: UInt8 = 0x10
    static let flagExpired: UInt8 = 0x20
    static let flagPrior: UInt8 = 0x40
    static let reservedKindBits: UInt8 = 0x80
    /// The most bytes a prior's two varints take (a segment number and an offset, each below 2^32).
    static let maxPriorLength = 10

    /// crc (4) + kind (1) + seq (≤10) + ts (≤10) + deadline (≤10) + prior (≤10) + key length (≤2) + stored (≤4) + raw (≤4).
    static let maxRecordHeaderSize = 55
}

/// What a write did to its key (the change feed's event kinds). The writer decides it from its index.
public enum ChangeKind: UInt8, Sendable, Equatable {
    /// The key did not exist before this record.
    case created = 1
    /// The key existed and this record replaced its value.
    case updated = 2
    /// A tombstone: the key was removed.
    case deleted = 3
}
