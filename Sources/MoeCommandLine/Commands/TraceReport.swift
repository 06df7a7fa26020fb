import ArgumentParser
import Foundation
import SwiftMoE

extension TraceCommand {
    struct Report: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write one self-contained HTML page with SVG figures (expert frequency, layer transitions, co-activation, reuse distance, hit rate over tokens) and their numbers.")

        @Argument(help: "A trace written by moe trace (binary or its JSONL export).") var trace: String
        @Option(name: .shortAndLong, help: "The HTML file to write.") var output: String = "report.html"
        @Option(name: .customLong("svg-dir"), help: "Also write each figure as a standalone SVG file into this directory.") var svgDir: String?
        @Option(help: "Two MoE layers for the transition matrix, FROM,TO (default: the first two).") var pair: String?
        @Option(help: "MoE layer for the co-activation matrix (default: the first).") var layer: Int?

        func run() throws {
            try reportingErrors {
                let t = try TraceCodec.read(path: trace)
                var layers: (Int, Int)? = nil
                if let pair {
                    let parts = pair.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
                    guard parts.count == 2 else { throw ValidationError("--pair takes two layers, FROM,TO (e.g. 0,1)") }
                    layers = (parts[0], parts[1])
                }
                let report = try TraceReport(trace: t, pair: layers, layer: layer, title: "Expert trace: \((t.header.model as NSString).lastPathComponent)")
                try write(report.html, to: output)
                print("wrote \(output) (\(report.figures.count) figures)")
                if let svgDir {
                    try FileManager.default.createDirectory(atPath: svgDir, withIntermediateDirectories: true)
                    for f in report.figures {
                        let path = (svgDir as NSString).appendingPathComponent("\(f.name).svg")
                        try write(f.svg, to: path)
                        print("wrote \(path)")
                    }
                }
            }
        }
    }
}
