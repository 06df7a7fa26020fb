// Byte-level access to quantized blocks, shared by the (de)quantization kernels.
//
// GGUF is little-endian and so is every platform this package targets (x86-64, ARM64), so
// multi-byte fields are read and written in native order. Blocks have odd sizes (18, 22, 110
// bytes, …), so fields are generally unaligned: every access here tolerates any alignment.

extension UnsafeRawPointer {
    /// The byte at `offset`.
    @inline(__always) func byte(_ offset: Int) -> UInt8 {
        load(fromByteOffset: offset, as: UInt8.self)
    }

    /// The f16 field at `offset`, widened to Float (exactly).
    @inline(__always) func half(_ offset: Int) -> Float {
        Half.toFloat(loadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }

    /// The little-endian 16-bit field at `offset`.
    @inline(__always) func uint16(_ offset: Int) -> UInt16 {
        UInt16(littleEndian: loadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }

    /// The little-endian 32-bit field at `offset`.
    @inline(__always) func uint32(_ offset: Int) -> UInt32 {
        UInt32(littleEndian: loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }
}

extension UnsafeMutableRawPointer {
    /// Stores one byte at `offset`.
    @inline(__always) func setByte(_ offset: Int, _ value: UInt8) {
        storeBytes(of: value, toByteOffset: offset, as: UInt8.self)
    }

    /// Stores `value` rounded to f16 (nearest, ties to even) at `offset`; returns the f16 bits.
    @discardableResult
    @inline(__always) func setHalf(_ offset: Int, _ value: Float) -> UInt16 {
        let bits = Half.fromFloat(value)
        storeBytes(of: bits.littleEndian, toByteOffset: offset, as: UInt16.self)
        return bits
    }

    /// Stores a little-endian 16-bit field at `offset`.
    @inline(__always) func setUInt16(_ offset: Int, _ value: UInt16) {
        storeBytes(of: value.littleEndian, toByteOffset: offset, as: UInt16.self)
    }

    /// Stores a little-endian 32-bit field at `offset`.
    @inline(__always) func setUInt32(_ offset: Int, _ value: UInt32) {
        storeBytes(of: value.littleEndian, toByteOffset: offset, as: UInt32.self)
    }
}

/// C's float-to-integer conversion as x86-64 performs it (`cvttss2si`): truncation toward zero,
/// and `Int32.min` for NaN and out-of-range values. The reference quantizers convert with C
/// casts such as `(int8_t)(x + 8.5f)`; using the same rule keeps every input, even a
/// non-finite one, on a defined path instead of a trap.
@inline(__always) func truncatingToInt32(_ value: Float) -> Int32 {
    // -2147483904 is the float just below -2^31; NaN fails both comparisons.
    guard value > -2_147_483_904, value < 2_147_483_648 else { return Int32.min }
    return Int32(value)
}

/// llama.cpp's `nearest_int`: round to nearest, ties to even, via the 1.5 * 2^23 trick.
///
/// Exact for |value| ≤ 2^22 - 1; outside that range (and for NaN) it returns the same
/// meaningless number the C code does, without trapping.
@inline(__always) func nearestInt(_ value: Float) -> Int {
    let shifted = value + 12_582_912
    return Int(shifted.bitPattern & 0x007F_FFFF) - 0x0040_0000
}
