import Foundation
import Conversion
import Executor
import ModelFormats
import Quantization
import Runtime
import TestSupport
import XCTest

/// A real `moe generate --memory B` process on a model whose experts are several times B:
/// its own peak RSS (VmHWM) stays under B, and the model file does not end up in the page
/// cache beyond its dense weights (direct I/O or fadvise).
final class MemoryBudgetTests: XCTestCase {
    static let budget = 80 << 20

    /// A random-weight Mixtral-layout GGUF with Q8_0 weights: 8 layers × 32 experts of
    /// 3 × 256 × 1536 weights (≈1.25 MiB each), ≈260 MiB of experts.
    static func makeModel(at path: String) throws -> (expertBytes: Int, denseBytes: Int) {
        let hidden = 256, ffn = 1536, layers = 8, experts = 26, vocab = 512, heads = 4, kvHeads = 2
        var state: UInt64 = 42
        func randomQ8(_ rows: Int, _ columns: Int) -> Data {
            let blocks = rows * columns / 32
            var bytes = [UInt8](repeating: 0, count: blocks * 34)
            for b in 0..<blocks {
                bytes[b * 34] = 0x00
                bytes[b * 34 + 1] = 0x18  // scale 2^-9
                for i in 0..<32 {
                    state = state &* 6364136223846793005 &+ 1442695040888963407
                    bytes[b * 34 + 2 + i] = UInt8(truncatingIfNeeded: state >> 56)
                }
            }
            return Data(bytes)
        }
        func ones(_ n: Int) -> Data { Data((0..<n).flatMap { _ in withUnsafeBytes(of: Float(1).bitPattern.littleEndian, Array.init) }) }
        var w = GGUFWriter()
        w.set("general.architecture", .string("llama"))
        for (k, v) in [("block_count", layers), ("context_length", 256), ("embedding_length", hidden), ("feed_forward_length", ffn),
                       ("attention.head_count", heads), ("attention.head_count_kv", kvHeads), ("expert_count", experts), ("expert_used_count", 2)] {
            w.set("llama.\(k)", .uint32(UInt32(v)))
        }
        w.set("llama.attention.layer_norm_rms_epsilon", .float32(1e-5))
        var dense = 0
        func add(_ name: String, _ type: GGMLType, _ shape: [Int], _ data: Data, isDense: Bool = true) {
            w.tensors.append(.init(name: name, type: type, shape: shape, data: data))
            if isDense { dense += data.count }
        }
        add("token_embd.weight", .q8_0, [hidden, vocab], randomQ8(vocab, hidden))
        add("output_norm.weight", .f32, [hidden], ones(hidden))
        add("output.weight", .q8_0, [hidden, vocab], randomQ8(vocab, hidden))
        // One expert slab reused for every expert keeps generation fast; the reads are real.
        let gate = randomQ8(ffn, hidden), down = randomQ8(hidden, ffn)
        var expertBytes = 0
        for l in 0..<layers {
            let hd = hidden / heads
            add("blk.\(l).attn_norm.weight", .f32, [hidden], ones(hidden))
            add("blk.\(l).ffn_norm.weight", .f32, [hidden], ones(hidden))
            add("blk.\(l).attn_q.weight", .q8_0, [hidden, hidden], randomQ8(hidden, hidden))
            add("blk.\(l).attn_k.weight", .q8_0, [hidden, kvHeads * hd], randomQ8(kvHeads * hd, hidden))
            add("blk.\(l).attn_v.weight", .q8_0, [hidden, kvHeads * hd], randomQ8(kvHeads * hd, hidden))
            add("blk.\(l).attn_output.weight", .q8_0, [hidden, hidden], randomQ8(hidden, hidden))
            add("blk.\(l).ffn_gate_inp.weight", .f32, [hidden, experts], Data(count: hidden * experts * 4))
            let stackedGate = Data((0..<experts).map { _ in gate }.joined())
            add("blk.\(l).ffn_gate_exps.weight", .q8_0, [hidden, ffn, experts], stackedGate, isDense: false)
            add("blk.\(l).ffn_up_exps.weight", .q8_0, [hidden, ffn, experts], stackedGate, isDense: false)
            add("blk.\(l).ffn_down_exps.weight", .q8_0, [ffn, hidden, experts], Data((0..<experts).map { _ in down }.joined()), isDense: false)
            expertBytes += 2 * stackedGate.count + experts * down.count
        }
        try w.write(to: path)
        return (expertBytes, dense)
    }

    /// Bytes of `path` resident in the page cache (mincore over a fresh mapping).
    static func cachedBytes(_ path: String) -> Int {
        let fd = open(path, O_RDONLY)
        defer { close(fd) }
        var info = stat()
        fstat(fd, &info)
        let size = Int(info.st_size)
        guard let map = mmap(nil, size, PROT_READ, MAP_SHARED, fd, 0), map != MAP_FAILED else { return -1 }
        defer { munmap(map, size) }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        var vector = [UInt8](repeating: 0, count: (size + page - 1) / page)
        mincore(map, size, &vector)
        return vector.filter { $0 & 1 != 0 }.count * page
    }

    static func dropFromPageCache(_ path: String) {
        let fd = open(path, O_RDONLY)
        fsync(fd)
        posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_DONTNEED))
        close(fd)
    }

    func runMoe(_ arguments: [String]) throws -> MoeRun { try Fixtures.runMoe(arguments) }

    func testGenerateStaysUnderBudgetWithExpertsThreeTimesLarger() throws {
        let dir = TemporaryDirectory()
        let path = dir.path("big.gguf")
        let (expertBytes, denseBytes) = try Self.makeModel(at: path)
        XCTAssertGreaterThanOrEqual(expertBytes, 3 * Self.budget, "the model must not fit")

        for (label, model) in [("gguf", path), ("moe", try convertedStore(path, dir))] {
            Self.dropFromPageCache(model)
            let r = try runMoe(["generate", model, "--tokens", "1,2,3,4", "--max-new", "12", "--memory", "\(Self.budget)", "--context", "64", "--threads", "2"])
            XCTAssertEqual(r.status, 0, "\(label): \(r.stderr)")
            let peak = try XCTUnwrap(Self.peakBytes(r.stderr), "\(label): no peak RSS in: \(r.stderr)")
            XCTAssertLessThanOrEqual(peak, Self.budget, "\(label): peak RSS \(peak) over the budget \(Self.budget)")
            XCTAssertTrue(r.stderr.contains("misses"), r.stderr)
            let cached = Self.cachedBytes(model)
            XCTAssertLessThanOrEqual(cached, denseBytes + (2 << 20), "\(label): \(cached) bytes of the model are in the page cache (dense weights are \(denseBytes))")
            print("\(label): peak RSS \(peak) of budget \(Self.budget), experts \(expertBytes), page cache \(cached)")
        }
    }

    func convertedStore(_ gguf: String, _ dir: TemporaryDirectory) throws -> String {
        let out = dir.path("big.moe")
        _ = try Converter.convert(input: gguf, output: out, options: .init(compression: .none))
        return out
    }

    static func peakBytes(_ stderr: String) -> Int? {
        guard let range = stderr.range(of: #"peak RSS [^(]*\((\d+) bytes\)"#, options: .regularExpression) else { return nil }
        let match = stderr[range]
        guard let open = match.lastIndex(of: "("), let space = match[open...].firstIndex(of: " ") else { return nil }
        return Int(match[match.index(after: open)..<space])
    }
}
