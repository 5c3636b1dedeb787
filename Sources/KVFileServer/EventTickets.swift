import Synchronization
#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// Tickets for browsers' `EventSource`, which cannot send an `Authorization`
/// header: a page that holds the token asks `POST /v1/events/ticket` for a
/// ticket and opens `/v1/events?ticket=T` within a minute, so the long-lived
/// token never goes into a URL (and so into logs and browser history).
///
/// A ticket opens one stream. `EventSource` reconnects to the same URL with
/// `Last-Event-ID` (after a network blip, a `slow_subscriber` cut, a server
/// restart is another matter: its tickets are gone), so a used ticket also
/// reopens a stream for a request carrying `Last-Event-ID` while a stream it
/// opened is open and for five minutes after the last one ended; then it is forgotten.
final class EventTickets: Sendable {
    private enum Ticket {
        /// Not used yet: good until `expires`.
        case issued(expires: UInt64)
        /// Used: `streams` open now, the last one ended at `idleSince`.
        case used(streams: Int, idleSince: UInt64)
    }

    private let tickets = Mutex<[String: Ticket]>([:])
    static let lifetimeNanoseconds: UInt64 = 60_000_000_000
    static let reconnectNanoseconds: UInt64 = 300_000_000_000

    func issue() -> String {
        var random = SystemRandomNumberGenerator()
        let ticket = (0..<4).map { _ in String(random.next() as UInt64, radix: 16) }.joined(separator: "-")
        tickets.withLock { tickets in
            let now = Self.now()
            Self.forgetStale(&tickets, now: now)
            tickets[ticket] = .issued(expires: now + Self.lifetimeNanoseconds)
        }
        return ticket
    }

    /// True when `ticket` may open a stream now: unused and less than a minute
    /// old, or (`reconnecting`: the request carries `Last-Event-ID`) used for a
    /// stream that is still open or ended less than five minutes ago. A true
    /// answer must be followed by ``ended(_:)`` when that stream ends.
    func redeem(_ ticket: String, reconnecting: Bool) -> Bool {
        tickets.withLock { tickets in
            let now = Self.now()
            Self.forgetStale(&tickets, now: now)
            switch tickets[ticket] {
            case .issued:
                tickets[ticket] = .used(streams: 1, idleSince: now)
                return true
            case .used(let streams, let idleSince) where reconnecting:
                tickets[ticket] = .used(streams: streams + 1, idleSince: idleSince)
                return true
            default:
                return false
            }
        }
    }

    /// A stream that `ticket` opened ended.
    func ended(_ ticket: String) {
        tickets.withLock { tickets in
            guard case .used(let streams, _) = tickets[ticket] else { return }
            tickets[ticket] = .used(streams: max(0, streams - 1), idleSince: Self.now())
        }
    }

    private static func forgetStale(_ tickets: inout [String: Ticket], now: UInt64) {
        tickets = tickets.filter { _, ticket in
            switch ticket {
            case .issued(let expires): expires > now
            case .used(let streams, let idleSince): streams > 0 || now - idleSince < reconnectNanoseconds
            }
        }
    }

    private static func now() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
    }
}
