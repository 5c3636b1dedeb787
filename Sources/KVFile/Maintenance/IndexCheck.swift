#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// Compares the index file with the log (part of ``StoreCheck``): what a
/// writer opening the store would say of it, and, for an index closed
/// cleanly, whether every key it names is the key's latest record.
enum IndexCheck {
    static func run(path: String, names: [String]) -> [CheckProblem] {
        let file = IndexFormat.fileName
        guard names.contains(file) else {
            return [CheckProblem(severity: .warning, file: file, offset: nil, message: "there is no index file; the next writer builds it")]
        }
        let index: SharedIndex
        do {
            guard let opened = try SharedIndex.open(path: StoreFiles(path).index, writable: false) else { return [] }
            index = opened
        } catch {
            return [CheckProblem(severity: .warning, file: file, offset: error.offset, message: "\(error.message); the next writer builds it anew")]
        }
        var loader = StoreLoader(directory: path, writer: false, segmentSize: 0)
        guard let ids = try? loader.resolveSegments(names) else { return [] }
        if let lost = LogEndCheck.recordsCutOffProblem(index, directory: path) {
            return [CheckProblem(severity: .error, file: lost.file, offset: lost.offset, message: lost.what)]
        }
        if let problem = IndexedOpen.problem(with: index, ids: ids, writer: true) {
            return [CheckProblem(severity: .warning, file: file, offset: nil, message: "the index cannot be used (\(problem)); the next writer builds it anew")]
        }
        // A writer has it open (or stopped without closing it, and the next one catches it up): it changes as we look.
        guard index.state == IndexFormat.stateClosed else { return [] }
        // The log's own answer: an index built in memory from the segments.
        guard let built = try? StoreDirectory.load(names: names, loader: &loader).state,
              let shared = try? IndexedOpen.openReader(names: names, loader: &loader) else {
            return [CheckProblem(severity: .warning, file: file, offset: nil, message: "the index does not match the log's end; the next writer catches it up")]
        }
        var problems: [CheckProblem] = []
        var expected = 0
        built.index.forEach { key, location in
            expected += 1
            guard problems.count < 10 else { return }
            switch shared.index.probe(key) {
            case .found(let found) where found.segment == location.segment && found.offset == location.offset: break
            case .found(let found):
                problems.append(CheckProblem(severity: .error, file: file, offset: nil,
                    message: "key \(KeyText.describe(key)) points at \(FileNames.segment(found.segment)) offset \(found.offset); its latest record is in \(FileNames.segment(location.segment)) at \(location.offset)"))
            case .notFound:
                problems.append(CheckProblem(severity: .error, file: file, offset: nil, message: "key \(KeyText.describe(key)) is missing from the index"))
            case .pageDamaged(let at):
                problems.append(CheckProblem(severity: .error, file: file, offset: at, message: "a page of slots fails its checksum"))
            default:
                problems.append(CheckProblem(severity: .error, file: file, offset: nil, message: "key \(KeyText.describe(key)) cannot be looked up"))
            }
        }
        if problems.isEmpty && shared.index.count != expected {
            // The counts are statistics a writer killed mid-write can leave off by that write; the slots are right.
            problems.append(CheckProblem(severity: .warning, file: file, offset: IndexFormat.keysAt,
                                         message: "the index counts \(shared.index.count) keys; the log holds \(expected) (the next rebuild recounts)"))
        }
        return problems
    }
}
