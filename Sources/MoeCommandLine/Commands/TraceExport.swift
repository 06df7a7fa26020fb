import ArgumentParser
import Foundation
import SwiftMoE

extension TraceCommand {
    struct Export: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Convert a trace to JSONL (lossless), CSV (one table) or Chrome/Perfetto trace-event JSON (open in ui.perfetto.dev).")

        enum Format: String, ExpressibleByArgument, CaseIterable { case jsonl, csv, perfetto }

        @Argument(help: "A trace written by moe trace.") var trace: String
        @Option(help: "jsonl, csv or perfetto (default: from the output's extension: .jsonl, .csv, .json).") var format: Format?
        @Option(help: "The CSV table: accesses (one row per expert request, default), routes, layers, loads.") var table: String = "accesses"
        @Option(name: .shortAndLong, help: "The file to write.") var output: String

        func run() throws {
            try reportingErrors {
                let ext = (output as NSString).pathExtension.lowercased()
                guard let f = format ?? ["jsonl": Format.jsonl, "csv": .csv, "json": .perfetto][ext] else {
                    throw ValidationError("cannot tell the format from \(output); pass --format jsonl|csv|perfetto")
                }
                let t = try TraceCodec.read(path: trace)
                switch f {
                case .jsonl: try TraceJSONL.encode(t).write(to: URL(fileURLWithPath: output))
                case .perfetto: try TracePerfetto.encode(t).write(to: URL(fileURLWithPath: output))
                case .csv:
                    guard let tab = TraceCSV.Table(rawValue: table) else {
                        throw ValidationError("--table must be one of \(TraceCSV.Table.allCases.map(\.rawValue).joined(separator: ", "))")
                    }
                    try write(TraceCSV.encode(t, table: tab), to: output)
                }
                print("wrote \(output)")
            }
        }
    }
}
