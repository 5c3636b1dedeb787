// The fuzz target. Built normally, it replays the files named on its command
// line through the decoders (a regression corpus runner). Built by
// `scripts/fuzz` with `-sanitize=fuzzer -D FUZZING`, it hands control to
// libFuzzer, which mutates inputs guided by coverage.
@_spi(Fuzzing) import KVFile

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

#if FUZZING
/// libFuzzer's entry point: it calls this with each input it makes.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    FuzzEntryPoints.run(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
#else
@main
struct FuzzMain {
    static func main() {
        var replayed = 0
        for path in CommandLine.arguments.dropFirst() {
            guard let file = fopen(path, "rb") else {
                fputs("kvfile-fuzz: cannot open \(path)\n", stderr)
                exit(66)
            }
            var bytes: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = fread(&chunk, 1, chunk.count, file)
                if n == 0 { break }
                bytes += chunk[0..<n]
            }
            fclose(file)
            bytes.withUnsafeBytes { FuzzEntryPoints.run($0) }
            replayed += 1
        }
        print("kvfile-fuzz: replayed \(replayed) inputs without a finding")
    }
}
#endif
