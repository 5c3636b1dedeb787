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
    public var segments = 0
    public var hintFiles = 0
    public var records = 0
    public var bytes = 0
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
            case .hint(let id) where !ids.contains(id):
                report.problems.append(CheckProblem(severity: .warning, file: name, offset: nil, message: "hint file without its segment"))
            default: break
            }
        }
        let sizes = ids.map { id in (try? fileSize(path + "/" + FileNames.segment(id))) ?? 0 }
        let total = max(1, sizes.reduce(0, +))
        var done = 0
        let loader = StoreLoader(directory: path, writer: false, segmentSize: 0)
        for id in ids where !((try? loader.isCompactionOutput(id)) ?? false) { activeID = id }
        for (index, id) in ids.enumerated() {
            try checkSegment(path: path, id: id, isActive: id == activeID, report: &report)
            done += sizes[index]
            progress?(done, total)
        }
        return report
    }

    private static func fileSize(_ path: String) throws(KVFileError) -> Int {
        let fd = try Syscalls.open(path, O_RDONLY)
        defer { Syscalls.close(fd) }
        return try Syscalls.fileSize(fd, path: path)
    }

    private static func checkSegment(path: String, id: UInt32, isActive: Bool, report: inout CheckReport) throws(KVFileError) {
        let name = FileNames.segment(id)
        let data = try FileBytes(path: path + "/" + name)
        report.segments += 1
        report.bytes += data.count
        let header = data.bytes.count >= RecordFormat.segmentHeaderSize
            ? SegmentHeader.decode(data.bytes.baseAddress!, available: data.count, expectedID: id) : .failure(.tooShort)
        switch header {
        case .success: break
        case .failure(.tooShort) where isActive && data.count < RecordFormat.segmentHeaderSize:
            report.problems.append(CheckProblem(severity: .warning, file: name, offset: 0, message: "segment creation was cut short; the next writer finishes it"))
            return
        case .failure(let failure):
            report.problems.append(CheckProblem(severity: .error, file: name, offset: 0, message: "bad segment header (\(failure))"))
            return
        }
        var records: [(operation: Operation, seq: UInt64, offset: Int, size: Int, key: [UInt8])] = []
        let damage = try SalvageScanner.scan(data.bytes) { (offset, header, record) throws(KVFileError) in
            records.append((header.operation, header.seq, offset, header.totalLength,
                            Array(UnsafeRawBufferPointer(start: record + header.keyOffset, count: header.keyLength))))
        }
        report.records += records.count
        let hintName = FileNames.hint(id)
        // A sealed segment without its hint file was not synced before a crash: its tail may be torn too.
        let sealFinished = !isActive && (try? Syscalls.kind(of: path + "/" + hintName)) == .regularFile
        for range in damage {
            if range.isZeroTail && !sealFinished { continue }  // space the writer reserved
            let tornActiveTail = range.isTail && !sealFinished
            report.problems.append(CheckProblem(
                severity: tornActiveTail ? .warning : .error, file: name, offset: range.offset,
                message: tornActiveTail
                    ? "torn tail of \(range.length) bytes (\(range.reason)); the next writer cuts it off"
                    : "\(range.length) unreadable bytes (\(range.reason))"))
        }
        if isActive { return }
        guard let hint = try? FileBytes(path: path + "/" + hintName) else {
            report.problems.append(CheckProblem(severity: .warning, file: hintName, offset: nil, message: "missing; open scans the segment instead and a writer rewrites it"))
            return
        }
        report.hintFiles += 1
        report.bytes += hint.count
        var index = 0
        var disagreement: String?
        let problem = try HintFileReader.read(hint.bytes, segmentID: id, segmentLength: data.count) { (entry) throws(KVFileError) in
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
            report.problems.append(CheckProblem(severity: .error, file: hintName, offset: nil, message: "\(problem); a writer rebuilds it from the segment"))
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
        let fd = try Syscalls.open(path, O_RDONLY)
        defer { Syscalls.close(fd) }
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
