// SwiftMoE's innermost loops: quantized dot products and matrix-vector products.
//
// Everything else is Swift. These functions are compiled once per CPU level
// (x86-64-v4 = AVX-512, x86-64-v3 = AVX2, baseline) with `target_clones`; the loader picks
// the best one at run time, so no compiler flags are needed. On ARM64, simd_arm.c has NEON,
// dotprod and i8mm kernels, also chosen at run time; other architectures get the portable C.
//
// Activations for quantized weights are quantized to 8 bits per 32-element block, as
// llama.cpp does (docs/design.md §8): `q` holds n int8 values, `d` n/32 block scales and `s16`
// n/16 dequantized partial sums (d * sum of 16 q values) used for the weights' min terms.
#ifndef SWIFTMOE_KERNELS_H
#define SWIFTMOE_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// ggml type ids (the same numbers as GGUF).
enum moe_type {
    MOE_F32 = 0, MOE_F16 = 1, MOE_Q4_0 = 2, MOE_Q4_1 = 3, MOE_Q5_0 = 6, MOE_Q5_1 = 7, MOE_Q8_0 = 8,
    MOE_Q2_K = 10, MOE_Q3_K = 11, MOE_Q4_K = 12, MOE_Q5_K = 13, MOE_Q6_K = 14,
    MOE_IQ2_XXS = 16, MOE_IQ2_XS = 17, MOE_IQ3_XXS = 18, MOE_IQ4_NL = 20, MOE_IQ3_S = 21, MOE_IQ4_XS = 23,
    MOE_BF16 = 30, MOE_MXFP4 = 39,
};

/// 1 if `type` has an 8-bit-activation kernel here, 2 if it has a float-activation kernel, 0 if neither.
int moe_kernel_kind(int type);

/// Quantizes n floats (n a multiple of 32) to the activation format above.
void moe_quantize_activations(const float *x, int n, int8_t *q, float *d, float *s16);

/// y[r] = row r of W · x̂ for r in [r0, r1); W has `row_bytes` per row of n elements of `type`;
/// x̂ is the quantized activation (q, d, s16). Returns 0, or -1 if the type has no such kernel.
int moe_matvec_q(int type, int n, const void *w, size_t row_bytes, int r0, int r1,
                 const int8_t *q, const float *d, const float *s16, float *y);

/// The same for `tokens` activations at once (prefill): activation t starts at q + t*n,
/// d + t*n/32, s16 + t*n/16; y[t*ldy + r] receives row r for token t. Each weight row is
/// unpacked once for all tokens.
int moe_matmul_q(int type, int n, const void *w, size_t row_bytes, int r0, int r1, int tokens,
                 const int8_t *q, const float *d, const float *s16, float *y, int ldy);

/// Float-activation kernels for F32, F16 and BF16 weights: y[t*ldy + r] = W[r] · x[t*n ...].
int moe_matmul_f(int type, int n, const void *w, size_t row_bytes, int r0, int r1, int tokens,
                 const float *x, float *y, int ldy);

/// The second activation format, llama.cpp's q8_K split into arrays, for the K-quants, IQ4_XS and
/// the IQ2/IQ3 types:
/// per 256 values one scale `d[b]`, the int8 values `q`, `bsums` n/16 int16 sums of 16 values and
/// `sums` the same sums times their block's scale (floats, for the weights' minimum terms).
/// n is a multiple of 256.
void moe_quantize_activations_k(const float *x, int n, int8_t *q, float *d, int16_t *bsums, float *sums);

#define MOE_KERNELS_Q8K 1

/// Both quantized forms of the same activations; the q8_K fields are NULL when n % 256 != 0.
typedef struct moe_activations {
    const int8_t *q;
    const float *d;
    const float *s16;
    const int8_t *qk;
    const float *dk;
    const int16_t *bsums;
    const float *sums;
} moe_activations;

/// moe_matmul_q with the activation format chosen per type: q8_K where this CPU level has a
/// q8_K kernel for `type` (integer sums per 256 weights), otherwise the 32-block format.
/// Token t starts at t*n, t*n/32, t*n/16 (q8) and t*n, t*n/256, t*n/16, t*n/16 (q8_K).
int moe_matmul_qa(int type, int n, const void *w, size_t row_bytes, int r0, int r1, int tokens,
                  const moe_activations *a, float *y, int ldy);

/// Which format moe_matmul_qa uses for `type` at the current level: 2 = q8_K, 1 = 32-block, 0 = none.
int moe_kernel_format(int type);

/// The scalar reference against q8_K activations (K-quants, IQ4_XS, IQ2/IQ3); -1 for other types.
int moe_matvec_qk_reference(int type, int n, const void *w, size_t row_bytes, int r0, int r1,
                            const int8_t *q, const float *dk, const int16_t *bsums, float *y);

/// The scalar reference of moe_matvec_q: the same arithmetic, one element at a time, never
/// vectorized. Tests compare the dispatched kernels with it.
int moe_matvec_q_reference(int type, int n, const void *w, size_t row_bytes, int r0, int r1,
                           const int8_t *q, const float *d, const float *s16, float *y);

/// The hand-written kernel level in use: 2 = AVX-512 VNNI, 1 = AVX2 on x86-64; 3 = i8mm,
/// 2 = dotprod, 1 = NEON on ARM64; 0 = portable C only.
int moe_kernel_level(void);
/// Caps the level (tests use it to run every path this CPU supports); -1 restores detection.
void moe_force_kernel_level(int level);

/// Name of the code path chosen for this CPU ("x86-64-v4", "x86-64-v3", "arm64-i8mm",
/// "arm64-dotprod", "arm64-neon", "baseline").
const char *moe_kernel_isa(void);

/// The grid of an IQ2/IQ3 type (format data, iq_grids.h): entry i is 8 (IQ2_XXS, IQ2_XS) or 4
/// (IQ3_XXS, IQ3_S) weight magnitudes, one byte each, at offset 8i or 4i; NULL for other types.
/// Little-endian hosts only (every target of this package).
const uint8_t *moe_iq_grid(int type);
/// The 128 sign bytes of the IQ2/IQ3 types: 7 sign bits completed by their even parity.
const uint8_t *moe_iq_sign_table(void);

/// f32 dot product (vectorized), for attention.
float moe_dot_f32(const float *a, const float *b, int n);
/// y += a * x (vectorized), for attention.
void moe_axpy_f32(float a, const float *x, float *y, int n);
/// y *= a.
void moe_scale_f32(float a, float *y, int n);
/// Dot product of IEEE half values with floats, and y += a * half values (f16 KV cache).
float moe_dot_f16(const uint16_t *a, const float *b, int n);
void moe_axpy_f16(float a, const uint16_t *x, float *y, int n);
/// Floats to IEEE half, round to nearest even.
void moe_f32_to_f16(const float *x, uint16_t *y, int n);

#ifdef __cplusplus
}
#endif
#endif
