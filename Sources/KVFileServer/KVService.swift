import Dispatch
import FoundationEssentials
import HTTPTypes
import Hummingbird
import KVFile
import KVFileText
import Logging
import NIOCore
import NIOPosix

/// Every route of `kvfile serve` (kvfile(1), SERVE):
///
/// - KeyValueStore-service compatible: `GET /?key=K`, `GET /all`, `PUT /` with `{"key":…,"value":…}`.
/// - REST: `GET|PUT|DELETE /v1/keys/{key}`, `GET /v1/keys?prefix=P` (NDJSON), `GET /v1/stat`,
///   `POST /v1/compact`, `GET /v1/health`.
/// - Change feed: `GET /v1/events` (Server-Sent Events, see ``EventStream``), and
///   `/socket.io/` (the KeyValueStore service's `Update` events, see ``SocketIOServer``).
struct KVService: HTTPResponder {
    typealias Context = BasicRequestContext

    let store: Store
    let contentTypes: ContentTypes
    let committer: DurableCommitter?
    let hub: SubscriptionHub
    let socketIO: SocketIOServer
    let configuration: ServerConfiguration
    private let expectedAuthorization: [UInt8]?
    private let acceptedHosts: Set<String>?
    private let crossOrigin: CrossOrigin
    private let tickets = EventTickets()

    init(store: Store, contentTypes: ContentTypes, committer: DurableCommitter?, hub: SubscriptionHub, socketIO: SocketIOServer,
         configuration: ServerConfiguration) {
        self.store = store
        self.contentTypes = contentTypes
        self.committer = committer
        self.hub = hub
        self.socketIO = socketIO
        self.configuration = configuration
        expectedAuthorization = configuration.token.map { Array("Bearer \($0)".utf8) }
        acceptedHosts = configuration.acceptedHosts
        crossOrigin = CrossOrigin(allowed: Set(configuration.corsOrigins))
    }

    /// Request lines longer than this get 414: keys are at most 4,096 bytes,
    /// so a path or query holding one, percent-encoded, fits well within it.
    static let maxRequestTargetBytes = 16 * 1024
    /// What the HTTP parser accepts for a request line or header section
    /// (beyond, it answers an empty 400 and closes).
    static let maxHeadBytes = 1 << 20

    func respond(to request: Request, context: Context) async throws -> Response {
        var response: Response
        do {
            if request.uri.description.utf8.count > Self.maxRequestTargetBytes {
                throw APIError(.uriTooLong, "uri_too_long",
                               "the request target is longer than \(Self.maxRequestTargetBytes) bytes (keys are at most 4096 bytes)")
            }
            try checkHost(request)
            if request.method == .options && request.headers[.accessControlRequestMethod] != nil {
                return crossOrigin.preflight(request)
            }
            // A Socket.IO session was authorized at its handshake: python-engineio sends headers with that request only.
            if let ticket = redeemedTicket(request) {
                response = try await routeStream(request, openedWith: ticket)
            } else {
                if !socketIO.isSessionRequest(request) { try authorize(request) }
                response = try await route(request)
            }
        } catch let error as APIError {
            response = error.response
        } catch let error as KVFileError {
            response = Self.apiError(for: error).response
            // The operator must see failures of the store itself (I/O errors, a failed sync, damage) at the default level.
            if response.status.code >= 500 {
                context.logger.error("\(request.method) \(request.uri) → \(response.status.code): \(error.message)")
            }
        }
        crossOrigin.decorate(&response, for: request)
        context.logger.debug("\(request.method) \(request.uri) → \(response.status.code)")
        return response
    }

    /// The ticket of `GET /v1/events?ticket=T`, when it stands in for the token (see ``EventTickets``).
    private func redeemedTicket(_ request: Request) -> String? {
        guard let ticket = eventStreamTicket(request),
              tickets.redeem(ticket, reconnecting: request.headers[HTTPField.Name("Last-Event-ID")!] != nil) else { return nil }
        return ticket
    }

    private func eventStreamTicket(_ request: Request) -> String? {
        guard expectedAuthorization != nil, request.method == .get, URLText.normalizedPath(request.uri.path) == "/v1/events",
              let query = try? URLText.query(request.uri.query) else { return nil }
        return query.last(where: { $0.name == "ticket" }).map { String(decoding: $0.value, as: UTF8.self) }
    }

    /// An event stream a ticket opened: the ticket learns when it ends (it may reopen one for a while after).
    private func routeStream(_ request: Request, openedWith ticket: String) async throws -> Response {
        let tickets = self.tickets
        do {
            var response = try await route(request)
            let body = response.body
            response.body = ResponseBody(contentLength: body.contentLength) { writer in
                defer { tickets.ended(ticket) }
                try await body.write(writer)
            }
            return response
        } catch {
            tickets.ended(ticket)
            throw error
        }
    }

    // MARK: routing

    private func route(_ request: Request) async throws -> Response {
        let rawPath = request.uri.path
        let keysPrefix = "/v1/keys/"
        if rawPath.hasPrefix(keysPrefix) {
            guard let key = URLText.percentDecoded(rawPath.dropFirst(keysPrefix.count), plusIsSpace: false) else {
                throw APIError(.badRequest, "bad_request", "the key in the path has a malformed %-escape")
            }
            guard !key.isEmpty else { throw APIError(.badRequest, "bad_request", "the key is empty: use /v1/keys/KEY (percent-encode / and other reserved bytes)") }
            switch request.method {
            case .get, .head: return try await getKey(key, request: request)
            case .put: return try await putKey(key, request: request)
            case .delete: return try await deleteKey(key, request: request)
            default: throw Self.methodNotAllowed("GET, HEAD, PUT, DELETE")
            }
        }
        let query = try URLText.query(request.uri.query)
        switch URLText.normalizedPath(rawPath) {
        case "/", "":
            switch request.method {
            case .get, .head: return try await compatGet(query)
            // PUT only (as the original): a browser cannot send a cross-origin PUT without a preflight, while a POST needs none.
            case .put: return try await compatPut(request)
            default: throw Self.methodNotAllowed("GET, HEAD, PUT")
            }
        case "/all":
            guard request.method == .get || request.method == .head else { throw Self.methodNotAllowed("GET, HEAD") }
            return try await compatAll(headOnly: request.method == .head)
        case "/v1/keys":
            guard request.method == .get || request.method == .head else { throw Self.methodNotAllowed("GET, HEAD") }
            return try await listKeys(query, headOnly: request.method == .head)
        case "/v1/stat":
            guard request.method == .get || request.method == .head else { throw Self.methodNotAllowed("GET, HEAD") }
            let store = store
            return .json(StatJSON.document(try await Self.offPool { try store.stats() }))
        case "/v1/compact":
            guard request.method == .post else { throw Self.methodNotAllowed("POST") }
            // A page can send a POST without asking first: only allowed origins' pages may compact.
            if crossOrigin.isForeign(request) {
                throw APIError(.forbidden, "cross_origin", "POST /v1/compact from a page of another origin is refused; allow its origin with --cors-origin")
            }
            return try await compact()
        case "/v1/events/ticket":
            guard request.method == .post else { throw Self.methodNotAllowed("POST") }
            if crossOrigin.isForeign(request) {
                throw APIError(.forbidden, "cross_origin", "tickets are not given to pages of other origins; allow its origin with --cors-origin")
            }
            return .json("{\"ticket\":\(JSONText.quoted(tickets.issue())),\"expires_in\":60}\n")
        case "/v1/health":
            guard request.method == .get || request.method == .head else { throw Self.methodNotAllowed("GET, HEAD") }
            do throws(KVFileError) {
                try store.checkHealth()
            } catch {
                // Not ok: a failed sync or a removed store refuses writes until restarted.
                return .json("{\"status\":\"failing\",\"error\":\"\(Self.apiCode(error.code))\",\"message\":\(JSONText.quoted(error.message))}\n",
                             status: .serviceUnavailable)
            }
            if let problem = hub.problem {
                // The change feed cannot read the log (it waits out a shortage, or ended): events are not delivered.
                return .json("{\"status\":\"failing\",\"error\":\"feed_failed\",\"message\":\(JSONText.quoted(problem))}\n",
                             status: .serviceUnavailable)
            }
            return .json("{\"status\":\"ok\",\"newest_seq\":\(hub.lastSeq)}\n")
        case "/v1/events":
            guard request.method == .get else { throw Self.methodNotAllowed("GET") }
            return try await EventStream(hub: hub, request: request, query: query).response()
        case "/socket.io", "/socket.io/":
            // Pages of other origins may not open sessions (they could only fill the session table).
            if crossOrigin.isForeign(request) {
                throw APIError(.forbidden, "cross_origin", "Socket.IO sessions are not opened for pages of other origins; allow its origin with --cors-origin")
            }
            return try await socketIO.respond(to: request, query: query)
        default:
            throw APIError(.notFound, "no_route", "no route \(request.method) \(rawPath); `kvfile serve --help` lists the routes")
        }
    }

    // MARK: /v1/keys

    /// Point reads run inline in the request's task when the store has the
    /// answer at hand (its lock free, the index slots and the record in
    /// memory: ``Store/withVersionedValueIfAtHand(forKey:_:)``), else on
    /// ``storeThreads``, so a cold page or a segment roll never holds a
    /// cooperative thread. Hopping every read cost a fifth of GET throughput
    /// (scripts/bench-http, same run: 36.4k–40.5k → 29.1k–32.0k/s). Writes,
    /// which can wait (the writer's lock, a segment roll), always run on
    /// ``storeThreads``; calls that grow with the store (listings, /all,
    /// stats) on NIO's blocking pool, compaction on a queue.
    static func pointRead<T: Sendable>(
        _ store: Store, _ key: [UInt8], _ answer: @escaping @Sendable (_ value: UnsafeRawBufferPointer?, _ seq: UInt64) -> T
    ) async throws -> T {
        if let inline = try key.withUnsafeBytes({ try store.withVersionedValueIfAtHand(forKey: $0, answer) }) { return inline }
        return try await onStoreThreads { try key.withUnsafeBytes { try store.withVersionedValue(forKey: $0, answer) } }
    }

    private func getKey(_ key: [UInt8], request: Request) async throws -> Response {
        let value = try await Self.pointRead(store, key) { value, seq -> (ByteBuffer, UInt64)? in
            guard let value else { return nil }
            var buffer = ByteBuffer()
            buffer.writeBytes(value)
            return (buffer, seq)
        }
        guard let (body, seq) = value else {
            throw APIError(.notFound, "not_found", "no value for key \(KeyText.describe(key))")
        }
        let contentType = await contentTypes.type(of: key, seq: seq)
        let etag = "\"\(seq)\""
        if let tags = EntityTags(request.headers[.ifNoneMatch]), tags.matchesWeakly(seq) {
            return Response(status: .notModified, headers: [.eTag: etag])
        }
        let headers: HTTPFields = [.contentType: contentType, .eTag: etag]
        return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: body))
    }

    /// The condition `If-Match` / `If-None-Match: *` put on a write (lost-update protection), if any.
    private static func writeCondition(_ request: Request) -> WriteCondition? {
        if let tags = EntityTags(request.headers[.ifMatch]) { return tags.ifMatchCondition }
        if let tags = EntityTags(request.headers[.ifNoneMatch]), tags.any { return .absent }
        return nil
    }

    private static func preconditionFailed(_ key: [UInt8], current: UInt64) -> APIError {
        var error = APIError(.preconditionFailed, "precondition_failed",
                             current == 0 ? "key \(KeyText.describe(key)) has no value, so the precondition does not hold; nothing was written"
                                 : "key \(KeyText.describe(key)) is at version \(current) (ETag \"\(current)\"), so the precondition does not hold; nothing was written")
        if current > 0 { error.headers[.eTag] = "\"\(current)\"" }
        return error
    }

    private func putKey(_ key: [UInt8], request: Request) async throws -> Response {
        let body = try await collectBody(request)
        let condition = Self.writeCondition(request)
        let contentType = request.headers[.contentType]
        let (store, contentTypes) = (store, contentTypes)
        let result = try await Self.onStoreThreads { () throws -> ConditionalWriteResult in
            let result = try body.withUnsafeReadableBytes { value in
                try key.withUnsafeBytes { key -> ConditionalWriteResult in
                    if let condition { return try store.put(key: key, value: value, if: condition) }
                    return .written(try store.put(key: key, value: value))
                }
            }
            if case .written(let receipt) = result { try contentTypes.record(contentType, for: key, seq: receipt.seq) }
            return result
        }
        guard case .written(let receipt) = result else {
            if case .conditionFailed(let current) = result { throw Self.preconditionFailed(key, current: current) }
            throw APIError(.internalServerError, "internal", "unexpected outcome of a put")
        }
        try await committer?.waitDurable()
        let created = receipt.operation == .created
        return Response(
            status: created ? .created : .ok,
            headers: [.contentType: "application/json", .eTag: "\"\(receipt.seq)\""],
            body: ResponseBody(byteBuffer: ByteBuffer(string: "{\"result\":\"\(created ? "created" : "updated")\",\"seq\":\(receipt.seq)}\n")))
    }

    private func deleteKey(_ key: [UInt8], request: Request) async throws -> Response {
        let condition = Self.writeCondition(request)
        let (store, contentTypes) = (store, contentTypes)
        // nil: deleted, without a condition.
        let result = try await Self.onStoreThreads { () throws -> ConditionalWriteResult? in
            let result: ConditionalWriteResult?
            if let condition {
                result = try key.withUnsafeBytes { key in try store.delete(key: key, if: condition) }
            } else {
                result = try store.delete(key) ? nil : .nothingToDelete
            }
            switch result {
            case .written, nil: try contentTypes.forget(key)
            default: break
            }
            return result
        }
        switch result {
        case .conditionFailed(let current): throw Self.preconditionFailed(key, current: current)
        case .nothingToDelete: throw APIError(.notFound, "not_found", "no value for key \(KeyText.describe(key))")
        case .written, nil: break
        }
        try await committer?.waitDurable()
        return Response(status: .noContent)
    }

    /// NDJSON, one `{"key":…,"value":…}` line per pair, sorted by key, streamed in chunks.
    /// A listing that fails midway ends with an `{"error":…,"message":…}`
    /// line, so that even a client that cannot tell a cut stream (HTTP/1.0)
    /// does not take a part for the whole.
    private func listKeys(_ query: [(name: String, value: [UInt8])], headOnly: Bool) async throws -> Response {
        let headers: HTTPFields = [.contentType: "application/x-ndjson"]
        if headOnly { return Response(status: .ok, headers: headers, body: Self.emptyStreamedBody) }
        let prefixes = Self.disjointPrefixes(query.filter { $0.name == "prefix" }.map(\.value))
        let store = store
        // Each prefix's keys are sorted and lie after those of the prefixes before it.
        let keys = try await Self.offPool { () throws in try prefixes.flatMap { prefix throws(KVFileError) in try store.keys(prefix: prefix) } }
        return Response(status: .ok, headers: headers, body: ResponseBody { writer in
            do {
                _ = try await Self.stream(keys, of: store, to: &writer) { key, value, _, buffer in
                    buffer.writeString(PairJSON.ndjsonLine(key, value))
                }
            } catch let error as KVFileError {
                try await writer.write(ByteBuffer(string: "{\"error\":\(JSONText.quoted(Self.apiCode(error.code))),\"message\":\(JSONText.quoted(error.message))}\n"))
            }
            try await writer.finish(nil)
        })
    }

    /// The body of a HEAD answer to a streamed route: no length, as its GET has none.
    static let emptyStreamedBody = ResponseBody(contentLength: nil) { writer in try await writer.finish(nil) }

    /// Writes `keys` with their values in chunks of about 64 KiB, reading each
    /// chunk's values off the cooperative pool. A key deleted since the listing
    /// began is left out. Returns whether any pair was written.
    /// The prefixes of a repeated `?prefix=` (the keys under any of them, as the
    /// event stream's), sorted, without those under another (none: every key).
    static func disjointPrefixes(_ given: [[UInt8]]) -> [[UInt8]] {
        var kept: [[UInt8]] = []
        for prefix in given.sorted(by: { $0.lexicographicallyPrecedes($1) }) where !kept.contains(where: { prefix.starts(with: $0) }) {
            kept.append(prefix)
        }
        return kept.isEmpty ? [[]] : kept
    }

    private static func stream(
        _ keys: [[UInt8]], of store: Store, to writer: inout any ResponseBodyWriter,
        _ format: @escaping @Sendable (_ key: [UInt8], _ value: [UInt8], _ first: Bool, _ buffer: inout ByteBuffer) -> Void
    ) async throws -> Bool {
        var index = 0
        var first = true
        while index < keys.count {
            let (start, isFirst) = (index, first)
            let (buffer, end, wroteAny) = try await offPool { () throws -> (ByteBuffer, Int, Bool) in
                var buffer = ByteBuffer()
                var index = start
                var isFirst = isFirst
                while index < keys.count && buffer.readableBytes < 64 << 10 {
                    let key = keys[index]
                    index += 1
                    if let value = try store.get(key) {
                        format(key, value, isFirst, &buffer)
                        isFirst = false
                    }
                }
                return (buffer, index, !isFirst)
            }
            index = end
            if wroteAny { first = false }
            if buffer.readableBytes > 0 { try await writer.write(buffer) }
        }
        return !first
    }

    /// Runs a store call on NIO's thread pool for blocking work, so that a
    /// call waiting on the disk never holds one of Swift's few cooperative threads.
    static func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await NIOThreadPool.singleton.runIfActive { try body() }
    }

    /// The server's threads for point reads and writes (see ``StoreExecutor``).
    static let storeThreads = StoreExecutor(threads: max(4, 2 * System.coreCount))

    /// Runs a point read or write on ``storeThreads``: off the cooperative pool at the cost of two hand-offs.
    static func onStoreThreads<T: Sendable>(_ body: @Sendable () throws -> T) async throws -> T {
        try await withTaskExecutorPreference(storeThreads) { () async throws -> T in try body() }
    }

    private static let compactionQueue = DispatchQueue(label: "kvfile-server.compaction")

    /// `POST /v1/compact`: what `kvfile compact` does, for a store the server holds.
    private func compact() async throws -> Response {
        let store = store
        // On a queue of its own: a compaction waiting for another must not hold a thread the writes need.
        let result = try await withCheckedThrowingContinuation { continuation in
            Self.compactionQueue.async { continuation.resume(with: Result { try store.compact() }) }
        }
        let seconds = (result.seconds * 1000).rounded() / 1000
        return .json("{\"input_segments\":\(result.inputSegments),\"output_segments\":\(result.outputSegments),"
            + "\"bytes_before\":\(result.bytesBefore),\"bytes_after\":\(result.bytesAfter),"
            + "\"records_copied\":\(result.recordsCopied),\"records_dropped\":\(result.recordsDropped),\"seconds\":\(seconds)}\n")
    }

    // MARK: KeyValueStore service routes

    /// The KeyValueStore service's texts, byte for byte (its Flask views return
    /// `str`, which Flask sends as text/html).
    static let compatContentType = "text/html; charset=utf-8"

    private func compatGet(_ query: [(name: String, value: [UInt8])]) async throws -> Response {
        // The first key=, as Flask's request.args["key"] gives it.
        guard let key = query.first(where: { $0.name == "key" })?.value else {
            return .bytes(Array("Error: Missing argument 'KEY'".utf8), contentType: Self.compatContentType, status: .badRequest)
        }
        let found = key.isEmpty ? nil : try await Self.pointRead(store, key) { value, _ in value.map { Array($0) } }
        guard let value = found else {
            return .bytes(Array("Key Does Not exists".utf8), contentType: Self.compatContentType, status: .notFound)
        }
        return .bytes(value, contentType: Self.compatContentType)
    }

    /// Every pair as Python's `json.dumps(data, sort_keys=True, indent=4)`
    /// writes it: non-ASCII as \uXXXX, keys sorted by code point (which is
    /// UTF-8 byte order, the store's key order). Streamed as it is read: only
    /// the keys are held. A key that is not UTF-8 cannot be a JSON key: it is
    /// left out (its value is served by GET /v1/keys) and counted in the
    /// `X-KVFile-Skipped-Keys` header.
    private func compatAll(headOnly: Bool) async throws -> Response {
        let store = store
        var keys = try await Self.offPool { () throws in try store.keys() }
        let count = keys.count
        keys.removeAll { String(validating: $0, as: UTF8.self) == nil }
        var headers: HTTPFields = [.contentType: Self.compatContentType]
        if keys.count < count { headers[HTTPField.Name("X-KVFile-Skipped-Keys")!] = String(count - keys.count) }
        if headOnly { return Response(status: .ok, headers: headers, body: Self.emptyStreamedBody) }
        return Response(status: .ok, headers: headers, body: ResponseBody { [keys] writer in
            let wroteAny = try await Self.stream(keys, of: store, to: &writer) { key, value, first, buffer in
                // A value that is not UTF-8 becomes {"base64": "…"}, laid out as json.dumps lays out an object.
                let json = String(validating: value, as: UTF8.self).map(PythonJSON.quoted)
                    ?? "{\n        \"base64\": " + PythonJSON.quoted(JSONText.base64(value)) + "\n    }"
                buffer.writeString((first ? "{\n    " : ",\n    ") + PythonJSON.quoted(String(decoding: key, as: UTF8.self)) + ": " + json)
            }
            try await writer.write(ByteBuffer(string: wroteAny ? "\n}" : "{}"))
            try await writer.finish(nil)
        })
    }

    private func compatPut(_ request: Request) async throws -> Response {
        let body = try await collectBody(request)
        // The value's JSON text is kept as written (a number stays exactly its digits).
        guard let members = JSONMinifier.members(ofObject: Array(body.readableBytesView)),
              let keyLiteral = members.last(where: { (try? JSONDecoder().decode(String.self, from: Data($0.keyLiteral))) == "key" })?.value,
              let valueText = members.last(where: { (try? JSONDecoder().decode(String.self, from: Data($0.keyLiteral))) == "value" })?.value,
              let key = try? JSONDecoder().decode(String.self, from: Data(keyLiteral))
        else {
            throw APIError(.badRequest, "bad_request", "the body must be a JSON object {\"key\": \"…\", \"value\": …} with a string key")
        }
        guard !key.isEmpty else { throw APIError(.badRequest, "bad_request", "the key must not be empty") }
        let value: [UInt8]
        if valueText.first == UInt8(ascii: "\""), let text = try? JSONDecoder().decode(String.self, from: Data(valueText)) {
            value = Array(text.utf8)
        } else {
            value = valueText
        }
        let (store, contentTypes) = (store, contentTypes)
        let receipt = try await Self.onStoreThreads {
            let receipt = try store.put(Array(key.utf8), value)
            try contentTypes.forget(Array(key.utf8))
            return receipt
        }
        try await committer?.waitDurable()
        return .bytes(CompatText.written(key: Array(key.utf8), value: value, created: receipt.operation == .created),
                      contentType: Self.compatContentType)
    }

    // MARK: helpers

    /// While bound to loopback, only loopback Host names (and --allow-host ones) are served.
    private func checkHost(_ request: Request) throws(APIError) {
        guard let acceptedHosts else { return }
        // A second Host header (the first became the authority) makes the request's host ambiguous (RFC 9112, 3.2).
        if !request.headers[values: HTTPField.Name("Host")!].isEmpty {
            throw APIError(.badRequest, "bad_request", "the request has more than one Host header")
        }
        let given = request.head.authority ?? ""
        var name = given.lowercased()
        if name.hasPrefix("[") {
            if let close = name.firstIndex(of: "]") { name = String(name[...close]) }
        } else if let colon = name.lastIndex(of: ":") {
            name = String(name[..<colon])
        }
        guard acceptedHosts.contains(name) else {
            throw APIError(.forbidden, "host_not_allowed",
                           "this server listens on loopback and serves only the Host names localhost, 127.0.0.1 and [::1] (and --allow-host ones), "
                               + (given.isEmpty ? "and the request has no Host header" : "not \(JSONText.quoted(given))"))
        }
    }

    private func authorize(_ request: Request) throws(APIError) {
        guard let expected = expectedAuthorization else { return }
        let given = request.headers[.authorization].map { Array($0.utf8) } ?? []
        // Compare in constant time; the scheme name is case-insensitive.
        var difference = given.count == expected.count ? 0 : 1
        for index in 0..<min(given.count, expected.count) {
            let a = index < 6 ? given[index] | 0x20 : given[index]
            let b = index < 6 ? expected[index] | 0x20 : expected[index]
            difference |= Int(a ^ b)
        }
        if difference != 0 {
            var error = APIError(.unauthorized, "unauthorized", given.isEmpty
                ? eventStreamTicket(request) != nil
                    ? "the ticket is unknown, used or expired: a ticket opens a stream within a minute of POST /v1/events/ticket, "
                        + "and reopens it with Last-Event-ID for five minutes after it ends; get a new one and resume with ?since=LAST_ID"
                    : "this server needs a token: send the header Authorization: Bearer TOKEN"
                : "the token sent is not this server's: send the header Authorization: Bearer TOKEN with the token the server was started with")
            error.headers[.wwwAuthenticate] = "Bearer realm=\"kvfile\""
            throw error
        }
    }

    private func collectBody(_ request: Request) async throws -> ByteBuffer {
        let limit = configuration.maxBodyBytes
        let tooLarge = APIError(.contentTooLarge, "too_large", "the request body is larger than the server's limit of \(limit) bytes (--max-body)")
        if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > limit { throw tooLarge }
        do {
            return try await request.body.collect(upTo: limit)
        } catch let error as HTTPError where error.status == .contentTooLarge {
            throw tooLarge
        } catch is NIOTooManyBytesError {
            throw tooLarge  // a chunked body (no Content-Length) that goes past the limit
        }
    }

    static func methodNotAllowed(_ allowed: String) -> APIError {
        var error = APIError(.methodNotAllowed, "method_not_allowed", "use \(allowed) on this route")
        error.headers[.allow] = allowed
        return error
    }

    static func apiError(for error: KVFileError) -> APIError {
        switch error.code {
        case .invalidArgument, .readOnly: return APIError(.badRequest, "invalid", error.message)
        case .io where error.isDiskFull: return APIError(HTTPResponse.Status(code: 507, reasonPhrase: "Insufficient Storage"), "disk_full", error.message)
        case .closed: return APIError(.serviceUnavailable, "shutting_down", error.message)
        case .syncFailed, .storeRemoved: return APIError(.serviceUnavailable, apiCode(error.code), error.message)
        default: return APIError(.internalServerError, apiCode(error.code), error.message)
        }
    }

    /// The engine's error code as the API's other codes are spelled (`store_removed`, not `storeRemoved`).
    static func apiCode(_ code: KVFileError.Code) -> String {
        var text = ""
        for character in code.rawValue {
            if character.isUppercase { text += "_" + character.lowercased() } else { text.append(character) }
        }
        return text
    }
}
