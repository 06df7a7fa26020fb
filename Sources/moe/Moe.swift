import ArgumentParser
import Foundation
import SwiftMoE

@main
struct Moe: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "moe",
        abstract: "Run mixture-of-experts language models in less RAM than the model.",
        subcommands: [Run.self, Chat.self, Inspect.self, Tokenize.self, Logits.self, Generate.self, Bench.self]
    )
}

/// Runs `body`, turning library errors into a one-line message and exit status 1.
func reportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let error as ExitCode {
        throw error
    } catch {
        FileHandle.standardError.write(Data("error: \(error)\n".utf8))
        throw ExitCode(1)
    }
}

struct ModelArgument: ParsableArguments {
    @Argument(help: "A GGUF file or a Hugging Face model directory (config.json + *.safetensors).")
    var model: String
}

struct TokenList: ExpressibleByArgument {
    var ids: [Int]
    init?(argument: String) {
        let parts = argument.split(separator: ",", omittingEmptySubsequences: false)
        var ids: [Int] = []
        for p in parts {
            guard let id = Int(p.trimmingCharacters(in: .whitespaces)), id >= 0 else { return nil }
            ids.append(id)
        }
        guard !ids.isEmpty else { return nil }
        self.ids = ids
    }
    static var defaultCompletionKind: CompletionKind { .default }
}

extension KernelPath: ExpressibleByArgument {}
extension KVCache.ElementType: ExpressibleByArgument {}

/// Options every command that runs the model shares.
struct RuntimeOptions: ParsableArguments {
    @Option(help: "Worker threads (default: the cores available). More threads help until memory bandwidth is the limit.")
    var threads: Int = ThreadPool.defaultThreadCount

    @Option(help: "fast: 8-bit activations for quantized weights, as llama.cpp (default). reference: dequantize and compute in f32 — slow, matches transformers to 1e-4.")
    var kernels: KernelPath = .fast

    @Option(name: .customLong("kv-cache"), help: "KV cache element type: f16 (half the memory, default) or f32 (exact).")
    var kvCache: KVCache.ElementType = .f16

    func validate() throws {
        guard threads >= 1, threads <= 1024 else { throw ValidationError("--threads must be between 1 and 1024") }
    }

    var executorOptions: ExecutorOptions { ExecutorOptions(threads: threads, kernels: kernels, kvCacheType: kvCache) }
}
