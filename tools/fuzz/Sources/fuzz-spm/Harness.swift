import Foundation
import FuzzSupport
import SwiftMoE

/// A SentencePiece tokenizer.model (protobuf), optionally followed by tokenizer_config.json
/// (cut at Fuzz.marker): a directory without tokenizer.json, converted as transformers does;
/// then a few strings encoded and decoded.
@_cdecl("fuzz_spm_main")
public func main(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    Fuzz.main(argc, argv, { data, size in fuzzSPM(data, size) })
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSPM(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data else { return 0 }
    let bytes = Fuzz.bytes(data, size)
    // The model is binary and may contain the marker by chance: cut only at the last one.
    var files: [String: Data] = ["tokenizer.model": Data(bytes)]
    let parts = Fuzz.split(bytes)
    if parts.count > 1, let last = parts.last {
        files["tokenizer.model"] = Data(bytes[0..<(bytes.count - last.count - Fuzz.marker.count)])
        files["tokenizer_config.json"] = Data(last)
    }
    Fuzz.run {
        let tokenizer = try Tokenizer(huggingFaceFiles: files, source: "fuzz")
        Fuzz.exercise(tokenizer)
    }
    return 0
}
