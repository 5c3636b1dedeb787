#if DEBUG
import Foundation
@testable import KVFile

// What a fixture records of a store: shared by the writer (this tool) and the
// fixture tests, which compare a store with what was written here.

/// Lowercase hex of `bytes`.
func hex(_ bytes: some Sequence<UInt8>) -> String {
    bytes.map { String(format: "%02x", $0) }.joined()
}

/// "key-hex value-hex" lines, in key order: a fixture's expected contents.
func dumpLines(_ store: Store) throws -> [String] {
    var lines: [String] = []
    try store.forEach { key, value in lines.append(hex(key) + " " + hex(value)) }
    return lines
}

/// Where each record of segment file `path` starts, its size, seq and continues flag.
func recordOffsets(_ path: String) -> [(offset: Int, size: Int, seq: UInt64, continues: Bool)] {
    let data = Array(FileManager.default.contents(atPath: path) ?? Data())
    var result: [(Int, Int, UInt64, Bool)] = []
    _ = try? data.withUnsafeBytes { raw throws(KVFileError) in
        try SegmentScanner.scan(UnsafeRawBufferPointer(rebasing: raw[RecordFormat.segmentHeaderSize...]), baseOffset: RecordFormat.segmentHeaderSize, rule: .notJudged) {
            offset, header, _ throws(KVFileError) in
            result.append((offset, header.totalLength, header.seq, header.continues))
        }
    }
    return result
}

/// One line per record of every segment of the store at `storePath`:
/// file, offset, op, seq, ts, continues, compressed, key, value ("-" for a delete),
/// and "segment:offset" of its prior when it names one (version 4).
func recordLines(_ storePath: String) throws -> [String] {
    var lines: [String] = []
    let names = ((try? FileManager.default.contentsOfDirectory(atPath: storePath)) ?? []).filter { $0.hasSuffix(".kvseg") }.sorted()
    for name in names {
        let data = Array(FileManager.default.contents(atPath: storePath + "/" + name) ?? Data())
        _ = try data.withUnsafeBytes { raw throws(KVFileError) in
            try SegmentScanner.scan(UnsafeRawBufferPointer(rebasing: raw[RecordFormat.segmentHeaderSize...]), baseOffset: RecordFormat.segmentHeaderSize, rule: .notJudged) {
                offset, header, record throws(KVFileError) in
                let key = UnsafeRawBufferPointer(start: record + header.keyOffset, count: header.keyLength)
                var value = Array(UnsafeRawBufferPointer(start: record + header.valueOffset, count: header.storedLength))
                if header.compressed {
                    var out = [UInt8](repeating: 0, count: header.rawLength)
                    _ = out.withUnsafeMutableBytes { LZ4Block.decompress(record + header.valueOffset, count: header.storedLength, into: $0.baseAddress!, rawLength: header.rawLength) }
                    value = out
                }
                var fields = [name, String(offset), String(header.operation.rawValue), String(header.seq), String(header.timestamp),
                              header.continues ? "1" : "0", header.compressed ? "1" : "0", hex(key), header.operation == .deleted ? "-" : hex(value)]
                if let prior = header.prior { fields.append("\(prior.segment):\(prior.offset)") }
                lines.append(fields.joined(separator: " "))
            }
        }
    }
    return lines
}
#endif
