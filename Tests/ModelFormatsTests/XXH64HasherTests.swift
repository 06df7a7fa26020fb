import ModelFormats
import XCTest

/// ``XXH64/Hasher``: the hash of bytes given in pieces equals the one-shot hash of their concatenation.
final class XXH64HasherTests: XCTestCase {
    func testPiecesHashLikeTheWhole() {
        var state: UInt64 = 7
        func next() -> UInt64 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return state >> 33
        }
        for length in Array(0...70) + [127, 128, 129, 1000, 4099] {
            let bytes = (0..<length).map { _ in UInt8(truncatingIfNeeded: next()) }
            for seed: UInt64 in [0, 12345] {
                let whole = XXH64.hash(bytes, seed: seed)
                for _ in 0..<4 {
                    var hasher = XXH64.Hasher(seed: seed)
                    var start = 0
                    while start < length {
                        let end = min(length, start + Int(next() % 40))
                        bytes[start..<end].withUnsafeBytes { hasher.update($0) }
                        start = end
                    }
                    XCTAssertEqual(hasher.finalize(), whole, "length \(length), seed \(seed)")
                }
            }
        }
        // The published value of the empty input.
        XCTAssertEqual(XXH64.Hasher().finalize(), 0xEF46_DB37_51D8_E999)
    }
}
