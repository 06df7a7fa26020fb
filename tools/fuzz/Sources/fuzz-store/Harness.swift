import FuzzSupport
import SwiftMoE

/// A `.moe` store: header, manifest, dense tensors, expert records (their checksums
/// recomputed after mutation by StoreFixup, so the parser behind them is reached), the
/// embedded tokenizer; read as `moe inspect`, loading and paged loading do, every expert
/// acquired through the paged store (which verifies and decodes each record).
@_cdecl("fuzz_store_main")
public func main(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    Fuzz.main(argc, argv, { data, size in fuzzStore(data, size) })
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzStore(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data else { return 0 }
    let raw = Fuzz.bytes(data, size)
    let fixed = StoreFixup.fix(raw)
    // Now and then the bytes as they are, so the checksum checks themselves are fuzzed too.
    for input in fixed == raw || size % 8 != 0 ? [fixed] : [raw, fixed] {
        let path = Fuzz.write(input, name: "model.moe")
        Fuzz.exercise(path)
        Fuzz.run {
            let source = try ModelSource(path: path)
            let store = try MoEStoreFile(path: path)
            try store.verifyDense()
            for name in store.manifest.sections?.keys.sorted() ?? [] { _ = try store.section(name) }
            let catalog = try ExpertCatalog(source: source)
            let paged = try PagedExpertStore(catalog: catalog, capacity: catalog.minimumPool(k: source.configuration.expertsPerToken), policy: .lru)
            let c = source.configuration
            for l in 0..<c.layerCount where c.layerKinds[l] == .moe {
                for e in 0..<c.expertCount {
                    let key = ExpertKey(layer: l, expert: e)
                    _ = try paged.acquire(key)
                    paged.release(key)
                }
            }
        }
    }
    return 0
}
