/// How a scan of a segment's records ended (see man/kvfile.5, "Recovery").
enum ScanEnd: Equatable {
    /// Every byte up to the end belonged to complete records.
    case clean(end: Int)
    /// Damage from `at` to the end with no readable record after it (a torn
    /// write, an unfinished batch, or pages the OS never wrote): the log ends at `at`.
    case tornTail(at: Int, reason: String)
    /// Damage at `at` with readable records after it: real corruption.
    case corrupt(at: Int, reason: String)
}

/// How a scan judges damage: is there anything written after it?
enum DamageRule {
    /// Version 1: a readable record anywhere after it, with no zero page
    /// between (bytes inside values can fool this; kept for old segments).
    case anyReadableRecord
    /// Version 2: the block map (see ``LaterRecordProbe``).
    case blockMap(LaterRecordProbe)
    /// Not judged: every damage is reported as `tornTail` at the damage (salvage judges for itself).
    case notJudged
}

/// How a scan of part of a segment ended.
enum ChunkScanEnd: Equatable {
    case end(ScanEnd)
    /// The record (or batch) starting at `at` goes on past the bytes scanned:
    /// nothing is known about it yet.
    case needMore(at: Int)
}

/// Walks the records of a segment, in order, checking every checksum.
enum SegmentScanner {
    /// Scans `bytes`, whose first byte is at file offset `baseOffset`, and calls
    /// `body(offset, header, recordStart)` for each record of each complete batch.
    /// `rule` judges damage (see ``DamageRule``).
    static func scan(
        _ bytes: UnsafeRawBufferPointer, baseOffset: Int, rule: DamageRule,
        _ body: (Int, RecordHeader, UnsafeRawPointer) throws(KVFileError) -> Void
    ) throws(KVFileError) -> ScanEnd {
        switch try scan(bytes, baseOffset: baseOffset, more: false, rule: rule, body) {
        case .end(let end): return end
        case .needMore(let at): return .tornTail(at: at, reason: "record runs past the end of the file")  // not with more: false
        }
    }

    /// Scans part of a segment. `more` says the file goes on after `bytes`: a
    /// record cut by their end is then `.needMore`, not damage — the bytes
    /// after it belong to it, and whatever they look like says nothing about the file.
    static func scan(
        _ bytes: UnsafeRawBufferPointer, baseOffset: Int, more: Bool, rule: DamageRule,
        _ body: (Int, RecordHeader, UnsafeRawPointer) throws(KVFileError) -> Void
    ) throws(KVFileError) -> ChunkScanEnd {
        guard let p = bytes.baseAddress, bytes.count > 0 else { return .end(.clean(end: baseOffset)) }
        let end = bytes.count
        var position = 0
        var batchStart = 0
        var pendingBatch: [(Int, RecordHeader)] = []
        while position < end {
            switch RecordCodec.decode(p + position, available: end - position) {
            case .record(let header):
                if header.continues {
                    if pendingBatch.isEmpty { batchStart = position }
                    pendingBatch.append((position, header))
                } else {
                    for (offset, pending) in pendingBatch {
                        try body(baseOffset + offset, pending, p + offset)
                    }
                    pendingBatch.removeAll(keepingCapacity: true)
                    try body(baseOffset + position, header, p + position)
                }
                position += header.totalLength
            case .incomplete where more:
                return .needMore(at: baseOffset + (pendingBatch.isEmpty ? position : batchStart))
            case .incomplete:
                return .end(classifyDamage(p, end: end, at: position, batchStart: pendingBatch.isEmpty ? position : batchStart,
                                           baseOffset: baseOffset, rule: rule, reason: "record runs past the end of the file"))
            case .invalid(let reason):
                return .end(classifyDamage(p, end: end, at: position, batchStart: pendingBatch.isEmpty ? position : batchStart,
                                           baseOffset: baseOffset, rule: rule, reason: reason))
            }
        }
        if !pendingBatch.isEmpty {
            if more { return .needMore(at: baseOffset + batchStart) }
            return .end(.tornTail(at: baseOffset + batchStart, reason: "batch not finished"))
        }
        return .end(.clean(end: baseOffset + end))
    }

    /// Decides whether damage at `at` is a torn tail or corruption. Version 2
    /// asks the block map (see ``LaterRecordProbe``). Version 1 has no map:
    /// it is corruption when a readable record follows it anywhere and no
    /// whole zero page (a page the OS never wrote back before a crash) lies
    /// in between — a rule bytes inside a value can fool, kept only for
    /// segments written before version 2.
    private static func classifyDamage(
        _ p: UnsafeRawPointer, end: Int, at: Int, batchStart: Int, baseOffset: Int, rule: DamageRule, reason: String
    ) -> ScanEnd {
        switch rule {
        case .notJudged:
            return .tornTail(at: baseOffset + at, reason: reason)
        case .blockMap(let probe):
            if batchStart == at && probe.isClosedEnd(at: baseOffset + at) { return .clean(end: baseOffset + at) }
            guard probe.isCorruption(at: baseOffset + at) else {
                return .tornTail(at: baseOffset + batchStart, reason: reason)
            }
            return .corrupt(at: baseOffset + at, reason: reason)
        case .anyReadableRecord:
            break
        }
        guard let next = nextReadableRecord(p, end: end, after: at) else {
            return .tornTail(at: baseOffset + batchStart, reason: reason)
        }
        if containsZeroPage(p, from: baseOffset + at, to: baseOffset + next, baseOffset: baseOffset) {
            return .tornTail(at: baseOffset + batchStart, reason: "\(reason), then pages never written")
        }
        return .corrupt(at: baseOffset + at, reason: reason)
    }

    /// The position of the first readable record after `at`, if any.
    static func nextReadableRecord(_ p: UnsafeRawPointer, end: Int, after at: Int) -> Int? {
        var candidate = at + 1
        while candidate + 5 < end {
            let kind = p.load(fromByteOffset: candidate + 4, as: UInt8.self)
            if kind == 0 {
                // A record's kind byte is never zero: skip runs of zeros (reserved space) a word at a time.
                var q = candidate + 5
                while q + 8 <= end && p.loadUnaligned(fromByteOffset: q, as: UInt64.self) == 0 { q += 8 }
                while q < end && p.load(fromByteOffset: q, as: UInt8.self) == 0 { q += 1 }
                candidate = q - 4
                continue
            }
            if kind & RecordFormat.reservedKindBits == 0, kind & RecordFormat.opMask != 0,
               case .record = RecordCodec.decode(p + candidate, available: end - candidate) {
                return candidate
            }
            candidate += 1
        }
        return nil
    }

    private static func containsZeroPage(_ p: UnsafeRawPointer, from: Int, to: Int, baseOffset: Int) -> Bool {
        let page = 4096
        var pageStart = (from + page - 1) / page * page
        while pageStart + page <= to {
            var allZero = true
            let local = pageStart - baseOffset
            var i = 0
            while i < page {
                if p.loadUnaligned(fromByteOffset: local + i, as: UInt64.self) != 0 { allZero = false; break }
                i += 8
            }
            if allZero { return true }
            pageStart += page
        }
        return false
    }
}
