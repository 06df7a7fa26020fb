import FuzzSupport
import SwiftMoE

/// A calibration file (`moe calibrate` output: routing statistics, sensitivities, activation
/// statistics): loaded as convert and run do, its path statistics checked against a real
/// model and used by a predictor, its importance table and planning options computed.
@_cdecl("fuzz_calibration_main")
public func main(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    Fuzz.main(argc, argv, { data, size in fuzzCalibration(data, size) })
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCalibration(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data else { return 0 }
    let path = Fuzz.write(Fuzz.bytes(data, size), name: "model.calibration.json")
    Fuzz.run {
        let table = try TransitionTable.load(path: path)
        let predictor = try ExpertPredictor(kind: .hybrid, depth: 2, width: 4, table: table)
        if let source = Fuzz.fixtureModel, table.layers == source.configuration.moeLayers, table.expertCount == source.configuration.expertCount {
            let layers = table.layers
            for (i, l) in layers.enumerated() where i + 1 < layers.count {
                _ = predictor.predict(target: layers[i + 1], currentLayer: l, current: [0, 1], previous: i > 0 ? [1] : nil, lookahead: nil)
            }
        }
    }
    Fuzz.run {
        let file = try CalibrationFile.load(path: path)
        _ = file.activations?.importanceTable()
        if let source = Fuzz.fixtureModel, file.sensitivity != nil {
            _ = try BitPlanning.options(source: source, calibration: file, path: path)
        }
    }
    return 0
}
