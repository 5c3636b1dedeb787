#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// `kvfile.compaction`: the commit point of a compaction (see man/kvfile.5,
/// "Compaction"). It exists only between "every output is complete and
/// synced" and "every input is gone"; whoever finds it finishes the job:
/// outputs still named `.tmp` are renamed into place and inputs are removed.
///
///   0  magic   8 bytes "kvfileC\n"
///   8  version u16 LE (1)
///  10  reserved u16 (0)
///  12  input count u32, then that many u32 segment numbers
///      output count u32, then that many u32 segment numbers
///  end-4 crc32c u32 over every byte before it
struct CompactionMarker: Equatable {
    var inputs: [UInt32]
    var outputs: [UInt32]

    static let fileName = "kvfile.compaction"
    static let magic: Magic = (0x6B, 0x76, 0x66, 0x69, 0x6C, 0x65, 0x43, 0x0A)

    func encoded() -> [UInt8] {
        var bytes: [UInt8] = []
        withUnsafeBytes(of: CompactionMarker.magic) { bytes.append(contentsOf: $0) }
        func append<T: FixedWidthInteger>(_ value: T) { withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) } }
        append(RecordFormat.hintVersion)
        append(UInt16(0))
        append(UInt32(inputs.count))
        inputs.forEach { append($0) }
        append(UInt32(outputs.count))
        outputs.forEach { append($0) }
        let crc = bytes.withUnsafeBytes { CRC32C.checksum($0) }
        append(crc)
        return bytes
    }

    /// Nil when the bytes are not a complete, intact marker.
    static func decode(_ bytes: [UInt8]) -> CompactionMarker? {
        bytes.withUnsafeBytes { raw -> CompactionMarker? in
            guard raw.count >= 24, let p = raw.baseAddress else { return nil }
            guard equalMagic(p.loadUnaligned(as: Magic.self), magic),
                  CRC32C.checksum(p, raw.count - 4) == p.loadLE(at: raw.count - 4, as: UInt32.self),
                  p.loadLE(at: 8, as: UInt16.self) == RecordFormat.hintVersion else { return nil }
            var position = 12
            func list() -> [UInt32]? {
                guard position + 4 <= raw.count - 4 else { return nil }
                let count = Int(p.loadLE(at: position, as: UInt32.self))
                position += 4
                guard count <= (raw.count - 4 - position) / 4 else { return nil }
                let ids = (0..<count).map { p.loadLE(at: position + $0 * 4, as: UInt32.self) }
                position += count * 4
                return ids
            }
            guard let inputs = list(), let outputs = list(), position == raw.count - 4 else { return nil }
            return CompactionMarker(inputs: inputs, outputs: outputs)
        }
    }

    /// Writes the marker atomically and durably in `directory`.
    func write(directory: String) throws(KVFileError) {
        try AtomicFile.write(encoded(), to: StoreFiles(directory).marker, syncDirectory: directory)
    }

    /// Reads the marker of `directory`, if there is an intact one.
    static func read(directory: String) throws(KVFileError) -> CompactionMarker? {
        let path = StoreFiles(directory).marker
        guard let file = try OwnedFile.openIfExists(path, O_RDONLY) else { return nil }
        let fd = file.fd
        let size = try Syscalls.fileSize(fd, path: path)
        guard size > 0 && size < 1 << 24 else { return nil }
        var bytes = [UInt8](repeating: 0, count: size)
        let n = try withMutableBytes(&bytes) { (raw) throws(KVFileError) in try Syscalls.preadFully(fd, raw, at: 0, path: path) }
        return decode(Array(bytes[0..<n]))
    }

    /// Finishes the compaction it describes: renames outputs into place, removes inputs, removes itself.
    func rollForward(directory: String) throws(KVFileError) {
        for id in outputs {
            for name in [FileNames.hint(id), FileNames.segment(id)] {
                let finalPath = StoreFiles(directory).file(name)
                let temporaryPath = StoreFiles.temporary(of: finalPath)
                if try Syscalls.kind(of: temporaryPath) == .regularFile { try Syscalls.rename(temporaryPath, finalPath) }
            }
        }
        try Syscalls.syncDirectory(directory)
        for id in inputs {
            try Syscalls.unlink(StoreFiles(directory).hint(id))
            try Syscalls.unlink(StoreFiles(directory).segment(id))
        }
        try Syscalls.syncDirectory(directory)
        try Syscalls.unlink(StoreFiles(directory).marker)
        try Syscalls.syncDirectory(directory)
    }
}
