import Foundation
import Testing
@testable import KVFile

/// Reads for threads that must not block (the server answers point GETs
/// inline with them): answered from memory, declined when the disk is needed.
@Suite struct AtHandReadTests {
    /// Writes 1,500 keys with 3 KB values that do not compress, closes the
    /// store and drops its files from the page cache (nothing maps them then).
    private static func coldStore(_ dir: TemporaryDirectory) throws -> [String: [UInt8]] {
        var random = SeededRandom(seed: 7)
        var model: [String: [UInt8]] = [:]
        do {
            // Scoped: its mappings must be gone before the pages are dropped.
            let store = try Store(path: dir.path)
            for i in 0..<1_500 {
                let value = (0..<3_000).map { _ in UInt8.random(in: 0...255, using: &random) }
                try store.put(bytes("k\(i)"), value)
                model["k\(i)"] = value
            }
            try store.close()
        }
        for name in try FileManager.default.contentsOfDirectory(atPath: dir.path) {
            PageCache.drop(dir.sub(name))
        }
        return model
    }

    @Test(.enabled(if: PageCache.canDrop, "the file system keeps pages in memory (tmpfs)"),
          arguments: [false, true])
    func aReadAtHandAnswersFromMemoryAndDeclinesWhatIsOnDiskOnly(asReader: Bool) throws {
        let dir = TemporaryDirectory()
        let model = try Self.coldStore(dir)
        let store = try Store(path: dir.path, options: asReader ? .reader : StoreOptions())
        var declined = 0
        for (key, value) in model.sorted(by: { $0.key < $1.key }) {
            let atHand = try Array(key.utf8).withUnsafeBytes { key in
                try store.withVersionedValueIfAtHand(forKey: key) { value, seq in value.map { (Array($0), seq) } }
            }
            let read = try Array(key.utf8).withUnsafeBytes { key in
                try store.withVersionedValue(forKey: key) { value, seq in value.map { (Array($0), seq) } }
            }
            #expect(read?.0 == value)
            if let atHand {
                #expect(atHand?.0 == value && atHand?.1 == read?.1, "a read at hand gave another value for \(key)")
            } else {
                declined += 1
                // The blocking read brought the pages in: now it is at hand, unless the
                // store's lock is busy for a moment (the writer's expiry sweep ends its walk under it).
                var again: (bytes: [UInt8], seq: UInt64)??
                for _ in 0..<200 where again == nil {
                    again = try Array(key.utf8).withUnsafeBytes { key in
                        try store.withVersionedValueIfAtHand(forKey: key) { value, seq in value.map { (Array($0), seq) } }
                    }
                    if again == nil { usleep(5_000) }
                }
                #expect(again??.bytes == value && again??.seq == read?.1, "\(key) stays declined once read")
            }
        }
        // Most records sit on pages of their own, which nothing read before.
        #expect(declined > model.count / 2, "only \(declined) of \(model.count) cold reads were declined")
        let missing = try Array("absent".utf8).withUnsafeBytes { key in
            try store.withVersionedValueIfAtHand(forKey: key) { value, _ in value == nil }
        }
        #expect(missing == true)
        try store.close()
    }

    /// A reader that had to build an index of its own (no usable index file)
    /// switches to the writer's file once there is one; reads at hand must not
    /// keep it on its own, older index.
    @Test func aReaderWithAnIndexOfItsOwnStillSeesNewWritesThroughReadsAtHand() throws {
        let dir = TemporaryDirectory()
        do {
            let first = try Store(path: dir.path)
            try first.put("k", "v1")
            try first.close()
        }
        try FileManager.default.removeItem(atPath: dir.sub("kvfile.index"))
        let reader = try Store(path: dir.path, options: .reader)
        #expect(try reader.getString("k") == "v1")
        let writer = try Store(path: dir.path)
        try writer.put("k", "v2")
        func read() throws -> String? {
            try Array("k".utf8).withUnsafeBytes { key in
                let atHand = try reader.withVersionedValueIfAtHand(forKey: key) { value, _ in value.map { String(decoding: $0, as: UTF8.self) } }
                if let atHand { return atHand }
                return try reader.withVersionedValue(forKey: key) { value, _ in value.map { String(decoding: $0, as: UTF8.self) } }
            }
        }
        let deadline = Date().addingTimeInterval(5)
        var seen = try read()
        while seen != "v2" && Date() < deadline {
            usleep(20_000)
            seen = try read()
        }
        #expect(seen == "v2")
        try writer.close()
        try reader.close()
    }
}

/// Dropping clean pages of closed files from the page cache (posix_fadvise).
enum PageCache {
    static func drop(_ path: String) {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return }
        _ = fdatasync(fd)
        _ = posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_DONTNEED))
        close(fd)
    }

    /// True when a dropped file's pages really leave memory here.
    static let canDrop: Bool = {
        let dir = TemporaryDirectory()
        let path = dir.sub("probe")
        writeFile(path, [UInt8](repeating: 1, count: 1 << 16))
        drop(path)
        let fd = open(path, O_RDONLY)
        defer { close(fd) }
        guard fd >= 0, let map = mmap(nil, 1 << 16, PROT_READ, MAP_SHARED, fd, 0), map != UnsafeMutableRawPointer(bitPattern: -1) else { return false }
        defer { munmap(map, 1 << 16) }
        return !Syscalls.isInMemory(map, count: 1 << 16)
    }()
}
