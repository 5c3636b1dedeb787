import Foundation
@_exported import ProcessTestSupport
import Testing

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

struct ServerTestError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}


/// A real `kvfile-server` (or `kvfile serve`) process on a free loopback port.
final class ServerProcess {
    let process = Process()
    let outputPath: String
    let errorPath: String
    private(set) var port: UInt16 = 0

    init(store: String, arguments: [String] = [], environment: [String: String]? = nil, viaKvfile: Bool = false, port: UInt16 = 0,
         scratch: TemporaryDirectory) throws {
        let id = UUID().uuidString
        outputPath = scratch.sub("server-\(id).out")
        errorPath = scratch.sub("server-\(id).err")
        for path in [outputPath, errorPath] { _ = FileManager.default.createFile(atPath: path, contents: nil) }
        if viaKvfile {
            process.executableURL = URL(fileURLWithPath: buildDirectory + "/kvfile")
            process.arguments = ["serve", store, "--port", String(port)] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: buildDirectory + "/kvfile-server")
            process.arguments = [store, "--port", String(port)] + arguments
        }
        if let environment { process.environment = environment }
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: outputPath))
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errorPath))
        try process.run()
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            let output = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
            if let range = output.range(of: "listening on http://127.0.0.1:") {
                let digits = output[range.upperBound...].prefix { $0.isNumber }
                if let port = UInt16(digits) {
                    self.port = port
                    return
                }
            }
            if !process.isRunning { break }
            usleep(10_000)
        }
        throw ServerTestError("server did not start: \(errors)")
    }

    var output: String { (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "" }
    var errors: String { (try? String(contentsOfFile: errorPath, encoding: .utf8)) ?? "" }

    func client() -> HTTPClient { HTTPClient(port: port) }

    /// Sends `signal` and waits for the process to end; returns its exit status (nil on timeout).
    @discardableResult
    func stop(_ signal: Int32 = SIGTERM, seconds: Double = 20) -> Int32? {
        if process.isRunning { kill(process.processIdentifier, signal) }
        let deadline = Date().addingTimeInterval(seconds)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        return process.isRunning ? nil : process.terminationStatus
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }
}

struct HTTPResult {
    var status: Int
    var headers: [String: String]
    var body: [UInt8]
    var text: String { String(decoding: body, as: UTF8.self) }
    func header(_ name: String) -> String? { headers[name.lowercased()] }
    var json: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any]) ?? [:] }
}

/// A connected loopback TCP socket with a receive timeout.
final class Connection {
    let fd: Int32

    init(port: UInt16, timeoutSeconds: Int = 20) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ServerTestError("socket: \(errno)") }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard result == 0 else {
            close(fd)
            throw ServerTestError("connect to port \(port): errno \(errno)")
        }
    }

    deinit { close(fd) }

    func send(_ bytes: [UInt8]) throws {
        var done = 0
        while done < bytes.count {
            let n = bytes[done...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw ServerTestError("send: errno \(errno)")
            }
            done += n
        }
    }

    /// Some bytes; empty at end of stream; throws on timeout.
    func receive() throws -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 {
                if errno == EINTR { continue }
                throw ServerTestError("receive: errno \(errno) (timeout?)")
            }
            return Array(buffer[0..<n])
        }
    }

    static func request(method: String, path: String, headers: [String: String], body: [UInt8]?) -> [UInt8] {
        var head = "\(method) \(path) HTTP/1.1\r\n"
        if !headers.keys.contains(where: { $0.lowercased() == "host" }) { head += "Host: 127.0.0.1\r\n" }
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        if let body { head += "Content-Length: \(body.count)\r\n" }
        head += "\r\n"
        return Array(head.utf8) + (body ?? [])
    }
}

/// A minimal HTTP/1.1 client: one connection per request (`Connection: close`).
struct HTTPClient {
    let port: UInt16
    var token: String?

    init(port: UInt16, token: String? = nil) {
        self.port = port
        self.token = token
    }

    func request(_ method: String, _ path: String, headers: [String: String] = [:], body: [UInt8]? = nil) throws -> HTTPResult {
        let connection = try Connection(port: port)
        var headers = headers
        headers["Connection"] = "close"
        if let token { headers["Authorization"] = "Bearer \(token)" }
        try connection.send(Connection.request(method: method, path: path, headers: headers, body: body))
        var raw: [UInt8] = []
        while true {
            let chunk = try connection.receive()
            if chunk.isEmpty { break }
            raw += chunk
        }
        return try HTTPClient.parse(raw, method: method)
    }

    func get(_ path: String, headers: [String: String] = [:]) throws -> HTTPResult { try request("GET", path, headers: headers) }

    func put(_ path: String, _ body: String, headers: [String: String] = [:]) throws -> HTTPResult {
        try request("PUT", path, headers: headers, body: Array(body.utf8))
    }

    static func parse(_ raw: [UInt8], method: String) throws -> HTTPResult {
        guard let end = headerEnd(raw) else { throw ServerTestError("no complete response head in \(raw.count) bytes") }
        let (status, headers) = try parseHead(raw[0..<end])
        var body = Array(raw[(end + 4)...])
        if headers["transfer-encoding"]?.lowercased() == "chunked" {
            var decoder = ChunkedDecoder()
            body = try decoder.feed(body)
        } else if let length = headers["content-length"].flatMap(Int.init) {
            body = Array(body.prefix(length))
        }
        return HTTPResult(status: status, headers: headers, body: body)
    }

    static func headerEnd(_ raw: [UInt8]) -> Int? {
        guard raw.count >= 4 else { return nil }
        for index in 0...(raw.count - 4) where raw[index] == 13 && raw[index + 1] == 10 && raw[index + 2] == 13 && raw[index + 3] == 10 {
            return index
        }
        return nil
    }

    static func parseHead(_ head: ArraySlice<UInt8>) throws -> (Int, [String: String]) {
        let lines = String(decoding: head, as: UTF8.self).components(separatedBy: "\r\n")
        let statusParts = lines[0].split(separator: " ")
        guard statusParts.count >= 2, let status = Int(statusParts[1]) else { throw ServerTestError("bad status line \(lines[0])") }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return (status, headers)
    }
}

/// Decodes a chunked body as it arrives.
struct ChunkedDecoder {
    private var pending: [UInt8] = []
    private(set) var finished = false

    /// Feeds raw bytes; returns the body bytes they completed.
    mutating func feed(_ bytes: [UInt8]) throws -> [UInt8] {
        pending += bytes
        var out: [UInt8] = []
        while !finished {
            guard let lineEnd = indexOfCRLF(pending, from: 0) else { break }
            let sizeText = String(decoding: pending[0..<lineEnd], as: UTF8.self).split(separator: ";").first.map(String.init) ?? ""
            guard let size = Int(sizeText.trimmingCharacters(in: .whitespaces), radix: 16) else { throw ServerTestError("bad chunk size \(sizeText)") }
            if size == 0 {
                finished = true
                break
            }
            let start = lineEnd + 2
            guard pending.count >= start + size + 2 else { break }
            out += pending[start..<(start + size)]
            pending.removeFirst(start + size + 2)
        }
        return out
    }

    private func indexOfCRLF(_ bytes: [UInt8], from: Int) -> Int? {
        guard bytes.count >= 2 else { return nil }
        for index in from..<(bytes.count - 1) where bytes[index] == 13 && bytes[index + 1] == 10 { return index }
        return nil
    }
}

/// One Server-Sent Event as parsed by a client.
struct SSEEvent: Equatable {
    var id: String?
    var event: String?
    var data: String
    var retry: String? = nil
    var seq: UInt64? { id.flatMap(UInt64.init) }
}

/// Reads a `text/event-stream` response as it arrives.
final class SSEClient: @unchecked Sendable {  // used by one thread at a time
    let connection: Connection
    private(set) var status = 0
    private(set) var headers: [String: String] = [:]
    private var decoder = ChunkedDecoder()
    /// Decoded body bytes not parsed yet start at `position`.
    private var buffer: [UInt8] = []
    private var position = 0
    private(set) var closed = false
    /// Comment lines seen (`: keep-alive` and the like).
    private(set) var comments: [String] = []
    /// Blocks that carried fields but no event (some clients report those as empty events).
    private(set) var blocksWithoutEvent = 0

    init(port: UInt16, path: String = "/v1/events", headers: [String: String] = [:], timeoutSeconds: Int = 20) throws {
        connection = try Connection(port: port, timeoutSeconds: timeoutSeconds)
        try connection.send(Connection.request(method: "GET", path: path, headers: headers, body: nil))
        var raw: [UInt8] = []
        while HTTPClient.headerEnd(raw) == nil {
            let chunk = try connection.receive()
            if chunk.isEmpty { throw ServerTestError("closed before the response head") }
            raw += chunk
        }
        let end = HTTPClient.headerEnd(raw)!
        (self.status, self.headers) = try HTTPClient.parseHead(raw[0..<end])
        buffer = try decoder.feed(Array(raw[(end + 4)...]))
    }

    /// The end of the next complete block ("\n\n"), if one has arrived.
    private func blockEnd() -> Int? {
        guard buffer.count - position >= 2 else { return nil }
        var index = position
        while index + 1 < buffer.count {
            if buffer[index] == 10 && buffer[index + 1] == 10 { return index }
            index += 1
        }
        return nil
    }

    /// The next event; nil when the stream ended. Comments are collected, not returned.
    func next() throws -> SSEEvent? {
        while true {
            if let end = blockEnd() {
                let block = String(decoding: buffer[position..<end], as: UTF8.self)
                position = end + 2
                if position > 1 << 16 {
                    buffer.removeFirst(position)
                    position = 0
                }
                var event = SSEEvent(id: nil, event: nil, data: "")
                var sawField = false
                for line in block.split(separator: "\n", omittingEmptySubsequences: false) {
                    if line.hasPrefix(":") { comments.append(String(line)); continue }
                    let parts = line.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
                    let name = String(parts[0])
                    var value = parts.count > 1 ? String(parts[1]) : ""
                    if value.hasPrefix(" ") { value.removeFirst() }
                    switch name {
                    case "id": event.id = value; sawField = true
                    case "event": event.event = value; sawField = true
                    case "data": event.data += event.data.isEmpty ? value : "\n" + value; sawField = true
                    case "retry": event.retry = value; sawField = true
                    default: break
                    }
                }
                if sawField && (event.id != nil || !event.data.isEmpty) { return event }
                if sawField { blocksWithoutEvent += 1 }
                continue
            }
            if closed || decoder.finished { return nil }
            let chunk = try connection.receive()
            if chunk.isEmpty {
                closed = true
                continue
            }
            buffer += try decoder.feed(chunk)
        }
    }

    /// The next `count` events (fails when the stream ends first).
    func next(_ count: Int) throws -> [SSEEvent] {
        var events: [SSEEvent] = []
        while events.count < count {
            guard let event = try next() else { throw ServerTestError("stream ended after \(events.count) of \(count) events") }
            events.append(event)
        }
        return events
    }
}

func jsonObject(_ text: String) -> [String: Any] {
    (try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]) ?? [:]
}

/// Runs the built `kvfile` tool to completion.
func kvfile(_ arguments: [String], input: [UInt8]? = nil) throws -> (status: Int32, output: String, errors: String) {
    let result = try run(buildDirectory + "/kvfile", arguments, input: input)
    return (result.status, result.text, result.stderr)
}
