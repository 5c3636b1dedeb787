import Foundation
import Testing
@testable import KVFile
@testable import KVFileFixtures

/// Format version 2: no bytes inside a value can change how a store is
/// recovered, read or salvaged (man/kvfile.5, "Rationale").
@Suite struct ValueBytesTests {
    /// A record that holds a whole valid record in its value (what a user
    /// storing a copy of a segment file does).
    static func recordHidingARecord(seq: UInt64, hiddenSeq: UInt64) -> (outer: [UInt8], hidden: [UInt8]) {
        let hidden = encodeRecord(.created, seq: hiddenSeq, key: bytes("planted"), value: bytes("by a value"), compress: false)
        let outer = encodeRecord(.created, seq: seq, key: bytes("carrier"),
                                 value: [UInt8](repeating: 7, count: 300) + hidden + [UInt8](repeating: 9, count: 300), compress: false)
        return (outer, hidden)
    }

    /// Defect (version 1): a writer killed after storing a record's value but
    /// before its checksum leaves a torn record; when that value held a valid
    /// record, the recovery rule classified the store as corrupt and it would
    /// not open. Now the bytes after the damage are never read as records.
    @Test func aTornRecordWhoseValueHoldsARecordIsATornTail() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("torn")
        var options = StoreOptions()
        options.segmentSize = 64 << 10
        let store = try Store(path: path, options: options)
        try store.put("a", "1")
        let end = try store.stats().segmentDetails.last!.bytes
        store.abandonForCrashTest()  // the open layout, as after kill -9

        // The writer got as far as the value; the checksum (stored last) is not there.
        var (outer, _) = Self.recordHidingARecord(seq: 2, hiddenSeq: 3)
        for i in 0..<4 { outer[i] = 0 }
        let segment = path + "/" + segmentFiles(path)[0]
        var data = fileBytes(segment)
        data.replaceSubrange(end..<(end + outer.count), with: outer)
        writeFile(segment, data)

        let reader = try Store(path: path, options: .reader)
        #expect(try contents(reader) == [bytes("a"): bytes("1")])
        let writer = try Store(path: path, options: options)
        #expect(try contents(writer) == [bytes("a"): bytes("1")])
        try writer.put("b", "2")  // appends where the torn record was
        try writer.close()
        #expect(try contents(Store(path: path, options: .reader)) == [bytes("a"): bytes("1"), bytes("b"): bytes("2")])
        #expect(try StoreCheck.run(path: path).isHealthy)
    }

    /// A healthy store that holds record-shaped values (a copy of one of its
    /// own segment files, written at every alignment) reads the same in every
    /// way: open, a reader beside the writer, check and a tailer.
    @Test func valuesThatLookLikeRecordsChangeNothing() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("healthy")
        var options = StoreOptions()
        options.segmentSize = 256 << 10
        options.autoCompaction = nil
        let store = try Store(path: path, options: options)
        var model: [[UInt8]: [UInt8]] = [:]
        for i in 0..<50 {
            let (outer, hidden) = Self.recordHidingARecord(seq: UInt64(1000 + i), hiddenSeq: UInt64(2000 + i))
            let value = [UInt8](repeating: UInt8(i), count: i) + outer + hidden
            try store.put(bytes("k\(i)"), value)
            model[bytes("k\(i)")] = value
        }
        let tailer = try LogTailer(path: path, start: .beginning)
        #expect(try contents(Store(path: path, options: .reader)) == model)
        try store.close()
        #expect(try collect(tailer, count: 50).count == 50)
        #expect(try contents(Store(path: path, options: .reader)) == model)
        let report = try StoreCheck.run(path: path)
        #expect(report.problems.isEmpty, "\(report.problems)")
    }

    /// Defect (version 1): salvage resumed at the first readable record after
    /// damage, which could be one hidden in a value: `check --repair` then
    /// restored a key nobody wrote. Now it resumes only where the closed
    /// layout's sizes (or the map, or a hint file) say a record starts.
    @Test func repairDoesNotTakeARecordInsideAValueForARealOne() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("salvage")
        let store = try Store(path: path)
        try store.put("before", "1")
        let (outer, _) = Self.recordHidingARecord(seq: 1, hiddenSeq: 1)
        try store.put(bytes("carrier"), outer)
        try store.put("after", "3")
        try store.close()
        let segment = path + "/" + segmentFiles(path)[0]
        let records = recordOffsets(segment)
        var data = fileBytes(segment)
        data[records[1].offset + 4] ^= 0xFF  // the carrier's kind byte: its length can no longer be trusted
        writeFile(segment, data)
        #expect(throws: KVFileError.self) { _ = try contents(Store(path: path, options: .reader)) }
        let report = try StoreRepair.run(path: path)
        #expect(report.backupDirectory != nil)
        let repaired = try contents(Store(path: path, options: .reader))
        #expect(repaired == [bytes("before"): bytes("1"), bytes("after"): bytes("3")])
    }
}

/// Defects found by a review of format version 2 before it shipped.
@Suite struct FormatReviewTests {
    /// A value ending in a well-formed closing trailer (and a list) for a file
    /// cut right after it is not believed: the records end where the scan
    /// ends, not where a value says.
    @Test func aValueShapedLikeAClosingTrailerIsNotBelieved() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("fake")
        let store = try Store(path: path)
        try store.put("a", "1")
        let recordStart = try store.stats().segmentDetails.last!.bytes
        // The carrier record will end exactly where the file is cut below; its value
        // ends in a list and a trailer naming its own start as the records' end.
        var random = SystemRandomNumberGenerator()
        var value = (0..<100).map { _ in UInt8.random(in: 0...255, using: &random) }  // incompressible: stored as is
        let probe = encodeRecord(.created, seq: 2, key: bytes("carrier"), value: value + [UInt8](repeating: 0, count: 40), compress: false)
        let recordEnd = recordStart + probe.count
        let list = BlockMap.listMarker + [UInt8(recordStart - 40)]
        let listCRC = list.withUnsafeBytes { CRC32C.checksum($0.baseAddress!, $0.count) }
        let fake = list + BlockMap.trailer(BlockMap.Closed(recordsEnd: recordStart, listBytes: list.count, listCRC: listCRC), segmentID: 1)
        value += (0..<(40 - fake.count)).map { _ in UInt8.random(in: 0...255, using: &random) } + fake
        #expect(encodeRecord(.created, seq: 2, key: bytes("carrier"), value: value, compress: false).count == probe.count)
        try store.put(bytes("carrier"), value)
        try store.close()
        // Cut the file right after the carrier (as no writer does, but a damaged copy could be).
        let segment = path + "/" + segmentFiles(path)[0]
        writeFile(segment, Array(fileBytes(segment)[0..<recordEnd]))
        let reader = try Store(path: path, options: .reader)
        #expect(try reader.get(bytes("carrier")) == value)
        let writer = try Store(path: path)
        #expect(try writer.get(bytes("carrier")) == value)
        try writer.close()
    }

    /// A flipped bit in a closed file stays corruption even when a later value
    /// is a long run of zeros (which once passed for a page never written).
    @Test func damageBeforeAZeroFilledValueIsStillCorruption() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("zeros")
        let store = try Store(path: path)
        try store.put("a", "first value here")
        try store.put(bytes("zeros"), [UInt8](repeating: 0, count: 16 << 10))
        try store.put("c", "3")
        try store.close()
        let segment = path + "/" + segmentFiles(path)[0]
        let first = recordOffsets(segment)[0]
        var data = fileBytes(segment)
        data[first.offset + first.size - 2] ^= 0x01
        writeFile(segment, data)
        // Open reads through the index, not the records: reading the damaged one reports it.
        let writer = try Store(path: path)
        #expect { try writer.get("a") } throws: { ($0 as? KVFileError)?.code == .corrupt && ($0 as? KVFileError)?.offset == first.offset }
        #expect(try writer.getString("c") == "3")
        try writer.close()
        #expect(Array(fileBytes(segment)[0..<(first.offset + first.size)]) == Array(data[0..<(first.offset + first.size)]), "the writer changed a damaged record")
        // Building the index from the log finds it at open, as before.
        forgetIndex(path)
        #expect { try Store(path: path) } throws: { ($0 as? KVFileError)?.code == .corrupt }
    }

    /// A segment whose header never reached the disk while its size did
    /// (after a power loss, a roll's new segment) opens as empty, not corrupt.
    @Test func aNewSegmentWithAZeroHeaderIsACreationCutShort() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("zero-header")
        try Store(path: path).put("a", "1")
        writeFile(path + "/00000002.kvseg", [UInt8](repeating: 0, count: 8192))
        #expect(try contents(Store(path: path, options: .reader)) == [bytes("a"): bytes("1")])
        let writer = try Store(path: path)
        try writer.put("b", "2")
        try writer.close()
        #expect(try contents(Store(path: path, options: .reader)) == [bytes("a"): bytes("1"), bytes("b"): bytes("2")])
    }
}
