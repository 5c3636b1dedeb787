import KVFile

/// `If-Match` / `If-None-Match` values (RFC 9110, 13.1): `*`, or a list of
/// entity tags, each `"SEQ"` or weak `W/"SEQ"`. A key's tag is its version,
/// the sequence number of the write that set its value.
struct EntityTags: Equatable {
    var any = false
    /// (version, weak) of each tag that names a version this server gives out.
    var tags: [(version: UInt64, weak: Bool)] = []

    static func == (a: EntityTags, b: EntityTags) -> Bool {
        a.any == b.any && a.tags.map(\.version) == b.tags.map(\.version) && a.tags.map(\.weak) == b.tags.map(\.weak)
    }

    /// nil when the header is absent.
    init?(_ header: String?) {
        guard let header else { return nil }
        for part in header.split(separator: ",") {
            var tag = String(part).trimmingSpaces[...]
            if tag == "*" { any = true; continue }
            var weak = false
            if tag.hasPrefix("W/") { weak = true; tag = tag.dropFirst(2) }
            guard tag.count >= 2, tag.first == "\"", tag.last == "\"", let version = UInt64(tag.dropFirst().dropLast()) else { continue }
            tags.append((version, weak))
        }
    }

    /// If-None-Match on GET/HEAD: weak comparison (a weak tag matches too).
    func matchesWeakly(_ version: UInt64) -> Bool {
        any || tags.contains { $0.version == version }
    }

    /// The condition an `If-Match` header puts on a write: strong comparison,
    /// so weak tags never match.
    var ifMatchCondition: WriteCondition {
        any ? .present : .version(anyOf: tags.filter { !$0.weak }.map(\.version))
    }
}
