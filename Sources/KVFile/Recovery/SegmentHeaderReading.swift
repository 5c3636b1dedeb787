#if canImport(Glibc)
@preconcurrency import Glibc
#endif

// Reading a segment file's header before it is mapped.

extension StoreLoader {
    /// True when the segment's header says compaction wrote it. A file too
    /// short for a header is an active segment whose creation was cut short.
    func isCompactionOutput(_ id: UInt32) throws(KVFileError) -> Bool {
        if temporaryOutputs.contains(id) { return true }
        let segmentPath = segmentPath(id)
        let file = try OwnedFile(opening: segmentPath, O_RDONLY)
        let fd = file.fd
        var raw = [UInt8](repeating: 0, count: RecordFormat.segmentHeaderSize)
        let n = try withMutableBytes(&raw) { (bytes) throws(KVFileError) in try Syscalls.preadFully(fd, bytes, at: 0, path: segmentPath) }
        guard n == RecordFormat.segmentHeaderSize else { return false }
        return raw.withUnsafeBytes { SegmentHeader.decode($0.baseAddress!, available: n, expectedID: id) }.map(\.compacted) == .success(true)
    }

    /// True for a segment whose creation was cut short: too short for a header, or a header of zeros.
    func isCutShort(_ id: UInt32, fd: Int32, path: String, fileSize: Int) throws(KVFileError) -> Bool {
        if fileSize < RecordFormat.segmentHeaderSize { return true }
        if temporaryOutputs.contains(id) { return false }
        return try headerIsZeros(fd: fd, path: path)
    }

    func headerIsZeros(fd: Int32, path: String) throws(KVFileError) -> Bool {
        var raw = [UInt8](repeating: 0, count: RecordFormat.segmentHeaderSize)
        let n = try withMutableBytes(&raw) { (bytes) throws(KVFileError) in try Syscalls.preadFully(fd, bytes, at: 0, path: path) }
        return n == RecordFormat.segmentHeaderSize && raw.allSatisfy { $0 == 0 }
    }

    func readHeader(fd: Int32, id: UInt32, path: String, fileSize: Int) throws(KVFileError) -> SegmentHeader {
        var raw = [UInt8](repeating: 0, count: RecordFormat.segmentHeaderSize)
        let n = try withMutableBytes(&raw) { (bytes) throws(KVFileError) in try Syscalls.preadFully(fd, bytes, at: 0, path: path) }
        let result = raw.withUnsafeBytes { SegmentHeader.decode($0.baseAddress!, available: n, expectedID: id) }
        switch result {
        case .success(let header): return header
        case .failure(.unsupportedVersion(let version)):
            throw KVFileError(.unsupportedVersion,
                "\(path) uses format version \(version); this kvfile reads versions \(RecordFormat.readableSegmentVersions.lowerBound) to \(RecordFormat.readableSegmentVersions.upperBound). Use a kvfile release that supports it.",
                path: path)
        case .failure(.tooShort): throw KVFileError.corrupt(path, offset: n, "segment header is truncated")
        case .failure(.badMagic): throw KVFileError.corrupt(path, offset: 0, "not a kvfile segment (bad magic)")
        case .failure(.badChecksum): throw KVFileError.corrupt(path, offset: 36, "segment header checksum mismatch")
        case .failure(.wrongSegmentID(let other)): throw KVFileError.corrupt(path, offset: 12, "header names segment \(other)")
        case .failure(.badMapOffset(let offset)): throw KVFileError.corrupt(path, offset: 32, "header names a block map at \(offset), which cannot be")
        case .failure(.unknownFlags(let flags)):
            throw KVFileError(.unsupportedVersion, "\(path) has header flags \(flags) this kvfile does not know; use a newer kvfile.", path: path)
        }
    }

    /// The active segment among `ids` (ascending): the newest one compaction
    /// did not write (kvfile(5), "Files"); nil when every one is a compaction output.
    func activeSegmentID(among ids: [UInt32]) throws(KVFileError) -> UInt32? {
        for id in ids.reversed() where try !isCompactionOutput(id) { return id }
        return nil
    }
}

extension StoreLoader {
    /// The header of segment `id`, read without mapping it; nil for a file
    /// whose creation was cut short (too short, or a header of zeros).
    func header(of id: UInt32) throws(KVFileError) -> SegmentHeader? {
        let segmentPath = segmentPath(id)
        let file = try OwnedFile(opening: segmentPath, O_RDONLY)
        let size = try Syscalls.fileSize(file.fd, path: segmentPath)
        if try isCutShort(id, fd: file.fd, path: segmentPath, fileSize: size) {
            return nil
        }
        return try readHeader(fd: file.fd, id: id, path: segmentPath, fileSize: size)
    }
}
