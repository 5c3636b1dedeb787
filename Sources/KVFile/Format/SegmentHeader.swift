// The 40-byte header at the start of every segment file (see man/kvfile.5, "Segment files"):
//
//   0  magic      8 bytes "kvfileS\n"
//   8  version    u16 LE (2; 1 in stores written before the block map)
//  10  flags      u16 LE: bit 0 set when compaction wrote the segment; other bits 0
//  12  segment    u32 LE, equal to the number in the file name
//  16  base seq   u64 LE: no record written after this segment was created has a smaller seq
//  24  created    u64 LE, milliseconds since the Unix epoch
//  32  map        u32 LE: where the block map starts (version 2 segments a writer
//                 appends to); 0 when there is none (always in version 1)
//  36  crc32c     u32 LE over bytes 0..<36

struct SegmentHeader: Equatable {
    var segmentID: UInt32
    var baseSeq: UInt64
    var createdMilliseconds: UInt64
    /// Written by compaction: sealed from birth, never the active segment.
    var compacted = false
    /// The format version of the segment's layout.
    var version = RecordFormat.version
    /// Where the block map starts; records lie below it. 0: no map.
    var mapOffset: UInt32 = 0

    static let flagCompacted: UInt16 = 1

    func encode(to p: UnsafeMutableRawPointer) {
        p.storeBytes(of: RecordFormat.segmentMagic, as: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8).self)
        p.storeLE(version, at: 8)
        p.storeLE(compacted ? SegmentHeader.flagCompacted : 0, at: 10)
        p.storeLE(segmentID, at: 12)
        p.storeLE(baseSeq, at: 16)
        p.storeLE(createdMilliseconds, at: 24)
        p.storeLE(mapOffset, at: 32)
        p.storeLE(CRC32C.checksum(UnsafeRawPointer(p), 36), at: 36)
    }

    /// The header's stored CRC-32C (the index's segment table keeps it, to know the segment is the same file).
    var checksum: UInt32 { encoded().withUnsafeBytes { $0.baseAddress!.loadLE(at: 36, as: UInt32.self) } }

    func encoded() -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: RecordFormat.segmentHeaderSize) { buffer, count in
            encode(to: UnsafeMutableRawPointer(buffer.baseAddress!))
            count = RecordFormat.segmentHeaderSize
        }
    }

    enum DecodeError: Error, Equatable {
        case tooShort
        case badMagic
        case unsupportedVersion(UInt16)
        case badChecksum
        case wrongSegmentID(UInt32)
        case unknownFlags(UInt16)
        case badMapOffset(UInt32)
    }

    static func decode(_ p: UnsafeRawPointer, available: Int, expectedID: UInt32) -> Result<SegmentHeader, DecodeError> {
        if available < RecordFormat.segmentHeaderSize { return .failure(.tooShort) }
        let magic = p.loadUnaligned(as: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8).self)
        if !equalMagic(magic, RecordFormat.segmentMagic) { return .failure(.badMagic) }
        if CRC32C.checksum(p, 36) != p.loadLE(at: 36, as: UInt32.self) { return .failure(.badChecksum) }
        let version = p.loadLE(at: 8, as: UInt16.self)
        if !RecordFormat.readableSegmentVersions.contains(version) { return .failure(.unsupportedVersion(version)) }
        let id = p.loadLE(at: 12, as: UInt32.self)
        if id != expectedID { return .failure(.wrongSegmentID(id)) }
        let flags = p.loadLE(at: 10, as: UInt16.self)
        if flags & ~SegmentHeader.flagCompacted != 0 { return .failure(.unknownFlags(flags)) }
        let mapOffset = p.loadLE(at: 32, as: UInt32.self)
        let compacted = flags & SegmentHeader.flagCompacted != 0
        // A map sits on a block boundary past the header, only in version 2, never in compaction's output.
        if mapOffset != 0 && (version < 2 || compacted || Int(mapOffset) % BlockMap.blockSize != 0) {
            return .failure(.badMapOffset(mapOffset))
        }
        return .success(SegmentHeader(
            segmentID: id, baseSeq: p.loadLE(at: 16, as: UInt64.self),
            createdMilliseconds: p.loadLE(at: 24, as: UInt64.self),
            compacted: compacted, version: version, mapOffset: mapOffset))
    }
}

typealias Magic = (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8)

func equalMagic(_ a: Magic, _ b: Magic) -> Bool {
    a.0 == b.0 && a.1 == b.1 && a.2 == b.2 && a.3 == b.3 && a.4 == b.4 && a.5 == b.5 && a.6 == b.6 && a.7 == b.7
}
