// SwiftMoE: run mixture-of-experts language models in less RAM than the model.
//
// The one import an app needs. It re-exports the modules that do the work, each with one job
// (docs/architecture.md):
//
// - `Runtime`: `Model` (open, evaluate, generate), memory planning, run configuration files,
//   benchmark, inspection.
// - `Generation`: `Session` (chat and completion with streamed text), sampling.
// - `Quality`: perplexity, KL divergence, routing calibration, `QualityProbe`, sensitivity,
//   bit planning.
// - `Conversion`: `Converter` and `StoreWriter` (`.moe` stores).
// - `Profiling`: trace recording and cache tuning of a model run.
// - the layers below them: formats, quantization, routing, expert stores, the executor,
//   tokenizers, chat templates, traces and tuning.
//
// ```swift
// import SwiftMoE
//
// let session = try Session(modelPath: "qwen3-30b-a3b-q4_k_m.gguf")
// for try await piece in session.respond(to: "Why is the sky blue?") { print(piece, terminator: "") }
// ```
@_exported import ChatTemplate
@_exported import Conversion
@_exported import Executor
@_exported import ExpertStore
@_exported import Generation
@_exported import ModelFormats
@_exported import Profiling
@_exported import Quality
@_exported import Quantization
@_exported import Router
@_exported import Runtime
@_exported import Tokenizer
@_exported import Tracing
@_exported import Tuning
