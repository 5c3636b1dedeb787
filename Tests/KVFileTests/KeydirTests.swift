import Testing
@testable import KVFile

@Suite struct KeydirTests {
    @Test func matchesADictionaryUnderRandomChanges() {
        let keydir = Keydir()
        var model: [[UInt8]: KeyLocation] = [:]
        var random = SeededRandom(seed: 11)
        for step in 0..<60_000 {
            let key = Array("key-\(Int.random(in: 0..<5000, using: &random))".utf8)
            let location = KeyLocation(segment: 1, offset: UInt32(step), size: UInt32(10 + step % 7), seq: UInt64(step + 1))
            if Int.random(in: 0..<4, using: &random) == 0 {
                let removed = key.withUnsafeBytes { keydir.remove($0) }
                #expect(removed == model.removeValue(forKey: key))
            } else {
                let old = key.withUnsafeBytes { keydir.set($0, location) }
                #expect(old == model.updateValue(location, forKey: key))
            }
        }
        #expect(keydir.count == model.count)
        #expect(keydir.liveBytes == model.values.reduce(0) { $0 + Int($1.size) })
        for (key, location) in model {
            #expect(key.withUnsafeBytes { keydir.lookup($0) } == location)
        }
        var visited = 0
        keydir.forEach { key, location in
            visited += 1
            #expect(model[Array(key)] == location)
        }
        #expect(visited == model.count)
        #expect(bytes("missing").withUnsafeBytes { keydir.lookup($0) } == nil)
    }

    @Test func keyEqualityAgreesWithMemcmpForEveryLengthAndDifferingByte() {
        for count in 0...40 {
            let a = (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 5) }
            a.withUnsafeBytes { pa in
                let base = pa.baseAddress ?? UnsafeRawPointer(bitPattern: 8)!
                #expect(KeyEquality.equal(base, base, count: count))
                for position in 0..<count {
                    var b = a
                    b[position] ^= 0x40
                    b.withUnsafeBytes { pb in
                        #expect(!KeyEquality.equal(base, pb.baseAddress!, count: count), "length \(count), byte \(position)")
                    }
                    var c = a
                    c[position] ^= 0x40
                    c[position] ^= 0x40
                    c.withUnsafeBytes { pc in
                        #expect(KeyEquality.equal(base, pc.baseAddress!, count: count), "length \(count), equal copy")
                    }
                }
            }
        }
    }

    @Test func loadingKeepsTheNewestAndHonoursDeletionMarks() {
        let keydir = Keydir()
        let key = bytes("k")
        key.withUnsafeBytes { raw in
            _ = keydir.applyLoaded(raw, KeyLocation(segment: 2, offset: 40, size: 0, seq: 9))   // deleted at 9
            _ = keydir.applyLoaded(raw, KeyLocation(segment: 1, offset: 40, size: 20, seq: 5))  // older value
        }
        keydir.dropDeletionMarks()
        #expect(keydir.count == 0)
        key.withUnsafeBytes { raw in
            _ = keydir.applyLoaded(raw, KeyLocation(segment: 3, offset: 40, size: 20, seq: 12))
            _ = keydir.applyLoaded(raw, KeyLocation(segment: 1, offset: 80, size: 20, seq: 6))
        }
        #expect(key.withUnsafeBytes { keydir.lookup($0) }?.seq == 12)
    }

    @Test func memoryPerSixteenByteKeyStaysUnderBudget() {
        // The table doubles, so bytes per key depend on where N falls between doublings;
        // 1M is the benchmark size, 150k a quicker point of similar load.
        let count = Env.stress ? 1_000_000 : 150_000
        let keydir = Keydir()
        for i in 0..<count {
            let key = Array(String(format: "%016d", i).utf8)
            key.withUnsafeBytes { _ = keydir.set($0, KeyLocation(segment: 1, offset: UInt32(i), size: 100, seq: UInt64(i + 1))) }
        }
        let perKey = Double(keydir.memoryBytes) / Double(count)
        // Table (≈8.4 B at this load) + 22-byte entry header + 16-byte key.
        #expect(perKey <= 48, "keydir uses \(perKey) bytes per key")
    }
}

import Foundation
