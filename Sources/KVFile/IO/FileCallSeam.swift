#if DEBUG
import Synchronization
#endif

/// The kinds of file call ``Syscalls`` shows a fault twin.
enum FileCall: String, Sendable, CaseIterable {
    case open, write, read, sync, syncDirectory, truncate, reserve, rename, unlink, makeDirectory, map
}

/// A test's stand-in for the disk under some files: it may fail a call,
/// shorten writes, change what a read returns and model what a power loss
/// keeps. The reliability suite's twin (`IOFaults`) lives with the tests.
protocol FaultTwin: AnyObject, Sendable {
    /// Throws to fail `call` on `path`.
    func check(_ call: FileCall, _ path: String) throws(KVFileError)
    /// The most a single write may transfer (nil: all).
    var writeLimit: Int? { get }
    func didRead(_ path: String, at offset: Int, _ bytes: UnsafeMutableRawBufferPointer)
    func syncFailed(_ fd: Int32, _ path: String)
    func didSync(_ fd: Int32, _ path: String)
    func willRemove(_ path: String)
    /// False when the modelled disk has less than `bytes` left.
    func takeSpace(_ bytes: Int) -> Bool
}

/// Where a test hands ``Syscalls`` the twin for a path. Debug builds only:
/// in release builds nothing can be installed and the compiler removes the
/// calls, so the installed tool carries no test machinery.
enum FileCallSeam {
    #if DEBUG
    private static let installLock = PlainMutex()
    nonisolated(unsafe) private static var finder: (@Sendable (String) -> (any FaultTwin)?)?
    private static let installed = Atomic<Bool>(false)

    /// Installs `finder` for the process's lifetime (a second call keeps the first finder).
    static func install(_ finder: @escaping @Sendable (String) -> (any FaultTwin)?) {
        installLock.withLock {
            guard !installed.load(ordering: .relaxed) else { return }
            self.finder = finder
            installed.store(true, ordering: .releasing)
        }
    }

    /// The twin covering `path`, if a test installed one.
    @inline(__always)
    static func twin(covering path: String) -> (any FaultTwin)? {
        guard installed.load(ordering: .acquiring) else { return nil }
        return finder?(path)
    }
    #else
    @inline(__always)
    static func twin(covering path: String) -> (any FaultTwin)? { nil }
    #endif
}
