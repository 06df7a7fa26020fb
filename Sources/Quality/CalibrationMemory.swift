import Executor
import ExpertStore
import Foundation
import ModelFormats
import Runtime

/// What `moe calibrate` keeps resident beside the model, so that its `--memory` plan takes it
/// from the expert pool (``Runtime/Model/MemoryOptions/reserved``) instead of going over the
/// budget. Bounds, in bytes, of everything the command allocates that a plain run does not:
///
/// - the routing statistics (``Router/TransitionTable``): layers × experts² × 2 counts;
/// - the activation statistics (``ActivationStatistics``): experts × (hidden + 3 × FFN) floats;
/// - one window's routes (the chosen experts of every token and MoE layer);
/// - a save of the file (``CalibrationFile/write(to:)``): a write buffer, one layer's
///   transition counts as text, one piece of base64 or of measurements and its encoder;
/// - with sensitivities: the table of measurements (and the one being resumed), one expert's
///   source floats and copy, and per quantizing worker its quantized copy and floats;
/// - the auto and nextuse cache policies' transition counts, which the proxy step's requests
///   of every expert in turn fill completely (``ExpertStore/NextUsePolicy``; two instances).
///
/// - with `--sensitivity measured`, the probe (``measuredProbe(_:options:context:windows:moeLayers:)``).
///
/// Allocator slack on top of these is the plan's margin.
public enum CalibrationMemory {
    public struct Shape: Sendable {
        public var moeLayers: Int
        public var experts: Int
        public var hiddenSize: Int
        public var ffnSize: Int
        public var expertsPerToken: Int

        public init(moeLayers: Int, experts: Int, hiddenSize: Int, ffnSize: Int, expertsPerToken: Int) {
            self.moeLayers = moeLayers
            self.experts = experts
            self.hiddenSize = hiddenSize
            self.ffnSize = ffnSize
            self.expertsPerToken = expertsPerToken
        }
    }

    /// Header and allocator overhead of one Swift array.
    static let arrayOverhead = 48

    /// What `--sensitivity measured`'s ``QualityProbe`` holds beside the model, for `windows`
    /// windows of `context` tokens: per window and scored position the base distribution it
    /// compares with (the whole vocabulary's probabilities while windows × positions × vocabulary
    /// stays within ``QualityProbe/fullVocabularyLimit``, else the top ``QualityProbe/topTokens``
    /// and their ids) and five numbers; the windows and token counts each expert was routed to;
    /// and, one pass at a time (the base pass, then each variant), a window's forward pass with
    /// every position's logits on the probe's own transformer: its KV cache and scratch for the
    /// whole window, the logits (twice), and (top tokens) the sort of one row; and its threads.
    public static func measuredProbe(_ c: ModelConfiguration, options: ExecutorOptions, context: Int, windows: Int, moeLayers: Int) -> Int {
        let vocab = max(c.vocabSize, 1), context = max(context, 2), scored = context - 1, w = max(windows, 1)
        let kept = w * scored * vocab <= QualityProbe.fullVocabularyLimit ? vocab : min(vocab, QualityProbe.topTokens)
        let perPosition = kept * 4 + (kept < vocab ? kept * 4 : 0) + 3 * 8 + 2 * 4
        let stored = w * (scored * perPosition + 7 * arrayOverhead)
        // routedWindows and routedTokens, and the sets and counts they are built from.
        let routed = 2 * moeLayers * c.expertCount * (w * 8 + arrayOverhead + 64)
        // The logits of every position twice: the forward pass's own and the array it returns.
        let forward = 2 * context * vocab * 4 + MemoryPlan.kvCacheBytes(c, options: options, maxPositions: context, chunk: context)
            + MemoryPlan.fixedScratch(c, options: options, maxPositions: context) + context * MemoryPlan.scratchPerToken(c, options: options)
        let sort = kept < vocab ? 2 * vocab * 8 : 0
        // The probe's transformer has a thread pool of its own: stacks and allocator arenas.
        let threads = max(options.threads, 1) * (1 << 20)
        return stored + routed + forward + sort + threads
    }

    /// Bytes `moe calibrate` needs beside the model for a text routed in windows of `context`
    /// tokens (or fewer, when the text is shorter), `types` candidate types when it computes sensitivities (0: `--no-sensitivity`),
    /// quantized on `workers` threads, with `policy` choosing the pool's evictions.
    /// `statisticsLoaded`: complete statistics were loaded from the file being resumed before
    /// the plan measured its baseline, and are used as they are (not copied): they are not
    /// counted again. (Partial ones are, since gathering more copies them.)
    public static func reserved(_ s: Shape, context: Int, types: Int, workers: Int, policy: CachePolicyKind,
                                statisticsLoaded: Bool = false) -> Int {
        let (l, e, h, f) = (s.moeLayers, s.experts, s.hiddenSize, s.ffnSize)
        let rows = l * e
        // frequency, next and skip: rows of `e` Ints.
        let transitions = (2 * rows + l) * (e * 8 + arrayOverhead)
        let statistics = rows * (h + 3 * f) * 4 + 2 * l * (e * 8 + arrayOverhead)
        let routes = context * (l + 1) * (s.expertsPerToken * 8 + arrayOverhead)
        // The largest piece of a save: one layer's counts, up to 20 digits and a comma each.
        let layerText = e * e * 21
        let save = 2 * CalibrationFile.writeBuffer + 2 * layerText + 8 * ActivationStatistics.pieceFloats * 4
            + SensitivityTable.pieceMeasurements * 1024
        var total = (statisticsLoaded ? 0 : transitions + statistics + routes) + save
        if types > 0 {
            let m = h * f
            // Measurements (layer, expert, type, two losses), in an array that grows by doubling,
            // and the resumed table's index of them.
            let measurements = rows * types * (2 * 64 + 160)
            // The source floats and a copy of the source bytes; per worker the quantized copy,
            // its floats, and the floats of the matrix being quantized.
            let expert = 3 * m * 4 * 2 + min(max(workers, 1), types) * (3 * m * 4 * 2 + m * 4) + (h + f) * 32
            total += measurements + expert
        }
        if policy == .auto {
            // A row of UInt32 counts per (layer, expert), as long as `e` rounded up to a power of
            // two, and its dictionary entry.
            let row = e <= 1 ? 1 : 1 << (Int.bitWidth - (e - 1).leadingZeroBitCount)
            total += 2 * rows * (row * 4 + arrayOverhead + 64)
        }
        return total
    }
}
