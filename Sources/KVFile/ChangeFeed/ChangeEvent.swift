/// One change to a store, derived from its log (see man/kvfile.5, "Change events").
/// Topics and fields follow the Less key-value store's streaming topics.
public struct ChangeEvent: Sendable, Equatable {
    /// What happened to the key.
    public enum Topic: String, Sendable, CaseIterable {
        /// The key had no value and now has one: `key`, `newValue`.
        case created = "kvs_created"
        /// The key's value was replaced: `key`, `newValue`, `oldValue`.
        case updated = "kvs_updated"
        /// The key was removed: `key`, `oldValue`.
        case deleted = "kvs_deleted"
    }

    public var topic: Topic
    /// The record's sequence number: strictly increasing, never reused.
    public var seq: UInt64
    /// When the write happened, in milliseconds since the Unix epoch.
    public var timestamp: UInt64
    public var key: [UInt8]
    /// The value after the change (nil for a delete).
    public var newValue: [UInt8]?
    /// The exact value before the change (nil for a creation).
    public var oldValue: [UInt8]?
    /// When the new value expires (ms since the Unix epoch; 0: never).
    public var expiresAt: UInt64 = 0
    /// A delete that records an expiry: a writer saw the value's deadline pass.
    public var expired = false
}

/// Where a change feed starts.
public enum FeedStart: Sendable, Equatable {
    /// With the next change after the feed opens (like `tail -f`).
    case now
    /// With the first change after sequence number `seq` (resume: pass the last seq you handled).
    case after(seq: UInt64)
    /// With the oldest change the log still holds.
    case beginning
}
