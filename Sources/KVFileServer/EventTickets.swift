import Synchronization
#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// One-time tickets for browsers' `EventSource`, which cannot send an
/// `Authorization` header: a page that holds the token asks
/// `POST /v1/events/ticket` for a ticket and opens `/v1/events?ticket=T`.
/// A ticket works once, within a minute, so the long-lived token never goes
/// into a URL (and so into logs and browser history).
final class EventTickets: Sendable {
    private let tickets = Mutex<[String: UInt64]>([:])
    static let lifetimeNanoseconds: UInt64 = 60_000_000_000

    func issue() -> String {
        var random = SystemRandomNumberGenerator()
        let ticket = (0..<4).map { _ in String(random.next() as UInt32, radix: 16) }.joined(separator: "-")
        let expires = Self.now() + Self.lifetimeNanoseconds
        tickets.withLock { tickets in
            let now = Self.now()
            tickets = tickets.filter { $0.value > now }
            tickets[ticket] = expires
        }
        return ticket
    }

    /// True (once) for a ticket issued less than a minute ago.
    func redeem(_ ticket: String) -> Bool {
        tickets.withLock { tickets in
            guard let expires = tickets.removeValue(forKey: ticket) else { return false }
            return expires > Self.now()
        }
    }

    private static func now() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
    }
}
