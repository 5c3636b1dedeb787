import ArgumentParser
import KVFile
import KVFileText
import Synchronization

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// Set by SIGINT/SIGTERM.
let watchStopRequested = Atomic<Bool>(false)

struct WatchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "watch",
        abstract: "Print the store's changes as they happen, one JSON object per line.",
        discussion: """
            Each line is an event, flushed as it happens: an object with topic, \
            seq, ts, key, new_value and old_value, such as \
            {"topic":"kvs_updated","seq":42,"key":"a","new_value":"2","old_value":"1"} \
            (ts, milliseconds, comes after seq). Topics: kvs_created (key, new_value), kvs_updated \
            (key, new_value, old_value), kvs_deleted (key, old_value). seq is the \
            write's sequence number, ts its time in milliseconds since the Unix \
            epoch. A key or value that is not valid UTF-8 is written as key_base64, \
            new_value_base64 or old_value_base64 instead; with --json-values a \
            value that is itself a JSON document is embedded as JSON and any \
            other stays a string, so the text x and the JSON document "x" then \
            print alike (leave it off when that matters). A value \
            written with an expiry (put --ttl) carries expires_at (milliseconds \
            since the Unix epoch); when a writer records that the deadline \
            passed, the event is kvs_deleted with "expired": true and the value \
            that expired (its ts is when the expiry was recorded).

            Events come from the store's log, so watch follows writes from any \
            process, across segment rolls and compactions, without the writer's \
            lock. It starts at the current end (like tail -f); --since SEQ resumes \
            after SEQ (give the seq of the last event you handled) and \
            --from-start begins with the oldest change the log still holds. If \
            compaction removed history a resume needs, watch exits 3 naming the \
            oldest seq it can resume from: it never skips events silently. A \
            watcher that falls far behind (a slow --exec) while segments are \
            written and compacted away before it reads them exits 3 the same \
            way, after the events it could still read.

            --exec runs CMD with /bin/sh once per event, in order, with the event \
            JSON on its standard input and KVFILE_TOPIC, KVFILE_SEQ and (when it \
            is UTF-8) KVFILE_KEY set; events are not printed then. A failing CMD \
            is reported on standard error and watch goes on.

            watch exits 0 on SIGINT or SIGTERM, after --count events, and when its \
            standard output is closed (kvfile watch S | head -n 3 ends by itself).

            Examples:
              kvfile watch ./cache.kv
              kvfile watch ./cache.kv --topic kvs_deleted --count 1
              kvfile watch ./cache.kv --prefix user: --prefix session:
              kvfile watch ./cache.kv --since 41 --json-values | jq .new_value
              kvfile watch ./cache.kv --exec 'logger -t kvfile "$KVFILE_TOPIC"'
            """
    )

    @Argument(help: ArgumentHelp("The store directory.", valueName: "store"), completion: .directory)
    var store: String

    @Option(name: .long, help: ArgumentHelp("Resume after this sequence number.", valueName: "seq"))
    var since: UInt64?

    @Flag(name: .long, help: "Start with the oldest change the log still holds.")
    var fromStart = false

    @Option(name: .long, help: ArgumentHelp("Only this topic (kvs_created, kvs_updated, kvs_deleted; repeatable).", valueName: "topic"))
    var topic: [String] = []

    @Option(name: .long, help: ArgumentHelp("Only keys that start with this (repeatable; bytes as given).", valueName: "prefix"))
    var prefix: [String] = []

    @Option(name: .long, help: ArgumentHelp("Exit after this many events.", valueName: "n"))
    var count: Int?

    @Flag(name: .long, help: "Embed values that are JSON documents as JSON.")
    var jsonValues = false

    @Option(name: .long, help: ArgumentHelp("Run this shell command per event, with the event on its standard input.", valueName: "cmd"))
    var exec: String?

    func validate() throws {
        if since != nil && fromStart { throw ValidationError("give --since or --from-start, not both") }
        if let count, count < 1 { throw ValidationError("--count must be at least 1") }
        for name in topic where Self.topic(named: name) == nil {
            throw ValidationError("unknown topic '\(name)': use kvs_created, kvs_updated or kvs_deleted")
        }
    }

    static func topic(named name: String) -> ChangeEvent.Topic? { EventJSON.topic(named: name) }

    func run() throws {
        try runReportingErrors {
            signal(SIGPIPE, SIG_IGN)
            let handler: @convention(c) (Int32) -> Void = { _ in watchStopRequested.store(true, ordering: .relaxed) }
            signal(SIGINT, handler)
            signal(SIGTERM, handler)
            // A parent may have started us with these blocked; we want them.
            var wanted = sigset_t()
            sigemptyset(&wanted)
            sigaddset(&wanted, SIGINT)
            sigaddset(&wanted, SIGTERM)
            pthread_sigmask(SIG_UNBLOCK, &wanted, nil)
            let start: FeedStart = fromStart ? .beginning : since.map { .after(seq: $0) } ?? .now
            let tailer = try LogTailer(path: store, start: start)
            let topics = Set(topic.compactMap(Self.topic(named:)))
            let prefixes = prefix.map(RawArguments.bytes(of:))
            let out = OutputBuffer()
            var delivered = 0
            while !watchStopRequested.load(ordering: .relaxed) {
                let events = try tailer.poll()
                for event in events where (topics.isEmpty || topics.contains(event.topic))
                    && (prefixes.isEmpty || prefixes.contains(where: { event.key.starts(with: $0) })) {
                    let line = EventJSON.line(event, embedJSON: jsonValues)
                    if let exec {
                        Handler.run(exec, input: line, event: event)
                    } else {
                        out.write(line)
                        out.flush()
                    }
                    delivered += 1
                    if let count, delivered >= count { return .success }
                }
                // A full poll may have left more (a resume far back reads the log a part at a time).
                if events.isEmpty && waitForChange(tailer) == .outputClosed { return .success }
            }
            return .success
        }
    }

    private enum Wake { case changed, outputClosed }

    /// Waits for inotify, a signal, a 200 ms safety tick, or standard output closing.
    private func waitForChange(_ tailer: LogTailer) -> Wake {
        var fds = [pollfd(fd: tailer.waitDescriptor, events: Int16(POLLIN), revents: 0),
                   pollfd(fd: 1, events: 0, revents: 0)]
        let ready = poll(&fds, 2, 200)
        if ready > 0 {
            if fds[1].revents & Int16(POLLERR | POLLHUP) != 0 { return .outputClosed }
            if fds[0].revents != 0 { tailer.drainWakeups() }
        }
        return .changed
    }
}

/// Runs --exec handlers.
enum Handler {
    static func run(_ command: String, input: String, event: ChangeEvent) {
        var pipeFDs: [Int32] = [0, 0]
        guard pipe(&pipeFDs) == 0 else {
            Terminal.error("cannot run handler: \(String(cString: strerror(errno)))")
            return
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        posix_spawn_file_actions_adddup2(&actions, pipeFDs[0], 0)
        posix_spawn_file_actions_addclose(&actions, pipeFDs[1])
        var environment = ProcessEnvironment.current()
        environment["KVFILE_TOPIC"] = event.topic.rawValue
        environment["KVFILE_SEQ"] = String(event.seq)
        if let key = String(validating: event.key, as: UTF8.self), !key.contains("\0") { environment["KVFILE_KEY"] = key }
        let arguments = ["/bin/sh", "-c", command]
        // The handler gets SIGPIPE as any program does (the tool ignores it for itself).
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        sigaddset(&defaults, SIGPIPE)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF))
        var pid: pid_t = 0
        let result = withCStrings(arguments) { argv in
            withCStrings(environment.map { "\($0.key)=\($0.value)" }) { envp in
                posix_spawn(&pid, "/bin/sh", &actions, &attributes, argv, envp)
            }
        }
        posix_spawnattr_destroy(&attributes)
        posix_spawn_file_actions_destroy(&actions)
        close(pipeFDs[0])
        if result != 0 {
            close(pipeFDs[1])
            Terminal.error("cannot run handler: \(String(cString: strerror(result)))")
            return
        }
        Terminal.write(Array(input.utf8), to: pipeFDs[1])
        close(pipeFDs[1])
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let exited = status & 0x7f == 0
        let code = (status >> 8) & 0xff
        if !exited || code != 0 {
            Terminal.error("handler failed for seq \(event.seq) (\(exited ? "exit \(code)" : "signal \(status & 0x7f)")); going on")
        }
    }

    private static func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
        var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
        pointers.append(nil)
        defer { pointers.forEach { free($0) } }
        return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
    }
}

enum ProcessEnvironment {
    static func current() -> [String: String] {
        var result: [String: String] = [:]
        var pointer = environ
        while let entry = pointer.pointee {
            let text = String(cString: entry)
            if let equals = text.firstIndex(of: "=") {
                result[String(text[..<equals])] = String(text[text.index(after: equals)...])
            }
            pointer += 1
        }
        return result
    }
}
