// Names of the files inside a store directory (see man/kvfile.5, "Files").

enum FileNames {
    static let lock = "kvfile.lock"
    static let index = IndexFormat.fileName
    static let marker = CompactionMarker.fileName
    static let watch = WatchFile.name
    static let segmentSuffix = ".kvseg"
    static let hintSuffix = ".kvhint"
    static let temporarySuffix = ".tmp"

    static func segment(_ id: UInt32) -> String { padded(id) + segmentSuffix }
    static func hint(_ id: UInt32) -> String { padded(id) + hintSuffix }

    private static func padded(_ id: UInt32) -> String {
        let digits = String(id)
        return String(repeating: "0", count: max(0, 8 - digits.count)) + digits
    }

    enum Kind: Equatable {
        case segment(UInt32)
        case hint(UInt32)
        case lock
        case index
        case temporary
        case other
    }

    static func classify(_ name: String) -> Kind {
        if name == lock { return .lock }
        if name == index { return .index }
        if name.hasSuffix(temporarySuffix) && (name.contains(segmentSuffix) || name.contains(hintSuffix) || name.hasPrefix("kvfile.compaction") || name == index + temporarySuffix) {
            return .temporary
        }
        if let id = number(name, suffix: segmentSuffix) { return .segment(id) }
        if let id = number(name, suffix: hintSuffix) { return .hint(id) }
        return .other
    }

    /// The segment numbers among directory entry names, ascending.
    static func segmentIDs(in names: [String]) -> [UInt32] {
        names.compactMap { name -> UInt32? in
            if case .segment(let id) = classify(name) { return id }
            return nil
        }.sorted()
    }

    /// The segment numbers of the hint files among directory entry names.
    static func hintIDs(in names: [String]) -> [UInt32] {
        names.compactMap { name -> UInt32? in
            if case .hint(let id) = classify(name) { return id }
            return nil
        }.sorted()
    }

    private static func number(_ name: String, suffix: String) -> UInt32? {
        guard name.hasSuffix(suffix) else { return nil }
        let stem = name.dropLast(suffix.count)
        // Only the name a writer gives (8 digits, more only when needed): "000000001.kvseg" is not segment 1.
        guard stem.count >= 8, stem.allSatisfy({ $0.isASCII && $0.isNumber }), let id = UInt32(stem), id > 0, padded(id) == stem else {
            return nil
        }
        return id
    }
}
