import ArgumentParser

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// The wall clock, in milliseconds since the Unix epoch: what deadlines are measured by.
enum WallClock {
    static func milliseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return UInt64(now.tv_sec) * 1000 + UInt64(now.tv_nsec) / 1_000_000
    }
}

/// `--ttl` and `--expire-at`, shared by the commands that write a value.
struct ExpiryOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp(
        "Let the value expire after this long: 30s, 10m, 2h, 1d, 500ms, or a number of seconds (combinations like 1h30m work). From then on every reader sees no value.",
        valueName: "duration"))
    var ttl: String?

    @Option(name: .long, help: ArgumentHelp(
        "Let the value expire at this time: RFC 3339 (2026-12-24T18:00:00Z, or with an offset) or Unix seconds.",
        valueName: "time"))
    var expireAt: String?

    func validate() throws {
        if ttl != nil && expireAt != nil { throw ValidationError("give --ttl or --expire-at, not both") }
        if let ttl, Self.milliseconds(ofDuration: ttl) == nil {
            throw ValidationError("--ttl takes a duration such as 30s, 10m, 2h, 1d, 1h30m or 500ms (more than 0 and under 35,000 years), not '\(RawArguments.text(of: ttl))'")
        }
        if let expireAt, Self.milliseconds(ofTime: expireAt) == nil {
            throw ValidationError("--expire-at takes an RFC 3339 time (2026-12-24T18:00:00Z) or Unix seconds, not '\(RawArguments.text(of: expireAt))'")
        }
    }

    /// The deadline asked for, in milliseconds since the epoch; 0 for none.
    /// A time already past is refused: the write would be invisible at once.
    func deadline() throws -> UInt64 {
        let now = WallClock.milliseconds()
        if let ttl, let length = Self.milliseconds(ofDuration: ttl) { return now + length }
        if let expireAt, let time = Self.milliseconds(ofTime: expireAt) {
            guard time > now else {
                throw CLIError(message: "--expire-at \(expireAt) has already passed; nothing was written", code: .invalidInput)
            }
            return time
        }
        return 0
    }

    /// "90", "30s", "10m", "2h", "1d", "1h30m", "500ms" → milliseconds (nil when malformed, zero or absurd).
    static func milliseconds(ofDuration text: String) -> UInt64? {
        if let seconds = UInt64(text) { return seconds > 0 && seconds < 1 << 40 ? seconds * 1000 : nil }
        var total: UInt64 = 0
        var number: UInt64?
        var rest = Substring(text)
        while let first = rest.first {
            if let digit = first.wholeNumberValue, first.isASCII {
                let (next, overflow) = (number ?? 0).multipliedReportingOverflow(by: 10)
                guard !overflow, next < 1 << 40 else { return nil }
                number = next + UInt64(digit)
                rest.removeFirst()
                continue
            }
            guard let value = number else { return nil }
            let unit: UInt64
            if rest.hasPrefix("ms") { unit = 1; rest.removeFirst(2) } else {
                switch first {
                case "s": unit = 1000
                case "m": unit = 60_000
                case "h": unit = 3_600_000
                case "d": unit = 86_400_000
                default: return nil
                }
                rest.removeFirst()
            }
            let (part, overflow) = value.multipliedReportingOverflow(by: unit)
            guard !overflow else { return nil }
            total += part
            guard total < 1 << 50 else { return nil }
            number = nil
        }
        guard number == nil, total > 0 else { return nil }
        return total
    }

    /// RFC 3339 ("2026-12-24T18:00:00Z", "…T18:00:00.250+01:00") or Unix seconds → milliseconds.
    static func milliseconds(ofTime text: String) -> UInt64? {
        if let seconds = UInt64(text) { return seconds < 1 << 40 ? seconds * 1000 : nil }
        let bytes = Array(text.utf8)
        func number(_ from: Int, _ count: Int) -> Int? {
            guard from + count <= bytes.count else { return nil }
            var value = 0
            for byte in bytes[from..<(from + count)] {
                guard byte >= 48 && byte <= 57 else { return nil }
                value = value * 10 + Int(byte - 48)
            }
            return value
        }
        guard bytes.count >= 20, bytes[4] == UInt8(ascii: "-"), bytes[7] == UInt8(ascii: "-"),
              bytes[10] == UInt8(ascii: "T") || bytes[10] == UInt8(ascii: "t") || bytes[10] == UInt8(ascii: " "),
              bytes[13] == UInt8(ascii: ":"), bytes[16] == UInt8(ascii: ":"),
              let year = number(0, 4), let month = number(5, 2), let day = number(8, 2),
              let hour = number(11, 2), let minute = number(14, 2), let second = number(17, 2),
              (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61 else { return nil }
        var index = 19
        var fraction = 0
        if index < bytes.count && bytes[index] == UInt8(ascii: ".") {
            index += 1
            var digits = 0
            while index < bytes.count, bytes[index] >= 48 && bytes[index] <= 57 {
                if digits < 3 { fraction = fraction * 10 + Int(bytes[index] - 48) }
                digits += 1
                index += 1
            }
            guard digits > 0 else { return nil }
            for _ in min(digits, 3)..<3 { fraction *= 10 }
        }
        guard index < bytes.count else { return nil }
        var offsetSeconds = 0
        if bytes[index] == UInt8(ascii: "Z") || bytes[index] == UInt8(ascii: "z") {
            guard index + 1 == bytes.count else { return nil }
        } else {
            guard bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-"), index + 6 == bytes.count,
                  bytes[index + 3] == UInt8(ascii: ":"), let hours = number(index + 1, 2), let minutes = number(index + 4, 2),
                  hours < 24, minutes < 60 else { return nil }
            offsetSeconds = (hours * 3600 + minutes * 60) * (bytes[index] == UInt8(ascii: "+") ? 1 : -1)
        }
        var parts = tm()
        parts.tm_year = Int32(year - 1900)
        parts.tm_mon = Int32(month - 1)
        parts.tm_mday = Int32(day)
        parts.tm_hour = Int32(hour)
        parts.tm_min = Int32(minute)
        parts.tm_sec = Int32(second)
        let local = Int(timegm(&parts))
        // timegm moves 2026-02-30 to March 2: a date that does not exist is refused.
        var back = tm()
        var time = time_t(local)
        guard gmtime_r(&time, &back) != nil, back.tm_mday == Int32(day), back.tm_mon == Int32(month - 1) else { return nil }
        let seconds = local - offsetSeconds
        guard seconds > 0 else { return nil }
        return UInt64(seconds) * 1000 + UInt64(fraction)
    }
}
