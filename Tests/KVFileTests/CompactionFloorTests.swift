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
        #expect(withoutTimestamps(events) == model.events)
        #expect(try tailer.poll().isEmpty)
    }
}
