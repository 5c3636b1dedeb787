// Hint files (see man/kvfile.5, "Hint files"): the keys, sizes and sequence
// numbers of a sealed segment, without values, so that open can rebuild the
// index without reading values. Layout:
//
//   0  magic          8 bytes "kvfileH\n"
//   8  version        u16 LE (1)
//  10  flags          u16 LE (0)
//  12  segment        u32 LE, the segment this file describes
//  16  segment length u64 LE, exact size of the sealed segment file
//  24  entry count    u32 LE
//  28  reserved       u32 LE (0)
//  32  entries, one per record in file order:
//        op u8 (1 created, 2 updated, 3 deleted), seq uvarint, size uvarint,
//        keylen uvarint, key bytes
//      the first record starts at offset 40; each next one where the previous ends
//  end-4  crc32c u32 LE over every byte before it

/// Collects hint entries while a segment is written, then writes the hint file when it is sealed.
///
/// The writer's builder for its active segment keeps only record sizes (a byte
/// or two each, for the block map and the closed list): the hint file is made
/// by reading the segment when it is sealed, so memory does not grow with the keys.
final class HintBuilder {
    private let entries = GrowableBuffer(capacity: 1 << 14)
    private(set) var entryCount = 0
    /// False for a builder that keeps sizes only (uvarints in `entries`).
    let keepsEntries: Bool

    @inline(__always)
    func add(operation: ChangeKind, seq: UInt64, size: Int, key: UnsafeRawBufferPointer) {
        entryCount += 1
        guard keepsEntries else { return entries.appendVarint(UInt64(size)) }
        entries.appendByte(operation.rawValue)
        entries.appendVarint(seq)
        entries.appendVarint(UInt64(size))
        entries.appendVarint(UInt64(key.count))
        entries.append(key)
    }

    /// Records before this offset have no entry here: a writer reopened the
    /// segment through the index without reading them.
    private(set) var coveredFrom = RecordFormat.segmentHeaderSize
    /// What a closed segment's list says of the records before `coveredFrom`.
    struct PriorRecords {
        /// Their sizes as uvarints (the list without its marker).
        var sizes: [UInt8]
        /// The first record start in each block records start in.
        var firstStartsInBlocks: [UInt32]
    }
    /// Their sizes as uvarints, when the closed list gave them.
    private var priorSizes: [UInt8]?
    private var priorFirstStarts: [UInt32] = []

    init(keepsEntries: Bool = true) {
        self.keepsEntries = keepsEntries
    }

    /// A builder of sizes for records appended after `offset`; `prior` says
    /// what a closed list says of the records before it, when known.
    init(resumingAt offset: Int, prior: PriorRecords?) {
        keepsEntries = false
        coveredFrom = offset
        if offset > RecordFormat.segmentHeaderSize, let prior {
            priorSizes = prior.sizes
            priorFirstStarts = prior.firstStartsInBlocks
        }
    }

    /// True when every record of the segment has an entry.
    var isComplete: Bool { coveredFrom == RecordFormat.segmentHeaderSize }
    /// True when the offset and size of every record are known.
    var sizesKnown: Bool { isComplete || priorSizes != nil }

    /// Calls `body` with the offset and size of each record of a builder that
    /// keeps entries (one that keeps sizes only is walked by the callers below).
    private func forEachRecord(_ body: (_ offset: Int, _ size: Int) -> Void) {
        var offset = coveredFrom
        let p = UnsafeRawPointer(entries.base)
        var position = 0
        for _ in 0..<entryCount {
            position += 1  // op
            var fields: (UInt64, UInt64, UInt64) = (0, 0, 0)
            for index in 0..<3 {
                guard case .value(let v, let length) = Varint.read(p + position, available: entries.count - position) else { return }
                position += length
                if index == 0 { fields.0 = v } else if index == 1 { fields.1 = v } else { fields.2 = v }
            }
            body(offset, Int(fields.1))
            offset += Int(fields.1)
            position += Int(fields.2)
        }
    }

    /// Calls `body` with record starts in order, among them the first in each
    /// block (what the open map's entries name; the writer keeps the first it
    /// is given per block): of all records when `sizesKnown`, else of those
    /// after `coveredFrom`. Those before a resumed writer's come from its
    /// closed list, read once when it opened.
    func forEachFirstStartInBlocks(_ body: (_ offset: Int) -> Void) {
        guard !keepsEntries else { return forEachRecord { offset, _ in body(offset) } }
        for start in priorFirstStarts { body(Int(start)) }
        _ = Varint.walkFirstStartsInBlocks(UnsafeRawPointer(entries.base), count: entries.count, from: coveredFrom, limit: Int.max,
                                           blockShift: BlockMap.blockShift, body)
    }

    /// Appends the size of each record as a uvarint (the closed layout's
    /// list), when `sizesKnown`: a builder of sizes only copies its bytes.
    /// About how many bytes ``appendSizes(to:)`` appends (exact for a builder of sizes).
    var sizesByteCount: Int {
        keepsEntries ? 2 * entryCount : (priorSizes?.count ?? 0) + entries.count
    }

    func appendSizes(to list: GrowableBuffer) {
        precondition(sizesKnown, "the closed list needs the size of every record")
        guard !keepsEntries else { return forEachRecord { _, size in list.appendVarint(UInt64(size)) } }
        priorSizes?.withUnsafeBytes { list.append($0) }
        list.append(UnsafeRawBufferPointer(start: entries.base, count: entries.count))
    }

    /// A builder with an entry for every record of `segment` (whose records
    /// are whole): this one when it has them, else one made by reading the segment.
    func completed(scanning segment: Segment) throws(KVFileError) -> HintBuilder {
        if isComplete && keepsEntries { return self }
        return try HintBuilder.reading(segment, keepsEntries: true)
    }

    /// A builder with the size of every record of `segment` (whose records are
    /// whole; what a closed list needs): this one when it knows them, else one
    /// made by reading the segment, without keeping keys.
    func withAllSizes(scanning segment: Segment) throws(KVFileError) -> HintBuilder {
        if sizesKnown { return self }
        return try HintBuilder.reading(segment, keepsEntries: false)
    }

    private static func reading(_ segment: Segment, keepsEntries: Bool) throws(KVFileError) -> HintBuilder {
        let full = HintBuilder(keepsEntries: keepsEntries)
        let end = try SegmentScanner.scan(
            UnsafeRawBufferPointer(start: segment.base + RecordFormat.segmentHeaderSize, count: segment.length - RecordFormat.segmentHeaderSize),
            baseOffset: RecordFormat.segmentHeaderSize, rule: .notJudged) { (_, header, record) throws(KVFileError) in
            full.add(operation: header.operation, seq: header.seq, size: header.totalLength,
                     key: UnsafeRawBufferPointer(start: record + header.keyOffset, count: header.keyLength))
        }
        guard case .clean(let at) = end, at == segment.length else {
            throw KVFileError.corrupt(segment.path, offset: RecordFormat.segmentHeaderSize, "the segment's records do not read back whole to \(segment.length) bytes")
        }
        return full
    }

    /// The complete hint file for segment `segmentID` whose file is `segmentLength` bytes.
    func fileBytes(segmentID: UInt32, segmentLength: Int) -> [UInt8] {
        precondition(keepsEntries && isComplete, "a hint file needs an entry for every record")
        let total = RecordFormat.hintHeaderSize + entries.count + 4
        return [UInt8](unsafeUninitializedCapacity: total) { buffer, count in
            let p = UnsafeMutableRawPointer(buffer.baseAddress!)
            p.storeBytes(of: RecordFormat.hintMagic, as: Magic.self)
            p.storeLE(RecordFormat.hintVersion, at: 8)
            p.storeLE(UInt16(0), at: 10)
            p.storeLE(segmentID, at: 12)
            p.storeLE(UInt64(segmentLength), at: 16)
            p.storeLE(UInt32(entryCount), at: 24)
            p.storeLE(UInt32(0), at: 28)
            if entries.count > 0 {
                (p + RecordFormat.hintHeaderSize).copyMemory(from: entries.base, byteCount: entries.count)
            }
            p.storeLE(CRC32C.checksum(UnsafeRawPointer(p), total - 4), at: total - 4)
            count = total
        }
    }
}

/// One entry of a hint file, with its record's offset worked out.
struct HintEntry {
    var operation: ChangeKind
    var seq: UInt64
    var offset: Int
    var size: Int
    var key: UnsafeRawBufferPointer
}

enum HintFileReader {
    /// The segment size an intact hint file (magic, checksum, version and
    /// segment number good) records, or nil when the file is not intact.
    /// An intact hint file that disagrees with its segment's size means the
    /// segment changed after it was sealed: damage, not a stale hint.
    static func intactRecordedLength(_ bytes: UnsafeRawBufferPointer, segmentID: UInt32) -> Int? {
        let count = bytes.count
        guard count >= RecordFormat.hintHeaderSize + 4, let p = bytes.baseAddress,
              equalMagic(p.loadUnaligned(as: Magic.self), RecordFormat.hintMagic),
              CRC32C.checksum(p, count - 4) == p.loadLE(at: count - 4, as: UInt32.self),
              p.loadLE(at: 8, as: UInt16.self) == RecordFormat.hintVersion,
              p.loadLE(at: 12, as: UInt32.self) == segmentID
        else { return nil }
        let length = p.loadLE(at: 16, as: UInt64.self)
        return length <= UInt64(Int.max) ? Int(length) : nil
    }

    /// Validates a whole hint file and calls `body` for each entry in order.
    /// Returns a reason string when the file cannot be trusted (the caller then scans the segment).
    static func read(
        _ bytes: UnsafeRawBufferPointer, segmentID: UInt32, segmentLength: Int,
        _ body: (HintEntry) throws(KVFileError) -> Void
    ) throws(KVFileError) -> String? {
        let count = bytes.count
        guard count >= RecordFormat.hintHeaderSize + 4, let p = bytes.baseAddress else { return "too short" }
        if !equalMagic(p.loadUnaligned(as: Magic.self), RecordFormat.hintMagic) { return "bad magic" }
        if CRC32C.checksum(p, count - 4) != p.loadLE(at: count - 4, as: UInt32.self) { return "checksum mismatch" }
        if p.loadLE(at: 8, as: UInt16.self) != RecordFormat.hintVersion { return "unsupported version" }
        if p.loadLE(at: 12, as: UInt32.self) != segmentID { return "describes another segment" }
        if p.loadLE(at: 16, as: UInt64.self) != UInt64(segmentLength) {
            return "segment length \(p.loadLE(at: 16, as: UInt64.self)) differs from the file's \(segmentLength) bytes"
        }
        let entryCount = Int(p.loadLE(at: 24, as: UInt32.self))
        var position = RecordFormat.hintHeaderSize
        let end = count - 4
        var offset = RecordFormat.segmentHeaderSize
        for _ in 0..<entryCount {
            guard position < end, let op = ChangeKind(rawValue: p.load(fromByteOffset: position, as: UInt8.self)) else {
                return "bad entry at byte \(position)"
            }
            position += 1
            var fields: (UInt64, UInt64, UInt64) = (0, 0, 0)
            for index in 0..<3 {
                guard case .value(let v, let length) = Varint.read(p + position, available: end - position) else {
                    return "bad varint at byte \(position)"
                }
                position += length
                if index == 0 { fields.0 = v } else if index == 1 { fields.1 = v } else { fields.2 = v }
            }
            let (seq, size, keyLength) = fields
            guard seq > 0, seq <= RecordFormat.maxSeq, keyLength > 0, keyLength <= UInt64(RecordFormat.maxKeyLength),
                  size > keyLength, size <= UInt64(segmentLength), Int(keyLength) <= end - position
            else { return "bad entry at byte \(position)" }
            let key = UnsafeRawBufferPointer(start: p + position, count: Int(keyLength))
            position += Int(keyLength)
            guard offset + Int(size) <= segmentLength else { return "entry past the end of the segment" }
            try body(HintEntry(operation: op, seq: seq, offset: offset, size: Int(size), key: key))
            offset += Int(size)
        }
        if position != end { return "trailing bytes after the last entry" }
        if offset != segmentLength { return "entries cover \(offset) of \(segmentLength) segment bytes" }
        return nil
    }
}

/// Writes hint files atomically: a temporary file, synced, then renamed.
enum HintWriter {
    /// Writes the hint file and returns its size. The caller syncs the directory.
    /// With `rename: false` it stays under its temporary name (compaction renames it later).
    static func write(_ hints: HintBuilder, segmentID: UInt32, segmentLength: Int, directory: String, rename: Bool = true) throws(KVFileError) -> Int {
        let bytes = hints.fileBytes(segmentID: segmentID, segmentLength: segmentLength)
        try AtomicFile.write(bytes, to: StoreFiles(directory).hint(segmentID), rename: rename, syncDirectory: nil)
        return bytes.count
    }
}
