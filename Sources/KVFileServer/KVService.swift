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
/// - Change feed: `GET /v1/events` (Server-Sent Events, see ``EventStream``).
struct KVService: HTTPResponder {
    typealias Context = BasicRequestContext

    let store: Store
    let contentTypes: ContentTypes
    let committer: DurableCommitter?
    let hub: SubscriptionHub
    let configuration: ServerConfiguration
    private let expectedAuthorization: [UInt8]?
    private let acceptedHosts: Set<String>?
    private let crossOrigin: CrossOrigin
    private let tickets = EventTickets()

    init(store: Store, contentTypes: ContentTypes, committer: DurableCommitter?, hub: SubscriptionHub, configuration: ServerConfiguration) {
        self.store = store
        self.contentTypes = contentTypes
        self.committer = committer
        self.hub = hub
        self.configuration = configuration
        expectedAuthorization = configuration.token.map { Array("Bearer \($0)".utf8) }
        acceptedHosts = configuration.acceptedHosts
        crossOrigin = CrossOrigin(allowed: Set(configuration.corsOrigins))
    }

    func respond(to request: Request, context: Context) async throws -> Response {
        var response: Response
        do {
            try checkHost(request)
            if request.method == .options && request.headers[.accessControlRequestMethod] != nil {
                return crossOrigin.preflight(request)
            }
            if !isEventStreamWithTicket(request) { try authorize(request) }
            response = try await route(request)
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

    /// `GET /v1/events?ticket=T` with a ticket issued a moment ago stands in for the token.
    private func isEventStreamWithTicket(_ request: Request) -> Bool {
        guard expectedAuthorization != nil, request.method == .get, URLText.normalizedPath(request.uri.path) == "/v1/events",
              let query = try? URLText.query(request.uri.query),
              let ticket = query.last(where: { $0.name == "ticket" }).map({ String(decoding: $0.value, as: UTF8.self) }) else { return false }
        return tickets.redeem(ticket)
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
            case .get, .head: return try getKey(key, request: request)
            case .put: return try await putKey(key, request: request)
            case .delete: return try await deleteKey(key, request: request)
            default: throw Self.methodNotAllowed("GET, HEAD, PUT, DELETE")
            }
        }
        let query = try URLText.query(request.uri.query)
        switch URLText.normalizedPath(rawPath) {
        case "/", "":
            switch request.method {
            case .get, .head: return try compatGet(query)
            // PUT only (as the original): a browser cannot send a cross-origin PUT without a preflight, while a POST needs none.
            case .put: return try await compatPut(request)
            default: throw Self.methodNotAllowed("GET, HEAD, PUT")
            }
        case "/all":
            guard request.method == .get || request.method == .head else { throw Self.methodNotAllowed("GET, HEAD") }
            return try compatAll()
        case "/v1/keys":
            guard request.method == .get || request.method == .head else { throw Self.methodNotAllowed("GET, HEAD") }
            return try listKeys(query)
        case "/v1/stat":
            guard request.method == .get || request.method == .head else { throw Self.methodNotAllowed("GET, HEAD") }
            return .json(StatJSON.document(try store.stats()))
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
                return .json("{\"status\":\"failing\",\"error\":\"\(error.code.rawValue)\",\"message\":\(JSONText.quoted(error.message))}\n",
                             status: .serviceUnavailable)
            }
            return .json("{\"status\":\"ok\",\"newest_seq\":\(hub.lastSeq)}\n")
        case "/v1/events":
            guard request.method == .get else { throw Self.methodNotAllowed("GET") }
            return try EventStream(hub: hub, request: request, query: query).response
        default:
            throw APIError(.notFound, "no_route", "no route \(request.method) \(rawPath); see kvfile(1), SERVE, for the routes")
        }
    }

    // MARK: /v1/keys

    private func getKey(_ key: [UInt8], request: Request) throws -> Response {
        let found = try key.withUnsafeBytes { keyBytes in
            try store.withVersionedValue(forKey: keyBytes) { value, seq -> (ByteBuffer, UInt64)? in
                guard let value else { return nil }
                var buffer = ByteBuffer()
                buffer.writeBytes(value)
                return (buffer, seq)
            }
        }
        guard let (body, seq) = found else {
            throw APIError(.notFound, "not_found", "no value for key \(Self.describe(key))")
        }
        let etag = "\"\(seq)\""
        if let tags = EntityTags(request.headers[.ifNoneMatch]), tags.matchesWeakly(seq) {
            return Response(status: .notModified, headers: [.eTag: etag])
        }
        let headers: HTTPFields = [.contentType: contentTypes.type(of: key, seq: seq), .eTag: etag]
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
                             current == 0 ? "key \(describe(key)) has no value, so the precondition does not hold; nothing was written"
                                 : "key \(describe(key)) is at version \(current) (ETag \"\(current)\"), so the precondition does not hold; nothing was written")
        if current > 0 { error.headers[.eTag] = "\"\(current)\"" }
        return error
    }

    private func putKey(_ key: [UInt8], request: Request) async throws -> Response {
        var body = try await collectBody(request)
        let condition = Self.writeCondition(request)
        let result = try body.withUnsafeReadableBytes { value in
            try key.withUnsafeBytes { key -> ConditionalWriteResult in
                if let condition { return try store.put(key: key, value: value, if: condition) }
                return .written(try store.put(key: key, value: value))
            }
        }
        body.clear()
        guard case .written(let receipt) = result else {
            if case .conditionFailed(let current) = result { throw Self.preconditionFailed(key, current: current) }
            throw APIError(.internalServerError, "internal", "unexpected outcome of a put")
        }
        try contentTypes.record(request.headers[.contentType], for: key, seq: receipt.seq)
        try await committer?.waitDurable()
        let created = receipt.operation == .created
        return Response(
            status: created ? .created : .ok,
            headers: [.contentType: "application/json", .eTag: "\"\(receipt.seq)\""],
            body: ResponseBody(byteBuffer: ByteBuffer(string: "{\"result\":\"\(created ? "created" : "updated")\",\"seq\":\(receipt.seq)}\n")))
    }

    private func deleteKey(_ key: [UInt8], request: Request) async throws -> Response {
        let condition = Self.writeCondition(request)
        if let condition {
            let result = try key.withUnsafeBytes { try store.delete(key: $0, if: condition) }
            switch result {
            case .conditionFailed(let current): throw Self.preconditionFailed(key, current: current)
            case .nothingToDelete: throw APIError(.notFound, "not_found", "no value for key \(Self.describe(key))")
            case .written: break
            }
        } else if try !store.delete(key) {
            throw APIError(.notFound, "not_found", "no value for key \(Self.describe(key))")
        }
        try contentTypes.forget(key)
        try await committer?.waitDurable()
        return Response(status: .noContent)
    }

    /// NDJSON, one `{"key":…,"value":…}` line per pair, sorted by key, streamed in chunks.
    private func listKeys(_ query: [(name: String, value: [UInt8])]) throws -> Response {
        let prefix = query.last { $0.name == "prefix" }?.value ?? []
        let keys = try store.keys(prefix: prefix)
        let store = store
        return Response(status: .ok, headers: [.contentType: "application/x-ndjson"], body: ResponseBody { writer in
            var index = 0
            while index < keys.count {
                var buffer = ByteBuffer()
                while index < keys.count && buffer.readableBytes < 64 << 10 {
                    let key = keys[index]
                    index += 1
                    // A key deleted since the listing began is left out.
                    if let value = try store.get(key) { buffer.writeString(PairJSON.ndjsonLine(key, value)) }
                }
                try await writer.write(buffer)
            }
            try await writer.finish(nil)
        })
    }

    /// `POST /v1/compact`: what `kvfile compact` does, for a store the server holds.
    private func compact() async throws -> Response {
        let store = store
        let result = try await NIOThreadPool.singleton.runIfActive { try store.compact() }
        let seconds = (result.seconds * 1000).rounded() / 1000
        return .json("{\"input_segments\":\(result.inputSegments),\"output_segments\":\(result.outputSegments),"
            + "\"bytes_before\":\(result.bytesBefore),\"bytes_after\":\(result.bytesAfter),"
            + "\"records_copied\":\(result.recordsCopied),\"records_dropped\":\(result.recordsDropped),\"seconds\":\(seconds)}\n")
    }

    // MARK: KeyValueStore service routes

    /// The KeyValueStore service's texts, byte for byte (its Flask views return
    /// `str`, which Flask sends as text/html).
    static let compatContentType = "text/html; charset=utf-8"

    private func compatGet(_ query: [(name: String, value: [UInt8])]) throws -> Response {
        guard let key = query.last(where: { $0.name == "key" })?.value else {
            return .bytes(Array("Error: Missing argument 'KEY'".utf8), contentType: Self.compatContentType, status: .badRequest)
        }
        guard !key.isEmpty, let value = try store.get(key) else {
            return .bytes(Array("Key Does Not exists".utf8), contentType: Self.compatContentType, status: .notFound)
        }
        return .bytes(value, contentType: Self.compatContentType)
    }

    /// Every pair as Python's `json.dumps(data, sort_keys=True, indent=4)`
    /// writes it: non-ASCII as \uXXXX, keys sorted by code point. A key that
    /// is not UTF-8 cannot be a JSON key: it is left out (its value is served
    /// by GET /v1/keys) and counted in the `X-KVFile-Skipped-Keys` header.
    private func compatAll() throws -> Response {
        var pairs: [(key: String, value: String)] = []
        var skipped = 0
        try store.forEach { key, value in
            guard let text = String(validating: key, as: UTF8.self) else { skipped += 1; return }
            // A value that is not UTF-8 becomes {"base64": "…"}, laid out as json.dumps lays out an object.
            let json = String(validating: value, as: UTF8.self).map(PythonJSON.quoted)
                ?? "{\n        \"base64\": " + PythonJSON.quoted(JSONText.base64(value)) + "\n    }"
            pairs.append((text, json))
        }
        pairs.sort { $0.key.unicodeScalars.lexicographicallyPrecedes($1.key.unicodeScalars) }
        var text = "{"
        for (index, pair) in pairs.enumerated() {
            text += (index == 0 ? "\n    " : ",\n    ") + PythonJSON.quoted(pair.key) + ": " + pair.value
        }
        text += pairs.isEmpty ? "}" : "\n}"
        var response = Response.bytes(Array(text.utf8), contentType: Self.compatContentType)
        if skipped > 0 { response.headers[HTTPField.Name("X-KVFile-Skipped-Keys")!] = String(skipped) }
        return response
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
        let receipt = try store.put(Array(key.utf8), value)
        try contentTypes.forget(Array(key.utf8))
        try await committer?.waitDurable()
        let verb = receipt.operation == .created ? "Created" : "Updated"
        return .bytes(Array("Key: \(key) \(verb) with Value: ".utf8) + value, contentType: Self.compatContentType)
    }

    // MARK: helpers

    /// While bound to loopback, only loopback Host names (and --allow-host ones) are served.
    private func checkHost(_ request: Request) throws(APIError) {
        guard let acceptedHosts else { return }
        let given = request.head.authority ?? ""
        var name = given.lowercased()
        if name.hasPrefix("[") {
            if let close = name.firstIndex(of: "]") { name = String(name[...close]) }
        } else if let colon = name.lastIndex(of: ":") {
            name = String(name[..<colon])
        }
        guard acceptedHosts.contains(name) else {
            throw APIError(.forbidden, "host_not_allowed",
                           "this server listens on loopback and serves only the Host names localhost, 127.0.0.1 and [::1] (and --allow-host ones), not \(JSONText.quoted(given))")
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
            var error = APIError(.unauthorized, "unauthorized", "this server needs a token: send the header Authorization: Bearer TOKEN")
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
        case .io where error.errno == 28: return APIError(HTTPResponse.Status(code: 507, reasonPhrase: "Insufficient Storage"), "disk_full", error.message)
        case .closed: return APIError(.serviceUnavailable, "shutting_down", error.message)
        case .syncFailed, .storeRemoved: return APIError(.serviceUnavailable, error.code.rawValue, error.message)
        default: return APIError(.internalServerError, error.code.rawValue, error.message)
        }
    }

    static func describe(_ key: [UInt8]) -> String {
        String(validating: key, as: UTF8.self).map(JSONText.quoted) ?? "0x" + JSONText.hex(key)
    }
}
