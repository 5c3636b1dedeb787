import Foundation
import Testing
@testable import KVFileBench

/// Reliability defects seen from the shell.
@Suite struct CLITrustTests {
    /// Defect: a value holding record-shaped bytes (here a whole segment file)
    /// made lock-free readers call a healthy store corrupt: they scanned the
    /// active segment 64 KiB at a time and took a record cut by the chunk's
    /// end, with a "record" inside its value after it, for damage (exit 76,
    /// "record runs past the end of the file", while `check` found nothing).
    @Test func aValueHoldingASegmentFileIsReadBackNotCalledCorrupt() throws {
        let dir = TemporaryDirectory()
        let a = dir.sub("A"), b = dir.sub("B")
        #expect(try kvfile("put", a, "hello", "world").status == 0)
        var random = SystemRandomNumberGenerator()
        let photo = (0..<100_000).map { _ in UInt8.random(in: 0...255, using: &random) }
        #expect(try kvfile("put", a, "photo", input: photo).status == 0)
        let segment = Array(try Data(contentsOf: URL(fileURLWithPath: a + "/00000001.kvseg")))
        #expect(try kvfile("put", b, "copy", input: segment).status == 0)
        for before in [false, true] {
            if before { #expect(try kvfile("put", b, "after", "1").status == 0) }
            let get = try kvfile("get", b, "copy")
            #expect(get.status == 0, "\(get.stderr)")
            let same = get.stdout == segment  // not printed whole when it differs
            #expect(same, "read back \(get.stdout.count) of \(segment.count) bytes")
            for command in [["dump", b], ["stat", b], ["check", b]] {
                let result = try run(kvfileBinary, command)
                #expect(result.status == 0, "\(command): \(result.stderr)")
            }
        }
    }

    /// Defect: one large incompressible value in the active segment cost
    /// every reader one checksum per byte offset (seconds for 16 MiB); the
    /// value must come back whole and the store must read as healthy.
    @Test func aLargeIncompressibleValueInTheActiveSegmentReadsBack() throws {
        let dir = TemporaryDirectory()
        let store = dir.sub("big")
        var generator = SplitMix64(seed: 7)
        let value = (0..<(5 << 20)).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
        #expect(try kvfile("put", store, "big", input: value).status == 0)
        let get = try kvfile("get", store, "big")
        #expect(get.status == 0, "\(get.stderr)")
        let same = get.stdout == value
        #expect(same, "read back \(get.stdout.count) of \(value.count) bytes")
    }
}

@Suite struct CLIArgumentTrustTests {
    func sh(_ script: String, _ arguments: String...) throws -> RunResult {
        try run("/bin/sh", ["-c", script, kvfileBinary] + arguments)
    }

    /// Defect: a KEY or VALUE argument that is not UTF-8 was stored with
    /// U+FFFD, so `$'k\xfe'` and `$'k\xff'` were the same key, and keys
    /// loaded with key_base64 could not be read or deleted from the shell.
    @Test func nonUTF8KeyAndValueArgumentsAreKeptByteForByte() throws {
        let dir = TemporaryDirectory()
        let store = dir.sub("s")
        #expect(try sh(#""$0" put "$1" "$(printf 'k\376')" one"#, store).status == 0)
        #expect(try sh(#""$0" put "$1" "$(printf 'k\377')" "$(printf 'v\377')""#, store).status == 0)
        #expect(try sh(#""$0" get "$1" "$(printf 'k\376')""#, store).stdout == Array("one".utf8))
        #expect(try sh(#""$0" get "$1" "$(printf 'k\377')""#, store).stdout == [UInt8(ascii: "v"), 0xFF])
        let loaded = try kvfile("load", store, input: Array(#"{"key_base64":"/w==","value":"x"}"#.utf8) + [10])
        #expect(loaded.status == 0, "\(loaded.stderr)")
        #expect(try sh(#""$0" get "$1" "$(printf '\377')""#, store).stdout == Array("x".utf8))
        #expect(try sh(#""$0" delete "$1" "$(printf '\377')""#, store).status == 0)
        #expect(try sh(#""$0" delete "$1" "$(printf 'k\376')""#, store).status == 0)
        // Only the key deleted is gone.
        #expect(try sh(#""$0" get "$1" "$(printf 'k\377')""#, store).status == 0)
        let keys = try kvfile("dump", store, "--format", "ndjson").text
        #expect(keys.split(separator: "\n").count == 1)
    }

    /// Defect: a key or value starting with `-` was refused ("Unknown option
    /// '-5'"), so the README's counter broke on negative numbers.
    @Test func negativeNumbersAreValuesAndDoubleDashProtectsTheRest() throws {
        let dir = TemporaryDirectory()
        let store = dir.sub("s")
        let put = try kvfile("put", store, "n", "-5")
        #expect(put.status == 0, "\(put.stderr)")
        #expect(try kvfile("get", store, "n").text == "-5")
        #expect(try kvfile("put", store, "--", "-x", "-y").status == 0)
        #expect(try kvfile("get", store, "--", "-x").text == "-y")
        let since = try kvfile("watch", store, "--since", "-1")
        #expect(since.status == 64)
        #expect(!since.stderr.contains("Missing value"))
    }

    /// Defect: `delete` and `compact` of a mistyped path created an empty
    /// store there (compact even reported success).
    @Test func deleteAndCompactOfAMissingStoreCreateNothing() throws {
        let dir = TemporaryDirectory()
        for command in ["delete", "compact"] {
            let path = dir.sub("typo-\(command)")
            let result = command == "delete" ? try kvfile("delete", path, "k") : try kvfile("compact", path)
            #expect(result.status == 66)
            #expect(result.stderr.contains("no store at"))
            #expect(!FileManager.default.fileExists(atPath: path))
        }
    }

    /// Defect: `kvfile get s blob > /dev/full` exited 0; output that failed
    /// to be written must fail the command (74), on every command that prints.
    @Test func outputThatCannotBeWrittenFailsTheCommand() throws {
        let dir = TemporaryDirectory()
        let store = dir.sub("s")
        #expect(try kvfile("put", store, "blob", input: [UInt8](repeating: 7, count: 100_000)).status == 0)
        for command in ["get \"$1\" blob", "get \"$1\" --all", "dump \"$1\"", "stat \"$1\"", "check \"$1\""] {
            let result = try sh("\"$0\" \(command) > /dev/full", store)
            #expect(result.status == 74, "\(command): \(result.status)")
            #expect(result.stderr.contains("No space left on device"), "\(command)")
        }
    }

    /// Defect: `kvfile dump S | head -1` (and keys, get of a large value, get
    /// --all) died of SIGPIPE with status 141, where the help promises that a
    /// closed pipe ends quietly with 0; scripts under `set -o pipefail`
    /// failed. (The test before looked at `head`'s status, not kvfile's.)
    @Test func aClosedPipeEndsEveryPrintingCommandWithZero() throws {
        let dir = TemporaryDirectory()
        let store = dir.sub("s")
        #expect(try kvfile("put", store, "blob", input: [UInt8](repeating: 7, count: 300_000)).status == 0)
        let lines = (0..<20_000).map { "{\"key\":\"key-\($0)\",\"value\":\"v\"}\n" }.joined()
        #expect(try kvfile("load", "-q", store, input: Array(lines.utf8)).status == 0)
        for command in ["get \"$1\" blob", "get \"$1\" --all", "dump \"$1\"", "dump --format ndjson \"$1\"", "keys \"$1\""] {
            // kvfile's own status, written to standard error past the pipe.
            let result = try sh("( \"$0\" \(command); echo \"status=$?\" >&2 ) | head -c 10 > /dev/null", store)
            #expect(result.stderr.contains("status=0"), "\(command): \(result.stderr)")
        }
    }

    /// Defect: a flipped byte in a record's key made `get` of that key exit 1
    /// (no value) instead of 76: the probe took the record for another key's.
    /// A record whose tag matches but whose key differs is now checksummed.
    @Test func damageInAKeyIsReportedNotReadAsNoValue() throws {
        let dir = TemporaryDirectory()
        let store = dir.sub("s")
        for (key, value) in [("alpha", "AAAA"), ("beta", "BBBB"), ("gamma", "GGGG")] {
            #expect(try kvfile("put", store, key, value).status == 0)
        }
        let segment = store + "/00000001.kvseg"
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: segment)))
        let at = try #require((0..<(bytes.count - 4)).first { Array(bytes[$0..<($0 + 4)]) == Array("beta".utf8) })
        bytes[at + 1] = UInt8(ascii: "X")
        let handle = try #require(FileHandle(forWritingAtPath: segment))
        try handle.write(contentsOf: bytes)
        try handle.close()
        let get = try kvfile("get", store, "beta")
        #expect(get.status == 76 && get.stderr.contains("corrupt"), "\(get.status) \(get.stderr)")
        #expect(try kvfile("get", store, "alpha").text == "AAAA")
    }

    /// Defect: a store closed cleanly whose active segment was then cut at a
    /// record boundary (20 puts, the file cut after the 10th) lost the last
    /// ten silently: `check` gave a warning and exit 0, `get k20` said no
    /// value, and the next writer (or `check --repair`) built the index from
    /// what was left and gave sequence numbers 11 to 20 out again (`k11` got
    /// version 12). The index closed cleanly records where the log ended.
    @Test func recordsCutOffACleanlyClosedStoreAreReportedNotForgotten() throws {
        let dir = TemporaryDirectory()
        let store = dir.sub("s")
        for i in 1...20 { #expect(try kvfile("put", store, "k\(i)", "value-number-\(i)").status == 0) }
        let segment = store + "/00000001.kvseg"
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: segment)))
        let marker = Array("value-number-10".utf8)
        let at = try #require((0..<(bytes.count - marker.count)).first { Array(bytes[$0..<($0 + marker.count)]) == marker })
        #expect(truncate(segment, off_t(at + marker.count)) == 0)

        for arguments in [["get", store, "k20"], ["get", store, "k5"], ["put", store, "x", "y"]] {
            let result = try run(kvfileBinary, arguments)
            #expect(result.status == 76 && result.stderr.contains("cut off") && result.stderr.contains("check --repair"), "\(arguments): \(result.stderr)")
        }
        let check = try kvfile("check", store)
        #expect(check.status == 76 && check.text.contains("error: 00000001.kvseg") && check.text.contains("up to 20"), "\(check.text)")
        let repair = try kvfile("check", "--repair", store)
        #expect(repair.status == 0 && repair.text.contains("dropped: 00000001.kvseg") && repair.text.contains("10 keys kept"), "\(repair.text)")
        #expect(try kvfile("get", store, "k10").text == "value-number-10")
        #expect(try kvfile("put", store, "k11", "again").status == 0)
        // Sequence numbers up to 20 were given out: the new write's version is above them.
        let version = try kvfile("get", "--version", store, "k11")
        #expect((Int(version.text.split(separator: "\n").last ?? "") ?? 0) > 20, "\(version.text)")
        #expect(try kvfile("check", store).status == 0)
    }

    /// Defect: one damaged record in the middle of a `load` batch made
    /// `check --repair` drop the 548 readable records of the batch before it
    /// without a word (and keep those after it): keys that `get` had read one
    /// command earlier were gone. Repair keeps every readable record of a
    /// batch damage broke, and says so.
    @Test func repairKeepsTheReadableRecordsOfABatchADamagedRecordBroke() throws {
        let dir = TemporaryDirectory()
        let store = dir.sub("s")
        let lines = (1...3000).map { String(format: "{\"key\":\"k%05d\",\"value\":\"value-%d\"}\n", $0, $0) }.joined()
        #expect(try kvfile("load", "-q", store, input: Array(lines.utf8)).status == 0)
        let segment = store + "/00000001.kvseg"
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: segment)))
        let marker = Array("value-1549".utf8)
        let at = try #require((0..<(bytes.count - marker.count)).first { Array(bytes[$0..<($0 + marker.count)]) == marker })
        bytes[at + 3] = UInt8(ascii: "Z")
        let handle = try #require(FileHandle(forWritingAtPath: segment))
        try handle.write(contentsOf: bytes)
        try handle.close()
        #expect(try kvfile("get", store, "k01548").text == "value-1548")

        let repair = try kvfile("check", "--repair", store)
        #expect(repair.status == 0 && repair.text.contains("were kept") && repair.text.contains("2999 keys kept"), "\(repair.text)")
        for (key, value) in [("k01001", "value-1001"), ("k01548", "value-1548"), ("k01550", "value-1550"), ("k03000", "value-3000")] {
            #expect(try kvfile("get", store, key).text == value, "\(key)")
        }
        #expect(try kvfile("get", store, "k01549").status == 1)
        #expect(try kvfile("check", store).status == 0)
    }

    /// Defect: `get S ''`, `get` of a 4,097-byte key and `persist S ''`
    /// exited 1 ("no value") without a word, where writes of the same keys
    /// exit 65 as the exit-status list says (empty or too long key).
    @Test func aKeyNoStoreCanHoldIsInvalidInputForReadsToo() throws {
        let dir = TemporaryDirectory()
        let store = dir.sub("s")
        #expect(try kvfile("put", store, "n", "x").status == 0)
        let long = String(repeating: "k", count: 4097)
        for arguments in [["get", store, ""], ["get", store, long], ["get", "--version", store, ""], ["persist", store, ""], ["incr", store, ""]] {
            let result = try run(kvfileBinary, arguments)
            #expect(result.status == 65 && (result.stderr.contains("must not be empty") || result.stderr.contains("longer than the limit")),
                    "\(arguments.prefix(2)): \(result.status) \(result.stderr)")
        }
        // --format without --all was ignored silently; a --ttl too long was called "not more than 0".
        let format = try kvfile("get", store, "n", "--format", "json")
        #expect(format.status == 64 && format.stderr.contains("--format json is for --all"), "\(format.stderr)")
        let ttl = try kvfile("put", store, "t", "v", "--ttl", "99999999d")
        #expect(ttl.status == 64 && ttl.stderr.contains("under 35,000 years"), "\(ttl.stderr)")
        // And a counter that is not a number names its key.
        let incr = try kvfile("incr", store, "n")
        #expect(incr.status == 65 && incr.stderr.contains("\"n\""), "\(incr.stderr)")
    }

    /// Defect: `check` reported only the first damaged record of a segment:
    /// with two flipped values it named one, and `get` of the other then
    /// failed with a corruption check had not mentioned. It reads on past
    /// damage from the next record start the block map knows, as repair does.
    @Test func checkNamesEveryDamagedRecordNotOnlyTheFirst() throws {
        let dir = TemporaryDirectory()
        let store = dir.sub("s")
        for i in 1...20 { #expect(try kvfile("put", store, "k\(i)", "value-number-\(i)").status == 0) }
        let segment = store + "/00000001.kvseg"
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: segment)))
        var offsets: [Int] = []
        for marker in ["value-number-5", "value-number-15"].map({ Array($0.utf8) }) {
            let at = try #require((0..<(bytes.count - marker.count)).first { Array(bytes[$0..<($0 + marker.count)]) == marker })
            bytes[at + 1] = UInt8(ascii: "Z")
            offsets.append(at)
        }
        let handle = try #require(FileHandle(forWritingAtPath: segment))
        try handle.write(contentsOf: bytes)
        try handle.close()
        let check = try kvfile("check", store)
        let errors = check.text.split(separator: "\n").filter { $0.hasPrefix("error: 00000001.kvseg") }
        #expect(check.status == 76 && errors.count == 2 && check.text.contains("more damage past the first"), "\(check.text)")
        // Each named offset is at or before its damaged value, the second past the first.
        let named = errors.compactMap { line in line.split(separator: " ").dropFirst(5).first.flatMap { Int($0.dropLast()) } }
        #expect(named.count == 2 && named[0] < offsets[0] && offsets[0] < named[1] && named[1] < offsets[1], "\(named) \(offsets)")
        // The summary counts every readable record, not those before the first damage only.
        #expect(check.text.contains(" 18 records,"), "\(check.text)")
    }

    /// A store of `keys` pairs (key `keyFormat` of 1…keys, value "value-N"),
    /// loaded and compacted into a sealed segment with a hint file; that segment's path.
    func compactedStore(_ store: String, keys: Int, keyFormat: String) throws -> (store: String, segment: String) {
        let lines = (1...keys).map { String(format: "{\"key\":\"\(keyFormat)\",\"value\":\"value-%d\"}\n", $0, $0) }.joined()
        #expect(try kvfile("load", "-q", store, input: Array(lines.utf8)).status == 0)
        #expect(try kvfile("compact", "-q", store).status == 0)
        let hint = try #require(try FileManager.default.contentsOfDirectory(atPath: store).first { $0.hasSuffix(".kvhint") })
        return (store, store + "/" + hint.replacingOccurrences(of: ".kvhint", with: ".kvseg"))
    }

    /// Defect: a sealed segment cut in half made `check --repair` report
    /// "dropped 8 unreadable bytes" (the cut record's) while 981 keys vanished,
    /// though its intact hint file lists every record it was sealed with.
    @Test func repairSaysWhatASealedSegmentCutShortLost() throws {
        let dir = TemporaryDirectory()
        let (store, segment) = try compactedStore(dir.sub("s"), keys: 2000, keyFormat: "k%05d")
        let size = try #require(try FileManager.default.attributesOfItem(atPath: segment)[.size] as? Int)
        #expect(truncate(segment, off_t(size / 2)) == 0)
        let repair = try kvfile("check", "--repair", store)
        let kept = try kvfile("keys", store).text.split(separator: "\n").count
        #expect(repair.status == 0 && repair.text.contains("\(2000 - kept) records past it are lost") && repair.text.contains("\"k0"),
                "\(repair.text)")

        // A segment removed (its hint file left, no index): repair said only "repaired: 1 keys kept".
        let other = dir.sub("o")
        for i in 1...5 { #expect(try kvfile("put", other, "key\(i)", "value\(i)").status == 0) }
        #expect(try kvfile("compact", "-q", other).status == 0)
        #expect(try kvfile("put", other, "key6", "v6").status == 0)
        let otherHint = try #require(try FileManager.default.contentsOfDirectory(atPath: other).first { $0.hasSuffix(".kvhint") })
        try FileManager.default.removeItem(atPath: other + "/" + otherHint.replacingOccurrences(of: ".kvhint", with: ".kvseg"))
        try FileManager.default.removeItem(atPath: other + "/kvfile.index")
        let repaired = try kvfile("check", "--repair", other)
        #expect(repaired.status == 0 && repaired.text.contains("names the 5 records that are lost with it"), "\(repaired.text)")
    }

    /// Defect: `load` stopped without a line number on an empty or too long
    /// key (the store's check at the batch's write), though the help says bad
    /// input stops the load with the line number.
    @Test func loadNamesTheLineOfAKeyNoStoreCanHold() throws {
        let dir = TemporaryDirectory()
        let store = dir.sub("s")
        let long = String(repeating: "k", count: 4097)
        for (input, message) in [("{\"key\":\"a\",\"value\":\"1\"}\n{\"key\":\"\",\"value\":\"x\"}\n", "line 2: a key must not be empty"),
                                 ("{\"key\":\"a\",\"value\":\"1\"}\n\n{\"key\":\"\(long)\",\"value\":\"x\"}\n", "line 3: key of 4097 bytes is longer than the limit")] {
            let load = try kvfile("load", store, input: Array(input.utf8))
            #expect(load.status == 65 && load.stderr.contains(message), "\(load.stderr)")
        }
        let document = try kvfile("load", "--format", "json", store, input: Array("{\"a\":\"1\",\"\":\"2\"}".utf8))
        #expect(document.status == 65 && document.stderr.contains("pair 2 of the document: a key must not be empty"), "\(document.stderr)")
    }

    /// Defects: damaged header bytes of one record in a sealed segment (its
    /// hint file intact) made `keys` and `dump` trap (status 132: a copy of
    /// the index read from the log named a record it could not read, and a
    /// force-unwrap met nil) and `get` of that key answer "no value" (exit 1:
    /// a reader's own index went past damage as the writer's does); and a
    /// flipped byte in a key made `keys` list a key nobody wrote. All 76 now.
    @Test func damagedRecordsAreReportedByKeysDumpAndGetNeverTrapped() throws {
        let dir = TemporaryDirectory()
        let (store, segment) = try compactedStore(dir.sub("s"), keys: 50, keyFormat: "key%03d")
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: segment)))
        let marker = Array("key010".utf8)
        let at = try #require((0..<(bytes.count - marker.count)).first { Array(bytes[$0..<($0 + marker.count)]) == marker })
        for index in (at - 12)..<at { bytes[index] = 0xFF }
        let handle = try #require(FileHandle(forWritingAtPath: segment))
        try handle.write(contentsOf: bytes)
        try handle.close()
        for arguments in [["keys", store], ["dump", store], ["get", store, "key010"], ["get", "--ttl", store, "key010"]] {
            let result = try run(kvfileBinary, arguments)
            #expect(result.status == 76 && result.stderr.contains("check --repair"), "\(arguments[0]): \(result.status) \(result.stderr)")
        }
        #expect(try kvfile("get", store, "key011").text == "value-11")

        let other = dir.sub("k")
        for (key, value) in [("alpha", "AAAA"), ("beta", "BBBB"), ("gamma", "GGGG")] { #expect(try kvfile("put", other, key, value).status == 0) }
        var active = try [UInt8](Data(contentsOf: URL(fileURLWithPath: other + "/00000001.kvseg")))
        let beta = try #require((0..<(active.count - 4)).first { Array(active[$0..<($0 + 4)]) == Array("beta".utf8) })
        active[beta + 1] = UInt8(ascii: "X")
        // And one byte of gamma's value: get --ttl printed -1 (no deadline) without reading the record whole.
        let gamma = try #require((0..<(active.count - 4)).first { Array(active[$0..<($0 + 4)]) == Array("GGGG".utf8) })
        active[gamma + 1] = UInt8(ascii: "X")
        let file = try #require(FileHandle(forWritingAtPath: other + "/00000001.kvseg"))
        try file.write(contentsOf: active)
        try file.close()
        let keys = try kvfile("keys", other)
        #expect(keys.status == 76 && !keys.text.contains("bXta"), "\(keys.status) \(keys.text)")
        // A write of that key does not know its value: put --if-absent took the lock a second time, exit 0.
        for arguments in [["put", "--if-absent", other, "beta", "new"], ["put", other, "beta", "new"], ["delete", other, "beta"]] {
            let result = try run(kvfileBinary, arguments)
            #expect(result.status == 76 && result.stderr.contains("write is refused"), "\(arguments): \(result.status) \(result.stderr)")
        }
        #expect(try kvfile("get", other, "alpha").text == "AAAA")
        #expect(try kvfile("get", "--ttl", other, "gamma").status == 76)
    }

    /// Defects (second new-user trial): under an index closed cleanly, a
    /// removed or emptied active segment, a removed sealed segment with its
    /// hint file, or a sealed segment emptied under an intact hint file lost
    /// their keys silently (`get` exit 1, `check` exit 0), and the next write
    /// gave sequence numbers out again. The index lists every segment it was
    /// closed with: each one missing or emptied that held records is loss.
    @Test func segmentsRemovedOrEmptiedUnderACleanIndexAreReportedNotForgotten() throws {
        let dir = TemporaryDirectory()
        func make(_ name: String) throws -> String {
            let store = dir.sub(name)
            for i in 1...5 { #expect(try kvfile("put", store, "key\(i)", "value\(i)").status == 0) }
            #expect(try kvfile("compact", "-q", store).status == 0)
            for i in 6...8 { #expect(try kvfile("put", store, "key\(i)", "value\(i)").status == 0) }
            return store
        }
        func segments(_ store: String) throws -> (sealed: String, active: String) {
            let names = try FileManager.default.contentsOfDirectory(atPath: store).filter { $0.hasSuffix(".kvseg") }.sorted()
            let sealed = try #require(try FileManager.default.contentsOfDirectory(atPath: store).first { $0.hasSuffix(".kvhint") })
                .replacingOccurrences(of: ".kvhint", with: ".kvseg")
            return (sealed, try #require(names.first { $0 != sealed }))
        }
        let cases: [(String, (String, (sealed: String, active: String)) throws -> Void, String)] = [
            ("active-removed", { store, s in try FileManager.default.removeItem(atPath: store + "/" + s.active) }, "key7"),
            ("active-emptied", { store, s in #expect(truncate(store + "/" + s.active, 0) == 0) }, "key7"),
            ("sealed-removed", { store, s in
                try FileManager.default.removeItem(atPath: store + "/" + s.sealed)
                try FileManager.default.removeItem(atPath: store + "/" + s.sealed.replacingOccurrences(of: ".kvseg", with: ".kvhint"))
            }, "key1"),
            ("sealed-emptied", { store, s in #expect(truncate(store + "/" + s.sealed, 0) == 0) }, "key1"),
        ]
        for (name, damage, lostKey) in cases {
            let store = try make(name)
            try damage(store, try segments(store))
            let get = try kvfile("get", store, lostKey)
            #expect(get.status == 76 && get.stderr.contains("are lost"), "\(name): \(get.status) \(get.stderr)")
            #expect(try kvfile("put", store, "x", "1").status == 76, "\(name)")
            #expect(try kvfile("check", store).status == 76, "\(name)")
            let repair = try kvfile("check", "--repair", store)
            #expect(repair.status == 0 && repair.text.contains("are lost"), "\(name): \(repair.text)")
            #expect(try kvfile("put", store, "key9", "v").status == 0)
            let version = try kvfile("get", "--version", store, "key9")
            #expect((Int(version.text.split(separator: "\n").last ?? "") ?? 0) > 8, "\(name): numbers given out again: \(version.text)")
        }
    }

    /// Defect: `kvfile load S <&-` read the store's own lock file as its input
    /// (opened as descriptor 0) and failed with "not a JSON object", having
    /// made an empty store; a closed standard descriptor is now /dev/null and
    /// reading a closed standard input says so.
    @Test func aClosedStandardInputIsNotTheLockFile() throws {
        let dir = TemporaryDirectory()
        let store = dir.sub("s")
        let load = try sh("\"$0\" load \"$1\" <&-", store)
        #expect(load.status == 74 && load.stderr.contains("standard input") && load.stderr.contains("closed"), "\(load.status) \(load.stderr)")
        // Nor is an empty store left behind by the load that failed.
        #expect(!FileManager.default.fileExists(atPath: store), "load <&- created the store")
        let put = try sh("\"$0\" put \"$1\" k <&-", store)
        #expect(put.status == 74 && put.stderr.contains("closed"), "\(put.status) \(put.stderr)")
        #expect(try kvfile("get", store, "k").status != 0)
        // Output closed: the command still works (its output goes nowhere).
        #expect(try sh("\"$0\" put \"$1\" k2 v >&- 2>&-", store).status == 0)
        #expect(try kvfile("get", store, "k2").text == "v")
    }

    /// Defect: `kvfile` with no subcommand printed help and exited 0.
    @Test func noSubcommandIsAUsageError() throws {
        let result = try run(kvfileBinary, [])
        #expect(result.status == 64)
        #expect(result.stderr.contains("SUBCOMMANDS"))
        #expect(result.stdout.isEmpty)
        // Nor is `kvfile help nosuch` (it printed the main help, exit 0); `help get` still helps.
        let unknown = try run(kvfileBinary, ["help", "nosuch"])
        #expect(unknown.status == 64 && unknown.stderr.contains("no command 'nosuch'"), "\(unknown.status) \(unknown.stderr)")
        let known = try run(kvfileBinary, ["help", "get"])
        #expect(known.status == 0 && known.text.contains("kvfile get"))
    }

    /// Defect: `kvfile get --help` listed --version twice, once as the key's
    /// version and once as "Show the version." (ArgumentParser's own flag,
    /// which `get` never honoured). `kvfile --version` is handled before parsing.
    @Test func getHelpListsVersionOnce() throws {
        let help = try run(kvfileBinary, ["get", "--help"])
        #expect(help.status == 0)
        #expect(help.text.components(separatedBy: "\n  --version ").count == 2, "\(help.text)")
        #expect(!help.text.contains("Show the version"))
        let version = try run(kvfileBinary, ["--version"])
        #expect(version.status == 0 && version.text.first?.isNumber == true, "\(version.status) \(version.text)")
        #expect(try run(kvfileBinary, ["--help"]).text.contains("kvfile --version prints the version"))
        // And --version still prints the key's version.
        let dir = TemporaryDirectory()
        let store = dir.sub("s")
        for value in ["5", "7"] { #expect(try kvfile("put", store, "n", value).status == 0) }
        #expect(try kvfile("get", "--version", store, "n").text == "2\n")
    }
}

@Suite struct CLIInputTrustTests {
    /// Defect: `load --format json` decoded the document into a dictionary of
    /// Swift strings, which merges keys that are the same text in different
    /// Unicode forms: a `dump --format json | load` copy lost pairs, exit 0.
    @Test func loadJSONKeepsKeysThatDifferOnlyInUnicodeForm() throws {
        let dir = TemporaryDirectory()
        let a = dir.sub("a"), b = dir.sub("b")
        let nfc: [UInt8] = [0x63, 0x61, 0x66, 0xC3, 0xA9]              // "café", é as one scalar
        let nfd: [UInt8] = [0x63, 0x61, 0x66, 0x65, 0xCC, 0x81]        // "café", e + combining acute
        let ndjson = #"{"key_base64":"\#(Data(nfc).base64EncodedString())","value":"composed"}"# + "\n"
            + #"{"key_base64":"\#(Data(nfd).base64EncodedString())","value":"decomposed"}"# + "\n"
        #expect(try kvfile("load", a, input: Array(ndjson.utf8)).status == 0)
        let document = try kvfile("dump", a, "--format", "json")
        #expect(document.status == 0)
        let loaded = try kvfile("load", b, "--format", "json", input: document.stdout)
        #expect(loaded.status == 0, "\(loaded.stderr)")
        #expect(try kvfile("dump", b, "--format", "ndjson").stdout == kvfile("dump", a, "--format", "ndjson").stdout)
        #expect(try kvfile("stat", b, "--json").text.contains("\"keys\":2"))
    }

    /// Defect: `put` read all of standard input before looking at its size
    /// (1 GiB of input cost 1 GB of memory before the 64 MiB error); endless
    /// input never ended. It stops reading past the limit.
    @Test func putStopsReadingStandardInputPastTheValueLimit() throws {
        let dir = TemporaryDirectory()
        let result = try run("/usr/bin/timeout", ["60", "/bin/sh", "-c", #"yes | "$0" put "$1" k"#, kvfileBinary, dir.sub("s")])
        #expect(result.status == 65, "\(result.status) \(result.stderr)")
        #expect(result.stderr.contains("is larger than the limit of 67108864 bytes"))
    }

    /// Defect: `load` wrote nothing until standard input ended (3M lines held
    /// 775 MB first). Each batch is written as soon as it is complete.
    @Test func loadWritesEachBatchBeforeTheInputEnds() throws {
        let dir = TemporaryDirectory()
        let store = dir.sub("s")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: kvfileBinary)
        process.arguments = ["load", store, "--batch", "10", "-q"]
        let input = Pipe()
        process.standardInput = input
        try process.run()
        let lines = (0..<25).map { #"{"key":"k\#($0)","value":"v\#($0)"}"# + "\n" }.joined()
        input.fileHandleForWriting.write(Data(lines.utf8))
        // Two batches of ten are complete; the input stays open.
        var seen = false
        let deadline = Date().addingTimeInterval(20)
        while !seen && Date() < deadline {
            seen = (try? kvfile("get", store, "k19").text) == "v19"
            if !seen { usleep(50_000) }
        }
        #expect(seen, "the first batches were not written while the input was still open")
        #expect(try kvfile("get", store, "k24").status == 1)  // the last five wait for their batch or the end
        try input.fileHandleForWriting.close()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        #expect(try kvfile("get", store, "k24").text == "v24")
    }
}

@Suite struct CheckAgreesWithOpenTests {
    /// Defect: `check` disagreed with open: a batch cut by a real kill -9
    /// during `load --batch 20000` gave thousands of false "checksum
    /// mismatch" errors and exit 76, though the next writer simply drops it.
    @Test func aLoadKilledMidBatchIsATornTailForCheckToo() throws {
        let dir = TemporaryDirectory()
        let store = dir.sub("s")
        let input = dir.sub("in.ndjson")
        let lines = (0..<200_000).map { #"{"key":"key-\#($0)","value":"value number \#($0) \#(String(repeating: "x", count: $0 % 50))"}"# }
        try (lines.joined(separator: "\n") + "\n").write(toFile: input, atomically: true, encoding: .utf8)
        #expect(try kvfile("put", store, "seed", "0").status == 0)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: kvfileBinary)
        process.arguments = ["load", store, "--batch", "20000", "-q"]
        process.standardInput = try FileHandle(forReadingFrom: URL(fileURLWithPath: input))
        try process.run()
        // Kill it once it has stored part of a batch (the segment grew past the seed).
        let segment = store + "/00000001.kvseg"
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            let checked = try kvfile("check", store)
            #expect(checked.status == 0, "check beside a running load: \(checked.text)")
            if let size = try? FileManager.default.attributesOfItem(atPath: segment)[.size] as? Int, size > 1 << 20 { break }
            usleep(20_000)
        }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        let check = try kvfile("check", store)
        #expect(check.status == 0, "\(check.text)")
        #expect(!check.text.contains("error:"))
        #expect(try kvfile("get", store, "seed").text == "0")
        #expect(try kvfile("put", store, "after", "kill").status == 0)
        #expect(try kvfile("check", store).status == 0)
    }

    /// Defect: a segment file deleted from the middle of a store lost its keys
    /// while `check` exited 0 with one warning. A hint file without its
    /// segment is damage, for open and check alike.
    @Test func aMissingSegmentIsDamageForOpenAndCheck() throws {
        let dir = TemporaryDirectory()
        let store = dir.sub("s")
        let pairs = (0..<2000).map { #"{"key":"k0-\#($0)","value":"\#(String(repeating: "v", count: 40))"}"# + "\n" }.joined()
        #expect(try kvfile("load", store, input: Array(pairs.utf8)).status == 0)
        #expect(try kvfile("compact", "-q", store).status == 0)  // a sealed segment with its hint file
        #expect(try kvfile("put", store, "later", "1").status == 0)
        let segments = try FileManager.default.contentsOfDirectory(atPath: store).filter { $0.hasSuffix(".kvseg") }.sorted()
        let hints = try FileManager.default.contentsOfDirectory(atPath: store).filter { $0.hasSuffix(".kvhint") }.sorted()
        let victim = try #require(hints.first).replacingOccurrences(of: ".kvhint", with: ".kvseg")
        #expect(segments.contains(victim))
        try FileManager.default.removeItem(atPath: store + "/" + victim)
        let check = try kvfile("check", store)
        #expect(check.status == 76)
        #expect(check.text.contains("error: \(victim)"))
        #expect(check.text.contains("the segment is missing"))
        let get = try kvfile("get", store, "k0-1")
        #expect(get.status == 76)
        #expect(get.stderr.contains("the segment is missing"))
    }
}

@Suite struct ScriptFeatureTests {
    /// Two shell loops incrementing one counter 200 times each end at 400
    /// (the README's old get-then-put recipe lost increments).
    @Test func concurrentIncrementsFromTwoProcessesAllCount() throws {
        let dir = TemporaryDirectory()
        let store = dir.sub("c")
        let loop = #"for i in $(seq 1 200); do "$0" incr "$1" n > /dev/null || exit 1; done"#
        let a = try Background("/bin/sh", ["-c", loop, kvfileBinary, store], output: dir.sub("a"))
        let b = try Background("/bin/sh", ["-c", loop, kvfileBinary, store], output: dir.sub("b"))
        #expect(a.waitForExit(seconds: 120) && a.process.terminationStatus == 0)
        #expect(b.waitForExit(seconds: 120) && b.process.terminationStatus == 0)
        #expect(try kvfile("get", store, "n").text == "400")
        #expect(try kvfile("decr", store, "n", "-5").text == "405\n")
        #expect(try kvfile("put", store, "word", "abc").status == 0)
        let notNumber = try kvfile("incr", store, "word")
        #expect(notNumber.status == 65)
        #expect(try kvfile("get", store, "word").text == "abc")
        #expect(try kvfile("put", store, "max", "9223372036854775807").status == 0)
        #expect(try kvfile("incr", store, "max").status == 65)
    }

    /// Two processes racing compare-and-set loops (the README's recipe) on
    /// one key: each write that wins is based on the value it read, so 150
    /// increments each end at 300 and exactly one of two racing writes wins.
    @Test func compareAndSetLoopsInTwoProcessesLoseNoUpdate() throws {
        let dir = TemporaryDirectory()
        let store = dir.sub("cas")
        #expect(try kvfile("put", store, "n", "0").status == 0)
        let loop = #"""
            k="$0"; s="$1"; lost=0
            for i in $(seq 1 150); do
              until v=$("$k" get --version "$s" n) && n=$("$k" get "$s" n) && "$k" put --if-version "$v" "$s" n "$((n + 1))" 2> /dev/null; do
                lost=$((lost + 1))
              done
            done
            echo "$lost"
            """#
        let a = try Background("/bin/sh", ["-c", loop, kvfileBinary, store], output: dir.sub("a"))
        let b = try Background("/bin/sh", ["-c", loop, kvfileBinary, store], output: dir.sub("b"))
        #expect(a.waitForExit(seconds: 300) && a.process.terminationStatus == 0)
        #expect(b.waitForExit(seconds: 300) && b.process.terminationStatus == 0)
        #expect(try kvfile("get", store, "n").text == "300")
    }

    /// Compare-and-set from the shell: a stale version is refused (exit 1).
    @Test func putAndDeleteIfVersion() throws {
        let dir = TemporaryDirectory()
        let store = dir.sub("v")
        #expect(try kvfile("put", store, "k", "1").status == 0)
        let version = try kvfile("get", "--version", store, "k").text.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(UInt64(version) != nil)
        #expect(try kvfile("put", "--if-version", version, store, "k", "2").status == 0)
        let stale = try kvfile("put", "--if-version", version, store, "k", "3")
        #expect(stale.status == 1)
        #expect(stale.stderr.contains("not written"))
        #expect(try kvfile("get", store, "k").text == "2")
        #expect(try kvfile("delete", "--if-version", version, store, "k").status == 1)
        let now = try kvfile("get", "--version", store, "k").text.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try kvfile("delete", "--if-version", now, store, "k").status == 0)
        #expect(try kvfile("get", "--version", store, "k").status == 1)
        #expect(try kvfile("put", "--if-version", "0", store, "k", "new").status == 0)
    }
}

@Suite struct WatchPrefixTests {
    @Test func watchPrefixKeepsOnlyKeysUnderIt() throws {
        let dir = TemporaryDirectory()
        let store = dir.sub("w")
        for key in ["user:1", "other", "job:7", "userless", "user:2"] { _ = try kvfile("put", store, key, "v") }
        let watched = try kvfile("watch", store, "--from-start", "--prefix", "user:", "--prefix", "job:", "--count", "3")
        #expect(watched.status == 0)
        let keys = watched.text.split(separator: "\n").compactMap {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["key"] as? String
        }
        #expect(keys == ["user:1", "job:7", "user:2"])
    }
}

@Suite struct KeysCommandTests {
    @Test func keysPrintsSortedKeysPagedWithACursor() throws {
        let dir = TemporaryDirectory()
        let store = dir.sub("k")
        let lines = (0..<25_000).map { #"{"key":"k\#(String(format: "%05d", $0))","value":"v"}"# }.joined(separator: "\n") + "\n"
            + #"{"key":"other","value":"v"}"# + "\n" + #"{"key":"k\nnewline","value":"v"}"# + "\n"
        #expect(try kvfile("load", store, "-q", input: Array(lines.utf8)).status == 0)
        let all = try kvfile("keys", store, "-0")
        #expect(all.status == 0)
        let keys = all.stdout.split(separator: 0, omittingEmptySubsequences: false).dropLast().map { String(decoding: $0, as: UTF8.self) }
        #expect(keys.count == 25_002)
        #expect(keys == keys.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) })
        #expect(keys.contains("k\nnewline"))
        let page = try kvfile("keys", store, "--prefix", "k0", "--after", "k00099", "--limit", "3").text
        #expect(page == "k00100\nk00101\nk00102\n")
        #expect(try kvfile("keys", store, "--prefix", "oth").text == "other\n")
        #expect(try kvfile("keys", store, "--prefix", "none").text.isEmpty)
    }
}
