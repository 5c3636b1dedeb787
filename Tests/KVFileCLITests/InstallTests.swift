import Foundation
import Testing

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// scripts/install: the defects a new user met were "copy kvfile to
/// /usr/local/bin" breaking `kvfile serve` (kvfile-server missing, exit 69),
/// no manual pages or completions installed, and completion not offering
/// store paths. The binaries here are the test build's (KVFILE_INSTALL_FROM);
/// a real install builds them with the Swift runtime linked in.
@Suite struct InstallTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().path

    @Test func installPutsBinariesManualPagesAndCompletionsUnderThePrefix() throws {
        let dir = TemporaryDirectory()
        let prefix = dir.sub("prefix")
        let binaries = URL(fileURLWithPath: kvfileBinary).deletingLastPathComponent().path
        let install = try run("/usr/bin/env", ["KVFILE_INSTALL_FROM=\(binaries)", "bash", Self.repository + "/scripts/install", prefix])
        #expect(install.status == 0, "\(install.stderr)")
        #expect(install.stderr.contains("export PATH=\"\(prefix)/bin:$PATH\""))
        for file in ["bin/kvfile", "bin/kvfile-server", "share/man/man1/kvfile.1", "share/man/man5/kvfile.5",
                     "share/bash-completion/completions/kvfile", "share/zsh/site-functions/_kvfile",
                     "share/fish/vendor_completions.d/kvfile.fish"] {
            #expect(FileManager.default.fileExists(atPath: prefix + "/" + file), "\(file) is missing")
        }

        // The installed kvfile works, and its serve finds the kvfile-server installed beside it.
        let store = dir.sub("s.kv")
        #expect(try run(prefix + "/bin/kvfile", ["put", store, "k", "v"]).status == 0)
        #expect(try run(prefix + "/bin/kvfile", ["get", store, "k"]).text == "v")
        let serve = Process()
        serve.executableURL = URL(fileURLWithPath: prefix + "/bin/kvfile")
        serve.arguments = ["serve", store, "--port", "0"]
        let output = Pipe()
        serve.standardOutput = output
        serve.standardError = FileHandle.nullDevice
        try serve.run()
        let line = String(decoding: output.fileHandleForReading.availableData, as: UTF8.self)
        kill(serve.processIdentifier, SIGTERM)
        serve.waitUntilExit()
        #expect(line.hasPrefix("kvfile-server: listening on http://127.0.0.1:"), "\(line)")

        // man finds both pages under the prefix.
        let manual = try run("/usr/bin/env", ["MANPATH=\(prefix)/share/man", "man", "-w", "5", "kvfile"])
        #expect(manual.text.trimmingCharacters(in: .whitespacesAndNewlines) == prefix + "/share/man/man5/kvfile.5")

        // Bash completes the store argument with directories.
        _ = try run("/bin/mkdir", ["-p", dir.sub("work/orders.kv")])
        let script = """
            cd \(dir.sub("work")) && source \(prefix)/share/bash-completion/completions/kvfile
            COMP_WORDS=(kvfile get ord); COMP_CWORD=2; COMP_LINE="kvfile get ord"; COMP_POINT=${#COMP_LINE}
            _kvfile; printf '%s\\n' "${COMPREPLY[@]}"
            """
        let completion = try run("/bin/bash", ["-c", script])
        #expect(completion.text == "orders.kv\n", "\(completion.text) \(completion.stderr)")
    }
}
