import Foundation
import Testing
@testable import KVFile
import KVFileBench

/// A fresh directory under the system temp dir, removed when the test ends.
final class TemporaryDirectory {
    let path: String

    init(_ name: String = "kvfile-test") {
        let template = NSTemporaryDirectory() + "/\(name)-XXXXXX"
        var bytes = Array(template.utf8CString)
        let result = bytes.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(result != nil, "mkdtemp failed")
        path = String(decoding: bytes.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func sub(_ name: String) -> String { path + "/" + name }
}

enum Env {
    static var stress: Bool { ProcessInfo.processInfo.environment["KVFILE_STRESS"] == "1" }
}

/// A small deterministic generator so failures reproduce: the benchmark's splitmix64.
typealias SeededRandom = SplitMix64

func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

/// Every live pair of a store, for comparing with a model.
func contents(_ store: Store) throws -> [[UInt8]: [UInt8]] {
    var result: [[UInt8]: [UInt8]] = [:]
    try store.forEach { key, value in result[key] = value }
    return result
}

func fileBytes(_ path: String) -> [UInt8] {
    Array(FileManager.default.contents(atPath: path) ?? Data())
}

/// Writes `data` to `path`, in place when the file exists: an index file
/// records which file it is (its inode), and a new file would be a copy.
func writeFile(_ path: String, _ data: [UInt8]) {
    if let handle = FileHandle(forWritingAtPath: path) {
        try? handle.truncate(atOffset: 0)
        try? handle.write(contentsOf: Data(data))
        try? handle.close()
        return
    }
    _ = FileManager.default.createFile(atPath: path, contents: Data(data))
}

/// The inode number of `path` (0 when it cannot be read).
func inodeNumber(_ path: String) -> UInt64 {
    var info = stat()
    return stat(path, &info) == 0 ? UInt64(info.st_ino) : 0
}

/// Gives sealed segment file `path` (number `id`) the size it had between its
/// roll and its seal: reserved space and the map's room past its records.
/// Returns its header, or nil when it has none.
func extendAsRolled(_ path: String, id: UInt32) -> SegmentHeader? {
    let decoded = fileBytes(path).withUnsafeBytes { SegmentHeader.decode($0.baseAddress!, available: $0.count, expectedID: id) }
    guard case .success(let header) = decoded, truncate(path, off_t(BlockMap.regionEnd(mapOffset: Int(header.mapOffset)))) == 0 else { return nil }
    return header
}

func segmentFiles(_ dir: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasSuffix(".kvseg") }.sorted()
}

/// A value behind an NSLock: like Synchronization's Mutex, but visible to the
/// thread sanitizer, so tests that share it between threads stay clean under it.
final class Locked<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value

    init(_ value: Value) { self.value = value }

    func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}

/// What a power loss does to the index file besides the log: the next open
/// finds it left open in an earlier boot (it then builds the index from the log).
/// Tests that damage the log the way a power loss would call this, so that
/// what they check is the log's recovery.
func simulateEarlierBoot(_ store: String) {
    let path = store + "/" + IndexFormat.fileName
    var data = fileBytes(path)
    guard data.count >= IndexFormat.tablesStart else { return }
    for i in IndexFormat.bootAt..<(IndexFormat.bootAt + 16) { data[i] = 0 }
    data[IndexFormat.stateAt] = UInt8(IndexFormat.stateOpen)
    writeFile(path, data)
}

/// Removes the index file: the next open builds it from the log.
func forgetIndex(_ store: String) {
    try? FileManager.default.removeItem(atPath: store + "/" + IndexFormat.fileName)
}
