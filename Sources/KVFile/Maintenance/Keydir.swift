#if canImport(Glibc)
import Glibc
#endif
import CKVFileSupport

/// An in-memory hash index of keys copied out of the files: repair uses it
/// while it reads damaged segments, whose records the store's index cannot name.
///
/// Built for memory (see issue "keydir ≤ 48 B per 16-byte key"): entries are
/// packed into one arena as [segment u32][offset u32][size u32]
/// [seq (low 51 bits) | keylen << 51, u64][key bytes] (20 bytes plus the key,
/// rounded up to 4), and an open-addressing table of u32 slots with linear
/// probing points at them. A slot holds the entry's arena offset, whose two
/// low bits are free (entries are 4-aligned) and carry two bits of the key's
/// hash: most probes past other keys then skip the arena, a cache miss each.
///
/// The table grows without a pause: a resize allocates the new table and
/// then each change moves a few slots of the old one over, so no single put
/// rehashes a million keys while holding the store's lock. Until the old
/// table is empty, keys not found in the new one are looked for in it.
/// Not thread-safe: the store guards it.
final class Keydir {
    private static let entryHeader = 20
    private static let emptySlot: UInt32 = 0
    private static let deletedSlot: UInt32 = 1
    private static let tagMask: UInt32 = 3
    /// Arena offsets start here so that 0 and 1 stay free for the slot markers.
    private static let arenaStart = 8
    static let maxArena = Int(UInt32.max) & ~3
    /// The most arena bytes this keydir may use.
    private let arenaLimit: Int
    /// A key could not be added because the arena was full (while loading,
    /// where nothing can be refused one at a time): the loader reports it.
    private(set) var isFull = false
    private static let seqMask: UInt64 = RecordFormat.maxSeq
    private static let keyLengthShift: UInt64 = 51

    private var arena: UnsafeMutableRawPointer
    private var arenaCapacity: Int
    private var arenaUsed: Int
    /// Arena bytes of removed entries, reclaimed by `compactArena`.
    private var arenaGarbage = 0

    private var slots: UnsafeMutablePointer<UInt32>
    private var slotMask: Int
    /// Deleted markers in `slots`.
    private var deletedSlots = 0
    /// The table a resize is emptying into `slots` (nil when none), and how
    /// far: its slots below `migrated` have moved and hold deleted markers.
    private var oldSlots: UnsafeMutablePointer<UInt32>?
    private var oldMask = 0
    private var migrated = 0
    /// Old slots moved per change: a resize ends long before the new table fills.
    private static let migrationStep = 16

    /// True while a resize is moving slots over.
    var isResizing: Bool { oldSlots != nil }
    private(set) var count = 0
    /// Sum of `size` over live entries.
    private(set) var liveBytes = 0
    private let seed: UInt64

    /// `arenaLimit` is for tests: the 4 GiB the slots can address, or less.
    init(expectedKeys: Int = 0, arenaLimit: Int = Keydir.maxArena) {
        self.arenaLimit = min(arenaLimit, Keydir.maxArena)
        var capacity = 1024
        while capacity * 7 / 10 < expectedKeys { capacity *= 2 }
        slotMask = capacity - 1
        slots = Keydir.emptyTable(capacity)
        arenaCapacity = max(4096, expectedKeys * 40)
        arena = malloc(arenaCapacity)!
        arenaUsed = Keydir.arenaStart
        seed = UInt64.random(in: 0...UInt64.max)
    }

    deinit {
        free(slots)
        if let oldSlots { free(oldSlots) }
        free(arena)
    }

    /// A table of empty slots. calloc hands out fresh zero pages, so a large
    /// table costs no clearing up front (empty is 0).
    private static func emptyTable(_ capacity: Int) -> UnsafeMutablePointer<UInt32> {
        calloc(capacity, MemoryLayout<UInt32>.stride)!.bindMemory(to: UInt32.self, capacity: capacity)
    }

    /// Bytes of memory the index uses: the slot table plus the arena bytes in
    /// use. Arena capacity past that is address space realloc reserved and
    /// nothing has touched, so it is not resident.
    var memoryBytes: Int { (slotMask + 1 + (oldSlots == nil ? 0 : oldMask + 1)) * 4 + arenaUsed }

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

    /// The index of the slot holding `key` in `table`, or -1.
    @inline(__always)
    private func probe(_ table: UnsafeMutablePointer<UInt32>, mask: Int, _ key: UnsafeRawBufferPointer, hash: UInt64) -> Int {
        var index = Int(truncatingIfNeeded: hash) & mask
        let tag = Keydir.tag(hash)
        while true {
            let value = table[index]
            if value == Keydir.emptySlot { return -1 }
            // A deleted marker (1) never matches: real slot values are 8 or more.
            if value & Keydir.tagMask == tag && value != Keydir.deletedSlot && keyMatches(entry(value), key) { return index }
            index = (index + 1) & mask
        }
    }

    /// A slot holding a key: which table, and where in it.
    private struct Found {
        var table: UnsafeMutablePointer<UInt32>
        var mask: Int
        var index: Int
        var value: UInt32 { table[index] }
    }

    /// The slot holding `key`, in the table or in the one a resize is emptying.
    @inline(__always) private func find(_ key: UnsafeRawBufferPointer, hash: UInt64) -> Found? {
        let index = probe(slots, mask: slotMask, key, hash: hash)
        if index >= 0 { return Found(table: slots, mask: slotMask, index: index) }
        if let oldSlots {
            let old = probe(oldSlots, mask: oldMask, key, hash: hash)
            if old >= 0 { return Found(table: oldSlots, mask: oldMask, index: old) }
        }
        return nil
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
        guard let found = find(key, hash: KeyHash.hash(key.baseAddress!, key.count, seed: seed)) else { return nil }
        let p = entry(found.value)
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
        guard let found = find(key, hash: KeyHash.hash(key.baseAddress!, key.count, seed: seed)) else { return nil }
        return location(at: entry(found.value))
    }

    /// Calls `body` with every entry's key and location, in table order.
    func forEach(_ body: (UnsafeRawBufferPointer, KeyLocation) throws -> Void) rethrows {
        for (table, mask) in tables {
            for index in 0...mask {
                let value = table[index]
                if value == Keydir.emptySlot || value == Keydir.deletedSlot { continue }
                let p = entry(value)
                try body(UnsafeRawBufferPointer(start: p + Keydir.entryHeader, count: keyLength(at: p)), location(at: p))
            }
        }
    }

    /// The table, and the one a resize is emptying if there is one.
    private var tables: [(UnsafeMutablePointer<UInt32>, Int)] {
        oldSlots.map { [(slots, slotMask), ($0, oldMask)] } ?? [(slots, slotMask)]
    }

    // MARK: changes

    /// Sets `key` to `location` and returns what it replaced.
    @discardableResult
    @inline(__always)
    func set(_ key: UnsafeRawBufferPointer, _ newLocation: KeyLocation) -> KeyLocation? {
        migrateSome()
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
        if let oldSlots {
            let old = probe(oldSlots, mask: oldMask, key, hash: hash)
            if old >= 0 {
                // Not moved yet: change it where it is.
                let p = entry(oldSlots[old])
                let previous = location(at: p)
                setLocation(newLocation, at: p)
                liveBytes += Int(newLocation.size) - Int(previous.size)
                return previous
            }
        }
        insertNew(key, newLocation, hash: hash, slot: firstDeleted >= 0 ? firstDeleted : index)
        return nil
    }

    private func insertNew(_ key: UnsafeRawBufferPointer, _ newLocation: KeyLocation, hash: UInt64, slot: Int) {
        let needed = Keydir.entrySize(keyLength: key.count)
        if arenaUsed + needed > arenaCapacity && !growArena(needed) {
            isFull = true
            return
        }
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
        if (count + deletedSlots) * 10 > (slotMask + 1) * 7 { resize() }
    }

    /// Removes `key` and returns where it was.
    @discardableResult
    func remove(_ key: UnsafeRawBufferPointer) -> KeyLocation? {
        migrateSome()
        guard let found = find(key, hash: KeyHash.hash(key.baseAddress!, key.count, seed: seed)) else { return nil }
        let p = entry(found.value)
        let old = location(at: p)
        arenaGarbage += Keydir.entrySize(keyLength: keyLength(at: p))
        // An empty next slot ends every probe chain through this one, so this slot can be empty too.
        if found.table[(found.index + 1) & found.mask] == Keydir.emptySlot {
            found.table[found.index] = Keydir.emptySlot
        } else {
            found.table[found.index] = Keydir.deletedSlot
            if found.table == slots { deletedSlots += 1 }
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
        if let found = find(key, hash: hash) {
            let p = entry(found.value)
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
        hasRoom(forKeyLengths: CollectionOfOne(length))
    }

    /// False when new keys of these lengths would not all fit in the arena.
    func hasRoom(forKeyLengths lengths: some Sequence<Int>) -> Bool {
        arenaUsed - arenaGarbage + lengths.reduce(0) { $0 + Keydir.entrySize(keyLength: $1) } <= arenaLimit
    }

    // MARK: growth

    /// Makes room for `needed` more arena bytes; false when the limit does not allow it.
    private func growArena(_ needed: Int) -> Bool {
        if arenaGarbage * 4 > arenaUsed || arenaUsed + needed > arenaLimit {
            compactArena()
            if arenaUsed + needed <= arenaCapacity { return true }
        }
        guard arenaUsed + needed <= arenaLimit else { return false }
        var newCapacity = arenaCapacity
        while newCapacity < arenaUsed + needed { newCapacity += newCapacity / 2 }
        newCapacity = min(newCapacity, arenaLimit)
        guard let grown = realloc(arena, newCapacity) else { return false }
        arena = grown
        arenaCapacity = newCapacity
        return true
    }

    /// Copies live entries into a fresh arena, dropping garbage (by itself
    /// when garbage piles up; tests call it too).
    func compactArena() {
        let fresh = malloc(arenaCapacity)!
        var used = Keydir.arenaStart
        for (table, mask) in tables {
            for index in 0...mask {
                let value = table[index]
                if value == Keydir.emptySlot || value == Keydir.deletedSlot { continue }
                let length = Keydir.entrySize(keyLength: keyLength(at: entry(value)))
                (fresh + used).copyMemory(from: entry(value), byteCount: length)
                table[index] = UInt32(used) | (value & Keydir.tagMask)
                used += length
            }
        }
        free(arena)
        arena = fresh
        arenaUsed = used
        arenaGarbage = 0
    }

    /// Starts moving to a table twice the size (or the same size when it is
    /// deleted markers, not keys, that filled it); changes move it over.
    private func resize() {
        while oldSlots != nil { migrateSome() }
        var capacity = slotMask + 1
        if count * 10 > capacity * 5 { capacity *= 2 }
        oldSlots = slots
        oldMask = slotMask
        migrated = 0
        slots = Keydir.emptyTable(capacity)
        slotMask = capacity - 1
        deletedSlots = 0
        migrateSome()
    }

    /// Moves the next `migrationStep` slots of the old table, if any, into the table.
    private func migrateSome() {
        guard let old = oldSlots else { return }
        let end = min(migrated + Keydir.migrationStep, oldMask + 1)
        for index in migrated..<end {
            let value = old[index]
            if value == Keydir.emptySlot || value == Keydir.deletedSlot { continue }
            let p = entry(value)
            var target = Int(truncatingIfNeeded: KeyHash.hash(p + Keydir.entryHeader, keyLength(at: p), seed: seed)) & slotMask
            while slots[target] != Keydir.emptySlot && slots[target] != Keydir.deletedSlot { target = (target + 1) & slotMask }
            if slots[target] == Keydir.deletedSlot { deletedSlots -= 1 }
            slots[target] = value
            // A marker, not empty: probe chains of keys not moved yet run through here.
            old[index] = Keydir.deletedSlot
        }
        migrated = end
        if migrated > oldMask {
            free(old)
            oldSlots = nil
        }
    }
}
