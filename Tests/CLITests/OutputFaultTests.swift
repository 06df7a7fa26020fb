import Foundation
import SwiftMoE
import TestSupport
import XCTest

/// `moe convert` and `moe calibrate` interrupted (SIGINT, SIGTERM) or out of disk (a real
/// small tmpfs): no partial output left, the previous output intact; a mapped model truncated
/// under a run: a one-line error and exit status 74, not a bare SIGBUS (docs/reliability.md).
final class OutputFaultTests: XCTestCase {
    let gguf = Fixtures.path("qwen2moe/model-q8_0.gguf")

    func files(in dir: URL) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
    }

    func text(in dir: TemporaryDirectory) throws -> String {
        let path = dir.path("text.txt")
        try String(repeating: "def f(x):\n    return x + 1\n# Hello, world! 123 tokens\n", count: 12).write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func start(_ arguments: [String]) throws -> (Process, Pipe) {
        let process = Process()
        process.executableURL = try Fixtures.moeBinary
        process.arguments = arguments
        let err = Pipe()
        process.standardOutput = FileHandle.nullDevice
        process.standardError = err
        try process.run()
        return (process, err)
    }

    /// The store's `.partial` file is a FIFO here, so the writer blocks mid-store once the pipe
    /// is full: the signal lands while the output is being written, every time.
    func testInterruptedConvertLeavesNoPartialFileAndThePreviousStore() throws {
        for signalNumber in [SIGINT, SIGTERM] {
            let dir = TemporaryDirectory()
            let out = dir.path("model.moe")
            _ = try Converter.convert(input: gguf, output: out, options: .init(plan: BitPlan(default: "keep"), compression: .none))
            let previous = try Data(contentsOf: URL(fileURLWithPath: out))
            XCTAssertEqual(mkfifo(out + ".partial", 0o644), 0)
            let reader = open(out + ".partial", O_RDONLY | O_NONBLOCK)
            XCTAssertGreaterThanOrEqual(reader, 0)
            defer { close(reader) }
            let (process, err) = try start(["convert", gguf, "-o", out, "--bits", "q4_0", "--compression", "none"])
            // Wait for the first bytes of the store (the placeholder header), then stop reading.
            var buffer = [UInt8](repeating: 0, count: 4096)
            let deadline = Date().addingTimeInterval(60)
            var got = 0
            while got == 0, process.isRunning, Date() < deadline {
                got = max(0, read(reader, &buffer, buffer.count))
                if got == 0 { usleep(2000) }
            }
            XCTAssertGreaterThan(got, 0, "convert never wrote its output")
            usleep(100_000)  // let it fill the pipe and block
            XCTAssertTrue(process.isRunning, "convert finished writing into a full pipe?")
            kill(process.processIdentifier, signalNumber)
            let stderr = err.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            // Killed by the signal, or (where the re-raised signal is blocked) exit status 128 + signal.
            let byLabel = process.terminationReason == .uncaughtSignal ? process.terminationStatus : process.terminationStatus - 128
            XCTAssertEqual(byLabel, signalNumber, String(decoding: stderr, as: UTF8.self))
            XCTAssertEqual(try files(in: dir.url), ["model.moe"], "signal \(signalNumber): the .partial file is left")
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: out)), previous, "signal \(signalNumber): the previous store changed")
        }
    }

    /// Interrupted at some point of its run (timing varies): the output is the previous file or
    /// a complete new one, never a torn one, and no temporary file stays.
    func testInterruptedCalibrateKeepsAWholeOutput() throws {
        let dir = TemporaryDirectory()
        let text = try text(in: dir)
        let out = dir.path("cal.json")
        let args = ["calibrate", gguf, "--text", text, "-o", out, "--ctx-size", "32", "--sensitivity-windows", "1", "--types", "q4_0,q8_0", "--threads", "1"]
        let first = try Fixtures.runMoe(args)
        XCTAssertEqual(first.status, 0, first.stderr)
        let previous = try Data(contentsOf: URL(fileURLWithPath: out))
        for delay: useconds_t in [0, 50_000, 200_000] {
            let (process, err) = try start(args + ["--restart"])
            usleep(delay)
            kill(process.processIdentifier, SIGINT)
            _ = err.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            XCTAssertEqual(try files(in: dir.url), ["cal.json", "text.txt"], "delay \(delay)")
            let now = try Data(contentsOf: URL(fileURLWithPath: out))
            if now != previous { XCTAssertNoThrow(try CalibrationFile.load(path: out), "delay \(delay): a torn file") }
        }
    }

    /// A real full disk: a tmpfs with room for one output but not two copies of it.
    func testDiskFullDuringConvertAndCalibrate() throws {
        let dir = TemporaryDirectory()
        let text = try text(in: dir)
        let staged = dir.path("staged")
        try FileManager.default.createDirectory(atPath: staged, withIntermediateDirectories: true)
        let store = staged + "/model.moe", calibration = staged + "/cal.json"
        _ = try Converter.convert(input: gguf, output: store, options: .init(plan: BitPlan(default: "keep"), compression: .none))
        let calibrate = ["calibrate", gguf, "--text", text, "--ctx-size", "32", "--sensitivity-windows", "1", "--types", "q4_0,q8_0", "--threads", "1", "--restart"]
        let first = try Fixtures.runMoe(calibrate + ["-o", calibration])
        XCTAssertEqual(first.status, 0, first.stderr)
        let storeBytes = try Data(contentsOf: URL(fileURLWithPath: store))
        let calibrationBytes = try Data(contentsOf: URL(fileURLWithPath: calibration))

        let mnt = dir.path("tmpfs")
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
        let pages = { (n: Int) in (n + 4095) / 4096 * 4096 }
        let size = pages(storeBytes.count) + pages(calibrationBytes.count) + 8192
        let mount = run("/bin/mount", ["-t", "tmpfs", "-o", "size=\(size)", "tmpfs", mnt])
        guard mount.status == 0 else { throw XCTSkip("cannot mount a tmpfs (needs root): \(mount.output)") }
        defer { _ = dir }  // (runs after the unmount)
        defer { _ = run("/bin/umount", [mnt]) }
        try storeBytes.write(to: URL(fileURLWithPath: mnt + "/model.moe"))
        try calibrationBytes.write(to: URL(fileURLWithPath: mnt + "/cal.json"))
        // 8 KiB free: neither a second store nor a second calibration file fits.
        let convert = try Fixtures.runMoe(["convert", gguf, "-o", mnt + "/model.moe", "--bits", "q8_0", "--compression", "none"])
        XCTAssertEqual(convert.status, 1, convert.stderr)
        XCTAssertTrue(convert.stderr.contains("No space left on device") && convert.stderr.contains(mnt + "/model.moe"), convert.stderr)
        let again = try Fixtures.runMoe(calibrate + ["-o", mnt + "/cal.json"])
        XCTAssertEqual(again.status, 1, again.stderr)
        XCTAssertTrue(again.stderr.contains("No space left on device") && again.stderr.contains(mnt + "/cal.json"), again.stderr)
        XCTAssertEqual(try files(in: URL(fileURLWithPath: mnt)), ["cal.json", "model.moe"])
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: mnt + "/model.moe")), storeBytes)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: mnt + "/cal.json")), calibrationBytes)
    }

    /// Truncated while `moe run` generates from its mapping (no --memory: every weight mapped).
    func testModelTruncatedWhileMappedIsAClearError() throws {
        let dir = TemporaryDirectory()
        let model = dir.path("model.gguf")
        try FileManager.default.copyItem(atPath: Fixtures.path("qwen3moe/model-q8_0.gguf"), toPath: model)
        let process = Process()
        process.executableURL = try Fixtures.moeBinary
        process.arguments = ["run", model, "Tell a long story", "--max-tokens", "100000", "--ignore-eos", "--threads", "1"]
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        // Once the reply has started, cut the file to its first page.
        let first = out.fileHandleForReading.availableData
        XCTAssertFalse(first.isEmpty, "no output before the truncation")
        XCTAssertEqual(truncate(model, 4096), 0)
        _ = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationReason, .exit, stderr)
        XCTAssertEqual(process.terminationStatus, 74, stderr)
        XCTAssertTrue(stderr.contains("\(model) changed while in use"), stderr)
        XCTAssertEqual(stderr.components(separatedBy: "changed while in use").count, 2, "one message: \(stderr)")
    }

    func run(_ tool: String, _ arguments: [String]) -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        do { try process.run() } catch { return (-1, "\(error)") }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}
