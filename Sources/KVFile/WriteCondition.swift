/// What must hold for a conditional write; checked under the writer's lock,
/// in the same step as the write (compare-and-set).
///
/// A key's *version* is the sequence number of the record that set its
/// current value (what ``Store/withVersionedValue(forKey:_:)`` passes and
/// the server sends as `ETag`); a key without a value has version 0.
public enum WriteCondition: Sendable, Equatable {
    /// The key has no value.
    case absent
    /// The key has a value.
    case present
    /// The key's version is one of these (0: it has no value).
    case version(anyOf: [UInt64])

    func holds(for current: UInt64) -> Bool {
        switch self {
        case .absent: current == 0
        case .present: current != 0
        case .version(let versions): versions.contains(current)
        }
    }
}

/// What a conditional write did.
public enum ConditionalWriteResult: Sendable, Equatable {
    /// The condition held and the record was written.
    case written(WriteReceipt)
    /// The condition held, but a delete found no value to remove: nothing was written.
    case nothingToDelete
    /// The condition did not hold; nothing was written. The key's version then.
    case conditionFailed(currentVersion: UInt64)
}

/// What a batch did.
public enum BatchResult: Sendable, Equatable {
    /// Every check held and the changes were written (a batch whose deletes
    /// all found nothing writes no record).
    case written
    /// The check on `key` did not hold: nothing was written. The key's version then.
    case checkFailed(key: [UInt8], currentVersion: UInt64)
}
