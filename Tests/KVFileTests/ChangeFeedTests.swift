import Foundation
import Synchronization
import Testing
@testable import KVFile

/// What a model of the store predicts the feed must say for a sequence of writes.
struct FeedModel {
    var values: [[UInt8]: [UInt8]] = [:]
    var events: [ChangeEvent] = []
    var seq: UInt64

    init(startSeq: UInt64 = 0) { seq = startSeq }

    mutating func put(_ key: String, _ value: String) {
        let k = bytes(key), v = bytes(value)
        seq += 1
        let old = values[k]
        events.append(ChangeEvent(topic: old == nil ? .created : .updated, seq: seq, timestamp: 0, key: k, newValue: v, oldValue: old))
        values[k] = v
    }

    mutating func delete(_ key: String) {
        let k = bytes(key)
        guard let old = values[k] else { return }
        seq += 1
        events.append(ChangeEvent(topic: .deleted, seq: seq, timestamp: 0, key: k, newValue: nil, oldValue: old))
        values[k] = nil
    }
}

func withoutTimestamps(_ events: [ChangeEvent]) -> [ChangeEvent] {
    events.map { var e = $0; e.timestamp = 0; return e }
}

/// Polls until `count` events arrived or 5 s passed.
func collect(_ tailer: LogTailer, count: Int) throws -> [ChangeEvent] {
    var events: [ChangeEvent] = []
    let deadline = Date().addingTimeInterval(5)
    while events.count < count && Date() < deadline {
        events += try tailer.poll()
        if events.count < count { tailer.wait(milliseconds: 50) }
    }
    return events
}

@Suite struct ChangeFeedTests {
    func smallSegments() -> StoreOptions {
        var options = StoreOptions()
        options.segmentSize = 4096
        return options
    }

    @Test func createdUpdatedDeletedWithExactOldValues() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("feed")
        let store = try Store(path: path, options: smallSegments())
        try store.put("existing", "before")
        let tailer = try LogTailer(path: path, start: .now)
        var model = FeedModel(startSeq: 1)
        model.values[bytes("existing")] = bytes("before")
        try store.put("artists", "Cesária"); model.put("artists", "Cesária")
        try store.put("artists", "Cesária, Mayra"); model.put("artists", "Cesária, Mayra")
        try store.delete("artists"); model.delete("artists")
        try store.delete("artists")  // absent: no record, no event
        try store.put("existing", "after"); model.put("existing", "after")
        var batch = WriteBatch()
        batch.put("b1", "one"); batch.put("b1", "two"); batch.delete("existing"); batch.delete("never")
        try store.write(batch)
        model.put("b1", "one"); model.put("b1", "two"); model.delete("existing")
        let events = try collect(tailer, count: model.events.count)
        #expect(withoutTimestamps(events) == model.events)
        #expect(events.allSatisfy { $0.timestamp > 1_700_000_000_000 })
        #expect(try tailer.poll().isEmpty)
    }

    @Test func followsRollsAndCompactionsWithoutRepeatsOrGaps() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("roll")
        let store = try Store(path: path, options: smallSegments())
        let tailer = try LogTailer(path: path, start: .now)
        var model = FeedModel()
        var delivered: [ChangeEvent] = []
        for round in 0..<6 {
            for i in 0..<150 {
                let key = "k\(i % 40)"
                if i % 9 == 0 { try store.delete(key); model.delete(key) } else {
                    let value = "r\(round) i\(i) " + String(repeating: "x", count: i % 30)
                    try store.put(key, value); model.put(key, value)
                }
                if i % 50 == 0 { delivered += try tailer.poll() }
            }
            if round % 2 == 1 { try store.compact() }
        }
        delivered += try collect(tailer, count: model.events.count - delivered.count)
        #expect(withoutTimestamps(delivered) == model.events)
        #expect(tailer.lastSeq == model.seq)
    }

    @Test func resumingAfterASeqDeliversEverythingAfterIt() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("resume")
        let store = try Store(path: path, options: smallSegments())
        var model = FeedModel()
        for i in 0..<300 {
            let key = "k\(i % 25)"
            if i % 7 == 0 { try store.delete(key); model.delete(key) } else { try store.put(key, "v\(i)"); model.put(key, "v\(i)") }
        }
        for resumeAt in [UInt64(0), 1, 57, model.seq - 1, model.seq] {
            let tailer = try LogTailer(path: path, start: .after(seq: resumeAt))
            let expected = model.events.filter { $0.seq > resumeAt }
            #expect(withoutTimestamps(try collect(tailer, count: expected.count)) == expected, "resume at \(resumeAt)")
        }
        let everything = try LogTailer(path: path, start: .beginning)
        #expect(withoutTimestamps(try collect(everything, count: model.events.count)) == model.events)
    }

    @Test func resumingIntoCompactedHistoryFailsLoudly() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("compacted")
        let store = try Store(path: path, options: smallSegments())
        for i in 0..<200 { try store.put("k\(i % 10)", "v\(i)") }
        try store.compact()
        let floor = try store.stats().newestSeq
        for i in 0..<5 { try store.put("after\(i)", "x") }
        do {
            _ = try LogTailer(path: path, start: .after(seq: 10))
            Issue.record("resume into compacted history succeeded")
        } catch {
            #expect(error.code == .historyCompacted)
            #expect(error.message.contains("seq \(floor)"))
        }
        // At the floor it works, and .beginning starts there.
        let atFloor = try LogTailer(path: path, start: .after(seq: floor))
        #expect(try collect(atFloor, count: 5).map(\.seq) == Array((floor + 1)...(floor + 5)))
        let beginning = try LogTailer(path: path, start: .beginning)
        let fromStart = try collect(beginning, count: 5)
        #expect(fromStart.map(\.topic) == Array(repeating: .created, count: 5))
        // A compaction that removes everything still leaves its floor behind.
        try store.delete("after0")
        try store.compact()
        #expect { try LogTailer(path: path, start: .after(seq: floor + 2)) } throws: { ($0 as? KVFileError)?.code == .historyCompacted }
    }

    @Test func aLaggingTailerSurvivesACompactionOfWhatItStillHadOpen() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("lag")
        let store = try Store(path: path, options: smallSegments())
        try store.put("a", "0")
        let tailer = try LogTailer(path: path, start: .now)
        var model = FeedModel(startSeq: 1)
        model.values[bytes("a")] = bytes("0")
        // Writes the tailer has not read yet, then a compaction that drops the overwritten ones.
        for i in 1...20 { try store.put("a", "\(i)"); model.put("a", "\(i)") }
        try store.compact()
        try store.put("a", "last"); model.put("a", "last")
        let events = try collect(tailer, count: model.events.count)
        #expect(withoutTimestamps(events) == model.events)
    }
}

@Suite struct ChangeStreamTests {
    @Test func theAsyncSequenceDeliversTheSameEvents() async throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("stream")
        let store = try Store(path: path)
        try store.put("seed", "0")
        let stream = store.changes(from: .after(seq: 0))
        let writer = Task {
            try store.put("a", "1")
            try store.put("a", "2")
            try store.delete("seed")
        }
        try await writer.value
        var seen: [ChangeEvent] = []
        for try await event in stream {
            seen.append(event)
            if seen.count == 4 { break }
        }
        #expect(seen.map(\.topic) == [.created, .created, .updated, .deleted])
        #expect(seen.map(\.seq) == [1, 2, 3, 4])
        #expect(seen[2].oldValue == bytes("1"))
        #expect(seen[3].oldValue == bytes("0"))
    }
}

/// Regression (found by the soak test): a segment listed by the tailer but
/// removed by a compaction before the tailer opened it made `poll()` fail
/// with ENOENT, and `kvfile watch` exit. The tailer now lists again.
@Suite struct TailerRaceTests {
    @Test func aSegmentThatVanishesBetweenListingAndOpeningIsLookedForAgain() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("race")
        var options = StoreOptions()
        options.segmentSize = 4096
        options.autoCompaction = nil
        let store = try Store(path: path, options: options)
        try store.put("first", "1")
        let tailer = try LogTailer(path: path, start: .now)
        var random = SeededRandom(seed: 3)
        for index in 0..<100 { try store.put(bytes("k\(index)"), (0..<90).map { _ in UInt8.random(in: 0...255, using: &random) }) }
        #expect(segmentFiles(path).count > 2)
        // The next open of any segment the tailer does not know yet fails as if just removed.
        let faults = IOFaults.install(directory: path)
        defer { faults.uninstall() }
        let failed = Mutex(Set<String>())
        faults.setRule { call, file in
            guard call == .open, file.hasSuffix(".kvseg") else { return nil }
            return failed.withLock { $0.insert(file).inserted } ? ENOENT : nil
        }
        let events = try tailer.poll()
        #expect(events.map(\.seq) == Array(2...101))
        #expect(!failed.withLock { $0 }.isEmpty)
    }

    /// Regression (2026-12-01, `kvfile watch` beside a writer that rolled): a
    /// reader scanned a rolled segment whose seal had not finished through its
    /// mapping, the seal cut the reserved space off meanwhile, and reading the
    /// zeros past the records faulted (SIGBUS) instead of ending the scan there.
    @Test func aReaderScanningASegmentItsSealCutsMeanwhileDoesNotFault() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("seal-cut")
        var options = StoreOptions()
        options.segmentSize = 64 << 10
        options.autoCompaction = nil
        let store = try Store(path: path, options: options)
        var random = SeededRandom(seed: 11)
        // 40 KB each, incompressible: one per segment, pages of reserved space after it.
        for index in 0..<3 { try store.put(bytes("k\(index)"), (0..<(40 << 10)).map { _ in UInt8.random(in: 0...255, using: &random) }) }
        store.abandonForCrashTest()
        // Segment 1 as between the writer's roll and its seal: no hint file yet,
        // the file still as long as the space reserved for records and map.
        let segment = path + "/" + FileNames.segment(1)
        let recordsEnd = fileBytes(segment).count
        unlink(path + "/" + FileNames.hint(1))
        let header = try #require(extendAsRolled(segment, id: 1))
        try #require(Int(header.mapOffset) > recordsEnd + 2 * 4096)  // whole pages of zeros between records and map
        // The seal's cut lands after the reader sized and mapped the file, before it scans.
        let faults = IOFaults.install(directory: path)
        defer { faults.uninstall() }
        let cut = Mutex(false)
        faults.setRule { call, file in
            if call == .map, file == segment, !cut.withLock({ $0 }) {
                cut.withLock { $0 = true }
                _ = truncate(segment, off_t(recordsEnd))
            }
            return nil
        }
        let tailer = try LogTailer(path: path, start: .beginning)
        #expect(cut.withLock { $0 })
        let events = try collect(tailer, count: 3)
        #expect(events.map(\.key) == [bytes("k0"), bytes("k1"), bytes("k2")])
        // Once more, and the reader knows where the cut file's records end (not where the map began).
        #expect(extendAsRolled(segment, id: 1) != nil)
        cut.withLock { $0 = false }
        var loader = StoreLoader(directory: path, writer: false, segmentSize: options.segmentSize)
        let state = try StoreDirectory.load(names: Syscalls.listDirectory(path), loader: &loader).state
        #expect(cut.withLock { $0 })
        #expect(state.segment(1)?.length == recordsEnd)
    }

    /// Regression (kvfile-bench watchlatency, 2026-11-24): a reader copying the
    /// active segment while the writer stored records saw one record unfinished
    /// with finished ones after it, and reported the store as corrupt.
    @Test func aRecordCaughtHalfWrittenWithFinishedOnesAfterItIsNotDamage() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("torn-copy")
        let store = try Store(path: path)
        try store.put("first", "1")
        let tailer = try LogTailer(path: path, start: .now)
        let reader = try Store(path: path, options: .reader)
        for index in 0..<5 { try store.put("k\(index)", "value \(index)") }
        // The first copy of each reader's next read shows the record there with its
        // head not stored yet, as a copy racing the writer's memcpy can.
        let faults = IOFaults.install(directory: path)
        defer { faults.uninstall() }
        let torn = Mutex(Set<Int>())
        faults.setReadFilter { file, offset, bytes in
            guard file.hasSuffix(".kvseg"), offset > RecordFormat.segmentHeaderSize, bytes.count > 8,
                  torn.withLock({ $0.insert(offset).inserted }) else { return }
            for i in 0..<8 { bytes[i] = 0 }
        }
        // Read as not written yet (nothing proves records after it), then read whole.
        let events = try collect(tailer, count: 5)
        #expect(events.map(\.seq) == Array(2...6))
        try reader.refresh()
        try reader.refresh()
        #expect(try reader.getString("k4") == "value 4")
        #expect(!torn.withLock { $0 }.isEmpty, "no read was torn")

        // Damage that stays, with records after it in later blocks (the block
        // map proves them), is reported, with its offset.
        let victim = try store.stats().segmentDetails.last!.bytes + 30
        for index in 0..<400 { try store.put("later\(index)", "value \(index) " + String(repeating: "z", count: 40)) }
        faults.setReadFilter { file, offset, bytes in
            guard file.hasSuffix(".kvseg"), offset <= victim, offset + bytes.count > victim else { return }
            bytes[victim - offset] ^= 0x40
        }
        #expect { try tailer.poll() } throws: { ($0 as? KVFileError)?.code == .corrupt }
    }
}

@Suite struct FeedTrustTests {
    /// Defect: `changes()` buffered with `.bufferingNewest`, so a consumer
    /// that fell behind lost the *oldest* buffered events before the error
    /// arrived, and resuming after the last event it handled skipped them.
    @Test func aLaggingChangesConsumerGetsEveryEventBeforeTheError() async throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("lag")
        let store = try Store(path: path)
        try store.put("seed", "0")
        let stream = store.changes(from: .after(seq: 1))
        // Far more events than the stream buffers, while nobody reads.
        let total = Store.changeBufferLimit + 5_000
        for i in 0..<total { try store.put("k\(i % 100)", "v\(i)") }
        try store.sync()
        // Give the feed thread time to read the whole log and overflow.
        try await Task.sleep(nanoseconds: 1_500_000_000)
        var seqs: [UInt64] = []
        var ending: KVFileError?
        do {
            for try await event in stream { seqs.append(event.seq) }
        } catch {
            ending = error as? KVFileError
        }
        #expect(ending?.code == .consumerTooSlow)
        #expect(seqs.first == 2, "the oldest events were dropped")
        #expect(seqs == Array(2...(1 + UInt64(seqs.count))), "events are not contiguous")
        #expect(seqs.count == Store.changeBufferLimit)
        try store.close()
    }

    /// Defect: a gap in sequence numbers (records a crash lost before they
    /// were acknowledged) stalled every tailer forever, waiting for the missing ones.
    @Test func aTailerGoesOnAfterAGapTheLogCanNoLongerFill() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("gap")
        let store = try Store(path: path)
        try store.put("a", "1")                   // seq 1
        store.lock.withWriteLock { store.state.nextSeq += 3 }  // 2...4 never written, as after such a crash
        try store.put("b", "2")                   // seq 5
        try store.sync()
        let tailer = try LogTailer(path: path, start: .beginning)
        let events = try collect(tailer, count: 2)
        #expect(events.map(\.seq) == [1, 5])
        try store.put("c", "3")
        #expect(try collect(tailer, count: 1).map(\.seq) == [6])
        try store.close()
    }
}

@Suite struct SharedTailerTests {
    /// Defect: `LogTailer` claimed `Sendable` with unguarded mutable state,
    /// so two threads polling one tailer raced (ThreadSanitizer flags it;
    /// events could be delivered twice or lost). Polls now take turns.
    @Test func twoThreadsPollingOneTailerShareEveryEventExactlyOnce() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("shared")
        let store = try Store(path: path)
        try store.put("seed", "0")
        let tailer = try LogTailer(path: path, start: .now)
        let total = 2_000
        let seen = Locked<[UInt64]>([])
        let done = Locked(false)
        let group = DispatchGroup()
        for _ in 0..<2 {
            group.enter()
            Thread {
                defer { group.leave() }
                while !done.withLock({ $0 }) {
                    guard let events = try? tailer.poll() else { return }
                    seen.withLock { $0 += events.map(\.seq) }
                    if events.isEmpty { tailer.wait(milliseconds: 5) }
                }
            }.start()
        }
        for i in 0..<total { try store.put("k\(i % 50)", "v\(i)") }
        let deadline = Date().addingTimeInterval(20)
        while seen.withLock({ $0.count }) < total && Date() < deadline { usleep(10_000) }
        done.withLock { $0 = true }
        group.wait()
        let seqs = seen.withLock { $0 }
        #expect(seqs.count == total)
        #expect(Set(seqs).count == seqs.count, "an event was delivered twice")
        #expect(seqs.sorted() == Array(2...UInt64(total + 1)))
        #expect(tailer.lastSeq == UInt64(total + 1))
        try store.close()
    }
}
