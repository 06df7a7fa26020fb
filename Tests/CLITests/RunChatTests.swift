import Foundation
import Synchronization
import SwiftMoE
import TestSupport
import XCTest

/// `moe run` and `moe chat` driven as a user would: arguments, piped stdin, Ctrl-C (SIGINT).
final class RunChatTests: XCTestCase {
    let model = Fixtures.path("qwen3moe/model-q8_0.gguf")

    struct Output {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs `moe` with `stdin` bytes; if `interruptAfterOutput`, sends SIGINT once stdout shows
    /// something, then writes `afterInterrupt` to stdin and closes it.
    func moe(_ arguments: [String], stdin: [UInt8] = [], interruptAfterOutput: Bool = false, afterInterrupt: [UInt8] = []) throws -> Output {
        let process = Process()
        process.executableURL = try Fixtures.moeBinary
        process.arguments = arguments
        let input = Pipe(), out = Pipe(), err = Pipe()
        process.standardInput = input
        process.standardOutput = out
        process.standardError = err
        final class Box: Sendable { let data = Mutex(Data()) }
        let errBox = Box()
        let errDone = DispatchSemaphore(value: 0)
        try process.run()
        DispatchQueue.global().async {
            let data = err.fileHandleForReading.readDataToEndOfFile()
            errBox.data.withLock { $0 = data }
            errDone.signal()
        }
        input.fileHandleForWriting.write(Data(stdin))
        var outData = Data()
        if interruptAfterOutput {
            while outData.isEmpty {
                let chunk = out.fileHandleForReading.availableData
                if chunk.isEmpty { break }
                outData += chunk
            }
            process.interrupt()
            input.fileHandleForWriting.write(Data(afterInterrupt))
        }
        try input.fileHandleForWriting.close()
        outData += out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        errDone.wait()
        return Output(status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self), stderr: errBox.data.withLock { String(decoding: $0, as: UTF8.self) })
    }

    /// `--show-reasoning` and `--reasoning-effort` change nothing for a model that is not harmony
    /// (Qwen3's template ignores `reasoning_effort`); a bad effort is a usage error.
    func testReasoningFlagsLeaveOtherModelsUnchanged() throws {
        let common = ["run", model, "Hi", "--max-tokens", "8", "--seed", "3", "--threads", "1"]
        let plain = try moe(common)
        let flagged = try moe(common + ["--show-reasoning", "--reasoning-effort", "high"])
        XCTAssertEqual(plain.status, 0, plain.stderr)
        XCTAssertEqual(flagged.status, 0, flagged.stderr)
        XCTAssertEqual(flagged.stdout, plain.stdout)
        let bad = try moe(common + ["--reasoning-effort", "extreme"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("reasoning-effort"), bad.stderr)
        let help = try moe(["run", "--help"])
        XCTAssertTrue(help.stdout.contains("--show-reasoning"), help.stdout)
    }

    /// A harmony model (tools/make_harmony_model.py: its greedy reply is analysis "Think" then
    /// final "Hello"): only the final channel is printed, unless --show-reasoning.
    func testHarmonyModelPrintsFinalChannel() throws {
        let harmony = Fixtures.path("harmony/model")
        let plain = try moe(["run", harmony, "Hi", "--temperature", "0", "--threads", "1"])
        XCTAssertEqual(plain.status, 0, plain.stderr)
        XCTAssertEqual(plain.stdout, "Hello\n")
        let shown = try moe(["run", harmony, "Hi", "--temperature", "0", "--threads", "1", "--show-reasoning"])
        XCTAssertEqual(shown.stdout, "[analysis] Think\n[final] Hello\n")
        let chat = try moe(["chat", harmony, "--temperature", "0", "--threads", "1"], stdin: Array("Hi\nAgain\n".utf8))
        XCTAssertEqual(chat.status, 0, chat.stderr)
        XCTAssertEqual(chat.stdout, "Hello\nHello\n")
        // The same model converted by llama.cpp (template and harmony tokens from GGUF metadata;
        // <|return|> is its EOS, <|call|> is not).
        let gguf = try moe(["run", Fixtures.path("harmony/model-f16.gguf"), "Hi", "--temperature", "0", "--threads", "1", "--show-reasoning"])
        XCTAssertEqual(gguf.status, 0, gguf.stderr)
        XCTAssertEqual(gguf.stdout, "[analysis] Think\n[final] Hello\n")
    }

    func testRunStreamsTextAndSummarizes() throws {
        let a = try moe(["run", model, "Once upon a time", "--max-tokens", "12", "--seed", "42", "--threads", "1"])
        XCTAssertEqual(a.status, 0, a.stderr)
        XCTAssertFalse(a.stdout.isEmpty)
        for field in ["prompt", "prefill", "t/s", "12 generated", "decode", "stop: max-tokens", "seed 42", "peak RSS"] {
            XCTAssertTrue(a.stderr.contains(field), "\(field) missing in: \(a.stderr)")
        }
        // Same seed, same text; the library gives the same text too.
        let b = try moe(["run", model, "Once upon a time", "--max-tokens", "12", "--seed", "42", "--threads", "1"])
        XCTAssertEqual(a.stdout, b.stdout)
        var options = GenerationOptions()
        options.seed = 42
        options.maxTokens = 12
        let session = try Session(modelPath: model)
        let text = try session.complete(prompt: "Once upon a time", options: options) { _ in }.text
        XCTAssertEqual(a.stdout, text + "\n")
    }

    func testRunInputErrors() throws {
        let empty = try moe(["run", model, ""])
        XCTAssertEqual(empty.status, 1)
        XCTAssertTrue(empty.stderr.contains("the prompt is empty"), empty.stderr)
        // Without a model, the bundled demo model is found from the binary's location...
        let demo = try moe(["run", "The following example", "--max-tokens", "4", "--no-chat", "--seed", "1"])
        XCTAssertEqual(demo.status, 0, demo.stderr)
        XCTAssertFalse(demo.stdout.isEmpty)
        // ...and a binary outside the package, run elsewhere, asks for a model.
        let dir = TemporaryDirectory()
        let copy = dir.url.appendingPathComponent("moe")
        try FileManager.default.copyItem(at: try Fixtures.moeBinary, to: copy)
        let process = Process()
        process.executableURL = copy
        process.arguments = ["run", "Hello"]
        process.currentDirectoryURL = dir.url
        let err = Pipe()
        process.standardError = err
        process.standardOutput = Pipe()
        try process.run()
        let message = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 1)
        XCTAssertTrue(message.contains("pass one: moe run MODEL"), message)
        let long = try moe(["run", model, String(repeating: "lorem ipsum ", count: 50), "--context", "32"])
        XCTAssertEqual(long.status, 1)
        XCTAssertTrue(long.stderr.contains("but the context holds 32"), long.stderr)
        let badFlag = try moe(["run", model, "x", "--temperature", "-1"])
        XCTAssertNotEqual(badFlag.status, 0)
        XCTAssertTrue(badFlag.stderr.contains("--temperature"), badFlag.stderr)
        let badTemplate = try moe(["run", model, "x", "--chat-template", "/nonexistent.jinja"])
        XCTAssertEqual(badTemplate.status, 1)
        XCTAssertTrue(badTemplate.stderr.contains("cannot read the chat template"), badTemplate.stderr)
    }

    func testRunReadsStdinAndRepairsBadUTF8() throws {
        let r = try moe(["run", model, "-", "--max-tokens", "3", "--temperature", "0"], stdin: Array("caf".utf8) + [0xE9, 0xFF] + Array(" ok".utf8))
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("not valid UTF-8"), r.stderr)
    }

    func testChatThroughAPipeKeepsHistory() throws {
        let script = Array("Hello\n\nHow are you?\n/reset\nbad ".utf8) + [0xFF, 0xC3] + Array(" input\n/exit\nnot read\n".utf8)
        let r = try moe(["chat", model, "--max-tokens", "4", "--temperature", "0", "--stats", "--system", "Be brief."], stdin: script)
        XCTAssertEqual(r.status, 0, r.stderr)
        let summaries = r.stderr.components(separatedBy: "\n").filter { $0.hasPrefix("[prompt") }
        XCTAssertEqual(summaries.count, 3, r.stderr)  // the empty line is skipped; /exit stops before "not read"
        XCTAssertTrue(summaries[0].contains("(0 reused)"))
        XCTAssertFalse(summaries[1].contains("(0 reused)"), "the second turn should reuse the cache: \(summaries[1])")
        XCTAssertTrue(summaries[2].contains("(0 reused)"), "after /reset nothing is reused: \(summaries[2])")
        XCTAssertTrue(r.stderr.contains("(conversation reset)"))
        XCTAssertTrue(r.stderr.contains("not valid UTF-8"))
        XCTAssertTrue(r.stderr.contains("no chat template; using ChatML"))
    }

    func testCtrlCStopsTheReply() throws {
        let run = try moe(["run", model, "Tell a long story", "--max-tokens", "4000", "--ignore-eos", "--threads", "1"], interruptAfterOutput: true)
        XCTAssertEqual(run.status, 130, run.stderr)
        XCTAssertTrue(run.stderr.contains("stop: cancelled") || run.stderr.contains("stop: context-full"), run.stderr)

        let chat = try moe(["chat", model, "--max-tokens", "4000", "--ignore-eos", "--threads", "1", "--stats"],
                           stdin: Array("Tell a long story\n".utf8), interruptAfterOutput: true, afterInterrupt: Array("/exit\n".utf8))
        XCTAssertEqual(chat.status, 0, chat.stderr)
        XCTAssertTrue(chat.stderr.contains("(stopped)") || chat.stderr.contains("stop: context-full"), chat.stderr)
    }
}
