import Foundation
import Testing

@Suite struct PutGetDeleteTests {
    @Test func putThenGetPrintsExactBytesWithoutANewline() throws {
        let dir = TemporaryDirectory()
        let store = dir.sub("s.kv")
        let put = try kvfile("put", store, "greeting", "hello")
        #expect(put.status == 0)
        #expect(put.stdout.isEmpty)
        let get = try kvfile("get", store, "greeting")
        #expect(get.status == 0)
        #expect(get.text == "hello")
        #expect(get.stderr.isEmpty)
    }

    /// `get S K`, `put S K [V]` and `delete S K` skip the argument parser
    /// (QuickPath); an option sends the same command through it. Both must
    /// give the same output, messages and status.
    @Test func plainFormsSkippingTheParserBehaveAsParsedForms() throws {
        let dir = TemporaryDirectory()
        let file = dir.sub("plain.txt")
        _ = FileManager.default.createFile(atPath: file, contents: Data("x".utf8))
        let longKey = String(repeating: "k", count: 4097)
        for (index, parsedOption) in [["--lock-timeout", "10000"], ["--durability", "none"]].enumerated() {
            let quick = dir.sub("quick\(index)"), parsed = dir.sub("parsed\(index)")
            func same(_ command: String, _ tail: [String], input: [UInt8]? = nil, options: [String] = parsedOption) throws {
                let a = try run(kvfileBinary, [command, quick] + tail, input: input)
                let b = try run(kvfileBinary, [command] + options + [parsed] + tail, input: input)
                #expect(a.status == b.status, "\(command) \(tail): status \(a.status) against \(b.status)")
                #expect(a.stdout == b.stdout, "\(command) \(tail)")
                #expect(a.stderr.replacingOccurrences(of: quick, with: "S") == b.stderr.replacingOccurrences(of: parsed, with: "S"), "\(command) \(tail)")
            }
            try same("get", ["k"], options: ["--format", "text"])           // no store yet: 66, nothing created
            #expect(!FileManager.default.fileExists(atPath: quick))
            try same("delete", ["k"])                                      // delete does not create one either
            #expect(!FileManager.default.fileExists(atPath: quick))
            try same("put", ["k", "v"])
            try same("put", ["n", "-5"])                                   // a negative number is a value
            try same("put", ["stdin"], input: [0, 1, 2, 255])
            try same("put", [longKey, "v"])                                // 65: key too long
            for key in ["k", "n", "stdin", "absent"] { try same("get", [key], options: ["--format", "text"]) }
            try same("delete", ["k"])
            try same("delete", ["k"])                                      // 1: nothing to delete
        }
        let a = try kvfile("get", file, "k"), b = try kvfile("get", "--format", "text", file, "k")
        #expect(a.status == 66 && a.status == b.status && a.stderr == b.stderr)
    }

    @Test func valueFromStandardInputIsBinarySafe() throws {
        let dir = TemporaryDirectory()
        let store = dir.sub("bin")
        var value = (0..<70_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 8) }
        value += [0, 0, 10, 13, 255]
        #expect(try kvfile("put", store, "blob", input: value).status == 0)
        #expect(try kvfile("get", store, "blob").stdout == value)
        #expect(try kvfile("put", store, "empty", input: []).status == 0)
        let empty = try kvfile("get", store, "empty")
        #expect(empty.status == 0)
        #expect(empty.stdout.isEmpty)
    }

    @Test func missingKeysExitOneAndDeleteReportsAbsence() throws {
        let dir = TemporaryDirectory()
        let store = dir.sub("s")
        #expect(try kvfile("put", store, "k", "v").status == 0)
        let missing = try kvfile("get", store, "nope")
        #expect(missing.status == 1)
        #expect(missing.stdout.isEmpty)
        #expect(try kvfile("delete", store, "k").status == 0)
        #expect(try kvfile("delete", store, "k").status == 1)
        #expect(try kvfile("get", store, "k").status == 1)
    }

    @Test func badInputGetsAClearMessageAndItsExitCode() throws {
        let dir = TemporaryDirectory()
        let file = dir.sub("plain.txt")
        _ = FileManager.default.createFile(atPath: file, contents: Data("x".utf8))
        let notDirectory = try kvfile("get", file, "k")
        #expect(notDirectory.status == 66)
        #expect(notDirectory.stderr.contains("is a file, not a kvfile store"))

        let missing = try kvfile("get", dir.sub("absent"), "k")
        #expect(missing.status == 66)
        #expect(missing.stderr.contains("no store at"))
        #expect(!FileManager.default.fileExists(atPath: dir.sub("absent")))

        let other = dir.sub("other")
        try FileManager.default.createDirectory(atPath: other, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: other + "/notes.txt", contents: Data("x".utf8))
        let refused = try kvfile("put", other, "k", "v")
        #expect(refused.status == 66)
        #expect(refused.stderr.contains("refusing"))

        let store = dir.sub("s")
        let emptyKey = try kvfile("put", store, "", "v")
        #expect(emptyKey.status == 65)
        #expect(emptyKey.stderr.contains("must not be empty"))
        let longKey = try kvfile("put", store, String(repeating: "k", count: 5000), "v")
        #expect(longKey.status == 65)
        #expect(longKey.stderr.contains("4096"))

        let huge = try kvfile("put", store, "big", input: [UInt8](repeating: 0, count: (64 << 20) + 1))
        #expect(huge.status == 65)
        #expect(huge.stderr.contains("for key \"big\" is larger than the limit"))
        let noParent = try kvfile("put", dir.sub("missing-parent/child.kv"), "k", "v")
        #expect(noParent.status == 74)
        #expect(noParent.stderr.contains("parent directory does not exist"))

        let usage = try kvfile("put")
        #expect(usage.status == 64)
        let unknown = try kvfile("frobnicate")
        #expect(unknown.status == 64)
    }

    @Test func aDamagedStoreExits76WithFileAndOffset() throws {
        let dir = TemporaryDirectory()
        let store = dir.sub("s")
        for i in 0..<20 { _ = try kvfile("put", store, "key\(i)", String(repeating: "value \(i) ", count: 3)) }
        let segment = store + "/00000001.kvseg"
        var data = try Data(contentsOf: URL(fileURLWithPath: segment))
        data[60] ^= 0x40
        try data.write(to: URL(fileURLWithPath: segment))
        // Byte 60 lies in key0's record: reading it reports the damage (open reads no record).
        #expect(try kvfile("get", store, "key5").status == 0)
        let result = try kvfile("get", store, "key0")
        #expect(result.status == 76)
        #expect(result.stderr.contains("00000001.kvseg"))
        #expect(result.stderr.contains("offset"))
        #expect(result.stderr.contains("kvfile check --repair"))
    }

    @Test func helpTeachesWithExamples() throws {
        for command in ["put", "get", "delete"] {
            let help = try kvfile(command, "--help")
            #expect(help.status == 0)
            #expect(help.text.contains("Examples:"), "\(command) --help")
        }
        let top = try kvfile("--help")
        #expect(top.text.contains("Exit status"))
    }
}
