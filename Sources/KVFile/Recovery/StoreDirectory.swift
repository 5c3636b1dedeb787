#if canImport(Glibc)
import Glibc
#endif

/// Decides whether a path is, or may become, a store directory.
enum StoreDirectory {
    /// Checks `directory` and creates it for a writer when allowed; returns its file names.
    static func prepare(_ directory: String, options: StoreOptions) throws(KVFileError) -> [String] {
        switch try Syscalls.kind(of: directory) {
        case .missing:
            if options.readOnly || !options.createIfMissing {
                throw KVFileError(.storeNotFound, "no store at \(directory): the directory does not exist", path: directory)
            }
            try Syscalls.makeDirectory(directory)
            return []
        case .regularFile, .other:
            throw KVFileError(.notAStore, "\(directory) is a file, not a kvfile store (a store is a directory). Name a new or existing store directory.", path: directory)
        case .directory:
            let names = try Syscalls.listDirectory(directory)
            let kinds = names.map(FileNames.classify)
            let isStore = kinds.contains { kind in
                switch kind {
                case .segment, .lock: true
                default: false
                }
            }
            if !isStore {
                if !names.isEmpty {
                    throw KVFileError(.notAStore, "\(directory) is not empty and holds no kvfile store; refusing to turn it into one. Name a new or empty directory.", path: directory)
                }
                if options.readOnly || !options.createIfMissing {
                    throw KVFileError(.storeNotFound, "no store at \(directory): the directory is empty", path: directory)
                }
            }
            return names
        }
    }

    /// A writer that finds an intact compaction marker finishes that compaction
    /// (outputs are complete once the marker exists); a damaged marker was never
    /// committed and is removed. Returns whether it changed the directory.
    static func finishInterruptedCompaction(_ directory: String, names: [String]) throws(KVFileError) -> Bool {
        guard names.contains(CompactionMarker.fileName) else { return false }
        if let marker = try CompactionMarker.read(directory: directory) {
            try marker.rollForward(directory: directory)
        } else {
            try Syscalls.unlink(StoreFiles(directory).marker)
        }
        return true
    }

    /// Loads the store's segments into a fresh state. A reader retries when a
    /// file vanishes under it (a compaction finishing in another process).
    /// The index goes to anonymous memory, or to `indexFile` (created there).
    static func load(names: [String], loader: inout StoreLoader, expectedKeys: Int = 0, deferAbove: UInt64? = nil,
                     indexFile: String? = nil) throws(KVFileError) -> (state: StoreState, activeHints: HintBuilder) {
        var names = names
        return try VanishedFiles.retrying(!loader.writer, pauseMilliseconds: 2, beforeRetry: { () throws(KVFileError) in
            names = try Syscalls.listDirectory(loader.directory)
        }) { () throws(KVFileError) -> (state: StoreState, activeHints: HintBuilder) in
            let ids = try loader.resolveSegments(names)
            let expected = expectedKeys > 0 ? expectedKeys : estimateRecords(loader.directory, ids: ids)
            let index: SharedIndex
            if let indexFile {
                index = try SharedIndex.create(path: indexFile, expectedKeys: expected)
            } else {
                index = try SharedIndex.anonymous(expectedKeys: expected)
            }
            let state = StoreState(directory: loader.directory, index: index)
            state.deferAbove = deferAbove
            let hints = try loader.loadAll(ids, into: state)
            return (state, hints)
        }
    }

    /// About how many records the segments hold (hint entry counts, or the
    /// size for a segment without one), so the index is sized once instead of
    /// growing step by step while it loads. An overestimate costs only memory
    /// that is never touched.
    static func estimateRecords(_ directory: String, ids: [UInt32]) -> Int {
        var total = 0
        for id in ids {
            if let file = try? OwnedFile.openIfExists(StoreFiles(directory).hint(id), O_RDONLY) {
                var count: UInt32 = 0
                let n = withUnsafeMutableBytes(of: &count) { raw in
                    (try? Syscalls.preadFully(file.fd, raw, at: 24, path: "")) ?? 0
                }
                if n == 4 { total += Int(UInt32(littleEndian: count)); continue }
            }
            if let file = try? OwnedFile.openIfExists(StoreFiles(directory).segment(id), O_RDONLY) {
                total += ((try? Syscalls.fileSize(file.fd, path: "")) ?? 0) / 96
            }
        }
        return min(total, 1 << 28)
    }

    /// Removes half-written temporary files a crashed writer left behind (writers only).
    static func removeLeftovers(_ directory: String, names: [String]) throws(KVFileError) {
        for name in names where FileNames.classify(name) == .temporary {
            try Syscalls.unlink(StoreFiles(directory).file(name))
        }
    }
}
