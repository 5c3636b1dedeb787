/// Reads every readable record of a segment, stepping over damage instead
/// of stopping at it, and reports each damaged range (for check and repair).
enum SalvageScanner {
    struct DamagedRange: Equatable {
        var offset: Int
        var length: Int
        var reason: String
        /// The range is the end of the file and only zeros (space a writer reserved).
        var isZeroTail: Bool
        /// The range is at the end of the file: a write cut short.
        var isTail: Bool
    }

    /// Calls `body` for each record of each complete batch and returns the damaged ranges in file order.
    static func scan(
        _ segment: UnsafeRawBufferPointer,
        _ body: (Int, RecordHeader, UnsafeRawPointer) throws(KVFileError) -> Void
    ) throws(KVFileError) -> [DamagedRange] {
        guard let base = segment.baseAddress, segment.count > RecordFormat.segmentHeaderSize else { return [] }
        var damage: [DamagedRange] = []
        var start = RecordFormat.segmentHeaderSize
        while start < segment.count {
            let end = try SegmentScanner.scan(UnsafeRawBufferPointer(start: base + start, count: segment.count - start), baseOffset: start) {
                (offset, header, record) throws(KVFileError) in try body(offset, header, record)
            }
            switch end {
            case .clean:
                return damage
            case .tornTail(let at, let reason):
                let next = SegmentScanner.nextReadableRecord(base, end: segment.count, after: at)
                let stop = next ?? segment.count
                let zeros = next == nil && UnsafeRawBufferPointer(start: base + at, count: segment.count - at).allSatisfy { $0 == 0 }
                damage.append(DamagedRange(offset: at, length: stop - at, reason: reason, isZeroTail: zeros, isTail: next == nil))
                guard let next else { return damage }
                start = next
            case .corrupt(let at, let reason):
                let next = SegmentScanner.nextReadableRecord(base, end: segment.count, after: at) ?? segment.count
                damage.append(DamagedRange(offset: at, length: next - at, reason: reason, isZeroTail: false, isTail: next == segment.count))
                start = next
            }
        }
        return damage
    }
}
