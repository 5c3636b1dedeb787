import Foundation

// What the process-level suites (the tool's and the server's) share: the
// built programs, scratch directories, and running a program to its end.

/// The directory of the built programs, next to the test bundle.
public let buildDirectory: String = {
    let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    return URL(fileURLWithPath: executable).deletingLastPathComponent().path
}()

/// A fresh directory under the system's temporary directory, removed with the value.
public final class TemporaryDirectory {
    public let path: String

    public init() {
        path = NSTemporaryDirectory() + "/kvfile-test-" + UUID().uuidString
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    public func sub(_ name: String) -> String { path + "/" + name }
}

/// What a program run to its end left.
public struct RunResult {
    public var status: Int32
    public var stdout: [UInt8]
    public var stderr: String
    public var text: String { String(decoding: stdout, as: UTF8.self) }
}

/// Runs a program to completion, feeding `input` on standard input (an empty
/// one when nil). Output goes through files, so a chatty child can never
/// block on a full pipe.
public func run(_ executable: String, _ arguments: [String], input: [UInt8]? = nil) throws -> RunResult {
    let scratch = TemporaryDirectory()
    let inPath = scratch.sub("in"), outPath = scratch.sub("out"), errPath = scratch.sub("err")
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
