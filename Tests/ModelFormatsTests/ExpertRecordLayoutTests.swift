import Foundation
import ModelFormats
import Quantization
import TestSupport
import XCTest

/// The `.moe` expert record layout, `alignUp` and "the tensors of expert e in layer l",
/// against offsets worked out by hand from docs/store-format.md.
final class ExpertRecordLayoutTests: XCTestCase {
    func testAlignUp() {
        XCTAssertEqual(alignUp(0, to: 64), 0)
        XCTAssertEqual(alignUp(1, to: 64), 64)
        XCTAssertEqual(alignUp(64, to: 64), 64)
        XCTAssertEqual(alignUp(65, to: 64), 128)
        XCTAssertEqual(alignUp(4097, to: 4096), 8192)
        XCTAssertEqual(alignUp(10, to: 3), 12)
        // The largest multiple of 64 is Int.max - 63; one more cannot be rounded up.
        XCTAssertEqual(alignUp(Int.max - 63, to: 64), Int.max - 63)
        XCTAssertNil(alignUp(Int.max - 62, to: 64))
        XCTAssertNil(alignUp(Int.max, to: 4096))
        XCTAssertNil(alignUp(-1, to: 64))
    }

    /// Three small tensors: each starts at the next multiple of 64, nothing follows the last,
    /// and the record pads to 4096 in the file.
    func testSmallRecordByHand() throws {
        let layout = try XCTUnwrap(ExpertRecordLayout([
            (.q4_0, [32, 3]),  // 3 blocks × 18 bytes = 54 bytes at 0
            (.f32, [5, 1]),    // 20 bytes at 64 (54 rounded up)
            (.q8_0, [32, 2]),  // 2 blocks × 34 bytes = 68 bytes at 128 (84 rounded up)
        ]))
        XCTAssertEqual(layout.tensors.map(\.offset), [0, 64, 128])
        XCTAssertEqual(layout.tensors.map(\.length), [54, 20, 68])
        XCTAssertEqual(layout.decodedLength, 196, "no padding after the last tensor")
        XCTAssertEqual(layout.paddedLength, 4096)
        XCTAssertEqual(layout.tensors.map(\.type), [.q4_0, .f32, .q8_0])
        XCTAssertEqual(layout.tensors.map(\.shape), [[32, 3], [5, 1], [32, 2]])
    }

    func testKQuantRecordCrossingOnePage() throws {
        let layout = try XCTUnwrap(ExpertRecordLayout([
            (.q6_K, [256, 3]),   // 3 × 210 = 630 bytes at 0
            (.q4_K, [256, 3]),   // 3 × 144 = 432 bytes at 640
            (.f32, [1024, 1]),   // 4096 bytes at 1088 (1072 rounded up), ends at 5184
        ]))
        XCTAssertEqual(layout.tensors.map(\.offset), [0, 640, 1088])
        XCTAssertEqual(layout.tensors.map(\.length), [630, 432, 4096])
        XCTAssertEqual(layout.decodedLength, 5184)
        XCTAssertEqual(layout.paddedLength, 8192)
    }

    func testTensorsThatCannotFormARecord() {
        XCTAssertNil(ExpertRecordLayout([(.f32, [4]), (.f32, [4])]), "a record holds gate, up and down")
        XCTAssertNil(ExpertRecordLayout([(.q4_0, [33]), (.f32, [4]), (.f32, [4])]), "33 elements are not whole q4_0 blocks")
        XCTAssertNil(ExpertRecordLayout([(.f32, []), (.f32, [4]), (.f32, [4])]), "no shape")
        XCTAssertNil(ExpertRecordLayout([(.f32, [-4]), (.f32, [4]), (.f32, [4])]), "negative dimension")
        let huge = [Int(Int32.max), Int(Int32.max), Int(Int32.max)]
        XCTAssertNil(ExpertRecordLayout([(.f32, huge), (.f32, [4]), (.f32, [4])]), "element count overflows")
        let large = [1 << 30, 1 << 30]  // 2^60 f32 = 2^62 bytes each: the second ends past Int.max
        XCTAssertNil(ExpertRecordLayout([(.f32, large), (.f32, large), (.f32, large)]), "record length overflows")
    }

    func testPaddedLengthOfStoredBytes() {
        XCTAssertEqual(ExpertRecordLayout.paddedLength(storedLength: 0), 0)
        XCTAssertEqual(ExpertRecordLayout.paddedLength(storedLength: 1), 4096)
        XCTAssertEqual(ExpertRecordLayout.paddedLength(storedLength: 4096), 4096)
        XCTAssertEqual(ExpertRecordLayout.paddedLength(storedLength: 12289), 16384)
        XCTAssertNil(ExpertRecordLayout.paddedLength(storedLength: Int.max))
        XCTAssertNil(ExpertRecordLayout.paddedLength(storedLength: -1))
    }

    func record(_ tensors: [MoEStoreFile.TensorEntry], decodedLength: Int) -> MoEStoreFile.ExpertRecord {
        MoEStoreFile.ExpertRecord(layer: 0, expert: 0, offset: 4096, storedLength: decodedLength, decodedLength: decodedLength,
                                  compression: .none, checksum: 0, tensors: tensors)
    }

    /// What the writer puts in a manifest is what the reader accepts, and nothing else is.
    func testManifestEntriesAndWhatTheReaderAccepts() throws {
        let layout = try XCTUnwrap(ExpertRecordLayout([(.q4_0, [32, 3]), (.f32, [5, 1]), (.q8_0, [32, 2])]))
        let entries = layout.manifestEntries
        XCTAssertEqual(entries.map(\.name), ["gate", "up", "down"])
        XCTAssertEqual(entries.map(\.type), ["q4_0", "f32", "q8_0"])
        XCTAssertEqual(entries.map(\.offset), [0, 64, 128])
        XCTAssertEqual(entries.map(\.length), [54, 20, 68])
        XCTAssertTrue(entries.allSatisfy { $0.checksum == nil })
        XCTAssertEqual(ExpertRecordLayout(record: record(entries, decodedLength: 196)), layout)

        XCTAssertNil(ExpertRecordLayout(record: record(entries, decodedLength: 256)), "padding after the last tensor")
        var shifted = entries
        shifted[1].offset = 60
        XCTAssertNil(ExpertRecordLayout(record: record(shifted, decodedLength: 196)), "up not at a multiple of 64")
        shifted[1].offset = 128
        shifted[2].offset = 192
        XCTAssertNil(ExpertRecordLayout(record: record(shifted, decodedLength: 260)), "a gap the layout does not have")
        var renamed = entries
        renamed.swapAt(0, 1)
        XCTAssertNil(ExpertRecordLayout(record: record(renamed, decodedLength: 196)), "tensors out of order")
        var unknown = entries
        unknown[2].type = "q9_9"
        XCTAssertNil(ExpertRecordLayout(record: record(unknown, decodedLength: 196)))
        var lying = entries
        lying[0].length = 60
        XCTAssertNil(ExpertRecordLayout(record: record(lying, decodedLength: 196)), "length disagrees with type and shape")
    }

    /// Gate and up are [hidden, ffn], down [ffn, hidden]; GGUF serves expert e as slab e of the
    /// stacked tensor, Hugging Face its own tensors; both the same bytes for the same model.
    func testExpertTensorsOfGGUFAndHuggingFaceSources() throws {
        let gguf = try ModelSource(path: Fixtures.path("mixtral/model-f32.gguf"))
        let hf = try ModelSource(path: Fixtures.path("mixtral/hf"))
        let c = gguf.configuration
        XCTAssertEqual(ExpertTensor.allCases.map { $0.shape(c) }, [[c.hiddenSize, c.expertFFNSize], [c.hiddenSize, c.expertFFNSize], [c.expertFFNSize, c.hiddenSize]])
        XCTAssertEqual(ExpertTensor.weightNames(layer: 1, expert: 3), [.expertGate(1, 3), .expertUp(1, 3), .expertDown(1, 3)])
        XCTAssertEqual(ExpertTensor.allCases.map(\.recordName), ["gate", "up", "down"])

        guard case let .gguf(file) = gguf.container else { return XCTFail("not a GGUF source") }
        let views = try gguf.expertTensors(layer: 1, expert: 3)
        for (view, name) in zip(views, ["ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"]) {
            let stacked = try XCTUnwrap(file.tensor("blk.1.\(name).weight"))
            let slab = stacked.data.count / 4
            XCTAssertEqual(Array(view.data), Array(stacked.data[(3 * slab)..<(4 * slab)]), name)
            XCTAssertEqual(view.shape, Array(stacked.shape.dropLast()))
        }
        let hfViews = try hf.expertTensors(layer: 1, expert: 3)
        XCTAssertEqual(hfViews.map(\.shape), views.map(\.shape))
        for (a, b) in zip(hfViews, views) { XCTAssertEqual(try a.toFloats(), try b.toFloats()) }
        XCTAssertThrowsError(try gguf.expertTensors(layer: 1, expert: 4)) { XCTAssertTrue($0 is ModelFormatError, "\($0)") }
    }
}
