/// A point-in-time list of live keys and where their values are, taken under
/// the read lock and read afterwards without it (segments stay mapped while referenced).
struct SnapshotEntry {
    var key: [UInt8]
    var segment: Segment
    var offset: UInt32
    var size: UInt32
}

enum StoreSnapshot {
    static func entries(of state: StoreState, prefix: [UInt8]) -> [SnapshotEntry] {
        var entries: [SnapshotEntry] = []
        entries.reserveCapacity(prefix.isEmpty ? state.keydir.count : 16)
        state.keydir.forEach { key, location in
            if !prefix.isEmpty && (key.count < prefix.count || !key.starts(with: prefix)) { return }
            guard let segment = state.segment(location.segment) else { return }
            entries.append(SnapshotEntry(key: Array(key), segment: segment, offset: location.offset, size: location.size))
        }
        entries.sort { $0.key.lexicographicallyPrecedes($1.key) }
        return entries
    }
}
