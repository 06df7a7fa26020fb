import Foundation
import FuzzSupport
import SwiftMoE

/// An expert trace, binary (its XXH64 recomputed after mutation, so the body parser is
/// reached) or JSONL; then what `moe trace report` and the analysis compute from it.
@_cdecl("fuzz_trace_main")
public func main(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    Fuzz.main(argc, argv, { data, size in fuzzTrace(data, size) })
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTrace(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data else { return 0 }
    var bytes = Fuzz.bytes(data, size)
    // Binary layout: magic(8) version(4) headerLength(4) header bodyLength(8) body checksum(8).
    if TraceCodec.isBinary(bytes), bytes.count >= 16 {
        let headerLength = Int(bytes[12]) | Int(bytes[13]) << 8 | Int(bytes[14]) << 16 | Int(bytes[15]) << 24
        let bodyAt = 16 + headerLength
        if bodyAt + 8 <= bytes.count {
            let bodyLength = (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[bodyAt + $1]) << (8 * $1) }
            let bodyStart = bodyAt + 8
            if bodyLength <= UInt64(bytes.count - bodyStart), bytes.count - bodyStart - Int(bodyLength) >= 8 {
                let end = bodyStart + Int(bodyLength)
                let sum = XXH64.hash(Array(bytes[16..<bodyAt]) + Array(bytes[bodyStart..<end]))
                for i in 0..<8 { bytes[end + i] = UInt8(truncatingIfNeeded: sum >> (8 * i)) }
            }
        }
    }
    let path = Fuzz.write(bytes, name: bytes.first == UInt8(ascii: "{") ? "trace.jsonl" : "trace.moetrace")
    Fuzz.run {
        let trace = try TraceCodec.read(path: path)
        _ = trace.requests
        let report = try TraceReport(trace: trace)
        _ = report.html.count
        let analysis = TraceAnalysis(trace)
        _ = analysis.reuseHistogram
        _ = analysis.hitRateOverTokens()
        _ = try TraceJSONL.encode(trace)
    }
    return 0
}
