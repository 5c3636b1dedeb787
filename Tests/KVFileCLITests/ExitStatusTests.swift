import KVFile
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
}
