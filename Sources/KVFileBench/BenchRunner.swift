#if canImport(Glibc)
@preconcurrency import Glibc
#endif
import Foundation
import KVFile

/// Runs the benchmarks in order against one database directory, as db_bench does.
final class BenchRunner: @unchecked Sendable {
    let config: BenchConfig
    private var store: Store?
    private let values: ValuePool

    init(config: BenchConfig) {
        self.config = config
        values = ValuePool(valueSize: config.valueSize)
    }

    private var options: StoreOptions {
        StoreOptions(segmentSize: config.segmentSize, durability: config.sync ? .always : .none)
    }

    func run() throws {
        print("kvfile-bench: keys 16 bytes, values \(config.valueSize) bytes (about \(config.valueSize / 2) after compression), \(config.num) entries, sync \(config.sync ? 1 : 0), db \(config.db)")
        print("------------------------------------------------")
        for name in config.benchmarks {
            switch name {
            case "fillseq": try fresh(); report(name, ops: config.num, seconds: try fill(keys: (0..<UInt64(config.num)).map { $0 }))
            case "fillrandom":
                try fresh()
                report(name, ops: config.num, seconds: try fill(keys: Workload.permutation(config.num, seed: Workload.fillRandomSeed)))
                try reportKeydir(when: "after fillrandom")
            case "overwrite": try opened(); report(name, ops: config.num, seconds: try fill(keys: Workload.uniformSequence(config.num, seed: Workload.overwriteSeed)))
            case "readrandom": try opened(); try read(name, keys: Workload.uniformSequence(config.num, seed: Workload.readRandomSeed), missing: false)
            case "readmissing": try opened(); try read(name, keys: Workload.uniformSequence(config.num, seed: Workload.readMissingSeed), missing: true)
            case "readathand": try opened(); try read(name, keys: Workload.uniformSequence(config.num, seed: Workload.readRandomSeed), missing: false, atHand: true)
            case "deleterandom":
                try opened()
                let keys = Array(Workload.permutation(config.num, seed: Workload.deleteRandomSeed).prefix(config.num / 10))
                report(name, ops: keys.count, seconds: try delete(keys: keys))
            case "open": try reopen()
            case "compact": try opened(); try compactUnderLoad()
            case "watchlatency": try opened(); try WatchLatency.run(store: store!, directory: config.db, count: min(config.num, 20_000), report: printLine)
            case "fillsync": try fillSync()
            default: break
            }
        }
        try summary()
    }

    // MARK: setup

    private func fresh() throws {
        try store?.close()
        store = nil
        removeTree(config.db)
        store = try Store(path: config.db, options: options)
    }

    private func opened() throws {
        if store == nil { store = try Store(path: config.db, options: options) }
    }

    // MARK: benchmarks

    private func fill(keys: [UInt64]) throws -> Double {
        let store = store!
        var key = [UInt8](repeating: 0, count: 16)
        var value = [UInt8](repeating: 0, count: config.valueSize)
        let start = now()
        try key.withUnsafeMutableBufferPointer { k in
            try value.withUnsafeMutableBufferPointer { v in
                for (i, number) in keys.enumerated() {
                    Workload.formatKey(number, into: k.baseAddress!)
                    if config.valueSize > 0 { values.fill(i, into: v.baseAddress!) }
                    try store.put(key: UnsafeRawBufferPointer(k), value: UnsafeRawBufferPointer(v))
                }
            }
        }
        return now() - start
    }

    /// `atHand`: with the read for threads that must not block (what the server's GETs use), counting those it declines.
    private func read(_ name: String, keys: [UInt64], missing: Bool, atHand: Bool = false) throws {
        let store = store!
        var key = [UInt8](repeating: 0, count: missing ? 17 : 16)
        var found = 0
        var badLength = 0
        var declined = 0
        let valueSize = config.valueSize
        let start = now()
        try key.withUnsafeMutableBufferPointer { k in
            let raw = UnsafeRawBufferPointer(k)
            for number in keys {
                Workload.formatKey(number, missing: missing, into: k.baseAddress!)
                if !atHand {
                    try store.withValue(forKey: raw) { value in
                        if let value {
                            found += 1
                            if value.count != valueSize { badLength += 1 }
                        }
                    }
                    continue
                }
                let count = { (value: UnsafeRawBufferPointer?, _: UInt64) in
                    if let value {
                        found += 1
                        if value.count != valueSize { badLength += 1 }
                    }
                }
                if try store.withVersionedValueIfAtHand(forKey: raw, count) == nil {
                    declined += 1
                    try store.withVersionedValue(forKey: raw, count)
                }
            }
        }
        let seconds = now() - start
        report(name, ops: keys.count, seconds: seconds,
               extra: " (\(found) of \(keys.count) found, \(badLength) bad_len" + (atHand ? ", \(declined) declined)" : ")"))
    }

    private func delete(keys: [UInt64]) throws -> Double {
        let store = store!
        var key = [UInt8](repeating: 0, count: 16)
        let start = now()
        try key.withUnsafeMutableBufferPointer { k in
            for number in keys {
                Workload.formatKey(number, into: k.baseAddress!)
                try store.delete(key: UnsafeRawBufferPointer(k))
            }
        }
        return now() - start
    }

    private func reopen() throws {
        try store?.close()
        store = nil
        let anonymousBefore = Self.anonymousKilobytes() ?? 0
        let start = now()
        store = try Store(path: config.db, options: options)
        let seconds = now() - start
        let keys = store!.count
        print(padded("open") + " : " + String(format: "%11.3f s to open %d keys (%.0f keys/s)", seconds, keys, Double(keys) / max(seconds, 1e-9)))
        // What the open store holds of its own (the index is in the page cache).
        let anonymous = (Self.anonymousKilobytes() ?? 0) - anonymousBefore
        print(padded("open memory") + " : " + String(format: "%.1f MB anonymous (%.1f bytes per key)", Double(anonymous) / 1024, Double(anonymous) * 1024 / Double(max(keys, 1))))
    }

    private func summary() throws {
        guard let store else { return }
        // Segments rolled away may still be sealing in the background: their hint files count once written.
        try store.sync()
        let stats = try store.stats()
        print("------------------------------------------------")
        print("store        : \(stats.segmentBytes + stats.hintBytes + stats.indexBytes) bytes on disk (\(stats.segments) segments \(stats.segmentBytes) B, hints \(stats.hintBytes) B, index \(stats.indexBytes) B), live \(stats.liveBytes) B, dead \(stats.deadBytes) B")
        try reportKeydir(when: "at the end")
        print(String(format: "index file   : %.1f bytes per key on disk, %d slots, load %.2f", Double(stats.indexBytes) / Double(max(stats.keys, 1)),
                     stats.indexSlots, Double(stats.keys) / Double(max(stats.indexSlots, 1))))
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        print(String(format: "peak RSS     : %.1f MB", Double(usage.ru_maxrss) / 1024))
        // The index lives in the page cache (file-backed); anonymous memory is what the process holds of its own.
        if let anonymous = Self.anonymousKilobytes() {
            print(String(format: "anon memory  : %.1f MB (%.1f bytes per key)", Double(anonymous) / 1024, Double(anonymous) * 1024 / Double(max(stats.keys, 1))))
        }
        try store.close()
    }

    /// RssAnon from /proc/self/status, in KiB.
    static func anonymousKilobytes() -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("RssAnon:") }) else { return nil }
        return Int(line.split(separator: " ", omittingEmptySubsequences: true)[1])
    }

    /// The keydir's memory per key: the slot table plus the arena bytes in use
    /// (after deletes this counts the entries they left until the arena is next compacted).
    private func reportKeydir(when: String) throws {
        guard let store else { return }
        let stats = try store.stats()
        print(String(format: "index tables : %.1f bytes per key %@ (%d keys, %d bytes)", stats.keydirBytesPerKey, when, stats.keys, stats.keydirBytes))
    }

    /// Compaction of everything while one thread keeps overwriting: MB/s and the longest put.
    private func compactUnderLoad() throws {
        let store = store!
        let before = try store.stats()
        let done = Flag()
        let result = ResultBox()
        let thread = Thread {
            do { result.value = try store.compact() } catch { result.error = error }
            done.set()
        }
        var key = [UInt8](repeating: 0, count: 16)
        var value = [UInt8](repeating: 0, count: config.valueSize)
        var random = SplitMix64(seed: 4242)
        var longest = 0.0
        var puts = 0
        thread.start()
        try key.withUnsafeMutableBufferPointer { k in
            try value.withUnsafeMutableBufferPointer { v in
                while !done.isSet {
                    Workload.formatKey(random.uniform(UInt64(config.num)), into: k.baseAddress!)
                    if config.valueSize > 0 { values.fill(puts, into: v.baseAddress!) }
                    let start = now()
                    try store.put(key: UnsafeRawBufferPointer(k), value: UnsafeRawBufferPointer(v))
                    longest = max(longest, now() - start)
                    puts += 1
                }
            }
        }
        if let error = result.error { throw error }
        guard let compaction = result.value else { return }
        let megabytes = Double(compaction.bytesBefore) / 1e6
        let after = try store.stats()
        print(padded("compact") + " : " + String(format: "%11.1f MB/s (%.1f MB of segments in %.2f s, %d records kept); longest put %.2f ms during it (%d puts); disk %d -> %d bytes",
            megabytes / max(compaction.seconds, 1e-9), megabytes, compaction.seconds, compaction.recordsCopied,
            longest * 1000, puts, before.segmentBytes + before.hintBytes, after.segmentBytes + after.hintBytes))
        // The puts made during it left dead records behind; what the data itself takes shows after a quiet compaction.
        try store.compact()
        let quiet = try store.stats()
        let perKey = Double(quiet.segmentBytes + quiet.hintBytes) / Double(max(quiet.keys, 1))
        print(padded("disk") + " : " + String(format: "%d bytes after a quiet compaction (segments %d B + hints %d B, %.1f B per key, %d keys)",
            quiet.segmentBytes + quiet.hintBytes, quiet.segmentBytes, quiet.hintBytes, perKey, quiet.keys))
    }

    /// Durable puts (fsync before each returns): one thread, then `threads` threads sharing syncs.
    private func fillSync() throws {
        // The summary describes the store the other benchmarks built: print it before that store goes.
        try summary()
        store = nil
        let count = min(config.num, 20_000)
        for threads in [1, config.threads] {
            removeTree(config.db)
            let store = try Store(path: config.db, options: StoreOptions(segmentSize: config.segmentSize, durability: .always))
            let perThread = count / threads
            let start = now()
            let failures = ResultBox()
            let valueSize = config.valueSize
            let group = DispatchGroup()
            // Real threads, one per writer: a dispatch pool would run only as many as there are cores.
            for t in 0..<threads {
                group.enter()
                Thread {
                    let pool = ValuePool(valueSize: valueSize)
                    var value = pool.value(t)
                    var key = [UInt8](repeating: 0, count: 16)
                    for i in 0..<perThread {
                        key.withUnsafeMutableBufferPointer { Workload.formatKey(UInt64(t * perThread + i), into: $0.baseAddress!) }
                        value[0] = UInt8(truncatingIfNeeded: i)
                        do { try store.put(key, value) } catch { failures.error = error }
                    }
                    group.leave()
                }.start()
            }
            group.wait()
            if let error = failures.error { throw error }
            let seconds = now() - start
            let ops = perThread * threads
            print(padded("fillsync") + " : " + String(format: "%11.3f micros/op %.0f durable puts/sec; %d thread%@", seconds * 1e6 / Double(ops), Double(ops) / seconds, threads, threads == 1 ? "" : "s"))
            try store.close()
        }
    }

    private func printLine(_ text: String) { print(text) }

    // MARK: helpers

    private func report(_ name: String, ops: Int, seconds: Double, extra: String = "") {
        let micros = seconds * 1e6 / Double(max(ops, 1))
        let rate = Double(ops) / max(seconds, 1e-9)
        print(padded(name) + " : " + String(format: "%11.3f micros/op %.0f ops/sec;", micros, rate) + extra)
    }

    private func padded(_ name: String) -> String {
        name.count >= 12 ? name : name + String(repeating: " ", count: 12 - name.count)
    }

    private func now() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
    }
}

/// Removes a directory tree (the benchmark's own database directory).
func removeTree(_ path: String) {
    guard let dir = opendir(path) else { unlink(path); return }
    while let entry = readdir(dir) {
        let name = withUnsafePointer(to: entry.pointee.d_name) { $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) } }
        if name == "." || name == ".." { continue }
        let child = path + "/" + name
        if entry.pointee.d_type == UInt8(DT_DIR) { removeTree(child) } else { unlink(child) }
    }
    closedir(dir)
    rmdir(path)
}
