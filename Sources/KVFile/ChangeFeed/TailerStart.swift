// Where a tailer that follows priors starts reading: which segments it reads
// at once, which it only maps, and which it reads later in turn.

extension LogTailer {
    /// The segments of the store, for a tailer that follows priors: the first
    /// that may hold records after `start` is read (records after it are
    /// deferred as events, the others only counted), the others are only
    /// mapped; those after the first are returned, to be read in turn. With no
    /// `start` (from now) only the active segment is read. A reader retries
    /// when a file vanishes under it (a compaction finishing).
    static func loadAfter(_ start: UInt64?, names: [String], loader: inout StoreLoader) throws(KVFileError) -> (StoreState, unread: [UInt32]) {
        var names = names
        let directory = loader.directory
        return try VanishedFiles.retrying(pauseMilliseconds: 2, beforeRetry: { () throws(KVFileError) in
            names = try Syscalls.listDirectory(directory)
        }) { () throws(KVFileError) -> (StoreState, unread: [UInt32]) in
            let ids = try loader.resolveSegments(names)
            let state = StoreState(directory: directory, index: try SharedIndex.anonymous(expectedKeys: 64))
            state.feedOnly = true
            state.deferAbove = start
            // The log's own segments in order, by base sequence number; a header cut short is the newest one's.
            var log: [(id: UInt32, header: SegmentHeader?)] = []
            for id in ids {
                let header = try loader.header(of: id)
                if header?.compacted == true {
                    try loader.mapWithoutReading(id, into: state)  // every record is at or below the compaction floor
                } else {
                    log.append((id, header))
                }
            }
            var unread: [UInt32] = []
            var readOne = false
            for (position, segment) in log.enumerated() {
                let isLast = position == log.count - 1
                // A segment's records come before the next one's base sequence number. When the
                // next one's header is not there (its creation under way, or cut short by a power
                // loss), this one may be the last with records: from now, its newest is the start.
                let next = isLast ? nil : log[position + 1].header?.baseSeq
                let holdsLater = isLast || next == nil || start.map { next! > $0 } ?? false
                if !holdsLater {
                    try loader.mapWithoutReading(segment.id, into: state)
                } else if start != nil && readOne {
                    try LogTailer.queue(segment.id, loader: loader, state: state, unread: &unread)
                } else if isLast {
                    // From now: where the index says the log ends, when it can say so for this file.
                    let end = start == nil ? segment.header.flatMap { indexedEnd(of: segment.id, header: $0, ids: ids, directory: directory) } : nil
                    let nextSeq = state.nextSeq
                    var trusted = false
                    if let end {
                        state.nextSeq = max(nextSeq, end.nextSeq)
                        do throws(KVFileError) {
                            try loader.loadActive(segment.id, into: state, hints: nil, resumeAt: end.offset)
                            // Closed cleanly, the file's records must end where the index says (as for any reader).
                            trusted = !end.closed || state.segment(segment.id)?.closedRecordsEnd() == end.offset
                        } catch where error.code == .corrupt {
                            // The index names records past the file's.
                        }
                        if !trusted {
                            state.remove(segment.id)
                            state.nextSeq = nextSeq
                        }
                    }
                    if !trusted { try loader.loadActive(segment.id, into: state, hints: nil) }
                    readOne = true
                } else {
                    try loader.loadSealed(segment.id, into: state)
                    readOne = true
                }
            }
            try state.finishLoading()
            return (state, unread)
        }
    }

    /// Where the index file says the log ends, when that end lies in the
    /// active segment `id` (whose header is `header`) and the index can be
    /// trusted for this log (see man/kvfile.5, "Using the index"): a tailer
    /// from now reads only what follows it instead of the whole segment.
    /// Records past the end (a writer's newest, or one that died) are read.
    private static func indexedEnd(of id: UInt32, header: SegmentHeader, ids: [UInt32], directory: String) -> (offset: Int, nextSeq: UInt64, closed: Bool)? {
        guard let index = try? SharedIndex.open(path: StoreFiles(directory).index, writable: false),
              !index.isTornByDeadWriter, IndexedOpen.problem(with: index, ids: ids, writer: false) == nil,
              let entry = index.segmentEntry(id, create: false),
              IndexFormat.entry(entry, describes: header),
              let (end, nextSeq) = index.readConsistently({ (index.logEnd, index.nextSeq) }) else { return nil }
        let position = LogPosition(packed: end)
        guard position.segment == id, position.offset >= RecordFormat.segmentHeaderSize, nextSeq > 0 else { return nil }
        return (position.offset, nextSeq, index.state == IndexFormat.stateClosed)
    }

    /// Maps log segment `id` to be read later, from its first record (nothing
    /// is queued for a file whose creation is under way or was cut short:
    /// the directory is followed until it has a header).
    static func queue(_ id: UInt32, loader: StoreLoader, state: StoreState, unread: inout [UInt32]) throws(KVFileError) {
        try loader.mapWithoutReading(id, into: state)
        guard let segment = state.segment(id) else { return }
        segment.length = RecordFormat.segmentHeaderSize
        unread.append(id)
    }
}
