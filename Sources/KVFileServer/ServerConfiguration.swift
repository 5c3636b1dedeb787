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
    /// Socket.IO: how often the server pings a client, in seconds.
    public var pingIntervalSeconds = 25
    /// Socket.IO: how long a client may leave a ping unanswered before it is dropped, in seconds.
    public var pingTimeoutSeconds = 20
    /// Seconds a connection may be silent (no request, or a request's head or body
    /// stalled) before it is closed: abandoned and half-sent connections must not
    /// hold descriptors for the life of the server. A response in progress is never cut.
    public var idleTimeoutSeconds = 30
    /// Log level (request lines at debug).
    public var logLevel: Logger.Level = .info
    /// Host names accepted besides the loopback ones while bound to loopback.
    public var allowedHosts: [String] = []
    /// Origins whose pages may use the API from a browser (CORS).
    public var corsOrigins: [String] = []

    /// The Host names (without port, lowercased) requests may carry, or nil
    /// for any: a server bound to loopback serves only loopback names (a
    /// DNS-rebinding page reaches 127.0.0.1 under its own name).
    var acceptedHosts: Set<String>? {
        let loopback = host == "localhost" || host == "::1" || host.hasPrefix("127.")
        guard loopback else { return nil }
        return Set(["localhost", "127.0.0.1", "[::1]", host.contains(":") ? "[\(host)]" : host] + allowedHosts.map { $0.lowercased() })
    }

    public init(storePath: String) {
        self.storePath = storePath
    }
}
