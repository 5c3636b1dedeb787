import Testing
import KVFile

/// How messages name keys (engine, tool and server share ``KeyText``).
@Suite struct KeyTextTests {
    @Test func printableKeysAreQuotedAndOthersAreHex() {
        #expect(KeyText.describe(Array("user:42".utf8)) == #""user:42""#)
        #expect(KeyText.describe([0, 255]) == "0x00ff")
        #expect(KeyText.describe(Array("tab\there".utf8)).hasPrefix("0x"))
    }

    /// Defect (review): quotes and backslashes were not escaped, so a key `a"b` read as `"a"b"`.
    @Test func quotesAndBackslashesInAKeyAreEscaped() {
        #expect(KeyText.describe(Array(#"a"b\c"#.utf8)) == #""a\"b\\c""#)
    }

    /// Defect (review): the 64-byte cut could split a character, and the key then showed as hex.
    @Test func aLongKeyIsCutAtACharacterNotInsideOne() {
        let key = String(repeating: "日", count: 70)
        #expect(KeyText.describe(Array(key.utf8)) == "\"" + String(repeating: "日", count: 64) + "…\"")
        #expect(KeyText.describe(Array(String(repeating: "k", count: 65).utf8)) == "\"" + String(repeating: "k", count: 64) + "…\"")
        #expect(KeyText.describe([UInt8](repeating: 0, count: 65)) == "0x" + String(repeating: "00", count: 64) + "…")
    }
}
