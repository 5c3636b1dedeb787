import Foundation
import Testing

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// Requests the HTTP stack alone answered wrongly: an over-long URL (an empty
/// 400) and HTTP/1.0 clients (sent `Transfer-Encoding: chunked`, which they cannot read).
@Suite struct HTTPFramingTests {
    /// Sends raw bytes and reads until the server closes the connection.
    static func exchange(_ port: UInt16, _ request: String) throws -> [UInt8] {
        let connection = try Connection(port: port, timeoutSeconds: 10)
        try connection.send(Array(request.utf8))
        var response: [UInt8] = []
        while true {
            let part = try connection.receive()
            if part.isEmpty { return response }
            response += part
        }
    }

    @Test func anOverLongURLGets414JSON() throws {
        let dir = TemporaryDirectory()
        let server = try ServerProcess(store: dir.sub("u.kv"), scratch: dir)
        for length in [17_000, 100_000, 900_000] {
            let result = try server.client().get("/v1/keys/" + String(repeating: "k", count: length))
            #expect(result.status == 414, "\(length)-byte key")
            #expect(result.json["error"] as? String == "uri_too_long")
        }
        // A long but allowed URL still reaches the routes, and the server goes on serving.
        #expect(try server.client().get("/v1/keys/" + String(repeating: "k", count: 4000)).status == 404)
        #expect(try server.client().put("/v1/keys/after", "1").status == 201)

        // On one kept-alive connection: a plain request, an over-long one, then a plain one again.
        let long = "/v1/keys/" + String(repeating: "k", count: 20_000)
        let raw = try Self.exchange(server.port, "GET /v1/keys/after HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
            + "GET \(long) HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
            + "GET /v1/keys/after HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        // Bodies end without a newline: find each status line by its start.
        let statuses = String(decoding: raw, as: UTF8.self).components(separatedBy: "HTTP/1.1 ").dropFirst().map { $0.prefix(3) }
        #expect(statuses == ["200", "414", "200"])
    }

    @Test func anHTTP10ClientGetsAnHTTP10AnswerWithoutChunks() throws {
        let dir = TemporaryDirectory()
        let server = try ServerProcess(store: dir.sub("h.kv"), scratch: dir)
        for index in 0..<3 { _ = try server.client().put("/v1/keys/k\(index)", "v\(index)") }
        // A streamed body (NDJSON listing, /all, the event stream's head) and a plain one.
        for path in ["/v1/keys?prefix=k", "/all", "/v1/keys/k1"] {
            let raw = try Self.exchange(server.port, "GET \(path) HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            let text = String(decoding: raw, as: UTF8.self)
            #expect(text.hasPrefix("HTTP/1.0 200"), "\(path): \(text.prefix(80))")
            #expect(!text.lowercased().contains("transfer-encoding"), "\(path): \(text)")
            let body = text.components(separatedBy: "\r\n\r\n").dropFirst().joined(separator: "\r\n\r\n")
            switch path {
            case "/v1/keys/k1": #expect(body == "v1")
            case "/all": #expect(body == "{\n    \"k0\": \"v0\",\n    \"k1\": \"v1\",\n    \"k2\": \"v2\"\n}")
            default: #expect(body.split(separator: "\n").count == 3, "\(body)")
            }
        }
        // HTTP/1.1 keeps its chunked stream.
        let raw = try Self.exchange(server.port, "GET /v1/keys?prefix=k HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        #expect(String(decoding: raw, as: UTF8.self).lowercased().contains("transfer-encoding: chunked"))
    }

    /// HEAD of a streamed route answers with its headers only, without claiming a length of 0.
    @Test func headOfAStreamedRouteHasNoBodyAndNoZeroLength() throws {
        let dir = TemporaryDirectory()
        let server = try ServerProcess(store: dir.sub("h.kv"), scratch: dir)
        _ = try server.client().put("/v1/keys/k", "v")
        for path in ["/all", "/v1/keys?prefix=k"] {
            let raw = String(decoding: try Self.exchange(server.port, "HEAD \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"), as: UTF8.self)
            #expect(raw.hasPrefix("HTTP/1.1 200"), "\(path): \(raw)")
            #expect(!raw.lowercased().contains("content-length: 0"), "\(path): \(raw)")
            #expect(raw.components(separatedBy: "\r\n\r\n").dropFirst().joined().isEmpty, "\(path): a body after the head: \(raw)")
        }
    }

    /// /all is written as it is read (chunked), byte for byte what it was when built whole.
    @Test func allStreamsTheSameBytes() throws {
        let dir = TemporaryDirectory()
        let server = try ServerProcess(store: dir.sub("a.kv"), scratch: dir)
        let client = server.client()
        var expected: [(String, String)] = []
        for index in 0..<3000 {
            let key = "key-\(String(index, radix: 7))-é"
            let value = "value \(index) \"quoted\" ✓"
            expected.append((key, value))
            _ = try client.put("/", #"{"key": "\#(key)", "value": "\#(value.replacingOccurrences(of: "\"", with: "\\\""))"}"#)
        }
        let result = try client.get("/all")
        #expect(result.status == 200)
        #expect(result.header("transfer-encoding") == "chunked")
        #expect(result.header("content-type") == "text/html; charset=utf-8")
        func python(_ text: String) -> String {
            var out = "\""
            for scalar in text.unicodeScalars {
                switch scalar {
                case "\"": out += "\\\""
                case "\\": out += "\\\\"
                case _ where scalar.value < 0x80: out.unicodeScalars.append(scalar)
                default: out += String(format: "\\u%04x", scalar.value)
                }
            }
            return out + "\""
        }
        expected.sort { $0.0.unicodeScalars.lexicographicallyPrecedes($1.0.unicodeScalars) }
        let document = "{\n" + expected.map { "    " + python($0.0) + ": " + python($0.1) }.joined(separator: ",\n") + "\n}"
        #expect(result.text == document)
    }
}
