import Executor
import ExpertStore
import Foundation
import ModelFormats
import Quality
import Quantization
import Runtime
import TestSupport
import XCTest

/// `moe calibrate --memory B` keeps its peak RSS (VmHWM, as it reports it) under B, with the
/// routing pass, the proxy sensitivities and the periodic saves of the file (issue #21). The
/// model has many small experts (16 MoE layers × 128, 48 MiB of f32 experts), so what the
/// command keeps beside the model — routing statistics (layers × experts² counts), activation
/// statistics, the cache policy's transition counts that the proxy step fills — is large next
/// to the budget: before they were counted, this run (release build) peaked 103 MiB at 80 MiB.
/// Resuming the finished file reads it in pieces (``CalibrationFile/load(path:)``).
final class CalibrationMemoryTests: XCTestCase {
    static let budget = 80 << 20

    /// A random-weight Mixtral-layout GGUF with the SentencePiece test tokenizer; every expert of
    /// a layer shares one random slab (generation stays fast; reads and routing are real).
    /// `extraTokens` pads the vocabulary with tokens the text never produces (a large output layer).
    static func makeModel(at path: String, layers: Int = 16, experts: Int = 128, extraTokens: Int = 0) throws -> Int {
        let hidden = 64, ffn = 32, heads = 4, kvHeads = 2
        let tokenizer = try GGUFFile(path: Fixtures.path("tokenizers/spm/tokenizer.gguf"))
        guard case let .array(_, tokens)? = tokenizer.metadata["tokenizer.ggml.tokens"] else { throw CocoaError(.fileReadCorruptFile) }
        let vocab = tokens.count + extraTokens
        var state: UInt64 = 21
        func random(_ count: Int, scale: Float = 0.05) -> Data {
            var data = Data(capacity: count * 4)
            for _ in 0..<count {
                state = state &* 6364136223846793005 &+ 1442695040888963407
                let v = (Float(state >> 40) / Float(1 << 24) * 2 - 1) * scale
                withUnsafeBytes(of: v.bitPattern.littleEndian) { data.append(contentsOf: $0) }
            }
            return data
        }
        func ones(_ n: Int) -> Data { Data((0..<n).flatMap { _ in withUnsafeBytes(of: Float(1).bitPattern.littleEndian, Array.init) }) }
        var w = GGUFWriter()
        w.set("general.architecture", .string("llama"))
        for (k, v) in [("block_count", layers), ("context_length", 256), ("embedding_length", hidden), ("feed_forward_length", ffn),
                       ("attention.head_count", heads), ("attention.head_count_kv", kvHeads), ("expert_count", experts), ("expert_used_count", 4)] {
            w.set("llama.\(k)", .uint32(UInt32(v)))
        }
        w.set("llama.attention.layer_norm_rms_epsilon", .float32(1e-5))
        for key in tokenizer.metadataKeys where key.hasPrefix("tokenizer.") {
            guard var value = tokenizer.metadata[key] else { continue }
            // The per-token arrays, padded: unused tokens of score 0 and the normal type.
            if extraTokens > 0, case let .array(type, values) = value, values.count == tokens.count {
                switch type {
                case .string: value = .array(type, values + (0..<extraTokens).map { .string("<pad\($0)>") })
                case .float32: value = .array(type, values + Array(repeating: .float32(0), count: extraTokens))
                case .int32: value = .array(type, values + Array(repeating: .int32(1), count: extraTokens))
                default: break
                }
            }
            w.set(key, value)
        }
        func add(_ name: String, _ shape: [Int], _ data: Data) { w.tensors.append(.init(name: name, type: .f32, shape: shape, data: data)) }
        add("token_embd.weight", [hidden, vocab], random(vocab * hidden))
        add("output_norm.weight", [hidden], ones(hidden))
        add("output.weight", [hidden, vocab], random(vocab * hidden))
        let kvDim = kvHeads * hidden / heads
        var expertBytes = 0
        for l in 0..<layers {
            add("blk.\(l).attn_norm.weight", [hidden], ones(hidden))
            add("blk.\(l).ffn_norm.weight", [hidden], ones(hidden))
            add("blk.\(l).attn_q.weight", [hidden, hidden], random(hidden * hidden))
            add("blk.\(l).attn_k.weight", [hidden, kvDim], random(kvDim * hidden))
            add("blk.\(l).attn_v.weight", [hidden, kvDim], random(kvDim * hidden))
            add("blk.\(l).attn_output.weight", [hidden, hidden], random(hidden * hidden))
            add("blk.\(l).ffn_gate_inp.weight", [hidden, experts], random(hidden * experts, scale: 1))
            let gate = Data(repeatElement(random(ffn * hidden), count: experts).joined())
            add("blk.\(l).ffn_gate_exps.weight", [hidden, ffn, experts], gate)
            add("blk.\(l).ffn_up_exps.weight", [hidden, ffn, experts], gate)
            add("blk.\(l).ffn_down_exps.weight", [ffn, hidden, experts], Data(repeatElement(random(hidden * ffn), count: experts).joined()))
            expertBytes += 3 * gate.count
        }
        try w.write(to: path)
        return expertBytes
    }

    /// How far the peak RSS (VmHWM, reset through /proc/self/clear_refs) rises above the RSS
    /// before `body` while it runs; nil where /proc does not allow it.
    static func peakGrowth(_ body: () throws -> Void) throws -> Int? {
        func status(_ key: String) -> Int? {
            guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
                  let line = text.split(separator: "\n").first(where: { $0.hasPrefix(key + ":") }) else { return nil }
            return line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap { Int($0) }.map { $0 * 1024 }
        }
        guard let before = status("VmRSS"), FileManager.default.isWritableFile(atPath: "/proc/self/clear_refs"),
              (try? "5".write(toFile: "/proc/self/clear_refs", atomically: false, encoding: .utf8)) != nil else { return nil }
        try body()
        return status("VmHWM").map { $0 - before }
    }

    static func peakBytes(_ stderr: String) -> Int? {
        guard let range = stderr.range(of: #"peak RSS [^(]*\((\d+) bytes\)"#, options: .regularExpression) else { return nil }
        let match = stderr[range]
        guard let open = match.lastIndex(of: "("), let space = match[open...].firstIndex(of: " ") else { return nil }
        return Int(match[match.index(after: open)..<space])
    }

    /// `--sensitivity measured` plans its probe (``QualityProbe``: the base distributions of every
    /// scored position and a full-logits forward pass of a window) as the command's own memory:
    /// the probe's real peak, measured in-process, stays within ``CalibrationMemory/measuredProbe``.
    /// A vocabulary of 34,000 keeps every position's whole distribution: 8 windows × 63
    /// positions × 34,000 floats, 68 MB, beside an 8.7 MB logits array per pass (twice).
    func testMeasuredProbeStaysWithinItsReservation() throws {
        // The model and the probe are gone when this returns; their heap is given back, for the
        // tests after this one in this process that plan a budget from its resident size.
        defer { Self.releaseFreedHeap() }
        let (growth, bound) = try Self.measureProbe()
        XCTAssertGreaterThan(growth, 0, "nothing measured")
        XCTAssertLessThanOrEqual(growth, bound, "the probe's peak growth \(growth) is over its reservation \(bound)")
        print("measured probe: peak growth \(growth), reserved \(bound)")
    }

    /// The probe's peak growth on a fresh model with a 34,000-token vocabulary, and its reservation.
    /// (With a warm heap the growth is smaller: freed memory is reused before the peak rises.)
    static func measureProbe() throws -> (growth: Int, bound: Int) {
        let dir = TemporaryDirectory()
        let path = dir.path("vocab.gguf")
        _ = try makeModel(at: path, layers: 2, experts: 8, extraTokens: 32_000)
        let model = try Model(path: path, options: ExecutorOptions(threads: 2))
        let c = model.configuration
        XCTAssertEqual(c.vocabSize, 34_000)
        let context = 64, count = 8
        var state: UInt64 = 5
        let tokens = (0..<(context * count)).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Int(state >> 33) % 2000
        }
        let windows = QualityProbe.windows(of: tokens, context: context, count: count, bos: nil)
        let bound = CalibrationMemory.measuredProbe(c, options: model.transformer.options, context: context, windows: windows.count,
                                                    moeLayers: c.moeLayers.count)
        var kept = 0
        let growth = try XCTUnwrap(try peakGrowth {
            let probe = try QualityProbe(model: model, windows: windows)
            let key = ExpertKey(layer: c.moeLayers[0], expert: 0)
            let replacement = try model.transformer.experts.withExpert(layer: key.layer, expert: key.expert) { try RequantizedExpert($0, to: .q8_0) }
            _ = try probe.drift([key: replacement])
            kept = probe.keptTokens
        }, "no /proc/self/clear_refs")
        XCTAssertEqual(kept, 34_000, "every position's whole distribution is kept")
        return (growth, bound)
    }

    /// glibc's `malloc_trim(0)`, looked up at run time.
    static func releaseFreedHeap() {
        if let trim = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "malloc_trim") {
            _ = unsafeBitCast(trim, to: (@convention(c) (Int) -> Int32).self)(0)
        }
    }

    func testCalibrateWithProxySensitivitiesStaysUnderBudget() throws {
        defer { Self.releaseFreedHeap() }
        let dir = TemporaryDirectory()
        let model = dir.path("many.gguf")
        let expertBytes = try Self.makeModel(at: model)
        XCTAssertGreaterThan(expertBytes, Self.budget / 2)
        // The generator's buffers are freed: give the heap back, for the tests after this one in
        // this process that plan a budget from its resident size.
        Self.releaseFreedHeap()
        // As a model read from disk: the file just written sits in the page cache in large
        // folios, which a mapping's first touches would map (and count) whole.
        let fd = open(model, O_RDONLY)
        fsync(fd)
        posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_DONTNEED))
        close(fd)
        let reference = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: Fixtures.path("perplexity/reference.json")))) as? [String: Any]
        let text = dir.path("text.txt")
        try String(repeating: try XCTUnwrap(reference?["text"] as? String), count: 3).write(toFile: text, atomically: true, encoding: .utf8)
        let out = dir.path("cal.json")
        let r = try Fixtures.runMoe(["calibrate", model, "--text", text, "--ctx-size", "64", "--max-tokens", "64", "--types", "q8_0",
                                     "--memory", "\(Self.budget)", "--threads", "2", "-o", out])
        XCTAssertEqual(r.status, 0, r.stderr)
        let peak = try XCTUnwrap(Self.peakBytes(r.stderr), "no peak RSS in: \(r.stderr)")
        XCTAssertLessThanOrEqual(peak, Self.budget, "peak RSS \(peak) over the budget \(Self.budget)")
        XCTAssertTrue(FileManager.default.fileExists(atPath: out))
        print("calibrate: peak RSS \(peak) of budget \(Self.budget)")
        // Reading the file back: its peak is about what the tables hold, not an object graph of
        // the file (JSONDecoder's reading of this 3 MB file peaked 43 MB above the start).
        let fileSize = try XCTUnwrap(try FileManager.default.attributesOfItem(atPath: out)[.size] as? Int)
        let growth = try XCTUnwrap(try Self.peakGrowth { _ = try CalibrationFile.load(path: out) }, "no /proc/self/clear_refs")
        XCTAssertLessThanOrEqual(growth, 5 * fileSize, "loading a \(fileSize)-byte calibration file raised the peak RSS by \(growth)")
        print("calibration file \(fileSize) bytes: loading it raised the peak RSS by \(growth)")
        // The same command again resumes the complete file, under a budget: the loaded
        // statistics are then part of the plan's baseline rather than reserved, and the
        // allocator keeps a little more, so the resumed run plans with a few MiB more.
        let resumeBudget = Self.budget + (8 << 20)
        let again = try Fixtures.runMoe(["calibrate", model, "--text", text, "--ctx-size", "64", "--max-tokens", "64", "--types", "q8_0",
                                         "--memory", "\(resumeBudget)", "--threads", "2", "-o", out])
        XCTAssertEqual(again.status, 0, again.stderr)
        let resumedPeak = try XCTUnwrap(Self.peakBytes(again.stderr), "no peak RSS in: \(again.stderr)")
        XCTAssertLessThanOrEqual(resumedPeak, resumeBudget, "resuming: peak RSS \(resumedPeak) over the budget \(resumeBudget)")
        print("calibrate, resumed: peak RSS \(resumedPeak) of budget \(resumeBudget)")
        // A budget below what the run needs is refused at start-up, naming the minimum.
        let small = try Fixtures.runMoe(["calibrate", model, "--text", text, "--max-tokens", "64", "--types", "q8_0",
                                         "--memory", "\(40 << 20)", "-o", dir.path("small.json")])
        XCTAssertEqual(small.status, 1, small.stderr)
        XCTAssertTrue(small.stderr.contains("needs at least") && small.stderr.contains("the command's own"), small.stderr)
    }
}
