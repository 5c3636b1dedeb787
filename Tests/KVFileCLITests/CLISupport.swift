import Foundation
@_exported import ProcessTestSupport
import Testing

/// The `kvfile` binary under test: the test build's, next to the test bundle, or
/// the one KVFILE_TEST_BINARY names (scripts/test runs the process suites again
/// against the static executable that scripts/setup and scripts/install ship).
let kvfileBinary = ProcessInfo.processInfo.environment["KVFILE_TEST_BINARY"] ?? buildDirectory + "/kvfile"

func kvfile(_ arguments: String..., input: [UInt8]? = nil) throws -> RunResult {
    try run(kvfileBinary, arguments, input: input)
}

