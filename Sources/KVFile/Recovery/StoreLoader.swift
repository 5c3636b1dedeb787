#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// Opens the segments of a store directory and builds the index from hint
/// files and scans (see man/kvfile.5, "Opening and recovery").
struct StoreLoader {
    let directory: String
    let writer: Bool
    let segmentSize: Int

    /// Compaction outputs that are still under their temporary names (a reader
    /// that found a compaction marker reads them there).
    var temporaryOutputs: Set<UInt32> = []

    var files: StoreFiles { StoreFiles(directory) }

    func segmentPath(_ id: UInt32) -> String {
        temporaryOutputs.contains(id) ? StoreFiles.temporary(of: files.segment(id)) : files.segment(id)
    }

    func hintPath(_ id: UInt32) -> String {
        temporaryOutputs.contains(id) ? StoreFiles.temporary(of: files.hint(id)) : files.hint(id)
    }

    /// The segments that make up the store now: the directory's segment files,
    /// seen through an unfinished compaction's marker when there is one (its
    /// inputs are as good as gone, its outputs as good as renamed).
    mutating func resolveSegments(_ names: [String]) throws(KVFileError) -> [UInt32] {
        var ids = Set(FileNames.segmentIDs(in: names))
        temporaryOutputs = []
        var explained = ids
        if names.contains(CompactionMarker.fileName), let marker = try CompactionMarker.read(directory: directory) {
            ids.subtract(marker.inputs)
            explained.formUnion(marker.inputs)
            for id in marker.outputs where !ids.contains(id) {
                temporaryOutputs.insert(id)
                ids.insert(id)
            }
            explained.formUnion(marker.outputs)
        }
        // A hint file is written only after its segment is complete, and goes
        // first when one is removed: one without its segment means the segment is gone.
        if let orphan = FileNames.hintIDs(in: names).first(where: { !explained.contains($0) }) {
            throw KVFileError.corrupt(StoreFiles(directory).segment(orphan), offset: 0,
                                      "the segment is missing, though its hint file \(FileNames.hint(orphan)) is there (its records are lost)")
        }
        return ids.sorted()
    }

    /// Loads every segment of the directory, the sealed ones first; returns the
    /// active segment's hint entries (for a writer).
    func loadAll(_ ids: [UInt32], into state: StoreState) throws(KVFileError) -> HintBuilder {
        let activeID = try activeSegmentID(among: ids)
        for id in ids where id != activeID {
            try loadSealed(id, into: state)
        }
        let hints = HintBuilder(keepsEntries: false)
        if let activeID { try loadActive(activeID, into: state, hints: hints) }
        try state.finishLoading()
        return hints
    }

    /// Reads what appeared since the last load (readers only): the rest of the
    /// active segment and any new segments. Returns false when a known segment
    /// vanished (compaction replaced it): the caller then loads afresh.
    func catchUpAll(_ ids: [UInt32], state: StoreState) throws(KVFileError) -> Bool {
        let present = Set(ids)
        if state.segmentIDs.contains(where: { !present.contains($0) }) { return false }
        if let active = state.activeSegment { try catchUp(active, state: state, hints: nil) }
        for id in ids where state.segment(id) == nil {
            if try isCompactionOutput(id) {
                try loadSealed(id, into: state)
            } else {
                try loadActive(id, into: state, hints: nil)
            }
        }
        try state.finishLoading()
        return true
    }
}
