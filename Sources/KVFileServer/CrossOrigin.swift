import HTTPTypes
import Hummingbird

/// Opt-in CORS (`--cors-origin`): pages of the origins named may use the API
/// from a browser; every other page gets no CORS headers, so its browser
/// neither lets it read answers nor sends it the preflighted writes (PUT,
/// DELETE, JSON bodies). The one write a page could send without a preflight,
/// `POST /v1/compact`, is refused when it comes from another origin.
struct CrossOrigin: Sendable {
    let allowed: Set<String>

    static let methods = "GET, HEAD, PUT, DELETE, POST"
    static let headers = "Authorization, Content-Type, If-Match, If-None-Match, Last-Event-ID"

    /// The request's Origin when it is one of the allowed ones.
    func allowedOrigin(_ request: Request) -> String? {
        guard let origin = request.headers[.origin], allowed.contains(origin) else { return nil }
        return origin
    }

    /// True for a request a browser sent from a page of an origin not allowed.
    func isForeign(_ request: Request) -> Bool {
        guard let origin = request.headers[.origin] else { return false }
        return !allowed.contains(origin)
    }

    /// The answer to a preflight (`OPTIONS` with `Access-Control-Request-Method`).
    func preflight(_ request: Request) -> Response {
        guard let origin = allowedOrigin(request) else {
            return Response(status: .forbidden, headers: [.vary: "Origin"])
        }
        return Response(status: .noContent, headers: [
            .accessControlAllowOrigin: origin, .accessControlAllowMethods: Self.methods,
            .accessControlAllowHeaders: Self.headers, .accessControlMaxAge: "600", .vary: "Origin",
        ])
    }

    /// Adds the CORS headers an allowed origin's page needs to read the answer.
    func decorate(_ response: inout Response, for request: Request) {
        // A value stored as text/html must not run as a page of the API's own origin: no sniffing, and
        // a sandbox (no scripts, an origin of its own) for whatever a browser renders from here.
        response.headers[.xContentTypeOptions] = "nosniff"
        response.headers[.contentSecurityPolicy] = "sandbox"
        guard let origin = allowedOrigin(request) else { return }
        response.headers[.accessControlAllowOrigin] = origin
        response.headers[.accessControlExposeHeaders] = "ETag, X-KVFile-Skipped-Keys"
        response.headers[.vary] = "Origin"
    }
}
