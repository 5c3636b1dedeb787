import Foundation
import Testing
@testable import KVFile
@testable import KVFileFixtures

/// Golden stores in Fixtures/vN, written once by format version N and never edited:
/// every version this kvfile reads keeps being tested. The current version's
/// are written (only when it is new) by the fixtures tool: scripts/write-fixtures
let fixturesBase = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures").path

func unhex(_ text: Substring) -> [UInt8] {
    var result: [UInt8] = []
    var index = text.startIndex
    while index < text.endIndex {
        let next = text.index(index, offsetBy: 2)
        result.append(UInt8(text[index..<next], radix: 16)!)
        index = next
    }
    return result
}

@Suite struct FixtureTests {
    static let versions = ["v1", "v2", "v3", "v4"]

    /// "vN/name" of every fixture of every version.
    static var fixtureNames: [String] {
        versions.flatMap { version in
            ((try? FileManager.default.contentsOfDirectory(atPath: fixturesBase + "/" + version)) ?? []).sorted().map { version + "/" + $0 }
        }
    }

    @Test(arguments: versions)
    func fixturesArePresent(_ version: String) {
        let names = Set(Self.fixtureNames.filter { $0.hasPrefix(version + "/") }.map { String($0.dropFirst(version.count + 1)) })
        #expect(names.isSuperset(of: ["plain", "deletes", "batch", "segments", "torn-tail", "flipped-byte", "truncated-hint"]))
    }

    @Test(arguments: fixtureNames)
    func fixtureOpensToItsExpectedContents(_ name: String) throws {
        let dir = TemporaryDirectory()
        let fixture = fixturesBase + "/" + name
        let copy = dir.sub("store")
        try FileManager.default.copyItem(atPath: fixture + "/store", toPath: copy)
        let expectedError = fixture + "/expected-error.txt"
        if FileManager.default.fileExists(atPath: expectedError) {
            let parts = try String(contentsOfFile: expectedError, encoding: .utf8).split(separator: " ")
            #expect { try Store(path: copy, options: .reader) } throws: { error in
                guard let error = error as? KVFileError else { return false }
                return error.code.rawValue == parts[0] && error.path == copy + "/" + parts[1]
                    && error.offset == Int(parts[2].trimmingCharacters(in: .whitespacesAndNewlines))
            }
            return
        }
        let expected = try String(contentsOfFile: fixture + "/expected.txt", encoding: .utf8).split(separator: "\n").map(String.init)
        #expect(try dumpLines(Store(path: copy, options: .reader)) == expected)
        // A writer recovers the same contents (cutting a torn tail, rewriting a bad hint) and reopens clean.
        let writer = try Store(path: copy)
        #expect(try dumpLines(writer) == expected)
        try writer.close()
        #expect(try dumpLines(Store(path: copy, options: .reader)) == expected)
    }

    /// Decoding every record of the intact fixtures gives the listing, and encoding
    /// each listed record again gives the exact bytes in the file.
    @Test(arguments: versions.flatMap { version in ["plain", "deletes", "batch", "segments"].map { version + "/" + $0 } })
    func recordsDecodeAndEncodeByteForByte(_ name: String) throws {
        let fixture = fixturesBase + "/" + name
        let listing = try String(contentsOfFile: fixture + "/records.txt", encoding: .utf8).split(separator: "\n").map(String.init)
        #expect(try recordLines(fixture + "/store") == listing)
        for line in listing {
            let f = line.split(separator: " ", omittingEmptySubsequences: false)
            let file = fileBytes(fixture + "/store/" + f[0])
            let offset = Int(f[1])!
            let operation = ChangeKind(rawValue: UInt8(f[2])!)!
            let value: [UInt8]? = f[8] == "-" ? nil : unhex(f[8])
            let prior = f.count > 9 ? f[9].split(separator: ":").map { UInt32($0)! } : nil
            let encoded = encodeRecord(operation, seq: UInt64(f[3])!, timestamp: UInt64(f[4])!, key: unhex(f[7]), value: value, continues: f[5] == "1",
                                       prior: prior.map { PriorLocation(segment: $0[0], offset: $0[1]) })
            #expect(Array(file[offset..<offset + encoded.count]) == encoded, "\(f[0]) at \(offset)")
        }
    }

    /// The version-3 fixture of deadlines: what readers see, and the expiry tombstone in the log.
    @Test func theExpiryFixtureKeepsItsDeadlines() throws {
        let dir = TemporaryDirectory()
        let copy = dir.sub("store")
        try FileManager.default.copyItem(atPath: fixturesBase + "/v3/expiry/store", toPath: copy)
        let store = try Store(path: copy, options: .reader)
        #expect(try store.expiry(of: Array("until-2100".utf8)) == 4_102_444_800_000)
        #expect(try store.get("passed") == nil)
        #expect(try store.getString("renewed") == "new")
        #expect(try store.expiry(of: Array("renewed".utf8)) == 0)
        let tailer = try LogTailer(path: copy, start: .beginning)
        let events = try tailer.poll()
        #expect(events.filter(\.expired).map { String(decoding: $0.key, as: UTF8.self) } == ["renewed"])
    }
}

@Suite struct ManualPageExampleTests {
    /// The worked example in man/kvfile.5 is what the code writes.
    @Test func segmentHeaderAndRecordMatchTheManualPage() {
        var active = SegmentWriter.activeHeader(id: 1, baseSeq: 1, capacity: 64 << 20)
        active.createdMilliseconds = 1_700_000_000_000
        #expect(hex(active.encoded()) == "6b7666696c65530a" + "0400" + "0000" + "01000000" + "0100000000000000" + "0068e5cf8b010000" + "00000004" + "155c3ab8")
        // Version 1, as stores written before the block map have it.
        var old = SegmentHeader(segmentID: 1, baseSeq: 1, createdMilliseconds: 1_700_000_000_000)
        old.version = 1
        #expect(hex(old.encoded()) == "6b7666696c65530a" + "0100" + "0000" + "01000000" + "0100000000000000" + "0068e5cf8b010000" + "00000000" + "0c813b5e")
        // The closed layout's sizes and trailer, the first map entry and a watermark.
        let list: [UInt8] = BlockMap.listMarker + [24]
        #expect(hex(list) == "fffffffff018")
        let closed = BlockMap.Closed(recordsEnd: 64, listBytes: list.count, listCRC: list.withUnsafeBytes { CRC32C.checksum($0.baseAddress!, $0.count) })
        #expect(hex(BlockMap.trailer(closed, segmentID: 1)) == "6b7666696c654d0a" + "40000000" + "06000000" + "214ee221" + "28ebf57d")
        #expect(list.withUnsafeBytes { BlockMap.recordStarts(list: $0, closed: closed) } == [40])
        let entry = BlockMap.entry(segmentID: 1, block: 0, start: 40)
        #expect(hex(withUnsafeBytes(of: entry.littleEndian) { Array($0) }) == "290035e6")
        let (end, crc) = BlockMap.watermark(segmentID: 1, end: 64)
        #expect(end == 64 && hex(withUnsafeBytes(of: crc.littleEndian) { Array($0) }) == "5faa1100")
        #expect(BlockMap.regionEnd(mapOffset: 0x0400_0000) - BlockMap.watermarkSize == 0x0401_0000)
        let record = encodeRecord(.created, seq: 1, timestamp: 1_700_000_000_000, key: bytes("hello"), value: bytes("world"))
        #expect(hex(record) == "73e86d1101018" + "0d095ffbc31050568656c6c6f776f726c64")
        // The update after it names it as its prior.
        let update = encodeRecord(.updated, seq: 2, timestamp: 1_700_000_000_001, key: bytes("hello"), value: bytes("there"),
                                  prior: PriorLocation(segment: 1, offset: 40))
        #expect(hex(update) == "2020c30e" + "42" + "02" + "81d095ffbc31" + "0128" + "05" + "05" + "68656c6c6f" + "7468657265")
    }
}
