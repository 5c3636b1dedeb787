import CKVFileSupport
import Testing
@testable import KVFile

@Suite struct ChecksumTests {
    @Test func crc32cMatchesTheStandardCheckValue() {
        let data = Array("123456789".utf8)
        let value = data.withUnsafeBytes { CRC32C.checksum($0) }
        #expect(value == 0xE306_9283)
    }

    @Test func hardwareAndSoftwarePathsAgree() {
        var random = SeededRandom(seed: 7)
        for length in [0, 1, 7, 8, 9, 63, 64, 65, 1000, 4099] {
            let data = (0..<length).map { _ in UInt8.random(in: 0...255, using: &random) }
            let (fast, slow) = data.withUnsafeBytes { raw in
                (kvf_crc32c(0, raw.baseAddress, raw.count), kvf_crc32c_software(0, raw.baseAddress, raw.count))
            }
            #expect(fast == slow, "length \(length)")
        }
    }
}

@Suite struct VarintTests {
    @Test(arguments: [UInt64(0), 1, 127, 128, 16383, 16384, UInt64(UInt32.max), UInt64.max])
    func roundTrips(_ value: UInt64) {
        var buffer = [UInt8](repeating: 0, count: 10)
        let written = buffer.withUnsafeMutableBytes { Varint.write(value, to: $0.baseAddress!) }
        #expect(written == Varint.encodedLength(value))
        let result = buffer.withUnsafeBytes { Varint.read($0.baseAddress!, available: written) }
        guard case .value(let decoded, let length) = result else {
            Issue.record("did not decode")
            return
        }
        #expect(decoded == value)
        #expect(length == written)
    }

    @Test func truncatedAndOverlongAreRejected() {
        let truncated: [UInt8] = [0x80, 0x80]
        let overlong = [UInt8](repeating: 0xFF, count: 11)
        truncated.withUnsafeBytes {
            guard case .truncated = Varint.read($0.baseAddress!, available: 2) else { Issue.record("expected truncated"); return }
        }
        overlong.withUnsafeBytes {
            guard case .overlong = Varint.read($0.baseAddress!, available: 11) else { Issue.record("expected overlong"); return }
        }
    }

    /// The word-at-a-time walk of a closed list's sizes names the same first
    /// start per block, the same end and the same rejections as reading each size.
    @Test func walkingFirstStartsInBlocksAgreesWithReadingEverySize() {
        var random = SeededRandom(seed: 5)
        for round in 0..<400 {
            var list: [UInt8] = []
            let count = Int.random(in: 0...300, using: &random)
            for _ in 0..<count {
                let size: UInt64
                switch Int.random(in: 0..<20, using: &random) {
                case 0: size = 0  // rejected
                case 1: size = UInt64.random(in: 16384...200_000, using: &random)  // three bytes
                case 2: size = UInt64(Int.random(in: 1...100, using: &random) * 128)  // low bits zero
                case 3: size = UInt64.random(in: 1...127, using: &random)
                default: size = UInt64.random(in: 60...400, using: &random)
                }
                var bytes = [UInt8](repeating: 0, count: 10)
                let n = bytes.withUnsafeMutableBytes { Varint.write(size, to: $0.baseAddress!) }
                list += bytes[0..<n]
            }
            if round % 7 == 0 && !list.isEmpty { list[list.count - 1] |= 0x80 }  // truncated
            if round % 11 == 0 { list += [0x85, 0x00] }  // a size written in two bytes where one would do
            let limit = round % 5 == 0 ? Int.random(in: 40...60_000, using: &random) : Int.max
            let shift = round % 3 == 0 ? 8 : 12
            var expected: [Int] = []
            var block = -1
            let expectedEnd = list.withUnsafeBytes { raw in
                Varint.walkSizes(raw.baseAddress ?? UnsafeRawPointer(bitPattern: 8)!, count: raw.count, from: 40, limit: limit) { start in
                    if start >> shift != block { block = start >> shift; expected.append(start) }
                }
            }
            var starts: [Int] = []
            let end = list.withUnsafeBytes { raw in
                Varint.walkFirstStartsInBlocks(raw.baseAddress ?? UnsafeRawPointer(bitPattern: 8)!, count: raw.count, from: 40,
                                               limit: limit, blockShift: shift) { starts.append($0) }
            }
            #expect(end == expectedEnd, "round \(round)")
            if expectedEnd != nil { #expect(starts == expected, "round \(round)") }
        }
    }
}

/// Encodes one record the way the writer does, for tests.
func encodeRecord(
    _ operation: ChangeKind, seq: UInt64, timestamp: UInt64 = 1_700_000_000_000,
    key: [UInt8], value: [UInt8]?, continues: Bool = false, compress: Bool = true, prior: PriorLocation? = nil
) -> [UInt8] {
    let compressor = LZ4Compressor()
    var stored = value ?? []
    var rawLength: Int?
    if compress, let value, value.count >= RecordFormat.minCompressibleLength {
        var out = [UInt8](repeating: 0, count: LZ4Compressor.bound(value.count))
        let n = value.withUnsafeBytes { v in out.withUnsafeMutableBytes { compressor.compress(v, into: $0.baseAddress!) } }
        if let n {
            stored = Array(out[0..<n])
            rawLength = value.count
        }
    }
    let size = RecordCodec.encodedLength(seq: seq, timestamp: timestamp, prior: prior, keyLength: key.count, storedLength: stored.count, rawLength: rawLength)
    var record = [UInt8](repeating: 0, count: size)
    let written = record.withUnsafeMutableBytes { out in
        key.withUnsafeBytes { k in
            stored.withUnsafeBytes { s in
                RecordCodec.encode(to: out.baseAddress!, operation: operation, continues: continues, seq: seq,
                                   timestamp: timestamp, prior: prior, key: k, stored: s, rawLength: rawLength)
            }
        }
    }
    #expect(written == size)
    return record
}

@Suite struct RecordCodecTests {
    @Test func plainRecordRoundTrips() throws {
        let record = encodeRecord(.created, seq: 42, key: bytes("artists"), value: bytes("Cesária"))
        let result = record.withUnsafeBytes { RecordCodec.decode($0.baseAddress!, available: $0.count) }
        guard case .record(let header) = result else { Issue.record("no record: \(result)"); return }
        #expect(header.operation == .created)
        #expect(header.seq == 42)
        #expect(header.timestamp == 1_700_000_000_000)
        #expect(!header.compressed)
        #expect(header.totalLength == record.count)
        #expect(Array(record[header.keyOffset..<header.keyOffset + header.keyLength]) == bytes("artists"))
        #expect(Array(record[header.valueOffset...]) == bytes("Cesária"))
    }

    @Test func compressibleValueIsStoredCompressedAndDecompresses() throws {
        let value = [UInt8](repeating: 65, count: 1000)
        let record = encodeRecord(.updated, seq: 3, key: bytes("k"), value: value)
        #expect(record.count < 100)
        let header: RecordHeader = try #require(record.withUnsafeBytes {
            if case .record(let h) = RecordCodec.decode($0.baseAddress!, available: $0.count) { return h }
            return nil
        })
        #expect(header.compressed)
        #expect(header.rawLength == 1000)
        var out = [UInt8](repeating: 0, count: 1000)
        let ok = record.withUnsafeBytes { r in
            out.withUnsafeMutableBytes { LZ4Block.decompress(r.baseAddress! + header.valueOffset, count: header.storedLength, into: $0.baseAddress!, rawLength: 1000) }
        }
        #expect(ok)
        #expect(out == value)
    }

    @Test func incompressibleValueIsStoredAsIs() {
        var random = SeededRandom(seed: 1)
        let value = (0..<200).map { _ in UInt8.random(in: 0...255, using: &random) }
        let record = encodeRecord(.created, seq: 1, key: bytes("r"), value: value)
        record.withUnsafeBytes {
            guard case .record(let header) = RecordCodec.decode($0.baseAddress!, available: $0.count) else {
                Issue.record("no record"); return
            }
            #expect(!header.compressed)
        }
    }

    @Test func everyFlippedBitIsCaught() {
        let record = encodeRecord(.updated, seq: 99, key: bytes("key"), value: bytes("some value bytes here"))
        for index in 0..<record.count {
            for bit in 0..<8 {
                var damaged = record
                damaged[index] ^= UInt8(1 << bit)
                let result = damaged.withUnsafeBytes { RecordCodec.decode($0.baseAddress!, available: $0.count) }
                if case .record = result { Issue.record("flip of byte \(index) bit \(bit) decoded as a record") }
            }
        }
    }

    @Test func everyTruncationIsIncompleteNotARecord() {
        let record = encodeRecord(.deleted, seq: 5, key: bytes("gone"), value: nil)
        for length in 0..<record.count {
            let result = record.withUnsafeBytes { RecordCodec.decode($0.baseAddress!, available: length) }
            guard case .incomplete = result else { Issue.record("length \(length): \(result)"); continue }
        }
    }

    @Test func sequenceNumbersPastTheLimitAreInvalid() {
        let last = encodeRecord(.created, seq: RecordFormat.maxSeq, key: bytes("k"), value: bytes("v"))
        let decoded = last.withUnsafeBytes { RecordCodec.decode($0.baseAddress!, available: $0.count) }
        guard case .record(let header) = decoded else { Issue.record("seq \(RecordFormat.maxSeq) refused: \(decoded)"); return }
        #expect(header.seq == RecordFormat.maxSeq)
        let past = encodeRecord(.created, seq: RecordFormat.maxSeq + 1, key: bytes("k"), value: bytes("v"))
        let refused = past.withUnsafeBytes { RecordCodec.decode($0.baseAddress!, available: $0.count) }
        guard case .invalid(let reason) = refused else { Issue.record("seq past the limit accepted: \(refused)"); return }
        #expect(reason.contains("sequence number"))
    }

    @Test func reservedBitsAndBadOperationsAreInvalid() {
        var record = encodeRecord(.created, seq: 1, key: bytes("a"), value: bytes("b"))
        for bit in [UInt8(0x40), 0x80] {
            record[4] = bit | 0x01
            let reserved = record.withUnsafeBytes { RecordCodec.decode($0.baseAddress!, available: $0.count) }
            guard case .invalid = reserved else { Issue.record("reserved bit \(bit) accepted"); return }
        }
        record[4] = 0x00
        let noOperation = record.withUnsafeBytes { RecordCodec.decode($0.baseAddress!, available: $0.count) }
        guard case .invalid = noOperation else { Issue.record("operation 0 accepted"); return }
    }

    @Test func priorsRoundTripOnUpdatesAndDeletesOnly() {
        for (operation, value) in [(ChangeKind.updated, bytes(String(repeating: "long value ", count: 9))), (.deleted, nil)] {
            for prior in [PriorLocation(segment: 0, offset: 40), PriorLocation(segment: 3, offset: 70_000), PriorLocation(segment: .max, offset: .max)] {
                let record = encodeRecord(operation, seq: 9, key: bytes("k"), value: value, prior: prior)
                let result = record.withUnsafeBytes { RecordCodec.decode($0.baseAddress!, available: $0.count) }
                guard case .record(let header) = result else { Issue.record("\(operation) with \(prior): \(result)"); continue }
                #expect(header.prior == prior && header.totalLength == record.count && header.operation == operation)
                #expect(record.withUnsafeBytes { RecordCodec.declaredLength($0) } == record.count)
                for cut in 0..<record.count {
                    let part = record.withUnsafeBytes { RecordCodec.decode($0.baseAddress!, available: cut) }
                    guard case .incomplete = part else { Issue.record("cut at \(cut) of \(record.count): \(part)"); break }
                }
            }
        }
        // A created record with the bit, and a prior before the first record, cannot be.
        var created = encodeRecord(.updated, seq: 9, key: bytes("k"), value: bytes("v"), prior: PriorLocation(segment: 1, offset: 40))
        created[4] = (created[4] & ~RecordFormat.opMask) | ChangeKind.created.rawValue
        created.withUnsafeMutableBytes { $0.baseAddress!.storeLE(CRC32C.checksum(UnsafeRawPointer($0.baseAddress! + 4), $0.count - 4), at: 0) }
        guard case .invalid(let reason) = created.withUnsafeBytes({ RecordCodec.decode($0.baseAddress!, available: $0.count) }) else {
            Issue.record("a created record with a prior accepted"); return
        }
        #expect(reason.contains("prior"))
        let early = encodeRecord(.updated, seq: 9, key: bytes("k"), value: bytes("v"), prior: PriorLocation(segment: 1, offset: 39))
        guard case .invalid = early.withUnsafeBytes({ RecordCodec.decode($0.baseAddress!, available: $0.count) }) else {
            Issue.record("a prior at offset 39 accepted"); return
        }
    }
}

@Suite struct SegmentHeaderTests {
    @Test func roundTripsAndRejectsDamage() {
        let header = SegmentHeader(segmentID: 7, baseSeq: 1234, createdMilliseconds: 99)
        let encoded = header.encoded()
        #expect(encoded.count == RecordFormat.segmentHeaderSize)
        #expect(Array(encoded[0..<8]) == Array("kvfileS\n".utf8))
        let decoded = encoded.withUnsafeBytes { SegmentHeader.decode($0.baseAddress!, available: $0.count, expectedID: 7) }
        #expect(decoded == .success(header))
        let wrongID = encoded.withUnsafeBytes { SegmentHeader.decode($0.baseAddress!, available: $0.count, expectedID: 8) }
        #expect(wrongID == .failure(.wrongSegmentID(7)))
        var damaged = encoded
        damaged[20] ^= 1
        let bad = damaged.withUnsafeBytes { SegmentHeader.decode($0.baseAddress!, available: $0.count, expectedID: 7) }
        #expect(bad == .failure(.badChecksum))
    }
}

@Suite struct HintFileTests {
    @Test func roundTripsWithImpliedOffsets() throws {
        let builder = HintBuilder()
        let keys = [bytes("alpha"), bytes("beta"), bytes("alpha")]
        let sizes = [30, 25, 40]
        let ops: [ChangeKind] = [.created, .created, .deleted]
        for i in 0..<3 {
            keys[i].withUnsafeBytes { builder.add(operation: ops[i], seq: UInt64(i + 1), size: sizes[i], key: $0) }
        }
        let segmentLength = RecordFormat.segmentHeaderSize + sizes.reduce(0, +)
        let file = builder.fileBytes(segmentID: 3, segmentLength: segmentLength)
        var seen: [(ChangeKind, UInt64, Int, Int, [UInt8])] = []
        let problem = try file.withUnsafeBytes { raw throws(KVFileError) in
            try HintFileReader.read(raw, segmentID: 3, segmentLength: segmentLength) { entry throws(KVFileError) in
                seen.append((entry.operation, entry.seq, entry.offset, entry.size, Array(entry.key)))
            }
        }
        #expect(problem == nil)
        #expect(seen.map(\.2) == [40, 70, 95])
        #expect(seen.map(\.4) == keys)
        #expect(seen.map(\.0) == ops)

        let truncated = Array(file.dropLast(3))
        let truncatedProblem = try truncated.withUnsafeBytes { raw throws(KVFileError) in
            try HintFileReader.read(raw, segmentID: 3, segmentLength: segmentLength) { _ throws(KVFileError) in }
        }
        #expect(truncatedProblem != nil)
        let wrongLength = try file.withUnsafeBytes { raw throws(KVFileError) in
            try HintFileReader.read(raw, segmentID: 3, segmentLength: segmentLength + 1) { _ throws(KVFileError) in }
        }
        #expect(wrongLength != nil)
    }
}
