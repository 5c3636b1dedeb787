import ArgumentParser
import KVFile
#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// The commands scripts call most, in their plainest form — `get STORE KEY`,
/// `put STORE KEY [VALUE]`, `delete STORE KEY`: no option and no argument
/// that starts with a dash or is empty — run without the argument parser.
/// Its first parse costs more than the command's work (reflection over the
/// commands and the runtime's protocol-conformance lookups: about a third of
/// a `kvfile get`'s time); the work is the same function the parsed command
/// calls, with the options' defaults.
enum QuickPath {
    /// Runs the command and exits when `arguments` are one of those forms; returns otherwise.
    static func runIfPlain(_ arguments: [String]) {
        guard let name = arguments.first else { return }
        let rest = Array(arguments.dropFirst())
        guard !rest.contains(where: { $0.isEmpty || $0.hasPrefix("-") }) else { return }
        let defaults = (lockTimeout: LockOptions.defaultTimeout, durability: Durability.none)
        let work: () throws -> CLIExitCode
        switch (name, rest.count) {
        case ("get", 2):
            work = { try GetCommand.printValue(of: rest[1], in: StoreAccessOptions.openForReading(rest[0])) }
        case ("put", 2), ("put", 3):
            work = {
                try PutCommand.put(rest[1], rest.count == 3 ? rest[2] : nil, into: rest[0], lockTimeout: defaults.lockTimeout,
                                   durability: defaults.durability, deadline: { 0 }, ifAbsent: false, ifVersion: nil)
            }
        case ("delete", 2):
            work = { try DeleteCommand.delete(rest[1], from: rest[0], lockTimeout: defaults.lockTimeout, durability: defaults.durability, ifVersion: nil) }
        default:
            return
        }
        do {
            try runReportingErrors(work)
            exit(0)
        } catch let code as ExitCode {
            exit(code.rawValue)
        } catch {
            KVFileCommand.exit(withError: error)
        }
    }
}
