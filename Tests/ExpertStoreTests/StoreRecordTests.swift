import Foundation
import SwiftMoE
import TestSupport
import XCTest

/// The writer, the reader, the catalog and the in-memory requantized experts agree on where an
/// expert record's bytes are (``ExpertRecordLayout``), and the committed demo store is what
/// today's writer writes.
final class StoreRecordTests: XCTestCase {
    /// Bytes for a tensor of `type` and `shape`: a counter, so every tensor differs.
    func bytes(_ type: GGMLType, _ shape: [Int], seed: Int) -> [UInt8] {
        let count = type.traits.byteCount(elements: shape.reduce(1, *)) ?? 0
        return (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ seed) }
    }

    /// Experts at mixed types written with StoreWriter read back from where the layout says,
    /// with zeros between tensors and after each record up to the next 4096-byte boundary.
    func testReaderAndWriterAgreeOnRecordBytes() throws {
        let c = try ModelSource(path: Fixtures.path("qwen2moe/model-q8_0.gguf")).configuration
        let dir = TemporaryDirectory()
        let path = dir.path("mixed.moe")
        let writer = try StoreWriter(outputPath: path)
        let types: [GGMLType] = [.q8_0, .f16, .q4_0, .f32, .bf16, .q5_1]
        var written: [ExpertKey: [[UInt8]]] = [:]
        for l in c.moeLayers {
            for e in 0..<c.expertCount {
                let tensors = ExpertTensor.allCases.enumerated().map { i, kind in
                    let type = types[(l + e + i) % types.count], shape = kind.shape(c)
                    return (type: type, shape: shape, bytes: bytes(type, shape, seed: 7 * l + 3 * e + i))
                }
                written[ExpertKey(layer: l, expert: e)] = tensors.map(\.bytes)
                try writer.addExpert(layer: l, expert: e, tensors: tensors, compression: .none)
            }
        }
        try writer.finish(configuration: c, source: "synthetic")

        let store = try MoEStoreFile(path: path)
        try store.file.withBytes { file in
            for record in store.manifest.experts {
                let layout = try XCTUnwrap(ExpertRecordLayout(record: record))
                let expected = try XCTUnwrap(written[ExpertKey(layer: record.layer, expert: record.expert)])
                let decoded = Array(file[record.offset..<(record.offset + record.decodedLength)])
                var rebuilt = [UInt8](repeating: 0, count: layout.decodedLength)
                for (t, tensorBytes) in zip(layout.tensors, expected) {
                    XCTAssertEqual(t.offset % 64, 0)
                    rebuilt.replaceSubrange(t.offset..<(t.offset + t.length), with: tensorBytes)
                }
                XCTAssertEqual(decoded, rebuilt, "expert \(record.expert) of layer \(record.layer): tensors where the layout says, zeros between")
                XCTAssertEqual(record.offset % 4096, 0)
                let padded = try XCTUnwrap(record.paddedLength)
                XCTAssertEqual(padded, layout.paddedLength)
                XCTAssertTrue(file[(record.offset + record.decodedLength)..<(record.offset + padded)].allSatisfy { $0 == 0 })
            }
        }
        // The paged store serves the same bytes.
        let paged = try PagedExpertStore(source: ModelSource(path: path), capacity: 1 << 20)
        try paged.withExpert(layer: 1, expert: 5) { w in
            XCTAssertEqual([Array(w.gate.data), Array(w.up.data), Array(w.down.data)], written[ExpertKey(layer: 1, expert: 5)])
            XCTAssertEqual(w.gate.name, "blk.1.ffn_gate_exps.weight[5]")
        }
        // Tensors that do not match their types are refused, not written.
        XCTAssertThrowsError(try writer.addExpert(layer: 0, expert: 0, tensors: [(.f32, [4], [1, 2, 3])], compression: .none))
    }

    /// A GGUF's catalog lays each expert out as its converted record is laid out, and a
    /// requantized expert is the record's bytes.
    func testCatalogRequantizedExpertAndStoreAgree() throws {
        let input = Fixtures.path("qwen3moe/model-f32.gguf")
        let dir = TemporaryDirectory()
        let out = dir.path("q.moe")
        _ = try Converter.convert(input: input, output: out, options: .init(plan: BitPlan(default: "q4_K"), compression: .none))
        let source = try ModelSource(path: input), store = try MoEStoreFile(path: out)
        let sourceCatalog = try ExpertCatalog(source: source), storeCatalog = try ExpertCatalog(source: ModelSource(path: out))
        let resident = try ResidentExpertStore(source: source)
        for l in source.configuration.moeLayers {
            for e in [0, 5] {
                let key = ExpertKey(layer: l, expert: e)
                let record = try XCTUnwrap(store.record(layer: l, expert: e))
                let requantized = try resident.withExpert(layer: l, expert: e) { try RequantizedExpert($0, to: .q4_K) }
                XCTAssertEqual(storeCatalog.entry(key)?.layout, requantized.layout)
                XCTAssertEqual(requantized.layout.manifestEntries, record.tensors)
                // Hidden 64, expert ffn 32: q4_K needs rows of 256, so every tensor falls back to
                // q4_0, 2048 elements = 64 blocks of 18 bytes each.
                XCTAssertEqual(record.tensors.map(\.type), ["q4_0", "q4_0", "q4_0"])
                XCTAssertEqual(requantized.layout.tensors.map(\.offset), [0, 1152, 2304])
                XCTAssertEqual(requantized.layout.decodedLength, 3456)
                // The f32 source as the catalog lays it out in the pool: 8192 bytes per tensor.
                let kept = try XCTUnwrap(sourceCatalog.entry(key)?.layout)
                XCTAssertEqual(kept.tensors.map(\.offset), [0, 8192, 16384])
                XCTAssertEqual(kept.decodedLength, 24576)
                XCTAssertEqual(kept, try resident.withExpert(layer: l, expert: e) { try RequantizedExpert($0, to: nil) }.layout)
                store.file.withBytes { file in
                    for (t, view) in zip(requantized.layout.tensors, [requantized.weights.gate, requantized.weights.up, requantized.weights.down]) {
                        XCTAssertEqual(Array(file[(record.offset + t.offset)..<(record.offset + t.offset + t.length)]), Array(view.data))
                    }
                }
            }
        }
    }

    /// Rewrites a store's manifest through `edit`, with fresh checksums, so only the edit is wrong.
    func rewritten(_ path: String, to out: String, _ edit: (inout MoEStoreFile.Manifest) -> Void) throws {
        try Fixtures.rewriteStore(path, to: out, edit)
    }

    func testReaderRefusesRecordsTheLayoutDoesNotDescribe() throws {
        let dir = TemporaryDirectory()
        let good = dir.path("good.moe"), bad = dir.path("bad.moe")
        _ = try Converter.convert(input: Fixtures.path("olmoe/model-q8_0.gguf"), output: good, options: .init(compression: .none))
        XCTAssertNoThrow(try rewritten(good, to: bad) { _ in })
        XCTAssertNoThrow(try MoEStoreFile(path: bad), "an unedited rewrite loads")

        let cases: [(String, (inout MoEStoreFile.Manifest) -> Void, String)] = [
            ("tensor moved", { $0.experts[3].tensors[1].offset += 64; $0.experts[3].tensors[2].offset += 64; $0.experts[3].decodedLength += 64; $0.experts[3].storedLength += 64 }, "laid out"),
            ("padding after the last tensor", { $0.experts[3].decodedLength += 64; $0.experts[3].storedLength += 64 }, "laid out"),
            ("tensors swapped", { $0.experts[3].tensors.swapAt(0, 1) }, "laid out"),
            ("absurd stored length", { $0.experts[3].storedLength = Int.max }, "stored length"),
            ("negative stored length", { $0.experts[3].storedLength = -5 }, "stored length"),
            ("record twice", { $0.experts[4] = $0.experts[3] }, "more than one record"),
            ("record unaligned", { $0.experts[3].offset += 64 }, "not aligned"),
        ]
        for (label, edit, message) in cases {
            try rewritten(good, to: bad, edit)
            XCTAssertThrowsError(try ModelSource(path: bad), label) { error in
                XCTAssertTrue(error is ModelFormatError, "\(label): \(error)")
                XCTAssertTrue("\(error)".contains(message), "\(label): \(error)")
            }
        }
    }

    /// A manifest location that would overflow 64-bit arithmetic is an error, not a trap.
    func testHostileManifestLocationIsAnError() throws {
        let dir = TemporaryDirectory()
        let good = dir.path("good.moe"), bad = dir.path("bad.moe")
        _ = try Converter.convert(input: Fixtures.path("olmoe/model-q8_0.gguf"), output: good, options: .init(compression: .none))
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: good)))
        withUnsafeBytes(of: UInt64.max.littleEndian) { bytes.replaceSubrange(16..<24, with: $0) }
        withUnsafeBytes(of: XXH64.hash(Array(bytes[0..<56])).littleEndian) { bytes.replaceSubrange(56..<64, with: $0) }
        try Data(bytes).write(to: URL(fileURLWithPath: bad))
        XCTAssertThrowsError(try MoEStoreFile(path: bad)) { XCTAssertTrue("\($0)".contains("manifest location"), "\($0)") }
    }

    /// The committed demo store loads under the reader's layout checks, and writing its parts
    /// again through StoreWriter reproduces it byte for byte: the writer's layout (and the
    /// padding after the last tensor it never wrote) is the one the demo was made with.
    func testDemoStoreRewritesByteForByte() throws {
        let path = Fixtures.packageRoot.appendingPathComponent("Models/demo/demo.moe").path
        let store = try MoEStoreFile(path: path)
        let dir = TemporaryDirectory()
        let out = dir.path("demo.moe")
        let writer = try StoreWriter(outputPath: out)
        try store.file.withBytes { file in
            func slice(_ offset: Int, _ length: Int) -> UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: file[offset..<(offset + length)]) }
            for t in store.manifest.dense {
                try writer.addDense(name: t.name, type: try XCTUnwrap(GGMLType(name: t.type)), shape: t.shape, bytes: slice(t.offset, t.length))
            }
            let tokenizer = try XCTUnwrap(try store.tokenizerGGUF())
            try writer.setTokenizer(GGUFWriter(copying: tokenizer))
            for r in store.manifest.experts {
                XCTAssertEqual(r.compression, .none, "the demo's Q8_0 experts are stored raw")
                let tensors = try r.tensors.map { t in
                    (type: try XCTUnwrap(GGMLType(name: t.type)), shape: t.shape, bytes: Array(slice(r.offset + t.offset, t.length)))
                }
                try writer.addExpert(layer: r.layer, expert: r.expert, tensors: tensors, compression: .none)
            }
            for (name, blob) in (store.manifest.sections ?? [:]).sorted(by: { $0.value.offset < $1.value.offset }) {
                try writer.addSection(name, bytes: Data(slice(blob.offset, blob.length)))
            }
        }
        try writer.finish(configuration: store.manifest.configuration, source: store.manifest.source)
        let original = try Data(contentsOf: URL(fileURLWithPath: path)), again = try Data(contentsOf: URL(fileURLWithPath: out))
        XCTAssertEqual(again.count, original.count)
        XCTAssertTrue(again == original, "the rewritten demo store differs from the committed one")
    }
}
