import KVFile

/// The KeyValueStore service's messages, byte for byte: its `PUT /` answers
/// with them and its Socket.IO `Update` event carries the same text.
enum CompatText {
    /// `Key: K Created with Value: V` or `Key: K Updated with Value: V`.
    static func written(key: [UInt8], value: [UInt8], created: Bool) -> [UInt8] {
        Array("Key: ".utf8) + key + Array((created ? " Created with Value: " : " Updated with Value: ").utf8) + value
    }

    /// The `Update` text of a change: the write message above, and for a
    /// delete (the original had none) `Key: K Deleted`, or `Key: K Expired`
    /// when a deadline ended the value. Bytes that are not UTF-8 show as
    /// U+FFFD: a Socket.IO event carries text.
    static func update(for event: ChangeEvent) -> String {
        let bytes: [UInt8] = switch event.topic {
        case .created: written(key: event.key, value: event.newValue ?? [], created: true)
        case .updated: written(key: event.key, value: event.newValue ?? [], created: false)
        case .deleted: Array("Key: ".utf8) + event.key + Array((event.expired ? " Expired" : " Deleted").utf8)
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
