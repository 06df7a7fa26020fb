import Foundation
import SwiftMoE

/// What every harness shares: a scratch directory for inputs the library reads from files,
/// splitting one input into several files, and the fixed inputs harnesses pair with the
/// fuzzed bytes. libFuzzer runs one input at a time on one thread.
public enum Fuzz {
    /// This process's scratch directory (tmpfs when there is one), removed at exit.
    public static let scratch: String = {
        let base = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
        let dir = "\(base)/swiftmoe-fuzz-\(getpid())"
        try? FileManager.default.removeItem(atPath: dir)
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        atexit { try? FileManager.default.removeItem(atPath: "/dev/shm/swiftmoe-fuzz-\(getpid())") }
        return dir
    }()

    /// The fuzzer's input as bytes.
    public static func bytes(_ data: UnsafePointer<UInt8>, _ size: Int) -> [UInt8] {
        Array(UnsafeBufferPointer(start: data, count: size))
    }

    /// Writes `bytes` to `name` in the scratch directory as a new file (unlinked first, so a
    /// mapping of the previous input that is still alive keeps its own bytes) and returns its path.
    @discardableResult
    public static func write(_ bytes: [UInt8], name: String, in directory: String? = nil) -> String {
        let path = "\(directory ?? scratch)/\(name)"
        unlink(path)
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { fatalError("fuzz harness: cannot create \(path)") }
        var done = 0
        bytes.withUnsafeBytes { raw in
            while done < raw.count {
                let n = Foundation.write(fd, raw.baseAddress! + done, raw.count - done)
                guard n > 0 else { fatalError("fuzz harness: cannot write \(path)") }
                done += n
            }
        }
        close(fd)
        return path
    }

    /// A fresh directory holding `files` (name → bytes).
    public static func directory(_ files: [(String, [UInt8])], name: String = "model") -> String {
        let dir = "\(scratch)/\(name)"
        try? FileManager.default.removeItem(atPath: dir)
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for (file, bytes) in files { write(bytes, name: file, in: dir) }
        return dir
    }

    /// Separates the parts of one input that stands for several files.
    public static let marker: [UInt8] = Array("\n#@FILE@#\n".utf8)

    /// `bytes` cut at every ``marker``.
    public static func split(_ bytes: [UInt8]) -> [[UInt8]] {
        var parts: [[UInt8]] = []
        var start = 0
        var i = 0
        let m = marker
        while i + m.count <= bytes.count {
            if bytes[i] == m[0], Array(bytes[i..<(i + m.count)]) == m {
                parts.append(Array(bytes[start..<i]))
                i += m.count
                start = i
            } else {
                i += 1
            }
        }
        parts.append(Array(bytes[start...]))
        return parts
    }

    /// The repository's root (for fixtures harnesses read once at start).
    public static let repository: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<5 { url.deleteLastPathComponent() }  // tools/fuzz/Sources/FuzzSupport/FuzzSupport.swift
        return url.path
    }()

    /// Strings every tokenizer harness encodes and decodes.
    public static let texts = ["Hello, world!", "  leading spaces and\ttabs\n\nnewlines", "naïve café 日本語 🙂 \u{0}\u{7F}",
                               "<s>[INST] special tokens [/INST]</s><|im_start|>", "1234567890 don't I'll", ""]

    /// Loads and exercises a tokenizer the way run/tokenize do: encode and decode a few strings,
    /// stream the decoding, and decode every id near the ends of the vocabulary.
    public static func exercise(_ tokenizer: Tokenizer) {
        for text in texts {
            for special in [true, false] {
                let ids = tokenizer.encode(text, addSpecialTokens: special, parseSpecial: special)
                _ = tokenizer.decode(ids, skipSpecialTokens: special)
                var stream = tokenizer.streamingDecoder()
                for id in ids { _ = stream.append(id) }
                _ = stream.finish()
            }
        }
        let n = tokenizer.vocabularySize
        let ids = Array(0..<min(n, 64)) + Array(max(0, n - 8)..<n) + [-1, n, Int.max]
        _ = tokenizer.decode(ids)
        for id in ids { _ = tokenizer.pieceDescription(id) }
    }
}

extension Fuzz {
    /// Errors are fine; a message that is not one sane line is a finding (issue 19: names and
    /// strings from a file are shown escaped and cut). Traps so libFuzzer saves the input.
    public static func check(_ error: any Error) {
        let message = "\(error)"
        if message.contains("\n") || message.contains("\r") || message.unicodeScalars.count > maxMessage {
            FileHandle.standardError.write(Data("fuzz: unusable error message (\(message.unicodeScalars.count) characters): \(message.prefix(600).debugDescription)\n".utf8))
            abort()
        }
    }

    /// The longest error message accepted: a few paths and shown strings.
    public static let maxMessage = 2000

    /// Runs `body`; a thrown error is fine if its message is usable.
    public static func run(_ body: () throws -> Void) {
        do { try body() } catch { check(error) }
    }

    /// What a model source yields to inspect and to loading (`moe inspect`, `moe logits`).
    /// A model `moe inspect` accepts must also load and evaluate (issue 19 item 5: inspect
    /// validates as deeply as loading); a model it accepts that `moe logits` refuses traps.
    public static func exercise(_ path: String) {
        var inspected = false
        run {
            let source = try ModelSource(path: path)
            var report = try ModelInspection(source: source)
            try ModelInspection.checkLoads(source)
            inspected = true
            report.describeTokenizer()
            _ = report.text
            if let error = report.tokenizerError { check(SimpleError(error)) }
        }
        guard inspected else { return }
        do {
            let model = try Model(path: path, options: ExecutorOptions(threads: 1))
            let vocab = model.configuration.vocabSize
            _ = try model.logits(tokens: [0, vocab - 1, vocab / 2].filter { $0 >= 0 })
        } catch {
            check(error)
            // Expert records' payloads (checksum, LZ4 stream) are verified when an expert is
            // read, not by inspect, which checks structure only (docs/reliability.md).
            switch error as? ExpertStoreError {
            case .checksumMismatch?, .corruptRecord?: return
            default: break
            }
            FileHandle.standardError.write(Data("fuzz: moe inspect accepts a model that loading refuses: \(error)\n".utf8))
            abort()
        }
    }
}

/// An error message as text (to check messages that arrive as strings).
public struct SimpleError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

extension Fuzz {
    /// A small real model (the Mixtral test fixture) that plans and calibrations are checked
    /// against, opened once.
    public static let fixtureModel: ModelSource? = try? ModelSource(path: repository + "/Tests/Fixtures/mixtral/model-q8_0.gguf")
}

@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32) -> Int32

extension Fuzz {
    /// The process entry: libFuzzer's driver over `callback`. SwiftPM links an executable with
    /// `main` defined as `<module>_main`, so each harness defines that symbol and calls this
    /// (libFuzzer's own `main` is then not linked).
    public static func main(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>,
                            _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32) -> Int32 {
        var argc = argc
        var argv = argv
        return LLVMFuzzerRunDriver(&argc, &argv, callback)
    }
}
