import HTTPTypes
import Hummingbird
import KVFile
import KVFileText
import NIOCore
import NIOPosix

/// `GET /v1/events`: the change feed as Server-Sent Events. Each event is
///
///     id: <seq>
///     event: kvs_created | kvs_updated | kvs_deleted
///     data: <the event JSON, exactly as `kvfile watch` prints it>
///
/// Resume with `Last-Event-ID` (or `?since=SEQ`); `?from_start=1` begins with
/// the oldest change the log holds; `?prefix=P` (repeatable) keeps the
/// events of keys under a prefix; `?topic=` filters (repeatable or
/// comma-separated). A resume point the log cannot serve gets 410
/// (`history_compacted`) or 409 (`resume_ahead_of_log`) instead of a stream.
/// A stream that cannot go on sends `event: kvfile_error` with
/// `{"error":…,"message":…}` and closes: `history_compacted`,
/// `slow_subscriber`, `shutting_down` or `feed_failed`.
struct EventStream {
    enum Start: Equatable {
        case now
        case after(UInt64)
        case beginning
    }

    let hub: SubscriptionHub
    var start: Start
    var topics: Set<ChangeEvent.Topic>
    /// Only events of keys that start with one of these (none: every key).
    var prefixes: [[UInt8]]
    var embedJSON: Bool

    /// Parses the request's resume point and filters.
    init(hub: SubscriptionHub, request: Request, query: [(name: String, value: [UInt8])]) throws(APIError) {
        self.hub = hub
        start = .now
        topics = []
        prefixes = []
        embedJSON = false
        for (name, value) in query {
            let text = String(decoding: value, as: UTF8.self)
            switch name {
            case "since":
                guard let seq = UInt64(text) else { throw APIError(.badRequest, "bad_request", "since must be a sequence number, not \(JSONText.quoted(text))") }
                start = .after(seq)
            case "from_start":
                if text != "0" && text != "false" { start = .beginning }
            case "topic":
                for name in text.split(separator: ",") {
                    guard let topic = EventJSON.topic(named: String(name)) else {
                        throw APIError(.badRequest, "bad_request", "unknown topic \(JSONText.quoted(String(name))): use kvs_created, kvs_updated or kvs_deleted")
                    }
                    topics.insert(topic)
                }
            case "prefix":
                prefixes.append(value)
            case "json_values":
                embedJSON = text != "0" && text != "false"
            default:
                break
            }
        }
        if let header = request.headers[values: HTTPField.Name("Last-Event-ID")!].last {
            let trimmed = header.trimmingSpaces
            if !trimmed.isEmpty {
                guard let seq = UInt64(trimmed) else {
                    throw APIError(.badRequest, "bad_request", "Last-Event-ID must be a sequence number, not \(JSONText.quoted(header))")
                }
                start = .after(seq)
            }
        }
    }

    /// The stream's response. A resume point the log can never serve (compacted
    /// away, or past its newest change) is answered with 410 or 409 and a JSON
    /// error instead of a stream: an `EventSource` retries a stream that closes,
    /// forever, but gives up on a status other than 200.
    func response() async throws -> Response {
        var catchUp: LogTailer?
        var startError: KVFileError?
        do {
            catchUp = try await tailerForStart()
        } catch let error as KVFileError {
            switch error.code {
            case .historyCompacted: return APIError(.gone, Self.errorName(error), error.message).response
            case .resumeAheadOfLog: return APIError(.conflict, Self.errorName(error), error.message).response
            default: startError = error  // maybe passing (a shortage of descriptors): the client may retry
            }
        }
        let stream = self
        let opened = OpenedTailer(catchUp)
        return Response(
            status: .ok,
            headers: [.contentType: "text/event-stream", .cacheControl: "no-cache", HTTPField.Name("X-Accel-Buffering")!: "no"],
            body: ResponseBody { [startError] writer in try await stream.run(&writer, catchUp: opened.tailer, startError: startError) }
        )
    }

    /// The log tailer the start point needs, when the hub's memory cannot replay from it.
    private func tailerForStart() async throws -> LogTailer? {
        switch start {
        case .now: return nil
        // Past what the hub has seen: the log decides (the hub may lag it a moment, or the point was never in it).
        case .after(let seq): return hub.canReplay(after: seq) ? nil : try await openTailer(.after(seq: seq))
        case .beginning: return try await openTailer(.beginning)
        }
    }

    /// Carries the tailer opened before the response into its body.
    private struct OpenedTailer: Sendable {
        let tailer: LogTailer?
        init(_ tailer: LogTailer?) { self.tailer = tailer }
    }

    private func run(_ writer: inout any ResponseBodyWriter, catchUp opened: LogTailer?, startError: KVFileError?) async throws {
        // A comment only: a block with nothing but `retry:` makes some clients (httpx-sse) report an empty event.
        try await writer.write(ByteBuffer(string: ": kvfile change feed\n\n"))
        var retrySent = false
        var catchUp = opened
        var subscription: Subscription?
        var last: UInt64 = switch start {
        case .now: hub.lastSeq
        case .after(let seq): seq
        case .beginning: 0
        }
        do {
            if let startError { throw startError }
            if catchUp == nil {
                subscription = hub.subscribe(after: last)
                // The hub moved past the start point meanwhile: the log has it.
                if subscription == nil { catchUp = try await openTailer(.after(seq: last)) }
            }
        } catch let error as KVFileError {
            try await writer.write(Self.errorEvent(Self.errorName(error), error.message))
            return try await writer.finish(nil)
        }
        guard catchUp != nil || subscription != nil else { return try await writer.finish(nil) }

        // Catch up from the log (written as read, so a slow client slows only itself).
        if let tailer = catchUp {
            while subscription == nil {
                let events: [ChangeEvent]
                do {
                    events = try await NIOThreadPool.singleton.runIfActive { try tailer.poll() }
                } catch let error as KVFileError {
                    try await writer.write(Self.errorEvent(Self.errorName(error), error.message))
                    return try await writer.finish(nil)
                }
                if events.isEmpty {
                    subscription = hub.subscribe(after: last)
                    if subscription == nil {
                        _ = try await NIOThreadPool.singleton.runIfActive { tailer.wait(milliseconds: 20) }
                    }
                    continue
                }
                var buffer = ByteBuffer()
                for event in events {
                    last = event.seq
                    append(event, to: &buffer, retrySent: &retrySent)
                }
                if buffer.readableBytes > 0 { try await writer.write(buffer) }
            }
        }
        guard let subscription else { return }
        defer { hub.unsubscribe(subscription) }
        for await item in subscription.stream {
            switch item {
            case .event(let event):
                var buffer = ByteBuffer()
                append(event, to: &buffer, retrySent: &retrySent)
                if buffer.readableBytes > 0 { try await writer.write(buffer) }
            case .keepAlive:
                try await writer.write(ByteBuffer(string: ": keep-alive\n\n"))
            }
        }
        switch subscription.end {
        case .slow(let backlog):
            try await writer.write(Self.errorEvent("slow_subscriber",
                "this subscriber fell \(backlog) events behind and was disconnected; reconnect with Last-Event-ID to resume"))
        case .shutdown:
            try await writer.write(Self.errorEvent("shutting_down", "the server is shutting down; reconnect with Last-Event-ID to resume"))
        case .failed(let message):
            try await writer.write(Self.errorEvent("feed_failed", message))
        case .unsubscribed, nil:
            break
        }
        try await writer.finish(nil)
    }

    /// A tailer of this stream's own, for history the hub no longer keeps.
    private func openTailer(_ start: FeedStart) async throws -> LogTailer? {
        try await NIOThreadPool.singleton.runIfActive { [path = hub.storePath] in try LogTailer(path: path, start: start) }
    }

    private func append(_ event: ChangeEvent, to buffer: inout ByteBuffer, retrySent: inout Bool) {
        guard topics.isEmpty || topics.contains(event.topic) else { return }
        guard prefixes.isEmpty || prefixes.contains(where: { event.key.starts(with: $0) }) else { return }
        var line = EventJSON.line(event, embedJSON: embedJSON)
        line.removeLast()
        if !retrySent {
            buffer.writeString("retry: 1000\n")  // with the first event: reconnect after a second
            retrySent = true
        }
        buffer.writeString("id: \(event.seq)\nevent: \(event.topic.rawValue)\ndata: ")
        buffer.writeString(line)
        buffer.writeString("\n\n")
    }

    /// The `error` field of a `kvfile_error` event for an engine error.
    static func errorName(_ error: KVFileError) -> String {
        switch error.code {
        case .historyCompacted: "history_compacted"
        case .resumeAheadOfLog: "resume_ahead_of_log"
        default: "feed_failed"
        }
    }

    static func errorEvent(_ code: String, _ message: String) -> ByteBuffer {
        ByteBuffer(string: "event: kvfile_error\ndata: {\"error\":" + JSONText.quoted(code) + ",\"message\":" + JSONText.quoted(message) + "}\n\n")
    }
}

extension String {
    var trimmingSpaces: String {
        var text = Substring(self)
        while text.first == " " || text.first == "\t" { text.removeFirst() }
        while text.last == " " || text.last == "\t" { text.removeLast() }
        return String(text)
    }
}
