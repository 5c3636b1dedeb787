#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// Whether the log end an index left open records (segment, offset and next
/// sequence number) is an end of this log: a sound record ends exactly there
/// in the active segment and holds the sequence number just before the index's
/// next one. The boot id and the file's identity cannot tell an index that a
/// copy wrote back in place over the live one (`cp -r backup/. live/`, `rsync
/// --inplace`), which can name records past the copied segments' end; trusted,
/// a writer would append after a gap of zeros and lose what follows it in the
/// next recovery. Reads the block map and the records with `pread`, never
/// through a mapping past the file's end.
enum LogEndCheck {
    /// True when a record of the open-layout segment file `fd` ends at `end`
    /// with sequence number `nextSeq - 1` (at the first record offset: no
    /// record yet, and the header's base at most `nextSeq`); also true for a
    /// segment without a block map, which cannot be checked this cheaply.
    static func holds(fd: Int32, path: String, header: SegmentHeader, end: Int, nextSeq: UInt64) -> Bool {
        let mapOffset = Int(header.mapOffset)
        guard mapOffset > 0 else { return true }
        guard let size = try? Syscalls.fileSize(fd, path: path), end >= RecordFormat.segmentHeaderSize, end <= min(size, mapOffset) else { return false }
        if end == RecordFormat.segmentHeaderSize { return header.baseSeq <= nextSeq }
        guard size > mapOffset, nextSeq > 1, let start = lastRecordStart(fd: fd, path: path, header: header, before: end) else { return false }
        // Whole records from there to `end`: the last one must end exactly at it.
        var bytes = [UInt8](repeating: 0, count: end - start)
        let read = (try? withMutableBytes(&bytes) { (buffer) throws(KVFileError) in try Syscalls.preadFully(fd, buffer, at: start, path: path) }) ?? 0
        guard read == bytes.count else { return false }
        return bytes.withUnsafeBytes { raw -> Bool in
            var offset = 0
            while offset < raw.count {
                guard case .record(let record) = RecordCodec.decode(raw.baseAddress! + offset, available: raw.count - offset) else { return false }
                offset += record.totalLength
                if offset == raw.count { return record.seq == nextSeq - 1 && !record.continues }
            }
            return false
        }
    }

    /// The start of a record at or before `end - 1` that the block map names:
    /// the first start of the block `end - 1` lies in, or of a block before it
    /// (a long value spans blocks with no start).
    private static func lastRecordStart(fd: Int32, path: String, header: SegmentHeader, before end: Int) -> Int? {
        let mapOffset = Int(header.mapOffset)
        let lastBlock = (end - 1) / BlockMap.blockSize
        var block = lastBlock
        while block >= 0 {
            // Entries are read a page at a time, newest block first.
            let first = max(0, block - 1023)
            var entries = [UInt32](repeating: 0, count: block - first + 1)
            let wanted = entries.count * BlockMap.entrySize
            let read = (try? entries.withUnsafeMutableBytes { (buffer) throws(KVFileError) in
                try Syscalls.preadFully(fd, buffer, at: mapOffset + first * BlockMap.entrySize, path: path)
            }) ?? 0
            guard read == wanted else { return nil }
            for index in stride(from: entries.count - 1, through: 0, by: -1) {
                let entryBlock = first + index
                guard let start = BlockMap.recordStart(UInt32(littleEndian: entries[index]), segmentID: header.segmentID, block: entryBlock) else { continue }
                if start < end { return start }
            }
            block = first - 1
        }
        return nil
    }
}

extension LogEndCheck {
    /// For an index closed cleanly (state 1, header checksum holding) that is
    /// still the file its writer opened (its recorded identity is its own: not
    /// an index copied in from another copy of the store, which is only built
    /// anew): the error that records were cut off the log, when the segment the
    /// index's log end lies in is the file the index was made with (the header
    /// checksum its segment table records) but its records now end before
    /// that log end. A clean close synced them first, so no crash or power
    /// loss does this: the file was cut (or restored from an older copy), and
    /// building the index from what is left would answer "no value" for
    /// acknowledged writes and give their sequence numbers out again. Nil otherwise.
    static func recordsCutOff(_ index: SharedIndex, directory: String) -> KVFileError? {
        recordsCutOffProblem(index, directory: directory).map { KVFileError.corrupt(StoreFiles(directory).file($0.file), offset: $0.offset, $0.what) }
    }

    /// What ``recordsCutOff(_:directory:)`` finds: the segment file's name, where its records end, and what was lost.
    /// Every segment the index lists is looked at: one missing or emptied that held
    /// records, a sealed one shorter than it was sealed, and the one the log end lies in
    /// when its records (closed or cut) end before it.
    static func recordsCutOffProblem(_ index: SharedIndex, directory: String) -> (file: String, offset: Int, what: String)? {
        guard index.state == IndexFormat.stateClosed, index.headerChecksumHolds, index.recordsItsOwnIdentity else { return nil }
        let end = LogPosition(packed: index.logEnd)
        let given = "sequence numbers up to \(index.nextSeq &- 1) were given out"
        let loader = StoreLoader(directory: directory, writer: false, segmentSize: 0)
        for id in index.listedSegments() {
            guard let entry = index.segmentEntry(id, create: false) else { continue }
            let name = FileNames.segment(id), path = StoreFiles(directory).segment(id)
            let sealed = Int(UnsafeRawPointer(entry).loadLE(at: 24, as: UInt32.self))
            let minSeq = UnsafeRawPointer(entry).loadLE(at: 8, as: UInt64.self)
            let heldRecords = (id == end.segment && end.offset > RecordFormat.segmentHeaderSize) || sealed > RecordFormat.segmentHeaderSize || minSeq != UInt64.max
            guard let file = try? OwnedFile(opening: path, O_RDONLY), let size = try? Syscalls.fileSize(file.fd, path: path) else {
                if heldRecords, (try? Syscalls.exists(path)) == false {
                    return (name, 0, "the segment is missing, though the index, closed cleanly, lists it with records (\(given)): its records are lost")
                }
                continue
            }
            guard let header = try? loader.readHeader(fd: file.fd, id: id, path: path, fileSize: size) else {
                let emptied = size < RecordFormat.segmentHeaderSize || (try? loader.headerIsZeros(fd: file.fd, path: path)) == true
                if heldRecords && emptied {
                    return (name, size, "the segment is empty (\(size) bytes), though the index, closed cleanly, lists it with records (\(given)): its records are lost")
                }
                continue
            }
            // Another file under this number: a copy from elsewhere, whose index is only built anew.
            guard IndexFormat.entry(entry, describes: header) else { continue }
            if id != end.segment {
                // With its hint file there, opening fails naming both files (the hint records the sealed size).
                if sealed > 0 && size < sealed && (try? Syscalls.exists(StoreFiles(directory).hint(id))) == false {
                    return (name, size, "the segment is \(size) bytes, but the index, closed cleanly, says it was sealed at \(sealed): the records past byte \(size) are lost")
                }
                continue
            }
            var trailer = [UInt8](repeating: 0, count: BlockMap.trailerSize)
            let layout = trailer.withUnsafeMutableBytes { buffer in
                SegmentLayout.of(header, fileSize: size) {
                    let read = size >= buffer.count ? (try? Syscalls.preadFully(file.fd, buffer, at: size - buffer.count, path: path)) ?? 0 : 0
                    return UnsafeRawBufferPointer(rebasing: buffer[0..<read])
                }
            }
            // An open file may hold records up to its map; only a closed or cut one ends for sure.
            guard header.mapOffset > 0, size <= Int(header.mapOffset), !layout.legacy else { continue }
            let recordsEnd = layout.closed?.recordsEnd ?? layout.recordEnd
            if recordsEnd < end.offset {
                return (name, recordsEnd,
                        "the segment's records end at byte \(recordsEnd), but the index, closed cleanly, records writes up to byte \(end.offset) "
                            + "(\(given)): records were cut off the log")
            }
        }
        return nil
    }
}
