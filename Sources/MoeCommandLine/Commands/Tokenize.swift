import ArgumentParser
import Foundation
import SwiftMoE

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the token ids of a text with a model's tokenizer.",
        discussion: """
            Prints one line per token: the id and the text it stands for. With --ids, prints only \
            the ids, comma-separated, ready for `moe logits --tokens`. \
            Special tokens written in the text (e.g. <|im_end|>) are recognized; BOS/EOS are \
            added as the model file says unless --no-special-tokens is given.
            """)

    @Argument(help: "A GGUF file or a Hugging Face model directory (tokenizer.json).") var model: String
    @Argument(help: "The text to tokenize.") var text: String
    @Flag(help: "Print only the ids, comma-separated.") var ids = false
    @Flag(name: .customLong("no-special-tokens"), help: "Do not add BOS/EOS.") var noSpecialTokens = false

    func run() throws {
        try reportingErrors {
            let tokenizer = try Tokenizer(path: model)
            let tokens = tokenizer.encode(text, addSpecialTokens: !noSpecialTokens)
            if ids {
                print(tokens.map(String.init).joined(separator: ","))
            } else {
                for id in tokens { print("\(id)\t\(tokenizer.pieceDescription(id))") }
                print("\(tokens.count) tokens")
            }
        }
    }
}
