import ArgumentParser
import Foundation

/// The `moe` command: its subcommands, one per file in Commands/, share the option groups in
/// Options/ and the argument types in Support/.
public struct Moe: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "moe",
        abstract: "Run mixture-of-experts language models in less RAM than the model.",
        subcommands: [Run.self, Chat.self, Serve.self, Inspect.self, Tokenize.self, Logits.self, Generate.self, Bench.self, Convert.self, Perplexity.self, KLD.self, Calibrate.self, TraceCommand.self, Tune.self]
    )

    public init() {}

    /// Parses `arguments` (without the program name) into the command to run.
    ///
    /// ArgumentParser checks each command (`validate()`) as soon as it is decoded, before it
    /// looks for options nobody recognized; so a check that fails on what is missing (`moe run
    /// --bogus`: no prompt) used to hide the real mistake behind its own message. Commands
    /// therefore check in ``CheckedArguments/check()``, and this parses twice: first with
    /// those checks off, so ArgumentParser's own errors (unknown option, missing or bad value)
    /// come first; then with them on.
    public static func parseChecked(_ arguments: [String]) throws -> ParsableCommand {
        _ = try ArgumentChecks.$deferred.withValue(true) { try parseAsRoot(arguments) }
        return try parseAsRoot(arguments)
    }

    /// Runs the command line the process was started with and exits.
    public static func main() {
        do {
            var command = try parseChecked(Array(CommandLine.arguments.dropFirst()))
            try command.run()
        } catch {
            exit(withError: error)
        }
    }
}

/// Arguments whose checks run in `check()` rather than `validate()`, after ArgumentParser has
/// reported what it could not parse (see ``Moe/parseChecked(_:)``).
protocol CheckedArguments: ParsableArguments {
    mutating func check() throws
}

extension CheckedArguments {
    mutating func validate() throws {
        guard !ArgumentChecks.deferred else { return }
        try check()
    }
}

enum ArgumentChecks {
    /// True while ``Moe/parseChecked(_:)`` parses only for ArgumentParser's own errors.
    @TaskLocal static var deferred = false
}
