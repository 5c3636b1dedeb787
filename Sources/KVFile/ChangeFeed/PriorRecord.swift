/// A change event's old value, read from the record that the event's record
/// names as its prior (kvfile(5), "Change events"): no index of every key is
/// needed to know it. Read with pread, not through the mapping: the prior may
/// lie in a segment whose seal is cutting the file (a page past the new end
/// would fault), and a damaged prior may name any offset.
enum PriorRecord {
    /// The value of the record at `prior` in `segment` when that record is the
    /// key's record before one with sequence number `seq`: a whole record with
    /// a matching checksum, a put of `key`, with a smaller sequence number.
    /// Nil when it is not (the segment is gone, or the bytes there are another
    /// record or none): the caller learns the old value another way.
    static func value(at prior: PriorLocation, in segment: Segment?, key: [UInt8], before seq: UInt64) -> [UInt8]? {
        guard let segment, let fileSize = try? Syscalls.fileSize(segment.fd, path: segment.path) else { return nil }
        let offset = Int(prior.offset)
        var bytes = read(segment, at: offset, count: RecordFormat.maxRecordHeaderSize + key.count)
        // A length the file cannot hold is not read (a damaged prior may name any bytes).
        guard let total = bytes.withUnsafeBytes({ RecordCodec.declaredLength($0) }), total <= fileSize - offset else { return nil }
        if total > bytes.count { bytes = read(segment, at: offset, count: total) }
        return bytes.withUnsafeBytes { raw -> [UInt8]? in
            guard let p = raw.baseAddress, case .record(let header) = RecordCodec.decode(p, available: raw.count),
                  header.operation != .deleted, header.seq < seq, header.keyLength == key.count,
                  key.withUnsafeBytes({ KeyEquality.equal(p + header.keyOffset, $0.baseAddress!, count: key.count) })
            else { return nil }
            return RecordReader.value(ofRecordAt: p, header: header)
        }
    }

    /// Up to `count` bytes of the segment file at `offset` (fewer at its end; none on an error).
    private static func read(_ segment: Segment, at offset: Int, count: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        let n = (try? withMutableBytes(&bytes) { (buffer) throws(KVFileError) in
            try Syscalls.preadFully(segment.fd, buffer, at: offset, path: segment.path)
        }) ?? 0
        bytes.removeLast(count - n)
        return bytes
    }
}
