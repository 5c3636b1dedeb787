// Paths of the files in one store directory; their names are in FileNames.

/// Where each file of a store lives, so no code builds `directory + "/" + …` by hand.
struct StoreFiles: Sendable {
    let directory: String

    init(_ directory: String) { self.directory = directory }

    func segment(_ id: UInt32) -> String { file(FileNames.segment(id)) }
    func hint(_ id: UInt32) -> String { file(FileNames.hint(id)) }
    var lock: String { file(FileNames.lock) }
    var index: String { file(FileNames.index) }
    var marker: String { file(FileNames.marker) }
    var watch: String { file(FileNames.watch) }

    /// The file called `name` in the store.
    func file(_ name: String) -> String { directory + "/" + name }

    /// Where `path` is written before it is renamed into place.
    static func temporary(of path: String) -> String { path + FileNames.temporarySuffix }
}
