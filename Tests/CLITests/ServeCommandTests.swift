import Foundation
@testable import MoeCommandLine
import Serving
import SwiftMoE
import TestSupport
import XCTest

/// `moe serve`'s flags (their defaults are `ServerOptions`'), and the process: it prints where
/// it listens, and SIGTERM stops it with status 0.
final class ServeCommandTests: XCTestCase {
    func options(_ arguments: [String]) throws -> ServerOptions {
        try XCTUnwrap(try Moe.parseChecked(["serve"] + arguments) as? Serve).serverOptions
    }

    func testFlagsBecomeServerOptions() throws {
        var expected = ServerOptions()
        expected.apiKey = ProcessInfo.processInfo.environment["MOE_API_KEY"].flatMap { $0.isEmpty ? nil : $0 }
        XCTAssertEqual(try options([]), expected)
        let o = try options(["--host", "0.0.0.0", "--port", "0", "--max-queue", "0", "--request-timeout", "0", "--max-body-size", "64KiB",
                             "--api-key", "k", "--model-name", "m", "--fallback", "http://127.0.0.1:9000/v1", "--fallback-model", "big",
                             "--route", "model=big*", "--route", "min-prompt-tokens=900"])
        XCTAssertEqual(o.host, "0.0.0.0")
        XCTAssertEqual(o.port, 0)
        XCTAssertEqual(o.maxQueue, 0)
        XCTAssertNil(o.requestTimeout)
        XCTAssertEqual(o.maxBodySize, 65536)
        XCTAssertEqual(o.apiKey, "k")
        XCTAssertEqual(o.routes, [.model("big*"), .minPromptTokens(900)])
        XCTAssertEqual(o.fallbackModel, "big")
    }

    func testBadValuesAreUsageErrors() {
        let cases: [([String], String)] = [
            (["--port", "70000"], "--port must be between 0 and 65535"),
            (["--max-queue=-1"], "--max-queue must be between"),
            (["--request-timeout=-2"], "--request-timeout must be between"),
            (["--max-body-size", "10"], "--max-body-size must be between 1KiB and 1GiB"),
            (["--route", "min-prompt-tokens=5"], "--route needs --fallback URL"),
            (["--fallback", "http://x", "--route", "colour=blue"], "unknown rule colour"),
            (["--fallback", "localhost:8080"], "is not an http:// or https:// URL"),
            (["--api-key", ""], "--api-key must not be empty"),
        ]
        for (arguments, reason) in cases {
            do {
                _ = try Moe.parseChecked(["serve"] + arguments)
                XCTFail("\(arguments) parsed")
            } catch {
                XCTAssertTrue(Moe.fullMessage(for: error).contains(reason), "\(arguments): \(Moe.fullMessage(for: error))")
                XCTAssertEqual(Moe.exitCode(for: error).rawValue, 64)
            }
        }
    }

    func testServesUntilSIGTERM() throws {
        let process = Process()
        process.executableURL = try Fixtures.moeBinary
        process.arguments = ["serve", Fixtures.packageRoot.appendingPathComponent("Models/demo/demo.moe").path, "--port", "0"]
        let err = Pipe()
        process.standardError = err
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        var output = ""
        while !output.contains("\n") {
            let data = err.fileHandleForReading.availableData
            if data.isEmpty { break }  // the process ended
            output += String(decoding: data, as: UTF8.self)
        }
        XCTAssertTrue(output.hasPrefix("moe serve: demo (context 1024) on http://127.0.0.1:"), output)
        let started = Date()
        process.terminate()  // SIGTERM
        process.waitUntilExit()
        XCTAssertEqual(process.terminationReason, .exit)
        XCTAssertEqual(process.terminationStatus, 0)
        XCTAssertLessThan(Date().timeIntervalSince(started), 10)
    }
}
