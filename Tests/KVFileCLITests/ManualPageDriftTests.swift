import Foundation
import Testing

/// man/kvfile.1 is generated from the argument parser (scripts/generate-man);
/// this fails when a command, option or help text changed without regenerating it.
@Suite struct ManualPageDriftTests {
    static let manualPath = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("man/kvfile.1").path

    @Test func manualPageCoversEveryCommandAndOptionOfTheTool() throws {
        let manual = try String(contentsOfFile: Self.manualPath, encoding: .utf8)
        let dump = try kvfile("--experimental-dump-help")
        #expect(dump.status == 0)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(dump.stdout)) as? [String: Any])
        let root = try #require(json["command"] as? [String: Any])
        var checked = 0
        func visit(_ command: [String: Any], isRoot: Bool) {
            let name = command["commandName"] as? String ?? "?"
            if !isRoot { #expect(manual.contains(".It Em \(name)"), "man/kvfile.1 lacks the command \(name): run scripts/generate-man") }
            for key in ["abstract", "discussion"] {
                if let text = command[key] as? String, !text.isEmpty {
                    // mdoc writes a backslash as \e and a paragraph break as .Pp.
                    let expected = text.replacingOccurrences(of: "\\", with: "\\e").replacingOccurrences(of: "\n\n", with: "\n.Pp\n")
                    #expect(manual.contains(expected), "man/kvfile.1 has an old \(key) of \(name): run scripts/generate-man")
                    checked += 1
                }
            }
            for argument in command["arguments"] as? [[String: Any]] ?? [] {
                if let abstract = argument["abstract"] as? String, !abstract.isEmpty {
                    #expect(manual.contains(abstract), "man/kvfile.1 lacks \"\(abstract)\" (\(name)): run scripts/generate-man")
                    checked += 1
                }
                for option in argument["names"] as? [[String: Any]] ?? [] where option["kind"] as? String == "long" {
                    let long = option["name"] as? String ?? ""
                    #expect(manual.contains("Fl -\(long)") || manual.contains(" , -\(long)"), "man/kvfile.1 lacks --\(long) (\(name)): run scripts/generate-man")
                }
            }
            for sub in command["subcommands"] as? [[String: Any]] ?? [] { visit(sub, isRoot: false) }
        }
        visit(root, isRoot: true)
        #expect(checked > 10)
    }

    /// Defect: `man man/kvfile.1` printed 19 warnings (empty lines where mdoc
    /// wants .Pp, a line too long to break).
    @Test func manPrintsNoWarningsForEitherPage() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/man") else {
            Issue.record("man is not installed: scripts/install-deps installs man-db")
            return
        }
        for page in ["kvfile.1", "kvfile.5"] {
            let path = URL(fileURLWithPath: Self.manualPath).deletingLastPathComponent().appendingPathComponent(page).path
            let result = try run("/usr/bin/env", ["MANWIDTH=80", "/usr/bin/man", "--warnings", "-l", path])
            #expect(result.status == 0)
            #expect(result.stderr.isEmpty, "\(page): \(result.stderr)")
        }
    }
}
