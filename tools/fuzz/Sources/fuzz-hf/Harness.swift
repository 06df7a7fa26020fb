import FuzzSupport
import SwiftMoE

/// A Hugging Face directory: the input is config.json, then model.safetensors, then
/// optionally a second shard and its index (parts cut at Fuzz.marker). Read as `moe inspect`
/// and loading do.
@_cdecl("fuzz_hf_main")
public func main(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    Fuzz.main(argc, argv, { data, size in fuzzHF(data, size) })
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHF(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data else { return 0 }
    let parts = Fuzz.split(Fuzz.bytes(data, size))
    var files = [("config.json", parts[0])]
    if parts.count == 2 {
        files.append(("model.safetensors", parts[1]))
    } else if parts.count > 2 {
        files.append(("model-00001-of-00002.safetensors", parts[1]))
        files.append(("model-00002-of-00002.safetensors", parts[2]))
        if parts.count > 3 { files.append(("model.safetensors.index.json", parts[3])) }
    }
    let dir = Fuzz.directory(files)
    Fuzz.run {
        let file = try SafetensorsFile(file: MappedFile(path: dir + "/" + files[min(1, files.count - 1)].0))
        for name in file.entries.keys { _ = try file.tensor(name) }
    }
    Fuzz.exercise(dir)
    return 0
}
