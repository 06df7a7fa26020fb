import Foundation
import SwiftMoE

/// Output written as it comes (no stdio buffering), and the summary line of a reply.
enum Terminal {
    static func write(_ text: String) { FileHandle.standardOutput.write(Data(text.utf8)) }
    static func note(_ text: String) { FileHandle.standardError.write(Data((text + "\n").utf8)) }

    static func summary(_ r: GenerationResult) -> String {
        let mb = Double(ProcessStats.peakResidentBytes) / 1_048_576
        var parts = [String(format: "prompt %d tokens (%d reused), prefill %.1f t/s", r.promptTokens, r.reusedTokens, r.prefillTokensPerSecond),
                     String(format: "%d generated, decode %.1f t/s", r.generatedTokens, r.decodeTokensPerSecond),
                     "stop: \(r.finishReason.rawValue)", "seed \(r.seed)", String(format: "peak RSS %.1f MB", mb)]
        if r.droppedTurns > 0 { parts.insert("\(r.droppedTurns) old turns dropped", at: 1) }
        return "[" + parts.joined(separator: " | ") + "]"
    }

    /// Warns when a command-line argument was not valid UTF-8 (Swift already replaced the bad bytes with U+FFFD).
    static func warnAboutInvalidArguments() {
        for i in 1..<Int(CommandLine.argc) {
            guard let p = CommandLine.unsafeArgv[i] else { continue }
            if String(validatingCString: p) == nil {
                note("note: argument \(i) is not valid UTF-8; invalid bytes were replaced with U+FFFD")
            }
        }
    }
}
