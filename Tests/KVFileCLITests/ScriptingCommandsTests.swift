import Foundation
import Testing

/// dump, load, get --all, put --if-absent, stat, check, compact: end to end, as a shell user runs them.
@Suite struct ScriptingCommandsTests {
    /// Keys and values that stress every format: Unicode, control bytes, invalid UTF-8, empty.
    let tricky: [([UInt8], [UInt8])] = [
        (Array("plain".utf8), Array("value".utf8)),
        (Array("ünïcødé 🗝".utf8), Array("çödé ✓".utf8)),
        (Array("tabs\tand\nnewlines".utf8), Array("a\tb\nc\\d\"e".utf8)),
        (Array("binary".utf8), [0, 255, 1, 254, 0x80, 10]),
        ([0xff, 0xfe, 0x00], Array("binary key".utf8)),
        (Array("empty".utf8), []),
    ]

    func fill(_ store: String) throws {
        for (key, value) in tricky {
            let line = "{\"key_base64\":\"\(Data(key).base64EncodedString())\",\"value_base64\":\"\(Data(value).base64EncodedString())\"}\n"
            #expect(try kvfile("load", store, "-q", input: Array(line.utf8)).status == 0)
        }
    }

    @Test func dumpThenLoadReproducesTheStoreExactly() throws {
        let dir = TemporaryDirectory()
        let a = dir.sub("a"), b = dir.sub("b")
        try fill(a)
        let dump = try kvfile("dump", a, "--format", "ndjson")
        #expect(dump.status == 0)
        #expect(dump.text.split(separator: "\n").count == tricky.count)
        #expect(dump.text.contains(#"{"key":"plain","value":"value"}"#))
        #expect(dump.text.contains(#""value_base64":"AP8B/oAK""#))
        #expect(dump.text.contains(#"{"key_base64":"//4A","value":"binary key"}"#))
        let load = try kvfile("load", b, input: dump.stdout)
        #expect(load.status == 0)
        #expect(load.stderr.contains("loaded 6 pairs"))
        #expect(try kvfile("dump", b, "--format", "ndjson").stdout == dump.stdout)
        for (key, value) in tricky where String(validating: key, as: UTF8.self) != nil {
            #expect(try kvfile("get", b, String(decoding: key, as: UTF8.self)).stdout == value)
        }
    }

    @Test func jsonFormatRoundTripsAndRefusesNonUTF8Keys() throws {
        let dir = TemporaryDirectory()
        let a = dir.sub("a"), b = dir.sub("b")
        #expect(try kvfile("put", a, "b-key", "2").status == 0)
        #expect(try kvfile("put", a, "a-key", "1").status == 0)
        _ = try kvfile("load", a, "-q", input: Array(#"{"key":"bin","value_base64":"AP8="}"#.utf8))
        let json = try kvfile("dump", a, "--format", "json")
        #expect(json.text == "{\n    \"a-key\": \"1\",\n    \"b-key\": \"2\",\n    \"bin\": {\"base64\": \"AP8=\"}\n}\n")
        #expect(try kvfile("get", a, "--all", "--format", "json").stdout == json.stdout)
        #expect(try kvfile("load", b, "--format", "json", input: json.stdout).status == 0)
        #expect(try kvfile("dump", b, "--format", "json").stdout == json.stdout)
        _ = try kvfile("load", a, "-q", input: Array(#"{"key_base64":"/w==","value":"x"}"#.utf8))
        let refused = try kvfile("dump", a, "--format", "json")
        #expect(refused.status == 65)
        #expect(refused.stderr.contains("--format ndjson"))
    }

    @Test func textFormatEscapesAndPrefixFilters() throws {
        let dir = TemporaryDirectory()
        let s = dir.sub("s")
        try fill(s)
        #expect(try kvfile("put", s, "user:1", "ada").status == 0)
        #expect(try kvfile("put", s, "user:2", "grace").status == 0)
        let text = try kvfile("dump", s)
        #expect(text.text.contains("tabs\\tand\\nnewlines\ta\\tb\\nc\\\\d\"e\n"))
        #expect(text.text.contains("binary\t\\x00\\xff\\x01\\xfe\\x80\\n\n"))
        let users = try kvfile("dump", s, "--prefix", "user:")
        #expect(users.text == "user:1\tada\nuser:2\tgrace\n")
        #expect(try kvfile("get", s, "--all").stdout == text.stdout)
    }

    @Test func badLoadInputIsReportedWithItsLineAndExit65() throws {
        let dir = TemporaryDirectory()
        let s = dir.sub("s")
        let input = "{\"key\":\"a\",\"value\":\"1\"}\n{\"key\":\"b\",\"value\":2}\n"
        let result = try kvfile("load", s, input: Array(input.utf8))
        #expect(result.status == 65)
        #expect(result.stderr.contains("line 2"))
        let truncated = try kvfile("load", s, "--format", "json", input: Array("{\"a\": \"1\", \"b\":".utf8))
        #expect(truncated.status == 65)
        #expect(truncated.stderr.contains("not a JSON object"))
        let badBase64 = try kvfile("load", s, input: Array(#"{"key":"k","value_base64":"!!!"}"#.utf8))
        #expect(badBase64.status == 65)
        #expect(badBase64.stderr.contains("base64"))
        let textFormat = try kvfile("load", s, "--format", "text", input: [])
        #expect(textFormat.status == 64)
    }

    @Test func putIfAbsentIsALockForScripts() throws {
        let dir = TemporaryDirectory()
        let s = dir.sub("locks")
        #expect(try kvfile("put", "--if-absent", s, "job", "first").status == 0)
        #expect(try kvfile("put", "--if-absent", s, "job", "second").status == 1)
        #expect(try kvfile("get", s, "job").text == "first")
        #expect(try kvfile("delete", s, "job").status == 0)
        #expect(try kvfile("put", "--if-absent", s, "job", "third").status == 0)
    }

    @Test func statReportsCountsAsTextAndJSON() throws {
        let dir = TemporaryDirectory()
        let s = dir.sub("s")
        for i in 0..<5 { _ = try kvfile("put", s, "k\(i)", "v\(i)") }
        _ = try kvfile("put", s, "k0", "again")
        let json = try kvfile("stat", s, "--json")
        #expect(json.status == 0)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout)) as? [String: Any])
        #expect(object["keys"] as? Int == 5)
        #expect(object["newest_seq"] as? Int == 6)
        #expect(object["oldest_seq"] as? Int == 1)
        #expect(object["resume_floor"] as? Int == 0)
        #expect(object["format_version"] as? Int == 4)
        #expect((object["dead_bytes"] as? Int ?? 0) > 0)
        let files = try #require(object["segment_files"] as? [[String: Any]])
        #expect(files.count == 1)
        #expect(files.first?["active"] as? Bool == true)
        #expect((files.first?["dead_ratio"] as? Double ?? 0) > 0.1)
        let text = try kvfile("stat", s)
        #expect(text.text.contains("keys"))
        #expect(text.text.contains("dead_bytes"))
    }

    @Test func compactGivesSpaceBackAndKeepsContents() throws {
        let dir = TemporaryDirectory()
        let s = dir.sub("s")
        var lines = ""
        for round in 0..<50 { for key in 0..<40 { lines += "{\"key\":\"k\(key)\",\"value\":\"round \(round) \(String(repeating: "x", count: 50))\"}\n" } }
        #expect(try kvfile("load", s, "-q", input: Array(lines.utf8)).status == 0)
        let before = try kvfile("dump", s, "--format", "ndjson")
        let result = try kvfile("compact", s)
        #expect(result.status == 0)
        #expect(result.text.contains("bytes before"))
        #expect(try kvfile("dump", s, "--format", "ndjson").stdout == before.stdout)
        let stat = try JSONSerialization.jsonObject(with: Data(try kvfile("stat", s, "--json").stdout)) as? [String: Any]
        #expect(stat?["dead_bytes"] as? Int == 0)
        let files = stat?["segment_files"] as? [[String: Any]] ?? []
        #expect(files.contains { $0["compacted"] as? Bool == true })
        #expect(try kvfile("check", s).status == 0)
    }

    @Test func checkFindsDamageAndRepairSalvagesTheRest() throws {
        let dir = TemporaryDirectory()
        let s = dir.sub("s")
        for i in 0..<30 { _ = try kvfile("put", s, "key\(i)", "value number \(i)") }
        let healthy = try kvfile("check", s)
        #expect(healthy.status == 0)
        #expect(healthy.text.contains("0 errors"))
        let segment = s + "/00000001.kvseg"
        var data = try Data(contentsOf: URL(fileURLWithPath: segment))
        data[200] ^= 0x10
        try data.write(to: URL(fileURLWithPath: segment))
        let damaged = try kvfile("check", s)
        #expect(damaged.status == 76)
        #expect(damaged.text.contains("error: 00000001.kvseg at byte offset"))
        // Reading the damaged record fails; the others read back.
        let statuses = try (0..<30).map { try kvfile("get", s, "key\($0)").status }
        #expect(statuses.filter { $0 == 76 }.count == 1 && statuses.filter { $0 == 0 }.count == 29, "\(statuses)")

        let repaired = try kvfile("check", s, "--repair")
        #expect(repaired.status == 0, "\(repaired.stderr)")
        #expect(repaired.text.contains("dropped: 00000001.kvseg"))
        #expect(repaired.text.contains("repaired: 29 keys kept"))
        #expect(repaired.text.contains("damaged files moved to"))
        #expect(try kvfile("check", s).status == 0)
        #expect(try kvfile("get", s, "key29").text == "value number 29")
        let all = try kvfile("dump", s)
        #expect(all.text.split(separator: "\n").count == 29)
        #expect(try kvfile("put", s, "after", "repair").status == 0)
    }

    @Test func everyCommandTeachesWithExamples() throws {
        for command in ["put", "get", "delete", "incr", "decr", "keys", "dump", "load", "stat", "check", "compact", "watch"] {
            let help = try kvfile(command, "--help")
            #expect(help.status == 0)
            #expect(help.text.contains("Examples:"), "\(command) --help has no examples")
            // Defect: incr's and keys' help showed the source's line-continuation backslashes.
            #expect(!help.text.contains("\\\n"), "\(command) --help shows a stray backslash at a line end")
        }
        let completion = try kvfile("--generate-completion-script", "bash")
        #expect(completion.status == 0)
        #expect(completion.text.contains("compact"))
    }

    @Test func durabilityOptionIsValidated() throws {
        let dir = TemporaryDirectory()
        #expect(try kvfile("put", "--durability", "always", dir.sub("s"), "k", "v").status == 0)
        #expect(try kvfile("put", "--durability", "interval:50", dir.sub("s"), "k", "v").status == 0)
        let bad = try kvfile("put", "--durability", "sometimes", dir.sub("s"), "k", "v")
        #expect(bad.status == 64)
        #expect(bad.stderr.contains("--durability"))
    }
}

/// Expiry from the shell: `put --ttl`, seen by every later process with no
/// writer running; `get --ttl`, `persist`, dump/load keep deadlines; a lease
/// lock frees itself; `incr --ttl` is a fixed-window rate limiter.
@Suite struct ExpiryCommandTests {
    @Test func anExpiredValueIsGoneForASecondProcessWithNoWriterRunning() throws {
        let dir = TemporaryDirectory()
        let store = dir.sub("s.kv")
        #expect(try kvfile("put", "--ttl", "1s", store, "session", "token").status == 0)
        #expect(try kvfile("put", store, "plain", "stays").status == 0)
        #expect(try kvfile("get", store, "session").text == "token")
        let left = try kvfile("get", "--ttl", store, "session")
        #expect(left.status == 0 && left.text == "1\n", "\(left.text)")
        #expect(try kvfile("get", "--ttl", store, "plain").text == "-1\n")
        let dumped = try kvfile("dump", store, "--format", "ndjson")
        #expect(dumped.text.contains(#"{"key":"session","value":"token","expires_at":"#))
        usleep(1_200_000)
        // No writer has run since: every reader decides from the record.
        #expect(try kvfile("get", store, "session").status == 1)
        #expect(try kvfile("get", "--ttl", store, "session").status == 1)
        #expect(try kvfile("keys", store).text == "plain\n")
        #expect(try kvfile("dump", store, "--format", "ndjson").text == "{\"key\":\"plain\",\"value\":\"stays\"}\n")
        // A backup made before the deadline loads back only what has not expired.
        #expect(try kvfile("load", dir.sub("restored.kv"), "-q", input: Array(dumped.text.utf8)).status == 0)
        #expect(try kvfile("keys", dir.sub("restored.kv")).text == "plain\n")
        let later = Array("{\"key\":\"future\",\"value\":\"v\",\"expires_at\":\(UInt64(Date().timeIntervalSince1970 * 1000) + 3_600_000)}\n".utf8)
        #expect(try kvfile("load", dir.sub("restored.kv"), "-q", input: later).status == 0)
        let futureTTL = try kvfile("get", "--ttl", dir.sub("restored.kv"), "future").text
        #expect(futureTTL == "3600\n" || futureTTL == "3599\n", "\(futureTTL)")
        // persist keeps the value and drops the deadline; a plain put clears one too.
        #expect(try kvfile("put", "--ttl", "1h", store, "report", "r1").status == 0)
        #expect(try kvfile("persist", store, "report").status == 0)
        #expect(try kvfile("get", "--ttl", store, "report").text == "-1\n")
        #expect(try kvfile("get", store, "report").text == "r1")
        #expect(try kvfile("persist", store, "nothing").status == 1)
        #expect(try kvfile("put", "--expire-at", "2001-01-01T00:00:00Z", store, "x", "y").status == 65)
        #expect(try kvfile("put", "--ttl", "soon", store, "x", "y").status == 64)
        #expect(try kvfile("put", "--ttl", "300000000000d", store, "x", "y").status == 64)  // trapped on overflow
        #expect(try kvfile("put", "--expire-at", "2099-02-30T00:00:00Z", store, "x", "y").status == 64)  // no such day
    }

    /// Writer processes that stay open (here `kvfile load` with its input
    /// still open) record an expiry that passed while no writer ran, once:
    /// a second such writer records nothing more.
    @Test func writerProcessesRecordAnExpiryOnceAcrossRestarts() throws {
        let dir = TemporaryDirectory()
        let store = dir.sub("s.kv")
        #expect(try kvfile("put", "--ttl", "1s", store, "session", "token").status == 0)
        usleep(1_200_000)  // expired while no writer ran
        for _ in 0..<2 {
            let writer = Process()
            writer.executableURL = URL(fileURLWithPath: kvfileBinary)
            writer.arguments = ["load", store, "-q"]
            let input = Pipe()
            writer.standardInput = input
            try writer.run()
            usleep(2_000_000)  // open for more than a second: its sweep runs
            try input.fileHandleForWriting.close()
            writer.waitUntilExit()
            #expect(writer.terminationStatus == 0)
        }
        let feed = try kvfile("watch", store, "--from-start", "--count", "2")
        let lines = feed.text.split(separator: "\n")
        #expect(lines.count == 2, "\(feed.text)")
        #expect(lines.last?.contains(#""topic":"kvs_deleted""#) == true && lines.last?.contains(#""expired":true"#) == true,
                "\(feed.text)")
        #expect(try kvfile("stat", store, "--json").text.contains(#""newest_seq":2"#))
    }

    /// A one-shot writer records at its open the expiries that passed while
    /// no writer ran (the defect: only writers open for a second did).
    @Test func theNextWriterToOpenRecordsExpiriesThatPassed() throws {
        let dir = TemporaryDirectory()
        let store = dir.sub("s.kv")
        #expect(try kvfile("put", "--ttl", "300ms", store, "a", "1").status == 0)
        #expect(try kvfile("put", store, "b", "2").status == 0)
        usleep(500_000)
        #expect(try kvfile("put", store, "c", "3").status == 0)
        let feed = try kvfile("watch", store, "--from-start", "--count", "4").text.split(separator: "\n")
        #expect(feed.count == 4 && feed[2].contains(#""key":"a""#) && feed[2].contains(#""expired":true"#), "\(feed)")
        #expect(try kvfile("stat", store, "--json").text.contains(#""keys":2"#))
        // Recorded once: the next writer finds nothing more to do.
        #expect(try kvfile("put", store, "d", "4").status == 0)
        #expect(try kvfile("stat", store, "--json").text.contains(#""newest_seq":5"#))
    }

    /// With only short commands writing, `kvfile compact` records the
    /// expiries that passed and reclaims their values (they stayed in `stat`).
    @Test func compactRecordsExpiriesThatPassedAndReclaimsThem() throws {
        let dir = TemporaryDirectory()
        let store = dir.sub("s.kv")
        #expect(try kvfile("put", "--ttl", "500ms", store, "brief", String(repeating: "x", count: 2000)).status == 0)
        #expect(try kvfile("put", store, "plain", "stays").status == 0)
        usleep(700_000)
        #expect(try kvfile("stat", store, "--json").text.contains(#""keys":2"#))
        let watcher = try Background(kvfileBinary, ["watch", store, "--count", "1"], output: dir.sub("watch"))
        usleep(300_000)
        #expect(try kvfile("compact", store).status == 0)
        #expect(try kvfile("stat", store, "--json").text.contains(#""keys":1"#))
        let lines = watcher.waitForLines(1)
        #expect(lines.first?.contains(#""expired":true"#) == true, "\(lines)")
        #expect(try kvfile("persist", store, "brief").status == 1)
    }

    @Test func aLeaseLockFreesItselfAndIncrWithTTLIsAFixedWindow() throws {
        let dir = TemporaryDirectory()
        let locks = dir.sub("locks.kv")
        #expect(try kvfile("put", "--if-absent", "--ttl", "1s", locks, "deploy", "job-1").status == 0)
        #expect(try kvfile("put", "--if-absent", "--ttl", "1s", locks, "deploy", "job-2").status == 1)
        usleep(1_100_000)
        // The holder died without letting go: the lease ran out.
        #expect(try kvfile("put", "--if-absent", "--ttl", "1s", locks, "deploy", "job-2").status == 0)
        #expect(try kvfile("get", locks, "deploy").text == "job-2")

        let limits = dir.sub("rate.kv")
        for expected in 1...3 {
            #expect(try kvfile("incr", "--ttl", "1s", limits, "calls").text == "\(expected)\n")
        }
        usleep(1_100_000)
        #expect(try kvfile("incr", "--ttl", "1s", limits, "calls").text == "1\n")
        // The change feed records each expiry the writers met, once, with the value it ended.
        let events = try kvfile("watch", limits, "--from-start", "--count", "5")
        let expired = events.text.split(separator: "\n").filter { $0.contains("\"expired\":true") }
        #expect(expired.count == 1, "\(events.text)")
        #expect(expired.first?.contains("\"old_value\":\"3\"") == true)
    }
}
