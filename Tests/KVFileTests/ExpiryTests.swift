import Foundation
import Testing
@testable import KVFile

/// Values with deadlines (put --ttl): absent for every reader once the
/// deadline passes, recorded as an expiry once by a writer, kept by compaction.
@Suite struct ExpiryTests {
    static func now() -> UInt64 { UInt64(Date().timeIntervalSince1970 * 1000) }

    static func waitUntil(_ deadline: UInt64) {
        while now() <= deadline { usleep(10_000) }
    }

    @Test func anExpiredValueIsAbsentForEveryReadPath() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("ttl")
        let store = try Store(path: path)
        let deadline = Self.now() + 300
        try store.put(bytes("brief"), bytes("soon gone"), expiresAt: deadline)
        try store.put(bytes("lasting"), bytes("stays"))
        var batch = WriteBatch()
        batch.put("batched", "also soon gone", expiresAt: deadline)
        try store.write(batch)
        let reader = try Store(path: path, options: .reader)
        #expect(try store.getString("brief") == "soon gone")
        #expect(try reader.getString("batched") == "also soon gone")
        #expect(try store.expiry(of: bytes("brief")) == deadline)
        #expect(try store.expiry(of: bytes("lasting")) == 0)

        Self.waitUntil(deadline)
        for view in [store, reader] {
            #expect(try view.get("brief") == nil)
            #expect(try view.get("batched") == nil)
            #expect(try view.contains("brief") == false)
            #expect(try view.keys() == [bytes("lasting")])
            #expect(try view.keys(prefix: [], after: nil, limit: 10) == [bytes("lasting")])
            #expect(try contents(view) == [bytes("lasting"): bytes("stays")])
            #expect(try view.expiry(of: bytes("brief")) == nil)
            let version = try bytes("brief").withUnsafeBytes { raw in try view.withVersionedValue(forKey: raw) { _, seq in seq } }
            #expect(version == 0)
        }
        // To writers an expired value is none: if-absent writes, a check for absence holds, the write is a creation.
        guard case .written(let receipt) = try store.put(bytes("brief"), bytes("again"), if: .absent) else {
            Issue.record("a put if absent over an expired value was refused")
            return
        }
        #expect(receipt.operation == .created)
        var check = WriteBatch()
        check.check("batched", .absent)
        check.put("batched", "back")
        #expect(try store.write(check) == .written)
        #expect(try reader.getString("batched") == "back")
        // A put without a deadline clears the earlier one.
        #expect(try store.expiry(of: bytes("batched")) == 0)
        try reader.close()
        try store.close()
    }

    @Test func eachExpiryIsRecordedOnceAcrossWriterRestarts() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("sweep")
        let writer = try Store(path: path)
        let deadline = Self.now() + 800
        try writer.put(bytes("session"), bytes("token"), expiresAt: deadline)
        try writer.put(bytes("later"), bytes("x"), expiresAt: Self.now() + 3_600_000)
        try writer.put(bytes("plain"), bytes("y"))
        try writer.close()
        Self.waitUntil(deadline)
        // No writer ran at the deadline: the next one that stays open records the expiry.
        let tailer = try LogTailer(path: path, start: .beginning)
        var events: [ChangeEvent] = []
        let second = try Store(path: path)
        let giveUp = Date().addingTimeInterval(15)
        while !events.contains(where: { $0.expired }) && Date() < giveUp {
            events += try tailer.poll()
            usleep(50_000)
        }
        try second.close()
        let third = try Store(path: path)
        usleep(1_500_000)  // past its first sweep
        try third.close()
        events += try tailer.poll()
        let expiries = events.filter { $0.expired }
        #expect(expiries.count == 1)
        #expect(expiries.first?.topic == .deleted)
        #expect(expiries.first?.key == bytes("session"))
        #expect(expiries.first?.oldValue == bytes("token"))
        #expect(events.first { $0.key == bytes("later") }?.expiresAt ?? 0 > Self.now())
        #expect(events.filter { $0.topic == .deleted }.count == 1)
    }

    /// A batch that deletes and writes back a key whose value expired records
    /// the expiry once (the planner wrote two tombstones), then the creation.
    @Test func aBatchOverAnExpiredKeyRecordsOneExpiry() throws {
        let dir = TemporaryDirectory()
        let store = try Store(path: dir.sub("batch-expiry"))
        let deadline = Self.now() + 100
        try store.put(bytes("k"), bytes("old"), expiresAt: deadline)
        Self.waitUntil(deadline)
        let before = try store.stats().newestSeq
        var batch = WriteBatch()
        batch.delete("k")
        batch.put("k", "new")
        try store.write(batch)
        #expect(try store.stats().newestSeq == before + 2)
        #expect(try store.getString("k") == "new")
        try store.close()
    }

    /// The sweep thread may hold the last reference to a store its owner
    /// dropped without closing: the store still goes away and lets go of its lock.
    @Test func aStoreDroppedWhileItsSweepRunsLetsGoOfItsLock() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("dropped")
        var store: Store? = try Store(path: path)
        var batch = WriteBatch()
        for index in 0..<40_000 { batch.put(bytes("k\(index)"), bytes("v"), expiresAt: Self.now() + 3_600_000) }
        try store!.write(batch)
        usleep(1_050_000)  // the sweep's walk has begun
        store = nil
        var options = StoreOptions()
        options.lockTimeoutMilliseconds = 10_000
        let again = try Store(path: path, options: options)
        #expect(try again.keys().count == 40_000)
        try again.close()
    }

    @Test func deadlinesSurviveCompactionAndReopening() throws {
        let dir = TemporaryDirectory()
        let path = dir.sub("compact")
        var options = StoreOptions()
        options.segmentSize = 4096
        var store = try Store(path: path, options: options)
        let far = Self.now() + 3_600_000
        let near = Self.now() + 400
        for index in 0..<200 {
            try store.put(bytes("k\(index)"), bytes(String(repeating: "v", count: 40)), expiresAt: index % 2 == 0 ? far : near)
        }
        for index in 0..<200 where index % 4 == 0 { try store.put(bytes("k\(index)"), bytes("overwritten"), expiresAt: far) }
        _ = try store.compact()
        try store.close()
        store = try Store(path: path, options: options)
        #expect(try store.expiry(of: bytes("k0")) == far)
        #expect(try store.getString("k0") == "overwritten")
        Self.waitUntil(near)
        #expect(try store.get("k1") == nil)
        #expect(try store.keys().count == 100)
        _ = try store.compact()
        #expect(try store.keys().count == 100)
        #expect(try store.expiry(of: bytes("k2")) == far)
        try store.close()
    }

    @Test func recordsCarryDeadlinesAndExpiryFlagsAsTheFormatSays() throws {
        let key = bytes("k")
        let value = bytes("value")
        var buffer = [UInt8](repeating: 0, count: 128)
        let length = buffer.withUnsafeMutableBytes { out in
            key.withUnsafeBytes { k in
                value.withUnsafeBytes { v in
                    RecordCodec.encode(to: out.baseAddress!, operation: .created, continues: false, seq: 7, timestamp: 1000,
                                       deadline: 1_700_000_000_000, key: k, stored: v, rawLength: nil)
                }
            }
        }
        #expect(length == RecordCodec.encodedLength(seq: 7, timestamp: 1000, deadline: 1_700_000_000_000, keyLength: 1, storedLength: 5, rawLength: nil))
        #expect(buffer[4] == 0x11)  // created, deadline bit
        let header = buffer.withUnsafeBytes { raw -> RecordHeader? in
            if case .record(let header) = RecordCodec.decode(raw.baseAddress!, available: length) { return header }
            return nil
        }
        #expect(header?.deadline == 1_700_000_000_000)
        #expect(header?.expired == false)
        #expect(buffer.withUnsafeBytes { RecordCodec.declaredLength(UnsafeRawBufferPointer(rebasing: $0[0..<length])) } == length)

        // The flags a reader must refuse: a deadline on a delete, the expiry flag on a put.
        for (kind, reason) in [(UInt8(0x13), "delete record carries a deadline"), (UInt8(0x21), "expiry flag on a record that is not a delete")] {
            var bad = buffer
            bad[4] = kind
            let crc = bad.withUnsafeBytes { CRC32C.checksum($0.baseAddress! + 4, length - 4) }
            withUnsafeBytes(of: crc.littleEndian) { for i in 0..<4 { bad[i] = $0[i] } }
            let result = bad.withUnsafeBytes { raw -> String in
                if case .invalid(let why) = RecordCodec.decode(raw.baseAddress!, available: length) { return why }
                return "accepted"
            }
            #expect(result == reason)
        }
    }
}
