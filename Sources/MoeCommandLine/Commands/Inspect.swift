import ArgumentParser
import Foundation
import SwiftMoE

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Describe a model: architecture, experts, tensor types, dense vs expert bytes.")

    @OptionGroup var model: ModelArgument
    @Flag(help: "Print JSON instead of text.") var json = false

    func run() throws {
        try reportingErrors {
            let source = try ModelSource(path: model.model)
            var report = try ModelInspection(source: source)
            try ModelInspection.checkLoads(source)
            report.describeTokenizer()
            if json {
                print(try prettyJSON(report))
            } else {
                print(report.text)
            }
        }
    }
}
