import FuzzSupport
import SwiftMoE

/// A GGUF file's tokenizer metadata (tokenizer.ggml.*): loaded as `moe tokenize` loads a
/// GGUF's tokenizer, then a few strings encoded and decoded.
@_cdecl("fuzz_vocab_main")
public func main(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    Fuzz.main(argc, argv, { data, size in fuzzVocab(data, size) })
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzVocab(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data else { return 0 }
    let path = Fuzz.write(Fuzz.bytes(data, size), name: "tokenizer.gguf")
    Fuzz.run {
        let tokenizer = try Tokenizer(gguf: GGUFFile(file: MappedFile(path: path)))
        Fuzz.exercise(tokenizer)
    }
    return 0
}
