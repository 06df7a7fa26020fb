// Single-threaded matrix-vector throughput per GGML type, in GB/s of weight bytes, next to the
// machine's memory bandwidth measured in the same run.
//
// Usage (from Benchmarks/matvec):
//
//     swift run -c release matvec-bench [--mb 64] [--columns 4096] [--seconds 1]
//                                       [--types f32,q8_0,...] [--json out.json] [--random-blocks]
//
// GB/s is the median repetition, "best" the fastest; "best/read BW" compares the fastest
// matvec with the fastest read-only pass (on a shared machine the best figures are stable).
// --mb is the size of each weight matrix (16-64 MB; the default 64 is twice this machine's
// L3, so the weights stream from DRAM as in a real decode); --seconds is the minimum time per
// measurement. Types: F32, F16, BF16, Q8_0, Q4_0 and every other type whose
// `GGMLType.traits.dequantize` is non-nil in this build. Weights are random floats quantized
// where a quantizer is at hand, otherwise random blocks with valid scales (--random-blocks
// forces that for every block type, to check that path).

import SwiftMoE

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

// MARK: - The kernel under test

/// Runs one matrix-vector product `y = W x` over all rows. This is the one place to switch
/// the benchmark to a faster entry point when the library gets one.
@inline(never)
/// The kernel under test: the library's fast path (8-bit activations for block-quantized
/// types, quantized once per call as the executor does per layer input), or `--reference`.
func runMatVec(
    _ w: WeightMatrix, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>
) throws {
    let input = activationBatch(width: w.columns)
    if input.values != x {
        input.values.update(from: x, count: w.columns)
        input.invalidate()
    }
    let matrix = try SwiftMoE.WeightMatrix(type: w.type, base: UnsafeRawPointer(w.bytes), rows: w.rows, columns: w.columns)
    if Kernels.needsQuantizedInput(w.type, path: kernelPath) { input.quantize() }
    try Kernels.matmul(matrix, rows: 0..<w.rows, input: input, output: y, ldy: w.rows, path: kernelPath, scratch: scratch)
}

nonisolated(unsafe) var kernelPath: KernelPath = CommandLine.arguments.contains("--reference") ? .reference : .fast
nonisolated(unsafe) var batches: [Int: ActivationBatch] = [:]
func activationBatch(width: Int) -> ActivationBatch {
    if let b = batches[width] { return b }
    let b = ActivationBatch(width: width, capacity: 1)
    b.reset(tokens: 1)
    batches[width] = b
    return b
}

// MARK: - Timing

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

struct Measurement {
    var seconds: [Double] = []
    var best: Double { seconds.min()! }
    var median: Double {
        let s = seconds.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }
}

/// Runs `body` once to warm up, then repeatedly until `minSeconds` have passed and at least
/// `minRuns` runs were timed.
func measure(minSeconds: Double, minRuns: Int = 3, _ body: () throws -> Void) rethrows -> Measurement {
    try body()
    var m = Measurement()
    let start = now()
    while m.seconds.count < minRuns || now() - start < minSeconds {
        let t0 = now()
        try body()
        m.seconds.append(now() - t0)
    }
    return m
}

/// Results fold into this, and it is printed at the end, so the optimizer cannot drop the
/// loops that computed them.
var sink: UInt64 = 0

// MARK: - Options

struct Options {
    var megabytes = 64
    var columns = 4096
    var seconds = 1.0
    var types: [GGMLType]? = nil
    var json: String? = nil
    var randomBlocks = false

    static func parse(_ args: [String]) -> Options {
        var o = Options()
        var i = 0
        func value() -> String {
            i += 1
            guard i < args.count else { fail("missing value after \(args[i - 1])") }
            return args[i]
        }
        while i < args.count {
            switch args[i] {
            case "--mb": o.megabytes = required(Int(value()), "--mb needs an integer")
            case "--columns": o.columns = required(Int(value()), "--columns needs an integer")
            case "--seconds": o.seconds = required(Double(value()), "--seconds needs a number")
            case "--types":
                o.types = value().split(separator: ",").map { required(GGMLType(name: String($0)), "unknown type \($0)") }
            case "--json": o.json = value()
            case "--random-blocks": o.randomBlocks = true
            case "--reference": break  // read by kernelPath
            case "-h", "--help":
                print("usage: matvec-bench [--mb 64] [--columns 4096] [--seconds 1] [--types f32,q8_0,...] [--json FILE] [--random-blocks] [--reference]")
                exit(0)
            default: fail("unknown argument \(args[i])")
            }
            i += 1
        }
        guard o.columns > 0, o.columns % 256 == 0 else { fail("--columns must be a positive multiple of 256") }
        guard (1...4096).contains(o.megabytes) else { fail("--mb must be 1...4096") }
        return o
    }
}

func required<T>(_ value: T?, _ message: String) -> T {
    guard let value else { fail(message) }
    return value
}

func fail(_ message: String) -> Never {
    fputs("matvec-bench: \(message)\n", stderr)
    exit(2)
}

// MARK: - Memory bandwidth

/// Bytes per second (GB/s) of the fastest repetition and of the median one. On a machine
/// shared with other jobs the fastest is the stable figure; the median shows interference.
struct Bandwidth {
    var copyBest: Double, copyMedian: Double  // bytes copied (each read once and written once)
    var readBest: Double, readMedian: Double  // bytes read by a sum loop
}

/// memcpy of a 256 MB buffer, and a read-only sum over it, one thread.
func measureBandwidth(seconds: Double) -> Bandwidth {
    let size = 256 << 20
    let src = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 4096)
    let dst = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 4096)
    defer {
        src.deallocate()
        dst.deallocate()
    }
    memset(src, 1, size)  // fault every page in before timing
    memset(dst, 2, size)

    let copy = measure(minSeconds: seconds) { memcpy(dst, src, size) }

    let read = measure(minSeconds: seconds) {
        // Eight independent 64-bit sums per step, loaded as one vector: no dependency chain
        // limits the loop, and integer adds have no slow path.
        var acc = SIMD8<UInt64>(repeating: 0)
        var offset = 0
        while offset < size {
            acc &+= UnsafeRawPointer(src + offset).load(as: SIMD8<UInt64>.self)
            offset += MemoryLayout<SIMD8<UInt64>>.size
        }
        sink &+= acc.wrappedSum()
    }
    let gb = Double(size) / 1e9
    return Bandwidth(
        copyBest: gb / copy.best, copyMedian: gb / copy.median, readBest: gb / read.best, readMedian: gb / read.median)
}

// MARK: - Formatting (no Foundation)

/// `value` with `decimals` digits after the point.
func fixed(_ value: Double, _ decimals: Int) -> String {
    guard value.isFinite else { return "\(value)" }
    var scale = 1.0
    for _ in 0..<decimals { scale *= 10 }
    let scaled = (abs(value) * scale).rounded()
    let whole = Int(scaled / scale)
    var frac = String(Int(scaled) - whole * Int(scale))
    while frac.count < decimals { frac = "0" + frac }
    return (value < 0 ? "-" : "") + String(whole) + (decimals > 0 ? "." + frac : "")
}

func pad(_ s: String, _ width: Int, right: Bool = false) -> String {
    let fill = String(repeating: " ", count: max(0, width - s.count))
    return right ? fill + s : s + fill
}

// MARK: - Main

struct Row {
    let type: GGMLType
    let bitsPerWeight: Double
    let rows: Int
    let megabytes: Double
    let origin: String
    let gbPerSecond: Double
    let bestGBPerSecond: Double
    let microseconds: Double
}

func cpuModel() -> String {
    guard let f = fopen("/proc/cpuinfo", "r") else { return "unknown" }
    defer { fclose(f) }
    var line = [CChar](repeating: 0, count: 4096)
    while fgets(&line, Int32(line.count), f) != nil {
        let s = String(cString: line)
        if s.hasPrefix("model name"), let colon = s.firstIndex(of: ":") {
            return s[s.index(after: colon)...].trimmingCharacters()
        }
    }
    return "unknown"
}

extension Substring {
    func trimmingCharacters() -> String {
        String(self.drop(while: { $0 == " " || $0 == "\t" }).reversed().drop(while: { $0 == "\n" || $0 == " " }).reversed())
    }
}

let options = Options.parse(Array(CommandLine.arguments.dropFirst()))
let defaultOrder: [GGMLType] = [.f32, .f16, .bf16, .q8_0, .q4_0]
let computable = GGMLType.allCases.filter { $0.traits.dequantize != nil }
let types = options.types ?? (defaultOrder.filter { computable.contains($0) } + computable.filter { !defaultOrder.contains($0) })

print("CPU: \(cpuModel()); one thread; weight matrices of \(options.megabytes) MB, \(options.columns) columns")
let bandwidth = measureBandwidth(seconds: options.seconds)
print("memory, best (median): memcpy 256 MB \(fixed(bandwidth.copyBest, 1)) (\(fixed(bandwidth.copyMedian, 1))) GB/s copied, "
    + "i.e. \(fixed(2 * bandwidth.copyBest, 1)) GB/s read+write; read-only sum \(fixed(bandwidth.readBest, 1)) "
    + "(\(fixed(bandwidth.readMedian, 1))) GB/s")

let x = UnsafeMutablePointer<Float>.allocate(capacity: options.columns)
let scratch = UnsafeMutablePointer<Float>.allocate(capacity: options.columns)
var rng = SplitMix64(seed: 42)
for i in 0..<options.columns { x[i] = rng.nextFloat() }

var results: [Row] = []
var skipped: [(GGMLType, String)] = []
for type in types {
    guard type.traits.dequantize != nil else {
        skipped.append((type, "no dequantizer in this build"))
        continue
    }
    let w = WeightMatrix(
        type: type, columns: options.columns, targetBytes: options.megabytes << 20, seed: 7, randomBlocks: options.randomBlocks)
    let y = UnsafeMutablePointer<Float>.allocate(capacity: w.rows)
    defer { y.deallocate() }
    do {
        try runMatVec(w, x: x, y: y, scratch: scratch)
        if let bad = (0..<w.rows).first(where: { !y[$0].isFinite }) {
            skipped.append((type, "row \(bad) gives a non-finite result (\(w.origin))"))
            continue
        }
        let m = try measure(minSeconds: options.seconds) { try runMatVec(w, x: x, y: y, scratch: scratch) }
        sink &+= UInt64(truncatingIfNeeded: y[w.rows / 2].bitPattern)
        results.append(Row(
            type: type, bitsPerWeight: type.traits.bitsPerWeight, rows: w.rows,
            megabytes: Double(w.byteCount) / Double(1 << 20), origin: w.origin,
            gbPerSecond: Double(w.byteCount) / m.median / 1e9, bestGBPerSecond: Double(w.byteCount) / m.best / 1e9,
            microseconds: m.median * 1e6))
    } catch {
        skipped.append((type, "\(error)"))
    }
}

print("")
print("type      bits/w   matrix              GB/s   best GB/s  best/read BW   ms/matvec  weights")
print("-------   ------   -----------------   ------   ---------   ----------   ---------  -------------")
for r in results {
    let shape = "\(r.rows) x \(options.columns)"
    let cells = [
        pad(r.type.description, 7), pad(fixed(r.bitsPerWeight, 2), 6, right: true), pad(shape, 17),
        pad(fixed(r.gbPerSecond, 2), 6, right: true), pad(fixed(r.bestGBPerSecond, 2), 9, right: true),
        pad(fixed(100 * r.bestGBPerSecond / bandwidth.readBest, 1) + "%", 10, right: true),
        pad(fixed(r.microseconds / 1e3, 2), 9, right: true),
    ]
    print(cells.joined(separator: "   ") + "  " + r.origin)
}
for (type, reason) in skipped { print("\(type): skipped, \(reason)") }
print("(checksum \(sink))")

if let path = options.json {
    var s = "{\n  \"cpu\": \"\(cpuModel())\", \"threads\": 1, \"matrix_megabytes\": \(options.megabytes), \"columns\": \(options.columns),\n"
    s += "  \"memcpy_gb_per_s\": {\"best\": \(bandwidth.copyBest), \"median\": \(bandwidth.copyMedian)}, "
    s += "\"read_gb_per_s\": {\"best\": \(bandwidth.readBest), \"median\": \(bandwidth.readMedian)},\n  \"types\": [\n"
    s += results.map { r in
        "    {\"type\": \"\(r.type)\", \"bits_per_weight\": \(r.bitsPerWeight), \"rows\": \(r.rows), \"gb_per_s\": \(r.gbPerSecond), "
            + "\"best_gb_per_s\": \(r.bestGBPerSecond), \"ms_per_matvec\": \(r.microseconds / 1e3), \"weights\": \"\(r.origin)\"}"
    }.joined(separator: ",\n")
    s += "\n  ]\n}\n"
    guard let f = fopen(path, "w") else { fail("cannot write \(path)") }
    fputs(s, f)
    fclose(f)
    print("wrote \(path)")
}
