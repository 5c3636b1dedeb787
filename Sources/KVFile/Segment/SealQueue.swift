import Synchronization

/// A segment the writer rolled away from, which still needs its tail cut,
/// a sync and its hint file.
struct PendingSeal {
    var segment: Segment
    var hints: HintBuilder
}

/// The segments rolls left behind, waiting to be sealed outside the write
/// lock (so a roll never makes other writers wait for a sync). The writer
/// adds to it under the store's write lock; the seal scheduler takes from
/// it; whether it is empty can be asked without the lock.
final class SealQueue: @unchecked Sendable {
    private var seals: [PendingSeal] = []
    private let count = Atomic<Int>(0)

    /// True when no segment waits (read without the write lock).
    var isEmpty: Bool { count.load(ordering: .acquiring) == 0 }

    /// Under the write lock.
    func add(_ seal: PendingSeal) {
        seals.append(seal)
        count.store(seals.count, ordering: .releasing)
    }

    /// Under the write lock: every waiting seal, oldest first.
    func takeAll() -> [PendingSeal] {
        defer {
            seals = []
            count.store(0, ordering: .releasing)
        }
        return seals
    }

    /// Under the write lock: seals that failed go back to the front, for the next attempt.
    func putBack(_ failed: [PendingSeal]) {
        seals = failed + seals
        count.store(seals.count, ordering: .releasing)
    }
}
