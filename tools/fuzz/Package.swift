// swift-tools-version:6.0
// libFuzzer harnesses for SwiftMoE's parsers (issue 19). A package of its own so the main
// Package.swift carries no sanitizer flags: build it with tools/fuzz.sh (docs/fuzzing.md).
import PackageDescription

let v6: [SwiftSetting] = [.swiftLanguageMode(.v6), .unsafeFlags(["-parse-as-library"])]
let targets = ["gguf", "hf", "store", "trace", "tokenizer", "spm", "vocab", "template", "bitplan", "calibration"]

let package = Package(
    name: "SwiftMoEFuzz",
    platforms: [.macOS(.v15)],
    dependencies: [.package(name: "SwiftMoE", path: "../..")],
    targets: [
        .target(name: "FuzzSupport", dependencies: [.product(name: "SwiftMoE", package: "SwiftMoE")], swiftSettings: [.swiftLanguageMode(.v6)]),
    ] + targets.map { name in
        .executableTarget(name: "fuzz-\(name)", dependencies: ["FuzzSupport", .product(name: "SwiftMoE", package: "SwiftMoE")],
                          path: "Sources/fuzz-\(name)", swiftSettings: v6)
    }
)
