import ArgumentParser
import Foundation
import SwiftMoE

/// Runs `body`, turning library errors into a one-line message and exit status 1.
func reportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let error as ExitCode {
        throw error
    } catch {
        FileHandle.standardError.write(Data("error: \(error)\n".utf8))
        throw ExitCode(1)
    }
}

/// The contents of a text file given with `flag`, invalid UTF-8 repaired.
func readText(_ path: String, flag: String = "--text") throws -> String {
    guard let data = FileManager.default.contents(atPath: path) else { throw ValidationError("cannot read \(flag) \(path)") }
    return String(decoding: data, as: UTF8.self)
}

/// Writes a text file, or throws a message naming it.
func write(_ text: String, to path: String) throws {
    do { try text.write(toFile: path, atomically: true, encoding: .utf8) } catch {
        throw ValidationError("cannot write \(path): \(error.localizedDescription)")
    }
}

/// `value` as pretty-printed JSON with sorted keys (the `--json` output of every command).
func prettyJSON<T: Encodable>(_ value: T) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    return String(decoding: try encoder.encode(value), as: UTF8.self)
}

/// One line about paging, for the end of a run.
func pagingSummary(_ model: Model) -> String? {
    guard let store = model.pagedExperts else { return nil }
    let m = store.metrics
    var line = String(format: "experts: %d hits, %d misses (%.1f%% hit rate), %@ read in %.3f s, verify %.3f s, decode %.3f s, stalled %.3f s; pool %@",
                      m.hits, m.misses, 100 * m.hitRate, Units.formatBytes(m.bytesRead), m.readSeconds, m.verifySeconds, m.decodeSeconds, m.stallSeconds, Units.formatBytes(m.poolCapacity))
    if let plan = model.memoryPlan { line += ", budget \(Units.formatBytes(plan.budget))" }
    line += m.directIO ? ", direct I/O" : ", buffered I/O + fadvise"
    if m.bytesRead > 0 {
        line += String(format: "; reads %.2f GB/s at depth %d", m.readBytesPerSecond / 1e9, m.readDepth)
        if let disk = m.diskBytesPerSecond, let share = m.readEfficiency {
            line += String(format: " = %.0f%% of the disk's %.2f GB/s (direct, same depth)", 100 * share, disk / 1e9)
        }
    }
    if let label = model.lossyLabel { line += "; \(label)" }
    let report = model.pagingReport()
    if let belady = report.beladyHitRate {
        line += String(format: "; Belady MIN at this capacity %.1f%%", 100 * belady)
    }
    if let status = model.transformer.prefetchAutoStatus { line += "; prefetch \(status)" }
    if let predictor = model.transformer.predictor, predictor.kind != .none {
        let p = model.transformer.predictionStats
        line += String(format: "; prefetch %@: %d issued, %d used, %d wasted, %d late, precision %.1f%%, recall %.1f%%",
                       predictor.kind.rawValue, m.prefetchIssued, m.prefetchUseful, m.prefetchWasted, m.prefetchLate, 100 * p.precision(), 100 * p.recall())
    }
    return line
}
