import ArgumentParser
import KVFile

struct PutCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "put",
        abstract: "Set a key to a value.",
        discussion: """
            The value is taken byte for byte: from the VALUE argument, or from \
            standard input when VALUE is left out (binary data welcome). The \
            write is on disk when the command exits.

            Examples:
              kvfile put ./cache.kv greeting hello
              kvfile put ./cache.kv photo < photo.jpg
              date | kvfile put ./cache.kv last-run
            """
    )

    @OptionGroup var access: StoreAccessOptions

    @Argument(help: "The key (1 to 4096 bytes).")
    var key: String

    @Argument(help: "The value; read from standard input when left out.")
    var value: String?

    func run() throws {
        try runReportingErrors {
            let bytes: [UInt8]
            if let value {
                bytes = Array(value.utf8)
            } else {
                if Terminal.isTerminal(0) {
                    Terminal.error("reading the value from standard input; end it with Ctrl-D")
                }
                bytes = try Terminal.readStandardInput()
            }
            let store = try access.open(readOnly: false)
            try store.put(Array(key.utf8), bytes)
            try store.close()
            return .success
        }
    }
}
