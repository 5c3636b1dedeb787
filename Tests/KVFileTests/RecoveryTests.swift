import Foundation
import Testing
@testable import KVFile
@testable import KVFileFixtures

func copyStore(_ from: String, to: String) throws {
    if FileManager.default.fileExists(atPath: to) { try FileManager.default.removeItem(atPath: to) }
    try FileManager.default.copyItem(atPath: from, toPath: to)
}

@Suite struct RecoveryTests {
    /// Writes: 4 single puts, then a batch of 3, then a delete. Returns the model after each record count.
    /// With `close: false` the writer stops the way a crash would: the
    /// segment keeps its open layout (block map past the records), where torn tails happen.
    func makeStore(_ path: String, close: Bool = true) throws -> [[[UInt8]: [UInt8]]] {
        var options = StoreOptions()
        options.segmentSize = 8192
        let store = try Store(path: path, options: options)
        var states: [[[UInt8]: [UInt8]]] = [[:]]
        var model: [[UInt8]: [UInt8]] = [:]
        for i in 0..<4 {
            let value = bytes(String(repeating: "value-\(i)-", count: 6))
            try store.put(bytes("key\(i)"), value)
            model[bytes("key\(i)")] = value
            states.append(model)
        }
        var batch = WriteBatch()
        batch.put("b1", "one")
        batch.put("key0", "changed")
        batch.delete("key1")
        try store.write(batch)
        model[bytes("b1")] = bytes("one")
        model[bytes("key0")] = bytes("changed")
        model[bytes("key1")] = nil
        // A batch is all or nothing: the states inside it equal the state before it.
        states.append(states.last!)
        states.append(states.last!)
        states.append(model)
        try store.delete("key2")
        model[bytes("key2")] = nil
        states.append(model)
        if close { try store.close() } else { store.abandonForCrashTest() }
        return states
    }

    @Test func cuttingTheActiveSegmentAtEveryByteKeepsEveryCompleteRecord() throws {
        let dir = TemporaryDirectory()
        let original = dir.sub("orig")
        let states = try makeStore(original, close: false)
        let segment = "/" + segmentFiles(original)[0]
        let records = recordOffsets(original + segment)
        #expect(records.count == 8)
        let full = fileBytes(original + segment)
        let recordsEnd = records.last!.offset + records.last!.size
        let work = dir.sub("work")
        for cut in RecordFormat.segmentHeaderSize...recordsEnd {
            try copyStore(original, to: work)
            simulateEarlierBoot(work)  // only a power loss cuts a file short like this
            // A write cut short leaves zeros where it did not get to; the file keeps its size.
            writeFile(work + segment, Array(full[0..<cut]) + [UInt8](repeating: 0, count: recordsEnd - cut) + Array(full[recordsEnd...]))
            let complete = records.filter { $0.offset + $0.size <= cut }.count
            let store = try Store(path: work)
            #expect(try contents(store) == states[complete], "cut at \(cut)")
            try store.put("after", "crash")
            try store.close()
            let again = try Store(path: work, options: .reader)
            var expected = states[complete]
            expected[bytes("after")] = bytes("crash")
            #expect(try contents(again) == expected, "reopen after cut at \(cut)")
        }
    }

    @Test func aFlippedByteIsReportedOrTornButNeverReturnedAsData() throws {
        let dir = TemporaryDirectory()
        let original = dir.sub("orig")
        let states = try makeStore(original)
        let segment = "/" + segmentFiles(original)[0]
        let records = recordOffsets(original + segment)
        let full = fileBytes(original + segment)
        let work = dir.sub("work")
        for index in RecordFormat.segmentHeaderSize..<full.count {
            try copyStore(original, to: work)
            var damaged = full
            damaged[index] ^= 0x20
            writeFile(work + segment, damaged)
            let owner = records.last { $0.offset <= index }!
            let recordsEnd = records.last!.offset + records.last!.size
            do {
                // Open goes through the index and reads no record; reading them all meets the damage.
                let store = try Store(path: work, options: .reader)
                let read = try contents(store)
                #expect(read == states[records.count], "flip at \(index)")
                if index < recordsEnd {
                    // In a record no live key names: a closed file holds only synced records, so check calls it damage.
                    let report = try StoreCheck.run(path: work)
                    #expect(report.problems.contains { $0.severity == .error && $0.offset == owner.offset }, "flip at \(index): \(report.problems)")
                } else {
                    // Past them lie the list of record sizes (used only by salvage) and the closing trailer.
                    #expect(index < full.count - BlockMap.trailerSize, "flip at \(index) read back")
                }
            } catch let error as KVFileError {
                #expect(error.code == .corrupt)
                // A damaged trailer leaves a file cut to its records, with the map where records would go on.
                #expect(error.offset == (index >= recordsEnd ? recordsEnd : owner.offset), "flip at \(index): reported \(error.offset ?? -1)")
                #expect(error.path == work + segment)
            }
        }
    }

    @Test func anUnfinishedBatchIsDroppedWhole() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("s")
        let states = try makeStore(path, close: false)
        let segment = path + "/" + segmentFiles(path)[0]
        let records = recordOffsets(segment)
        let batchLast = records[6]
        #expect(records[4].continues && records[5].continues && !batchLast.continues)
        var full = fileBytes(segment)
        let recordsEnd = records.last!.offset + records.last!.size
        for i in (batchLast.offset + batchLast.size - 1)..<recordsEnd { full[i] = 0 }
        writeFile(segment, full)
        simulateEarlierBoot(path)
        let store = try Store(path: path)
        #expect(try contents(store) == states[4])
        // The writer erased the unfinished batch; closing cuts the file after the records before it.
        #expect(fileBytes(segment)[records[4].offset..<recordsEnd].allSatisfy { $0 == 0 })
        try store.close()
        let closedFile = fileBytes(segment)
        let closed = closedFile.withUnsafeBytes { raw in
            BlockMap.closed(trailer: UnsafeRawBufferPointer(rebasing: raw[(raw.count - BlockMap.trailerSize)...]), segmentID: 1, fileSize: raw.count)
        }
        #expect(closed?.recordsEnd == records[4].offset)
    }

    @Test func zeroFilledTailAndNeverWrittenPagesAreTornTails() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("z")
        let store = try Store(path: path)
        var model: [[UInt8]: [UInt8]] = [:]
        for i in 0..<600 {
            let value = bytes("value \(i) " + String(repeating: "\(i % 10)", count: 20 + i % 50))
            try store.put(bytes("k\(i)"), value)
            model[bytes("k\(i)")] = value
        }
        try store.close()
        let segment = path + "/" + segmentFiles(path)[0]
        var data = fileBytes(segment)
        let records = recordOffsets(segment)
        // A writer that reopened the closed file (its list and trailer became
        // zeros, the map's space came back) and died before writing anything.
        try Store(path: path).abandonForCrashTest()
        #expect(fileBytes(segment).count > data.count)
        let reopened = try Store(path: path)
        #expect(try contents(reopened) == model)
        try reopened.close()
        // A page the OS never wrote back, followed by pages it did (while a
        // writer had the segment open: a closed file holds only synced pages).
        try #require(data.count > 12288)
        try Store(path: path).abandonForCrashTest()
        data = fileBytes(segment)
        for i in 4096..<8192 { data[i] = 0 }
        writeFile(segment, data)
        simulateEarlierBoot(path)
        let firstDamaged = records.first { $0.offset + $0.size > 4096 }!
        let survivors = records.filter { $0.offset < firstDamaged.offset }.count
        // check says what open does: a torn tail, not damage.
        let report = try StoreCheck.run(path: path)
        #expect(report.isHealthy, "\(report.problems)")
        #expect(report.problems.contains { $0.severity == .warning && $0.offset == firstDamaged.offset })
        let afterHole = try Store(path: path)
        #expect(afterHole.count == survivors)
        for (key, value) in try contents(afterHole) { #expect(model[key] == value) }
    }

    @Test func damagedHintFilesAreRebuiltFromTheirSegments() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("h")
        var options = StoreOptions()
        options.segmentSize = 4096
        let store = try Store(path: path, options: options)
        var model: [[UInt8]: [UInt8]] = [:]
        for i in 0..<800 {
            try store.put(bytes("k\(i % 50)"), bytes("v\(i)"))
            model[bytes("k\(i % 50)")] = bytes("v\(i)")
        }
        try store.close()
        let hints = try FileManager.default.contentsOfDirectory(atPath: path).filter { $0.hasSuffix(".kvhint") }.sorted()
        try #require(hints.count >= 2)
        let truncated = path + "/" + hints[0]
        let original = fileBytes(truncated)
        writeFile(truncated, Array(original.dropLast(7)))
        try FileManager.default.removeItem(atPath: path + "/" + hints[1])
        // The index needs no hint file; a writer opening through it writes the missing one.
        let reader = try Store(path: path, options: .reader)
        #expect(try contents(reader) == model)
        var writer = try Store(path: path, options: options)
        #expect(try contents(writer) == model)
        try writer.close()
        #expect(FileManager.default.fileExists(atPath: path + "/" + hints[1]))
        // Building the index reads them, and rewrites the damaged one from its segment.
        forgetIndex(path)
        #expect(try contents(Store(path: path, options: .reader)) == model)
        writer = try Store(path: path, options: options)
        #expect(try contents(writer) == model)
        try writer.close()
        #expect(fileBytes(truncated) == original)
    }

    @Test func damageInASealedSegmentIsReportedWithFileAndOffset() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("sealed")
        var options = StoreOptions()
        options.segmentSize = 4096
        let store = try Store(path: path, options: options)
        for i in 0..<200 { try store.put(bytes("k\(i)"), bytes("value number \(i)")) }
        try store.close()
        let first = path + "/" + segmentFiles(path)[0]
        let records = recordOffsets(first)
        let victim = records[3]

        // A flipped value byte behind a sound hint file: open works, reading that key fails.
        var data = fileBytes(first)
        data[victim.offset + victim.size - 1] ^= 0x01
        writeFile(first, data)
        let reader = try Store(path: path, options: .reader)
        #expect { try reader.get("k3") } throws: { error in
            let e = error as? KVFileError
            return e?.code == .corrupt && e?.offset == victim.offset && e?.path == first
        }
        #expect(try reader.getString("k4") == "value number 4")

        // Without the hint file (and the index) the scan finds it at open.
        try FileManager.default.removeItem(atPath: path + "/" + FileNames.hint(1))
        forgetIndex(path)
        #expect { try Store(path: path, options: .reader) } throws: { error in
            (error as? KVFileError)?.offset == victim.offset
        }

        // A writer rebuilds the missing hint file once the flip is undone.
        data[victim.offset + victim.size - 1] ^= 0x01
        writeFile(first, data)
        var quiet = options
        quiet.autoCompaction = nil
        try Store(path: path, options: quiet).close()
        #expect(FileManager.default.fileExists(atPath: path + "/" + FileNames.hint(1)))

        // A sealed segment shorter than its hint file says is corrupt, not torn.
        writeFile(first, Array(data.dropLast(5)))
        #expect { try Store(path: path, options: .reader) } throws: { ($0 as? KVFileError)?.code == .corrupt }

        // Without a hint file either: a seal syncs the records before it cuts the file to them,
        // so a cut file ending inside a record is damage (version 1 took it for a torn tail).
        try FileManager.default.removeItem(atPath: path + "/" + FileNames.hint(1))
        // (The index, closed cleanly, knows the size it was sealed with, and says so first.)
        #expect { try Store(path: path, options: quiet) } throws: { error in
            guard let error = error as? KVFileError, error.code == .corrupt else { return false }
            return error.offset == records.last!.offset || error.message.contains("sealed at \(data.count)")
        }
    }

    @Test func leftoverTemporaryFilesAreRemovedByTheNextWriter() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("tmp")
        try Store(path: path).put("a", "1")
        writeFile(path + "/00000001.kvhint.tmp", [1, 2, 3])
        let store = try Store(path: path)
        #expect(!FileManager.default.fileExists(atPath: path + "/00000001.kvhint.tmp"))
        #expect(try store.getString("a") == "1")
    }
}

@Suite struct HintDisagreementTests {
    /// Defect: a sealed segment shorter than its intact hint file records was
    /// silently rescanned (the records past its end lost) and the writer then
    /// overwrote the hint, destroying the evidence. It is damage: open fails
    /// naming both files, and the hint file stays as it was.
    @Test func aSealedSegmentCutShortUnderItsHintFileIsCorruptAndTheHintIsKept() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("cut")
        var options = StoreOptions()
        options.segmentSize = 4096
        options.autoCompaction = nil
        let store = try Store(path: path, options: options)
        for i in 0..<1000 { try store.put("k\(i)", "value \(i) " + String(repeating: "x", count: 30)) }
        try store.close()
        let segment = path + "/00000001.kvseg", hint = path + "/00000001.kvhint"
        let hintBefore = try Data(contentsOf: URL(fileURLWithPath: hint))
        let full = try Data(contentsOf: URL(fileURLWithPath: segment))
        try full.prefix(full.count - 20).write(to: URL(fileURLWithPath: segment))
        for readOnly in [false, true] {
            var opening = options
            opening.readOnly = readOnly
            do {
                _ = try Store(path: path, options: opening)
                Issue.record("a segment cut short under its hint file opened (readOnly: \(readOnly))")
            } catch {
                #expect(error.code == .corrupt)
                #expect(error.message.contains("00000001.kvseg"))
                #expect(error.message.contains("00000001.kvhint"))
            }
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: hint)) == hintBefore)
    }
}

@Suite struct UnwrittenSegmentTests {
    /// Defect (found by the power-loss twin once its workload grew): a power
    /// loss during the seal of a segment rolled away, after a directory sync
    /// made its name (and the next one's) durable but before its header reached
    /// the disk, left an empty segment that is not the highest; every open then
    /// failed with "segment header is truncated". Nothing in it was synced (a
    /// seal syncs it before any later sync), so it is empty, like the active
    /// segment whose creation was cut short.
    @Test func anEmptySegmentBelowTheActiveOneIsEmptyNotDamage() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("s")
        var options = StoreOptions()
        options.segmentSize = 4096
        options.autoCompaction = nil
        let store = try Store(path: path, options: options)
        var model: [[UInt8]: [UInt8]] = [:]
        for i in 0..<200 {
            try store.put(bytes("k\(i % 40)"), bytes("value \(i)"))
            model[bytes("k\(i % 40)")] = bytes("value \(i)")
        }
        try store.close()
        let highest = segmentFiles(path).compactMap { UInt32($0.prefix(8)) }.max()!
        writeFile(path + "/" + FileNames.segment(highest + 1), [])  // header never written
        writeFile(path + "/" + FileNames.segment(highest + 2), [UInt8](repeating: 0, count: 40))  // the one after it, too
        simulateEarlierBoot(path)
        #expect(try contents(Store(path: path, options: .reader)) == model)
        let report = try StoreCheck.run(path: path)
        #expect(report.isHealthy, "\(report.problems)")
        let writer = try Store(path: path, options: options)
        #expect(try contents(writer) == model)
        #expect(!FileManager.default.fileExists(atPath: path + "/" + FileNames.segment(highest + 1)))
        try writer.put("after", "1")
        try writer.close()
        #expect(try StoreCheck.run(path: path).problems.filter { $0.severity == .error }.isEmpty)
    }
}
