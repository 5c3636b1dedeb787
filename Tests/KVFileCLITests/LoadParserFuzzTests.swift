import Foundation
import Testing
@testable import KVFileCLI
import KVFileText
@testable import KVFileBench

/// Seeded random-input runs of the `load` parsers (ndjson lines and json
/// documents): what `dump` writes reads back byte for byte, and damaged input
/// is refused with an input error — never a crash, a hang or a wrong pair.
/// 20k inputs by default; KVFILE_STRESS=1 runs 1M.
@Suite struct LoadParserFuzzTests {
    /// The benchmark's splitmix64: seeded, so failures reproduce.
    typealias Generator = SplitMix64

    static var iterations: Int { ProcessInfo.processInfo.environment["KVFILE_STRESS"] == "1" ? 1_000_000 : 20_000 }

    /// Bytes that are often JSON-significant, UTF-8 lead bytes, or invalid.
    static let interesting: [UInt8] = Array("{}[]\":,\\/ubnrt0123456789-+.eE \t\n".utf8) + [0x00, 0x7F, 0x80, 0xC3, 0xA9, 0xE2, 0xF0, 0xFF]

    static func randomBytes(_ random: inout Generator, maxLength: Int) -> [UInt8] {
        (0..<Int.random(in: 0...maxLength, using: &random)).map { _ in
            Bool.random(using: &random) ? interesting.randomElement(using: &random)! : UInt8.random(in: 0...255, using: &random)
        }
    }

    static func mutate(_ input: [UInt8], _ random: inout Generator) -> [UInt8] {
        var bytes = input
        for _ in 0..<Int.random(in: 1...4, using: &random) {
            switch Int.random(in: 0..<4, using: &random) {
            case 0 where !bytes.isEmpty: bytes[Int.random(in: 0..<bytes.count, using: &random)] = interesting.randomElement(using: &random)!
            case 1 where !bytes.isEmpty: bytes.removeSubrange(Int.random(in: 0..<bytes.count, using: &random)...)
            case 2: bytes.insert(UInt8.random(in: 0...255, using: &random), at: Int.random(in: 0...bytes.count, using: &random))
            case 3 where !bytes.isEmpty: bytes.remove(at: Int.random(in: 0..<bytes.count, using: &random))
            default: break
            }
        }
        return bytes
    }

    @Test func ndjsonLinesRoundTripAndDamageIsRefused() throws {
        var random = Generator(seed: 42)
        var refused = 0, accepted = 0
        for _ in 0..<Self.iterations {
            let key = Self.randomBytes(&random, maxLength: 12)
            let value = Self.randomBytes(&random, maxLength: 40)
            let expiresAt: UInt64 = random.next() % 2 == 0 ? 0 : 100_000_000_000 + random.next() >> 24
            let line = Array(PairWriter.ndjsonLine(key.isEmpty ? [0x61] : key, value, expiresAt: expiresAt).utf8.dropLast())
            let (readKey, readValue, readExpiry) = try PairReader.ndjsonLine(line[...], number: 1)
            #expect(readKey == (key.isEmpty ? [0x61] : key) && readValue == value && readExpiry == expiresAt)

            let damaged = Self.mutate(line, &random)
            do {
                _ = try PairReader.ndjsonLine(damaged[...], number: 7)
                accepted += 1  // still a valid object with key and value: fine
            } catch let error as CLIError {
                #expect(error.code == .invalidInput)
                #expect(error.message.hasPrefix("line 7:"))
                refused += 1
            }
        }
        #expect(refused > Self.iterations / 4)
        #expect(accepted > 0)
    }

    @Test func jsonDocumentsRoundTripAndDamageIsRefused() throws {
        var random = Generator(seed: 7)
        let rounds = Self.iterations / 10
        for _ in 0..<rounds {
            var pairs: [[UInt8]: [UInt8]] = [:]
            for _ in 0..<Int.random(in: 0...5, using: &random) {
                let key = Array("k\(UInt16.random(in: 0...999, using: &random))é".utf8)
                pairs[key] = Self.randomBytes(&random, maxLength: 30)
            }
            var text = ""
            var writer = PairJSON.ObjectWriter { text += $0 }
            for key in pairs.keys.sorted(by: { $0.lexicographicallyPrecedes($1) }) { try writer.add(key, pairs[key]!) }
            writer.finish()
            let document = Array(text.utf8)
            let read = try PairReader.jsonDocument(document)
            #expect(Dictionary(read, uniquingKeysWith: { _, last in last }) == pairs)

            let damaged = Self.mutate(document, &random)
            do {
                _ = try PairReader.jsonDocument(damaged)
            } catch let error as CLIError {
                #expect(error.code == .invalidInput)
            }
        }
    }

    @Test func arbitraryBytesNeverCrashTheParsers() {
        var random = Generator(seed: 99)
        for _ in 0..<Self.iterations {
            let bytes = Self.randomBytes(&random, maxLength: 64)
            #expect(throws: CLIError.self) { try PairReader.ndjsonLine((bytes + [0x7B])[...], number: 1) }
            _ = try? PairReader.jsonDocument(bytes)
        }
    }
}
