/// What one compaction did.
public struct CompactionResult: Sendable, Equatable {
    /// Segments compaction read and removed.
    public var inputSegments: Int
    /// Segments it wrote.
    public var outputSegments: Int
    /// Bytes of the input segments and their hint files.
    public var bytesBefore: Int
    /// Bytes of the output segments and their hint files.
    public var bytesAfter: Int
    /// Records it copied (live values and the tombstones still needed).
    public var recordsCopied: Int
    /// Records it dropped (overwritten values and tombstones no longer needed).
    public var recordsDropped: Int
    /// Wall-clock seconds it took.
    public var seconds: Double

    /// Bytes given back to the file system.
    public var bytesReclaimed: Int { bytesBefore - bytesAfter }
}

/// When a writer compacts by itself (see ``StoreOptions/autoCompaction``).
public struct CompactionPolicy: Sendable, Equatable {
    /// A sealed segment is compacted once this share of its record bytes is dead (0...1).
    public var minDeadRatio: Double
    /// ...and the dead bytes over all sealed segments reach at least this much.
    public var minDeadBytes: Int

    /// Half dead, at least 64 MiB to gain (the anchors: Kafka's
    /// `min.cleanable.dirty.ratio` 0.5, Bitcask's fragmentation trigger).
    public init(minDeadRatio: Double = 0.5, minDeadBytes: Int = 64 << 20) {
        self.minDeadRatio = minDeadRatio
        self.minDeadBytes = minDeadBytes
    }

    /// The segments of `sealed` this policy compacts: those dead enough, or
    /// none when together they would give back less than `minDeadBytes`.
    func inputs(from sealed: [Segment]) -> [Segment] {
        func deadBytes(_ segment: Segment) -> Int { segment.length - RecordFormat.segmentHeaderSize - segment.liveBytes }
        let chosen = sealed.filter { segment in
            let records = segment.length - RecordFormat.segmentHeaderSize
            return records > 0 && Double(deadBytes(segment)) >= minDeadRatio * Double(records)
        }
        return chosen.reduce(0) { $0 + deadBytes($1) } < minDeadBytes ? [] : chosen
    }
}

/// Points in a compaction where tests inject a crash (see `Store.compactionFailpoint`).
enum CompactionStep: String, CaseIterable, Sendable {
    case planned, copied, outputsSynced, markerWritten, outputsRenamed, indexSwitched, inputsRemoved
}
