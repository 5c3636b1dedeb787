/// When written data is forced to stable storage.
public enum Durability: Sendable, Equatable, CustomStringConvertible {
    /// Writes go to the operating system at once; it decides when they reach the disk.
    /// A process crash loses nothing; a power loss may lose recent writes.
    case none
    /// A background thread syncs every `milliseconds` when there is something to sync.
    case interval(milliseconds: Int)
    /// Every write is on stable storage before it returns. Concurrent writers
    /// in one process share each sync (group commit).
    case always

    public var description: String {
        switch self {
        case .none: "none"
        case .interval(let ms): "interval:\(ms)"
        case .always: "always"
        }
    }

    /// Parses `none`, `always`, `interval` (1000 ms) or `interval:MS`.
    public init?(parsing text: String) {
        switch text {
        case "none": self = .none
        case "always": self = .always
        case "interval": self = .interval(milliseconds: 1000)
        default:
            guard text.hasPrefix("interval:"), let ms = Int(text.dropFirst("interval:".count)), ms > 0 else { return nil }
            self = .interval(milliseconds: ms)
        }
    }
}

/// How to open a store.
public struct StoreOptions: Sendable, Equatable {
    /// Open without the writer lock: reads only, any number of processes at once.
    public var readOnly: Bool
    /// Create the directory and an empty store when none exists (writers only).
    public var createIfMissing: Bool
    /// The size at which the active segment is sealed and a new one started.
    /// From 4 KiB to 4 GiB; default 64 MiB.
    public var segmentSize: Int
    /// When writes reach stable storage.
    public var durability: Durability
    /// How long a writer waits for another writer's lock before failing, in milliseconds.
    public var lockTimeoutMilliseconds: Int
    /// When a writer compacts by itself, on a background thread, after it seals
    /// a segment; nil to compact only when asked (``Store/compact()``).
    public var autoCompaction: CompactionPolicy?
    /// How many bytes of keys and entries a walk of every key (``Store/forEach(prefix:_:)``)
    /// sorts in memory before it writes sorted runs to a temporary file and merges them.
    var snapshotChunkBytes = 8 << 20

    /// Options for a writer that creates the store when needed, with 64 MiB
    /// segments, `.none` durability, a 10 second lock wait, and automatic
    /// compaction of segments that are half dead once 64 MiB can be gained.
    public init(
        readOnly: Bool = false,
        createIfMissing: Bool = true,
        segmentSize: Int = 64 << 20,
        durability: Durability = .none,
        lockTimeoutMilliseconds: Int = 10_000,
        autoCompaction: CompactionPolicy? = CompactionPolicy()
    ) {
        self.readOnly = readOnly
        self.createIfMissing = createIfMissing
        self.segmentSize = segmentSize
        self.durability = durability
        self.lockTimeoutMilliseconds = lockTimeoutMilliseconds
        self.autoCompaction = autoCompaction
    }

    /// Options for a reader: no lock, no creation.
    public static var reader: StoreOptions { StoreOptions(readOnly: true, createIfMissing: false) }

    static let minSegmentSize = 4096

    func validate() throws(KVFileError) {
        if segmentSize < StoreOptions.minSegmentSize || segmentSize > RecordFormat.maxSegmentSize {
            throw KVFileError(.invalidArgument, "segment size \(segmentSize) is out of range: use 4096 bytes to 4 GiB")
        }
        if lockTimeoutMilliseconds < 0 {
            throw KVFileError(.invalidArgument, "lock timeout must not be negative")
        }
    }
}
