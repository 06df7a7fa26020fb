import Foundation
import ModelFormats

/// Locations of the committed fixtures (Tests/Fixtures, made by tools/make_fixtures.py) and
/// typed access to their manifests.
public enum Fixtures {
    public static let root: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")

    public static let packageRoot: URL = root.deletingLastPathComponent().deletingLastPathComponent()

    /// Every model case directory (a manifest and reference outputs in `ref/`).
    public static var cases: [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []
        return names.filter {
            FileManager.default.fileExists(atPath: root.appendingPathComponent("\($0)/manifest.json").path)
                && FileManager.default.fileExists(atPath: root.appendingPathComponent("\($0)/ref").path)
        }.sorted()
    }

    public static func path(_ relative: String) -> String { root.appendingPathComponent(relative).path }

    /// The built `moe` binary: next to the test bundle (SwiftPM puts products and test bundles
    /// in the same build directory), else `.build/debug/moe`. `swift test` and
    /// `swift build --build-tests` build it (no test target depends on it); when it is missing,
    /// this throws an error that says so rather than letting a test fail on a missing file.
    public static var moeBinary: URL {
        get throws { try locatedMoeBinary.get() }
    }

    /// Looked up once: `Bundle.allBundles` walks Foundation's bundle table, which is not safe to
    /// read while another thread (Foundation's process monitor) is using it.
    private static let locatedMoeBinary: Result<URL, MissingMoeBinary> = {
        let candidates = [Bundle.main.bundleURL, Bundle.main.bundleURL.deletingLastPathComponent()]
            + Bundle.allBundles.map { $0.bundleURL.deletingLastPathComponent() }
            + [packageRoot.appendingPathComponent(".build/debug")]
        for dir in candidates {
            let url = dir.appendingPathComponent("moe")
            if FileManager.default.isExecutableFile(atPath: url.path) { return .success(url) }
        }
        return .failure(MissingMoeBinary(searched: candidates.map(\.path)))
    }()

    /// The `moe` executable was not built.
    public struct MissingMoeBinary: Error, CustomStringConvertible {
        public let searched: [String]
        public var description: String {
            "the moe executable is not built (looked in \(searched.joined(separator: ", "))); run `swift build --product moe`, or `swift test` / `swift build --build-tests`, which build it"
        }
    }

    public static func manifest(_ name: String) throws -> Manifest {
        let data = try Data(contentsOf: root.appendingPathComponent("\(name)/manifest.json"))
        return try JSONDecoder().decode(Manifest.self, from: data)
    }

    public struct Manifest: Decodable, Sendable {
        public struct ModelEntry: Decodable, Sendable {
            public let path: String
            public let format: String
            public let dtype: String
            public let reference: String
        }
        public struct Reference: Decodable, Sendable {
            public let logits: [String]
            public let experts: String
        }
        public let `case`: String
        public let hf_model_type: String
        public let gguf_arch: String?
        public let sequences: [[Int]]
        public let models: [ModelEntry]
        public let references: [String: Reference]
    }

    /// One routing choice as transformers recorded it.
    public struct RecordedChoice: Decodable, Sendable {
        public let ids: [Int]
        public let weights: [Float]
    }

    /// `[sequence][layer][token]`, `nil` for dense layers.
    public static func experts(_ caseName: String, _ reference: Manifest.Reference) throws -> [[[RecordedChoice]?]] {
        let data = try Data(contentsOf: root.appendingPathComponent("\(caseName)/\(reference.experts)"))
        return try JSONDecoder().decode([[[RecordedChoice]?]].self, from: data)
    }
}

/// A fresh temporary directory, removed when the object goes away.
public final class TemporaryDirectory: Sendable {
    public let url: URL
    public init() {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("swiftmoe-test-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    public func path(_ name: String) -> String { url.appendingPathComponent(name).path }
    deinit { try? FileManager.default.removeItem(at: url) }
}

extension TemporaryDirectory {
    /// Copies the fixture directory `relative` (e.g. `mixtral/hf`) to `name` inside this
    /// directory, leaving out the files named in `excluding`; returns the copy's URL.
    public func copy(fixture relative: String, to name: String, excluding: Set<String> = []) throws -> URL {
        let src = Fixtures.root.appendingPathComponent(relative)
        let dst = url.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: dst, withIntermediateDirectories: true)
        for file in try FileManager.default.contentsOfDirectory(atPath: src.path) where !excluding.contains(file) {
            try FileManager.default.copyItem(at: src.appendingPathComponent(file), to: dst.appendingPathComponent(file))
        }
        return dst
    }
}

/// The tokenizer cases of one file under Tests/Fixtures/tokenizers, as transformers produced them.
public struct RecordedTokenizerCases: Decodable, Sendable {
    public struct Case: Decodable, Sendable {
        public let text: String
        public let ids: [Int]
    }
    public let hfCases: [Case]

    /// `tokenizers/<name>.json`'s Hugging Face cases.
    public static func load(_ name: String) throws -> [Case] {
        let data = try Data(contentsOf: Fixtures.root.appendingPathComponent("tokenizers/\(name).json"))
        return try JSONDecoder().decode(RecordedTokenizerCases.self, from: data).hfCases
    }
}
