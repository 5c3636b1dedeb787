// Encodes and decodes one record. Layout (see man/kvfile.5, "Records"):
//
//   crc32c   u32 LE   over every byte of the record after this field
//   kind     u8       bits 0-1 operation, bit 2 LZ4, bit 3 batch continues,
//                     bit 4 deadline follows (puts), bit 5 expiry (deletes),
//                     bit 6 prior follows (updates, deletes), bit 7 zero
//   seq      uvarint  store-wide sequence number, 1 ... 2^51 - 1
//   ts       uvarint  milliseconds since the Unix epoch
//   deadline uvarint  only with bit 4: milliseconds since the Unix epoch, ≥ 1
//   prior    2 uvarints only with bit 6: segment number and offset of the key's record before this one
//   keylen   uvarint  1...4096
//   stored   uvarint  bytes of value as stored (0 for a delete)
//   raw      uvarint  only when LZ4 is set: bytes after decompression
//   key, stored value bytes

/// The decoded fixed part of a record.
struct RecordHeader: Equatable {
    var operation: ChangeKind
    var compressed: Bool
    /// More records of the same atomic batch follow this one.
    var continues: Bool
    var seq: UInt64
    var timestamp: UInt64
    /// When the value expires, in milliseconds since the Unix epoch; 0: never.
    var deadline: UInt64 = 0
    /// A delete that records an expiry (the writer noticed the deadline pass).
    var expired = false
    /// Where the key's record before this one was when this one was written
    /// (updates and deletes of version-4 writers; the change feed's old value).
    var prior: PriorLocation?
    var keyLength: Int
    var storedLength: Int
    var rawLength: Int
    /// Bytes from the record start to the first key byte.
    var headerLength: Int

    /// True when the value has a deadline at or before `now` (ms since the epoch).
    @inline(__always)
    func isExpired(at now: UInt64) -> Bool { deadline != 0 && deadline <= now }

    var totalLength: Int { headerLength + keyLength + storedLength }
    var keyOffset: Int { headerLength }
    var valueOffset: Int { headerLength + keyLength }
}

/// Where a key's previous record lies: a segment number and an offset in it.
struct PriorLocation: Equatable {
    var segment: UInt32
    var offset: UInt32
}

enum RecordDecodeResult {
    case record(RecordHeader)
    /// The record would run past the bytes available: a torn tail, or not yet written.
    case incomplete
    /// The bytes cannot be a record (bad field or checksum); the string says which.
    case invalid(String)
}

enum RecordCodec {
    /// Decodes and checksums the record at `p`, reading at most `available` bytes.
    @inline(__always)
    static func decode(_ p: UnsafeRawPointer, available: Int) -> RecordDecodeResult {
        let parsed = parseHeader(p, available: available)
        if case .record(let header) = parsed, !checksumMatches(p, header) { return .invalid("checksum mismatch") }
        return parsed
    }

    /// True when the record's stored CRC-32C matches its bytes.
    @inline(__always)
    static func checksumMatches(_ p: UnsafeRawPointer, _ header: RecordHeader) -> Bool {
        CRC32C.checksum(p + 4, header.totalLength - 4) == p.loadLE(at: 0, as: UInt32.self)
    }

    /// The header of the record at `p` without checking the record's checksum
    /// (an index probe compares keys this way), or nil when the bytes cannot
    /// start a record that fits in `available`.
    @inline(__always)
    static func peek(_ p: UnsafeRawPointer, available: Int) -> RecordHeader? {
        if case .record(let header) = parseHeader(p, available: available) { return header }
        return nil
    }

    /// Every check of a record but its checksum.
    @inline(__always)
    private static func parseHeader(_ p: UnsafeRawPointer, available: Int) -> RecordDecodeResult {
        if available < 5 { return .incomplete }
        let kind = p.load(fromByteOffset: 4, as: UInt8.self)
        if kind & RecordFormat.reservedKindBits != 0 { return .invalid("reserved bits set in record kind byte") }
        guard let operation = ChangeKind(rawValue: kind & RecordFormat.opMask) else {
            return .invalid("record kind byte has no operation")
        }
        let compressed = kind & RecordFormat.flagLZ4 != 0
        if compressed && operation == .deleted { return .invalid("delete record flagged as compressed") }
        let hasDeadline = kind & RecordFormat.flagDeadline != 0
        let expired = kind & RecordFormat.flagExpired != 0
        if hasDeadline && operation == .deleted { return .invalid("delete record carries a deadline") }
        if expired && operation != .deleted { return .invalid("expiry flag on a record that is not a delete") }
        let hasPrior = kind & RecordFormat.flagPrior != 0
        if hasPrior && operation == .created { return .invalid("a created record names a prior record") }

        var position = 5
        var field: UInt64 = 0
        // Reads the next varint into `field`; nil when the record cannot be one (the result says why).
        @inline(__always)
        func next() -> RecordDecodeResult? {
            switch Varint.read(p + position, available: available - position) {
            case .truncated: return .incomplete
            case .overlong: return .invalid("malformed varint in record header")
            case .value(let v, let length):
                position += length
                field = v
                return nil
            }
        }
        if let failed = next() { return failed }
        let seq = field
        if let failed = next() { return failed }
        let timestamp = field
        var deadline: UInt64 = 0
        if hasDeadline {
            if let failed = next() { return failed }
            deadline = field
        }
        var priorSegment: UInt64 = 0, priorOffset: UInt64 = 0
        if hasPrior {
            if let failed = next() { return failed }
            priorSegment = field
            if let failed = next() { return failed }
            priorOffset = field
        }
        if let failed = next() { return failed }
        let keyLength = field
        if let failed = next() { return failed }
        let storedLength = field
        if compressed {
            if let failed = next() { return failed }
        }
        if hasDeadline && deadline == 0 { return .invalid("deadline 0 in a record flagged with one") }
        var prior: PriorLocation?
        if hasPrior {
            if priorSegment > UInt64(UInt32.max) || priorOffset < UInt64(RecordFormat.segmentHeaderSize) || priorOffset > UInt64(UInt32.max) {
                return .invalid("prior record location \(priorSegment):\(priorOffset) out of range")
            }
            prior = PriorLocation(segment: UInt32(priorSegment), offset: UInt32(priorOffset))
        }
        if seq == 0 || seq > RecordFormat.maxSeq { return .invalid("sequence number \(seq) out of range") }
        if keyLength == 0 || keyLength > UInt64(RecordFormat.maxKeyLength) { return .invalid("key length \(keyLength) out of range") }
        if operation == .deleted && storedLength != 0 { return .invalid("delete record carries a value") }
        if storedLength > UInt64(RecordFormat.maxValueLength) + 1024 { return .invalid("value length \(storedLength) out of range") }
        let rawLength = compressed ? field : storedLength
        if rawLength > UInt64(RecordFormat.maxValueLength) { return .invalid("value length \(rawLength) out of range") }
        if compressed && (rawLength == 0 || storedLength == 0) { return .invalid("empty compressed value") }

        let header = RecordHeader(
            operation: operation, compressed: compressed,
            continues: kind & RecordFormat.flagContinued != 0,
            seq: seq, timestamp: timestamp, deadline: deadline, expired: expired, prior: prior,
            keyLength: Int(keyLength), storedLength: Int(storedLength), rawLength: Int(rawLength),
            headerLength: position)
        let total = header.totalLength
        if total > available { return .incomplete }
        return .record(header)
    }

    /// The total length the record at the start of `bytes` declares, read
    /// from its header alone (nothing is checksummed), or nil when the header
    /// is not there or cannot be one.
    static func declaredLength(_ bytes: UnsafeRawBufferPointer) -> Int? {
        guard bytes.count >= 5, let p = bytes.baseAddress else { return nil }
        let kind = p.load(fromByteOffset: 4, as: UInt8.self)
        guard kind & RecordFormat.reservedKindBits == 0, kind & RecordFormat.opMask != 0 else { return nil }
        var position = 5
        // seq, ts, the deadline and the prior are passed over; keylen and stored read; raw passed over.
        let skipped = 2 + (kind & RecordFormat.flagDeadline != 0 ? 1 : 0) + (kind & RecordFormat.flagPrior != 0 ? 2 : 0)
        for _ in 0..<skipped {
            guard case .value(_, let length) = Varint.read(p + position, available: bytes.count - position) else { return nil }
            position += length
        }
        guard case .value(let keyLength, let keyField) = Varint.read(p + position, available: bytes.count - position) else { return nil }
        position += keyField
        guard case .value(let storedLength, let storedField) = Varint.read(p + position, available: bytes.count - position) else { return nil }
        position += storedField
        if kind & RecordFormat.flagLZ4 != 0 {
            guard case .value(_, let length) = Varint.read(p + position, available: bytes.count - position) else { return nil }
            position += length
        }
        guard keyLength <= UInt64(RecordFormat.maxKeyLength), storedLength <= UInt64(RecordFormat.maxValueLength) + 1024 else { return nil }
        return position + Int(keyLength) + Int(storedLength)
    }

    /// The exact encoded size of a record with these lengths.
    static func encodedLength(seq: UInt64, timestamp: UInt64, deadline: UInt64 = 0, prior: PriorLocation? = nil,
                              keyLength: Int, storedLength: Int, rawLength: Int?) -> Int {
        var n = 5 + Varint.encodedLength(seq) + Varint.encodedLength(timestamp)
        if deadline != 0 { n += Varint.encodedLength(deadline) }
        if let prior { n += Varint.encodedLength(UInt64(prior.segment)) + Varint.encodedLength(UInt64(prior.offset)) }
        n += Varint.encodedLength(UInt64(keyLength)) + Varint.encodedLength(UInt64(storedLength))
        if let rawLength { n += Varint.encodedLength(UInt64(rawLength)) }
        return n + keyLength + storedLength
    }

    /// Writes a complete record at `p` (which must have room for `encodedLength`) and returns its length.
    /// `rawLength` is non-nil exactly when `stored` holds LZ4-compressed bytes;
    /// a `deadline` (puts) of 0 is none; `expired` marks a delete as an expiry;
    /// `prior` (updates and deletes only) is where the key's record before this one is.
    static func encode(
        to p: UnsafeMutableRawPointer, operation: ChangeKind, continues: Bool,
        seq: UInt64, timestamp: UInt64, deadline: UInt64 = 0, expired: Bool = false, prior: PriorLocation? = nil,
        key: UnsafeRawBufferPointer, stored: UnsafeRawBufferPointer, rawLength: Int?
    ) -> Int {
        precondition(prior == nil || operation != .created, "a created record has no prior record")
        var kind = operation.rawValue
        if rawLength != nil { kind |= RecordFormat.flagLZ4 }
        if continues { kind |= RecordFormat.flagContinued }
        if deadline != 0 { kind |= RecordFormat.flagDeadline }
        if expired { kind |= RecordFormat.flagExpired }
        if prior != nil { kind |= RecordFormat.flagPrior }
        p.storeBytes(of: kind, toByteOffset: 4, as: UInt8.self)
        var position = 5
        position += Varint.write(seq, to: p + position)
        position += Varint.write(timestamp, to: p + position)
        if deadline != 0 { position += Varint.write(deadline, to: p + position) }
        if let prior {
            position += Varint.write(UInt64(prior.segment), to: p + position)
            position += Varint.write(UInt64(prior.offset), to: p + position)
        }
        position += Varint.write(UInt64(key.count), to: p + position)
        position += Varint.write(UInt64(stored.count), to: p + position)
        if let rawLength { position += Varint.write(UInt64(rawLength), to: p + position) }
        if key.count > 0 { (p + position).copyMemory(from: key.baseAddress!, byteCount: key.count) }
        position += key.count
        if stored.count > 0 { (p + position).copyMemory(from: stored.baseAddress!, byteCount: stored.count) }
        position += stored.count
        p.storeLE(CRC32C.checksum(UnsafeRawPointer(p + 4), position - 4), at: 0)
        return position
    }
}
