#if canImport(Glibc)
@preconcurrency import Glibc
#endif
import Hummingbird
import HummingbirdCore
import KVFile
import Logging
import NIOCore
import ServiceLifecycle

/// Runs `kvfile serve`: opens the store as its one writer, serves HTTP until
/// SIGINT or SIGTERM, then stops taking requests, lets the ones under way
/// finish, ends event streams, syncs and closes the store.
public enum ServerRunner {
    /// Serves until a shutdown signal. Throws `KVFileError` when the store
    /// cannot be opened (missing parent, locked, damaged).
    public static func run(_ configuration: ServerConfiguration, logger: Logger) async throws {
        // Store calls and event-stream catch-ups block threads of this pool: more than one per core.
        NIOSingletons.blockingPoolThreadCountSuggestion = max(8, 2 * System.coreCount)
        var options = StoreOptions()
        options.lockTimeoutMilliseconds = configuration.lockTimeoutMilliseconds
        // .always is done here by group commit across requests, without blocking a thread per request.
        options.durability = configuration.durability == .always ? .none : configuration.durability
        let store = try Store(path: configuration.storePath, options: options)
        var sidecarOptions = options
        sidecarOptions.segmentSize = 1 << 20
        let contentTypes: ContentTypes
        let hub: SubscriptionHub
        do {
            contentTypes = try ContentTypes(storePath: store.path, options: sidecarOptions)
            hub = try SubscriptionHub.open(storePath: store.path, replayEvents: configuration.replayEvents,
                                      backlog: configuration.subscriberBacklog,
                                      keepAliveSeconds: configuration.keepAliveSeconds, logger: logger)
        } catch {
            try? store.close()
            throw error
        }
        let committer = configuration.durability == .always
            ? DurableCommitter { try contentTypes.sync(); try store.sync() }
            : nil
        let socketIO = SocketIOServer(hub: hub, pingIntervalSeconds: configuration.pingIntervalSeconds,
                                      pingTimeoutSeconds: configuration.pingTimeoutSeconds,
                                      backlog: configuration.subscriberBacklog, logger: logger)
        let service = KVService(store: store, contentTypes: contentTypes, committer: committer, hub: hub, socketIO: socketIO,
                                configuration: configuration)
        let storePath = store.path
        let app = Application(
            responder: service,
            server: .http1(configuration: HTTP1Channel.Configuration(
                additionalChannelHandlers: [HTTPFramingSetup()],
                idleTimeout: .seconds(Int64(configuration.idleTimeoutSeconds)),
                // Room for an over-long request line to reach the routes, which answer 414 (the parser's own limit answers an empty 400).
                httpDecoderConfiguration: .init(maxHeaderFieldSize: KVService.maxHeadBytes, maxHeaderListSize: KVService.maxHeadBytes))),
            configuration: ApplicationConfiguration(address: .hostname(configuration.host, port: configuration.port), serverName: "kvfile"),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? configuration.port
                let host = configuration.host.contains(":") ? "[\(configuration.host)]" : configuration.host
                // On stdout, one line, for people and for scripts waiting for the port.
                Self.announce("kvfile-server: listening on http://\(host):\(port) (store \(storePath))\n")
                if configuration.token == nil && configuration.acceptedHosts == nil {
                    logger.warning("listening on \(host), beyond loopback, without a token: anyone who can reach it can read and write the store (set KVFILE_TOKEN)")
                }
                logger.info("listening", metadata: ["address": "\(host):\(port)", "store": "\(storePath)",
                                                    "durability": "\(configuration.durability)",
                                                    "token": "\(configuration.token == nil ? "off" : "on")"])
            },
            logger: logger
        )
        // Shut down in reverse order: end socket.io sessions and event streams first, then let the HTTP server drain.
        var groupConfiguration = ServiceGroupConfiguration(
            services: [app, hub, socketIO], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        // A client that holds a request open past this no longer delays the store's close.
        groupConfiguration.maximumGracefulShutdownDuration = Duration.seconds(30)
        let group = ServiceGroup(configuration: groupConfiguration)
        var failure: (any Error)?
        do {
            try await group.run()
        } catch {
            failure = error
        }
        do {
            try contentTypes.close()
            try store.close()
            logger.info("stopped; store synced and closed", metadata: ["store": "\(storePath)"])
        } catch {
            logger.error("closing the store failed: \(error)")
            if failure == nil { failure = error }
        }
        if let failure { throw failure }
    }

    private static func announce(_ line: String) {
        let bytes = Array(line.utf8)
        _ = bytes.withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
    }
}
