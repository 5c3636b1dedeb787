#if canImport(Glibc)
@preconcurrency import Glibc
#endif
import Synchronization

/// What `main` sets up before any command runs: the conventions a Unix tool
/// keeps for the descriptors and signals it is started with.
enum StandardStreams {
    /// Standard input was closed when the tool started (`kvfile put S k <&-`).
    static let inputWasClosed = Atomic<Bool>(false)

    /// A reader that closes the pipe ends the output quietly: writes then fail
    /// with EPIPE and ``OutputBuffer`` exits with 0, where SIGPIPE killed the
    /// tool (status 141, a failure under `set -o pipefail`). A standard
    /// descriptor the caller closed is opened on /dev/null, so that no file the
    /// tool opens (the store's lock file) becomes its input or output; reading
    /// a standard input that was closed still fails.
    static func prepare() {
        signal(SIGPIPE, SIG_IGN)
        for fd: Int32 in 0...2 where fcntl(fd, F_GETFD) == -1 && errno == EBADF {
            if fd == 0 { inputWasClosed.store(true, ordering: .relaxed) }
            // The lowest free descriptor: `fd` itself, those below it being open.
            let null = open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY)
            if null >= 0 && null != fd {
                dup2(null, fd)
                close(null)
            }
        }
    }
}
