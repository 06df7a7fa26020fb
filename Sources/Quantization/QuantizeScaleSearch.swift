/// The scale searches of the K-quant quantizers (ports of `ggml-quants.c` helpers), shared by
/// the reference ports (QuantizeK.swift) and the importance-weighted ones (QuantizeWeighted.swift).

// MARK: - Scale search (ports of ggml-quants.c helpers)

extension Quantize {
    /// `make_qkx2_quants`: the scale and min (`x ≈ scale * L - min`, `L` in 0...nmax, min ≥ 0)
    /// minimising the weighted error. Starts from the min/max fit, then tries `steps + 1`
    /// alternative scales `(nmax + rmin + rdelta * k) / (max - min)`, solving the weighted
    /// least-squares scale and min for each level assignment. Returns the scale; `min` receives
    /// the (non-negative) min. `absoluteError` chooses |error| over squared error.
    /// (Inlined so the sub-block length is a constant, as in the C code.)
    @inline(__always)
    static func makeQKX2Quants(
        count n: Int, nmax: Int, _ x: UnsafePointer<Float>, weights: UnsafePointer<Float>,
        levels: UnsafeMutablePointer<UInt8>, min theMin: inout Float, auxiliary candidates: UnsafeMutablePointer<UInt8>,
        rmin: Float, rdelta: Float, steps nstep: Int, absoluteError useMad: Bool
    ) -> Float {
        var min = x[0]
        var max = x[0]
        var sumW = weights[0]
        var sumX = sumW * x[0]
        for i in 1..<n {
            if x[i] < min { min = x[i] }
            if x[i] > max { max = x[i] }
            let w = weights[i]
            sumW += w
            sumX += w * x[i]
        }
        if min > 0 { min = 0 }
        if max == min {
            for i in 0..<n { levels[i] = 0 }
            theMin = -min
            return 0
        }
        var iscale = Float(nmax) / (max - min)
        var scale = 1 / iscale
        var bestError: Float = 0
        for i in 0..<n {
            let l = nearestInt(iscale * (x[i] - min))
            levels[i] = UInt8(Swift.max(0, Swift.min(nmax, l)))
            var diff = scale * Float(levels[i]) + min - x[i]
            diff = useMad ? abs(diff) : diff * diff
            bestError += weights[i] * diff
        }
        if nstep < 1 {
            theMin = -min
            return scale
        }
        for step in 0...nstep {
            iscale = (rmin + rdelta * Float(step) + Float(nmax)) / (max - min)
            var sumL: Float = 0
            var sumL2: Float = 0
            var sumXL: Float = 0
            for i in 0..<n {
                let l = Swift.max(0, Swift.min(nmax, nearestInt(iscale * (x[i] - min))))
                candidates[i] = UInt8(l)
                let w = weights[i]
                let lf = Float(l)
                sumL += w * lf
                sumL2 += w * lf * lf
                sumXL += w * lf * x[i]
            }
            let D = sumW * sumL2 - sumL * sumL
            if D > 0 {
                var thisScale = (sumW * sumXL - sumX * sumL) / D
                var thisMin = (sumL2 * sumX - sumL * sumXL) / D
                if thisMin > 0 {
                    thisMin = 0
                    thisScale = sumXL / sumL2
                }
                var error: Float = 0
                for i in 0..<n {
                    var diff = thisScale * Float(candidates[i]) + thisMin - x[i]
                    diff = useMad ? abs(diff) : diff * diff
                    error += weights[i] * diff
                }
                if error < bestError {
                    for i in 0..<n { levels[i] = candidates[i] }
                    bestError = error
                    scale = thisScale
                    min = thisMin
                }
            }
        }
        theMin = -min
        return scale
    }

    /// `make_q3_quants` with `do_rmse`: a signed scale and levels `L` in 0..<2·nmax
    /// (`x ≈ scale * (L - nmax)`), refined by coordinate descent on the error weighted by x².
    static func makeQ3Quants(count n: Int, nmax: Int, _ x: UnsafePointer<Float>, levels: UnsafeMutablePointer<Int8>) -> Float {
        guard let fit = signedFit(count: n, nmax: nmax, x, levels: levels, weights: nil, bias: 0) else { return 0 }
        var sumlx = fit.sumlx, suml2 = fit.suml2
        for _ in 0..<5 {
            var changed = 0
            for i in 0..<n {
                let w = x[i] * x[i]
                var slx = sumlx - w * x[i] * Float(levels[i])
                guard slx > 0 else { continue }
                var sl2 = suml2 - w * Float(levels[i]) * Float(levels[i])
                let newL = Swift.max(-nmax, Swift.min(nmax - 1, nearestInt(x[i] * sl2 / slx)))
                if newL != Int(levels[i]) {
                    slx += w * x[i] * Float(newL)
                    sl2 += w * Float(newL) * Float(newL)
                    if sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                        levels[i] = Int8(newL)
                        sumlx = slx
                        suml2 = sl2
                        changed += 1
                    }
                }
            }
            if changed == 0 { break }
        }
        for i in 0..<n { levels[i] += Int8(nmax) }
        return suml2 > 0 ? sumlx / suml2 : 0
    }

    /// `make_qx_quants` with `rmse_type` 1, weighted by `weights` or else by x²: a signed scale and
    /// levels `L` in 0..<2·nmax (`x ≈ scale * (L - nmax)`), the best of 19 candidate scales
    /// under the error weighted by x².
    static func makeQXQuants(count n: Int, nmax: Int, _ x: UnsafePointer<Float>, levels: UnsafeMutablePointer<Int8>,
                             weights qw: UnsafePointer<Float>? = nil) -> Float {
        guard let fit = signedFit(count: n, nmax: nmax, x, levels: levels, weights: qw, bias: nmax) else { return 0 }
        let max = fit.max
        var sumlx = fit.sumlx, suml2 = fit.suml2
        var scale: Float = suml2 != 0 ? sumlx / suml2 : 0
        var best = scale * sumlx
        for step in -9...9 where step != 0 {
            let iscale = -(Float(nmax) + 0.1 * Float(step)) / max
            sumlx = 0
            suml2 = 0
            for i in 0..<n {
                let l = Swift.max(-nmax, Swift.min(nmax - 1, nearestInt(iscale * x[i])))
                let w = qw?[i] ?? x[i] * x[i]
                sumlx += w * x[i] * Float(l)
                suml2 += w * Float(l) * Float(l)
            }
            if suml2 > 0 && sumlx * sumlx > best * suml2 {
                for i in 0..<n {
                    levels[i] = Int8(nmax + Swift.max(-nmax, Swift.min(nmax - 1, nearestInt(iscale * x[i]))))
                }
                scale = sumlx / suml2
                best = scale * sumlx
            }
        }
        return scale
    }

    /// The first fit of ``makeQ3Quants`` and ``makeQXQuants``: levels `round(-nmax · x / max)`
    /// clamped to −nmax..<nmax (stored plus `bias`), `max` the element of largest magnitude with
    /// its sign, and the weighted sums Σ w·x·L and Σ w·L² (w = `weights` or else x²). Nil, with
    /// every level 0, when all elements are below ``groupMaxEpsilon``.
    @inline(__always)
    static func signedFit(count n: Int, nmax: Int, _ x: UnsafePointer<Float>, levels: UnsafeMutablePointer<Int8>,
                          weights qw: UnsafePointer<Float>?, bias: Int) -> (max: Float, sumlx: Float, suml2: Float)? {
        var max: Float = 0
        var amax: Float = 0
        for i in 0..<n where abs(x[i]) > amax {
            amax = abs(x[i])
            max = x[i]
        }
        if amax < groupMaxEpsilon {
            for i in 0..<n { levels[i] = 0 }
            return nil
        }
        let iscale = Float(-nmax) / max
        var sumlx: Float = 0
        var suml2: Float = 0
        for i in 0..<n {
            let l = Swift.max(-nmax, Swift.min(nmax - 1, nearestInt(iscale * x[i])))
            levels[i] = Int8(l + bias)
            let w = qw?[i] ?? x[i] * x[i]
            sumlx += w * x[i] * Float(l)
            suml2 += w * Float(l) * Float(l)
        }
        return (max, sumlx, suml2)
    }

    /// `make_qp_quants`: a non-negative scale and levels 0...nmax for non-negative `x` (the
    /// sub-block scales or mins), minimising the `weights`-weighted squared error: the best of
    /// 9 candidate scales, then 5 rounds of coordinate descent.
    static func makeQPQuants(count n: Int, nmax: Int, _ x: UnsafePointer<Float>, levels L: UnsafeMutablePointer<UInt8>,
                             weights w: UnsafePointer<Float>) -> Float {
        var max: Float = 0
        for i in 0..<n { max = Swift.max(max, x[i]) }
        if max < groupMaxEpsilon {
            for i in 0..<n { L[i] = 0 }
            return 0
        }
        var iscale = Float(nmax) / max
        for i in 0..<n { L[i] = UInt8(truncatingIfNeeded: nearestInt(iscale * x[i])) }
        let scale = 1 / iscale
        var bestMSE: Float = 0
        for i in 0..<n {
            let diff = x[i] - scale * Float(L[i])
            bestMSE += w[i] * diff * diff
        }
        for step in -4...4 where step != 0 {
            let iscaleStep = (0.1 * Float(step) + Float(nmax)) / max
            let scaleStep = 1 / iscaleStep
            var mse: Float = 0
            for i in 0..<n {
                let l = Swift.min(nmax, nearestInt(iscaleStep * x[i]))
                let diff = x[i] - scaleStep * Float(l)
                mse += w[i] * diff * diff
            }
            if mse < bestMSE {
                bestMSE = mse
                iscale = iscaleStep
            }
        }
        var sumlx: Float = 0
        var suml2: Float = 0
        for i in 0..<n {
            let l = Swift.min(nmax, nearestInt(iscale * x[i]))
            L[i] = UInt8(truncatingIfNeeded: l)
            sumlx += w[i] * x[i] * Float(l)
            suml2 += w[i] * Float(l) * Float(l)
        }
        for _ in 0..<5 {
            var changed = 0
            for i in 0..<n {
                let li = Float(L[i])
                var slx = sumlx - w[i] * x[i] * li
                var sl2 = suml2 - w[i] * li * li
                guard slx > 0 && sl2 > 0 else { continue }
                let newL = Swift.min(nmax, nearestInt(x[i] * sl2 / slx))
                if newL != Int(L[i]) {
                    slx += w[i] * x[i] * Float(newL)
                    sl2 += w[i] * Float(newL) * Float(newL)
                    if slx * slx * suml2 > sumlx * sumlx * sl2 {
                        L[i] = UInt8(truncatingIfNeeded: newL)
                        sumlx = slx
                        suml2 = sl2
                        changed += 1
                    }
                }
            }
            if changed == 0 { break }
        }
        return suml2 > 0 ? sumlx / suml2 : 0
    }
}
