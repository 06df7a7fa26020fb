// Encode throughput of the Tokenizer on ~1 MB of text, per fixture tokenizer.
//
//   swift build -c release --product tokenizer-bench
//   .build/release/tokenizer-bench [TEXT_FILE ...]
//
// Without arguments the text is the first 1 MiB of this machine's Python stdlib sources
// (/usr/lib/python3*/ *.py), i.e. English prose in comments plus indented code.
import Foundation
import ModelFormats
import Tokenizer

let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("Tests/Fixtures/tokenizers").path

func corpus() -> String {
    var paths = Array(CommandLine.arguments.dropFirst())
    if paths.isEmpty {
        let fm = FileManager.default
        let lib = (try? fm.contentsOfDirectory(atPath: "/usr/lib")).flatMap { $0.filter { $0.hasPrefix("python3") }.sorted().last }
        if let lib {
            let dir = "/usr/lib/" + lib
            paths = ((try? fm.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasSuffix(".py") }.sorted().map { dir + "/" + $0 }
        }
    }
    var text = ""
    for p in paths {
        guard text.utf8.count < 1 << 20, let s = try? String(contentsOfFile: p, encoding: .utf8) else { continue }
        text += s
    }
    return text
}

let text = corpus()
let mb = Double(text.utf8.count) / 1e6
print(String(format: "text: %.2f MB", mb))
let cases: [(String, () throws -> Tokenizer)] = [
    ("qwen2 (gguf)", { try Tokenizer(gguf: GGUFFile(path: root + "/qwen2/tokenizer.gguf")) }),
    ("llama3 (hf)", { try Tokenizer(huggingFaceDirectory: root + "/llama3/hf") }),
    ("olmoe gpt2 regex (gguf)", { try Tokenizer(gguf: GGUFFile(path: root + "/olmoe/tokenizer.gguf")) }),
    ("deepseek-v3 (gguf)", { try Tokenizer(gguf: GGUFFile(path: root + "/deepseek-v3/tokenizer.gguf")) }),
    ("gpt-oss o200k (gguf)", { try Tokenizer(gguf: GGUFFile(path: root + "/gpt-oss/tokenizer.gguf")) }),
    ("spm llama.cpp (gguf)", { try Tokenizer(gguf: GGUFFile(path: root + "/spm/tokenizer.gguf")) }),
    ("spm as BPE (hf)", { try Tokenizer(huggingFaceDirectory: root + "/spm/hf") }),
]
for (name, load) in cases {
    do {
        let tokenizer = try load()
        let t0 = Date()
        let ids = tokenizer.encode(text, addSpecialTokens: false)
        let dt = Date().timeIntervalSince(t0)
        let t1 = Date()
        let back = tokenizer.decode(ids)
        let dd = Date().timeIntervalSince(t1)
        // position-weighted checksum, to compare with the reference on the same text
        var checksum: UInt64 = 0
        for (i, id) in ids.enumerated() { checksum = checksum &* 1_000_003 &+ UInt64(id) &+ UInt64(i) }
        print(String(format: "%-26@ encode %6.3f s (%5.2f MB/s, %7d tokens, checksum %016llx)  decode %6.3f s  round trip %@",
                     name, dt, mb / dt, ids.count, checksum, dd, back == text ? "ok" : "DIFFERS"))
    } catch {
        print("\(name): \(error)")
    }
}
