/// The documented limits, checked before any write starts.
enum Limits {
    @inline(__always)
    static func check(keyLength: Int, valueLength: Int?, key: [UInt8]? = nil) throws(KVFileError) {
        if keyLength == 0 {
            throw KVFileError(.invalidArgument, "a key must not be empty")
        }
        if keyLength > RecordFormat.maxKeyLength {
            throw KVFileError(.invalidArgument, "key of \(keyLength) bytes is longer than the limit of \(RecordFormat.maxKeyLength) bytes")
        }
        if let valueLength, valueLength > RecordFormat.maxValueLength {
            let which = key.map { " for key \(KeyText.describe($0))" } ?? ""
            throw KVFileError(.invalidArgument, "value of \(valueLength) bytes\(which) is larger than the limit of \(RecordFormat.maxValueLength) bytes (64 MiB)")
        }
    }

    /// Sequence numbers end at `RecordFormat.maxSeq`.
    @inline(__always)
    static func checkSequence(_ first: UInt64, count: Int, store: String) throws(KVFileError) {
        if first > RecordFormat.maxSeq - UInt64(count) + 1 {
            throw KVFileError(.capacityExhausted, "store \(store) has used up its sequence numbers (the last is \(RecordFormat.maxSeq))", path: store)
        }
    }

    static func checkIndexRoom(_ index: SharedIndex, newKeys: Int) throws(KVFileError) {
        if newKeys > 0 && !index.hasRoom(forNewKeys: newKeys) {
            throw KVFileError(.capacityExhausted, "the index is full (\(IndexFormat.maxCapacity * 7 / 10) keys)")
        }
    }

    static func withOptionalBytes<R>(_ bytes: [UInt8]?, _ body: (UnsafeRawBufferPointer?) -> R) -> R {
        guard let bytes else { return body(nil) }
        return bytes.withUnsafeBytes { body($0) }
    }
}
