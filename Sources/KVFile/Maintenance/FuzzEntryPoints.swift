/// The decoders a coverage-guided fuzzer drives (`Sources/KVFileFuzz`,
/// `scripts/fuzz`). Each checks its own invariants and traps when one breaks:
/// a trap is a finding. Not API: `@_spi(Fuzzing) import KVFile`.
@_spi(Fuzzing)
public enum FuzzEntryPoints {
    /// Feeds `data` to the decoder its first byte picks.
    public static func run(_ data: UnsafeRawBufferPointer) {
        guard let selector = data.first else { return }
        let input = UnsafeRawBufferPointer(rebasing: data.dropFirst())
        switch selector % 4 {
        case 0: record(input)
        case 1: segment(input)
        case 2: hint(input)
        default: marker(input)
        }
    }

    /// A record either decodes to a header that fits in the input, or is refused.
    static func record(_ input: UnsafeRawBufferPointer) {
        guard let base = input.baseAddress else { return }
        if case .record(let header) = RecordCodec.decode(base, available: input.count) {
            precondition(header.totalLength <= input.count, "record longer than its input")
            precondition(header.keyLength >= 1 && header.keyLength <= RecordFormat.maxKeyLength, "key length out of range")
            precondition(header.keyOffset + header.keyLength <= header.totalLength, "key past the record")
            precondition(RecordCodec.declaredLength(input) == header.totalLength, "the header alone declares another length")
        }
    }

    /// Scanning and salvaging a segment's records stays inside it.
    static func segment(_ input: UnsafeRawBufferPointer) {
        // Both rules: version 1's search, and version 2's block map over whatever header the input starts with.
        var header = SegmentHeader(segmentID: 4, baseSeq: 1, createdMilliseconds: 0, mapOffset: UInt32(min(input.count / 2, 1 << 20)) & ~4095)
        if input.count >= RecordFormat.segmentHeaderSize,
           case .success(let decoded) = SegmentHeader.decode(input.baseAddress!, available: input.count, expectedID: input.baseAddress!.loadLE(at: 12, as: UInt32.self)) {
            header = decoded
        }
        for rule in [DamageRule.anyReadableRecord, .forSegment(header, layout: .of(header, bytes: input), bytes: input)] {
            var previous = -1
            _ = try? SegmentScanner.scan(input, baseOffset: 0, rule: rule) { offset, header, _ throws(KVFileError) in
                precondition(offset > previous && offset + header.totalLength <= input.count, "scanned record out of order or bounds")
                previous = offset
            }
        }
        for resync in [SalvageScanner.Resync.anyReadableRecord(input), .knownStarts(input, header: header, layout: .of(header, bytes: input), hintStarts: [40, 100, input.count / 2])] {
            _ = try? SalvageScanner.scan(input, resync: resync) { offset, header, _ throws(KVFileError) in
                precondition(offset + header.totalLength <= input.count, "salvaged record out of bounds")
            }
        }
    }

    /// A hint file that is accepted only describes records inside its segment.
    static func hint(_ input: UnsafeRawBufferPointer) {
        let length = 1 << 20
        _ = try? HintFileReader.read(input, segmentID: 4, segmentLength: length) { entry throws(KVFileError) in
            precondition(entry.offset >= RecordFormat.segmentHeaderSize && entry.offset + entry.size <= length, "hint entry out of bounds")
            precondition(entry.key.count >= 1 && entry.key.count <= RecordFormat.maxKeyLength, "hint key length out of range")
        }
    }

    /// A compaction marker decodes only when it re-encodes to the same bytes.
    static func marker(_ input: UnsafeRawBufferPointer) {
        let bytes = Array(input)
        if let marker = CompactionMarker.decode(bytes) {
            precondition(marker.encoded() == bytes, "marker accepted but does not round-trip")
        }
    }
}
