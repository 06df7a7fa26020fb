
// ---- Appended by tools/sanitize.sh --core (not part of the package's manifest) ----
// The package without `moe serve` and the command line: their dependencies (SwiftNIO,
// BoringSSL twice, Hummingbird, AsyncHTTPClient, ArgumentParser) are most of a sanitizer
// build, and only ServingTests and CLITests need them.
let serverAndCommandLine: Set<String> = ["Serving", "MoeCommandLine", "moe", "ServingTests", "CLITests"]
package.targets.removeAll { serverAndCommandLine.contains($0.name) }
package.products.removeAll { serverAndCommandLine.contains($0.name) }
package.dependencies = []
