/// A summary of a store, as `kvfile stat` shows it.
public struct StoreStats: Sendable, Equatable {
    /// Live keys.
    public var keys: Int
    /// Segment files, the active one included.
    public var segments: Int
    /// Bytes of all segment files.
    public var segmentBytes: Int
    /// Bytes of all hint files.
    public var hintBytes: Int
    /// Bytes of records that are the latest for a live key.
    public var liveBytes: Int
    /// Bytes of records that compaction could drop (overwritten values, tombstones, headers excluded).
    public var deadBytes: Int
    /// The smallest sequence number still in the log (0 when it is empty).
    public var oldestSeq: UInt64
    /// The largest sequence number written so far (0 when none).
    public var newestSeq: UInt64
    /// The on-disk format version.
    public var formatVersion: Int
    /// Bytes of the index's slot tables (in the index file, or in memory for a reader without one).
    public var keydirBytes: Int
    /// True when the index is the store's shared file (`kvfile.index`), false when this reader built one in memory.
    public var indexIsShared = false
    /// Disk space the index file takes (0 when there is none).
    public var indexBytes = 0
    /// Slots of the index's table; `keys` / `indexSlots` is its load.
    public var indexSlots = 0

    /// Each segment, in number order.
    public var segmentDetails: [SegmentStats] = []
    /// The oldest sequence number a change feed can resume after
    /// (``FeedStart/after(seq:)``, `kvfile watch --since`): compaction removed
    /// the history before it (0: none removed).
    public var resumeFloor: UInt64 = 0
    /// What the last compaction by this store object did (nil when none ran).
    public var lastCompaction: CompactionResult?

    /// Index bytes per live key (0 for an empty store).
    public var keydirBytesPerKey: Double { keys == 0 ? 0 : Double(keydirBytes) / Double(keys) }
}

/// One segment file, as ``StoreStats`` reports it.
public struct SegmentStats: Sendable, Equatable {
    /// The segment number (its file is NNNNNNNN.kvseg).
    public var id: UInt32
    /// Bytes of the file.
    public var bytes: Int
    /// Bytes of records that are the latest for their key.
    public var liveBytes: Int
    /// The share of record bytes compaction would drop (0...1).
    public var deadRatio: Double
    /// The segment writers append to.
    public var isActive: Bool
    /// Written by compaction.
    public var isCompactionOutput: Bool
}
