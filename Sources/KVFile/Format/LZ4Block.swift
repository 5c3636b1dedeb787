import CLZ4

/// LZ4 block compression of values (see man/kvfile.5, "Compression").
/// One instance per writer: it keeps LZ4's 16 KiB state so that each call
/// does not have to clear a fresh one.
final class LZ4Compressor {
    private let stream: UnsafeMutablePointer<LZ4_stream_t>

    init() {
        stream = LZ4_createStream()!
    }

    deinit {
        LZ4_freeStream(stream)
    }

    /// The destination size `compress` needs for `length` input bytes.
    static func bound(_ length: Int) -> Int {
        Int(LZ4_compressBound(Int32(length)))
    }

    /// Compresses `source` into `destination` (which holds at least `bound(source.count)`
    /// bytes) as one independent block and returns its size, or nil when the
    /// result would not be smaller than the input.
    func compress(_ source: UnsafeRawBufferPointer, into destination: UnsafeMutableRawPointer) -> Int? {
        guard source.count >= RecordFormat.minCompressibleLength else { return nil }
        // A full-size destination means the call cannot fail, so the cheap reset stays valid.
        LZ4_resetStream_fast(stream)
        let n = LZ4_compress_fast_continue(
            stream,
            source.baseAddress!.assumingMemoryBound(to: CChar.self),
            destination.assumingMemoryBound(to: CChar.self),
            Int32(source.count), Int32(LZ4Compressor.bound(source.count)), 1)
        if n <= 0 {
            LZ4_resetStream(stream)
            return nil
        }
        return Int(n) < source.count ? Int(n) : nil
    }
}

enum LZ4Block {
    /// Decompresses a block that must expand to exactly `rawLength` bytes; false when it does not.
    static func decompress(_ source: UnsafeRawPointer, count: Int, into destination: UnsafeMutableRawPointer, rawLength: Int) -> Bool {
        if rawLength == 0 { return false }
        let n = LZ4_decompress_safe(
            source.assumingMemoryBound(to: CChar.self),
            destination.assumingMemoryBound(to: CChar.self),
            Int32(count), Int32(rawLength))
        return Int(n) == rawLength
    }
}
