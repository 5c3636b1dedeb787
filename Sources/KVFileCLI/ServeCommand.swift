import ArgumentParser
import KVFileServeOptions

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve the store over HTTP: REST, KeyValueStore-service routes, and its change feed as Server-Sent Events and Socket.IO.",
        discussion: """
            Runs kvfile-server (installed beside kvfile) as the store's one writer; \
            other processes can still read and watch the store directly. It prints \
            "kvfile-server: listening on http://HOST:PORT (store PATH)" on standard \
            output once it accepts connections, logs to standard error, and on \
            SIGINT or SIGTERM stops taking requests, lets those under way finish, \
            ends event streams, syncs and closes the store.

            Routes (every one needs Authorization: Bearer TOKEN when a token is set):
              GET /?key=K            the value as text (404 when absent, 400 without key)
              GET /all               every pair as one JSON object, keys sorted
              PUT /                  JSON body {"key": "K", "value": "V"}
              GET /v1/keys/KEY       raw bytes, with the Content-Type they were PUT with
              PUT /v1/keys/KEY       body = value (201 created, 200 replaced)
              DELETE /v1/keys/KEY    204, or 404 when absent
              GET /v1/keys?prefix=P  NDJSON lines {"key":K,"value":V}, sorted
              GET /v1/stat           kvfile stat --json
              POST /v1/compact       kvfile compact, for the store the server holds
              GET /v1/health         {"status":"ok","newest_seq":N}; 503 once a sync failed or the store was removed, \
            or while the change feed cannot read the log
              GET /v1/events         Server-Sent Events: id = seq, event = topic, \
            data = the kvfile watch JSON; resume with Last-Event-ID or ?since=SEQ, \
            ?from_start=1, ?topic=kvs_created,kvs_deleted, ?prefix=P.
              POST /v1/events/ticket a ticket for a browser's EventSource: \
            /v1/events?ticket=T within a minute, so the token stays out of URLs; \
            EventSource's reconnects (Last-Event-ID) reopen it for five minutes after it ends.
              /socket.io/            Socket.IO (long-polling), as the KeyValueStore \
            service's subscribe: Connected, then one Update event per change, \
            "Key: K Created with Value: V", "Key: K Updated with Value: V" or "Key: K Deleted"; \
            ?prefix=P on the connect URL.
            While listening on loopback, only the Host names localhost, 127.0.0.1 \
            and [::1] are served (more with --allow-host). Browsers get CORS only \
            for --cors-origin origins.
            Percent-encode reserved bytes of KEY (/ as %2F). Errors are JSON \
            {"error": CODE, "message": TEXT} with a status code.

            Examples:
              kvfile serve ./cache.kv
              KVFILE_TOKEN=s3cret kvfile serve ./cache.kv --host 0.0.0.0 --port 8080
              curl -X PUT --data-binary @logo.png -H 'Content-Type: image/png' localhost:5000/v1/keys/logo
              curl -N localhost:5000/v1/events
              HOST=http://localhost:5000/ kvstore subscribe

            Exit status: as for the other commands; 69 when kvfile-server is not \
            found, 74 when the address cannot be bound or the store directory \
            cannot be made.
            """
    )

    @OptionGroup var options: ServeOptions

    func run() throws {
        guard let server = Self.serverExecutable() else {
            Terminal.error("kvfile serve needs the kvfile-server executable beside kvfile or on PATH; build it with `swift build -c release --product kvfile-server`")
            throw ExitCode(CLIExitCode.unavailable.rawValue)
        }
        let arguments = ["kvfile-server"] + options.arguments
        var pointers: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) }
        pointers.append(nil)
        execv(server, pointers)
        let reason = String(cString: strerror(errno))
        Terminal.error("cannot run \(server): \(reason)")
        throw ExitCode(CLIExitCode.unavailable.rawValue)
    }

    /// `kvfile-server` in the directory of this executable, else on PATH.
    static func serverExecutable() -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let length = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        if length > 0 {
            let me = String(decoding: buffer[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if let slash = me.lastIndex(of: "/") {
                let candidate = String(me[..<slash]) + "/kvfile-server"
                if access(candidate, X_OK) == 0 { return candidate }
            }
        }
        guard let path = getenv("PATH").map({ String(cString: $0) }) else { return nil }
        for directory in path.split(separator: ":") where !directory.isEmpty {
            let candidate = String(directory) + "/kvfile-server"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        return nil
    }
}
