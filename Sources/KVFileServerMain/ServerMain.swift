import ArgumentParser
import KVFile
import KVFileServeOptions
import KVFileServer
import Logging

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
        configuration.allowedHosts = options.allowHost
        configuration.logLevel = Logger.Level(rawValue: options.logLevel) ?? .info
        let level = configuration.logLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        var logger = Logger(label: "kvfile-server")
        logger.logLevel = configuration.logLevel
        do {
            try await ServerRunner.run(configuration, logger: logger)
        } catch let error as KVFileError {
            FileHandleStderr.write("kvfile-server: \(error.message)\n")
            throw ExitCode(error.exitStatus)  // the same codes as kvfile(1)
        } catch {
            // Mostly: the address cannot be bound (in use, not local, no permission).
            FileHandleStderr.write("kvfile-server: cannot serve on \(options.host):\(options.port): \(error)\n")
            throw ExitCode(74)
        }
    }
}

enum FileHandleStderr {
    static func write(_ text: String) {
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { Glibc.write(2, $0.baseAddress, $0.count) }
    }
}
