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

    /// Resizes move slots a few per change; keys must stay findable, removable
    /// and listed exactly once in between, also when the arena is compacted mid-move.
    @Test func keysStayFindableWhileATableResizeIsUnderWay() {
        let keydir = Keydir()
        var model: [[UInt8]: KeyLocation] = [:]
        var order: [[UInt8]] = []
        var random = SeededRandom(seed: 21)
        var resizingSteps = 0
        func verifyAll(_ when: String) {
            for (key, location) in model {
                #expect(key.withUnsafeBytes { keydir.lookup($0) } == location, "\(when)")
            }
            var visited = 0
            keydir.forEach { key, location in
                visited += 1
                #expect(model[Array(key)] == location, "\(when)")
            }
            #expect(visited == model.count && keydir.count == model.count, "\(when)")
        }
        for step in 0..<12_000 {
            let key = Array(String(format: "%06d", step).utf8) + [UInt8](repeating: UInt8(step % 251), count: 40)
            let location = KeyLocation(segment: 2, offset: UInt32(step), size: 50, seq: UInt64(step + 1))
            #expect(key.withUnsafeBytes { keydir.set($0, location) } == nil)
            model[key] = location
            order.append(key)
            if step % 2 == 0, let victim = order.randomElement(using: &random), model[victim] != nil {
                #expect(victim.withUnsafeBytes { keydir.remove($0) } == model.removeValue(forKey: victim))
            }
            if step % 5 == 0, let earlier = order.randomElement(using: &random), let known = model[earlier] {
                var moved = known
                moved.seq += 1_000_000
                #expect(earlier.withUnsafeBytes { keydir.set($0, moved) } == known)
                model[earlier] = moved
            }
            if keydir.isResizing {
                resizingSteps += 1
                // Every 40 steps spent resizing: compact the arena while keys sit in both tables.
                if resizingSteps % 40 == 20 {
                    keydir.compactArena()
                    verifyAll("arena compacted during a resize at step \(step)")
                }
            }
            if step % 250 == 0 { verifyAll("step \(step)") }
        }
        #expect(resizingSteps > 100, "resizes were under way for only \(resizingSteps) steps")
        verifyAll("end")
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
        // The table doubles, so bytes per key depend on where N falls between
        // doublings, and while a resize moves entries both tables are held:
        // every size is sampled, so the worst one (just after a doubling starts) is asserted too.
        let count = Env.stress ? 1_000_000 : 150_000
        let keydir = Keydir()
        var worst = (perKey: 0.0, at: 0)
        for i in 0..<count {
            let key = Array(String(format: "%016d", i).utf8)
            key.withUnsafeBytes { _ = keydir.set($0, KeyLocation(segment: 1, offset: UInt32(i), size: 100, seq: UInt64(i + 1))) }
            let perKey = Double(keydir.memoryBytes) / Double(i + 1)
            // Past the first tables, whose fixed size dwarfs a few keys.
            if i >= 10_000 && perKey > worst.perKey { worst = (perKey, i + 1) }
        }
        let perKey = Double(keydir.memoryBytes) / Double(count)
        // Table (≈8.4 B at this load) + 20-byte entry header + 16-byte key.
        #expect(perKey <= 48, "keydir uses \(perKey) bytes per key")
        // Mid-resize: the old table too (about 52.6 B/key measured).
        #expect(worst.perKey <= 56, "keydir uses \(worst.perKey) bytes per key at \(worst.at) keys")
    }
}
