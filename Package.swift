// swift-tools-version:6.0
// SwiftMoE: run mixture-of-experts language models in less RAM than the model.
// Module split follows docs/architecture.md.
import PackageDescription

let v6: [SwiftSetting] = [.swiftLanguageMode(.v6)]
/// swift-distributed-tracing (under Hummingbird and AsyncHTTPClient) has a module named Tracing,
/// like ours (expert traces): theirs is renamed where the server's packages use it.
let distributedTracing = ["Tracing": "DistributedTracing"]

let package = Package(
    name: "SwiftMoE",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "SwiftMoE", targets: ["SwiftMoE"]),
        .executable(name: "moe", targets: ["moe"]),
        .executable(name: "tokenizer-bench", targets: ["TokenizerBench"]),
        .executable(name: "waves-bench", targets: ["WavesBench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        // moe serve only (the Serving target); nothing an app embeds through SwiftMoE links them.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
    ],
    targets: [
        // System LZ4 (Debian: liblz4-dev), found through pkg-config.
        .systemLibrary(
            name: "CLZ4",
            pkgConfig: "liblz4",
            providers: [.apt(["liblz4-dev"]), .brew(["lz4"])]
        ),
        // The innermost quantized dot/matvec loops in C, cloned per CPU level with
        // target_clones and picked at run time (no unsafeFlags).
        .target(name: "CKernels"),
        // Quant-type traits, (de)quantization, dot products.
        .target(name: "Quantization", dependencies: ["CKernels"], swiftSettings: v6),
        // GGUF, safetensors, HF directories, .npy; model families and the one configuration type.
        .target(name: "ModelFormats", dependencies: ["Quantization"], swiftSettings: v6),
        // Gating networks (family routing rules) and, later, expert predictors.
        .target(name: "Router", dependencies: ["ModelFormats"], swiftSettings: v6),
        // Where expert weights come from: resident views now, paged pool later.
        .target(name: "ExpertStore", dependencies: ["ModelFormats", "Quantization", "CLZ4"], swiftSettings: v6),
        // The transformer forward pass.
        .target(name: "Executor", dependencies: ["ModelFormats", "Quantization", "Router", "ExpertStore"], swiftSettings: v6),
        // Text <-> token ids (issue 5).
        .target(name: "Tokenizer", dependencies: ["ModelFormats"], swiftSettings: v6),
        // Jinja-subset interpreter for the chat templates models ship (issue 5).
        .target(name: "ChatTemplate", swiftSettings: v6),
        // Expert activation traces (issue 9).
        .target(name: "Tracing", dependencies: ["ExpertStore"], swiftSettings: v6),
        // Cache-size tuning (issue 9).
        .target(name: "Tuning", dependencies: ["ExpertStore", "Tracing"], swiftSettings: v6),
        // Running a model: Model (open, evaluate, generate), memory planning, run configuration files,
        // benchmark, inspection.
        .target(name: "Runtime", dependencies: ["ModelFormats", "Quantization", "Router", "ExpertStore", "Executor", "Tokenizer"], swiftSettings: v6),
        // Chat and completion with streamed text (Session), sampling.
        .target(name: "Generation", dependencies: ["Runtime", "Executor", "Tokenizer", "ChatTemplate"], swiftSettings: v6),
        // Writing .moe stores: Converter and StoreWriter.
        .target(name: "Conversion", dependencies: ["ModelFormats", "Quantization", "Router", "ExpertStore", "Tokenizer"], swiftSettings: v6),
        // Quality measurement: perplexity, KL divergence, routing calibration, QualityProbe,
        // sensitivity, bit planning.
        .target(name: "Quality", dependencies: ["Runtime", "Conversion", "ModelFormats", "Quantization", "Router", "ExpertStore", "Executor"], swiftSettings: v6),
        // A model run under observation: trace recording (Model.recordTrace) and cache tuning (Model.tune).
        .target(name: "Profiling", dependencies: ["Runtime", "ModelFormats", "Router", "ExpertStore", "Executor", "Tracing", "Tuning"], swiftSettings: v6),
        // The library an app embeds: re-exports all of the above.
        .target(
            name: "SwiftMoE",
            dependencies: ["ModelFormats", "Quantization", "Router", "ExpertStore", "Executor", "Tokenizer", "ChatTemplate", "Tracing", "Tuning",
                           "Runtime", "Generation", "Conversion", "Quality", "Profiling"],
            swiftSettings: v6
        ),
        // moe serve: an OpenAI-compatible HTTP server (Hummingbird) over one model, its request queue,
        // Prometheus metrics and the fallback client (AsyncHTTPClient). Kept out of SwiftMoE.
        .target(
            name: "Serving",
            dependencies: ["Generation", "Runtime", "Tokenizer", "ChatTemplate", "ExpertStore",
                           .product(name: "Hummingbird", package: "hummingbird", moduleAliases: distributedTracing),
                           .product(name: "Prometheus", package: "swift-prometheus"),
                           .product(name: "AsyncHTTPClient", package: "async-http-client", moduleAliases: distributedTracing),
                           .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                           .product(name: "UnixSignals", package: "swift-service-lifecycle")],
            swiftSettings: v6
        ),
        // The command line: every command, its option groups and their checks; it parses
        // arguments and calls SwiftMoE. A library so tests parse command lines in-process.
        .target(
            name: "MoeCommandLine",
            dependencies: ["SwiftMoE", "Serving", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: v6
        ),
        // The `moe` executable: one file that runs MoeCommandLine.
        .executableTarget(name: "moe", dependencies: ["MoeCommandLine"], swiftSettings: v6),
        // Encode throughput on ~1 MB of text (build with -c release).
        .executableTarget(name: "TokenizerBench", dependencies: ["Tokenizer", "ModelFormats"], path: "Benchmarks/TokenizerBench", swiftSettings: v6),
        // Paging under a memory limit: bench, kld and convert --miss-copy without the server's packages (build with -c release).
        .executableTarget(name: "WavesBench", dependencies: ["SwiftMoE"], path: "Benchmarks/WavesBench", swiftSettings: v6),
        // Fixture locations and helpers shared by the test targets.
        .target(name: "TestSupport", dependencies: ["ModelFormats"], path: "Tests/TestSupport", swiftSettings: v6),
        // No test target depends on the `moe` executable to get it built: `swift build --build-tests`
        // and `swift test` build every product of the package, `moe` included (checked with a clean
        // build of it, SwiftPM 6.3), and Fixtures.moeBinary says how to build it if it is missing.
        // Tests of parsing and checks import MoeCommandLine and run in-process; tests of what only a
        // process shows (exit status, stdin, SIGINT, peak RSS under --memory) run the binary.
        .testTarget(name: "QuantizationTests", dependencies: ["Quantization", "CKernels"], swiftSettings: v6),
        .testTarget(name: "ModelFormatsTests", dependencies: ["ModelFormats", "Quantization", "TestSupport"], swiftSettings: v6),
        .testTarget(name: "RouterTests", dependencies: ["Router"], swiftSettings: v6),
        .testTarget(name: "ExpertStoreTests", dependencies: ["SwiftMoE", "TestSupport"], swiftSettings: v6),
        .testTarget(name: "TokenizerTests", dependencies: ["Tokenizer", "TestSupport"], swiftSettings: v6),
        .testTarget(name: "ChatTemplateTests", dependencies: ["ChatTemplate", "TestSupport"], swiftSettings: v6),
        .testTarget(name: "GenerationTests", dependencies: ["Generation", "Runtime", "Executor", "ChatTemplate", "Tokenizer", "TestSupport"], swiftSettings: v6),
        .testTarget(name: "RuntimeTests", dependencies: ["Runtime", "Conversion", "ModelFormats", "Quantization", "Executor", "ExpertStore", "Tracing", "Profiling", "TestSupport"], swiftSettings: v6),
        .testTarget(name: "ConversionTests", dependencies: ["Conversion", "ExpertStore", "ModelFormats", "Tokenizer", "TestSupport"], swiftSettings: v6),
        .testTarget(name: "QualityTests", dependencies: ["Quality", "Runtime", "Conversion", "ModelFormats", "Quantization", "Executor", "ExpertStore", "Router", "Tokenizer", "TestSupport"], swiftSettings: v6),
        .testTarget(name: "ProfilingTests", dependencies: ["Profiling", "Runtime", "ModelFormats", "Executor", "ExpertStore", "Router", "Tracing", "Tuning", "Tokenizer", "TestSupport"], swiftSettings: v6),
        .testTarget(name: "ExecutorTests", dependencies: ["SwiftMoE", "TestSupport"], swiftSettings: v6),
        .testTarget(name: "TracingTests", dependencies: ["Tracing", "ModelFormats", "TestSupport"], swiftSettings: v6),
        .testTarget(name: "TuningTests", dependencies: ["SwiftMoE", "TestSupport"], swiftSettings: v6),
        .testTarget(name: "ServingTests", dependencies: ["Serving", "Generation", "Runtime", "Tokenizer", "ChatTemplate", "TestSupport",
                                                        .product(name: "HummingbirdTesting", package: "hummingbird", moduleAliases: distributedTracing),
                                                        .product(name: "AsyncHTTPClient", package: "async-http-client", moduleAliases: distributedTracing)], swiftSettings: v6),
        .testTarget(name: "CLITests", dependencies: ["SwiftMoE", "MoeCommandLine", "Serving", "TestSupport"], swiftSettings: v6),
    ]
)
