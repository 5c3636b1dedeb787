/// Turns a batch's changes into the records to write: decides created /
/// updated / deleted for each, seeing the batch's own earlier changes, and
/// drops deletes of keys that have no value at that point. A key whose value
/// expired gets an expiry tombstone before the batch's first change of it.
enum BatchPlanner {
    struct Record {
        var operation: ChangeKind
        var key: [UInt8]
        var value: [UInt8]?
        var deadline: UInt64 = 0
        var expired = false
    }

    static func plan(_ batch: WriteBatch, index: SharedIndex, now: UInt64) -> [Record] {
        var existsAfter: [[UInt8]: Bool] = [:]
        var records: [Record] = []
        records.reserveCapacity(batch.count)
        for change in batch.changes {
            let key = change.key
            var exists: Bool
            if let known = existsAfter[key] {
                exists = known
            } else {
                let location = key.withUnsafeBytes { index.lookup($0) }
                exists = location != nil
                if let location, location.isExpired(at: now) {
                    records.append(Record(operation: .deleted, key: key, value: nil, expired: true))
                    exists = false
                    existsAfter[key] = false
                }
            }
            switch change {
            case .put(_, let value, let deadline):
                records.append(Record(operation: exists ? .updated : .created, key: key, value: value, deadline: deadline))
                existsAfter[key] = true
            case .delete:
                if exists {
                    records.append(Record(operation: .deleted, key: key, value: nil))
                    existsAfter[key] = false
                }
            }
        }
        return records
    }
}
