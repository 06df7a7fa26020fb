import Foundation

/// Memory figures of this process, from the kernel's own accounting.
public enum ProcessStats {
    /// Peak resident set size in bytes (`VmHWM` in /proc/self/status; `ru_maxrss` elsewhere).
    public static var peakResidentBytes: Int {
        if let kb = statusField("VmHWM") { return kb * 1024 }
        var usage = rusage()
        #if os(Linux)
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Int(usage.ru_maxrss) * 1024
        #else
        getrusage(RUSAGE_SELF, &usage)
        return Int(usage.ru_maxrss)
        #endif
    }

    /// Current resident set size in bytes (`VmRSS`), if the platform reports it.
    public static var residentBytes: Int? { statusField("VmRSS").map { $0 * 1024 } }

    private static func statusField(_ name: String) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(name + ":") {
            return Int(line.split(separator: " ").dropFirst().first ?? "")
        }
        return nil
    }
}
