import FuzzSupport
import SwiftMoE

/// A bit plan (`moe convert --bit-plan`): loaded, then resolved against a real model's
/// configuration as convert does.
@_cdecl("fuzz_bitplan_main")
public func main(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    Fuzz.main(argc, argv, { data, size in fuzzBitPlan(data, size) })
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzBitPlan(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data else { return 0 }
    let path = Fuzz.write(Fuzz.bytes(data, size), name: "plan.json")
    Fuzz.run {
        let plan = try BitPlan.load(path: path)
        if let source = Fuzz.fixtureModel { _ = try plan.resolve(for: source.configuration, source: path) }
    }
    return 0
}
