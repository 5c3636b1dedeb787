import KVFileText

/// The Engine.IO v4 polling payload and the Socket.IO v5 packets that
/// `kvfile serve` speaks on `/socket.io/` (only what a subscriber needs).
///
/// A payload is packets joined by U+001E; a packet is a type digit and its
/// data. Socket.IO packets ride in Engine.IO `4` (message) packets:
/// `40…` connect, `41` disconnect, `42[…]` event, `44{…}` connect error.
enum EngineIOText {
    static let separator: Character = "\u{1e}"
    static let open: Character = "0"
    static let close: Character = "1"
    static let ping: Character = "2"
    static let pong: Character = "3"
    static let message: Character = "4"
    static let noop: Character = "6"

    /// A python-socketio client refuses a payload of more than 16 packets.
    static let packetsPerPayload = 16
    /// Bytes a payload may carry (the `maxPayload` announced to clients).
    static let maxPayloadBytes = 1_000_000

    /// The packets of a payload a client sent.
    static func packets(of payload: String) -> [Substring] {
        payload.split(separator: separator, omittingEmptySubsequences: true)
    }

    /// The open packet of a new session.
    static func openPacket(sid: String, pingIntervalMilliseconds: Int, pingTimeoutMilliseconds: Int) -> String {
        "0{\"sid\":\(JSONText.quoted(sid)),\"upgrades\":[],\"pingInterval\":\(pingIntervalMilliseconds),"
            + "\"pingTimeout\":\(pingTimeoutMilliseconds),\"maxPayload\":\(maxPayloadBytes)}"
    }

    /// The Socket.IO acknowledgement of a connect to the default namespace.
    static func connectAck(sid: String) -> String { "40{\"sid\":\(JSONText.quoted(sid))}" }

    /// The Socket.IO refusal of a connect to `namespace`.
    static func connectError(namespace: Substring, message: String) -> String {
        (namespace == "/" ? "44" : "44\(namespace),") + "{\"message\":\(JSONText.quoted(message))}"
    }

    /// A Socket.IO event `name` with one argument, already JSON.
    static func event(_ name: String, argumentJSON: String) -> String {
        "42[\(JSONText.quoted(name)),\(argumentJSON)]"
    }

    /// An Engine.IO error answer: `{"code":N,"message":"…"}` (the codes Engine.IO servers use).
    enum Failure: Int {
        case unknownTransport = 0
        case unknownSession = 1
        case badHandshakeMethod = 2
        case badRequest = 3
        case forbidden = 4
        case unsupportedProtocolVersion = 5

        var message: String {
            switch self {
            case .unknownTransport: "Transport unknown"
            case .unknownSession: "Session ID unknown"
            case .badHandshakeMethod: "Bad handshake method"
            case .badRequest: "Bad request"
            case .forbidden: "Forbidden"
            case .unsupportedProtocolVersion: "Unsupported protocol version"
            }
        }

        var json: String { "{\"code\":\(rawValue),\"message\":\(JSONText.quoted(message))}" }
    }
}
