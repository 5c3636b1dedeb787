import Foundation
import Testing
@testable import KVFile

/// Golden stores in Fixtures/vN, written once by format version N and never edited:
/// every version this kvfile reads keeps being tested. Write the current
/// version's (only when it is new): scripts/write-fixtures
let fixturesBase = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures").path
/// Where the current version's fixtures are written.
let fixturesRoot = fixturesBase + "/v\(RecordFormat.version)"

func hex(_ bytes: some Sequence<UInt8>) -> String {
    bytes.map { String(format: "%02x", $0) }.joined()
}

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

/// "key-hex value-hex" lines, sorted: the expected contents of a fixture.
func dumpLines(_ store: Store) throws -> [String] {
    var lines: [String] = []
    try store.forEach { key, value in lines.append(hex(key) + " " + hex(value)) }
    return lines
}

/// One line per record of every segment: file, offset, op, seq, ts, continues, compressed, key, value.
func recordLines(_ storePath: String) throws -> [String] {
    var lines: [String] = []
    for name in segmentFiles(storePath) {
        let data = fileBytes(storePath + "/" + name)
        _ = try data.withUnsafeBytes { raw throws(KVFileError) in
            try SegmentScanner.scan(UnsafeRawBufferPointer(rebasing: raw[RecordFormat.segmentHeaderSize...]), baseOffset: RecordFormat.segmentHeaderSize, rule: .notJudged) {
                offset, header, record throws(KVFileError) in
                let key = UnsafeRawBufferPointer(start: record + header.keyOffset, count: header.keyLength)
                var value = Array(UnsafeRawBufferPointer(start: record + header.valueOffset, count: header.storedLength))
                if header.compressed {
                    var out = [UInt8](repeating: 0, count: header.rawLength)
                    _ = out.withUnsafeMutableBytes { LZ4Block.decompress(record + header.valueOffset, count: header.storedLength, into: $0.baseAddress!, rawLength: header.rawLength) }
                    value = out
                }
                lines.append([name, String(offset), String(header.operation.rawValue), String(header.seq), String(header.timestamp),
                              header.continues ? "1" : "0", header.compressed ? "1" : "0", hex(key), header.operation == .deleted ? "-" : hex(value)]
                    .joined(separator: " "))
            }
        }
    }
    return lines
}

@Suite struct FixtureTests {
    static let versions = ["v1", "v2", "v3"]

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
            let encoded = encodeRecord(operation, seq: UInt64(f[3])!, timestamp: UInt64(f[4])!, key: unhex(f[7]), value: value, continues: f[5] == "1")
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

    /// Run by scripts/write-fixtures only (it sets KVFILE_WRITE_FIXTURES=1).
    @Test(.enabled(if: ProcessInfo.processInfo.environment["KVFILE_WRITE_FIXTURES"] == "1"))
    func writeFixtures() throws {
        let fm = FileManager.default
        func fresh(_ name: String) throws -> String {
            let path = fixturesRoot + "/" + name
            if fm.fileExists(atPath: path) { try fm.removeItem(atPath: path) }
            try fm.createDirectory(atPath: path, withIntermediateDirectories: true)
            return path
        }
        func finish(_ path: String) throws {
            // The index is derived data of this program's version: a fixture is the log alone.
            try? fm.removeItem(atPath: path + "/store/" + IndexFormat.fileName)
            let store = try Store(path: path + "/store", options: .reader)
            try (try dumpLines(store).map { $0 + "\n" }.joined()).write(toFile: path + "/expected.txt", atomically: true, encoding: .utf8)
            try (try recordLines(path + "/store").map { $0 + "\n" }.joined()).write(toFile: path + "/records.txt", atomically: true, encoding: .utf8)
        }

        let plain = try fresh("plain")
        do {
            let s = try Store(path: plain + "/store")
            try s.put("hello", "world")
            try s.put("artists", #"[{"first_name":"Cesária","last_name":"Évora"}]"#)
            try s.put(Array("binary".utf8), [0, 1, 2, 255, 254, 0])
            try s.put("long", String(repeating: "compress me ", count: 40))
            try s.put("empty", "")
            try s.close()
        }
        try finish(plain)

        let deletes = try fresh("deletes")
        do {
            let s = try Store(path: deletes + "/store")
            for i in 0..<6 { try s.put("key\(i)", "value\(i)") }
            try s.put("key1", "changed")
            try s.delete("key2")
            try s.delete("key4")
            try s.put("key4", "back again")
            try s.close()
        }
        try finish(deletes)

        let batch = try fresh("batch")
        do {
            let s = try Store(path: batch + "/store")
            try s.put("a", "1")
            var b = WriteBatch()
            b.put("a", "2")
            b.put("b", "3")
            b.delete("a")
            b.put("c", String(repeating: "xyz", count: 30))
            try s.write(b)
            try s.put("d", "4")
            try s.close()
        }
        try finish(batch)

        let segments = try fresh("segments")
        do {
            var options = StoreOptions()
            options.segmentSize = 4096
            let s = try Store(path: segments + "/store", options: options)
            for i in 0..<300 { try s.put("key\(i % 90)", "value \(i) " + String(repeating: "\(i % 7)", count: i % 40)) }
            for i in stride(from: 0, to: 90, by: 9) { try s.delete("key\(i)") }
            try s.close()
        }
        try finish(segments)

        // Damaged copies. A torn tail happens while a writer has the segment
        // open: the last record half written, zeros after it, the map past them.
        let torn = try fresh("torn-tail")
        do {
            var options = StoreOptions()
            options.segmentSize = 8192
            let s = try Store(path: torn + "/store", options: options)
            try s.put("hello", "world")
            try s.put("artists", #"[{"first_name":"Cesária","last_name":"Évora"}]"#)
            try s.put("long", String(repeating: "compress me ", count: 40))
            s.abandonForCrashTest()
        }
        let tornSegment = torn + "/store/00000001.kvseg"
        let lastRecord = recordOffsets(tornSegment).last!
        var tornBytes = fileBytes(tornSegment)
        for i in (lastRecord.offset + lastRecord.size / 2)..<(lastRecord.offset + lastRecord.size) { tornBytes[i] = 0 }
        writeFile(tornSegment, tornBytes)
        try finish(torn)
        try fm.removeItem(atPath: torn + "/records.txt")

        let flipped = try fresh("flipped-byte")
        try fm.copyItem(atPath: deletes + "/store", toPath: flipped + "/store")
        let flippedSegment = flipped + "/store/00000001.kvseg"
        let victim = recordOffsets(flippedSegment)[3]
        var data = fileBytes(flippedSegment)
        data[victim.offset + victim.size - 2] ^= 0x04
        writeFile(flippedSegment, data)
        try "corrupt 00000001.kvseg \(victim.offset)\n".write(toFile: flipped + "/expected-error.txt", atomically: true, encoding: .utf8)

        let truncatedHint = try fresh("truncated-hint")
        try fm.copyItem(atPath: segments + "/store", toPath: truncatedHint + "/store")
        let hint = truncatedHint + "/store/00000002.kvhint"
        writeFile(hint, Array(fileBytes(hint).dropLast(10)))
        try finish(truncatedHint)
        try fm.removeItem(atPath: truncatedHint + "/records.txt")

        // Version 3: deadlines. One far off (2100), one passed with no expiry
        // recorded (readers leave it out), one passed and written again (an
        // expiry tombstone, then the new value).
        let expiry = try fresh("expiry")
        do {
            let s = try Store(path: expiry + "/store")
            try s.put(Array("until-2100".utf8), Array("kept".utf8), expiresAt: 4_102_444_800_000)
            let soon = UInt64(Date().timeIntervalSince1970 * 1000) + 50
            try s.put(Array("passed".utf8), Array("gone".utf8), expiresAt: soon)
            try s.put(Array("renewed".utf8), Array("old".utf8), expiresAt: soon)
            usleep(100_000)
            try s.put("renewed", "new")
            try s.close()
        }
        try finish(expiry)
        try fm.removeItem(atPath: expiry + "/records.txt")
    }
}

@Suite struct ManualPageExampleTests {
    /// The worked example in man/kvfile.5 is what the code writes.
    @Test func segmentHeaderAndRecordMatchTheManualPage() {
        var active = SegmentWriter.activeHeader(id: 1, baseSeq: 1, capacity: 64 << 20)
        active.createdMilliseconds = 1_700_000_000_000
        #expect(hex(active.encoded()) == "6b7666696c65530a" + "0300" + "0000" + "01000000" + "0100000000000000" + "0068e5cf8b010000" + "00000004" + "8a7666d8")
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
    }
}
