/// Decides whether damage in a version-2 segment has records written after
/// it, looking only where the block map says records start (see
/// man/kvfile.5, "Recovery"): bytes inside values are never read as records.
///
/// A complete file (closed, cut by a seal after a sync, or compaction's
/// output) holds only whole, synced records: any damage in it is
/// corruption, and so is damage below the watermark.
///
/// Past the watermark, blocks after the damage are read in order. A block of zeros (a page the
/// OS never wrote back before a crash) ends the search: nothing after it was
/// synced, so nothing after it was acknowledged. A block whose map entry
/// names a start where a valid record lies proves that the writer went on
/// after the damage: then the damage is corruption, not a torn tail.
struct LaterRecordProbe {
    let segmentID: UInt32
    /// Where records end and what the file's shape says (see ``SegmentLayout``).
    let layout: SegmentLayout
    /// The file's bytes at [offset, offset + count), or fewer at its end. The
    /// view may be reused by the next call.
    let view: (_ offset: Int, _ count: Int) -> UnsafeRawBufferPointer
    /// The file's layout looked at again when damage is found (a reader's
    /// file may change shape while it reads); nil: `layout` stays true.
    var layoutNow: (() -> SegmentLayout)?

    var recordEnd: Int { layout.recordEnd }

    /// True when damage at `damage` is corruption, not a torn tail: it lies
    /// where every record was whole on stable storage (the file is complete,
    /// or below the watermark), or the map proves a record written after it.
    /// Zeros from the damage to where records end are nothing written yet.
    func isCorruption(at damage: Int) -> Bool {
        let now = layoutNow?() ?? layout
        // The file was closed meanwhile: its records end here (what follows is its map).
        if damage >= now.recordEnd { return false }
        if !now.complete, watermark().map({ damage >= $0 }) ?? true {
            // Past the last sync of an open file (a writer's tail after kill -9): only the
            // damage's block and the blocks after it are read, not the megabytes of
            // reserved zeros up to `recordEnd`. A block whose rest is zeros from the
            // damage on was not written back since the last sync (it held synced
            // records, then zeros): no sync covered anything after it.
            let blockEnd = min((damage / BlockMap.blockSize + 1) * BlockMap.blockSize, recordEnd)
            if isZero(from: damage, to: blockEnd) { return false }
            return provenRecord(after: damage) != nil
        }
        // Every record of a complete file, and below the watermark, was synced: damage
        // there is never a torn write, unless nothing at all follows it (nothing written yet).
        return !isZero(from: damage, to: recordEnd)
    }

    /// True when the records end at `at` and what follows is the closing list
    /// and trailer the layout names: checked here, where the records really end.
    func isClosedEnd(at end: Int) -> Bool {
        guard let closed = (layoutNow?() ?? layout).closed, closed.recordsEnd == end else { return false }
        return BlockMap.listIsSound(view(end, closed.listBytes), closed: closed)
    }

    /// The watermark stored after the open map's entries, if any.
    func watermark() -> Int? {
        guard let at = layout.watermarkAt else { return nil }
        let bytes = view(at, BlockMap.watermarkSize)
        guard bytes.count == BlockMap.watermarkSize else { return nil }
        return BlockMap.watermarkEnd(bytes.baseAddress!, segmentID: segmentID)
    }

    /// True when [from, to) holds only zeros.
    private func isZero(from: Int, to: Int) -> Bool {
        var start = from
        while start < to {
            let bytes = view(start, min(BlockMap.blockSize, to - start))
            if bytes.isEmpty { return true }
            if !isZero(bytes) { return false }
            start += bytes.count
        }
        return true
    }

    /// The start of a record written after `damage`, or nil when none is proven.
    func provenRecord(after damage: Int) -> Int? {
        let size = BlockMap.blockSize
        var block = damage / size + 1
        while block * size < recordEnd {
            let start = block * size
            let bytes = view(start, min(size, recordEnd - start))
            if bytes.count == size && isZero(bytes) { return nil }
            if let entry = mapEntry(block), let candidate = BlockMap.recordStart(entry, segmentID: segmentID, block: block),
               candidate >= start, candidate < recordEnd, holdsRecord(at: candidate) {
                return candidate
            }
            block += 1
        }
        return nil
    }

    private func mapEntry(_ block: Int) -> UInt32? {
        guard block < layout.mapBlocks else { return nil }
        let bytes = view(layout.mapStart + block * BlockMap.entrySize, BlockMap.entrySize)
        guard bytes.count == BlockMap.entrySize else { return nil }
        return bytes.baseAddress!.loadLE(at: 0, as: UInt32.self)
    }

    private func holdsRecord(at start: Int) -> Bool {
        let head = view(start, min(64, recordEnd - start))
        guard let total = RecordCodec.declaredLength(head), total <= recordEnd - start else { return false }
        let whole = view(start, total)
        guard whole.count == total else { return false }
        if case .record = RecordCodec.decode(whole.baseAddress!, available: total) { return true }
        return false
    }

    private func isZero(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var i = 0
        let p = bytes.baseAddress!
        while i + 8 <= bytes.count {
            if p.loadUnaligned(fromByteOffset: i, as: UInt64.self) != 0 { return false }
            i += 8
        }
        while i < bytes.count {
            if bytes[i] != 0 { return false }
            i += 1
        }
        return true
    }
}

extension LaterRecordProbe {
    /// A probe over bytes that are all at hand (a mapping, or a file read whole): `bytes[0]` is the file's first byte.
    init(segmentID: UInt32, layout: SegmentLayout, bytes: UnsafeRawBufferPointer) {
        self.init(segmentID: segmentID, layout: layout, view: { offset, count in
            guard offset < bytes.count else { return UnsafeRawBufferPointer(start: bytes.baseAddress, count: 0) }
            return UnsafeRawBufferPointer(start: bytes.baseAddress! + offset, count: min(count, bytes.count - offset))
        })
    }
}

extension DamageRule {
    /// The rule for a segment with `header` and `layout` whose first `bytes.count` bytes are at hand.
    static func forSegment(_ header: SegmentHeader, layout: SegmentLayout, bytes: UnsafeRawBufferPointer) -> DamageRule {
        layout.legacy ? .anyReadableRecord : .blockMap(LaterRecordProbe(segmentID: header.segmentID, layout: layout, bytes: bytes))
    }
}

extension Segment {
    /// How damage in this segment is judged, over its mapping up to `fileSize`.
    func damageRule(fileSize: Int) -> (DamageRule, SegmentLayout) {
        let bytes = UnsafeRawBufferPointer(start: base, count: min(fileSize, mappedLength))
        let layout = SegmentLayout.of(header, bytes: bytes)
        return (.forSegment(header, layout: layout, bytes: bytes), layout)
    }
}
