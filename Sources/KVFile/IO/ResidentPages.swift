import CKVFileSupport

/// Whether reading some mapped bytes may wait for the disk, asked cheaply:
/// mincore costs about a microsecond a call here, so pages it found in memory
/// are remembered for about a second (a direct-mapped table of 65,536 page
/// numbers, 512 KiB, shared by the process and made on first use). A page the kernel evicts within that second is
/// read as if it were in memory: one wait, where the caller asked for none.
/// For the reads that decline to wait (``Store/withVersionedValueIfAtHand(forKey:_:)``).
enum ResidentPages {
    private static let entries = 1 << 16
    /// Each entry: page number << 16 | the 256 ms tick it was seen in memory (0: empty).
    nonisolated(unsafe) private static let table: UnsafeMutablePointer<UInt64> = {
        let table = UnsafeMutablePointer<UInt64>.allocate(capacity: entries)
        table.initialize(repeating: 0, count: entries)
        return table
    }()
    /// How many ticks a page stays known (4 × 256 ms).
    private static let freshTicks: UInt64 = 4

    /// True when every page of the `count` bytes at `address` is in memory.
    @inline(__always)
    static func contain(_ address: UnsafeRawPointer, count: Int) -> Bool {
        let tick = (Syscalls.monotonicMilliseconds() >> 8) & 0xFFFF
        let first = UInt64(UInt(bitPattern: Int(bitPattern: address))) >> 12
        let last = UInt64(UInt(bitPattern: Int(bitPattern: address) + max(count, 1) - 1)) >> 12
        var page = first
        while page <= last {
            let slot = table + Int(truncatingIfNeeded: (page &* 0x9E37_79B9_7F4A_7C15) >> 48)
            let entry = kvf_load_relaxed_u64(slot)
            guard entry >> 16 == page, (tick &- (entry & 0xFFFF)) & 0xFFFF < freshTicks else { break }
            page += 1
        }
        guard page <= last else { return true }
        // Ask the kernel about the rest, and remember what it says is there.
        let start = UnsafeRawPointer(bitPattern: UInt(page << 12))!
        let rest = Int(bitPattern: address) + max(count, 1) - Int(bitPattern: start)
        guard Syscalls.isInMemory(start, count: rest) else { return false }
        while page <= last {
            let slot = table + Int(truncatingIfNeeded: (page &* 0x9E37_79B9_7F4A_7C15) >> 48)
            kvf_store_relaxed_u64(slot, page << 16 | tick)
            page += 1
        }
        return true
    }
}
