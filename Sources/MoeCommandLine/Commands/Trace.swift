import ArgumentParser
import Foundation
import SwiftMoE

/// `moe trace`: record (default), report, export.
struct TraceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trace",
        abstract: "Record which experts fire, how the expert cache serves them and where the time goes; report and export traces.",
        discussion: """
            moe trace MODEL (--prompt P | --text FILE) -o RUN.trace     record (docs/trace-format.md)
            moe trace report RUN.trace -o report.html [--svg-dir DIR]   HTML page with SVG figures
            moe trace export RUN.trace --format jsonl|csv|perfetto -o FILE
            """,
        subcommands: [Record.self, Report.self, Export.self],
        defaultSubcommand: Record.self)
}
