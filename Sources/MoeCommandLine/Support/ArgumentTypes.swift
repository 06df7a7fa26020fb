import ArgumentParser
import Foundation
import SwiftMoE

/// `--tokens 1,5,9`: comma-separated token ids.
struct TokenList: ExpressibleByArgument {
    var ids: [Int]
    init?(argument: String) {
        let parts = argument.split(separator: ",", omittingEmptySubsequences: false)
        var ids: [Int] = []
        for p in parts {
            guard let id = Int(p.trimmingCharacters(in: .whitespaces)), id >= 0 else { return nil }
            ids.append(id)
        }
        guard !ids.isEmpty else { return nil }
        self.ids = ids
    }
    static var defaultCompletionKind: CompletionKind { .default }
}

/// A byte size on the command line: `2GB`, `1.5GiB`, `800M`, `4096`.
struct ByteSize: ExpressibleByArgument {
    var bytes: Int
    init(bytes: Int) { self.bytes = bytes }
    init?(argument: String) {
        guard let b = Units.parseBytes(argument), b > 0 else { return nil }
        bytes = b
    }
    var defaultValueDescription: String { Units.formatBytes(bytes) }
}

/// A fraction on the command line: `2%` or `0.02`.
struct Fraction: ExpressibleByArgument {
    var value: Double
    init?(argument: String) {
        let text = argument.trimmingCharacters(in: .whitespaces)
        let number = text.hasSuffix("%") ? Double(text.dropLast()).map { $0 / 100 } : Double(text)
        guard let number, number.isFinite, number >= 0, number < 10 else { return nil }
        value = number
    }
}

extension KernelPath: ExpressibleByArgument {}
extension KVCache.ElementType: ExpressibleByArgument {}
extension CachePolicyKind: ExpressibleByArgument {}
extension PredictorKind: ExpressibleByArgument {}
extension MissPolicy: ExpressibleByArgument {}
extension BitPlanner.Method: ExpressibleByArgument {}
extension StoreWriter.CompressionMode: ExpressibleByArgument {}
