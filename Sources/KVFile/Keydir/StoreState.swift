/// Everything an open store knows in memory. Guarded by the store's lock.
final class StoreState {
    let directory: String
    let keydir: Keydir
    /// Open segments by id; nil where a number is unused.
    private(set) var segmentsByID: [Segment?] = [nil]
    /// Ids of open segments, ascending; the last one is the active segment.
    private(set) var segmentIDs: [UInt32] = []
    /// The next sequence number a writer gives out.
    var nextSeq: UInt64 = 1
    /// The smallest and largest sequence numbers in the log (0 when empty).
    var oldestSeq: UInt64 = 0
    var newestSeq: UInt64 = 0
    /// Bytes of the hint files of the open sealed segments.
    var hintBytes = 0

    init(directory: String, keydir: Keydir) {
        self.directory = directory
        self.keydir = keydir
    }

    var activeSegment: Segment? { segmentIDs.last.flatMap { segmentsByID[Int($0)] } }

    @inline(__always)
    func segment(_ id: UInt32) -> Segment? {
        let index = Int(id)
        return index < segmentsByID.count ? segmentsByID[index] : nil
    }

    func add(_ segment: Segment) {
        let index = Int(segment.id)
        if index >= segmentsByID.count {
            segmentsByID.append(contentsOf: repeatElement(nil, count: index - segmentsByID.count + 1))
        }
        segmentsByID[index] = segment
        segmentIDs.append(segment.id)
        segmentIDs.sort()
    }

    var segments: [Segment] { segmentIDs.compactMap { segmentsByID[Int($0)] } }

    func notice(seq: UInt64) {
        if oldestSeq == 0 || seq < oldestSeq { oldestSeq = seq }
        if seq > newestSeq { newestSeq = seq }
        if seq >= nextSeq { nextSeq = seq + 1 }
    }

    /// Applies a record met while loading: older records never override newer ones.
    @inline(__always)
    func applyLoaded(key: UnsafeRawBufferPointer, operation: Operation, location: KeyLocation) {
        notice(seq: location.seq)
        var location = location
        if operation == .deleted { location.size = 0 }
        _ = keydir.applyLoaded(key, location)
    }

    /// Applies a record that is newer than everything known (a write, or a reader catching up).
    @inline(__always)
    func applyNewest(key: UnsafeRawBufferPointer, operation: Operation, location: KeyLocation) {
        notice(seq: location.seq)
        let old: KeyLocation?
        if operation == .deleted {
            old = keydir.remove(key)
        } else {
            old = keydir.set(key, location)
            segment(location.segment)?.liveBytes += Int(location.size)
        }
        if let old { segment(old.segment)?.liveBytes -= Int(old.size) }
    }

    /// Ends a load: drops deletion marks and recounts live bytes per segment.
    func finishLoading() {
        keydir.dropDeletionMarks()
        for segment in segments { segment.liveBytes = 0 }
        keydir.forEach { _, location in segment(location.segment)?.liveBytes += Int(location.size) }
    }

    func stats() -> StoreStats {
        let all = segments
        let segmentBytes = all.reduce(0) { $0 + $1.length }
        let recordBytes = all.reduce(0) { $0 + max(0, $1.length - RecordFormat.segmentHeaderSize) }
        return StoreStats(
            keys: keydir.count, segments: all.count, segmentBytes: segmentBytes, hintBytes: hintBytes,
            liveBytes: keydir.liveBytes, deadBytes: recordBytes - keydir.liveBytes,
            oldestSeq: oldestSeq, newestSeq: newestSeq, formatVersion: Int(RecordFormat.version),
            keydirBytes: keydir.memoryBytes)
    }
}
