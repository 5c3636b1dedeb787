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
                    // mdoc writes a backslash as \e.
                    #expect(manual.contains(text.replacingOccurrences(of: "\\", with: "\\e")), "man/kvfile.1 has an old \(key) of \(name): run scripts/generate-man")
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
}
