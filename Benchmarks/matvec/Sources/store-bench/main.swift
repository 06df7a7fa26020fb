// What paging an expert costs besides the disk: per weight type, how much LZ4 saves (with the
// byte-plane shuffle the store uses for 16/32-bit types) and how fast it decodes, how fast
// XXH64 verifies, and the disk's O_DIRECT read speed — the measurements behind the store's
// compression rule (docs/store-format.md).
//
//     swift run -c release store-bench [MODEL ...]
//
// Synthetic experts are Gaussian weights (std 0.02, like trained MoE experts) quantized to each
// type; with MODEL arguments (.gguf, HF directories or .moe) the real experts of each model are
// measured too.
import Foundation
import SwiftMoE

func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) * 1e-9 }

struct Row {
    var label: String
    var bytes: Int
    var ratio: Double
    var decodeGBs: Double?
    var checksumGBs: Double
}

func measure(_ label: String, type: GGMLType?, bytes: [UInt8]) throws -> Row {
    let width = type == .f16 || type == .bf16 ? 2 : (type == .f32 ? 4 : 1)
    var planes = bytes
    if width > 1 { bytes.withUnsafeBytes { src in planes.withUnsafeMutableBytes { LZ4Codec.shuffle(src, width: width, into: $0) } } }
    let compressed = try planes.withUnsafeBytes { try LZ4Codec.compress($0) }
    var decodeGBs: Double? = nil
    if let compressed {
        var out = [UInt8](repeating: 0, count: bytes.count)
        var scratch = [UInt8](repeating: 0, count: bytes.count)
        let method: MoEStoreFile.Compression = width == 2 ? .lz4Shuffle2 : (width == 4 ? .lz4Shuffle4 : .lz4)
        var reps = 0
        let t0 = now()
        repeat {
            try compressed.withUnsafeBytes { c in
                try out.withUnsafeMutableBytes { o in
                    try scratch.withUnsafeMutableBytes { s in try LZ4Codec.decode(c, compression: method, into: o, scratch: s, what: label) }
                }
            }
            reps += 1
        } while now() - t0 < 0.5
        decodeGBs = Double(reps * bytes.count) / (now() - t0) / 1e9
        precondition(out == bytes, "LZ4 round trip failed for \(label)")
    }
    var reps = 0
    var sink: UInt64 = 0
    let t0 = now()
    repeat {
        sink &+= bytes.withUnsafeBytes { XXH64.hash($0) }
        reps += 1
    } while now() - t0 < 0.3
    let checksum = Double(reps * bytes.count) / (now() - t0) / 1e9
    if sink == 42 { print("") }
    return Row(label: label, bytes: bytes.count, ratio: Double(compressed?.count ?? bytes.count) / Double(bytes.count),
               decodeGBs: decodeGBs, checksumGBs: checksum)
}

var seed: UInt64 = 7
func gaussian() -> Float {
    seed = seed &* 6364136223846793005 &+ 1442695040888963407
    let u1 = Float((seed >> 40) + 1) / Float(1 << 24 + 1)
    seed = seed &* 6364136223846793005 &+ 1442695040888963407
    let u2 = Float(seed >> 40) / Float(1 << 24)
    return (-2 * logf(u1)).squareRoot() * cosf(2 * .pi * u2)
}

let elements = 4 << 20  // one "expert" of 4M weights
let floats = (0..<elements).map { _ in gaussian() * 0.02 }
var rows: [Row] = []
for type in [GGMLType.f32, .f16, .bf16, .q8_0, .q6_K, .q5_K, .q4_K, .q4_0, .q3_K, .q2_K] {
    var bytes = [UInt8](repeating: 0, count: type.traits.byteCount(elements: elements)!)
    try bytes.withUnsafeMutableBytes { try type.quantize(floats, into: $0.baseAddress!, count: elements) }
    rows.append(try measure("synthetic \(type)", type: type, bytes: bytes))
}

for path in CommandLine.arguments.dropFirst() {
    let source = try ModelSource(path: path)
    let catalog = try ExpertCatalog(source: source)
    let c = source.configuration
    var byType: [String: [UInt8]] = [:]
    for l in 0..<c.layerCount where c.layerKinds[l] == .moe {
        for e in 0..<min(c.expertCount, 4) {
            switch source.container {
            case .store:
                let store = try PagedExpertStore(source: source, capacity: catalog.totalBytes + 1 << 20)
                try store.withExpert(layer: l, expert: e) { w in
                    for t in [w.gate, w.up, w.down] { byType["\(t.type)", default: []] += Array(t.data) }
                }
            default:
                for name in [WeightName.expertGate(l, e), .expertUp(l, e), .expertDown(l, e)] {
                    if let t = try source.weight(name) { byType["\(t.type)", default: []] += Array(t.data) }
                }
            }
        }
    }
    for (name, bytes) in byType.sorted(by: { $0.key < $1.key }) {
        rows.append(try measure("\((path as NSString).lastPathComponent) \(name) experts", type: GGMLType(name: name), bytes: bytes))
    }
    // Direct-read speed of this file.
    let reader = try DirectReader(path: path)
    let chunk = 8 << 20
    let buffer = UnsafeMutableRawPointer.allocate(byteCount: chunk, alignment: DirectReader.alignment)
    defer { buffer.deallocate() }
    var size = 0
    if let attributes = try? FileManager.default.attributesOfItem(atPath: path), let n = attributes[.size] as? Int { size = n }
    let limit = min(size / chunk * chunk, 1 << 30)
    if limit > 0 {
        let t0 = now()
        var offset = 0
        while offset < limit {
            try reader.read(offset: offset, length: chunk, into: buffer)
            offset += chunk
        }
        print(String(format: "%@: %@ read %.2f GB/s (%d MB)", path, reader.direct ? "O_DIRECT" : "buffered+fadvise", Double(limit) / (now() - t0) / 1e9, limit >> 20))
    }
}

print("")
print("| weights | bytes | LZ4 stored / raw | LZ4 decode GB/s | XXH64 GB/s |")
print("|---|---|---|---|---|")
for r in rows {
    print("| \(r.label) | \(r.bytes >> 10) KiB | \(String(format: "%.1f%%", 100 * r.ratio)) | \(r.decodeGBs.map { String(format: "%.2f", $0) } ?? "—") | \(String(format: "%.1f", r.checksumGBs)) |")
}
