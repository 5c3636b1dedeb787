import ArgumentParser
import KVFile
import KVFileServeOptions

/// The tool's exit codes (kvfile(1), EXIT STATUS). Usage errors exit 64 by
/// swift-argument-parser's convention; the rest follow sysexits.h.
enum CLIExitCode: Int32 {
    case success = 0
    case notFound = 1
    case historyCompacted = 3
    case usage = 64
    case invalidInput = 65
    case noStore = 66
    /// kvfile-server is missing (serve).
    case unavailable = 69
    case ioError = 74
    case locked = 75
    case corrupt = 76

    init(_ error: KVFileError) {
        self = CLIExitCode(rawValue: ExitStatus.of(error)) ?? .ioError
    }
}

/// A failure of the tool itself, with its exit code.
struct CLIError: Error {
    var message: String
    var code: CLIExitCode
}

/// Runs a command body, turning errors into a message on stderr and an exit code.
func runReportingErrors(_ body: () throws -> CLIExitCode) throws {
    let code: CLIExitCode
    do {
        code = try body()
    } catch let error as KVFileError {
        Terminal.error(error.message + Remedy.text(for: error))
        throw ExitCode(CLIExitCode(error).rawValue)
    } catch let error as CLIError {
        Terminal.error(error.message)
        throw ExitCode(error.code.rawValue)
    }
    if code != .success { throw ExitCode(code.rawValue) }
}

/// What to do about an engine error, said by the tool (the library states facts only).
enum Remedy {
    static func text(for error: KVFileError) -> String {
        switch error.code {
        case .corrupt:
            return ". Run `kvfile check --repair` on the store to salvage every readable record."
        case .storeNotFound:
            return ". A write such as `kvfile put \(error.path ?? "STORE") KEY VALUE` creates it."
        case .locked:
            return ". Wait for that writer to finish, or allow a longer wait (--lock-timeout)."
        case .capacityExhausted where error.message.contains("sequence numbers") || error.message.contains("segment numbers"):
            return "; copy it into a new store with `kvfile dump` and `kvfile load`."
        case .io where error.isDiskFull:
            return " Free space on that disk (or raise the quota), then run the command again."
        case .io where error.isPermissionDenied:
            return " Check the permissions of the store directory and its files."
        case .syncFailed, .storeRemoved:
            return ". Check the disk and the store directory, then run the command again."
        default:
            return ""
        }
    }
}
