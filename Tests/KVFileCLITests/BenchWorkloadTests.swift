import Foundation
import Testing
@testable import KVFileBench

/// The generator against the shared workload's published test vectors (version 1).
@Suite struct BenchWorkloadTests {
    func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

    @Test func splitmixMatchesTheVector() {
        var random = SplitMix64(seed: 1001)
        let three = (0..<3).map { _ in String(random.next(), radix: 16) }
        #expect(three == ["533e00f7f3c606d4", "3ac55a494710ce58", "3a74aa7bc6beafb1"])
    }

    @Test func sequencesMatchTheVectors() {
        #expect(Array(Workload.permutation(10, seed: 1001).prefix(8)) == [4, 8, 7, 0, 5, 6, 9, 1])
        #expect(Array(Workload.uniformSequence(10, seed: 1002).prefix(8)) == [9, 3, 0, 9, 5, 9, 2, 2])
        #expect(Array(Workload.uniformSequence(10, seed: 1003).prefix(8)) == [6, 4, 5, 1, 9, 9, 5, 1])
        #expect(Array(Workload.uniformSequence(10, seed: 1004).prefix(8)) == [7, 2, 9, 0, 5, 6, 8, 1])
        #expect(Array(Workload.permutation(10, seed: 1005).prefix(8)) == [8, 6, 7, 1, 4, 0, 5, 3])
    }

    @Test func keysMatchTheVector() {
        #expect(String(decoding: Workload.key(42), as: UTF8.self) == "0000000000000042")
        #expect(String(decoding: Workload.key(42, missing: true), as: UTF8.self) == "0000000000000042.")
    }

    @Test func valuesMatchTheVectors() {
        let pool = ValuePool(valueSize: 100)
        #expect(hex(pool.value(0)) == "142e00b2a3d225e57948ba6e362f431a41737b020c950e20058eca34a1d31eaaf78ce087cc3f334643c47e3e6d75ee96b9d0142e00b2a3d225e57948ba6e362f431a41737b020c950e20058eca34a1d31eaaf78ce087cc3f334643c47e3e6d75ee96b9d0")
        #expect(hex(pool.value(1)) == "8e3683114a9631578373e062289916888ea081f6960f189c4fbd1d836a023e471044737e824e09fe52cd2b8074f20a1c88208e3683114a9631578373e062289916888ea081f6960f189c4fbd1d836a023e471044737e824e09fe52cd2b8074f20a1c8820")
        #expect(hex(pool.value(20971)) == "9e340faa28e4f6057d1721e98bca93c9fefb1f6e8ca2ec75c4439f7d0157bb1b17b01fc5695c9d6935d2335ff1dd789d0d8c9e340faa28e4f6057d1721e98bca93c9fefb1f6e8ca2ec75c4439f7d0157bb1b17b01fc5695c9d6935d2335ff1dd789d0d8c")
    }

    /// A tiny run of the real binary, so the benchmark cannot rot.
    @Test func smokeRunPrintsEveryBenchmark() throws {
        let binary = URL(fileURLWithPath: kvfileBinary).deletingLastPathComponent().appendingPathComponent("kvfile-bench").path
        let dir = TemporaryDirectory()
        let result = try run(binary, ["--num=2000", "--value_size=100", "--db=" + dir.sub("db")])
        #expect(result.status == 0, "\(result.stderr)")
        for name in ["fillseq", "fillrandom", "overwrite", "readrandom", "readmissing", "deleterandom"] {
            #expect(result.text.contains(name + " "), "missing \(name)")
        }
        #expect(result.text.contains("(2000 of 2000 found, 0 bad_len)"))
        #expect(result.text.contains("(0 of 2000 found, 0 bad_len)"))
        #expect(result.text.contains("bytes per key"))
        let usage = try run(binary, ["--num=abc"])
        #expect(usage.status == 64)
    }

    /// Defect: the closing "store:" line said "hints 0 B" while hint files
    /// existed (segments rolled away were still being sealed in the background).
    @Test func theStoreLineCountsTheHintFilesOnDisk() throws {
        let binary = URL(fileURLWithPath: kvfileBinary).deletingLastPathComponent().appendingPathComponent("kvfile-bench").path
        let dir = TemporaryDirectory()
        let db = dir.sub("db")
        let result = try run(binary, ["--num=20000", "--segment_size=65536", "--benchmarks=fillrandom", "--db=" + db])
        #expect(result.status == 0, "\(result.stderr)")
        let hintBytes = try FileManager.default.contentsOfDirectory(atPath: db).filter { $0.hasSuffix(".kvhint") }
            .reduce(0) { $0 + ((try? FileManager.default.attributesOfItem(atPath: db + "/" + $1)[.size] as? Int) ?? 0) }
        #expect(hintBytes > 0)
        #expect(result.text.contains("hints \(hintBytes) B"), "\(result.text)")
    }
}
