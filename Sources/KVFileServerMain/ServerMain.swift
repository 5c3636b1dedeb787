import ArgumentParser
import KVFile
import KVFileServeOptions
import KVFileServer
import Logging
import NIOCore

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// `kvfile-server`: the HTTP service behind `kvfile serve` (same options).
@main
struct ServerMain: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kvfile-server",
        abstract: "Serve a kvfile store over HTTP (run by `kvfile serve`; see kvfile serve --help)."
    )

    @OptionGroup var options: ServeOptions

    func run() async throws {
        var configuration = ServerConfiguration(storePath: options.store)
        configuration.host = options.host
        configuration.port = options.port
        configuration.token = options.resolvedToken
        configuration.maxBodyBytes = options.maxBody
        configuration.durability = options.durabilityMode
        configuration.lockTimeoutMilliseconds = options.lockTimeout
        configuration.subscriberBacklog = options.subscriberBacklog
        configuration.pingIntervalSeconds = options.pingInterval
        configuration.idleTimeoutSeconds = options.idleTimeout
        configuration.pingTimeoutSeconds = options.pingTimeout
        configuration.allowedHosts = options.allowHost
        configuration.corsOrigins = options.corsOrigin
        configuration.logLevel = Logger.Level(rawValue: options.logLevel) ?? .info
        let level = configuration.logLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        var logger = Logger(label: "kvfile-server")
        logger.logLevel = configuration.logLevel
        var info = stat()
        let storeExisted = stat(options.store, &info) == 0
        do {
            try await ServerRunner.run(configuration, logger: logger)
        } catch let error as KVFileError {
            FileHandleStderr.write("kvfile-server: \(error.message)\n")
            throw ExitCode(ExitStatus.of(error))  // the same codes as kvfile(1)
        } catch {
            // Mostly: the address cannot be bound (in use, not local, no permission).
            if !storeExisted { Self.removeEmptyStore(options.store) }
            let reason: String
            if let io = error as? IOError {
                reason = String(cString: strerror(io.errnoCode)) + " (errno \(io.errnoCode))"
                    + (io.errnoCode == EADDRINUSE ? ". Another program listens there: choose another --port, or --port 0 for a free one." : "")
            } else {
                reason = "\(error)"
            }
            FileHandleStderr.write("kvfile-server: cannot serve on \(options.host):\(options.port): \(reason)\n")
            throw ExitCode(74)
        }
    }

    /// A start that failed leaves no store behind that it created: only when
    /// it holds no record at all (nothing was written to it).
    static func removeEmptyStore(_ path: String, withContentTypes: Bool = true) {
        if withContentTypes { removeEmptyStore(path + "/server-content-types", withContentTypes: false) }
        guard let store = try? Store(path: path, options: .reader), let stats = try? store.stats(),
              stats.keys == 0, stats.newestSeq == 0, stats.hintBytes == 0 else { return }
        try? store.close()
        guard let directory = opendir(path) else { return }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { names.append(name) }
        }
        closedir(directory)
        let ours = names.allSatisfy { $0 == "kvfile.lock" || $0 == "kvfile.watch" || $0 == "kvfile.index" || ($0.hasSuffix(".kvseg") && $0.count == 14) }
        guard ours else { return }
        for name in names { unlink(path + "/" + name) }
        rmdir(path)
    }
}

enum FileHandleStderr {
    static func write(_ text: String) {
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { Glibc.write(2, $0.baseAddress, $0.count) }
    }
}
