import ArgumentParser
import KVFile
#if canImport(Glibc)
@preconcurrency import Glibc
#endif

@main
struct KVFileCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kvfile",
        abstract: "Keep keys and values in an append-only store directory.",
        discussion: """
            A store is a directory; the first write creates it. Any number of \
            processes may read a store while one writes it.

            Examples:
              kvfile put ./cache.kv greeting hello
              kvfile put --ttl 10m ./cache.kv session:42 "$token"
              kvfile get ./cache.kv greeting
              echo '{"n": 1}' | kvfile put ./cache.kv config
              kvfile delete ./cache.kv greeting
              kvfile dump ./cache.kv --format ndjson > backup.ndjson
              kvfile stat ./cache.kv
              kvfile watch ./cache.kv
              kvfile serve ./cache.kv

            Exit status: 0 success; 1 key not found or condition false (get, \
            delete, put --if-absent, --if-version); 3 watch --since cannot \
            resume there (history that compaction removed, or past the log's \
            newest seq), or watch fell behind history compaction removed; 64 usage error (also kvfile with no command); 65 \
            invalid input (empty or too long key, value over 64 MiB, bad load \
            input, a capacity used up); 66 no store at the path, or not a store \
            (only put, load, incr and decr create one); 69 kvfile-server missing (serve); \
            74 I/O error (also when standard output cannot be written, after a \
            failed sync or a store directory removed under a writer) or address \
            in use (serve); 75 store locked by another writer past \
            --lock-timeout; 76 store damaged or of an unsupported format \
            version (check exits 76 when it finds damage). Writing into a \
            closed pipe (kvfile dump S | head) ends quietly with 0.

            kvfile --version prints the version.
            """,
        subcommands: [
            PutCommand.self, GetCommand.self, DeleteCommand.self, IncrementCommand.self, DecrementCommand.self, PersistCommand.self,
            KeysCommand.self, DumpCommand.self, LoadCommand.self,
            StatCommand.self, CheckCommand.self, CompactCommand.self, WatchCommand.self, ServeCommand.self,
        ]
    )

    /// Parses argv with keys and values kept byte for byte (see ``RawArguments``).
    static func main() {
        StandardStreams.prepare()
        let arguments = RawArguments.prepare()
        if arguments.isEmpty {
            // No subcommand is a usage error: the help goes to standard error and the status says so.
            Terminal.write(Array(helpMessage().utf8) + [10], to: 2)
            Glibc.exit(CLIExitCode.usage.rawValue)
        }
        if arguments == ["--version"] {
            // Handled here, not with ArgumentParser's `version:`, which also put a
            // "--version: Show the version." into `get --help`, where --version prints a key's version.
            Array("\(KVFileVersion.current)\n".utf8).withUnsafeBytes { OutputBuffer.writeOrExit($0, to: 1) }
            Glibc.exit(0)
        }
        QuickPath.runIfPlain(arguments)
        if arguments.count >= 2, arguments[0] == "help", !arguments[1].hasPrefix("-"),
           !configuration.subcommands.contains(where: { $0._commandName == arguments[1] }) {
            // ArgumentParser's help printed the main help and exited 0 for a command that does not exist.
            Terminal.error("no command '\(RawArguments.text(of: arguments[1]))': see kvfile --help for the commands")
            Glibc.exit(CLIExitCode.usage.rawValue)
        }
        do {
            var command = try parseAsRoot(arguments)
            try command.run()
        } catch {
            exit(reporting: error)
        }
    }

    /// What ArgumentParser's `main` prints for an error (usage, help, a failing
    /// command's status), without the invisible marks of ``RawArguments``
    /// (`--since -1` was quoted as '\u{2060}-1').
    private static func exit(reporting error: Error) -> Never {
        let code = exitCode(for: error)
        let text = RawArguments.withoutMarks(fullMessage(for: error))
        if !text.isEmpty { Terminal.write(Array(text.utf8) + [10], to: code == .success ? 1 : 2) }
        Glibc.exit(code.rawValue)
    }
}

enum KVFileVersion {
    static let current = "0.2.0"
}
