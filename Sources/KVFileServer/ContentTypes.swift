import KVFile

/// The `Content-Type` each key was last PUT with through `/v1/keys/{key}`,
/// kept in a small kvfile store of its own (`STORE/server-content-types/`)
/// so that the values themselves stay exactly the bytes sent. An entry holds
/// the sequence number of the write it describes; when the key has been
/// written since (by `PUT /`, `kvfile put`, …) the entry no longer applies.
final class ContentTypes: Sendable {
    static let directoryName = "server-content-types"
    static let defaultType = "application/octet-stream"

    private let store: Store

    init(storePath: String, options: StoreOptions) throws(KVFileError) {
        var options = options
        options.createIfMissing = true
        options.autoCompaction = CompactionPolicy(minDeadRatio: 0.5, minDeadBytes: 1 << 20)
        store = try Store(path: storePath + "/" + Self.directoryName, options: options)
    }

    /// The type recorded for the write `seq` of `key`, or the default.
    func type(of key: [UInt8], seq: UInt64) async -> String {
        guard let entry = try? await KVService.pointRead(store, key, { value, _ in value.map { Array($0) } }),
              let newline = entry.firstIndex(of: UInt8(ascii: "\n")),
              UInt64(String(decoding: entry[..<newline], as: UTF8.self)) == seq
        else { return Self.defaultType }
        return String(decoding: entry[(newline + 1)...], as: UTF8.self)
    }

    /// Records `type` for the write `seq` of `key` (or forgets the key's type for the default).
    func record(_ type: String?, for key: [UInt8], seq: UInt64) throws(KVFileError) {
        guard let type, type != Self.defaultType else {
            try forget(key)
            return
        }
        try store.put(key, Array("\(seq)\n\(type)".utf8))
    }

    func forget(_ key: [UInt8]) throws(KVFileError) {
        if try store.contains(key) { try store.delete(key) }
    }

    func sync() throws(KVFileError) { try store.sync() }

    func close() throws(KVFileError) { try store.close() }
}
