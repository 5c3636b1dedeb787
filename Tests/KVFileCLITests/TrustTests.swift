import Foundation
import Testing
@testable import KVFileBench

/// Reliability defects seen from the shell.
@Suite struct CLITrustTests {
    /// Defect: a value holding record-shaped bytes (here a whole segment file)
    /// made lock-free readers call a healthy store corrupt: they scanned the
    /// active segment 64 KiB at a time and took a record cut by the chunk's
    /// end, with a "record" inside its value after it, for damage (exit 76,
    /// "record runs past the end of the file", while `check` found nothing).
    @Test func aValueHoldingASegmentFileIsReadBackNotCalledCorrupt() throws {
        let dir = TemporaryDirectory()
        let a = dir.sub("A"), b = dir.sub("B")
        #expect(try kvfile("put", a, "hello", "world").status == 0)
        var random = SystemRandomNumberGenerator()
        let photo = (0..<100_000).map { _ in UInt8.random(in: 0...255, using: &random) }
        #expect(try kvfile("put", a, "photo", input: photo).status == 0)
        let segment = Array(try Data(contentsOf: URL(fileURLWithPath: a + "/00000001.kvseg")))
        #expect(try kvfile("put", b, "copy", input: segment).status == 0)
        for before in [false, true] {
            if before { #expect(try kvfile("put", b, "after", "1").status == 0) }
            let get = try kvfile("get", b, "copy")
            #expect(get.status == 0, "\(get.stderr)")
            let same = get.stdout == segment  // not printed whole when it differs
            #expect(same, "read back \(get.stdout.count) of \(segment.count) bytes")
            for command in [["dump", b], ["stat", b], ["check", b]] {
                let result = try run(kvfileBinary, command)
                #expect(result.status == 0, "\(command): \(result.stderr)")
            }
        }
    }

    /// Defect: one large incompressible value in the active segment cost
    /// every reader one checksum per byte offset (seconds for 16 MiB); the
    /// value must come back whole and the store must read as healthy.
    @Test func aLargeIncompressibleValueInTheActiveSegmentReadsBack() throws {
        let dir = TemporaryDirectory()
        let store = dir.sub("big")
        var generator = SplitMix64(seed: 7)
        let value = (0..<(5 << 20)).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
        #expect(try kvfile("put", store, "big", input: value).status == 0)
        let get = try kvfile("get", store, "big")
        #expect(get.status == 0, "\(get.stderr)")
        let same = get.stdout == value
        #expect(same, "read back \(get.stdout.count) of \(value.count) bytes")
    }
}
