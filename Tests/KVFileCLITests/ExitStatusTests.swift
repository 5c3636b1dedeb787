#if canImport(Glibc)
import Glibc
#endif
import KVFile
@testable import KVFileCLI
import KVFileServeOptions
import Testing

/// The tools' exit statuses for engine errors (kvfile(1), EXIT STATUS), kept
/// by the tools and not by the library.
@Suite struct ExitStatusTests {
    @Test func errorsMapToTheDocumentedExitStatuses() {
        let expected: [(KVFileError.Code, Int32)] = [
            (.storeNotFound, 66), (.notAStore, 66), (.locked, 75), (.corrupt, 76), (.unsupportedVersion, 76),
            (.invalidArgument, 65), (.readOnly, 65), (.io, 74), (.closed, 74), (.historyCompacted, 3),
            (.resumeAheadOfLog, 3), (.capacityExhausted, 65), (.syncFailed, 74), (.storeRemoved, 74),
        ]
        for (code, status) in expected {
            #expect(ExitStatus.of(KVFileError(code, "x")) == status, "\(code)")
        }
    }

    /// The library states what failed; the tool says what to do about a full disk or missing permissions.
    @Test func ioErrorsGetTheToolsRemedyForAFullDiskAndMissingPermissions() {
        let full = KVFileError(.io, "cannot write to /s/00000001.kvseg: No space left on device. The disk is full.", errno: ENOSPC)
        #expect(Remedy.text(for: full).contains("Free space on that disk"))
        #expect(Remedy.text(for: KVFileError(.io, "x.", errno: EDQUOT)).contains("Free space on that disk"))
        #expect(Remedy.text(for: KVFileError(.io, "cannot open /s: Permission denied.", errno: EACCES)).contains("Check the permissions"))
        #expect(Remedy.text(for: KVFileError(.io, "x.", errno: EPERM)).contains("Check the permissions"))
        #expect(Remedy.text(for: KVFileError(.io, "cannot read /s: Input/output error.", errno: EIO)) == "")
    }
}
