import ArgumentParser
import SwiftMoE

/// `--ctx-size`: tokens per window of a text, each evaluated from an empty KV cache (perplexity,
/// kld, calibrate, trace, tune). Its default follows the model: a model with a shorter context
/// gets windows of its whole context.
struct ContextWindowOption: CheckedArguments {
    /// The window when the model's context allows it (llama.cpp's default n_ctx).
    static let preferred = 512
    static let minimum = 4

    @Option(name: .customLong("ctx-size"), help: "Tokens per window of the text, each evaluated from an empty KV cache (llama.cpp's n_ctx; at least \(minimum)). Longer windows give each token more context and cost more attention time and KV memory. Default: \(preferred), or the model's context if shorter.")
    var ctxSize: Int?

    func check() throws {
        if let ctxSize, ctxSize < Self.minimum { throw ValidationError("--ctx-size must be at least \(Self.minimum)") }
    }

    /// The KV cache positions to plan for when `--context` is not given (the model then caps them at its own).
    var planned: Int { ctxSize ?? Self.preferred }

    /// Opens `path` with `runtime`'s options; without `--context`, the KV cache is planned for this window.
    func open(_ path: String, with runtime: RunConfiguration) throws -> Model {
        var options = runtime
        options.context = options.context ?? planned
        return try options.open(path)
    }

    /// The window for `models`: `--ctx-size` if it fits the positions each runs with, else an
    /// error; without it, the preferred size or the shortest context, whichever is shorter.
    func resolve(for models: Model...) throws -> Int {
        try resolve(models.map { ($0.source.path, $0.maxContext, $0.configuration.contextLength) })
    }

    /// The same for runs described by the model's path, the positions it runs with and its context.
    func resolve(_ runs: [(path: String, positions: Int, contextLength: Int)]) throws -> Int {
        let positions = runs.map(\.positions).min() ?? Self.preferred
        guard let ctxSize else { return min(Self.preferred, positions) }
        if let run = runs.first(where: { $0.positions < ctxSize }) {
            throw ValidationError("--ctx-size \(ctxSize) is longer than the \(run.positions) positions \(run.path) runs with (its context is \(run.contextLength) tokens; --context sets fewer)")
        }
        return ctxSize
    }
}
