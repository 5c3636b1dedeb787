import Foundation
import Testing
@testable import KVFile

/// The compaction floor (man/kvfile.5, "CHANGE EVENTS") against a writer that
/// keeps writing while compaction copies.
@Suite struct CompactionFloorTests {
    func options(segmentSize: Int = 4096) -> StoreOptions {
        var options = StoreOptions()
        options.segmentSize = segmentSize
        options.autoCompaction = nil  // only the compactions the test runs
        return options
    }

    /// A delete and an update written after compaction planned, before it judged
    /// the records they replace: compaction dropped those records, so the floor
    /// must lie above the writes (it lay below them, and a resume there lost the
    /// delete and called the update a creation).
    @Test func resumingAtTheFloorOfACompactionThatOverlappedWritesLosesNoOldValue() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("overlap")
        let store = try Store(path: path, options: options())
        var model = FeedModel()
        for i in 0..<200 {
            let key = "k\(i % 20)"
            try store.put(key, "v\(i)"); model.put(key, "v\(i)")
        }
        let planned = model.seq
        var during = model
        store.compactionFailpoint = { step in
            guard step == .planned else { return false }
            #expect(throws: Never.self) {
                try store.delete("k0"); during.delete("k0")
                try store.put("k1", "during"); during.put("k1", "during")
            }
            return false
        }
        try store.compact()
        store.compactionFailpoint = nil
        model = during
        #expect(model.seq == planned + 2)
        try store.put("k2", "after"); model.put("k2", "after")
        try store.delete("k3"); model.delete("k3")

        var firstResumable: UInt64?
        for resumeAt in (planned - 2)...model.seq {
            do {
                let tailer = try LogTailer(path: path, start: .after(seq: resumeAt))
                if firstResumable == nil { firstResumable = resumeAt }
                let expected = model.events.filter { $0.seq > resumeAt }
                let events = try collect(tailer, count: expected.count) + tailer.poll()
                #expect(withoutTimestamps(events) == expected, "resume at \(resumeAt)")
            } catch {
                #expect((error as? KVFileError)?.code == .historyCompacted, "resume at \(resumeAt): \(error)")
                #expect(firstResumable == nil, "resume at \(resumeAt) failed after one at \(firstResumable ?? 0) worked")
            }
        }
        // The writes made during the copy are history now; the ones after it are events.
        #expect(firstResumable == planned + 2)
        // A reader from the beginning starts from the same picture.
        let beginning = try LogTailer(path: path, start: .beginning)
        let fromStart = try collect(beginning, count: 2) + beginning.poll()
        #expect(withoutTimestamps(fromStart) == Array(model.events.suffix(2)))
    }

    /// A tailer reading every key that lags by more than a poll delivers when
    /// compaction replaces segments it holds: it delivers what it read first,
    /// then reads the compacted store (it reported history compacted).
    @Test func aTailerOfEveryKeyLaggingMoreThanAPollSurvivesACompaction() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("lagging")
        let store = try Store(path: path, options: options(segmentSize: 1 << 20))
        let tailer = try LogTailer(path: path, start: .beginning)
        var model = FeedModel()
        let count = LogTailer.eventsPerPoll * 5 / 2
        for i in 0..<count {
            let key = "k\(i % 5000)"
            if i % 17 == 0 { try store.delete(key); model.delete(key) } else { try store.put(key, "v\(i)"); model.put(key, "v\(i)") }
        }
        var events = try tailer.poll()
        #expect(events.count == LogTailer.eventsPerPoll)
        try store.compact()
        try store.put("last", "1"); model.put("last", "1")
        events += try collect(tailer, count: model.events.count - events.count)
        #expect(events.count == model.events.count)
        #expect(firstDifference(events, model.events) == nil)
        #expect(try tailer.poll().isEmpty)
    }

    /// The same tailer when compaction also took segments it never listed:
    /// it delivers what it holds, then reports the history gone; it must not
    /// skip the missing records as if a crash had lost them (a review found
    /// that the postponed reload left it judging the gap by an old floor).
    @Test func aTailerOfEveryKeyLaggingMoreThanAPollNeverSkipsWhatACompactionTookBeforeItLooked() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("unseen")
        let store = try Store(path: path, options: options(segmentSize: 1 << 18))
        let tailer = try LogTailer(path: path, start: .beginning)
        var model = FeedModel()
        func write(_ count: Int) throws {
            for _ in 0..<count {
                let i = model.seq
                try store.put("k\(i % 5000)", "v\(i)"); model.put("k\(i % 5000)", "v\(i)")
            }
        }
        try write(LogTailer.eventsPerPoll * 2)
        var events = try tailer.poll()
        let listed = try FileManager.default.contentsOfDirectory(atPath: path).filter { $0.hasSuffix(".kvseg") }.sorted()
        // Segments the tailer has not listed, then a compaction of every sealed one.
        try write(LogTailer.eventsPerPoll * 2)
        let unlisted = try FileManager.default.contentsOfDirectory(atPath: path).filter { $0.hasSuffix(".kvseg") && !listed.contains($0) }
        #expect(unlisted.count >= 2)
        try store.compact()
        try write(3)
        var failure: KVFileError?
        let deadline = Date().addingTimeInterval(10)
        while failure == nil && Date() < deadline {
            do {
                let got = try tailer.poll()
                events += got
                if got.isEmpty { tailer.wait(milliseconds: 50) }
            } catch {
                failure = error
            }
        }
        #expect(failure?.code == .historyCompacted)
        // Every event it gave is the model's, in order, without a gap.
        #expect(events.count > LogTailer.eventsPerPoll && events.count < model.events.count)
        #expect(firstDifference(events, model.events) == nil)
    }

    /// A review found that compaction committed its drops before the writes
    /// that made them possible reached the disk: a power loss right after
    /// it left a key overwritten during the copy with neither value.
    @Test func aPowerLossAfterACompactionThatOverlappedAWriteLeavesTheKeyOldOrNew() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("power")
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        let faults = IOFaults.install(directory: path)
        defer { faults.uninstall() }
        let store = try Store(path: path, options: options())
        for i in 0..<50 { try store.put("k\(i)", "v\(i)") }
        try store.sync()
        store.compactionFailpoint = { step in
            if step == .planned { #expect(throws: Never.self) { try store.put("k1", "during") } }
            return false
        }
        try store.compact()
        store.abandonForCrashTest()
        faults.losePower()
        faults.uninstall()
        let reopened = try Store(path: path, options: options())
        let value = try reopened.get("k1").map { String(decoding: $0, as: UTF8.self) }
        #expect(value == "v1" || value == "during", "k1 after the power loss: \(value ?? "no value")")
        #expect(try reopened.get("k2") == bytes("v2"))
        try reopened.close()
    }

    /// Where `events` first differ from the model's (nil: nowhere), for a short message on failure.
    func firstDifference(_ events: [ChangeEvent], _ expected: [ChangeEvent]) -> String? {
        let events = withoutTimestamps(events)
        guard let at = zip(events, expected).enumerated().first(where: { $0.element.0 != $0.element.1 })?.offset else { return nil }
        return "event \(at): \(events[at]), expected \(expected[at])"
    }
}
