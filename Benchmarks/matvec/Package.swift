// swift-tools-version:6.0
// Matrix-vector throughput of SwiftMoE's kernels, per GGML type, next to memory bandwidth.
//
//     cd Benchmarks/matvec && swift run -c release matvec-bench
//     cd Benchmarks/matvec && swift run -c release store-bench [MODEL.gguf|MODEL.moe ...]
//
// A nested package (as swift-nio does it), so the root package carries no benchmark code.
import PackageDescription

let package = Package(
    name: "MatVecBenchmark",
    platforms: [.macOS(.v15)],
    dependencies: [
        // The package at the repository root; its `SwiftMoE` product re-exports `Quantization`.
        .package(name: "SwiftMoE", path: "../.."),
    ],
    targets: [
        .executableTarget(
            name: "matvec-bench",
            dependencies: [.product(name: "SwiftMoE", package: "SwiftMoE")],
            swiftSettings: [.swiftLanguageMode(.v5)]
        ),
        // Expert-store costs per type: LZ4 ratio and decode speed, checksum speed, direct reads.
        .executableTarget(
            name: "store-bench",
            dependencies: [.product(name: "SwiftMoE", package: "SwiftMoE")],
            swiftSettings: [.swiftLanguageMode(.v5)]
        ),
    ]
)
