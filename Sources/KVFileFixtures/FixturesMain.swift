import Foundation
#if DEBUG
@testable import KVFile
#endif

/// KVFileFixtures (`swift run KVFileFixtures Fixtures`): writes Fixtures/vN for the current format version N, the
/// golden stores the tests open forever after. Run through scripts/write-fixtures,
/// once, when the format version changes.
@main
enum FixturesMain {
    static func main() {
        #if DEBUG
        let arguments = CommandLine.arguments.dropFirst()
        guard arguments.count == 1, let fixtures = arguments.first else {
            fail("usage: swift run KVFileFixtures FIXTURES-DIR (writes FIXTURES-DIR/v\(RecordFormat.version))", status: 64)
        }
        let root = fixtures + "/v\(RecordFormat.version)"
        do {
            try FixtureWriter.writeAll(into: root)
            print("KVFileFixtures: wrote \(root)")
        } catch {
            fail("KVFileFixtures: \(error)", status: 74)
        }
        #else
        // The writer needs the engine's debug-build hooks (a store abandoned as a crash leaves it).
        fail("KVFileFixtures: build it in debug mode (scripts/write-fixtures does)", status: 69)
        #endif
    }

    static func fail(_ message: String, status: Int32) -> Never {
        FileHandle.standardError.write(Data((message + "\n").utf8))
        exit(status)
    }
}
