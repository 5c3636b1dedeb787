import Foundation
import Testing

/// The built `kvfile` binary, next to the test bundle.
let kvfileBinary: String = {
    let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    return URL(fileURLWithPath: executable).deletingLastPathComponent().appendingPathComponent("kvfile").path
}()

struct RunResult {
    var status: Int32
    var stdout: [UInt8]
    var stderr: String
    var text: String { String(decoding: stdout, as: UTF8.self) }
}

/// Runs a program to completion, feeding `input` on standard input.
/// Output goes through files, so a chatty child can never block on a full pipe.
func run(_ executable: String, _ arguments: [String], input: [UInt8]? = nil) throws -> RunResult {
    let scratch = NSTemporaryDirectory() + "/kvfile-run-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: scratch) }
    let inPath = scratch + "/in", outPath = scratch + "/out", errPath = scratch + "/err"
    for path in [inPath, outPath, errPath] { _ = FileManager.default.createFile(atPath: path, contents: nil) }
    if let input { try Data(input).write(to: URL(fileURLWithPath: inPath)) }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    process.standardInput = try FileHandle(forReadingFrom: URL(fileURLWithPath: inPath))
    process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
    process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
    try process.run()
    process.waitUntilExit()
    let out = try Data(contentsOf: URL(fileURLWithPath: outPath))
    let err = try Data(contentsOf: URL(fileURLWithPath: errPath))
    return RunResult(status: process.terminationStatus, stdout: Array(out), stderr: String(decoding: err, as: UTF8.self))
}

func kvfile(_ arguments: String..., input: [UInt8]? = nil) throws -> RunResult {
    try run(kvfileBinary, arguments, input: input)
}

final class TemporaryDirectory {
    let path: String

    init() {
        path = NSTemporaryDirectory() + "/kvfile-cli-" + UUID().uuidString
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func sub(_ name: String) -> String { path + "/" + name }
}
