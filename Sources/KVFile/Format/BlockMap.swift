// The block map of an active version-2 segment (see man/kvfile.5, "Block map"):
// one u32 entry per 4096-byte block of the record area, kept in the same
// file past the area records may fill (at the header's map offset), saying
// where the first record that starts in that block starts.
//
//   entry = check << 16 | (start - blockStart + 1)      (0: no record starts here, or not known)
//   check = high 16 bits of CRC-32C(segment u32 LE, block u32 LE, start - blockStart + 1 as u32 LE)
//
// After the entries, a 16-byte watermark: u64 end, u32 CRC-32C(segment u32 LE,
// end u64 LE), u32 0. Records below `end` were all whole on stable storage
// when it was written (a writer stores it before a sync, naming what the
// previous sync covered, and at close what that last sync covers).
//
// A writer closing the store cuts the file after its records and writes
// there a list: 5 marker bytes ff ff ff ff f0 (their kind byte has reserved
// bits set, so the list never reads as a record), then the size of every
// record (one uvarint each, in file order); then a 24-byte closing trailer:
// "kvfileM\n", u32 records end, u32 bytes of the list, u32 CRC-32C of the
// list, u32 CRC-32C(segment u32 LE, the 20 bytes before it). A reader
// believes the trailer only where the records really end (the scan stops
// at the marker) and when the list checks out. A writer closes the active
// segment so; a later segment may exist if the next writer crashed early.
//
// Only the writer writes entries, and only where it puts a record, so bytes
// inside values are never taken for a record start: recovery and salvage
// look for records after damage only where the map says one begins.

enum BlockMap {
    /// The size of a block, and the alignment of the map.
    static let blockSize = 1 << blockShift
    static let blockShift = 12
    /// Bytes per map entry.
    static let entrySize = 4

    /// Where the map of a segment whose records may fill `capacity` bytes starts.
    static func offset(forCapacity capacity: Int) -> Int {
        (max(capacity, RecordFormat.segmentHeaderSize) + blockSize - 1) / blockSize * blockSize
    }

    /// Bytes of the entries of a map that starts at `mapOffset` (one per block before it).
    static func size(mapOffset: Int) -> Int { mapOffset / blockSize * entrySize }

    /// Bytes of the watermark after the entries.
    static let watermarkSize = 16

    /// Where the map region (entries, then the watermark) of a map at `mapOffset` ends.
    static func regionEnd(mapOffset: Int) -> Int { mapOffset + size(mapOffset: mapOffset) + watermarkSize }

    /// "kvfileM\n": the closing trailer's magic.
    static let trailerMagic: Magic = (0x6B, 0x76, 0x66, 0x69, 0x6C, 0x65, 0x4D, 0x0A)
    /// Bytes of the closing trailer.
    static let trailerSize = 24

    /// The first bytes of the list of sizes: they cannot start a record.
    static let listMarker: [UInt8] = [0xFF, 0xFF, 0xFF, 0xFF, 0xF0]

    /// What a sound closing trailer says.
    struct Closed: Equatable {
        /// Where the records end (and the list of their sizes starts).
        var recordsEnd: Int
        /// Bytes of the list of record sizes (one uvarint per record, in file order).
        var listBytes: Int
        /// CRC-32C of the list.
        var listCRC: UInt32

        /// The record starts its list names in `file` (the whole file), when the list checks out.
        func recordStarts(in file: UnsafeRawBufferPointer) -> [Int]? {
            guard recordsEnd + listBytes <= file.count else { return nil }
            return BlockMap.recordStarts(list: UnsafeRawBufferPointer(rebasing: file[recordsEnd..<(recordsEnd + listBytes)]), closed: self)
        }
    }

    /// The closing trailer for `closed`, for segment `segmentID`.
    static func trailer(_ closed: Closed, segmentID: UInt32) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: trailerSize)
        bytes.withUnsafeMutableBytes { raw in
            let p = raw.baseAddress!
            p.storeBytes(of: trailerMagic, as: Magic.self)
            p.storeLE(UInt32(closed.recordsEnd), at: 8)
            p.storeLE(UInt32(closed.listBytes), at: 12)
            p.storeLE(closed.listCRC, at: 16)
            p.storeLE(trailerCheck(UnsafeRawPointer(p), segmentID: segmentID), at: 20)
        }
        return bytes
    }

    /// What the closing trailer `trailer` (a file's last 24 bytes) says, when
    /// it is sound and fits a file of `fileSize` bytes; else nil.
    static func closed(trailer: UnsafeRawBufferPointer, segmentID: UInt32, fileSize: Int) -> Closed? {
        guard trailer.count == trailerSize, let p = trailer.baseAddress, equalMagic(p.loadUnaligned(as: Magic.self), trailerMagic),
              p.loadLE(at: 20, as: UInt32.self) == trailerCheck(p, segmentID: segmentID) else { return nil }
        let closed = Closed(recordsEnd: Int(p.loadLE(at: 8, as: UInt32.self)), listBytes: Int(p.loadLE(at: 12, as: UInt32.self)),
                            listCRC: p.loadLE(at: 16, as: UInt32.self))
        guard closed.recordsEnd >= RecordFormat.segmentHeaderSize, closed.recordsEnd + closed.listBytes + trailerSize == fileSize else { return nil }
        return closed
    }

    /// The record starts a list of sizes names, when it matches its checksum and the records' end.
    static func recordStarts(list: UnsafeRawBufferPointer, closed: Closed) -> [Int]? {
        var starts: [Int] = []
        return forEachRecordStart(list: list, closed: closed) { starts.append($0) } ? starts : nil
    }

    /// Calls `body` with each record start the list names; false (after
    /// calling it for some) when the list does not match its checksum and the records' end.
    static func forEachRecordStart(list: UnsafeRawBufferPointer, closed: Closed, _ body: (Int) -> Void) -> Bool {
        guard let sizes = sizes(of: list, closed: closed) else { return false }
        let end = Varint.walkSizes(sizes.baseAddress!, count: sizes.count, from: RecordFormat.segmentHeaderSize, limit: closed.recordsEnd, body)
        return end == closed.recordsEnd
    }

    /// True when the list matches its checksum and its sizes add up to the records' end.
    static func listIsSound(_ list: UnsafeRawBufferPointer, closed: Closed) -> Bool {
        firstStartsInBlocks(list: list, closed: closed, { _ in })
    }

    /// The first record start in each block that records start in (what the
    /// open map's entries name), when the list is sound (see ``listIsSound(_:closed:)``).
    static func firstStartsInBlocks(list: UnsafeRawBufferPointer, closed: Closed) -> [UInt32]? {
        var starts: [UInt32] = []
        starts.reserveCapacity(closed.recordsEnd / blockSize + 1)
        return firstStartsInBlocks(list: list, closed: closed) { starts.append(UInt32($0)) } ? starts : nil
    }

    private static func firstStartsInBlocks(list: UnsafeRawBufferPointer, closed: Closed, _ body: (Int) -> Void) -> Bool {
        guard let sizes = sizes(of: list, closed: closed) else { return false }
        let end = Varint.walkFirstStartsInBlocks(sizes.baseAddress!, count: sizes.count, from: RecordFormat.segmentHeaderSize,
                                                 limit: closed.recordsEnd, blockShift: blockShift, body)
        return end == closed.recordsEnd
    }

    /// The sizes of a list that has its marker and matches its checksum.
    private static func sizes(of list: UnsafeRawBufferPointer, closed: Closed) -> UnsafeRawBufferPointer? {
        guard list.count == closed.listBytes, list.count >= listMarker.count, let p = list.baseAddress,
              list.prefix(listMarker.count).elementsEqual(listMarker),
              CRC32C.checksum(p, list.count) == closed.listCRC else { return nil }
        return UnsafeRawBufferPointer(start: p + listMarker.count, count: list.count - listMarker.count)
    }

    private static func trailerCheck(_ p: UnsafeRawPointer, segmentID: UInt32) -> UInt32 {
        var bytes: (UInt64, UInt64, UInt64) = (0, 0, 0)
        return withUnsafeMutableBytes(of: &bytes) { raw -> UInt32 in
            raw.baseAddress!.storeLE(segmentID, at: 0)
            raw.baseAddress!.advanced(by: 4).copyMemory(from: p, byteCount: 20)
            return CRC32C.checksum(UnsafeRawPointer(raw.baseAddress!), 24)
        }
    }

    /// The watermark's bytes for `end`.
    static func watermark(segmentID: UInt32, end: Int) -> (UInt64, UInt32) {
        var bytes: (UInt64, UInt64) = (0, 0)  // 12 bytes used: segment u32, end u64
        let crc = withUnsafeMutableBytes(of: &bytes) { raw -> UInt32 in
            raw.baseAddress!.storeLE(segmentID, at: 0)
            raw.baseAddress!.storeLE(UInt64(end), at: 4)
            return CRC32C.checksum(UnsafeRawPointer(raw.baseAddress!), 12)
        }
        return (UInt64(end), crc)
    }

    /// The end a stored watermark names, or nil when there is none or it fails its check.
    static func watermarkEnd(_ p: UnsafeRawPointer, segmentID: UInt32) -> Int? {
        let end = p.loadLE(at: 0, as: UInt64.self)
        guard end >= UInt64(RecordFormat.segmentHeaderSize), end <= UInt64(UInt32.max),
              p.loadLE(at: 8, as: UInt32.self) == watermark(segmentID: segmentID, end: Int(end)).1 else { return nil }
        return Int(end)
    }

    /// The entry of block `block` for a record starting at `start` (in that block).
    static func entry(segmentID: UInt32, block: Int, start: Int) -> UInt32 {
        let low = UInt32(start - block * blockSize + 1)
        return check(segmentID: segmentID, block: block, low: low) << 16 | low
    }

    /// The record start an entry names, or nil when it names none or fails its check.
    static func recordStart(_ entry: UInt32, segmentID: UInt32, block: Int) -> Int? {
        let low = entry & 0xFFFF
        guard low >= 1, low <= UInt32(blockSize), entry >> 16 == check(segmentID: segmentID, block: block, low: low) else { return nil }
        return block * blockSize + Int(low) - 1
    }

    private static func check(segmentID: UInt32, block: Int, low: UInt32) -> UInt32 {
        var bytes: (UInt32, UInt32, UInt32) = (segmentID.littleEndian, UInt32(truncatingIfNeeded: block).littleEndian, low.littleEndian)
        return withUnsafeBytes(of: &bytes) { CRC32C.checksum($0.baseAddress!, 12) } >> 16
    }
}
