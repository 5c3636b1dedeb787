import Foundation
import Testing
@testable import KVFile

@Suite struct StoreBasicsTests {
    @Test func putGetDeleteAndReopen() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("s.kv")
        do {
            let store = try Store(path: path)
            try store.put("greeting", "hello")
            try store.put("greeting", "hi")
            try store.put("other", "x")
            #expect(try store.getString("greeting") == "hi")
            #expect(try store.delete("other"))
            #expect(try !store.delete("other"))
            #expect(try store.get("other") == nil)
            #expect(store.count == 1)
            try store.close()
        }
        let reopened = try Store(path: path)
        #expect(try reopened.getString("greeting") == "hi")
        #expect(try reopened.get("other") == nil)
        #expect(reopened.count == 1)
        let stats = try reopened.stats()
        #expect(stats.keys == 1)
        #expect(stats.oldestSeq == 1)
        #expect(stats.newestSeq == 4)
        try reopened.put("later", "y")
        #expect(try reopened.stats().newestSeq == 5)
    }

    @Test func binaryKeysAndValuesRoundTrip() throws {
        let dir = TemporaryDirectory()
        let store = try Store(path: dir.sub("b"))
        let key: [UInt8] = [0, 255, 10, 13, 0]
        var random = SeededRandom(seed: 3)
        let value = (0..<100_000).map { _ in UInt8.random(in: 0...255, using: &random) }
        try store.put(key, value)
        try store.put([1], [])
        #expect(try store.get(key) == value)
        #expect(try store.get([1]) == [])
        #expect(try store.contains([1]))
    }

    @Test func limitsAreEnforcedWithClearErrors() throws {
        let dir = TemporaryDirectory()
        let store = try Store(path: dir.sub("l"))
        #expect(throws: KVFileError.self) { try store.put([], [1]) }
        let long = [UInt8](repeating: 97, count: RecordFormat.maxKeyLength + 1)
        do {
            try store.put(long, [1])
            Issue.record("long key accepted")
        } catch {
            #expect(error.code == .invalidArgument)
            #expect(error.message.contains("4096"))
        }
        try store.put([UInt8](repeating: 97, count: RecordFormat.maxKeyLength), [1])
        let huge = [UInt8](repeating: 0, count: RecordFormat.maxValueLength + 1)
        do {
            try store.put(bytes("k"), huge)
            Issue.record("huge value accepted")
        } catch {
            #expect(error.code == .invalidArgument)
        }
    }

    @Test func theLastSequenceNumberIsGivenOutThenWritesAreRefused() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("seq")
        try Store(path: path).close()
        // A segment header whose base sequence number is the last one (as if 2^51 writes had happened).
        let header = SegmentHeader(segmentID: 1, baseSeq: RecordFormat.maxSeq, createdMilliseconds: 1).encoded()
        let handle = try #require(FileHandle(forWritingAtPath: path + "/" + FileNames.segment(1)))
        try handle.write(contentsOf: header)
        try handle.close()
        let store = try Store(path: path)
        #expect(try store.put(bytes("last"), bytes("value")).seq == RecordFormat.maxSeq)
        let seq = try bytes("last").withUnsafeBytes { key in try store.withVersionedValue(forKey: key) { _, seq in seq } }
        #expect(seq == RecordFormat.maxSeq, "the keydir keeps all 51 bits")
        do {
            try store.put(bytes("one more"), bytes("value"))
            Issue.record("a write past the last sequence number was accepted")
        } catch {
            #expect(error.code == .capacityExhausted)
            #expect(error.message.contains("sequence numbers"))
        }
        var batch = WriteBatch()
        batch.put("one more", "value")
        #expect(throws: KVFileError.self) { try store.write(batch) }
        try store.close()
        let reader = try Store(path: path, options: .reader)
        #expect(try reader.getString("last") == "value")
        #expect(try reader.getString("one more") == nil)
    }

    @Test func batchesApplyInOrderAndDecideOperations() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("batch")
        let store = try Store(path: path)
        try store.put("a", "1")
        var batch = WriteBatch()
        batch.put("a", "2")
        batch.put("b", "1")
        batch.delete("b")
        batch.delete("never")
        batch.put("c", "3")
        try store.write(batch)
        #expect(try store.getString("a") == "2")
        #expect(try store.get("b") == nil)
        #expect(try store.getString("c") == "3")
        // put a, then 4 records of the batch (the delete of "never" writes nothing)
        #expect(try store.stats().newestSeq == 5)
        try store.close()
        let reopened = try Store(path: path, options: .reader)
        #expect(try contents(reopened) == [bytes("a"): bytes("2"), bytes("c"): bytes("3")])
    }

    @Test func segmentsRollAndHintFilesAreWritten() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("roll")
        var options = StoreOptions()
        options.segmentSize = 4096
        let store = try Store(path: path, options: options)
        var model: [[UInt8]: [UInt8]] = [:]
        for i in 0..<500 {
            let key = bytes("key-\(i % 120)")
            let value = bytes(String(repeating: "v\(i)", count: 1 + i % 9))
            try store.put(key, value)
            model[key] = value
        }
        try store.close()
        let names = try FileManager.default.contentsOfDirectory(atPath: path)
        let segments = names.filter { $0.hasSuffix(".kvseg") }
        let hints = names.filter { $0.hasSuffix(".kvhint") }
        #expect(segments.count > 3)
        #expect(hints.count == segments.count - 1)
        let reopened = try Store(path: path, options: options)
        #expect(try contents(reopened) == model)
    }

    @Test func refusesToTurnOtherDirectoriesIntoStores() throws {
        let dir = TemporaryDirectory()
        let other = dir.sub("photos")
        try FileManager.default.createDirectory(atPath: other, withIntermediateDirectories: true)
        writeFile(other + "/cat.jpg", [1, 2, 3])
        #expect { try Store(path: other) } throws: { ($0 as? KVFileError)?.code == .notAStore }
        writeFile(dir.sub("plain"), [1])
        #expect { try Store(path: dir.sub("plain")) } throws: { ($0 as? KVFileError)?.code == .notAStore }
        #expect { try Store(path: dir.sub("missing"), options: .reader) } throws: { ($0 as? KVFileError)?.code == .storeNotFound }
        #expect(try FileManager.default.contentsOfDirectory(atPath: other) == ["cat.jpg"])
    }

    @Test func readOnlyStoresRefuseWritesAndSeeNewDataOnRefresh() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("shared")
        var options = StoreOptions()
        options.segmentSize = 4096
        let writer = try Store(path: path, options: options)
        try writer.put("first", "1")
        let reader = try Store(path: path, options: .reader)
        #expect(try reader.getString("first") == "1")
        #expect { try reader.put("x", "y") } throws: { ($0 as? KVFileError)?.code == .readOnly }
        for i in 0..<300 { try writer.put("k\(i)", String(repeating: "z", count: 40)) }
        try writer.delete("first")
        // The reader shares the writer's index: it sees each write once put returns, rolls included.
        #expect(try reader.getString("k5") == String(repeating: "z", count: 40))
        try reader.refresh()
        #expect(try reader.get("first") == nil)
        #expect(try reader.getString("k299") == String(repeating: "z", count: 40))
        #expect(reader.count == 300)
    }

    @Test func secondWriterWaitsThenReportsTheHolder() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("locked")
        let first = try Store(path: path)
        var options = StoreOptions()
        options.lockTimeoutMilliseconds = 50
        do {
            _ = try Store(path: path, options: options)
            Issue.record("second writer opened")
        } catch {
            #expect(error.code == .locked)
            #expect(error.message.contains("pid \(getpid())"))
        }
        try first.close()
        let second = try Store(path: path, options: options)
        try second.put("ok", "1")
    }

    @Test func closedStoresSayTheyAreClosed() throws {
        let dir = TemporaryDirectory()
        let store = try Store(path: dir.sub("c"))
        try store.close()
        try store.close()
        #expect { try store.get("x") } throws: { ($0 as? KVFileError)?.code == .closed }
    }

    @Test(arguments: [Durability.none, .always, .interval(milliseconds: 5)])
    func everyDurabilityModeWritesAndReads(_ durability: Durability) throws {
        let dir = TemporaryDirectory()
        var options = StoreOptions()
        options.durability = durability
        let store = try Store(path: dir.sub("d"), options: options)
        for i in 0..<50 { try store.put("k\(i)", "v\(i)") }
        try store.sync()
        try store.close()
        let reopened = try Store(path: dir.sub("d"), options: .reader)
        #expect(reopened.count == 50)
    }

    @Test func concurrentWritersAndReadersInOneProcess() async throws {
        let dir = TemporaryDirectory()
        var options = StoreOptions()
        options.durability = .always
        options.segmentSize = 16 << 10
        let store = try Store(path: dir.sub("threads"), options: options)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for writer in 0..<4 {
                group.addTask {
                    for i in 0..<100 { try store.put("w\(writer)-\(i)", "value \(i)") }
                }
            }
            group.addTask {
                for i in 0..<400 { _ = try store.get("w0-\(i % 100)") }
            }
            try await group.waitForAll()
        }
        #expect(store.count == 400)
        #expect(try store.getString("w3-99") == "value 99")
    }

    @Test func forEachFiltersByPrefixInKeyOrder() throws {
        let dir = TemporaryDirectory()
        let store = try Store(path: dir.sub("p"))
        for key in ["user:2", "user:10", "group:1", "user:1"] { try store.put(key, key) }
        var seen: [String] = []
        try store.forEach(prefix: bytes("user:")) { key, _ in seen.append(String(decoding: key, as: UTF8.self)) }
        #expect(seen == ["user:1", "user:10", "user:2"])
        #expect(try store.keys().count == 4)
    }
}

@Suite struct ModelTests {
    /// Random puts, deletes and batches against a Dictionary, across reopens and segment rolls.
    @Test func randomOperationsMatchADictionary() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("model")
        var options = StoreOptions()
        options.segmentSize = 8192
        var random = SeededRandom(seed: 2024)
        var model: [[UInt8]: [UInt8]] = [:]
        let rounds = Env.stress ? 40 : 6
        let stepsPerRound = Env.stress ? 3000 : 400
        for _ in 0..<rounds {
            let store = try Store(path: path, options: options)
            #expect(try contents(store) == model)
            for _ in 0..<stepsPerRound {
                let key = bytes("k\(Int.random(in: 0..<300, using: &random))")
                switch Int.random(in: 0..<10, using: &random) {
                case 0..<6:
                    let length = Int.random(in: 0..<300, using: &random)
                    let value = (0..<length).map { _ in UInt8.random(in: 97...100, using: &random) }
                    try store.put(key, value)
                    model[key] = value
                case 6..<8:
                    let existed = try store.delete(key)
                    #expect(existed == (model.removeValue(forKey: key) != nil))
                default:
                    var batch = WriteBatch()
                    for _ in 0..<Int.random(in: 1...5, using: &random) {
                        let k = bytes("k\(Int.random(in: 0..<300, using: &random))")
                        if Bool.random(using: &random) {
                            let v = bytes("batch-\(Int.random(in: 0..<1000, using: &random))")
                            batch.put(k, v)
                            model[k] = v
                        } else {
                            batch.delete(k)
                            model[k] = nil
                        }
                    }
                    try store.write(batch)
                }
            }
            #expect(store.count == model.count)
            try store.close()
        }
        let final = try Store(path: path, options: .reader)
        #expect(try contents(final) == model)
    }
}

@Suite struct CompareAndSetTests {
    /// Two threads try to move the same version at once: exactly one wins.
    @Test func exactlyOneOfTwoRacingCompareAndSetsWins() throws {
        let dir = TemporaryDirectory()
        let store = try Store(path: dir.sub("cas"))
        for round in 0..<200 {
            let key = bytes("k\(round % 7)")
            let version = try key.withUnsafeBytes { raw in try store.withVersionedValue(forKey: raw) { _, seq in seq } }
            let wins = Locked(0)
            let group = DispatchGroup()
            for thread in 0..<2 {
                group.enter()
                Thread {
                    defer { group.leave() }
                    if case .written = try? store.put(key, bytes("round \(round) thread \(thread)"), if: .version(anyOf: [version])) {
                        wins.withLock { $0 += 1 }
                    }
                }.start()
            }
            group.wait()
            #expect(wins.withLock { $0 } == 1, "round \(round)")
        }
        guard case .written(let receipt) = try store.put(bytes("new"), bytes("1"), if: .absent) else {
            Issue.record("a put if absent of a new key was refused")
            return
        }
        #expect(try store.put(bytes("new"), bytes("2"), if: .absent) == .conditionFailed(currentVersion: receipt.seq))
        #expect(try bytes("new").withUnsafeBytes { try store.delete(key: $0, if: .version(anyOf: [receipt.seq + 100])) } == .conditionFailed(currentVersion: receipt.seq))
        #expect(try store.getString("new") == "1")
        try store.close()
    }

    /// A transfer between two accounts as a batch that checks both versions:
    /// two threads racing, each retrying on a failed check; no update is lost
    /// and a failed check writes nothing at all.
    @Test func aBatchWithChecksIsWrittenWholeOnlyWhenEveryCheckHolds() throws {
        let dir = TemporaryDirectory()
        let store = try Store(path: dir.sub("batch-cas"))
        try store.put(bytes("a"), bytes("1000"))
        try store.put(bytes("b"), bytes("0"))
        @Sendable func read(_ key: String) throws -> (Int, UInt64) {
            try bytes(key).withUnsafeBytes { raw in
                try store.withVersionedValue(forKey: raw) { value, seq in
                    (Int(String(decoding: value.map { Array($0) } ?? [], as: UTF8.self)) ?? -1, seq)
                }
            }
        }
        let failedChecks = Locked(0)
        let group = DispatchGroup()
        for _ in 0..<2 {
            group.enter()
            Thread {
                defer { group.leave() }
                var moved = 0
                while moved < 200 {
                    guard let (a, versionA) = try? read("a"), let (b, versionB) = try? read("b") else { return }
                    var batch = WriteBatch()
                    batch.check("a", .version(anyOf: [versionA]))
                    batch.check("b", .version(anyOf: [versionB]))
                    batch.put("a", String(a - 1))
                    batch.put("b", String(b + 1))
                    switch try? store.write(batch) {
                    case .written: moved += 1
                    case .checkFailed: failedChecks.withLock { $0 += 1 }
                    case nil: return
                    }
                }
            }.start()
        }
        group.wait()
        #expect(try read("a").0 == 600)
        #expect(try read("b").0 == 400)

        let before = try store.stats().newestSeq
        var stale = WriteBatch()
        stale.check("a", .version(anyOf: [1]))
        stale.check("nobody", .absent)
        stale.put("a", "0")
        stale.put("c", "new")
        let (_, versionA) = try read("a")
        #expect(try store.write(stale) == .checkFailed(key: bytes("a"), currentVersion: versionA))
        #expect(try store.stats().newestSeq == before)
        #expect(try store.get("c") == nil)
        var present = WriteBatch()
        present.check("b", .present)
        present.check("c", .absent)
        present.put("c", "new")
        #expect(try store.write(present) == .written)
        #expect(try store.getString("c") == "new")
        try store.close()
    }
}
