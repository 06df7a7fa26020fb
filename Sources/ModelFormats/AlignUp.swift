/// `value` rounded up to the next multiple of `alignment`, or nil when `value` is negative or
/// the result does not fit in an `Int`. The package's one rounding-up helper: offsets and
/// lengths read from files are untrusted, so the addition is overflow-checked rather than
/// written as `(value + alignment - 1) / alignment * alignment`, which traps on a hostile value.
///
/// - Precondition: `alignment > 0` (callers pass constants or an alignment already validated).
@inlinable
public func alignUp(_ value: Int, to alignment: Int) -> Int? {
    precondition(alignment > 0, "alignment must be positive")
    guard value >= 0 else { return nil }
    let remainder = value % alignment
    guard remainder != 0 else { return value }
    let (sum, overflow) = value.addingReportingOverflow(alignment - remainder)
    return overflow ? nil : sum
}
