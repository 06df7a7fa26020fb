import Foundation

/// Byte sizes and durations as people type and read them: the one parser and printer for
/// `--memory`, `--expert-cache`, `--target-size`, config files, summaries and progress lines.
public enum Units {
    /// Parses sizes like `2GB`, `1.5GiB`, `800M`, `4096` (bytes). Decimal units are powers of
    /// 1000, binary (KiB, MiB, GiB) powers of 1024; a bare `K`/`M`/`G` means binary.
    /// Returns nil for anything else, negative or not finite, or too large for an `Int`.
    public static func parseBytes(_ text: String) -> Int? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let digits = trimmed.prefix { $0.isNumber || $0 == "." }
        guard let value = Double(digits), value >= 0, value.isFinite else { return nil }
        let unit = trimmed.dropFirst(digits.count).trimmingCharacters(in: .whitespaces).lowercased()
        let scale: Double
        switch unit {
        case "", "b": scale = 1
        case "k", "kib": scale = 1024
        case "kb": scale = 1000
        case "m", "mib": scale = 1_048_576
        case "mb": scale = 1_000_000
        case "g", "gib": scale = 1_073_741_824
        case "gb": scale = 1_000_000_000
        case "t", "tib": scale = Double(1 << 40)
        case "tb": scale = 1e12
        default: return nil
        }
        let bytes = value * scale
        guard bytes < Double(Int.max / 2) else { return nil }
        return Int(bytes)
    }

    /// `1.50 MiB`-style sizes for people (binary units, two decimals).
    public static func formatBytes(_ bytes: Int) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(bytes)
        var unit = 0
        while abs(value) >= 1024, unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return unit == 0 ? "\(bytes) B" : String(format: "%.2f %@", value, units[unit])
    }

    /// A byte count as ``parseBytes(_:)`` reads it back exactly, in the largest unit that
    /// divides it (`200MB`, `5304KiB`, `4096`): for command lines and config files a program writes.
    public static func exactBytes(_ bytes: Int) -> String {
        for (unit, scale) in [("GB", 1_000_000_000), ("GiB", 1 << 30), ("MB", 1_000_000), ("MiB", 1 << 20), ("KiB", 1 << 10)]
        where bytes >= scale && bytes % scale == 0 {
            return "\(bytes / scale)\(unit)"
        }
        return "\(bytes)"
    }

    /// `42s`, `3m05s`, `2h07m` for progress lines and ETAs; `?` when not known.
    public static func formatDuration(_ seconds: Double) -> String {
        guard seconds.isFinite, seconds >= 0 else { return "?" }
        if seconds < 90 { return String(format: "%.0fs", seconds) }
        if seconds < 5400 {
            return String(format: "%.0fm%02.0fs", (seconds / 60).rounded(.down), seconds.truncatingRemainder(dividingBy: 60).rounded(.down))
        }
        return String(format: "%.0fh%02.0fm", (seconds / 3600).rounded(.down), (seconds / 60).truncatingRemainder(dividingBy: 60).rounded(.down))
    }
}
