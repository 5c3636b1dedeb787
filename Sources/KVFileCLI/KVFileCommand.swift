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

            Exit status: 0 success; 1 key not found; 3 watch --since asked for \
            history that compaction removed; 64 usage error; 65 invalid \
            input (empty or too long key, value over 64 MiB); 66 no store at the \
            path, or not a store; 69 kvfile-server missing (serve); 74 I/O \
            error or address in use (serve); 75 store locked by another writer \
            past --lock-timeout; 76 store damaged or of an unsupported format \
            version.
            """,
        version: KVFileVersion.current,
        subcommands: [
            PutCommand.self, GetCommand.self, DeleteCommand.self, IncrementCommand.self, DecrementCommand.self, PersistCommand.self,
            KeysCommand.self, DumpCommand.self, LoadCommand.self,
            StatCommand.self, CheckCommand.self, CompactCommand.self, WatchCommand.self, ServeCommand.self,
        ]
    )

    /// Parses argv with keys and values kept byte for byte (see ``RawArguments``).
    static func main() {
        let arguments = RawArguments.prepare()
        if arguments.isEmpty {
            // No subcommand is a usage error: the help goes to standard error and the status says so.
            Terminal.write(Array(helpMessage().utf8) + [10], to: 2)
            Glibc.exit(CLIExitCode.usage.rawValue)
        }
        main(arguments)
    }
}

enum KVFileVersion {
    static let current = "0.2.0"
}
