import KVFile

/// The exit status `kvfile` and `kvfile-server` report an engine error with:
/// the sysexits.h convention, listed in kvfile(1), EXIT STATUS (66 no store,
/// 75 locked, 76 damaged, 65 invalid input, 74 I/O, 3 history compacted).
public enum ExitStatus {
    public static func of(_ error: KVFileError) -> Int32 {
        switch error.code {
        case .storeNotFound, .notAStore: 66
        case .locked: 75
        case .corrupt, .unsupportedVersion, .sequenceGap: 76
        case .invalidArgument, .readOnly, .capacityExhausted: 65
        case .io, .closed, .syncFailed, .storeRemoved, .consumerTooSlow: 74
        case .historyCompacted, .resumeAheadOfLog: 3
        }
    }
}
