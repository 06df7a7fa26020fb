import Foundation
import FuzzSupport
import SwiftMoE

/// A Hugging Face tokenizer: tokenizer.json, then optionally tokenizer_config.json,
/// special_tokens_map.json and added_tokens.json (parts cut at Fuzz.marker); loaded as a
/// model directory's tokenizer is, then a few strings encoded and decoded.
@_cdecl("fuzz_tokenizer_main")
public func main(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    Fuzz.main(argc, argv, { data, size in fuzzTokenizer(data, size) })
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTokenizer(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data else { return 0 }
    let parts = Fuzz.split(Fuzz.bytes(data, size))
    let names = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json"]
    var files: [String: Data] = [:]
    for (name, part) in zip(names, parts) { files[name] = Data(part) }
    Fuzz.run {
        let tokenizer = try Tokenizer(huggingFaceFiles: files, source: "fuzz")
        Fuzz.exercise(tokenizer)
    }
    return 0
}
