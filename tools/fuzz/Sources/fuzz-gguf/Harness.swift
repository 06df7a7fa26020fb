import FuzzSupport
import SwiftMoE

/// A GGUF file: the reader (header, metadata, tensor table), then what `moe inspect` and
/// loading do with it (family, configuration, every tensor's shape and type, tokenizer).
@_cdecl("fuzz_gguf_main")
public func main(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    Fuzz.main(argc, argv, { data, size in fuzzGGUF(data, size) })
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzGGUF(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data else { return 0 }
    let path = Fuzz.write(Fuzz.bytes(data, size), name: "model.gguf")
    Fuzz.run {
        let file = try GGUFFile(file: MappedFile(path: path))
        for t in file.tensors { _ = file.tensor(t.name) }
        _ = file.architecture
    }
    Fuzz.exercise(path)
    return 0
}
