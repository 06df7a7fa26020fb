import ArgumentParser
import Foundation
@testable import MoeCommandLine
import SwiftMoE
import TestSupport
import XCTest

/// Command lines parsed in-process, as `moe` parses them (`Moe.parseChecked`), without running anything.
final class ArgumentTests: XCTestCase {
    let model = Fixtures.path("qwen3moe/model-q8_0.gguf")

    /// The error `arguments` give, as `moe` prints it, and its exit status.
    func failure(_ arguments: [String], file: StaticString = #filePath, line: UInt = #line) -> (message: String, status: Int32)? {
        do {
            _ = try Moe.parseChecked(arguments)
            XCTFail("\(arguments) parsed", file: file, line: line)
            return nil
        } catch {
            return (Moe.fullMessage(for: error), Moe.exitCode(for: error).rawValue)
        }
    }

    /// Every command, with the arguments it needs, reports an option nobody defines as unknown
    /// (`moe run --bogus` used to say "expected [MODEL] PROMPT, got 0").
    func testEveryCommandReportsAnUnknownOption() throws {
        let m = model
        let commands: [[String]: [String]] = [
            ["run"]: [], ["chat"]: [], ["inspect"]: [m], ["tokenize"]: [m, "text"], ["logits"]: [m, "--tokens", "1"],
            ["generate"]: [m, "--tokens", "1"], ["bench"]: [m], ["convert"]: [m, "-o", "x.moe"], ["perplexity"]: [m, "--text", "t"],
            ["kld"]: [m, "--base", m, "--text", "t"], ["calibrate"]: [m, "--text", "t"], ["trace"]: [m, "-o", "x.trace"],
            ["trace", "record"]: [m, "-o", "x.trace"], ["trace", "report"]: ["x.trace"], ["trace", "export"]: ["x.trace", "-o", "x.csv"],
            ["tune"]: [m], ["serve"]: [],
        ]
        // Every command is in the list, so a new one gets this check too.
        func names(_ command: ParsableCommand.Type, _ path: [String]) -> [[String]] {
            let children = command.configuration.subcommands
            return (path.isEmpty ? [] : [path]) + children.flatMap { names($0, path + [$0._commandName]) }
        }
        XCTAssertEqual(Set(names(Moe.self, [])), Set(commands.keys))
        for (command, needed) in commands {
            for bogus in [["--bogus"], ["--bogus", "1"], ["-q"]] {
                let arguments = command + needed + bogus
                guard let (message, status) = failure(arguments) else { continue }
                XCTAssertTrue(message.hasPrefix("Error: Unknown option '\(bogus[0])'"), "\(arguments): \(message)")
                XCTAssertTrue(message.contains("Usage: moe \(command.joined(separator: " "))"), "\(arguments): \(message)")
                XCTAssertNotEqual(status, 0)
            }
        }
    }

    func testRunTakesAnOptionalModelThenThePrompt() throws {
        func positionals(_ arguments: [String]) throws -> [String] {
            let command = try Moe.parseChecked(arguments)
            return try XCTUnwrap(command as? Run).arguments
        }
        XCTAssertEqual(try positionals(["run", "def f(n):"]), ["def f(n):"])
        XCTAssertEqual(try positionals(["run", model, "hello", "--max-tokens", "3"]), [model, "hello"])
        XCTAssertEqual(try positionals(["run", "--max-tokens", "3", "--", "-1 is a number"]), ["-1 is a number"])
        XCTAssertEqual(try positionals(["run", model, "--", "--not-a-flag"]), [model, "--not-a-flag"])
        XCTAssertEqual(try positionals(["run", "-"]), ["-"])

        XCTAssertTrue(failure(["run"])?.message.contains("expected [MODEL] PROMPT (one or two arguments), got 0") == true)
        XCTAssertTrue(failure(["run", "a", "b", "c"])?.message.contains("got 3") == true)
        // A prompt that looks like an option is one unless it follows "--".
        XCTAssertTrue(failure(["run", "-1 is a number"])?.message.hasPrefix("Error: Unknown option '-1") == true)
    }

    /// One check for flags and `--config` files: the same value is refused with the same reason,
    /// named as a flag on the command line and as a key in a file.
    func testFlagsAndConfigFilesAreCheckedAlike() throws {
        let dir = TemporaryDirectory()
        let cases: [(key: String, flag: String, value: String, json: String, reason: String)] = [
            ("threads", "--threads", "0", "0", "must be between 1 and 1024"),
            ("threads", "--threads", "1025", "1025", "must be between 1 and 1024"),
            ("prefetch_depth", "--prefetch-depth", "65", "65", "must be between 1 and 64"),
            ("prefetch_width", "--prefetch-width", "0", "0", "must be at least 1"),
            ("loader_threads", "--loader-threads", "17", "17", "must be between 1 and 16"),
            ("context", "--context", "0", "0", "must be at least 1"),
            ("memory", "--memory", "lots", "\"lots\"", "\"lots\" is not a size like 2GB"),
            ("expert_cache", "--expert-cache", "most", "\"most\"", "\"most\" is not a size, a percentage or min"),
        ]
        for c in cases {
            let flag = failure(["bench", model, c.flag, c.value])
            XCTAssertTrue(flag?.message.hasPrefix("Error: \(c.flag) \(c.reason)") == true, "\(c.flag) \(c.value): \(flag?.message ?? "")")
            XCTAssertNotEqual(flag?.status, 0)

            let path = dir.path("\(c.key).json")
            try Data("{\"format\": \"swiftmoe-run-config\", \"version\": 1, \"\(c.key)\": \(c.json)}".utf8).write(to: URL(fileURLWithPath: path))
            let file = failure(["bench", model, "--config", path])
            XCTAssertTrue(file?.message.hasPrefix("Error: \(path): invalid run configuration: \(c.key) \(c.reason)") == true, "\(c.key): \(file?.message ?? "")")
            XCTAssertThrowsError(try RunConfiguration.load(path: path)) { error in
                XCTAssertEqual("\(error)", "\(path): invalid run configuration: \(c.key) \(c.reason)")
            }
        }
        // The limits' edges are accepted.
        XCTAssertNoThrow(try Moe.parseChecked(["bench", model, "--threads", "1024", "--prefetch-depth", "64", "--loader-threads", "16", "--context", "1"]))
    }

    func testFlagsOverrideTheConfigFile() throws {
        let dir = TemporaryDirectory()
        let path = dir.path("run.json")
        try Data(#"{"format": "swiftmoe-run-config", "version": 1, "threads": 3, "cache_policy": "lfu", "memory": "200MB", "prefetch_depth": 2}"#.utf8)
            .write(to: URL(fileURLWithPath: path))
        let command = try XCTUnwrap(try Moe.parseChecked(["bench", model, "--config", path, "--threads", "2", "--prefetch-depth", "4"]) as? Bench)
        let run = command.runtime.resolved
        XCTAssertEqual(run.threads, 2)
        XCTAssertEqual(run.prefetchDepth, 4)
        XCTAssertEqual(run.cachePolicy, .lfu)
        XCTAssertEqual(run.memoryBytes, 200_000_000)
        XCTAssertEqual(run.executorOptions.threads, 2)
        XCTAssertEqual(run.memoryOptions.budget, 200_000_000)
        XCTAssertEqual(run.memoryOptions.cachePolicy, .lfu)
        XCTAssertEqual(run.memoryOptions.prefetchDepth, 4)
        // Unset options keep the library's defaults (docs: one loader thread, fast kernels, f16 KV cache).
        XCTAssertEqual(run.memoryOptions.loaderThreads, 1)
        XCTAssertEqual(run.executorOptions.kernels, .fast)
        XCTAssertEqual(run.executorOptions.kvCacheType, .f16)
    }

    /// Every option goes from its flag, and from a file, into the configuration a command runs with.
    func testEveryOptionReachesTheRunConfiguration() throws {
        let dir = TemporaryDirectory()
        let path = dir.path("all.json")
        try Data(#"""
            {"format": "swiftmoe-run-config", "version": 1, "memory": "300MB", "expert_cache": "25%", "cache_policy": "fifo",
             "prefetch": "lookahead", "prefetch_depth": 2, "prefetch_width": 5, "loader_threads": 2, "read_depth": 3, "threads": 3, "kernels": "reference",
             "kv_cache": "f32", "context": 128, "calibration": "c.json", "on_miss": "lowbit", "prompt_chunk": 64, "read_ahead": 1}
            """#.utf8).write(to: URL(fileURLWithPath: path))
        let flags = ["--memory", "300MB", "--expert-cache", "25%", "--cache-policy", "fifo", "--prefetch", "lookahead", "--prefetch-depth", "2",
                     "--prefetch-width", "5", "--loader-threads", "2", "--read-depth", "3", "--threads", "3", "--kernels", "reference", "--kv-cache", "f32",
                     "--context", "128", "--calibration", "c.json", "--on-miss", "lowbit", "--prompt-chunk", "64", "--read-ahead", "1"]
        XCTAssertEqual(Set(RunConfiguration.Option.allCases.map(\.flag)), Set(flags.filter { $0.hasPrefix("--") }))
        let fromFile = try XCTUnwrap(try Moe.parseChecked(["bench", model, "--config", path]) as? Bench).runtime.resolved
        let fromFlags = try XCTUnwrap(try Moe.parseChecked(["bench", model] + flags) as? Bench).runtime.resolved
        XCTAssertEqual(fromFile, fromFlags)
        XCTAssertEqual(fromFlags.arguments, flags)
        XCTAssertEqual(fromFile.memoryOptions.expertCache, .fraction(0.25))
        XCTAssertEqual(fromFile.memoryOptions.maxContext, 128)
        XCTAssertEqual(fromFile.executorOptions.kvCacheType, .f32)
        XCTAssertEqual(fromFile.memoryOptions.readDepth, 3)
    }
}
