import ArgumentParser
import Foundation
import SwiftMoE

struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a .moe expert store: every expert its own aligned, checksummed record at its own type.",
        discussion: """
            INPUT is a GGUF file or a Hugging Face directory. Dense weights are copied as they are;
            experts are stored at --bits (or per expert from --bit-plan), LZ4-compressed only where that
            makes loading faster (see --compression). The output appears only when complete (written
            to OUT.partial first).
            """)

    @Argument(help: "A GGUF file or Hugging Face model directory.") var input: String
    @Option(name: .shortAndLong, help: "The .moe file to write.") var output: String
    @Option(help: "Type of every expert: keep (as in the source, default), or \(BitPlan.writableTypeNames). Lower bits: smaller store and faster paging, lower quality.")
    var bits: String?
    @Option(name: .customLong("bit-plan"), help: "A JSON bit plan giving each expert its own type (see docs/store-format.md).")
    var bitPlan: String?
    @Option(help: "auto (default): LZ4 only where reading the smaller record and decoding it beats reading it raw at the disk's speed; size: LZ4 wherever it saves 10% of the bytes; none: all raw.")
    var compression: StoreWriter.CompressionMode = .auto
    @Option(name: .customLong("disk-bandwidth"), help: "Direct-read speed (e.g. 1.5GB, per second) of the storage the store will be read from, for --compression auto. Default: measured on the input's file system. Give it when the store is for another device (phones: 0.1-0.5GB).")
    var diskBandwidth: ByteSize?
    @Option(help: "Embed path statistics from moe calibrate, for --prefetch path/hybrid.") var calibration: String?
    @Flag(help: "Print the report as JSON.") var json = false

    func validate() throws {
        if bits != nil, bitPlan != nil { throw ValidationError("give either --bits or --bit-plan, not both") }
        if let bits, BitPlan.storableType(bits) == nil {
            throw ValidationError("--bits \(bits) is not a type the store can write (\(BitPlan.writableTypeNames))")
        }
    }

    func run() throws {
        try reportingErrors {
            let plan = try bitPlan.map { try BitPlan.load(path: $0) } ?? BitPlan(default: bits ?? "keep")
            let table = try calibration.map { try TransitionTable.load(path: $0) }
            let start = Date()
            let interactive = isatty(STDERR_FILENO) != 0
            var lastPrint = Date.distantPast
            let report = try Converter.convert(input: input, output: output, options: .init(plan: plan, compression: compression, calibration: table, diskBandwidth: diskBandwidth.map { Double($0.bytes) })) { p in
                let now = Date()
                guard p.expertsDone == p.expertsTotal || now.timeIntervalSince(lastPrint) > 0.25 else { return }
                lastPrint = now
                let fraction = Double(p.expertsDone) / Double(max(p.expertsTotal, 1))
                let elapsed = now.timeIntervalSince(start)
                let eta = fraction > 0 ? elapsed * (1 - fraction) / fraction : 0
                let bar = String(repeating: "#", count: Int(fraction * 30)) + String(repeating: " ", count: 30 - Int(fraction * 30))
                let line = String(format: "[%@] %3.0f%%  %d/%d experts  %@  ETA %.0fs", bar, 100 * fraction, p.expertsDone, p.expertsTotal, formatBytes(p.bytesWritten), eta)
                FileHandle.standardError.write(Data((interactive ? "\r" + line : line + "\n").utf8))
            }
            if interactive { FileHandle.standardError.write(Data("\n".utf8)) }
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                print(String(decoding: try encoder.encode(report), as: UTF8.self))
            } else {
                print("wrote \(report.output): \(report.experts) experts, \(report.denseTensors) dense tensors (\(formatBytes(report.denseBytes)))")
                print("experts: \(formatBytes(report.expertBytesDecoded)) decoded, \(formatBytes(report.expertBytesStored)) stored, \(report.compressedRecords) records LZ4-compressed"
                      + (report.diskBandwidth.map { String(format: " (decided against %.2f GB/s direct reads)", $0 / 1e9) } ?? ""))
                print("types: " + report.typeCounts.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ") + " (tensors)")
                if !report.fallbacks.isEmpty {
                    print("note: rows not divisible by the planned block size were stored as: " + report.fallbacks.sorted { $0.key < $1.key }.map { "\($0.key) ×\($0.value)" }.joined(separator: ", "))
                }
                print(String(format: "took %.1f s", report.seconds))
            }
        }
    }
}

extension StoreWriter.CompressionMode: ExpressibleByArgument {}
