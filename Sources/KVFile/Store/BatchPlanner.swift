/// Turns a batch's changes into the records to write: decides created /
/// updated / deleted for each, seeing the batch's own earlier changes, and
/// drops deletes of keys that have no value at that point. A key whose value
/// expired gets an expiry tombstone before the batch's first change of it.
/// Updates and deletes name the record they follow: one in the log, or an
/// earlier record of the batch.
enum BatchPlanner {
    struct Record {
        var operation: ChangeKind
        var key: [UInt8]
        var value: [UInt8]?
        var deadline: UInt64 = 0
        var expired = false
        var prior: SegmentWriter.Prior = .none
    }

    /// `lookup` gives where a key's latest record is (nil: none), or throws (damage on its way).
    static func plan(
        _ batch: WriteBatch, now: UInt64, lookup: (UnsafeRawBufferPointer) throws(KVFileError) -> KeyLocation?
    ) throws(KVFileError) -> [Record] {
        // A key's value after the batch's records so far: the record holding it (nil: none).
        var after: [[UInt8]: SegmentWriter.Prior?] = [:]
        var records: [Record] = []
        records.reserveCapacity(batch.count)
        for change in batch.changes {
            let key = change.key
            let current: SegmentWriter.Prior?
            if let known = after[key] {
                current = known
            } else if let location = try withBytes(key, lookup) {
                if location.isExpired(at: now) {
                    records.append(Record(operation: .deleted, key: key, value: nil, expired: true, prior: .at(location)))
                    current = nil
                } else {
                    current = .at(location)
                }
            } else {
                current = nil
            }
            switch change {
            case .put(_, let value, let deadline):
                records.append(Record(operation: current == nil ? .created : .updated, key: key, value: value, deadline: deadline,
                                      prior: current ?? .none))
                after[key] = .some(.inBatch(records.count - 1))
            case .delete:
                if let current {
                    records.append(Record(operation: .deleted, key: key, value: nil, prior: current))
                }
                after[key] = .some(nil)
            }
        }
        return records
    }
}
