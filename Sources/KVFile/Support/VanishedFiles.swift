/// A reader lists a store directory, then opens what it listed; a compaction
/// in another process may remove a file in between. Such a miss (ENOENT) is
/// not damage: the read starts again, a bounded number of times.
enum VanishedFiles {
    /// Runs `body`; when it fails because a file is gone and `retrying` is
    /// true, waits `pauseMilliseconds`, calls `beforeRetry` and runs it again,
    /// at most `attempts` more times.
    static func retrying<R>(
        _ retrying: Bool = true, attempts: Int = 50, pauseMilliseconds: Int,
        beforeRetry: () throws(KVFileError) -> Void = {}, _ body: () throws(KVFileError) -> R
    ) throws(KVFileError) -> R {
        var attempt = 0
        while true {
            do throws(KVFileError) {
                return try body()
            } catch where retrying && error.isNotFound && attempt < attempts {
                attempt += 1
                Syscalls.sleep(milliseconds: pauseMilliseconds)
                try beforeRetry()
            }
        }
    }
}
