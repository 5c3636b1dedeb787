/// A group of puts and deletes applied atomically: after a crash either all of
/// them are in the store or none is. Checks make it conditional: it is
/// written only when every check holds, all or nothing (compare-and-set over
/// several keys).
public struct WriteBatch: Sendable {
    enum Change: Sendable {
        case put(key: [UInt8], value: [UInt8], deadline: UInt64)
        case delete(key: [UInt8])

        var key: [UInt8] {
            switch self {
            case .put(let key, _, _), .delete(let key): key
            }
        }
    }

    private(set) var changes: [Change] = []
    private(set) var checks: [(key: [UInt8], condition: WriteCondition)] = []

    /// An empty batch.
    public init() {}

    /// Sets `key` to `value` when the batch is written; with `expiresAt`
    /// (milliseconds since the Unix epoch; 0: never) the value expires then.
    public mutating func put(_ key: [UInt8], _ value: [UInt8], expiresAt: UInt64 = 0) {
        changes.append(.put(key: key, value: value, deadline: expiresAt))
    }
    /// Sets `key` to `value` (UTF-8) when the batch is written.
    public mutating func put(_ key: String, _ value: String, expiresAt: UInt64 = 0) {
        put(Array(key.utf8), Array(value.utf8), expiresAt: expiresAt)
    }
    /// Removes `key` when the batch is written (nothing is recorded if it does not exist then).
    public mutating func delete(_ key: [UInt8]) { changes.append(.delete(key: key)) }
    /// Removes `key` (UTF-8) when the batch is written.
    public mutating func delete(_ key: String) { delete(Array(key.utf8)) }

    /// Writes the batch only if `condition` holds for `key` when it is
    /// written (checked under the writer's lock, before any change of the batch).
    public mutating func check(_ key: [UInt8], _ condition: WriteCondition) { checks.append((key, condition)) }
    /// Writes the batch only if `condition` holds for `key` (UTF-8).
    public mutating func check(_ key: String, _ condition: WriteCondition) { check(Array(key.utf8), condition) }

    /// How many puts and deletes the batch holds.
    public var count: Int { changes.count }
    /// True when the batch holds nothing.
    public var isEmpty: Bool { changes.isEmpty }
}
