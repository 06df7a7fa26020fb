// swift-tools-version:6.0
// SwiftMoE: run mixture-of-experts language models in less RAM than the model.
// Module split follows docs/architecture.md (design.md §2).
import PackageDescription

let v5: [SwiftSetting] = [.swiftLanguageMode(.v5)]
let v6: [SwiftSetting] = [.swiftLanguageMode(.v6)]

let package = Package(
    name: "SwiftMoE",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "SwiftMoE", targets: ["SwiftMoE"]),
        .executable(name: "moe", targets: ["moe"]),
        .executable(name: "tokenizer-bench", targets: ["TokenizerBench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
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
        .target(name: "Quantization", dependencies: ["CKernels"], swiftSettings: v5),
        // GGUF, safetensors, HF directories, .npy; model families and the one configuration type.
        .target(name: "ModelFormats", dependencies: ["Quantization"], swiftSettings: v5),
        // Gating networks (family routing rules) and, later, expert predictors.
        .target(name: "Router", dependencies: ["ModelFormats"], swiftSettings: v6),
        // Where expert weights come from: resident views now, paged pool later.
        .target(name: "ExpertStore", dependencies: ["ModelFormats", "Quantization", "CLZ4"], swiftSettings: v5),
        // The transformer forward pass.
        .target(name: "Executor", dependencies: ["ModelFormats", "Quantization", "Router", "ExpertStore"], swiftSettings: v6),
        // Text <-> token ids (issue 5).
        .target(name: "Tokenizer", dependencies: ["ModelFormats"], swiftSettings: v5),
        // Jinja-subset interpreter for the chat templates models ship (issue 5).
        .target(name: "ChatTemplate", swiftSettings: v5),
        // Expert activation traces (issue 9).
        .target(name: "Tracing", dependencies: ["ExpertStore"], swiftSettings: v5),
        // Cache-size tuning (issue 9).
        .target(name: "Tuning", dependencies: ["ExpertStore", "Tracing"], swiftSettings: v5),
        // The library an app embeds.
        .target(
            name: "SwiftMoE",
            dependencies: ["ModelFormats", "Quantization", "Router", "ExpertStore", "Executor", "Tokenizer", "ChatTemplate", "Tracing", "Tuning"],
            swiftSettings: v5
        ),
        // The command line: parses arguments, calls SwiftMoE.
        .executableTarget(
            name: "moe",
            dependencies: ["SwiftMoE", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: v5
        ),
        // Encode throughput on ~1 MB of text (build with -c release).
        .executableTarget(name: "TokenizerBench", dependencies: ["Tokenizer", "ModelFormats"], path: "Benchmarks/TokenizerBench", swiftSettings: v5),
        // Fixture locations and helpers shared by the test targets.
        .target(name: "TestSupport", dependencies: ["ModelFormats"], path: "Tests/TestSupport", swiftSettings: v5),
        .testTarget(name: "QuantizationTests", dependencies: ["Quantization", "CKernels"], swiftSettings: v5),
        .testTarget(name: "ModelFormatsTests", dependencies: ["ModelFormats", "Quantization", "TestSupport"], swiftSettings: v5),
        .testTarget(name: "RouterTests", dependencies: ["Router"], swiftSettings: v6),
        .testTarget(name: "ExpertStoreTests", dependencies: ["SwiftMoE", "TestSupport", "moe"], swiftSettings: v5),
        .testTarget(name: "TokenizerTests", dependencies: ["Tokenizer", "TestSupport"], swiftSettings: v5),
        .testTarget(name: "ChatTemplateTests", dependencies: ["ChatTemplate", "TestSupport"], swiftSettings: v5),
        .testTarget(name: "GenerationTests", dependencies: ["SwiftMoE", "TestSupport"], swiftSettings: v5),
        .testTarget(name: "ExecutorTests", dependencies: ["SwiftMoE", "TestSupport"], swiftSettings: v6),
        .testTarget(name: "TracingTests", dependencies: ["Tracing", "ModelFormats", "TestSupport"], swiftSettings: v5),
        .testTarget(name: "TuningTests", dependencies: ["SwiftMoE", "TestSupport", "moe"], swiftSettings: v5),
        .testTarget(name: "CLITests", dependencies: ["SwiftMoE", "TestSupport", "moe"], swiftSettings: v5),
    ]
)
