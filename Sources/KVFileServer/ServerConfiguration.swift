import KVFile
import Logging

/// How `kvfile-server` runs (its options; see `kvfile serve --help`).
public struct ServerConfiguration: Sendable {
    /// The store directory (created on the first write when missing).
    public var storePath: String
    /// Address to bind; loopback unless told otherwise.
    public var host = "127.0.0.1"
    /// TCP port; 0 picks a free one (printed on start).
    public var port = 5000
    /// When set, every request needs `Authorization: Bearer <token>`.
    public var token: String?
    /// Largest request body accepted, in bytes.
    public var maxBodyBytes = 16 << 20
    /// When a write is acknowledged: `.always` (synced first, with group
    /// commit), `.interval(ms)` or `.none`.
    public var durability: Durability = .always
    /// How long to wait for another writer's lock at start.
    public var lockTimeoutMilliseconds = 10_000
    /// Events a subscriber may fall behind before it is disconnected.
    public var subscriberBacklog = 10_000
    /// Recent events kept for subscribers that reconnect with Last-Event-ID.
    public var replayEvents = 4096
    /// Interval of SSE keep-alive comments, in seconds.
    public var keepAliveSeconds = 15
    /// Log level (request lines at debug).
    public var logLevel: Logger.Level = .info

    public init(storePath: String) {
        self.storePath = storePath
    }
}
