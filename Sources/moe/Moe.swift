import ArgumentParser
import Foundation
import SwiftMoE

@main
struct Moe: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "moe",
        abstract: "Run mixture-of-experts language models in less RAM than the model.",
        subcommands: [Inspect.self, Logits.self, Generate.self, Tokenize.self]
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
