import Foundation
import Synchronization
import Testing
@testable import KVFile
@testable import KVFileFixtures

/// The shared index file (kvfile.index): used as it is when it matches the
/// log, caught up after a crash in this boot, built anew when it cannot be
/// trusted, and never the cause of a wrong value.
@Suite struct IndexFileTests {
    static func options() -> StoreOptions {
        var options = StoreOptions()
        options.segmentSize = 4096
        options.autoCompaction = nil
        return options
    }

    static func inode(_ path: String) -> UInt64? {
        var info = stat()
        return stat(path, &info) == 0 ? UInt64(info.st_ino) : nil
    }

    /// Every key of `keys` read with `get` (a probe, not a walk of the index).
    static func gets(_ store: Store, _ keys: some Sequence<[UInt8]>) throws -> [[UInt8]: [UInt8]] {
        var result: [[UInt8]: [UInt8]] = [:]
        for key in keys { result[key] = try store.get(key) }
        return result
    }

    /// Random puts, deletes and batches over `keyCount` keys, with a compaction every 500 steps.
    @discardableResult
    static func churn(_ store: Store, model: inout [[UInt8]: [UInt8]], steps: Int, keyCount: Int, seed: UInt64) throws -> Int {
        var random = SeededRandom(seed: seed)
        var compactions = 0
        for step in 0..<steps {
            let key = bytes("key-\(Int.random(in: 0..<keyCount, using: &random))")
            switch Int.random(in: 0..<10, using: &random) {
            case 0:
                try store.delete(key)
                model[key] = nil
            case 1:
                var batch = WriteBatch()
                let other = bytes("batch-\(step % 97)")
                batch.put(key, bytes("b\(step)"))
                batch.put(other, bytes("o\(step)"))
                batch.delete(bytes("key-\(step % keyCount)"))
                try store.write(batch)
                model[key] = bytes("b\(step)")
                model[other] = bytes("o\(step)")
                model[bytes("key-\(step % keyCount)")] = nil
            default:
                let value = bytes("v\(step)-" + String(repeating: "x", count: step % 40))
                try store.put(key, value)
                model[key] = value
            }
            if step % 500 == 499 {
                try store.compact()
                compactions += 1
            }
        }
        return compactions
    }

    @Test func aStoreReopensThroughItsIndexAfterRollsResizesAndCompactions() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("s")
        let indexPath = path + "/" + IndexFormat.fileName
        var model: [[UInt8]: [UInt8]] = [:]
        let store = try Store(path: path, options: Self.options())
        #expect(try Self.churn(store, model: &model, steps: 4000, keyCount: 1500, seed: 3) == 8)
        #expect(store.state.index.capacity > IndexFormat.minCapacity, "the table never grew")
        try store.close()
        let built = Self.inode(indexPath)
        #expect(built != nil)

        // Readers and writers open through it (the same file: nothing was rebuilt) and agree with the model.
        let reader = try Store(path: path, options: .reader)
        #expect(reader.state.index.path != nil && !reader.state.index.writable)
        #expect(try contents(reader) == model)
        #expect(try Self.gets(reader, model.keys) == model)
        #expect(try reader.get("key-never") == nil)
        let writer = try Store(path: path, options: Self.options())
        #expect(try contents(writer) == model)
        try Self.churn(writer, model: &model, steps: 1000, keyCount: 1500, seed: 4)
        try writer.close()
        #expect(Self.inode(indexPath) == built)
        #expect(try contents(Store(path: path, options: .reader)) == model)
    }

    /// Defect guard: a writer that died in this boot leaves an index as current
    /// as the page cache, except for the write it was applying; the next writer
    /// catches up from the log end the index records. Here the index is set
    /// back further than a crash can, so that the catch-up has work.
    @Test func aWriterOpeningAfterACrashCatchesUpFromTheLogEndTheIndexRecords() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("s")
        let indexPath = path + "/" + IndexFormat.fileName
        var model: [[UInt8]: [UInt8]] = [:]
        let store = try Store(path: path, options: Self.options())
        try Self.churn(store, model: &model, steps: 600, keyCount: 300, seed: 5)
        try store.sync()
        let earlier = fileBytes(indexPath)
        // More writes the index will not know of: overwrites, deletes, new keys, a roll or two.
        var random = SeededRandom(seed: 6)
        for step in 0..<200 {
            let key = bytes("key-\(Int.random(in: 0..<400, using: &random))")
            if step % 5 == 0 {
                try store.delete(key)
                model[key] = nil
            } else {
                try store.put(key, bytes("late-\(step)"))
                model[key] = bytes("late-\(step)")
            }
        }
        store.abandonForCrashTest()
        let handle = try #require(FileHandle(forWritingAtPath: indexPath))
        try handle.write(contentsOf: Data(earlier))
        try handle.close()

        let writer = try Store(path: path, options: Self.options())
        #expect(try contents(writer) == model)
        #expect(try Self.gets(writer, (0..<400).map { bytes("key-\($0)") }) == (0..<400).reduce(into: [:]) { $0[bytes("key-\($1)")] = model[bytes("key-\($1)")] })
        try writer.close()
        #expect(try contents(Store(path: path, options: .reader)) == model)
    }

    enum Damage: CaseIterable {
        case flippedSlotBytes, flippedSegmentTableByte, truncated, deleted, fromAnotherStore, garbageHeader, leftOpenInAnEarlierBoot
    }

    /// An index that may not match the log is never used as it is: readers build
    /// one in memory, the next writer builds the file anew; no read is wrong.
    @Test(arguments: Damage.allCases)
    func aDamagedIndexIsDetectedAndRebuilt(_ damage: Damage) throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("s")
        let indexPath = path + "/" + IndexFormat.fileName
        var model: [[UInt8]: [UInt8]] = [:]
        let store = try Store(path: path, options: Self.options())
        try Self.churn(store, model: &model, steps: 1500, keyCount: 900, seed: 7)
        try store.close()
        let everyKey = (0..<900).map { bytes("key-\($0)") } + (0..<97).map { bytes("batch-\($0)") }
        let expected = everyKey.reduce(into: [[UInt8]: [UInt8]]()) { $0[$1] = model[$1] }

        // Another store with the same keys and other values, for its index file.
        let other = dir.sub("other")
        var otherModel: [[UInt8]: [UInt8]] = [:]
        let otherStore = try Store(path: other, options: Self.options())
        try Self.churn(otherStore, model: &otherModel, steps: 1500, keyCount: 900, seed: 8)
        try otherStore.close()

        let index = fileBytes(indexPath)
        let layoutTable = Int(index.withUnsafeBytes { $0.baseAddress!.loadLE(at: IndexFormat.tableAt, as: UInt64.self) })
        let capacity = Int(index.withUnsafeBytes { $0.baseAddress!.loadLE(at: IndexFormat.capacityAt, as: UInt64.self) })
        let occupied = (0..<capacity).filter { slot in
            index.withUnsafeBytes { $0.baseAddress!.loadLE(at: layoutTable + slot * 8, as: UInt64.self) } > 1
        }
        let trials: [[UInt8]]
        switch damage {
        case .flippedSlotBytes:
            // One bit of one byte of a slot in use, in each of several slots and each byte of a slot.
            trials = (0..<16).map { trial in
                var data = index
                let slot = occupied[(trial * 7919) % occupied.count]
                data[layoutTable + slot * 8 + trial % 8] ^= UInt8(1 << (trial % 7))
                return data
            }
        case .flippedSegmentTableByte:
            trials = [8, 17, 26].map { at in
                var data = index
                data[IndexFormat.segmentTableAt + at] ^= 0x04
                return data
            }
        case .truncated:
            trials = [Array(index.prefix(index.count / 2)), Array(index.prefix(100)), []]
        case .deleted:
            trials = [[]]
        case .fromAnotherStore:
            trials = [fileBytes(other + "/" + IndexFormat.fileName)]
        case .garbageHeader:
            trials = [[UInt8](repeating: 0x5A, count: 4096) + Array(index.dropFirst(4096))]
        case .leftOpenInAnEarlierBoot:
            trials = [index]
        }
        for (trial, data) in trials.enumerated() {
            if damage == .deleted {
                try FileManager.default.removeItem(atPath: indexPath)
            } else {
                writeFile(indexPath, data)
                if damage == .leftOpenInAnEarlierBoot { simulateEarlierBoot(path) }
            }
            // A reader before any writer: every get and the walk of every key are right.
            let reader = try Store(path: path, options: .reader)
            #expect(try Self.gets(reader, everyKey) == expected, "\(damage) \(trial): a reader's get")
            #expect(try contents(reader) == model, "\(damage) \(trial): a reader's walk")
            // The next writer builds the index again, or (a damaged page of slots, found when first read)
            // stops with an error naming the index file, and the one after builds it; after that the file serves readers as it is.
            var writer = try Store(path: path, options: Self.options())
            do {
                #expect(try Self.gets(writer, everyKey) == expected, "\(damage) \(trial): the writer's get")
                try writer.close()
            } catch let error as KVFileError {
                #expect(damage == .flippedSlotBytes && error.code == .corrupt && error.path == indexPath, "\(damage) \(trial): \(error)")
                try? writer.close()
                writer = try Store(path: path, options: Self.options())
                #expect(try Self.gets(writer, everyKey) == expected, "\(damage) \(trial): the next writer's get")
                try writer.close()
            }
            let after = try Store(path: path, options: .reader)
            #expect(after.state.index.path != nil, "\(damage) \(trial): the rebuilt index is not used")
            #expect(try Self.gets(after, everyKey) == expected, "\(damage) \(trial): after the rebuild")
        }
    }

    /// A writer killed after a roll and before its seal wrote the hint file:
    /// the next writer, resuming through the index (which holds every record
    /// of that segment), makes the hint file by reading the segment without
    /// applying its records again, and the hint file is the one the seal makes.
    @Test func aSegmentWhoseSealDidNotFinishIsSealedByTheNextWriterThroughTheIndex() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("unsealed")
        let store = try Store(path: path, options: Self.options())
        var model: [[UInt8]: [UInt8]] = [:]
        for step in 0..<3_000 {
            let key = bytes("key-\(step % 700)")
            try store.put(key, bytes("value-\(step)-" + String(repeating: "x", count: step % 40)))
            model[key] = bytes("value-\(step)-" + String(repeating: "x", count: step % 40))
        }
        #expect(segmentFiles(path).count >= 3)
        store.abandonForCrashTest()
        let hint = path + "/" + FileNames.hint(1), segment = path + "/" + FileNames.segment(1)
        let sealed = fileBytes(hint), records = fileBytes(segment)
        #expect(unlink(hint) == 0)
        #expect(extendAsRolled(segment, id: 1) != nil)
        let writer = try Store(path: path, options: Self.options())
        #expect(fileBytes(hint) == sealed)
        #expect(fileBytes(segment) == records)
        #expect(try contents(writer) == model)
        try writer.close()
        #expect(try contents(Store(path: path, options: .reader)) == model)
    }

    /// An index that passes its own checksums yet names an older record of a
    /// key than the log's latest: check compares key by key and says so, and
    /// rebuilding the index (check --repair) mends it.
    @Test func checkComparesAnIndexClosedCleanlyWithTheLogKeyByKey() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("s")
        let store = try Store(path: path, options: Self.options())
        try store.put("a", "old")
        try store.put("b", "other")
        try store.put("a", "new")
        try store.close()
        #expect(try StoreCheck.run(path: path).problems.isEmpty)
        // Point "a" back at its first record, and close the file cleanly again (checksums and all).
        let index = try #require(try SharedIndex.open(path: path + "/" + IndexFormat.fileName, writable: true))
        let segment = path + "/" + segmentFiles(path)[0]
        let first = recordOffsets(segment)[0]
        let state = StoreState(directory: path, index: index)
        var loader = StoreLoader(directory: path, writer: false, segmentSize: 0)
        _ = try loader.resolveSegments(try FileManager.default.contentsOfDirectory(atPath: path))
        try loader.openForIndex(1, into: state)
        let moved = bytes("a").withUnsafeBytes { index.relocate($0, from: 1, offset: index.lookup($0)!.offset, to: 1, newOffset: UInt32(first.offset)) }
        #expect(moved != nil)
        try index.closeCleanly()
        #expect(try Store(path: path, options: .reader).getString("a") == "old", "the test did not make the index wrong")

        let report = try StoreCheck.run(path: path)
        #expect(!report.isHealthy)
        #expect(report.problems.contains { $0.file == IndexFormat.fileName && $0.message.contains("\"a\"") }, "\(report.problems)")
        try StoreRepair.rebuildIndex(path: path)
        #expect(try StoreCheck.run(path: path).problems.isEmpty)
        #expect(try Store(path: path, options: .reader).getString("a") == "new")
    }

    /// A reader that had to build an index of its own (no usable file when it
    /// opened) switches to the shared file once a writer has built it, and then
    /// sees writes without `refresh()`.
    @Test func aReaderWithAnIndexOfItsOwnMovesToTheSharedFileOnceThereIsOne() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("s")
        let first = try Store(path: path, options: Self.options())
        try first.put("a", "1")
        try first.close()
        forgetIndex(path)
        let reader = try Store(path: path, options: .reader)
        #expect(reader.state.index.path == nil)
        #expect(try reader.getString("a") == "1")
        let writer = try Store(path: path, options: Self.options())
        try writer.put("b", "2")
        let deadline = Date().addingTimeInterval(5)
        var seen: String?
        while seen == nil && Date() < deadline {
            seen = try reader.getString("b")
            if seen == nil { usleep(20_000) }
        }
        #expect(seen == "2")
        #expect(reader.state.index.path != nil)
        try writer.put("c", "3")
        #expect(try reader.getString("c") == "3")
        try writer.close()
    }

    /// A reader in another Store (its own mapping, as another process has)
    /// reads while a writer overwrites, deletes, grows the table and compacts:
    /// every value it reads is one the key had, never older than one it read before.
    @Test func aReaderNeverGoesBackInTimeWhileTheWriterChurns() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("s")
        let writer = try Store(path: path, options: Self.options())
        try writer.put("key-0", "0")
        let reader = try Store(path: path, options: .reader)
        #expect(reader.state.index.path != nil)
        let done = Atomic<Bool>(false)
        let keys = 3000
        let thread = Thread {
            var version = 0
            while version < 40_000 {
                version += 1
                let key = "key-\(version * 7 % keys)"
                if version % 13 == 0 {
                    _ = try? writer.delete(key)
                } else {
                    _ = try? writer.put(key, "\(version)")
                }
                if version % 10_000 == 0 { _ = try? writer.compact() }
            }
            done.store(true, ordering: .releasing)
        }
        thread.start()
        var seen = [Int](repeating: 0, count: keys)
        var reads = 0
        var problems: [String] = []
        while !done.load(ordering: .acquiring) || reads < 1000 {
            let k = reads * 31 % keys
            reads += 1
            guard let text = try reader.getString("key-\(k)") else { continue }
            guard let version = Int(text), version * 7 % keys == k || (k == 0 && version == 0) else {
                problems.append("key-\(k) read \(text), which it never had")
                continue
            }
            if version < seen[k] { problems.append("key-\(k) read \(version) after \(seen[k])") }
            seen[k] = version
        }
        #expect(problems.isEmpty, "\(problems.prefix(5))")
        #expect(reader.state.index.path != nil, "the reader fell back to an index of its own")
        try writer.close()
    }
}

/// The index file's layout as kvfile(5) gives it: an independent reader must be able to compute the same hash.
@Suite struct IndexLogEndTests {
    /// Defect (review of eedb157): a roll no write made — compaction sealing the
    /// active segment, the upgrade of an older one — left the index's log end in
    /// the sealed (cut, or compacted away) segment, so every reader open built an
    /// index of its own until the writer's next write.
    @Test func readersUseTheSharedIndexAfterACompactionThatSealedTheActiveSegment() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("s")
        let writer = try Store(path: path, options: IndexFileTests.options())
        for i in 0..<200 { try writer.put("k\(i)", "v\(i)") }
        for i in 0..<100 { try writer.put("k\(i)", "w\(i)") }
        _ = try writer.compact()
        let reader = try Store(path: path, options: StoreOptions(readOnly: true))
        #expect(reader.state.index.path != nil, "the reader built an index of its own")
        #expect(try reader.getString("k5") == "w5" && reader.count == 200)
        try reader.close()
        try writer.close()
    }
}

@Suite struct WriterDamageTests {
    /// Defect: the writer's own lookups went past a damaged record, so a
    /// store's writer (kvfile serve's GET, an embedding tool) answered "no
    /// value" for a key whose record was damaged, and a conditional write
    /// (put --if-absent) held. Reads now fail as corruption, and writes of such
    /// a key are refused.
    @Test func theWritersReadsAndWritesOfADamagedKeyFailAsCorruption() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("s")
        do {
            let store = try Store(path: path, options: IndexFileTests.options())
            for (key, value) in [("alpha", "AAAA"), ("beta", "BBBB"), ("gamma", "GGGG")] { try store.put(key, value) }
            try store.close()
        }
        let segment = path + "/" + FileNames.segment(1)
        var content = fileBytes(segment)
        let at = try #require((0..<(content.count - 4)).first { Array(content[$0..<($0 + 4)]) == bytes("beta") })
        content[at + 1] = UInt8(ascii: "X")
        writeFile(segment, content)
        let writer = try Store(path: path, options: IndexFileTests.options())
        #expect(throws: KVFileError.self) { try writer.get("beta") }
        #expect(throws: KVFileError.self) { try writer.putIfAbsent(bytes("beta"), bytes("new")) }
        #expect(try writer.getString("alpha") == "AAAA")
        try writer.close()
    }
}

@Suite struct IndexFormatTests {
    @Test func theKeyHashIsTheOneTheManualPageSpecifies() throws {
        let hash = bytes("hello").withUnsafeBytes { KeyHash.hash($0.baseAddress!, $0.count, seed: 0) }
        let page = try String(contentsOfFile: #filePath.replacingOccurrences(of: "Tests/KVFileTests/IndexFileTests.swift", with: "man/kvfile.5"), encoding: .utf8)
        #expect(page.contains("is 0x" + String(hash, radix: 16) + "."), "hash of hello with seed 0 is 0x\(String(hash, radix: 16))")
        // Keys of 8 bytes and more use the little-endian words.
        let long = bytes("0123456789abcdef!").withUnsafeBytes { KeyHash.hash($0.baseAddress!, $0.count, seed: 7) }
        #expect(long != hash)
    }

    @Test func aSlotPacksOffsetSegmentAndTag() {
        let slot = IndexFormat.slot(segment: 0xABCDEF, offset: 0x1234_5678, hash: UInt64.max)
        #expect(IndexFormat.offset(slot) == 0x1234_5678)
        #expect(IndexFormat.segment(slot) == 0xABCDEF)
        #expect(IndexFormat.slotTag(slot) == 0x7F)
        #expect(slot >> 63 == 0)
        #expect(IndexFormat.tableBytes(capacity: 1024) == 8192 + 4096)
    }
}

@Suite struct IndexLimitTests {
    /// Defect guard: a slot has 24 bits for the segment number; a store past
    /// that must refuse to roll with an error, not name the wrong segment.
    @Test func aSegmentNumberPastWhatASlotHoldsIsRefused() throws {
        let dir = TemporaryDirectory()
        #expect { try SegmentWriter.createSegment(id: IndexFormat.maxSegmentID + 1, baseSeq: 1, directory: dir.path, capacity: 4096) } throws: {
            ($0 as? KVFileError)?.code == .capacityExhausted && ($0 as? KVFileError)?.message.contains("segment numbers") == true
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).isEmpty, "a file was made")
    }
}

@Suite struct IndexMigrationCrashTests {
    /// Review finding (fixed before release): a writer killed in the middle of
    /// a step of a resize, after copying a slot into the new table and before
    /// marking it deleted in the old one, left the key in two slots once the
    /// next writer replayed the step; deleting the key then uncovered the
    /// second copy with its old value. The file is put in exactly that state here.
    @Test func aCopyLeftByAWriterKilledMidMigrationIsNotReplayed() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("s")
        var options = StoreOptions()
        options.autoCompaction = nil
        let store = try Store(path: path, options: options)
        var model: [[UInt8]: [UInt8]] = [:]
        var i = 0
        repeat {
            let key = bytes("key-\(i)")
            try store.put(key, bytes("v\(i)"))
            model[key] = bytes("v\(i)")
            i += 1
        } while !store.state.index.isResizing || i < 800
        try #require(store.state.index.isResizing)
        store.abandonForCrashTest()

        let indexPath = path + "/" + IndexFormat.fileName
        var index = fileBytes(indexPath)
        func u64(_ at: Int) -> UInt64 { index.withUnsafeBytes { $0.baseAddress!.loadLE(at: at, as: UInt64.self) } }
        let seed = u64(IndexFormat.seedAt)
        let table = Int(u64(IndexFormat.tableAt)), capacity = Int(u64(IndexFormat.capacityAt))
        let oldTable = Int(u64(IndexFormat.oldTableAt)), migrated = Int(u64(IndexFormat.migratedAt))
        try #require(oldTable != 0)
        // The next old slot the following step would move, and its key (read from the log).
        let (oldIndex, slot) = try #require((migrated..<(migrated + 16)).lazy.map { ($0, u64(oldTable + $0 * 8)) }.first { $0.1 > 1 })
        let segment = fileBytes(path + "/" + FileNames.segment(IndexFormat.segment(slot)))
        let header = try #require(segment.withUnsafeBytes { raw -> RecordHeader? in
            RecordCodec.peek(raw.baseAddress! + Int(IndexFormat.offset(slot)), available: raw.count - Int(IndexFormat.offset(slot)))
        })
        let keyStart = Int(IndexFormat.offset(slot)) + header.keyOffset
        let key = Array(segment[keyStart..<(keyStart + header.keyLength)])
        // Copied into the new table as a move does, the old slot not yet marked: the crash point.
        var target = Int(truncatingIfNeeded: key.withUnsafeBytes { KeyHash.hash($0.baseAddress!, $0.count, seed: seed) }) & (capacity - 1)
        while u64(table + target * 8) > 1 { target = (target + 1) & (capacity - 1) }
        index.withUnsafeMutableBytes { $0.baseAddress!.storeLE(slot, at: table + target * 8) }
        _ = oldIndex
        // And the last put not yet in the index (its record appended, its slot not stored): the next
        // writer applies it from the log, which moves slots — the copy above must not be moved again.
        let activeID = UInt32(truncatingIfNeeded: u64(IndexFormat.logEndAt) >> 32)
        let last = try #require(recordOffsets(path + "/" + FileNames.segment(activeID)).last)
        for (start, count) in [(table, capacity), (oldTable, Int(u64(IndexFormat.oldCapacityAt)))] {
            for s in 0..<count where u64(start + s * 8) > 1 {
                let value = u64(start + s * 8)
                if IndexFormat.segment(value) == activeID && Int(IndexFormat.offset(value)) == last.offset {
                    index.withUnsafeMutableBytes { $0.baseAddress!.storeLE(UInt64(1), at: start + s * 8) }
                }
            }
        }
        index.withUnsafeMutableBytes { $0.baseAddress!.storeLE(UInt64(activeID) << 32 | UInt64(last.offset), at: IndexFormat.logEndAt) }
        // With the next sequence number that went with that end (the record before it holds the one before).
        index.withUnsafeMutableBytes { $0.baseAddress!.storeLE(last.seq, at: IndexFormat.nextSeqAt) }
        writeFile(indexPath, index)
        let inode = inodeNumber(indexPath)

        let writer = try Store(path: path, options: options)
        // It resumed the index (finishing the resize step), not built a new file.
        #expect(inodeNumber(indexPath) == inode)
        #expect(try writer.get(key) == model[key])
        // More writes (moving the rest of the table), then the key deleted: it must stay deleted.
        for j in 0..<400 { try writer.put(bytes("more-\(j)"), bytes("m")); model[bytes("more-\(j)")] = bytes("m") }
        try writer.delete(key)
        model[key] = nil
        #expect(try writer.get(key) == nil, "a deleted key came back from a second slot")
        #expect(try contents(writer) == model)
        try writer.close()
        #expect(try Store(path: path, options: .reader).get(key) == nil)
    }
}
