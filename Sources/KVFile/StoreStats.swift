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
    /// Memory the keydir holds, in bytes.
    public var keydirBytes: Int

    /// Keydir memory per live key (0 for an empty store).
    public var keydirBytesPerKey: Double { keys == 0 ? 0 : Double(keydirBytes) / Double(keys) }
}
