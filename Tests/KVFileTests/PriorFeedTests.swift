import Foundation
import Testing
@testable import KVFile

/// The change feed learns old values from records' priors (kvfile(5), "Change
/// events"): a tailer starting from now or from a point in the log reads only
/// the segments that may hold later records, and loads an index of every key
/// only when a record names no usable prior.
@Suite struct PriorFeedTests {
    func smallSegments() -> StoreOptions {
        var options = StoreOptions()
        options.segmentSize = 4096
        return options
    }

    /// A store of 200 keys over many 4 KiB segments, each written once, and its model
    /// (without the events of those writes unless `keepingEvents`).
    func filledStore(keepingEvents: Bool = false) throws -> (dir: TemporaryDirectory, path: String, store: Store, model: FeedModel) {
        let dir = TemporaryDirectory()
        let path = dir.sub("store")
        let store = try Store(path: path, options: smallSegments())
        var model = FeedModel()
        for i in 0..<200 {
            // Values LZ4 cannot shrink, so that the keys spread over many segments.
            let value = "first \(i) " + String((0..<80).map { Character(UnicodeScalar(UInt8(33 + (i * 31 + $0 * $0 * 17) % 90))) })
            try store.put("key\(i)", value)
            model.put("key\(i)", value)
        }
        if !keepingEvents { model.events = [] }
        return (dir, path, store, model)
    }

    /// Updates, deletes, a batch writing a key twice and a delete then put of another,
    /// all of keys whose records lie in segments the tailer never read.
    func writeChanges(_ store: Store, _ model: inout FeedModel) throws {
        for i in stride(from: 0, to: 200, by: 7) {
            try store.put("key\(i)", "second \(i)")
            model.put("key\(i)", "second \(i)")
        }
        for i in stride(from: 3, to: 200, by: 11) {
            try store.delete("key\(i)")
            model.delete("key\(i)")
        }
        var batch = WriteBatch()
        batch.put("key1", "in batch 1")
        batch.put("key1", "in batch 2")
        batch.delete("key2")
        batch.put("key2", "back")
        batch.delete("key1")
        try store.write(batch)
        model.put("key1", "in batch 1")
        model.put("key1", "in batch 2")
        model.delete("key2")
        model.put("key2", "back")
        model.delete("key1")
    }

    @Test func aTailerFromNowReadsOnlyTheActiveSegmentAndGivesExactOldValues() throws {
        var (dir, path, store, model) = try filledStore()
        defer { _ = dir }
        let segments = try FileManager.default.contentsOfDirectory(atPath: path).filter { $0.hasSuffix(".kvseg") }.count
        #expect(segments > 5)
        let tailer = try LogTailer(path: path, start: .now)
        // Not even the active segment: the index says where the log ends.
        #expect(tailer.followsPriors && tailer.indexedKeys == 0 && tailer.segmentsRead == 0)
        #expect(tailer.lastSeq == 200)
        try writeChanges(store, &model)
        let events = try collect(tailer, count: model.events.count)
        #expect(withoutTimestamps(events) == model.events)
        // Still no index of every key: every old value came from a prior.
        #expect(tailer.followsPriors && tailer.indexedKeys == 0)
        try store.close()
    }

    @Test func aResumeInTheLogReadsOnlyTheSegmentsAfterIt() throws {
        var (dir, path, store, model) = try filledStore()
        defer { _ = dir }
        try writeChanges(store, &model)
        let (resumeAt, expected) = (model.events[10].seq - 1, Array(model.events[10...]))
        let tailer = try LogTailer(path: path, start: .after(seq: resumeAt))
        #expect(tailer.followsPriors && tailer.indexedKeys == 0)
        // One segment read at a time: the one the resume point is in first.
        #expect(tailer.segmentsRead == 1)
        #expect(withoutTimestamps(try collect(tailer, count: expected.count)) == expected)
        #expect(tailer.followsPriors && tailer.indexedKeys == 0)
        try store.close()
    }

    /// A resume far back holds one segment's records at a time, and still gives every event in order.
    @Test func aResumeFarBackReadsTheLogASegmentAtATime() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("store")
        var model = FeedModel()
        let store = try Store(path: path, options: smallSegments())
        for i in 0..<400 {
            let value = "v\(i) " + String((0..<60).map { Character(UnicodeScalar(UInt8(33 + (i * 7 + $0 * $0 * 13) % 90))) })
            try store.put("key\(i % 150)", value)
            model.put("key\(i % 150)", value)
        }
        try store.close()
        let tailer = try LogTailer(path: path, start: .after(seq: 1))
        let segments = try FileManager.default.contentsOfDirectory(atPath: path).filter { $0.hasSuffix(".kvseg") }.count
        #expect(segments > 5 && tailer.unreadSegments == segments - 1)
        var events: [ChangeEvent] = []
        for _ in 0..<1000 where events.count < 399 { events += try tailer.poll() }
        #expect(withoutTimestamps(events) == Array(model.events.dropFirst()))
        #expect(tailer.unreadSegments == 0 && tailer.followsPriors && tailer.indexedKeys == 0)
    }

    /// The segments a resume far back has not read yet may be compacted away
    /// meanwhile: the tailer holds them open and reads them all the same.
    @Test func aCompactionDuringAResumeFarBackLosesNoEvent() throws {
        var (dir, path, store, model) = try filledStore(keepingEvents: true)
        defer { _ = dir }
        try writeChanges(store, &model)
        let tailer = try LogTailer(path: path, start: .after(seq: 1))
        #expect(tailer.unreadSegments > 3)
        _ = try store.compact()
        try store.put("key9", "after the compaction")
        model.put("key9", "after the compaction")
        let expected = Array(model.events.dropFirst())
        let events = try collect(tailer, count: expected.count)
        #expect(withoutTimestamps(events) == expected)
        #expect(tailer.followsPriors && tailer.indexedKeys == 0)
        try store.close()
    }

    /// Records in segments a tailer never held, compacted away before it looked: an error, never a silent gap.
    @Test func segmentsCompactedAwayBeforeTheTailerSawThemAreHistoryCompacted() throws {
        var (dir, path, store, model) = try filledStore()
        defer { _ = dir }
        let tailer = try LogTailer(path: path, start: .now)
        try writeChanges(store, &model)
        for i in 0..<200 {
            try store.put("key\(i)", "third \(i) " + String(repeating: "x", count: 90))
            model.put("key\(i)", "third \(i) " + String(repeating: "x", count: 90))
        }
        _ = try store.compact()
        // What the segment it held gave goes out first; then the error, naming the last event delivered.
        let delivered = try tailer.poll()
        #expect(!delivered.isEmpty && withoutTimestamps(delivered) == Array(model.events.prefix(delivered.count)))
        #expect { _ = try tailer.poll() } throws: { error in
            guard let error = error as? KVFileError, error.code == .historyCompacted, let last = delivered.last else { return false }
            return error.message.contains("after seq \(last.seq) ")
        }
        try store.close()
    }

    @Test func aCompactionDoesNotMakeTheTailerLoadEveryKey() throws {
        var (dir, path, store, model) = try filledStore()
        defer { _ = dir }
        let tailer = try LogTailer(path: path, start: .now)
        try writeChanges(store, &model)
        let before = try collect(tailer, count: model.events.count)
        #expect(withoutTimestamps(before) == model.events)
        _ = try store.compact()
        model.events = []
        for i in stride(from: 5, to: 200, by: 13) where i % 11 != 3 {
            try store.put("key\(i)", "after compaction \(i)")
            model.put("key\(i)", "after compaction \(i)")
        }
        #expect(withoutTimestamps(try collect(tailer, count: model.events.count)) == model.events)
        #expect(tailer.followsPriors && tailer.indexedKeys == 0)
        try store.close()
    }

    /// From now starts where the index file says the log ends, without
    /// reading the active segment, only when that index describes this very
    /// log; an index of another copy of the store, one behind the log, or none
    /// make the tailer read the segment itself.
    @Test func fromNowTrustsTheIndexsLogEndOnlyWhenItDescribesThisLog() throws {
        let dir = TemporaryDirectory()
        let a = dir.sub("a"), b = dir.sub("b")
        var options = StoreOptions()
        options.autoCompaction = nil
        do {
            let store = try Store(path: a, options: options)
            for i in 0..<100 { try store.put("k\(i)", "v\(i)") }
            try store.close()
        }
        try FileManager.default.copyItem(atPath: a, toPath: b)
        let indexOf100 = dir.sub("index-of-100")
        try FileManager.default.copyItem(atPath: b + "/kvfile.index", toPath: indexOf100)

        /// Starts a tailer from now, checks what it read, then writes `key` and checks the one event.
        func startThenWrite(_ path: String, segmentsRead: Int, lastSeq: UInt64, key: String, old: String) throws {
            let tailer = try LogTailer(path: path, start: .now)
            #expect(tailer.segmentsRead == segmentsRead, "\(path)")
            #expect(tailer.lastSeq == lastSeq, "\(path)")
            let writer = try Store(path: path, options: options)
            try writer.put(key, "new")
            try writer.close()
            let events = try collect(tailer, count: 1) + tailer.poll()
            #expect(events.map(\.seq) == [lastSeq + 1], "\(path)")
            #expect(events.map(\.topic) == [.updated] && events.first?.oldValue == bytes(old), "\(path)")
        }
        // Closed cleanly: nothing to read.
        try startThenWrite(a, segmentsRead: 0, lastSeq: 100, key: "k5", old: "v5")
        // b with a's index, which names a record past b's last: b's segment is read.
        try FileManager.default.removeItem(atPath: b + "/kvfile.index")
        try FileManager.default.copyItem(atPath: a + "/kvfile.index", toPath: b + "/kvfile.index")
        try startThenWrite(b, segmentsRead: 1, lastSeq: 100, key: "k6", old: "v6")
        // a with an index from before its last write: what follows that index's end is read.
        try FileManager.default.removeItem(atPath: a + "/kvfile.index")
        try FileManager.default.copyItem(atPath: indexOf100, toPath: a + "/kvfile.index")
        try startThenWrite(a, segmentsRead: 1, lastSeq: 101, key: "k7", old: "v7")
        // No index at all.
        try FileManager.default.removeItem(atPath: b + "/kvfile.index")
        try startThenWrite(b, segmentsRead: 1, lastSeq: 101, key: "k8", old: "v8")
    }

    /// A power loss can leave the newest segment file without its header (a roll
    /// does not sync it) until a writer opens the store: from now is still after
    /// the last record of the segment before it, not after that segment's start.
    @Test func fromNowBesideASegmentFileCutShortStartsAfterTheLastRecord() throws {
        let (dir, path, store, _) = try filledStore()
        defer { _ = dir }
        try store.close()
        let ids = FileNames.segmentIDs(in: try FileManager.default.contentsOfDirectory(atPath: path))
        #expect(FileManager.default.createFile(atPath: path + "/" + FileNames.segment(ids.max()! + 1), contents: Data()))
        let tailer = try LogTailer(path: path, start: .now)
        #expect(tailer.lastSeq == 200)
        #expect(try tailer.poll().isEmpty)
        let writer = try Store(path: path, options: smallSegments())
        try writer.put("key7", "after")
        let events = try collect(tailer, count: 1)
        #expect(events.map(\.seq) == [201] && events.first?.topic == .updated)
        #expect(try tailer.poll().isEmpty)
        try writer.close()
    }

    /// Records of version 3 name no prior: the tailer loads an index once and goes on with it.
    @Test func recordsWithoutPriorsMakeTheTailerLoadAnIndexOnce() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("store")
        try FileManager.default.copyItem(atPath: fixturesBase + "/v3/deletes/store", toPath: path)
        // key0..key5 = value0..value5 (seq 1-6), key1 = changed (7), delete key2 (8), delete key4 (9), key4 = back again (10).
        let tailer = try LogTailer(path: path, start: .after(seq: 6))
        #expect(tailer.followsPriors)
        let events = try collect(tailer, count: 4)
        #expect(events.map(\.topic) == [.updated, .deleted, .deleted, .created])
        #expect(events.map { $0.oldValue.map { String(decoding: $0, as: UTF8.self) } } == ["value1", "value2", "value4", nil])
        #expect(!tailer.followsPriors && tailer.indexedKeys == 5)
    }

    /// A prior that names another key's record is not trusted: the old value comes from an index.
    @Test func aPriorNamingAnotherRecordIsNotTrusted() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("store")
        let store = try Store(path: path)
        try store.put("a", "old a")
        try store.put("b", "old b")
        try store.put("a", "new a")
        try store.close()
        // Point the update's prior (record 3) at b's record, with a checksum that matches.
        let segment = path + "/" + FileNames.segment(1)
        var file = try [UInt8](Data(contentsOf: URL(fileURLWithPath: segment)))
        let records = recordStarts(file)
        #expect(records.count == 3)
        let update = records[2]
        let header = file.withUnsafeBytes { RecordCodec.peek($0.baseAddress! + update, available: $0.count - update) }!
        #expect(header.prior == PriorLocation(segment: 1, offset: UInt32(records[0])))
        let priorOffsetAt = update + header.headerLength - 3  // the offset varint, then keylen and stored (1 byte each)
        #expect(Int(file[priorOffsetAt]) == records[0] && records[1] < 128)
        file[priorOffsetAt] = UInt8(records[1])
        file.withUnsafeMutableBytes { raw in
            let p = raw.baseAddress! + update
            p.storeLE(CRC32C.checksum(UnsafeRawPointer(p + 4), header.totalLength - 4), at: 0)
        }
        try Data(file).write(to: URL(fileURLWithPath: segment))
        let tailer = try LogTailer(path: path, start: .after(seq: 2))
        let events = try collect(tailer, count: 1)
        #expect(events.map { $0.oldValue.map { String(decoding: $0, as: UTF8.self) } } == ["old a"])
        #expect(!tailer.followsPriors)
    }

    /// Where each record of a segment file's bytes starts.
    func recordStarts(_ file: [UInt8]) -> [Int] {
        var starts: [Int] = []
        var offset = RecordFormat.segmentHeaderSize
        file.withUnsafeBytes { raw in
            while offset < raw.count, case .record(let header) = RecordCodec.decode(raw.baseAddress! + offset, available: raw.count - offset) {
                starts.append(offset)
                offset += header.totalLength
            }
        }
        return starts
    }
}
