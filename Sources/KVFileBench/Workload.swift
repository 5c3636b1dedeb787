// The shared benchmark workload, version 1 (the one the peer engines are measured with), generated exactly:
// splitmix64 sequences with fixed seeds, %016llu keys, half-compressible values.

/// splitmix64 with unsigned 64-bit wrapping arithmetic (public: the engine's tests draw from it too).
public struct SplitMix64: RandomNumberGenerator {
    public var state: UInt64

    public init(seed: UInt64) { state = seed }

    @inline(__always)
    public mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }

    /// (next() * n) >> 64 with a 128-bit product: uniform in [0, n).
    @inline(__always)
    mutating func uniform(_ n: UInt64) -> UInt64 {
        next().multipliedFullWidth(by: n).high
    }
}

enum Workload {
    static let valuePoolSeed: UInt64 = 301
    static let fillRandomSeed: UInt64 = 1001
    static let overwriteSeed: UInt64 = 1002
    static let readRandomSeed: UInt64 = 1003
    static let readMissingSeed: UInt64 = 1004
    static let deleteRandomSeed: UInt64 = 1005

    /// permutation(n, seed): Fisher–Yates from the top, as the workload defines it.
    static func permutation(_ n: Int, seed: UInt64) -> [UInt64] {
        var a = (0..<UInt64(n)).map { $0 }
        var random = SplitMix64(seed: seed)
        var i = n - 1
        while i >= 1 {
            let j = Int(random.uniform(UInt64(i + 1)))
            a.swapAt(i, j)
            i -= 1
        }
        return a
    }

    /// n draws of uniform(n) with replacement.
    static func uniformSequence(_ n: Int, seed: UInt64) -> [UInt64] {
        var random = SplitMix64(seed: seed)
        return (0..<n).map { _ in random.uniform(UInt64(n)) }
    }

    /// Writes printf("%016llu", k) into 16 bytes at `p` (plus "." at 16 when `missing`).
    @inline(__always)
    static func formatKey(_ k: UInt64, missing: Bool = false, into p: UnsafeMutablePointer<UInt8>) {
        var v = k
        var i = 15
        while i >= 0 {
            p[i] = UInt8(truncatingIfNeeded: v % 10) &+ 48
            v /= 10
            i -= 1
        }
        if missing { p[16] = UInt8(ascii: ".") }
    }

    static func key(_ k: UInt64, missing: Bool = false) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: missing ? 17 : 16)
        bytes.withUnsafeMutableBufferPointer { formatKey(k, missing: missing, into: $0.baseAddress!) }
        return bytes
    }
}

/// The value pool: 1 MiB + V bytes of splitmix64 output (seed 301), little-endian.
final class ValuePool {
    let valueSize: Int
    let half: Int
    private let pool: [UInt8]
    /// Scratch for one value, reused by every write.
    private(set) var scratch: [UInt8]

    init(valueSize: Int) {
        self.valueSize = valueSize
        half = (valueSize + 1) / 2
        let size = (1 << 20) + valueSize
        var random = SplitMix64(seed: Workload.valuePoolSeed)
        var bytes = [UInt8](repeating: 0, count: size + 8)
        var offset = 0
        while offset < size {
            let word = random.next().littleEndian
            withUnsafeBytes(of: word) { raw in
                for b in 0..<8 where offset + b < bytes.count { bytes[offset + b] = raw[b] }
            }
            offset += 8
        }
        pool = Array(bytes[0..<size])
        scratch = [UInt8](repeating: 0, count: valueSize)
    }

    /// value[j] = pool[off + (j mod h)], off = (i*h) mod 2^20, written into `scratch`.
    @inline(__always)
    func fill(_ i: Int, into p: UnsafeMutablePointer<UInt8>) {
        let off = (i &* half) & ((1 << 20) - 1)
        pool.withUnsafeBufferPointer { source in
            let first = min(half, valueSize)
            (p).update(from: source.baseAddress! + off, count: first)
            if valueSize > half {
                (p + half).update(from: source.baseAddress! + off, count: valueSize - half)
            }
        }
    }

    func value(_ i: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: valueSize)
        out.withUnsafeMutableBufferPointer { fill(i, into: $0.baseAddress!) }
        return out
    }
}
