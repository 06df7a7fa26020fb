extension TransitionTable {
    /// The `.moe` store section that holds a model's path statistics (this table as JSON with
    /// sorted keys): `moe convert --calibration` writes it, and a paged model with a path or
    /// hybrid predictor reads it before any calibration file.
    public static let storeSection = "calibration"
}
