import ArgumentParser
import Foundation

/// Where `moe run`/`moe chat` look when no model is given (relative to the working directory).
enum DefaultModel {
    /// The bundled demo model, relative to the package root.
    static let path = "Models/demo/demo.moe"

    /// The given model, or the demo model found from the working directory or from the binary
    /// (`.build/<config>/moe` and `.build/<triple>/<config>/moe` sit two or three levels below the root).
    static func resolve(_ given: String?) throws -> String {
        if let given { return given }
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        let candidates = [URL(fileURLWithPath: FileManager.default.currentDirectoryPath)]
            + [2, 3].map { levels in (0..<levels).reduce(binary) { url, _ in url.deletingLastPathComponent() } }
        for root in candidates {
            let candidate = root.appendingPathComponent(path).path
            if FileManager.default.fileExists(atPath: candidate) { return candidate }
        }
        throw ValidationError("no model given and the demo model \(path) was not found; pass one: moe run MODEL.gguf \"prompt\"")
    }
}
