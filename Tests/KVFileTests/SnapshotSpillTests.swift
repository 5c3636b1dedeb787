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

    /// Writing a run fails (a full disk): the walk fails with that error, it never gives a partial list.
    @Test func aRunThatCannotBeWrittenFailsTheWalk() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("store")
        _ = try Self.fill(path)
        let faults = IOFaults.install(directory: path)
        defer { faults.uninstall() }
        faults.setRule { call, file in call == .write && file == path ? ENOSPC : nil }
        let store = try Store(path: path, options: Self.options(chunkBytes: 4096, reader: true))
        var calls = 0
        #expect { try store.forEach { _, _ in calls += 1 } } throws: { error in
            (error as? KVFileError)?.isDiskFull == true
        }
        #expect(calls == 0)
    }
}
