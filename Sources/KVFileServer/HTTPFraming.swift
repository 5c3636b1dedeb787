import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1

/// Channel handlers for what Hummingbird's HTTP/1 pipeline leaves out: an
/// over-long request line gets 414 JSON (the parser's own limit answers an
/// empty 400), and an HTTP/1.0 client gets an HTTP/1.0 answer (no chunked
/// encoding, which it cannot read: a streamed body ends with the connection).
///
/// Given to Hummingbird as an additional handler, which lands after the
/// HTTPTypes codec; when added it puts the two real handlers where they can
/// see raw bytes and HTTP/1 versions.
final class HTTPFramingSetup: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart

    func handlerAdded(context: ChannelHandlerContext) {
        let pipeline = context.pipeline.syncOperations
        let limit = RequestLineLimit()
        do {
            try pipeline.addHandler(limit, position: .first)
            let codec = try pipeline.handler(type: HTTP1ToHTTPServerCodec.self)
            try pipeline.addHandler(HTTP10Framing(requestLine: limit), position: .before(codec))
        } catch {
            context.fireErrorCaught(error)
        }
    }
}

/// Refuses a request line longer than `limit` bytes with 414, before the
/// parser buffers it. Scans only the first line of each request.
final class RequestLineLimit: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// Keys are at most 4,096 bytes: percent-encoded, a path or query holding one fits well within this.
    static let limit = 16 * 1024

    private var scanning = true
    private var length = 0
    private var refused = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !refused else { return }
        if scanning {
            let buffer = unwrapInboundIn(data)
            if let newline = buffer.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) {
                length += newline - buffer.readerIndex
                scanning = false
            } else {
                length += buffer.readableBytes
            }
            if length > Self.limit {
                refuse(context)
                return
            }
        }
        context.fireChannelRead(data)
    }

    /// The parser finished a request: the next bytes begin the next one's request line.
    func requestEnded() {
        scanning = true
        length = 0
    }

    private func refuse(_ context: ChannelHandlerContext) {
        refused = true
        let body = "{\"error\":\"uri_too_long\",\"message\":\"the request line is longer than \(Self.limit) bytes (keys are at most 4096 bytes)\"}\n"
        let head = "HTTP/1.1 414 URI Too Long\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n"
        let promise = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: head + body)), promise: promise)
        // Closing while the client still sends would reset the connection and lose the answer:
        // end our side, drop what still arrives, and close after a grace period.
        let channel = context.channel
        promise.futureResult.whenComplete { _ in
            channel.close(mode: .output, promise: nil)
            channel.eventLoop.scheduleTask(in: .seconds(10)) { channel.close(promise: nil) }
        }
    }
}

/// Answers an HTTP/1.0 request as HTTP/1.0 and closes the connection after
/// it: a body of unknown length is then delimited by the close, not chunked.
final class HTTP10Framing: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private let requestLine: RequestLineLimit
    /// The versions of requests not yet answered, oldest first (pipelining).
    private var versions: [HTTPVersion] = []
    private var closeAfterResponse = false

    init(requestLine: RequestLineLimit) {
        self.requestLine = requestLine
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): versions.append(head.version)
        case .body: break
        case .end: requestLine.requestEnded()
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(var head) where head.status.code >= 200:
            let version = versions.isEmpty ? .http1_1 : versions.removeFirst()
            if version == .http1_0 {
                head.version = .http1_0
                head.headers.remove(name: "transfer-encoding")
                head.headers.replaceOrAdd(name: "connection", value: "close")
                closeAfterResponse = true
            }
            context.write(wrapOutboundOut(.head(head)), promise: promise)
        case .end where closeAfterResponse:
            closeAfterResponse = false
            let written = promise ?? context.eventLoop.makePromise(of: Void.self)
            context.write(data, promise: written)
            let channel = context.channel
            written.futureResult.whenComplete { _ in channel.close(promise: nil) }
        default:
            context.write(data, promise: promise)
        }
    }
}
