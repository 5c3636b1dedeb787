#if canImport(Glibc)
import Glibc
#endif
import CKVFileSupport

/// Where the latest record of a key lives.
struct KeyLocation: Equatable {
    var segment: UInt32
    var offset: UInt32
    /// Bytes of the whole record. 0 marks a key deleted at `seq`; such marks
    /// exist only while a keydir is being loaded.
    var size: UInt32
    var seq: UInt64

    var isDeletionMark: Bool { size == 0 }
}

/// The in-memory hash index: every live key → its latest record.
///
/// Built for memory (see issue "keydir ≤ 48 B per 16-byte key"): entries are
/// packed into one arena as [segment u32][offset u32][size u32]
/// [seq (low 51 bits) | keylen << 51, u64][key bytes] (20 bytes plus the key,
/// rounded up to 4), and an open-addressing table of u32 slots with linear
/// probing points at them. A slot holds the entry's arena offset, whose two
/// low bits are free (entries are 4-aligned) and carry two bits of the key's
/// hash: most probes past other keys then skip the arena, a cache miss each.
/// Not thread-safe: the store guards it.
final class Keydir {
    private static let entryHeader = 20
    private static let emptySlot: UInt32 = 0
    private static let deletedSlot: UInt32 = 1
    private static let tagMask: UInt32 = 3
    /// Arena offsets start here so that 0 and 1 stay free for the slot markers.
    private static let arenaStart = 8
    private static let maxArena = Int(UInt32.max) & ~3
    private static let seqMask: UInt64 = RecordFormat.maxSeq
    private static let keyLengthShift: UInt64 = 51

    private var arena: UnsafeMutableRawPointer
    private var arenaCapacity: Int
    private var arenaUsed: Int
    /// Arena bytes of removed entries, reclaimed by `compactArena`.
    private var arenaGarbage = 0

    private var slots: UnsafeMutablePointer<UInt32>
    private var slotMask: Int
    private var deletedSlots = 0
    private(set) var count = 0
    /// Sum of `size` over live entries.
    private(set) var liveBytes = 0
    private let seed: UInt64

    init(expectedKeys: Int = 0) {
        var capacity = 1024
        while capacity * 7 / 10 < expectedKeys { capacity *= 2 }
        slotMask = capacity - 1
        slots = .allocate(capacity: capacity)
        slots.initialize(repeating: Keydir.emptySlot, count: capacity)
        arenaCapacity = max(4096, expectedKeys * 40)
        arena = malloc(arenaCapacity)!
        arenaUsed = Keydir.arenaStart
        seed = UInt64.random(in: 0...UInt64.max)
    }

    deinit {
        slots.deallocate()
        free(arena)
    }

    /// Bytes of memory the index uses: the slot table plus the arena bytes in
    /// use. Arena capacity past that is address space realloc reserved and
    /// nothing has touched, so it is not resident.
    var memoryBytes: Int { (slotMask + 1) * 4 + arenaUsed }

    // MARK: entry access

    /// The entry a (non-marker) slot value points at.
    @inline(__always) private func entry(_ slot: UInt32) -> UnsafeMutableRawPointer { arena + Int(slot & ~Keydir.tagMask) }

    /// Two hash bits the slot index does not use.
    @inline(__always) private static func tag(_ hash: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: hash >> 62) }

    /// Arena bytes of an entry with a key of `length` bytes (4-aligned, so slot values have free low bits).
    @inline(__always) private static func entrySize(keyLength length: Int) -> Int { (entryHeader + length + 3) & ~3 }

    @inline(__always) private func location(at p: UnsafeMutableRawPointer) -> KeyLocation {
        let r = UnsafeRawPointer(p)
        return KeyLocation(
            segment: r.loadUnaligned(fromByteOffset: 0, as: UInt32.self),
            offset: r.loadUnaligned(fromByteOffset: 4, as: UInt32.self),
            size: r.loadUnaligned(fromByteOffset: 8, as: UInt32.self),
            seq: r.loadUnaligned(fromByteOffset: 12, as: UInt64.self) & Keydir.seqMask)
    }

    @inline(__always) private func setLocation(_ l: KeyLocation, at p: UnsafeMutableRawPointer) {
        p.storeBytes(of: l.segment, toByteOffset: 0, as: UInt32.self)
        p.storeBytes(of: l.offset, toByteOffset: 4, as: UInt32.self)
        p.storeBytes(of: l.size, toByteOffset: 8, as: UInt32.self)
        let keyLengthBits = UnsafeRawPointer(p).loadUnaligned(fromByteOffset: 12, as: UInt64.self) & ~Keydir.seqMask
        p.storeBytes(of: keyLengthBits | (l.seq & Keydir.seqMask), toByteOffset: 12, as: UInt64.self)
    }

    @inline(__always) private func keyLength(at p: UnsafeMutableRawPointer) -> Int {
        Int(UnsafeRawPointer(p).loadUnaligned(fromByteOffset: 12, as: UInt64.self) >> Keydir.keyLengthShift)
    }

    @inline(__always) private func keyMatches(_ p: UnsafeMutableRawPointer, _ key: UnsafeRawBufferPointer) -> Bool {
        keyLength(at: p) == key.count && KeyEquality.equal(p + Keydir.entryHeader, key.baseAddress!, count: key.count)
    }

    /// The slot holding `key`, or -1.
    @inline(__always) private func findSlot(_ key: UnsafeRawBufferPointer, hash: UInt64) -> Int {
        var index = Int(truncatingIfNeeded: hash) & slotMask
        let tag = Keydir.tag(hash)
        while true {
            let value = slots[index]
            if value == Keydir.emptySlot { return -1 }
            // A deleted marker (1) never matches: real slot values are 8 or more.
            if value & Keydir.tagMask == tag && value != Keydir.deletedSlot && keyMatches(entry(value), key) { return index }
            index = (index + 1) & slotMask
        }
    }

    /// Starts loading the slot `key` hashes to, so that a `set` or `applyLoaded`
    /// of it a few entries later does not wait for memory (bulk loading).
    @inline(__always)
    func prefetch(_ key: UnsafeRawBufferPointer) {
        let index = Int(truncatingIfNeeded: KeyHash.hash(key.baseAddress!, key.count, seed: seed)) & slotMask
        kvf_prefetch(slots + index)
    }

    /// The second stage of bulk prefetching, once `prefetch(key)` has brought
    /// the slot in: starts loading the entries among the first two slots `key`
    /// probes whose hash bits match, which `set` or `applyLoaded` will compare keys with.
    @inline(__always)
    func prefetchEntries(_ key: UnsafeRawBufferPointer) {
        let hash = KeyHash.hash(key.baseAddress!, key.count, seed: seed)
        var index = Int(truncatingIfNeeded: hash) & slotMask
        let tag = Keydir.tag(hash)
        for _ in 0..<2 {
            let value = slots[index]
            if value == Keydir.emptySlot { return }
            if value & Keydir.tagMask == tag && value != Keydir.deletedSlot {
                let p = entry(value)
                kvf_prefetch(p)
                kvf_prefetch(p + (Keydir.entryHeader + key.count - 1))  // the key's last byte may be on the next line
            }
            index = (index + 1) & slotMask
        }
    }

    /// Moves `key` to (`newSegment`, `newOffset`) when it still points at
    /// (`segment`, `offset`); returns its record size when it moved. One probe
    /// instead of a lookup and a set (compaction's switch-over).
    @inline(__always)
    func relocate(_ key: UnsafeRawBufferPointer, from segment: UInt32, offset: UInt32, to newSegment: UInt32, newOffset: UInt32) -> UInt32? {
        let slot = findSlot(key, hash: KeyHash.hash(key.baseAddress!, key.count, seed: seed))
        guard slot >= 0 else { return nil }
        let p = entry(slots[slot])
        var current = location(at: p)
        guard current.segment == segment, current.offset == offset else { return nil }
        current.segment = newSegment
        current.offset = newOffset
        setLocation(current, at: p)
        return current.size
    }

    // MARK: queries

    @inline(__always)
    func lookup(_ key: UnsafeRawBufferPointer) -> KeyLocation? {
        let slot = findSlot(key, hash: KeyHash.hash(key.baseAddress!, key.count, seed: seed))
        return slot < 0 ? nil : location(at: entry(slots[slot]))
    }

    /// Calls `body` with every entry's key and location, in table order.
    func forEach(_ body: (UnsafeRawBufferPointer, KeyLocation) throws -> Void) rethrows {
        for index in 0...slotMask {
            let value = slots[index]
            if value == Keydir.emptySlot || value == Keydir.deletedSlot { continue }
            let p = entry(value)
            try body(UnsafeRawBufferPointer(start: p + Keydir.entryHeader, count: keyLength(at: p)), location(at: p))
        }
    }

    // MARK: changes

    /// Sets `key` to `location` and returns what it replaced.
    @discardableResult
    @inline(__always)
    func set(_ key: UnsafeRawBufferPointer, _ newLocation: KeyLocation) -> KeyLocation? {
        let hash = KeyHash.hash(key.baseAddress!, key.count, seed: seed)
        var index = Int(truncatingIfNeeded: hash) & slotMask
        let tag = Keydir.tag(hash)
        var firstDeleted = -1
        while true {
            let value = slots[index]
            if value == Keydir.emptySlot { break }
            if value == Keydir.deletedSlot {
                if firstDeleted < 0 { firstDeleted = index }
            } else if value & Keydir.tagMask == tag {
                let p = entry(value)
                if keyMatches(p, key) {
                    let old = location(at: p)
                    setLocation(newLocation, at: p)
                    liveBytes += Int(newLocation.size) - Int(old.size)
                    return old
                }
            }
            index = (index + 1) & slotMask
        }
        insertNew(key, newLocation, hash: hash, slot: firstDeleted >= 0 ? firstDeleted : index)
        return nil
    }

    private func insertNew(_ key: UnsafeRawBufferPointer, _ newLocation: KeyLocation, hash: UInt64, slot: Int) {
        let needed = Keydir.entrySize(keyLength: key.count)
        if arenaUsed + needed > arenaCapacity { growArena(needed) }
        let offset = arenaUsed
        let p = arena + offset
        p.storeBytes(of: newLocation.segment, toByteOffset: 0, as: UInt32.self)
        p.storeBytes(of: newLocation.offset, toByteOffset: 4, as: UInt32.self)
        p.storeBytes(of: newLocation.size, toByteOffset: 8, as: UInt32.self)
        p.storeBytes(of: UInt64(key.count) << Keydir.keyLengthShift | (newLocation.seq & Keydir.seqMask), toByteOffset: 12, as: UInt64.self)
        (p + Keydir.entryHeader).copyMemory(from: key.baseAddress!, byteCount: key.count)
        arenaUsed += needed
        if slots[slot] == Keydir.deletedSlot { deletedSlots -= 1 }
        slots[slot] = UInt32(offset) | Keydir.tag(hash)
        count += 1
        liveBytes += Int(newLocation.size)
        if (count + deletedSlots) * 10 > (slotMask + 1) * 7 { rehash() }
    }

    /// Removes `key` and returns where it was.
    @discardableResult
    func remove(_ key: UnsafeRawBufferPointer) -> KeyLocation? {
        let slot = findSlot(key, hash: KeyHash.hash(key.baseAddress!, key.count, seed: seed))
        if slot < 0 { return nil }
        let p = entry(slots[slot])
        let old = location(at: p)
        arenaGarbage += Keydir.entrySize(keyLength: keyLength(at: p))
        // An empty next slot ends every probe chain through this one, so this slot can be empty too.
        if slots[(slot + 1) & slotMask] == Keydir.emptySlot {
            slots[slot] = Keydir.emptySlot
        } else {
            slots[slot] = Keydir.deletedSlot
            deletedSlots += 1
        }
        count -= 1
        liveBytes -= Int(old.size)
        if arenaGarbage > 1 << 20 && arenaGarbage * 2 > arenaUsed { compactArena() }
        return old
    }

    /// While loading: applies a record found on disk unless the keydir already
    /// holds a newer one for the key. Deletions leave a mark (size 0) so that
    /// an older value met later cannot bring the key back; call
    /// `dropDeletionMarks` when loading ends.
    @inline(__always)
    func applyLoaded(_ key: UnsafeRawBufferPointer, _ newLocation: KeyLocation) -> (applied: Bool, replaced: KeyLocation?) {
        let hash = KeyHash.hash(key.baseAddress!, key.count, seed: seed)
        let slot = findSlot(key, hash: hash)
        if slot >= 0 {
            let p = entry(slots[slot])
            let old = location(at: p)
            if old.seq >= newLocation.seq { return (false, nil) }
            setLocation(newLocation, at: p)
            liveBytes += Int(newLocation.size) - Int(old.size)
            return (true, old)
        }
        set(key, newLocation)
        return (true, nil)
    }

    /// Removes the deletion marks that loading left.
    func dropDeletionMarks() {
        var marked: [[UInt8]] = []
        forEach { key, location in
            if location.isDeletionMark { marked.append(Array(key)) }
        }
        for key in marked {
            key.withUnsafeBytes { _ = remove($0) }
        }
    }

    /// False when a new key of this length would not fit in the 4 GiB arena.
    func hasRoom(forKeyLength length: Int) -> Bool {
        arenaUsed - arenaGarbage + Keydir.entrySize(keyLength: length) < Keydir.maxArena
    }

    // MARK: growth

    private func growArena(_ needed: Int) {
        if arenaGarbage * 4 > arenaUsed {
            compactArena()
            if arenaUsed + needed <= arenaCapacity { return }
        }
        var newCapacity = arenaCapacity
        while newCapacity < arenaUsed + needed { newCapacity += newCapacity / 2 }
        newCapacity = min(newCapacity, Keydir.maxArena)
        precondition(arenaUsed + needed <= newCapacity, "keydir is full: more than 4 GiB of keys")
        arena = realloc(arena, newCapacity)!
        arenaCapacity = newCapacity
    }

    /// Copies live entries into a fresh arena, dropping garbage.
    private func compactArena() {
        let fresh = malloc(arenaCapacity)!
        var used = Keydir.arenaStart
        for index in 0...slotMask {
            let value = slots[index]
            if value == Keydir.emptySlot || value == Keydir.deletedSlot { continue }
            let length = Keydir.entrySize(keyLength: keyLength(at: entry(value)))
            (fresh + used).copyMemory(from: entry(value), byteCount: length)
            slots[index] = UInt32(used) | (value & Keydir.tagMask)
            used += length
        }
        free(arena)
        arena = fresh
        arenaUsed = used
        arenaGarbage = 0
    }

    private func rehash() {
        var capacity = slotMask + 1
        if count * 10 > capacity * 5 { capacity *= 2 }
        let old = slots
        let oldCapacity = slotMask + 1
        slots = .allocate(capacity: capacity)
        slots.initialize(repeating: Keydir.emptySlot, count: capacity)
        slotMask = capacity - 1
        deletedSlots = 0
        for index in 0..<oldCapacity {
            let value = old[index]
            if value == Keydir.emptySlot || value == Keydir.deletedSlot { continue }
            let p = entry(value)
            var target = Int(truncatingIfNeeded: KeyHash.hash(p + Keydir.entryHeader, keyLength(at: p), seed: seed)) & slotMask
            while slots[target] != Keydir.emptySlot { target = (target + 1) & slotMask }
            slots[target] = value
        }
        old.deallocate()
    }
}
