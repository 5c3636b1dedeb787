/// What a segment file's header, size and (for the active segment) last
/// bytes say about where its records end and what damage in them means
/// (man/kvfile.5, "Layouts of a segment file").
struct SegmentLayout: Equatable {
    /// Records lie in [40, recordEnd).
    var recordEnd: Int
    /// Every record below `recordEnd` was whole on stable storage when the
    /// file got this shape: damage there is corruption (zeros aside).
    var complete: Bool
    /// Where the block map's entries start, and how many there are (0: no map).
    var mapStart = 0
    var mapBlocks = 0
    /// Where the watermark is (open layout only).
    var watermarkAt: Int?
    /// What the closing trailer says (closed layout only).
    var closed: BlockMap.Closed?
    /// The version-1 rule applies (no map, no completeness).
    var legacy = false

    /// `trailer` reads the file's last 24 bytes (only asked for a possibly closed file).
    static func of(_ header: SegmentHeader, fileSize: Int, trailer: () -> UnsafeRawBufferPointer) -> SegmentLayout {
        if header.version < 2 { return SegmentLayout(recordEnd: fileSize, complete: false, legacy: true) }
        if header.compacted { return SegmentLayout(recordEnd: fileSize, complete: true) }
        let mapOffset = Int(header.mapOffset)
        if mapOffset == 0 { return SegmentLayout(recordEnd: fileSize, complete: false) }
        if fileSize > mapOffset {
            // Open: records below the map, the map and its watermark past them.
            return SegmentLayout(recordEnd: mapOffset, complete: false, mapStart: mapOffset,
                                 mapBlocks: mapOffset / BlockMap.blockSize, watermarkAt: mapOffset + BlockMap.size(mapOffset: mapOffset))
        }
        // Closing happens to the active segment; a later segment may exist when the next writer's
        // roll outran its reopen's sync (a crash in between), so any segment may be found closed.
        if let closed = BlockMap.closed(trailer: trailer(), segmentID: header.segmentID, fileSize: fileSize) {
            // Closed: records, the list of their sizes, the trailer. The scan runs to the file's
            // end; the trailer is believed only where the records really end (see ``LaterRecordProbe``).
            return SegmentLayout(recordEnd: fileSize, complete: true, closed: closed)
        }
        // Cut to its records after they were synced (a seal, or a writer reopening a closed file).
        return SegmentLayout(recordEnd: fileSize, complete: true)
    }

    /// The layout of a file whose first `bytes.count` bytes are at hand.
    static func of(_ header: SegmentHeader, bytes: UnsafeRawBufferPointer) -> SegmentLayout {
        of(header, fileSize: bytes.count) {
            let start = max(0, bytes.count - BlockMap.trailerSize)
            return UnsafeRawBufferPointer(rebasing: bytes[start...])
        }
    }
}
