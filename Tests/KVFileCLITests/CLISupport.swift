import Foundation
@_exported import ProcessTestSupport
import Testing

/// The built `kvfile` binary, next to the test bundle.
let kvfileBinary = buildDirectory + "/kvfile"

func kvfile(_ arguments: String..., input: [UInt8]? = nil) throws -> RunResult {
    try run(kvfileBinary, arguments, input: input)
}

