#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// One finding of ``StoreCheck``.
public struct CheckProblem: Sendable, Equatable, CustomStringConvertible {
    /// How bad it is.
    public enum Severity: String, Sendable {
        /// Harmless or mended by the next writer by itself (a torn tail, a missing hint file).
        case warning
        /// Damage: data is unreadable or files disagree; `kvfile check --repair` salvages.
        case error
    }

    public var severity: Severity
    /// The file, relative to the store directory.
    public var file: String
    /// The byte offset in `file`, when the problem has one.
    public var offset: Int?
    public var message: String

    public var description: String {
        "\(severity.rawValue): \(file)" + (offset.map { " at byte offset \($0)" } ?? "") + ": \(message)"
    }
}

/// What ``StoreCheck/run(path:progress:)`` found.
public struct CheckReport: Sendable {
    /// Segment files checked.
    public var segments = 0
    /// Hint files checked.
    public var hintFiles = 0
    /// Records whose checksums held (past damage too, where check could read on).
    public var records = 0
    /// Bytes of the segment files checked.
    public var bytes = 0
    /// Everything found, errors and warnings.
    public var problems: [CheckProblem] = []
    /// True when no problem is an error.
    public var isHealthy: Bool { !problems.contains { $0.severity == .error } }
}

/// Verifies every checksum of every file of a store without changing
/// anything or taking the writer's lock.
public enum StoreCheck {
    /// Checks the store at `path`. `progress` gets (bytes checked, bytes in all).
    public static func run(path: String, progress: ((Int, Int) -> Void)? = nil) throws(KVFileError) -> CheckReport {
        let names = try StoreDirectory.prepare(path, options: .reader).sorted()
        var report = CheckReport()
        var marker: CompactionMarker?
        if names.contains(CompactionMarker.fileName) {
            marker = try CompactionMarker.read(directory: path)
            report.problems.append(CheckProblem(
                severity: .warning, file: CompactionMarker.fileName, offset: nil,
                message: marker == nil ? "a damaged compaction marker; the next writer removes it"
                    : "a compaction was interrupted; the next writer finishes it"))
        }
        let ids = FileNames.segmentIDs(in: names)
        var activeID: UInt32?
        for name in names {
            switch FileNames.classify(name) {
            case .temporary:
                if marker == nil {
                    report.problems.append(CheckProblem(severity: .warning, file: name, offset: nil, message: "left over from an interrupted write; the next writer removes it"))
                }
            case .hint(let id) where !ids.contains(id) && !(marker.map { $0.inputs.contains(id) || $0.outputs.contains(id) } ?? false):
                // What open says: a hint file is written after its segment, and removed before it.
                report.problems.append(CheckProblem(severity: .error, file: FileNames.segment(id), offset: 0,
                                                    message: "the segment is missing, though its hint file \(name) is there (its records are lost)"))
            default: break
            }
        }
        let sizes = ids.map { id in (try? fileSize(StoreFiles(path).segment(id))) ?? 0 }
        let total = max(1, sizes.reduce(0, +))
        var done = 0
        let loader = StoreLoader(directory: path, writer: false, segmentSize: 0)
        for id in ids where !((try? loader.isCompactionOutput(id)) ?? false) { activeID = id }
        for (index, id) in ids.enumerated() {
            try checkSegment(path: path, id: id, isActive: id == activeID, report: &report)
            done += sizes[index]
            progress?(done, total)
        }
        if report.isHealthy { report.problems += IndexCheck.run(path: path, names: names) }
        return report
    }

    private static func fileSize(_ path: String) throws(KVFileError) -> Int {
        let file = try OwnedFile(opening: path, O_RDONLY)
        let fd = file.fd
        return try Syscalls.fileSize(fd, path: path)
    }

    /// Checks one segment the way open reads it: the same rule decides what
    /// damage is (a torn tail the next writer cuts, or corruption that stops
    /// open), with open's words; then every record's value is decompressed,
    /// and the hint file is compared with the records.
    private static func checkSegment(path: String, id: UInt32, isActive: Bool, report: inout CheckReport) throws(KVFileError) {
        let name = FileNames.segment(id)
        let segmentPath = StoreFiles(path).file(name)
        let hintName = FileNames.hint(id)
        let hintPresent = (try? Syscalls.kind(of: StoreFiles(path).file(hintName))) == .regularFile
        var looked = 0
        while true {
            let data = try FileBytes(path: segmentPath)
            guard let outcome = try checkSegmentBytes(data, path: segmentPath, id: id, isActive: isActive, hintPresent: hintPresent,
                                                      hintPath: StoreFiles(path).file(hintName)) else {
                report.problems.append(CheckProblem(severity: .warning, file: name, offset: 0,
                                                    message: isActive ? "segment creation was cut short; the next writer finishes it"
                                                        : "a segment whose header never reached the disk (empty); the next writer removes it"))
                report.segments += 1
                return
            }
            // A writer may be storing records while we copy the active segment:
            // damage whose bytes have changed since is looked at again, as readers do.
            if isActive, outcome.damageAt != nil, looked < StoreLoader.damageRechecks,
               let now = try? FileBytes(path: segmentPath), let at = outcome.damageAt,
               now.count != data.count || memcmp(now.bytes.baseAddress! + min(at, now.count), data.bytes.baseAddress! + at, min(512, data.count - at, max(0, now.count - at))) != 0 {
                Syscalls.sleep(milliseconds: 1 << (looked + 1))
                looked += 1
                continue
            }
            report.segments += 1
            report.bytes += data.count
            report.records += outcome.records.count + outcome.readablePastDamage
            report.problems += outcome.problems.map { problem in
                var problem = problem
                problem.file = name
                return problem
            }
            if isActive { return }
            try checkHint(path: path, id: id, segmentLength: outcome.recordEnd, records: outcome.records, report: &report)
            return
        }
    }

    private struct SegmentOutcome {
        var records: [(operation: ChangeKind, seq: UInt64, offset: Int, size: Int, key: [UInt8])] = []
        var problems: [CheckProblem] = []
        var damageAt: Int?
        var recordEnd = 0
        /// Readable records past the first damage (counted, not checked against the hint file).
        var readablePastDamage = 0
    }

    /// nil: a file too short for a header at the end of the store (creation cut short).
    private static func checkSegmentBytes(_ data: FileBytes, path: String, id: UInt32, isActive: Bool, hintPresent: Bool,
                                          hintPath: String) throws(KVFileError) -> SegmentOutcome? {
        var outcome = SegmentOutcome()
        let header: SegmentHeader
        switch data.count >= RecordFormat.segmentHeaderSize
            ? SegmentHeader.decode(data.bytes.baseAddress!, available: data.count, expectedID: id) : .failure(.tooShort) {
        case .success(let decoded):
            header = decoded
        case .failure(.tooShort) where isActive:
            return nil
        case .failure where !hintPresent && (data.count < RecordFormat.segmentHeaderSize
                                             || data.bytes.prefix(RecordFormat.segmentHeaderSize).allSatisfy { $0 == 0 }):
            // Rolled away before its header reached the disk: empty, as open reads it (the next writer removes it).
            return nil
        case .failure(let failure):
            outcome.problems.append(CheckProblem(severity: .error, file: "", offset: 0, message: "bad segment header (\(failure))"))
            outcome.damageAt = 0
            return outcome
        }
        let layout = SegmentLayout.of(header, bytes: data.bytes)
        outcome.recordEnd = layout.recordEnd
        let rule = DamageRule.forSegment(header, layout: layout, bytes: data.bytes)
        let start = RecordFormat.segmentHeaderSize
        var undecodable: [Int] = []
        let end = try SegmentScanner.scan(UnsafeRawBufferPointer(rebasing: data.bytes[start..<max(start, layout.recordEnd)]), baseOffset: start, rule: rule) {
            (offset, header, record) throws(KVFileError) in
            outcome.records.append((header.operation, header.seq, offset, header.totalLength,
                                    Array(UnsafeRawBufferPointer(start: record + header.keyOffset, count: header.keyLength))))
            if header.compressed {
                let buffer = UnsafeMutableRawPointer.allocate(byteCount: header.rawLength, alignment: 8)
                defer { buffer.deallocate() }
                if !LZ4Block.decompress(record + header.valueOffset, count: header.storedLength, into: buffer, rawLength: header.rawLength) {
                    undecodable.append(offset)
                }
            }
        }
        for offset in undecodable {
            outcome.problems.append(CheckProblem(severity: .error, file: "", offset: offset,
                                                 message: "compressed value does not decompress (reading that key fails)"))
        }
        // What open does with the end of the records (StoreLoader): the same judgement, the same words.
        switch end {
        case .clean:
            break
        case .tornTail(let at, let reason) where !isActive && hintPresent:
            outcome.problems.append(CheckProblem(severity: .error, file: "", offset: at, message: "\(reason) (in a sealed segment); open fails here"))
            outcome.damageAt = at
        case .tornTail(let at, let reason):
            if layout.recordEnd > at && !isZero(data.bytes, from: at, to: layout.recordEnd) || layout.legacy && data.count > at && !isZero(data.bytes, from: at, to: data.count) {
                outcome.problems.append(CheckProblem(severity: .warning, file: "", offset: at,
                                                     message: "torn tail (\(reason)); the next writer cuts it off"))
            }
        case .corrupt(let at, let reason):
            outcome.problems.append(CheckProblem(severity: .error, file: "", offset: at,
                                                 message: "corrupt: \(reason)\(isActive ? "" : " (in a sealed segment)"); open fails here"))
            outcome.damageAt = at
        }
        if let first = outcome.damageAt, first >= RecordFormat.segmentHeaderSize {
            outcome.problems += furtherDamage(data.bytes, after: first, id: id, hintPath: hintPath, readable: &outcome.readablePastDamage)
        }
        return outcome
    }

    /// Damage past the first in a file: check reads on from the next record start the
    /// block map or the hint file knows (as repair does), so one run names every
    /// damaged place; open stops at the first. `readable` counts the sound records it passes.
    private static func furtherDamage(_ bytes: UnsafeRawBufferPointer, after first: Int, id: UInt32, hintPath: String,
                                      readable: inout Int) -> [CheckProblem] {
        let resync = SalvageScanner.resync(for: bytes, id: id, hintPath: hintPath)
        // Where repair reads records to (a closed file's list and trailer are not records).
        let recordEnd = SalvageScanner.recordEnd(of: bytes, id: id)
        var count = 0
        guard let next = resync.next(first), next < recordEnd,
              let ranges = try? SalvageScanner.scan(bytes, from: next, recordEnd: recordEnd, resync: resync, { _, _, _ throws(KVFileError) in count += 1 })
        else { return [] }
        readable = count
        return ranges.filter { !$0.isZeroTail }.map {
            CheckProblem(severity: .error, file: "", offset: $0.offset, message: "corrupt: \($0.reason) (more damage past the first)")
        }
    }

    private static func isZero(_ bytes: UnsafeRawBufferPointer, from: Int, to: Int) -> Bool {
        bytes[from..<min(to, bytes.count)].allSatisfy { $0 == 0 }
    }

    /// A sealed segment's hint file, as open reads it: missing or damaged, open
    /// scans the segment instead (a warning); intact but recording another
    /// size, or disagreeing with the records, is damage.
    private static func checkHint(
        path: String, id: UInt32, segmentLength: Int,
        records: [(operation: ChangeKind, seq: UInt64, offset: Int, size: Int, key: [UInt8])], report: inout CheckReport
    ) throws(KVFileError) {
        let hintName = FileNames.hint(id)
        guard let hint = try? FileBytes(path: StoreFiles(path).file(hintName)) else {
            report.problems.append(CheckProblem(severity: .warning, file: hintName, offset: nil, message: "missing; open scans the segment instead and a writer rewrites it"))
            return
        }
        report.hintFiles += 1
        report.bytes += hint.count
        if let recorded = HintFileReader.intactRecordedLength(hint.bytes, segmentID: id), recorded != segmentLength {
            report.problems.append(CheckProblem(severity: .error, file: FileNames.segment(id), offset: min(recorded, segmentLength),
                message: "the segment is \(segmentLength) bytes but its intact hint file \(hintName) records \(recorded) (in a sealed segment); open fails here"))
            return
        }
        var index = 0
        var disagreement: String?
        let problem = try HintFileReader.read(hint.bytes, segmentID: id, segmentLength: segmentLength) { (entry) throws(KVFileError) in
            if disagreement == nil {
                if index >= records.count || records[index].seq != entry.seq || records[index].offset != entry.offset
                    || records[index].size != entry.size || records[index].operation != entry.operation
                    || records[index].key != Array(entry.key) {
                    disagreement = "entry \(index) does not match the record at offset \(entry.offset)"
                }
            }
            index += 1
        }
        if let problem {
            report.problems.append(CheckProblem(severity: .warning, file: hintName, offset: nil, message: "not used (\(problem)); open scans the segment instead and a writer rewrites it"))
        } else if let disagreement {
            report.problems.append(CheckProblem(severity: .error, file: hintName, offset: nil, message: "disagrees with its segment: \(disagreement)"))
        }
    }
}

/// A whole file read into memory (check and repair read files once, front to back).
final class FileBytes {
    let bytes: UnsafeRawBufferPointer
    var count: Int { bytes.count }

    init(path: String) throws(KVFileError) {
        let file = try OwnedFile(opening: path, O_RDONLY)
        let fd = file.fd
        let size = try Syscalls.fileSize(fd, path: path)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(size, 1), alignment: 8)
        do throws(KVFileError) {
            let n = try Syscalls.preadFully(fd, UnsafeMutableRawBufferPointer(rebasing: buffer[0..<size]), at: 0, path: path)
            bytes = UnsafeRawBufferPointer(rebasing: buffer[0..<n])
        } catch {
            buffer.deallocate()
            throw error
        }
    }

    deinit { UnsafeMutableRawBufferPointer(mutating: bytes).deallocate() }
}
