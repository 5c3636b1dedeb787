#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// Opening a store through its index file (man/kvfile.5, "The index file"):
/// a writer uses the index when it matches the log (catching up from the
/// log end it records) and builds it anew when it does not; a reader uses it
/// when it matches and otherwise builds an index of its own in memory.
enum IndexedOpen {
    // MARK: writers

    /// Opens the store for the writer (the lock is held): through the index
    /// file, or by building it. Returns the state and the active segment's hint entries.
    static func openWriter(names: [String], loader: inout StoreLoader, compactionWasInterrupted: Bool) throws(KVFileError) -> (StoreState, HintBuilder) {
        let indexPath = StoreFiles(loader.directory).index
        var existing: SharedIndex?
        if !compactionWasInterrupted, names.contains(IndexFormat.fileName) {
            existing = try? SharedIndex.open(path: indexPath, writable: true)
        }
        if let index = existing {
            // Records a clean close synced are gone: not a state to build an index from quietly.
            if let lost = LogEndCheck.recordsCutOff(index, directory: loader.directory) { throw lost }
            let ids = try loader.resolveSegments(names)
            if problem(with: index, ids: ids, writer: true) == nil {
                do throws(KVFileError) {
                    return try resume(index, ids: ids, loader: loader)
                } catch where error.code == .corrupt {
                    // The index names what the log does not hold: build it again (which reports real damage in the log).
                }
            }
        }
        let temporary = StoreFiles.temporary(of: indexPath)
        let (state, hints) = try StoreDirectory.load(names: names, loader: &loader, indexFile: temporary)
        // Readers that mapped the old file see that it was replaced.
        existing?.retire()
        try Syscalls.rename(temporary, indexPath)
        state.index.path = indexPath
        state.index.markAllPagesDirty()
        state.index.nextSeq = state.nextSeq
        if let active = state.activeSegment { state.index.logEnd = LogPosition(segment: active.id, offset: active.length).packed }
        return (state, hints)
    }

    /// Opens the segments without reading what the index covers, and reads what it does not.
    private static func resume(_ index: SharedIndex, ids: [UInt32], loader: StoreLoader) throws(KVFileError) -> (StoreState, HintBuilder) {
        let state = StoreState(directory: loader.directory, index: index)
        let wasOpen = index.state == IndexFormat.stateOpen
        index.markOpen()
        if wasOpen {
            index.markAllPagesDirty()
        } else {
            index.markPagesClean()
            index.checkPagesWhenRead()
        }
        let activeID = try loader.activeSegmentID(among: ids)
        let logEnd = LogPosition(packed: index.logEnd)
        let (endSegment, endOffset) = (logEnd.segment, logEnd.offset)
        if endSegment != 0 && (!ids.contains(endSegment) || (activeID ?? 0) < endSegment) {
            throw KVFileError.corrupt(StoreFiles(loader.directory).index, offset: IndexFormat.logEndAt, "the index ends in segment \(endSegment), which the log does not hold")
        }
        state.nextSeq = max(1, index.nextSeq)
        // Every segment is open before any record is applied: a probe reads the keys of the records slots name.
        for id in ids { try loader.openForIndex(id, into: state) }
        // A step of a resize the last writer died in is finished before anything else changes the table.
        if wasOpen { index.finishInterruptedMigrationStep() }
        // What the index lacks is read in log order (each record newer than what the index holds), as one
        // change readers see whole, without the deletion marks of a build.
        index.beginChange()
        state.appliesInLogOrder = true
        defer {
            state.appliesInLogOrder = false
            index.endChange()
        }
        for id in ids where id != activeID {
            let compacted = try loader.isCompactionOutput(id)
            if id < endSegment || compacted {
                // The index holds every record of a segment before the one it ends in.
                try loader.openSealed(id, into: state, alreadyOpen: true, indexHasRecords: id < endSegment && !compacted)
            } else {
                // Rolled away after the index's end: read it whole (records the index has are skipped).
                try loader.loadSealed(id, into: state)
            }
        }
        var hints = HintBuilder(keepsEntries: false)
        if let activeID {
            hints = try loader.loadActive(activeID, into: state, hints: hints, resumeAt: activeID == endSegment ? endOffset : nil) ?? hints
        }
        try checkSegmentsMatch(state)
        try state.finishLoading()
        state.recomputeOldestSeq()
        state.newestSeq = state.nextSeq - 1
        return (state, hints)
    }

    /// Each segment is the file the index was made with (its header checksum
    /// is in the segment table), and a sealed one still has the size it was sealed with.
    private static func checkSegmentsMatch(_ state: StoreState, requireEntries: Bool = true) throws(KVFileError) {
        for segment in state.segments {
            if segment.indexEntry == nil && !requireEntries { continue }
            guard let entry = segment.indexEntry, IndexFormat.entry(entry, describes: segment.header) else {
                throw KVFileError.corrupt(StoreFiles(state.directory).index, offset: IndexFormat.segmentTableAt,
                                          "the index's segment table does not describe \(FileNames.segment(segment.id))")
            }
            let sealed = segment.sealedLength
            if sealed > 0 && segment.id != state.activeID, let size = try? Syscalls.fileSize(segment.fd, path: segment.path), size != sealed {
                throw KVFileError.corrupt(segment.path, offset: min(size, sealed), "the segment is \(size) bytes but was sealed at \(sealed)")
            }
        }
    }

    // MARK: readers

    /// Opens the store for a reader through the index file; nil when there is
    /// none or it does not match the log (the caller builds an index in memory).
    static func openReader(names: [String], loader: inout StoreLoader) throws(KVFileError) -> StoreState? {
        guard names.contains(IndexFormat.fileName), var index = try? SharedIndex.open(path: StoreFiles(loader.directory).index, writable: false) else { return nil }
        // A writer replacing the file marks the old one before it renames the new one into place.
        for _ in 0..<5 where index.state == IndexFormat.stateReplaced {
            Syscalls.sleep(milliseconds: 2)
            guard let again = try? SharedIndex.open(path: StoreFiles(loader.directory).index, writable: false) else { return nil }
            index = again
        }
        if let state = try openReader(through: index, names: names, loader: &loader) { return state }
        // Before the caller builds an index from the log: an index closed cleanly may prove that
        // records were lost (looked for only now, so an open that can use the index pays nothing).
        if let lost = LogEndCheck.recordsCutOff(index, directory: loader.directory) { throw lost }
        return nil
    }

    /// The state of a reader of `index`, when the index can serve the log as it is.
    private static func openReader(through index: SharedIndex, names: [String], loader: inout StoreLoader) throws(KVFileError) -> StoreState? {
        // A writer died while it applied a write: part of a batch may be in the index. The next writer repairs it.
        if index.isTornByDeadWriter { return nil }
        var names = names
        for _ in 0..<20 {
            let ids = try loader.resolveSegments(names)
            guard problem(with: index, ids: ids, writer: false) == nil else { return nil }
            do throws(KVFileError) {
                let state = StoreState(directory: loader.directory, index: index)
                for id in ids { try loader.openForIndex(id, into: state) }
                // While a writer has it open, a segment it is making (a roll, compaction's outputs) may have no entry yet.
                try checkSegmentsMatch(state, requireEntries: index.state == IndexFormat.stateClosed)
                if index.state == IndexFormat.stateClosed {
                    // Closed cleanly: every segment holds a header (no writer is making one), and the log
                    // must end where the index says.
                    guard state.segments.count == ids.count, let active = state.activeSegment, let end = active.closedRecordsEnd(),
                          LogPosition(segment: active.id, offset: end).packed == index.logEnd else { return nil }
                } else if !logEndHolds(index, state) {
                    return nil
                }
                state.nextSeq = max(1, index.nextSeq)
                state.recomputeOldestSeq()
                state.newestSeq = state.nextSeq - 1
                return state
            } catch where error.isNotFound {
                // A compaction in another process removed a file meanwhile: look again.
                names = try Syscalls.listDirectory(loader.directory)
            } catch where error.code == .corrupt {
                return nil
            }
        }
        return nil
    }

    /// For a reader of an index left open: a record of the log ends where the
    /// index says, with the sequence number before its next one (see
    /// ``LogEndCheck``). A writer appends meanwhile and may roll to a new
    /// segment, so an end that changed while it was checked is checked again.
    private static func logEndHolds(_ index: SharedIndex, _ state: StoreState) -> Bool {
        var last: (UInt64, UInt64)?
        for _ in 0..<4 {
            guard let (packed, nextSeq) = index.readConsistently({ (index.logEnd, index.nextSeq) }) else { continue }
            if let last, last == (packed, nextSeq) { return false }
            last = (packed, nextSeq)
            let end = LogPosition(packed: packed)
            if end.segment == 0 { return true }
            guard let segment = state.segment(end.segment) else { continue }
            if LogEndCheck.holds(fd: segment.fd, path: segment.path, header: segment.header, end: end.offset, nextSeq: nextSeq) { return true }
        }
        return false
    }

    /// Why `index` cannot serve this log as it is (nil: it can).
    static func problem(with index: SharedIndex, ids: [UInt32], writer: Bool) -> String? {
        switch index.state {
        case IndexFormat.stateClosed:
            guard index.headerChecksumHolds else { return "its header fails its checksum" }
            // The segment table is checked now; pages of slots when they are first read.
            if let bad = index.firstBadSegmentTablePage() { return "the page at offset \(bad) fails its checksum" }
            guard index.listedSegments() == ids else { return "it lists other segments than the directory holds" }
        case IndexFormat.stateOpen:
            // Left open: by a writer at work now, or one that died; in this boot the page cache holds all it did.
            guard index.bootMatches else { return "a writer left it open before the machine last started" }
            guard index.isTheFileMarkedOpen else { return "it was copied while a writer had it open (it may be ahead of the copied segments)" }
            guard !index.layoutTorn else { return "a writer died while resizing it" }
            if writer { guard index.listedSegments() == ids else { return "it lists other segments than the directory holds" } }
        default:
            return "it was replaced"
        }
        return nil
    }
}

extension StoreLoader {
    /// Opens a sealed segment for a writer whose index covers its records; one
    /// whose seal never finished (no hint file) is read and sealed as at any open,
    /// its records applied to the index only when it may lack them (`indexHasRecords` false).
    func openSealed(_ id: UInt32, into state: StoreState, alreadyOpen: Bool = false, indexHasRecords: Bool = false) throws(KVFileError) {
        guard temporaryOutputs.isEmpty, try Syscalls.exists(hintPath(id)) else {
            // A seal that did not finish: its hint file is made (and a temporary output read whole).
            return try loadSealed(id, into: state, applying: !indexHasRecords || !temporaryOutputs.isEmpty)
        }
        if !alreadyOpen { try openForIndex(id, into: state) }
    }

    /// Opens a segment without reading its records: a writer's sealed one, or
    /// any for a reader of a shared index (which reads records up to the file's size).
    func openForIndex(_ id: UInt32, into state: StoreState) throws(KVFileError) {
        let segmentPath = segmentPath(id)
        let file = try OwnedFile(opening: segmentPath, O_RDONLY)
        let fd = file.fd
        let size = try Syscalls.fileSize(fd, path: segmentPath)
        var unwritten = size < RecordFormat.segmentHeaderSize
        if !unwritten && !writer { unwritten = try headerIsZeros(fd: fd, path: segmentPath) }
        if !writer && unwritten {
            // A writer is creating it: nothing in it yet (it is looked at again when the index names it).
            return
        }
        let header = try readHeader(fd: fd, id: id, path: segmentPath, fileSize: size)
        var records = SegmentLayout.of(header, fileSize: size) { UnsafeRawBufferPointer(start: nil, count: 0) }.recordEnd
        if !writer {
            // Where records end (for counts): the trailer of a closed file, the index's end for the file a writer appends to.
            let end = LogPosition(packed: state.index.logEnd)
            if header.mapOffset > 0 && size > Int(header.mapOffset) {
                records = end.segment == id ? end.offset : RecordFormat.segmentHeaderSize
            }
        }
        let segment = try Segment(id: id, path: segmentPath, file: file, header: header, length: min(records, size),
                                  mapCapacity: writer ? size : Segment.addressLimit)
        if !writer {
            segment.refreshReadLimit()
            if let closedEnd = segment.closedRecordsEnd() { segment.length = closedEnd }
        }
        state.add(segment)
    }
}

extension Segment {
    /// Where the records of a file in the closed layout end, from its trailer; nil for another layout.
    func closedRecordsEnd() -> Int? {
        guard let size = try? Syscalls.fileSize(fd, path: path), size >= BlockMap.trailerSize else { return nil }
        var trailer = [UInt8](repeating: 0, count: BlockMap.trailerSize)
        let n = (try? withMutableBytes(&trailer) { (bytes) throws(KVFileError) in try Syscalls.preadFully(fd, bytes, at: size - BlockMap.trailerSize, path: path) }) ?? 0
        guard n == BlockMap.trailerSize else { return nil }
        return trailer.withUnsafeBytes { BlockMap.closed(trailer: $0, segmentID: id, fileSize: size)?.recordsEnd }
    }
}
