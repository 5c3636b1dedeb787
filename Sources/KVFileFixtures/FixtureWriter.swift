#if DEBUG
import Foundation
@testable import KVFile

/// Writes the golden stores of the current format version into `root`
/// (Fixtures/vN): stores as this version writes them, damaged copies, and for
/// each what a reader must find (`expected.txt`, `records.txt`,
/// `expected-error.txt`). Old versions' fixtures are never written again.
enum FixtureWriter {
    static func writeAll(into root: String) throws {
        let fm = FileManager.default
        func fresh(_ name: String) throws -> String {
            let path = root + "/" + name
            if fm.fileExists(atPath: path) { try fm.removeItem(atPath: path) }
            try fm.createDirectory(atPath: path, withIntermediateDirectories: true)
            return path
        }
        func finish(_ path: String) throws {
            // The index is derived data of this program's version: a fixture is the log alone.
            try? fm.removeItem(atPath: path + "/store/" + IndexFormat.fileName)
            let store = try Store(path: path + "/store", options: .reader)
            try (try dumpLines(store).map { $0 + "\n" }.joined()).write(toFile: path + "/expected.txt", atomically: true, encoding: .utf8)
            try (try recordLines(path + "/store").map { $0 + "\n" }.joined()).write(toFile: path + "/records.txt", atomically: true, encoding: .utf8)
        }

        let plain = try fresh("plain")
        do {
            let s = try Store(path: plain + "/store")
            try s.put("hello", "world")
            try s.put("artists", #"[{"first_name":"Cesária","last_name":"Évora"}]"#)
            try s.put(Array("binary".utf8), [0, 1, 2, 255, 254, 0])
            try s.put("long", String(repeating: "compress me ", count: 40))
            try s.put("empty", "")
            try s.close()
        }
        try finish(plain)

        let deletes = try fresh("deletes")
        do {
            let s = try Store(path: deletes + "/store")
            for i in 0..<6 { try s.put("key\(i)", "value\(i)") }
            try s.put("key1", "changed")
            try s.delete("key2")
            try s.delete("key4")
            try s.put("key4", "back again")
            try s.close()
        }
        try finish(deletes)

        let batch = try fresh("batch")
        do {
            let s = try Store(path: batch + "/store")
            try s.put("a", "1")
            var b = WriteBatch()
            b.put("a", "2")
            b.put("b", "3")
            b.delete("a")
            b.put("c", String(repeating: "xyz", count: 30))
            try s.write(b)
            try s.put("d", "4")
            try s.close()
        }
        try finish(batch)

        let segments = try fresh("segments")
        do {
            var options = StoreOptions()
            options.segmentSize = 4096
            let s = try Store(path: segments + "/store", options: options)
            for i in 0..<300 { try s.put("key\(i % 90)", "value \(i) " + String(repeating: "\(i % 7)", count: i % 40)) }
            for i in stride(from: 0, to: 90, by: 9) { try s.delete("key\(i)") }
            try s.close()
        }
        try finish(segments)

        // Damaged copies. A torn tail happens while a writer has the segment
        // open: the last record half written, zeros after it, the map past them.
        let torn = try fresh("torn-tail")
        do {
            var options = StoreOptions()
            options.segmentSize = 8192
            let s = try Store(path: torn + "/store", options: options)
            try s.put("hello", "world")
            try s.put("artists", #"[{"first_name":"Cesária","last_name":"Évora"}]"#)
            try s.put("long", String(repeating: "compress me ", count: 40))
            s.abandonForCrashTest()
        }
        let tornSegment = torn + "/store/00000001.kvseg"
        let lastRecord = recordOffsets(tornSegment).last!
        var tornBytes = fileBytes(tornSegment)
        for i in (lastRecord.offset + lastRecord.size / 2)..<(lastRecord.offset + lastRecord.size) { tornBytes[i] = 0 }
        writeFile(tornSegment, tornBytes)
        try finish(torn)
        try fm.removeItem(atPath: torn + "/records.txt")

        let flipped = try fresh("flipped-byte")
        try fm.copyItem(atPath: deletes + "/store", toPath: flipped + "/store")
        let flippedSegment = flipped + "/store/00000001.kvseg"
        let victim = recordOffsets(flippedSegment)[3]
        var data = fileBytes(flippedSegment)
        data[victim.offset + victim.size - 2] ^= 0x04
        writeFile(flippedSegment, data)
        try "corrupt 00000001.kvseg \(victim.offset)\n".write(toFile: flipped + "/expected-error.txt", atomically: true, encoding: .utf8)

        let truncatedHint = try fresh("truncated-hint")
        try fm.copyItem(atPath: segments + "/store", toPath: truncatedHint + "/store")
        let hint = truncatedHint + "/store/00000002.kvhint"
        writeFile(hint, Array(fileBytes(hint).dropLast(10)))
        try finish(truncatedHint)
        try fm.removeItem(atPath: truncatedHint + "/records.txt")

        // Version 3: deadlines. One far off (2100), one passed with no expiry
        // recorded (readers leave it out), one passed and written again (an
        // expiry tombstone, then the new value).
        let expiry = try fresh("expiry")
        do {
            let s = try Store(path: expiry + "/store")
            try s.put(Array("until-2100".utf8), Array("kept".utf8), expiresAt: 4_102_444_800_000)
            let soon = UInt64(Date().timeIntervalSince1970 * 1000) + 50
            try s.put(Array("passed".utf8), Array("gone".utf8), expiresAt: soon)
            try s.put(Array("renewed".utf8), Array("old".utf8), expiresAt: soon)
            usleep(100_000)
            try s.put("renewed", "new")
            try s.close()
        }
        try finish(expiry)
        try fm.removeItem(atPath: expiry + "/records.txt")
    }

    private static func fileBytes(_ path: String) -> [UInt8] {
        Array(FileManager.default.contents(atPath: path) ?? Data())
    }

    private static func writeFile(_ path: String, _ data: [UInt8]) {
        _ = FileManager.default.createFile(atPath: path, contents: Data(data))
    }
}
#endif
