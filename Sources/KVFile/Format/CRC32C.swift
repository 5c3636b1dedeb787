import CKVFileSupport

/// CRC-32C (Castagnoli), the checksum of records, segment headers and hint files.
enum CRC32C {
    @inline(__always)
    static func checksum(_ p: UnsafeRawPointer, _ count: Int) -> UInt32 {
        kvf_crc32c(0, p, count)
    }

    static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        guard let base = bytes.baseAddress else { return 0 }
        return kvf_crc32c(0, base, bytes.count)
    }
}

extension UnsafeRawPointer {
    @inline(__always)
    func loadLE<T: FixedWidthInteger>(at offset: Int, as: T.Type) -> T {
        T(littleEndian: loadUnaligned(fromByteOffset: offset, as: T.self))
    }
}

extension UnsafeMutableRawPointer {
    @inline(__always)
    func storeLE<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        storeBytes(of: value.littleEndian, toByteOffset: offset, as: T.self)
    }
}
