import HTTPTypes
import Hummingbird
import KVFileText
import NIOCore

/// Query strings and paths as clients send them: `+` is a space in a query
/// (HTML forms, Python's requests), `%XX` is any byte.
enum URLText {
    /// Decodes `%XX` escapes (and `+` as space when `plusIsSpace`); nil when an escape is malformed.
    static func percentDecoded(_ text: Substring, plusIsSpace: Bool) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count)
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            switch byte {
            case UInt8(ascii: "%"):
                guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else { return nil }
                out.append(high << 4 | low)
            case UInt8(ascii: "+") where plusIsSpace:
                out.append(UInt8(ascii: " "))
            default:
                out.append(byte)
            }
        }
        return out
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    /// Every `name=value` of a query, decoded; a malformed escape is an error naming the parameter.
    static func query(_ query: String?) throws(APIError) -> [(name: String, value: [UInt8])] {
        guard let query, !query.isEmpty else { return [] }
        var result: [(String, [UInt8])] = []
        for part in query.split(separator: "&", omittingEmptySubsequences: true) {
            let pieces = part.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let nameBytes = percentDecoded(pieces[0], plusIsSpace: true),
                  let value = pieces.count > 1 ? percentDecoded(pieces[1], plusIsSpace: true) : []
            else {
                throw APIError(.badRequest, "bad_request", "query parameter \(JSONText.quoted(String(pieces[0]))) has a malformed %-escape")
            }
            result.append((String(decoding: nameBytes, as: UTF8.self), value))
        }
        return result
    }

    /// The path without its query, with runs of `/` folded into one (clients
    /// that join a base URL ending in `/` with `/all` send `//all`).
    static func normalizedPath(_ path: String) -> Substring {
        var path = Substring(path)
        if let question = path.firstIndex(of: "?") { path = path[..<question] }
        guard path.contains("//") else { return path }
        var out = ""
        var lastWasSlash = false
        for character in path {
            if character == "/" && lastWasSlash { continue }
            lastWasSlash = character == "/"
            out.append(character)
        }
        return Substring(out)
    }
}

/// A failed request: status, a stable machine-readable code, and a message
/// that says what to do. Sent as `{"error":"…","message":"…"}`.
struct APIError: Error {
    var status: HTTPResponse.Status
    var code: String
    var message: String
    var headers: HTTPFields = [:]

    init(_ status: HTTPResponse.Status, _ code: String, _ message: String) {
        self.status = status
        self.code = code
        self.message = message
    }

    var response: Response {
        var headers = headers
        headers[.contentType] = "application/json"
        let body = "{\"error\":" + JSONText.quoted(code) + ",\"message\":" + JSONText.quoted(message) + "}\n"
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: body)))
    }
}

extension Response {
    /// A complete response with `body` and a content type.
    static func bytes(_ body: some Collection<UInt8>, contentType: String, status: HTTPResponse.Status = .ok) -> Response {
        var buffer = ByteBuffer()
        buffer.writeBytes(body)
        return Response(status: status, headers: [.contentType: contentType], body: ResponseBody(byteBuffer: buffer))
    }

    static func text(_ text: String, status: HTTPResponse.Status = .ok) -> Response {
        bytes(Array(text.utf8), contentType: "text/plain; charset=utf-8", status: status)
    }

    static func json(_ text: String, status: HTTPResponse.Status = .ok) -> Response {
        bytes(Array(text.utf8), contentType: "application/json", status: status)
    }
}
