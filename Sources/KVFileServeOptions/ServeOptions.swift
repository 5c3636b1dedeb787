import ArgumentParser
import KVFile

#if canImport(Glibc)
import Glibc
#endif

/// The options of `kvfile serve` and `kvfile-server`, declared once so that
/// the tool can check them and hand them on unchanged.
public struct ServeOptions: ParsableArguments {
    @Argument(help: ArgumentHelp("The store directory (created when missing).", valueName: "store"), completion: .directory)
    public var store: String

    @Option(name: .long, help: ArgumentHelp("Address to listen on. Anything but loopback exposes the store: set a token.", valueName: "address"))
    public var host: String = "127.0.0.1"

    @Option(name: .long, help: ArgumentHelp("TCP port (0 picks a free one; the listening line names it).", valueName: "port"))
    public var port: Int = 5000

    @Option(name: .long, help: ArgumentHelp(
        "Require Authorization: Bearer TOKEN on every request. Prefer the KVFILE_TOKEN environment variable: arguments show in ps.",
        valueName: "token"))
    public var token: String?

    @Option(name: .long, help: ArgumentHelp(
        "A Host name to accept besides localhost, 127.0.0.1 and [::1] while listening on loopback (repeatable). Other Host headers get 403, so a page that rebinds its DNS name to 127.0.0.1 cannot read the store.",
        valueName: "name"))
    public var allowHost: [String] = []

    @Option(name: .long, help: ArgumentHelp(
        "Let pages of this origin (such as https://app.example) use the API from a browser: CORS headers and preflights (repeatable). Pages of other origins get none.",
        valueName: "origin"))
    public var corsOrigin: [String] = []

    @Option(name: .long, help: ArgumentHelp("Largest request body accepted, in bytes.", valueName: "bytes"))
    public var maxBody: Int = 16 << 20

    @Option(name: .long, help: ArgumentHelp(
        "When a write is acknowledged: always (on disk first; concurrent requests share each sync), interval:MS, or none.",
        valueName: "mode"), completion: .list(["always", "none", "interval:1000"]))
    public var durability: String = "always"

    @Option(name: .long, help: ArgumentHelp("How long to wait for another writer to release the store, in milliseconds.", valueName: "ms"))
    public var lockTimeout: Int = 10_000

    @Option(name: .long, help: ArgumentHelp("Events a subscriber may fall behind before it is disconnected.", valueName: "n"))
    public var subscriberBacklog: Int = 10_000

    @Option(name: .long, help: ArgumentHelp("Socket.IO subscribers: seconds between the server's pings.", valueName: "seconds"))
    public var pingInterval: Int = 25

    @Option(name: .long, help: ArgumentHelp(
        "Socket.IO subscribers: seconds a client may leave a ping unanswered before it is dropped (its client reconnects).",
        valueName: "seconds"))
    public var pingTimeout: Int = 20

    @Option(name: .long, help: ArgumentHelp(
        "Seconds a connection may stay silent, or send a request's head or body no further, before it is closed (a response being sent, such as an event stream, is never cut).",
        valueName: "seconds"))
    public var idleTimeout: Int = 30

    @Option(name: .long, help: ArgumentHelp("trace, debug (one line per request), info, warning or error.", valueName: "level"),
            completion: .list(["trace", "debug", "info", "notice", "warning", "error", "critical"]))
    public var logLevel: String = "info"

    public init() {}

    public static let logLevels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]

    /// The durability mode parsed (valid after `validate()`).
    public var durabilityMode: Durability { Durability(parsing: durability) ?? .always }

    /// The token from `--token`, else from `KVFILE_TOKEN`.
    public var resolvedToken: String? {
        if let token, !token.isEmpty { return token }
        if let token = getenv("KVFILE_TOKEN").map({ String(cString: $0) }), !token.isEmpty { return token }
        return nil
    }

    public func validate() throws {
        if store.isEmpty { throw ValidationError("the store path must not be empty") }
        if port < 0 || port > 65535 { throw ValidationError("--port must be 0 to 65535, not \(port)") }
        if maxBody < 1 { throw ValidationError("--max-body must be at least 1 byte") }
        if maxBody > 64 << 20 { throw ValidationError("--max-body can be at most 67108864 (64 MiB, the largest value a store holds)") }
        if Durability(parsing: durability) == nil {
            throw ValidationError("--durability takes none, always, interval or interval:MS (milliseconds), not '\(durability)'")
        }
        if lockTimeout < 0 { throw ValidationError("--lock-timeout must be 0 or more milliseconds") }
        if subscriberBacklog < 1 { throw ValidationError("--subscriber-backlog must be at least 1") }
        if !(1...3600).contains(pingInterval) { throw ValidationError("--ping-interval must be 1 to 3600 seconds, not \(pingInterval)") }
        if !(1...3600).contains(pingTimeout) { throw ValidationError("--ping-timeout must be 1 to 3600 seconds, not \(pingTimeout)") }
        if !(1...86400).contains(idleTimeout) { throw ValidationError("--idle-timeout must be 1 to 86400 seconds, not \(idleTimeout)") }
        if token?.isEmpty == true {
            throw ValidationError("--token is empty: give the token, or leave the option out to serve without one")
        }
        if token == nil, let variable = getenv("KVFILE_TOKEN"), variable.pointee == 0 {
            throw ValidationError("KVFILE_TOKEN is set but empty (an unset variable in a script?): set it to the token, or unset it to serve without one")
        }
        for origin in corsOrigin {
            if let problem = Self.originProblem(origin) { throw ValidationError("--cors-origin '\(origin)': \(problem)") }
        }
        if !Self.logLevels.contains(logLevel) {
            throw ValidationError("--log-level takes \(Self.logLevels.joined(separator: ", ")), not '\(logLevel)'")
        }
    }

    /// Why `origin` is not an origin a browser sends (nil: it is one): a scheme,
    /// "://", a host and perhaps a port, nothing after; browsers send no path, so
    /// `https://app.example/` would never match, and `*` would allow every page.
    static func originProblem(_ origin: String) -> String? {
        if origin == "*" { return "every page of every site is not an origin; name each origin, such as https://app.example" }
        guard let separator = origin.firstRange(of: "://") else { return "an origin is SCHEME://HOST[:PORT], such as https://app.example" }
        let scheme = origin[..<separator.lowerBound], authority = origin[separator.upperBound...]
        if scheme.isEmpty || !scheme.allSatisfy({ $0.isLetter || $0.isNumber || "+-.".contains($0) }) { return "the scheme is not one" }
        if authority.isEmpty { return "the host is missing" }
        if authority.contains("/") || authority.contains("?") || authority.contains("#") {
            return "an origin has no path (browsers send \(scheme)://\(authority.prefix { $0 != "/" && $0 != "?" && $0 != "#" })): leave out what follows the host"
        }
        if origin != origin.lowercased() { return "browsers send origins in lower case (\(origin.lowercased()))" }
        for (defaultScheme, port) in [("https", ":443"), ("http", ":80")] where scheme == defaultScheme && authority.hasSuffix(port) {
            return "browsers leave the default port out (\(scheme)://\(authority.dropLast(port.count)))"
        }
        return nil
    }

    /// The arguments that give `kvfile-server` these same options.
    public var arguments: [String] {
        var result = [store, "--host", host, "--port", String(port), "--max-body", String(maxBody),
                      "--durability", durability, "--lock-timeout", String(lockTimeout),
                      "--subscriber-backlog", String(subscriberBacklog), "--ping-interval", String(pingInterval),
                      "--ping-timeout", String(pingTimeout), "--idle-timeout", String(idleTimeout), "--log-level", logLevel]
        if let token { result += ["--token", token] }
        for name in allowHost { result += ["--allow-host", name] }
        for origin in corsOrigin { result += ["--cors-origin", origin] }
        return result
    }
}
