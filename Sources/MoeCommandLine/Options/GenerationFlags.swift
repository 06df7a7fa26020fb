import ArgumentParser
import SwiftMoE

/// Sampling and stopping flags of `run` and `chat` (docs/generation.md says what each trades).
/// Their defaults are `GenerationOptions`'.
struct GenerationFlags: CheckedArguments {
    private static let defaults = GenerationOptions()

    @Option(name: .customLong("max-tokens"), help: "Stop after this many generated tokens (the context may end a reply sooner).")
    var maxTokens: Int = defaults.maxTokens
    @Option(help: "Randomness: 0 = greedy (deterministic, can loop); higher = more varied, less coherent.")
    var temperature: Float = defaults.temperature
    @Option(name: .customLong("top-k"), help: "Sample only among the K most likely tokens (0 = off). Smaller is safer and blander.")
    var topK: Int = defaults.topK
    @Option(name: .customLong("top-p"), help: "Sample among the most likely tokens covering this much probability (1 = off). Smaller is safer and blander.")
    var topP: Float = defaults.topP
    @Option(name: .customLong("min-p"), help: "Drop tokens less likely than this fraction of the most likely one (0 = off). Larger is safer and blander.")
    var minP: Float = defaults.minP
    @Option(name: .customLong("repeat-penalty"), help: "Penalize tokens seen in the last --repeat-last-n tokens (1 = off; 1.1 is mild). Curbs loops, can also push away words a text needs.")
    var repeatPenalty: Float = defaults.repetitionPenalty
    @Option(name: .customLong("repeat-last-n"), help: "How many recent tokens the repeat penalty looks at.")
    var repeatLastN: Int = defaults.repetitionWindow
    @Option(help: "Seed for reproducible sampling (default: random, printed in the summary).")
    var seed: UInt64?
    @Option(help: "Stop when this text appears (repeatable); it is not printed.")
    var stop: [String] = []
    @Flag(name: .customLong("ignore-eos"), help: "Keep generating past end-of-sequence tokens.")
    var ignoreEOS = false

    func check() throws {
        guard maxTokens >= 1 else { throw ValidationError("--max-tokens must be at least 1") }
        guard temperature >= 0, temperature.isFinite else { throw ValidationError("--temperature must be 0 or more") }
        guard topK >= 0 else { throw ValidationError("--top-k must be 0 (off) or more") }
        guard topP > 0, topP <= 1 else { throw ValidationError("--top-p must be in (0, 1]") }
        guard minP >= 0, minP < 1 else { throw ValidationError("--min-p must be in [0, 1)") }
        guard repeatPenalty > 0, repeatPenalty.isFinite else { throw ValidationError("--repeat-penalty must be positive") }
        guard repeatLastN >= 0 else { throw ValidationError("--repeat-last-n must be 0 or more") }
    }

    var options: GenerationOptions {
        var o = GenerationOptions()
        o.maxTokens = maxTokens
        o.temperature = temperature
        o.topK = topK
        o.topP = topP
        o.minP = minP
        o.repetitionPenalty = repeatPenalty
        o.repetitionWindow = repeatLastN
        o.seed = seed
        o.stop = stop
        o.stopAtEndOfSequence = !ignoreEOS
        return o
    }
}
