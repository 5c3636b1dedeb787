#if canImport(Glibc)
@preconcurrency import Glibc
#endif

// The active segment: scanned to its last whole record, and caught up with
// while a writer appends (man/kvfile.5, "Opening and recovery").

extension StoreLoader {
    /// Opens the active segment and scans it. A writer cuts a torn tail off;
    /// a reader just stops before it. With `hints`, the hint entries of its
    /// records are collected for the writer, which keeps adding to them.
    ///
    /// With `resumeAt` (a writer opening through its index, which covers the
    /// records before that offset) only the records from there on are read;
    /// the returned builder then stands for the segment's hint entries.
    @discardableResult
    func loadActive(_ id: UInt32, into state: StoreState, hints: HintBuilder?, resumeAt: Int? = nil) throws(KVFileError) -> HintBuilder? {
        var hints = hints
        let segmentPath = files.segment(id)
        let file = try OwnedFile(opening: segmentPath, writer ? O_RDWR : O_RDONLY)
        let fd = file.fd
        var size = try Syscalls.fileSize(fd, path: segmentPath)
        // A header that never reached the disk (the file's size did, after a
        // power loss) reads as zeros: a creation cut short, like a short file.
        var cutShort = size < RecordFormat.segmentHeaderSize
        if !cutShort { cutShort = try headerIsZeros(fd: fd, path: segmentPath) }
        if cutShort && !writer {
            // A reader waits for the writer to finish it (it is looked at again on the next catch-up).
            return hints
        }
        let header: SegmentHeader
        if cutShort {
            // Created but its header never fully written: an empty segment.
            header = SegmentWriter.activeHeader(id: id, baseSeq: state.nextSeq, capacity: segmentSize)
            if writer {
                try Syscalls.ftruncate(fd, 0, path: segmentPath)
                try withBytes(header.encoded()) { (bytes) throws(KVFileError) in
                    try Syscalls.pwriteAll(fd, bytes, at: 0, path: segmentPath)
                }
                try Syscalls.fdatasync(fd, path: segmentPath)
                size = RecordFormat.segmentHeaderSize
            }
        } else {
            header = try readHeader(fd: fd, id: id, path: segmentPath, fileSize: size)
        }
        let mapOffset = Int(header.mapOffset)
        // A writer maps its records and the block map past them (version 2), or room to grow (version 1).
        let capacity = !writer ? Segment.addressLimit
            : mapOffset > 0 ? max(BlockMap.regionEnd(mapOffset: mapOffset), size) : max(segmentSize, size)
        let segment = try Segment(id: id, path: segmentPath, file: file, header: header,
                                  length: RecordFormat.segmentHeaderSize, mapCapacity: capacity, writable: writer)
        segment.allocated = size
        state.add(segment)
        var resumedAtClosedEnd = false
        if let resumeAt, resumeAt > RecordFormat.segmentHeaderSize {
            let size = try Syscalls.fileSize(segment.fd, path: segment.path)
            let layout = segment.damageRule(fileSize: size).1
            guard resumeAt <= min(layout.closed?.recordsEnd ?? layout.recordEnd, segment.recordCapacity) else {
                throw KVFileError.corrupt(segment.path, offset: resumeAt, "the index names records up to \(resumeAt), past the end of the segment's records")
            }
            let prior = try priorRecords(segment, layout: layout, recordsEnd: resumeAt)
            if prior == nil && !LogEndCheck.holds(fd: segment.fd, path: segment.path, header: header, end: resumeAt, nextSeq: state.nextSeq) {
                throw KVFileError.corrupt(segment.path, offset: resumeAt,
                    "the index says the log ends at \(resumeAt) before sequence number \(state.nextSeq), but no record of the segment ends there with the one before it")
            }
            segment.length = resumeAt
            hints = HintBuilder(resumingAt: resumeAt, prior: prior)
            // A closed file whose list holds: its records end where the index does, nothing to read.
            if prior != nil { resumedAtClosedEnd = true }
        }
        if !resumedAtClosedEnd { try catchUp(segment, state: state, hints: hints) }
        if writer && segment.mapOffset > 0 {
            // Appending resumes after the last record. First the open map's space
            // is reserved (the file is in the open layout from then on, never cut
            // short); then what lies past the records — a closed file's list and
            // trailer, or a torn tail's bytes — becomes zeros, and so do map entries
            // of blocks past them and a watermark beyond them (the segment writer
            // writes the entries of the records anew).
            let size = try Syscalls.fileSize(segment.fd, path: segment.path)
            try Syscalls.reserve(segment.fd, from: segment.mapOffset, to: BlockMap.regionEnd(mapOffset: segment.mapOffset), path: segment.path)
            let stale = min(size, segment.mapOffset)
            if stale > segment.length {
                let block = (segment.length + BlockMap.blockSize - 1) / BlockMap.blockSize * BlockMap.blockSize
                memset(segment.writableBase + segment.length, 0, min(stale, block) - segment.length)
                if stale > block && !Syscalls.release(segment.fd, from: block, to: stale, path: segment.path) {
                    memset(segment.writableBase + block, 0, stale - block)  // no holes on this file system
                }
            }
            let firstStale = segment.mapOffset + (segment.length / BlockMap.blockSize + 1) * BlockMap.entrySize
            let mapEnd = segment.mapOffset + BlockMap.size(mapOffset: segment.mapOffset)
            if firstStale < mapEnd { memset(segment.writableBase + firstStale, 0, mapEnd - firstStale) }
            memset(segment.writableBase + mapEnd, 0, BlockMap.watermarkSize)
            try Syscalls.fdatasync(segment.fd, path: segment.path)
            segment.allocated = segment.length
        }
        return hints
    }

    /// What the list of a closed segment whose records end at `recordsEnd` says of them, when it is sound.
    private func priorRecords(_ segment: Segment, layout: SegmentLayout, recordsEnd: Int) throws(KVFileError) -> HintBuilder.PriorRecords? {
        guard let closed = layout.closed, closed.recordsEnd == recordsEnd else { return nil }
        var list = [UInt8](repeating: 0, count: closed.listBytes)
        let n = try withMutableBytes(&list) { (bytes) throws(KVFileError) in try Syscalls.preadFully(segment.fd, bytes, at: recordsEnd, path: segment.path) }
        guard n == list.count, let starts = list.withUnsafeBytes({ BlockMap.firstStartsInBlocks(list: $0, closed: closed) }) else { return nil }
        return HintBuilder.PriorRecords(sizes: Array(list[BlockMap.listMarker.count...]), firstStartsInBlocks: starts)
    }

    /// Reads the records appended to `segment` since `segment.length` up to where they may end.
    func catchUp(_ segment: Segment, state: StoreState, hints: HintBuilder?) throws(KVFileError) {
        let size = try Syscalls.fileSize(segment.fd, path: segment.path)
        guard segment.length >= RecordFormat.segmentHeaderSize else { return }
        let rule: DamageRule
        let layout: SegmentLayout
        if writer {
            (rule, layout) = segment.damageRule(fileSize: size)
        } else {
            (rule, layout) = copyingRule(segment, fileSize: size)
        }
        let records = min(layout.recordEnd, segment.recordCapacity)
        if records > segment.length {
            try scanActive(segment, from: segment.length, to: records, rule: rule, state: state, hints: hints)
        }
    }

    /// Reads new records of the active segment from `from` up to `to` (where
    /// records may end) and sets `segment.length` to the end of the last complete one.
    func scanActive(_ segment: Segment, from: Int, to size: Int, rule: DamageRule, state: StoreState, hints: HintBuilder?) throws(KVFileError) {
        let id = segment.id
        let apply = { (offset: Int, header: RecordHeader, record: UnsafeRawPointer) throws(KVFileError) in
            let key = UnsafeRawBufferPointer(start: record + header.keyOffset, count: header.keyLength)
            let location = KeyLocation(segment: id, offset: UInt32(offset), size: UInt32(header.totalLength), seq: header.seq)
            state.applyLoaded(key: key, operation: header.operation, location: location)
            hints?.add(operation: header.operation, seq: header.seq, size: header.totalLength, key: key)
        }
        let end: ScanEnd
        if writer {
            // The writer holds the lock, so nobody can shrink the file under the
            // mapping, and records stay where they are: apply each eight records
            // behind the scan, with its index slot and entries prefetched meanwhile.
            var window = LookaheadWindow<(offset: Int, header: RecordHeader, record: UnsafeRawPointer)>()
            let applyItem = { (item: (offset: Int, header: RecordHeader, record: UnsafeRawPointer)) throws(KVFileError) in
                try apply(item.offset, item.header, item.record)
            }
            end = try SegmentScanner.scan(UnsafeRawBufferPointer(start: segment.base + from, count: size - from), baseOffset: from, rule: rule) {
                (offset, header, record) throws(KVFileError) in
                state.index.prefetch(UnsafeRawBufferPointer(start: record + header.keyOffset, count: header.keyLength))
                try window.push((offset, header, record), halfway: { item in
                    state.index.prefetchEntries(UnsafeRawBufferPointer(start: item.record + item.header.keyOffset, count: item.header.keyLength))
                }, apply: applyItem)
            }
            try window.flush(apply: applyItem)
        } else {
            end = try scanByCopying(segment, from: from, to: size, rule: rule, apply)
        }
        switch end {
        case .clean(let at):
            segment.length = at
        case .tornTail(let at, _):
            segment.length = at
            if writer && segment.mapOffset == 0 {
                // Version 1: cut the torn tail (and space reserved past it) off.
                try Syscalls.ftruncate(segment.fd, at, path: segment.path)
                try Syscalls.fdatasync(segment.fd, path: segment.path)
                segment.allocated = at
            }
            // Version 2: `loadActive` zeroes what lies past the records, keeping the file's size.
        case .corrupt(let at, let reason):
            throw KVFileError.corrupt(segment.path, offset: at, reason)
        }
    }

    /// How often a reader looks again at apparent damage whose bytes are changing
    /// (a writer at work there) before reporting it, waiting 2, 4, … 32 ms in between.
    static let damageRechecks = 6

    /// True when the file's bytes at `offset` differ from `copy`, taken from there a moment ago.
    private func bytesChanged(_ segment: Segment, at offset: Int, since copy: UnsafeRawBufferPointer) throws(KVFileError) -> Bool {
        let count = min(copy.count, 512)
        guard count > 0 else { return false }
        let now = UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: 8)
        defer { now.deallocate() }
        let n = try Syscalls.preadFully(segment.fd, now, at: offset, path: segment.path)
        return n != count || memcmp(now.baseAddress!, copy.baseAddress!, count) != 0
    }

    /// A reader copies what it scans (a writer recovering from a crash may cut
    /// the tail while we look), a chunk at a time: the file often ends in
    /// megabytes of zeros the writer reserved, which need not be read.
    func scanByCopying(
        _ segment: Segment, from: Int, to size: Int, rule: DamageRule,
        _ apply: (Int, RecordHeader, UnsafeRawPointer) throws(KVFileError) -> Void
    ) throws(KVFileError) -> ScanEnd {
        var start = from
        var chunk = 64 << 10
        var lookedAgain = 0
        var lookedAt = -1
        while true {
            let length = min(chunk, size - start)
            let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: max(length, 1), alignment: 8)
            defer { copy.deallocate() }
            let n = try Syscalls.preadFully(segment.fd, UnsafeMutableRawBufferPointer(rebasing: copy[0..<length]), at: start, path: segment.path)
            var appliedEnd = start
            let more = start + n < size && n == length
            let outcome = try SegmentScanner.scan(UnsafeRawBufferPointer(rebasing: copy[0..<n]), baseOffset: start, more: more, rule: rule) {
                (offset, header, record) throws(KVFileError) in
                try apply(offset, header, record)
                appliedEnd = offset + header.totalLength
            }
            guard case .end(let end) = outcome else {
                // A record (or batch) longer than what is left of the chunk: read it whole, from its start.
                if case .needMore(let at) = outcome, at > start { start = at } else { chunk *= 4 }
                continue
            }
            // Rechecks count per place: a reader beside a busy writer meets a
            // record being written at every new end it reaches.
            if case .corrupt(let at, _) = end, at != lookedAt {
                lookedAt = at
                lookedAgain = 0
            }
            if case .corrupt(let at, _) = end, lookedAgain < StoreLoader.damageRechecks,
               try bytesChanged(segment, at: at, since: UnsafeRawBufferPointer(rebasing: copy[(at - start)..<n])) {
                // A copy taken while a writer stores records can hold one
                // unfinished record with finished ones after it (the writer
                // went on while we copied): that looks like damage, but the
                // bytes there have changed since. Damage that stays put is
                // reported at once; changing bytes are read again from the
                // last good record.
                if lookedAgain > 0 { Syscalls.sleep(milliseconds: 1 << lookedAgain) }
                lookedAgain += 1
                start = appliedEnd
                continue
            }
            // The end of the file, or a file that shrank (a writer cut its reserved space) under us.
            if !more { return end }
            switch end {
            case .clean(let at):
                if at < start + n { return end }  // the records end inside the chunk (a closed file's list follows)
                start = at
            case .corrupt:
                return end  // a readable record after the damage lies inside the chunk
            case .tornTail(let at, _):
                if at > start {
                    start = at  // the chunk's end may have cut a record: read on from it
                } else if n > 5 && copy[4] == 0 {
                    return end  // zeros: space reserved, nothing written here yet
                } else {
                    chunk *= 4  // a record larger than the chunk, or damage: look further
                }
            }
        }
    }

    /// How a reader judges damage: it reads the file (a writer may cut it while we look), not the mapping.
    func copyingRule(_ segment: Segment, fileSize: Int) -> (DamageRule, SegmentLayout) {
        let view = PreadView(fd: segment.fd, path: segment.path)
        let header = segment.header
        let layoutNow = { (size: Int) -> SegmentLayout in
            SegmentLayout.of(header, fileSize: size) { view.view(max(0, size - BlockMap.trailerSize), BlockMap.trailerSize) }
        }
        let layout = layoutNow(fileSize)
        if layout.legacy { return (.anyReadableRecord, layout) }
        var probe = LaterRecordProbe(segmentID: segment.id, layout: layout, view: view.view)
        probe.layoutNow = {
            // Looked at again: a writer may have closed the file, or opened it again, meanwhile.
            layoutNow((try? Syscalls.fileSize(segment.fd, path: segment.path)) ?? fileSize)
        }
        return (.blockMap(probe), layout)
    }
}
