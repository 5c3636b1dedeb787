import Foundation
import Testing
@testable import KVFile

/// A walk of every key (forEach, keys, dump) sorts in bounded memory: past a
/// chunk's worth of keys it writes sorted runs to an unnamed temporary file
/// and merges them. Small chunks here make a few thousand keys take many runs.
@Suite struct SnapshotSpillTests {
    static func options(chunkBytes: Int, reader: Bool = false) -> StoreOptions {
        var options = reader ? StoreOptions.reader : StoreOptions()
        options.snapshotChunkBytes = chunkBytes
        return options
    }

    /// Keys of varied lengths and bytes (shared prefixes, binary, long), some overwritten and deleted.
    static func fill(_ path: String) throws -> [[UInt8]: [UInt8]] {
        var model: [[UInt8]: [UInt8]] = [:]
        var random = SeededRandom(seed: 7)
        let store = try Store(path: path)
        for i in 0..<3000 {
            var key = Array("k\(random.next() % 1000)/".utf8) + (0..<Int(random.next() % 24)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            if i % 97 == 0 { key = [UInt8](repeating: UInt8(i % 256), count: 300 + i % 50) }
            if key.isEmpty { continue }
            let value = Array("value \(i)".utf8)
            try store.put(key, value)
            model[key] = value
        }
        for key in model.keys.sorted(by: { $0.lexicographicallyPrecedes($1) }).enumerated().filter({ $0.offset % 5 == 0 }).map(\.element) {
            _ = try store.delete(key)
            model[key] = nil
        }
        try store.close()
        return model
    }

    @Test func aWalkThatSpillsRunsGivesEveryPairInKeyOrder() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("store")
        let model = try Self.fill(path)
        let expected = model.sorted { $0.key.lexicographicallyPrecedes($1.key) }
        for options in [Self.options(chunkBytes: 4096), Self.options(chunkBytes: 4096, reader: true), Self.options(chunkBytes: 512)] {
            let store = try Store(path: path, options: options)
            var seen: [([UInt8], [UInt8])] = []
            try store.forEach { key, value in seen.append((key, value)) }
            #expect(seen.count == expected.count)
            #expect(seen.map(\.0) == expected.map(\.key))
            #expect(seen.map(\.1) == expected.map(\.value))
            #expect(try store.keys() == expected.map(\.key))
            let prefix = Array("k12".utf8)
            var withPrefix: [[UInt8]] = []
            try store.forEach(prefix: prefix) { key, _ in withPrefix.append(key) }
            #expect(withPrefix == expected.map(\.key).filter { $0.starts(with: prefix) })
            if !options.readOnly { try store.close() }
        }
    }

    @Test func aBodyThatThrowsStopsTheWalkWithItsError() throws {
        struct Stop: Error {}
        let dir = TemporaryDirectory()
        let path = dir.sub("store")
        _ = try Self.fill(path)
        let store = try Store(path: path, options: Self.options(chunkBytes: 4096, reader: true))
        var calls = 0
        #expect(throws: Stop.self) {
            try store.forEach { _, _ in
                calls += 1
                if calls == 10 { throw Stop() }
            }
        }
        #expect(calls == 10)
    }

    /// A store directory that cannot hold the temporary file (a read-only
    /// mount, no permission): the runs go to the system's temporary directory.
    @Test func runsGoElsewhereWhenTheStoreDirectoryCannotHoldThem() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("store")
        let model = try Self.fill(path)
        let faults = IOFaults.install(directory: path)
        defer { faults.uninstall() }
        faults.setRule { call, file in call == .open && file == path ? EACCES : nil }
        let store = try Store(path: path, options: Self.options(chunkBytes: 4096, reader: true))
        #expect(try store.keys().count == model.count)
    }

    /// Writing a run fails (a full disk): the rest of the list stays in
    /// memory, as every list did before runs, and the walk gives every pair.
    @Test func aRunThatCannotBeWrittenLeavesTheRestInMemory() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("store")
        let model = try Self.fill(path)
        let faults = IOFaults.install(directory: path)
        defer { faults.uninstall() }
        var writes = 0
        faults.setRule { call, file in
            guard call == .write && file == path else { return nil }
            writes += 1
            return writes > 3 ? ENOSPC : nil  // a few runs are written, then the disk is full
        }
        let store = try Store(path: path, options: Self.options(chunkBytes: 4096, reader: true))
        var keys: [[UInt8]] = []
        try store.forEach { key, _ in keys.append(key) }
        #expect(writes > 3)
        #expect(keys == model.keys.sorted { $0.lexicographicallyPrecedes($1) })
    }

    /// Runs longer than the buffer each is read through, records straddling
    /// its end, and keys of the longest length (4096 bytes).
    @Test func runsLongerThanTheirReadBufferMergeInOrder() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("store")
        var model: [[UInt8]: [UInt8]] = [:]
        var random = SeededRandom(seed: 11)
        do {
            let store = try Store(path: path)
            for i in 0..<4000 {
                let length = i % 40 == 0 ? RecordFormat.maxKeyLength - Int(random.next() % 3) : 1 + Int(random.next() % 200)
                let key = (0..<length).map { _ in UInt8(truncatingIfNeeded: random.next() % 7) }
                try store.put(key, Array("v\(i)".utf8))
                model[key] = Array("v\(i)".utf8)
            }
            try store.close()
        }
        let store = try Store(path: path, options: Self.options(chunkBytes: 96 << 10, reader: true))
        var seen: [([UInt8], [UInt8])] = []
        try store.forEach { key, value in seen.append((key, value)) }
        let expected = model.sorted { $0.key.lexicographicallyPrecedes($1.key) }
        #expect(seen.map(\.0) == expected.map(\.key))
        #expect(seen.map(\.1) == expected.map(\.value))
    }
}
