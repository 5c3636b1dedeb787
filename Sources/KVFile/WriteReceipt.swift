/// What a put did: its sequence number (the `seq` of its change event) and
/// whether it created the key or replaced a value.
public struct WriteReceipt: Sendable, Equatable {
    /// The write's sequence number.
    public let seq: UInt64
    /// `.created` or `.updated`.
    public let operation: ChangeKind
}
