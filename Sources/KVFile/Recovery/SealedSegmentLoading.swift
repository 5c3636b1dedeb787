#if canImport(Glibc)
@preconcurrency import Glibc
#endif

// A sealed segment: from its hint file when that is sound, else by a scan.

extension StoreLoader {
    /// Opens a sealed segment: its hint file when it is sound, else a full scan.
    /// A writer rewrites a missing or damaged hint file. Without `applying`
    /// (a writer resuming through an index that holds every record of the
    /// segment) the scan only makes the hint file: the index is left alone.
    func loadSealed(_ id: UInt32, into state: StoreState, applying: Bool = true) throws(KVFileError) {
        let segmentPath = segmentPath(id)
        let file = try OwnedFile(opening: segmentPath, writer ? O_RDWR : O_RDONLY)
        let fd = file.fd
        let size = try Syscalls.fileSize(fd, path: segmentPath)
        let unwritten = try isCutShort(id, fd: fd, path: segmentPath, fileSize: size)
        var hasHint = false
        if unwritten { hasHint = try Syscalls.exists(hintPath(id)) }
        if unwritten && !temporaryOutputs.contains(id) && !hasHint {
            // A segment rolled away whose header never reached the disk (a power loss before its
            // seal's first sync): nothing in it was synced, and nothing after it either (a seal
            // syncs it before any later sync). Empty; a writer removes the file.
            if writer { try Syscalls.unlink(segmentPath) }
            return
        }
        let header = try readHeader(fd: fd, id: id, path: segmentPath, fileSize: size)
        // A seal cut short may have left the block map past the records: they end before it.
        let layout = SegmentLayout.of(header, fileSize: size) { UnsafeRawBufferPointer(start: nil, count: 0) }
        let records = layout.recordEnd
        let segment = try Segment(id: id, path: segmentPath, file: file, header: header, length: records, mapCapacity: size)
        state.add(segment)

        let hintPath = hintPath(id)
        // Not applying is asked when the hint file is missing (the seal did not finish);
        // should one exist after all, it is read as always (never overwritten, no sealed tail cut).
        var skipsIndex = false
        if !applying { skipsIndex = try !Syscalls.exists(hintPath) }
        if let problem = skipsIndex ? "missing" : try applyHint(hintPath, segment: segment, state: state) {
            let hints = HintBuilder()
            let apply = { (offset: Int, header: RecordHeader, record: UnsafeRawPointer) throws(KVFileError) in
                let key = UnsafeRawBufferPointer(start: record + header.keyOffset, count: header.keyLength)
                if !skipsIndex {
                    state.applyLoaded(key: key, operation: header.operation, location: KeyLocation(
                        segment: id, offset: UInt32(offset), size: UInt32(header.totalLength), seq: header.seq))
                }
                hints.add(operation: header.operation, seq: header.seq, size: header.totalLength, key: key)
            }
            let end: ScanEnd
            if writer || layout.legacy {
                // Version 1 has no map: its rule looks for a readable record anywhere after
                // damage, in the whole file at hand (and such a segment is sealed only when a
                // writer upgrades the store).
                end = try SegmentScanner.scan(segment.bytes(from: RecordFormat.segmentHeaderSize), baseOffset: RecordFormat.segmentHeaderSize,
                                              rule: segment.damageRule(fileSize: size).0, apply)
            } else {
                // Without a hint file the writer's seal may be cutting the reserved space
                // off right now: a reader copies, as from an active segment — through the
                // mapping, a page past the new end faults (SIGBUS).
                end = try scanByCopying(segment, from: RecordFormat.segmentHeaderSize, to: records,
                                        rule: copyingRule(segment, fileSize: size).0, apply)
            }
            switch end {
            case .clean(let at):
                // A reader's copy ends short of `records` when a seal cut the file while it read.
                if !writer && at < segment.length { segment.length = at }
            case .tornTail(let at, let reason) where problem != "missing":
                // A hint file exists, so the seal finished (the hint is written after the sync): the tail was complete.
                throw KVFileError.corrupt(segmentPath, offset: at, "\(reason) (in a sealed segment)")
            case .tornTail(let at, _):
                // No hint file: the seal never finished, so the tail may be torn like an active one.
                segment.length = at
                if writer {
                    // Synced before it is cut: a cut file holds only synced records (kvfile(5), "Layouts").
                    try Syscalls.fdatasync(segment.fd, path: segmentPath)
                    try Syscalls.ftruncate(segment.fd, at, path: segmentPath)
                    try Syscalls.fdatasync(segment.fd, path: segmentPath)
                }
            case .corrupt(let at, let reason):
                throw KVFileError.corrupt(segmentPath, offset: at, "\(reason) (in a sealed segment)")
            }
            if writer {
                segment.hintBytes = try HintWriter.write(hints, segmentID: id, segmentLength: segment.length, directory: directory)
            }
        }
    }

    /// Maps a segment without reading its records or hint file (a change feed
    /// that follows priors reads a record of it only when one names it).
    /// Nothing is added for a file whose creation was cut short.
    func mapWithoutReading(_ id: UInt32, into state: StoreState) throws(KVFileError) {
        let segmentPath = segmentPath(id)
        let file = try OwnedFile(opening: segmentPath, O_RDONLY)
        let size = try Syscalls.fileSize(file.fd, path: segmentPath)
        if try isCutShort(id, fd: file.fd, path: segmentPath, fileSize: size) {
            return
        }
        let header = try readHeader(fd: file.fd, id: id, path: segmentPath, fileSize: size)
        let layout = SegmentLayout.of(header, fileSize: size) { UnsafeRawBufferPointer(start: nil, count: 0) }
        // A segment of the log may be the active one, read later as it grows: mapped as far as it may.
        let capacity = header.compacted ? size : Segment.addressLimit
        state.add(try Segment(id: id, path: segmentPath, file: file, header: header, length: layout.recordEnd, mapCapacity: capacity))
    }

    /// Reads the hint file of `segment` into the index; returns why it could not be used, or nil.
    private func applyHint(_ hintPath: String, segment: Segment, state: StoreState) throws(KVFileError) -> String? {
        guard let file = try OwnedFile.openIfExists(hintPath, O_RDONLY) else { return "missing" }
        let fd = file.fd
        let size = try Syscalls.fileSize(fd, path: hintPath)
        if size == 0 { return "empty" }
        let mapping = try Syscalls.map(fd, length: size, writable: false, shared: false, path: hintPath)
        defer { Syscalls.unmap(mapping, length: size) }
        Syscalls.advise(mapping, length: size, .sequential)
        let id = segment.id
        let bytes = UnsafeRawBufferPointer(start: mapping, count: size)
        if let recorded = HintFileReader.intactRecordedLength(bytes, segmentID: id), recorded != segment.length,
           recorded <= segment.mappedLength, (try? Syscalls.fileSize(segment.fd, path: segment.path)) == recorded {
            // The seal finished while we opened the segment (cut, then the hint): read it as sealed.
            segment.length = recorded
        }
        if let recorded = HintFileReader.intactRecordedLength(bytes, segmentID: id), recorded != segment.length {
            // The segment changed after it was sealed (cut short or grown): its
            // records no longer agree with the hint, which stays as evidence.
            throw KVFileError.corrupt(segment.path, offset: min(recorded, segment.length),
                "the segment is \(segment.length) bytes but its intact hint file \(FileNames.hint(id)) records \(recorded) (in a sealed segment)")
        }
        // Entries are applied a few behind the one being read, whose slot and
        // then index entries are prefetched meanwhile: loading is bound by those cache misses.
        var window = LookaheadWindow<HintEntry>()
        func apply(_ entry: HintEntry) {
            state.applyLoaded(key: entry.key, operation: entry.operation, location: KeyLocation(
                segment: id, offset: UInt32(entry.offset), size: UInt32(entry.size), seq: entry.seq))
        }
        let problem = try HintFileReader.read(bytes, segmentID: id, segmentLength: segment.length) { (entry) throws(KVFileError) in
            state.index.prefetch(entry.key)
            window.push(entry, halfway: { state.index.prefetchEntries($0.key) }, apply: apply)
        }
        if problem == nil {
            // The rest (a damaged file is scanned from the segment instead).
            window.flush(apply: apply)
            segment.hintBytes = size
        }
        return problem
    }
}
