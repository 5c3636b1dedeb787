#if canImport(Glibc)
import Glibc
#endif

/// Every failure the engine reports. Each error says what happened, to which
/// file or key; `code` lets callers branch (the tools add remedies and exit statuses).
public struct KVFileError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What kind of failure this is, grouped by the phase in which it occurs.
    public enum Code: String, Sendable, Equatable {
        /// Opening: no store exists at the path and creating one was not allowed.
        case storeNotFound
        /// Opening: the path exists but is not a kvfile store (a file, or a directory holding other files).
        case notAStore
        /// Opening: another writer holds the store's lock past the lock timeout.
        case locked
        /// Opening or reading: a file's bytes are damaged somewhere other than a torn tail.
        case corrupt
        /// Opening: the store was written by a newer or unknown format version.
        case unsupportedVersion
        /// Writing: a key or value breaks a documented limit (empty key, too long, too large).
        case invalidArgument
        /// Writing or opening: a fixed capacity is used up (the in-memory
        /// index's 4 GiB of keys, the 2^51 sequence numbers).
        case capacityExhausted
        /// Writing: the store was opened read-only.
        case readOnly
        /// Any call after `close()`.
        case closed
        /// Change feed: compaction removed history that a resume needs.
        case historyCompacted
        /// Change feed: the resume point is ahead of the newest sequence
        /// number in the log (the store was recreated or restored from an older copy).
        case resumeAheadOfLog
        /// Change feed: the log skips sequence numbers it must hold.
        case sequenceGap
        /// Change feed: the consumer fell too far behind; it ended after the last event it was given.
        case consumerTooSlow
        /// A system call failed (permissions, disk full, I/O error).
        case io
        /// Writing: a sync of the store's data failed earlier. Data written
        /// since the last good sync may be lost; the store refuses writes and
        /// syncs until it is reopened.
        case syncFailed
        /// Writing: the store's files were removed (its directory deleted)
        /// while it was open; it refuses writes.
        case storeRemoved
    }

    /// The kind of failure.
    public let code: Code
    /// A sentence that says what happened.
    public let message: String
    /// The file involved, when there is one.
    public let path: String?
    /// The byte offset in `path` where damage was found, for `.corrupt`.
    public let offset: Int?
    /// The errno value of a failed system call, for `.io` and some `.locked` errors.
    public let errno: Int32?

    /// Makes an error; most code uses the static helpers below.
    public init(_ code: Code, _ message: String, path: String? = nil, offset: Int? = nil, errno: Int32? = nil) {
        self.code = code
        self.message = message
        self.path = path
        self.offset = offset
        self.errno = errno
    }

    public var description: String { message }

    /// True when a system call failed for want of space (ENOSPC, EDQUOT): the disk or a quota is full.
    public var isDiskFull: Bool { errno == ENOSPC || errno == EDQUOT }

    /// True when a system call was refused for want of permission (EACCES, EPERM).
    public var isPermissionDenied: Bool { errno == EACCES || errno == EPERM }

    /// True when a system call found no such file or directory (ENOENT).
    public var isNotFound: Bool { errno == ENOENT }

    static func corrupt(_ path: String, offset: Int, _ what: String) -> KVFileError {
        KVFileError(
            .corrupt,
            "\(path): corrupt at byte offset \(offset): \(what)",
            path: path, offset: offset)
    }
}
