import ChatTemplate
import Foundation
import Runtime

/// How to pick each next token and when to stop. The defaults are llama.cpp's
/// (`temperature` 0.8, `topK` 40, `topP` 0.95, `minP` 0.05, no repetition penalty).
/// docs/generation.md explains what each setting trades.
public struct GenerationOptions: Sendable {
    /// Upper bound on generated tokens (the EOS token is not counted; it is never emitted).
    public var maxTokens: Int = 256
    /// Divides the logits before the final draw. 0 means greedy (always the most likely token).
    public var temperature: Float = 0.8
    /// Keep only the `topK` most likely tokens (0 = off).
    public var topK: Int = 40
    /// Keep the smallest set of most likely tokens whose probability sums to at least `topP` (1 = off).
    public var topP: Float = 0.95
    /// Drop tokens less likely than `minP` times the most likely one (0 = off).
    public var minP: Float = 0.05
    /// llama.cpp's `repeat_penalty`: logits of tokens seen in the last `repetitionWindow`
    /// tokens (prompt included) are divided by it when positive, multiplied when negative (1 = off).
    public var repetitionPenalty: Float = 1.0
    public var repetitionWindow: Int = 64
    /// Seed of the sampler's own generator (xoshiro256**); the same seed, model, prompt and
    /// options give the same text. `nil` draws a seed from the system.
    public var seed: UInt64?
    /// Stop when the decoded text contains one of these; the text before it is returned
    /// without it. Matched on text, so a stop string may span several tokens.
    public var stop: [String] = []
    /// Stop at the tokenizer's end-of-sequence/end-of-turn tokens (`Tokenizer.eosTokenIds`).
    public var stopAtEndOfSequence = true
    /// More token ids that end generation (not emitted), e.g. a template's end-of-turn token the file does not mark as EOS.
    public var stopTokens: Set<Int> = []
    /// Extra chat-template variables, e.g. `["enable_thinking": false]` for Qwen3.
    public var templateVariables: [String: TemplateValue] = [:]

    public init() {}

    /// Always the most likely token.
    public static var greedy: GenerationOptions {
        var o = GenerationOptions()
        o.temperature = 0
        return o
    }
}

/// xoshiro256** (Blackman & Vigna), seeded through SplitMix64: small, fast and the same on
/// every platform, unlike `SystemRandomNumberGenerator`.
public struct Xoshiro256StarStar: RandomNumberGenerator, Sendable {
    private var s: (UInt64, UInt64, UInt64, UInt64)

    public init(seed: UInt64) {
        var x = seed
        func splitMix() -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s = (splitMix(), splitMix(), splitMix(), splitMix())
    }

    public mutating func next() -> UInt64 {
        let result = ((s.1 &* 5) << 7 | (s.1 &* 5) >> 57) &* 9
        let t = s.1 << 17
        s.2 ^= s.0
        s.3 ^= s.1
        s.1 ^= s.2
        s.0 ^= s.3
        s.2 ^= t
        s.3 = s.3 << 45 | s.3 >> 19
        return result
    }

    /// Uniform in [0, 1) with 53 random bits.
    public mutating func nextUnit() -> Double { Double(next() >> 11) * 0x1.0p-53 }
}

/// Picks the next token from logits, in llama.cpp's sampler-chain order:
/// repetition penalty → top-k → top-p → min-p → temperature → draw.
/// With `temperature <= 0` it returns the most likely token after the penalty.
public struct Sampler: Sendable {
    public struct Candidate: Equatable, Sendable {
        public var id: Int
        public var logit: Float
        public init(id: Int, logit: Float) {
            self.id = id
            self.logit = logit
        }
    }

    public let options: GenerationOptions
    public private(set) var rng: Xoshiro256StarStar
    /// The seed in use (drawn from the system when the options had none).
    public let seed: UInt64

    public init(options: GenerationOptions) {
        self.options = options
        seed = options.seed ?? UInt64.random(in: 0...UInt64.max)
        rng = Xoshiro256StarStar(seed: seed)
    }

    /// The next token given the logits of the last position and the tokens so far.
    public mutating func sample(logits: [Float], previous: [Int]) -> Int {
        var logits = logits
        Sampler.penalize(&logits, previous: previous.suffix(options.repetitionWindow), penalty: options.repetitionPenalty)
        if options.temperature <= 0 { return Sampler.argmax(logits) }
        let candidates = Sampler.filter(logits, options: options)
        return Sampler.draw(Sampler.probabilities(candidates, temperature: options.temperature), u: rng.nextUnit())
    }

    /// llama.cpp's repeat penalty: each distinct recent token's logit is divided by `penalty`
    /// when positive and multiplied by it when not.
    public static func penalize<S: Sequence>(_ logits: inout [Float], previous: S, penalty: Float) where S.Element == Int {
        guard penalty != 1 else { return }
        for id in Set(previous) where logits.indices.contains(id) {
            logits[id] = logits[id] > 0 ? logits[id] / penalty : logits[id] * penalty
        }
    }

    /// Top-k, then top-p, then min-p; candidates come back most likely first. At least one survives each step.
    public static func filter(_ logits: [Float], options: GenerationOptions) -> [Candidate] {
        var candidates = logits.enumerated().map { Candidate(id: $0.offset, logit: $0.element) }
        let byLogit: (Candidate, Candidate) -> Bool = { $0.logit > $1.logit || ($0.logit == $1.logit && $0.id < $1.id) }
        if options.topK > 0, options.topK < candidates.count {
            // Partial selection: the k largest, then sort those.
            candidates.sort(by: byLogit)
            candidates.removeSubrange(options.topK...)
        } else {
            candidates.sort(by: byLogit)
        }
        if options.topP < 1 {
            let p = probabilities(candidates, temperature: 1)
            var cumulative = 0.0
            var keep = candidates.count
            for (i, q) in p.enumerated() {
                cumulative += q.p
                if cumulative >= Double(options.topP) { keep = i + 1; break }
            }
            candidates.removeSubrange(max(1, keep)...)
        }
        if options.minP > 0, let top = candidates.first {
            // p_i >= minP * p_max  <=>  logit_i >= logit_max + ln(minP)
            let threshold = top.logit + log(options.minP)
            let keep = candidates.prefix { $0.logit >= threshold }.count
            candidates.removeSubrange(max(1, keep)...)
        }
        return candidates
    }

    /// Softmax of `logits / temperature` over the candidates, in double precision.
    public static func probabilities(_ candidates: [Candidate], temperature: Float) -> [(id: Int, p: Double)] {
        guard let maxLogit = candidates.map(\.logit).max() else { return [] }
        let t = Double(temperature)
        let e = candidates.map { exp((Double($0.logit) - Double(maxLogit)) / t) }
        let sum = e.reduce(0, +)
        return zip(candidates, e).map { (id: $0.id, p: $1 / sum) }
    }

    /// The candidate whose cumulative probability first exceeds `u` (in [0, 1)).
    public static func draw(_ distribution: [(id: Int, p: Double)], u: Double) -> Int {
        var cumulative = 0.0
        for entry in distribution {
            cumulative += entry.p
            if u < cumulative { return entry.id }
        }
        return distribution.last?.id ?? 0
    }

    public static func argmax(_ values: [Float]) -> Int { Model.argmax(values) }
}

/// Finds stop strings in streamed text. Text that might be the start of a stop string is held
/// back until the next piece shows whether it is; the text before a stop string is released
/// without it. Matching is on Unicode scalars, so "\r" + "\n" arriving in two pieces still matches.
public struct StopStringMatcher: Sendable {
    public let stops: [[Unicode.Scalar]]
    private var pending: [Unicode.Scalar] = []
    public private(set) var stopped = false

    public init(_ stops: [String]) {
        self.stops = stops.filter { !$0.isEmpty }.map { Array($0.unicodeScalars) }
    }

    /// Adds decoded text; returns what can be shown now. After a match `stopped` is true and
    /// further input is ignored.
    public mutating func append(_ text: String) -> String {
        guard !stopped else { return "" }
        pending.append(contentsOf: text.unicodeScalars)
        guard !stops.isEmpty else { return flush() }
        // Earliest match wins (ties: the longer stop string).
        var best: Int?
        for stop in stops where stop.count <= pending.count {
            for start in 0...(pending.count - stop.count) where pending[start] == stop[0] {
                if pending[start..<(start + stop.count)].elementsEqual(stop) {
                    if best == nil || start < best! { best = start }
                    break
                }
            }
        }
        if let best {
            stopped = true
            let out = Self.string(pending[..<best])
            pending = []
            return out
        }
        // Hold back the longest suffix that is a proper prefix of some stop string.
        var hold = 0
        for stop in stops {
            for k in stride(from: min(stop.count - 1, pending.count), to: hold, by: -1)
            where pending[(pending.count - k)...].elementsEqual(stop[..<k]) {
                hold = k
                break
            }
        }
        let out = Self.string(pending[..<(pending.count - hold)])
        pending.removeFirst(pending.count - hold)
        return out
    }

    /// Everything held back (call at the end of generation).
    public mutating func flush() -> String {
        defer { pending = [] }
        return Self.string(pending[...])
    }

    private static func string(_ s: ArraySlice<Unicode.Scalar>) -> String {
        var out = ""
        out.unicodeScalars.append(contentsOf: s)
        return out
    }
}
