#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// What ``StoreRepair/run(path:lockTimeoutMilliseconds:)`` did.
public struct RepairReport: Sendable {
    /// Keys with a value after the repair.
    public var keysKept = 0
    /// Records read intact (every version of every key, tombstones included).
    public var recordsRead = 0
    /// Ranges of bytes that could not be read, and why.
    public var dropped: [CheckProblem] = []
    /// Where the damaged original files were moved (nil when none was damaged).
    public var backupDirectory: String?
}

/// Salvages every readable record of a damaged store into fresh segments,
/// keeping sequence numbers, and moves the damaged files aside.
public enum StoreRepair {
    /// What a sealed segment lost past byte `size` (0: the file is gone), from
    /// its intact hint file, which records the size it was sealed with and an
    /// entry per record: salvage sees at most the last record's bytes cut, and
    /// said "dropped 8 unreadable bytes" for half a segment. Nil without such a
    /// hint file, or when the file is not shorter than it says.
    static func lostFromHint(id: UInt32, hintPath: String, size: Int) -> String? {
        guard let hint = try? FileBytes(path: hintPath),
              let recorded = HintFileReader.intactRecordedLength(hint.bytes, segmentID: id), recorded > size else { return nil }
        var lost = 0
        var keys: [String] = []
        let problem = try? HintFileReader.read(hint.bytes, segmentID: id, segmentLength: recorded) { (entry) throws(KVFileError) in
            guard entry.offset + entry.size > size else { return }
            lost += 1
            if keys.count < 5 { keys.append(KeyText.describe(entry.key)) }
        }
        let named = problem == nil && lost > 0 ? "keys \(keys.joined(separator: ", "))\(lost > keys.count ? ", …" : "")" : nil
        if size == 0 {
            guard let named else { return "the segment is missing (its hint file is there): its records are lost" }
            return "the segment is missing: its hint file names the \(lost) records that are lost with it (\(named))"
        }
        let what = named.map { "\(lost) records past it are lost (the hint file names them: \($0))" } ?? "the records past it are lost"
        return "the file ends at byte \(size), but its hint file records the \(recorded) bytes it was sealed with: \(what)"
    }

    /// Builds the index file of the store at `path` anew from its segments
    /// (what `check --repair` does when only the index is wrong).
    public static func rebuildIndex(path: String, lockTimeoutMilliseconds: Int = 10_000) throws(KVFileError) {
        try removeIndex(path: path, lockTimeoutMilliseconds: lockTimeoutMilliseconds)
        var options = StoreOptions()
        options.createIfMissing = false
        options.lockTimeoutMilliseconds = lockTimeoutMilliseconds
        options.autoCompaction = nil
        try Store(path: path, options: options).close()
    }

    /// Removes the index file under the writer's lock, released before returning.
    private static func removeIndex(path: String, lockTimeoutMilliseconds: Int) throws(KVFileError) {
        let lock = try LockFile.acquire(directory: path, timeoutMilliseconds: lockTimeoutMilliseconds)
        defer { withExtendedLifetime(lock) {} }
        try SharedIndex.remove(directory: path)
    }

    /// Repairs the store at `path`; takes the writer's lock for the duration.
    public static func run(path: String, lockTimeoutMilliseconds: Int = 10_000) throws(KVFileError) -> RepairReport {
        _ = try StoreDirectory.prepare(path, options: StoreOptions(readOnly: true))
        let lock = try LockFile.acquire(directory: path, timeoutMilliseconds: lockTimeoutMilliseconds)
        defer { withExtendedLifetime(lock) {} }  // the lock is held until repair returns
        var current = try Syscalls.listDirectory(path)
        if try StoreDirectory.finishInterruptedCompaction(path, names: current) { current = try Syscalls.listDirectory(path) }
        try StoreDirectory.removeLeftovers(path, names: current)
        // Sequence numbers an index closed cleanly (or left open in this boot) recorded as given
        // out are not given out again, even when the records that held them were lost: a
        // version a client holds must never name another write.
        var report = RepairReport()
        var nextSeq: UInt64 = 1
        // Only this store's own index (not one copied in from another copy, whose numbers could run ahead).
        if let index = try? SharedIndex.open(path: StoreFiles(path).index, writable: false),
           (index.state == IndexFormat.stateClosed && index.headerChecksumHolds && index.recordsItsOwnIdentity)
            || (index.state == IndexFormat.stateOpen && index.bootMatches && index.recordsItsOwnIdentity),
           index.nextSeq <= RecordFormat.maxSeq + 1 {
            nextSeq = index.nextSeq
            if let lost = LogEndCheck.recordsCutOffProblem(index, directory: path) {
                report.dropped.append(CheckProblem(severity: .error, file: lost.file, offset: lost.offset, message: lost.what))
            }
        }
        let ids = FileNames.segmentIDs(in: current)

        let keydir = Keydir()
        var files: [UInt32: FileBytes] = [:]
        var damagedIDs: [UInt32] = []
        for id in ids {
            let name = FileNames.segment(id)
            let data = try FileBytes(path: StoreFiles(path).file(name))
            files[id] = data
            if data.count >= RecordFormat.segmentHeaderSize,
               case .success(let header) = SegmentHeader.decode(data.bytes.baseAddress!, available: data.count, expectedID: id) {
                nextSeq = max(nextSeq, header.baseSeq)
            } else if data.count >= RecordFormat.segmentHeaderSize {
                // A damaged header: its records may still be readable.
                report.dropped.append(CheckProblem(severity: .error, file: name, offset: 0, message: "segment header unreadable; records read anyway"))
                damagedIDs.append(id)
            }
            let damage = try SalvageScanner.scan(data.bytes, recordEnd: SalvageScanner.recordEnd(of: data.bytes, id: id),
                                                 resync: SalvageScanner.resync(for: data.bytes, id: id,
                                                                               hintPath: StoreFiles(path).hint(id))) {
                (offset, header, record) throws(KVFileError) in
                report.recordsRead += 1
                nextSeq = max(nextSeq, header.seq + 1)
                let key = UnsafeRawBufferPointer(start: record + header.keyOffset, count: header.keyLength)
                _ = keydir.applyLoaded(key, KeyLocation(
                    segment: id, offset: UInt32(offset),
                    size: header.operation == .deleted ? 0 : UInt32(header.totalLength), seq: header.seq))
            }
            if let lost = lostFromHint(id: id, hintPath: StoreFiles(path).hint(id), size: data.count) {
                report.dropped.append(CheckProblem(severity: .error, file: name, offset: data.count, message: lost))
                if !damagedIDs.contains(id) { damagedIDs.append(id) }
            }
            for range in damage where !range.isZeroTail {
                let kept = range.keptOfBrokenBatch > 0 ? "; the \(range.keptOfBrokenBatch) readable records of the batch it broke before it were kept" : ""
                report.dropped.append(CheckProblem(severity: .error, file: name, offset: range.offset,
                                                   message: "dropped \(range.length) unreadable bytes (\(range.reason))\(kept)"))
                if !damagedIDs.contains(id) { damagedIDs.append(id) }
            }
        }
        // A hint file whose segment is gone names what was lost with it.
        for id in FileNames.hintIDs(in: current) where !ids.contains(id) {
            let name = FileNames.segment(id)
            if report.dropped.contains(where: { $0.file == name }) { continue }
            if let lost = lostFromHint(id: id, hintPath: StoreFiles(path).hint(id), size: 0) {
                report.dropped.append(CheckProblem(severity: .error, file: name, offset: 0, message: lost))
            }
        }
        keydir.dropDeletionMarks()

        // Write the survivors in sequence order into compaction outputs.
        var survivors: [(seq: UInt64, segment: UInt32, offset: Int)] = []
        keydir.forEach { _, location in survivors.append((location.seq, location.segment, Int(location.offset))) }
        survivors.sort { $0.seq < $1.seq }
        var allocated = ids.last ?? 0
        let output = CompactionOutput(directory: path, segmentSize: 64 << 20, baseSeq: nextSeq) {
            allocated += 1
            return allocated
        }
        do throws(KVFileError) {
            for survivor in survivors {
                let record = files[survivor.segment]!.bytes.baseAddress! + survivor.offset
                guard case .record(let header) = RecordCodec.decode(record, available: files[survivor.segment]!.count - survivor.offset) else { continue }
                _ = try output.append(record, header: header)
            }
            try output.finish(decidedBefore: nextSeq)  // the store is locked: nothing is written meanwhile
        } catch {
            output.abandon()
            throw error
        }
        report.keysKept = survivors.count

        // The damaged files get their second name in the backup directory,
        // durably, before the marker commits the repair: the roll-forward
        // (ours, or the next writer's after a crash) removes them from the
        // store, and the backup the report names must hold them by then.
        if !damagedIDs.isEmpty {
            let backup = path + "/damaged-\(Syscalls.wallClockMilliseconds())"
            try Syscalls.makeDirectory(backup)
            for id in damagedIDs {
                try Syscalls.link(StoreFiles(path).segment(id), StoreFiles(backup).segment(id))
                if try Syscalls.kind(of: StoreFiles(path).hint(id)) == .regularFile {
                    try Syscalls.link(StoreFiles(path).hint(id), StoreFiles(backup).hint(id))
                }
            }
            try Syscalls.syncDirectory(backup)
            try Syscalls.syncDirectory(path)
            report.backupDirectory = backup
        }
        let marker = CompactionMarker(inputs: ids, outputs: output.finished.map(\.id))
        try marker.write(directory: path)
        // The index describes the files as they were; the next writer builds it from what repair
        // leaves (a marker makes it do so anyway). Removed only now: a repair that failed before
        // leaves it, and what it says (records cut off, the numbers given out) is not forgotten.
        try SharedIndex.remove(directory: path)
        try marker.rollForward(directory: path)
        return report
    }
}
