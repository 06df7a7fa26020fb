import Foundation
import SwiftMoE

/// How `run` and `chat` print a harmony model's reply (GPT-OSS): only the final channel, or
/// with `--show-reasoning` each analysis/commentary message too, labelled `[analysis]`
/// (`[commentary to=functions.f]`) and dimmed when standard output is a terminal, then
/// `[final]` before the answer. Other models' text is printed as it comes.
final class ReasoningDisplay {
    let show: Bool
    let dim: Bool
    private var shownReasoning = false
    private var inFinal = false

    init(show: Bool) {
        self.show = show
        dim = isatty(STDOUT_FILENO) != 0 && ProcessInfo.processInfo.environment["NO_COLOR"] == nil
    }

    func reasoning(_ piece: ReasoningPiece) {
        guard show else { return }
        var out = ""
        if piece.startsMessage {
            if shownReasoning || inFinal { out += "\n" }
            let label = piece.recipient.map { "[\(piece.channel) to=\($0)]" } ?? "[\(piece.channel)]"
            out += label + " "
            inFinal = false
        }
        shownReasoning = true
        Terminal.write(dim ? "\u{1B}[2m" + out + piece.text + "\u{1B}[0m" : out + piece.text)
    }

    func text(_ text: String) {
        if show && shownReasoning && !inFinal { Terminal.write("\n[final] ") }
        inFinal = true
        Terminal.write(text)
    }

    /// Starts a new reply (chat).
    func reset() {
        shownReasoning = false
        inFinal = false
    }
}
