/// Turns a batch's changes into the records to write: decides created /
/// updated / deleted for each, seeing the batch's own earlier changes, and
/// drops deletes of keys that have no value at that point.
enum BatchPlanner {
    struct Record {
        var operation: Operation
        var key: [UInt8]
        var value: [UInt8]?
    }

    static func plan(_ batch: WriteBatch, keydir: SharedIndex) -> [Record] {
        var existsAfter: [[UInt8]: Bool] = [:]
        var records: [Record] = []
        records.reserveCapacity(batch.count)
        for change in batch.changes {
            let key = change.key
            let exists = existsAfter[key] ?? key.withUnsafeBytes { keydir.lookup($0) != nil }
            switch change {
            case .put(_, let value):
                records.append(Record(operation: exists ? .updated : .created, key: key, value: value))
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
