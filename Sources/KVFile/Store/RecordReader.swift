/// Reads values back from mapped segments, checking each record's checksum
/// and key so that damage is reported and never returned as data.
enum RecordReader {
    static func value(at location: KeyLocation, key: UnsafeRawBufferPointer, in state: StoreState) throws(KVFileError) -> [UInt8] {
        guard let segment = state.segment(location.segment) else {
            throw KVFileError(.corrupt, "key \(KeyText.describe(key)) points into segment \(location.segment), which is not open", path: state.directory)
        }
        return try value(in: segment, offset: Int(location.offset), size: Int(location.size), key: key)
    }

    static func value(in segment: Segment, offset: Int, size: Int, key: UnsafeRawBufferPointer) throws(KVFileError) -> [UInt8] {
        let header = try checkedHeader(in: segment, offset: offset, size: size, key: key)
        guard let value = value(ofRecordAt: segment.base + offset, header: header) else {
            throw KVFileError.corrupt(segment.path, offset: offset, "compressed value does not decompress")
        }
        return value
    }

    /// The value of the record at `p` with `header`, decompressed; nil when its LZ4 block does not decompress.
    static func value(ofRecordAt p: UnsafeRawPointer, header: RecordHeader) -> [UInt8]? {
        let stored = p + header.valueOffset
        guard header.compressed else { return Array(UnsafeRawBufferPointer(start: stored, count: header.storedLength)) }
        var ok = true
        let value = [UInt8](unsafeUninitializedCapacity: header.rawLength) { buffer, count in
            ok = LZ4Block.decompress(stored, count: header.storedLength, into: UnsafeMutableRawPointer(buffer.baseAddress!), rawLength: header.rawLength)
            count = ok ? header.rawLength : 0
        }
        return ok ? value : nil
    }

    static func withValue<R>(
        at location: KeyLocation, key: UnsafeRawBufferPointer, in state: StoreState,
        _ body: (UnsafeRawBufferPointer?) throws -> R
    ) throws -> R {
        guard let segment = state.segment(location.segment) else {
            throw KVFileError(.corrupt, "key \(KeyText.describe(key)) points into segment \(location.segment), which is not open", path: state.directory)
        }
        let offset = Int(location.offset)
        let header = try checkedHeader(in: segment, offset: offset, size: Int(location.size), key: key)
        let p = segment.base + offset + header.valueOffset
        if !header.compressed {
            return try body(UnsafeRawBufferPointer(start: p, count: header.storedLength))
        }
        if header.rawLength <= SmallValue.count {
            // On the stack: withUnsafeTemporaryAllocation would look up generic
            // metadata on every call from this unspecialized function.
            var scratch = SmallValue(repeating: 0)
            var mutable = scratch.mutableSpan
            return try mutable.withUnsafeMutableBytes { buffer throws -> R in
                try decompress(p, header: header, into: buffer.baseAddress!, segment: segment, offset: offset)
                return try body(UnsafeRawBufferPointer(start: buffer.baseAddress!, count: header.rawLength))
            }
        }
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: header.rawLength, alignment: 8)
        defer { buffer.deallocate() }
        try decompress(p, header: header, into: buffer, segment: segment, offset: offset)
        return try body(UnsafeRawBufferPointer(start: buffer, count: header.rawLength))
    }

    /// Values up to this size are decompressed into a stack buffer.
    private typealias SmallValue = InlineArray<512, UInt8>

    @inline(__always)
    private static func decompress(
        _ p: UnsafeRawPointer, header: RecordHeader, into buffer: UnsafeMutableRawPointer, segment: Segment, offset: Int
    ) throws(KVFileError) {
        guard LZ4Block.decompress(p, count: header.storedLength, into: buffer, rawLength: header.rawLength) else {
            throw KVFileError.corrupt(segment.path, offset: offset, "compressed value does not decompress")
        }
    }

    @inline(__always)
    private static func checkedHeader(in segment: Segment, offset: Int, size: Int, key: UnsafeRawBufferPointer) throws(KVFileError) -> RecordHeader {
        guard offset >= RecordFormat.segmentHeaderSize, offset + size <= segment.indexReadLimit else {
            throw KVFileError.corrupt(segment.path, offset: offset, "record lies past the end of the segment")
        }
        switch RecordCodec.decode(segment.base + offset, available: size) {
        case .record(let header):
            guard header.totalLength == size, header.keyLength == key.count,
                  KeyEquality.equal(segment.base + offset + header.keyOffset, key.baseAddress!, count: key.count)
            else { throw KVFileError.corrupt(segment.path, offset: offset, "record does not match the index") }
            return header
        case .incomplete:
            throw KVFileError.corrupt(segment.path, offset: offset, "record is cut short")
        case .invalid(let reason):
            throw KVFileError.corrupt(segment.path, offset: offset, reason)
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
