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
        /// Readable records of a batch the damage broke, handed to the caller as records of their own.
        var keptOfBrokenBatch = 0
    }

    /// Where reading may go on after damage: the next place a record is known to start.
    ///
    /// Version 2 knows starts only from structure a writer wrote — the block
    /// map of an active segment and the entries of an intact hint file — so
    /// bytes inside a value are never taken for a record. Version 1 has
    /// neither in its active segment and looks for any readable record.
    struct Resync {
        let next: (_ after: Int) -> Int?

        /// Version 1: the first readable record anywhere after the damage.
        static func anyReadableRecord(_ segment: UnsafeRawBufferPointer) -> Resync {
            Resync { after in
                guard let base = segment.baseAddress else { return nil }
                return SegmentScanner.nextReadableRecord(base, end: segment.count, after: after)
            }
        }

        /// Version 2: starts named by the block map (when the file still has
        /// it) and by an intact hint file, where a valid record lies.
        static func knownStarts(_ segment: UnsafeRawBufferPointer, header: SegmentHeader, layout: SegmentLayout, hintStarts: [Int]) -> Resync {
            let recordEnd = layout.recordEnd
            var starts = Set(hintStarts.filter { $0 >= RecordFormat.segmentHeaderSize && $0 < recordEnd })
            if let listed = layout.closed?.recordStarts(in: segment) {
                starts.formUnion(listed)
            }
            if layout.mapBlocks > 0, let base = segment.baseAddress {
                var block = 0
                while block < layout.mapBlocks, layout.mapStart + (block + 1) * BlockMap.entrySize <= segment.count {
                    let entry = base.loadLE(at: layout.mapStart + block * BlockMap.entrySize, as: UInt32.self)
                    if let start = BlockMap.recordStart(entry, segmentID: header.segmentID, block: block), start < recordEnd {
                        starts.insert(start)
                    }
                    block += 1
                }
            }
            let sorted = starts.sorted()
            return Resync { after in
                guard let base = segment.baseAddress else { return nil }
                for start in sorted where start > after {
                    if case .record = RecordCodec.decode(base + start, available: recordEnd - start) { return start }
                }
                return nil
            }
        }
    }

    /// The resync for segment `id` whose bytes are `segment`, with the starts
    /// its hint file at `hintPath` names when that file is intact.
    static func resync(for segment: UnsafeRawBufferPointer, id: UInt32, hintPath: String) -> Resync {
        guard segment.count >= RecordFormat.segmentHeaderSize,
              case .success(let header) = SegmentHeader.decode(segment.baseAddress!, available: segment.count, expectedID: id),
              header.version >= 2
        else { return .anyReadableRecord(segment) }
        var starts: [Int] = []
        if let hint = try? FileBytes(path: hintPath), let recorded = HintFileReader.intactRecordedLength(hint.bytes, segmentID: id) {
            _ = try? HintFileReader.read(hint.bytes, segmentID: id, segmentLength: recorded) { entry throws(KVFileError) in
                starts.append(entry.offset)
            }
        }
        return .knownStarts(segment, header: header, layout: .of(header, bytes: segment), hintStarts: starts)
    }

    /// The end of the record area of a segment (see ``SegmentLayout``).
    static func recordEnd(of segment: UnsafeRawBufferPointer, id: UInt32) -> Int {
        guard segment.count >= RecordFormat.segmentHeaderSize,
              case .success(let header) = SegmentHeader.decode(segment.baseAddress!, available: segment.count, expectedID: id)
        else { return segment.count }
        let layout = SegmentLayout.of(header, bytes: segment)
        // A closed file: its records end where the trailer says, when the list there checks out.
        if let closed = layout.closed, closed.recordStarts(in: segment) != nil {
            return closed.recordsEnd
        }
        return layout.recordEnd
    }

    /// Calls `body` for each record of each complete batch, and for each
    /// readable record of a batch that damage broke when a complete batch
    /// follows the damage (the writer went on past it, so it had finished the
    /// broken one: keeping its readable records loses less than dropping them;
    /// a batch with nothing whole after it may never have been finished, and
    /// is dropped), and returns the damaged ranges in file order. Records are read below `recordEnd`.
    /// `from`: where records start to be read (a record start; the first one by default).
    static func scan(
        _ segment: UnsafeRawBufferPointer, from: Int = RecordFormat.segmentHeaderSize, recordEnd: Int? = nil, resync: Resync,
        _ body: (Int, RecordHeader, UnsafeRawPointer) throws(KVFileError) -> Void
    ) throws(KVFileError) -> [DamagedRange] {
        let end = min(recordEnd ?? segment.count, segment.count)
        guard let base = segment.baseAddress, end > max(from, RecordFormat.segmentHeaderSize) else { return [] }
        var damage: [DamagedRange] = []
        var start = max(from, RecordFormat.segmentHeaderSize)
        // The records of a batch the last damage broke (from, to), kept once a complete batch follows.
        var broken: (from: Int, to: Int)?
        while start < end {
            // Where the records handed to `body` end: the records of a batch still open lie from here to the damage.
            var delivered = start
            let scanned = try SegmentScanner.scan(UnsafeRawBufferPointer(start: base + start, count: end - start), baseOffset: start, rule: .notJudged) {
                (offset, header, record) throws(KVFileError) in
                if let range = broken {
                    broken = nil
                    let kept = try deliverEach(UnsafeRawBufferPointer(start: base, count: range.to), from: range.from, body)
                    damage[damage.count - 1].keptOfBrokenBatch = kept
                }
                try body(offset, header, record)
                delivered = offset + header.totalLength
            }
            broken = nil
            switch scanned {
            case .clean:
                return damage
            case .tornTail(let at, let reason), .corrupt(let at, let reason):
                let next = resync.next(at)
                let stop = next ?? end
                let zeros = next == nil && UnsafeRawBufferPointer(start: base + at, count: end - at).allSatisfy { $0 == 0 }
                damage.append(DamagedRange(offset: at, length: stop - at, reason: reason, isZeroTail: zeros, isTail: next == nil))
                guard let next else { return damage }
                if delivered < at { broken = (delivered, at) }
                start = next
            }
        }
        return damage
    }

    /// Hands each whole record from `from` to the end of `bytes` to `body`, as records of their own; returns how many.
    private static func deliverEach(
        _ bytes: UnsafeRawBufferPointer, from: Int, _ body: (Int, RecordHeader, UnsafeRawPointer) throws(KVFileError) -> Void
    ) throws(KVFileError) -> Int {
        var offset = from
        var count = 0
        while offset < bytes.count, case .record(let header) = RecordCodec.decode(bytes.baseAddress! + offset, available: bytes.count - offset) {
            try body(offset, header, bytes.baseAddress! + offset)
            offset += header.totalLength
            count += 1
        }
        return count
    }
}
