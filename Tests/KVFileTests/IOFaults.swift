#if canImport(Glibc)
@preconcurrency import Glibc
#endif
import Synchronization
@testable import KVFile

/// The test twin of the file system (reliability suite): installed for one
/// store directory, it can fail any call that ``Syscalls`` makes on a path in
/// it (EIO, ENOSPC, …), cut writes short, and "lose power": put every file
/// back to what was last synced, and every directory entry back to what the
/// last directory sync made durable. ``Syscalls`` finds it through the
/// engine's debug-only ``FileCallSeam``.
final class IOFaults: FaultTwin, @unchecked Sendable {
    /// The kinds of call a rule can fail.
    typealias Call = FileCall

    /// The store directory this twin covers (paths directly in it).
    let directory: String
    private let mutex = PlainMutex()
    private var rule: ((Call, String) -> Int32?)?
    private var maxWriteBytes: Int?
    private var readFilter: ((String, Int, UnsafeMutableRawBufferPointer) -> Void)?
    /// Calls seen so far (for choosing a crash point).
    private(set) var calls = 0
    /// What each file (by inode) held when it was last synced.
    private var syncedByInode: [UInt64: [UInt8]] = [:]
    private var freeSpace: Int?
    /// Files whose sync failed: their durable contents no longer change.
    private var frozenInodes: Set<UInt64> = []
    /// The directory's entries as of its last sync: name → inode.
    private var durableNames: [String: UInt64] = [:]
    /// Synced contents of files unlinked or replaced since the last directory
    /// sync, by the name they had: a power loss brings them back.
    private var ghosts: [String: [UInt8]] = [:]

    // MARK: installing

    // A pthread mutex, not Synchronization.Mutex: ThreadSanitizer cannot see a futex-based lock.
    private static let registryLock = PlainMutex()
    nonisolated(unsafe) private static var installedList: [IOFaults] = []
    private static let anyInstalled = Atomic<Int>(0)

    /// Starts covering `directory`, taking its current files as durable.
    static func install(directory: String) -> IOFaults {
        FileCallSeam.install { IOFaults.covering($0) }
        let faults = IOFaults(directory: directory)
        faults.snapshotEverything()
        registryLock.withLock { installedList.append(faults) }
        anyInstalled.add(1, ordering: .releasing)
        return faults
    }

    /// Stops covering its directory (again: no effect).
    func uninstall() {
        let removed = IOFaults.registryLock.withLock { () -> Bool in
            guard let index = IOFaults.installedList.firstIndex(where: { $0 === self }) else { return false }
            IOFaults.installedList.remove(at: index)
            return true
        }
        if removed { IOFaults.anyInstalled.subtract(1, ordering: .releasing) }
    }

    private init(directory: String) {
        self.directory = directory
    }

    @inline(__always)
    static func covering(_ path: String) -> IOFaults? {
        guard anyInstalled.load(ordering: .acquiring) > 0 else { return nil }
        return registryLock.withLock { installedList.first { $0.covers(path) } }
    }

    private func covers(_ path: String) -> Bool {
        path == directory || (path.hasPrefix(directory) && path.utf8.count > directory.utf8.count
            && path.utf8[path.utf8.index(path.utf8.startIndex, offsetBy: directory.utf8.count)] == UInt8(ascii: "/")
            && !path.utf8.dropFirst(directory.utf8.count + 1).contains(UInt8(ascii: "/")))
    }

    // MARK: configuring

    /// `rule(call, path)` returns an errno to fail that call with, or nil to let it through.
    func setRule(_ rule: ((Call, String) -> Int32?)?) {
        mutex.withLock { self.rule = rule }
    }

    /// Space reservations (fallocate) may take `bytes` in all before they fail with ENOSPC (nil: no limit).
    func setFreeSpace(_ bytes: Int?) {
        mutex.withLock { freeSpace = bytes }
    }

    /// Called by `Syscalls.reserve`: false when the modelled disk has less than `bytes` left.
    func takeSpace(_ bytes: Int) -> Bool {
        mutex.withLock {
            guard let free = freeSpace else { return true }
            if bytes > free { return false }
            freeSpace = free - bytes
            return true
        }
    }

    /// Each write transfers at most `bytes` (nil: all).
    func setMaxWriteBytes(_ bytes: Int?) {
        mutex.withLock { maxWriteBytes = bytes }
    }

    // MARK: called by Syscalls

    func check(_ call: Call, _ path: String) throws(KVFileError) {
        let code = mutex.withLock { () -> Int32? in
            calls += 1
            return rule?(call, path)
        }
        if let code { throw Syscalls.ioError("injected failure of \(call.rawValue) on", path, code) }
    }

    var writeLimit: Int? { mutex.withLock { maxWriteBytes } }

    /// `filter(path, offset, bytes)` may change what a read returned, e.g. to
    /// model a copy taken while another process was writing (nil: reads as they are).
    func setReadFilter(_ filter: ((String, Int, UnsafeMutableRawBufferPointer) -> Void)?) {
        mutex.withLock { readFilter = filter }
    }

    func didRead(_ path: String, at offset: Int, _ bytes: UnsafeMutableRawBufferPointer) {
        mutex.withLock { readFilter }?(path, offset, bytes)
    }

    /// A sync failed: what was not on disk yet is lost (the kernel may drop
    /// pages it could not write and report success later), so the file's
    /// durable contents stay as they were at its last good sync, whatever is synced after.
    func syncFailed(_ fd: Int32, _ path: String) {
        guard path != directory, let inode = Self.inode(fd: fd) else { return }
        mutex.withLock { _ = frozenInodes.insert(inode) }
    }

    /// A file's data reached the disk: remember what it holds now.
    func didSync(_ fd: Int32, _ path: String) {
        guard path != directory else { return didSyncDirectory() }
        if let inode = Self.inode(fd: fd), mutex.withLock({ frozenInodes.contains(inode) }) { return }
        // The caller's descriptor may be write-only: read through one of our own.
        let reader = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        let contents = reader >= 0 ? Self.read(reader) : Self.read(fd)
        if reader >= 0 { Glibc.close(reader) }
        guard let inode = Self.inode(fd: fd) else { return }
        mutex.withLock { syncedByInode[inode] = contents }
    }

    /// The directory's entries reached the disk.
    func didSyncDirectory() {
        let names = Self.inodes(directory)
        mutex.withLock {
            durableNames = names
            ghosts = [:]
        }
    }

    /// Before `path` goes away (unlink, or replaced by a rename): keep what it held.
    func willRemove(_ path: String) {
        guard let inode = Self.inode(path: path) else { return }
        let name = Self.name(path)
        mutex.withLock {
            if durableNames[name] == inode, ghosts[name] == nil { ghosts[name] = syncedByInode[inode] ?? [] }
            syncedByInode[inode] = nil
        }
    }

    // MARK: power loss

    /// Every file goes back to its last synced contents (empty when never
    /// synced), names created since the last directory sync disappear, and
    /// names removed since come back when their contents are known. The store
    /// must have been abandoned first (nothing may still write).
    func losePower() {
        let (names, synced, ghosts) = mutex.withLock { (durableNames, syncedByInode, self.ghosts) }
        for name in Self.inodes(directory).keys where names[name] == nil {
            unlink(directory + "/" + name)
        }
        for (name, inode) in names {
            let path = directory + "/" + name
            let bytes = ghosts[name] ?? synced[inode] ?? []
            unlink(path)
            let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            guard fd >= 0 else { continue }
            _ = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            Glibc.close(fd)
        }
        mutex.withLock { rule = nil }
    }

    private func snapshotEverything() {
        let names = Self.inodes(directory)
        var synced: [UInt64: [UInt8]] = [:]
        for (name, inode) in names {
            let fd = Glibc.open(directory + "/" + name, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { continue }
            synced[inode] = Self.read(fd)
            Glibc.close(fd)
        }
        durableNames = names
        syncedByInode = synced
    }

    private static func inode(fd: Int32) -> UInt64? {
        var info = stat()
        return fstat(fd, &info) == 0 ? UInt64(info.st_ino) : nil
    }

    private static func inode(path: String) -> UInt64? {
        var info = stat()
        return stat(path, &info) == 0 ? UInt64(info.st_ino) : nil
    }

    private static func name(_ path: String) -> String {
        path.split(separator: "/", omittingEmptySubsequences: false).last.map(String.init) ?? path
    }

    private static func read(_ fd: Int32) -> [UInt8] {
        var info = stat()
        guard fstat(fd, &info) == 0 else { return [] }
        var bytes = [UInt8](repeating: 0, count: Int(info.st_size))
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + done, $0.count - done, off_t(done)) }
            if n <= 0 { break }
            done += n
        }
        return Array(bytes[0..<done])
    }

    /// Regular files directly in `directory`, with their inodes.
    private static func inodes(_ directory: String) -> [String: UInt64] {
        guard let dir = opendir(directory) else { return [:] }
        defer { closedir(dir) }
        var result: [String: UInt64] = [:]
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            var info = stat()
            if stat(directory + "/" + name, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG { result[name] = UInt64(info.st_ino) }
        }
        return result
    }
}
