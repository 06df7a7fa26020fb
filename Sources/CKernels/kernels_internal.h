// Per-type entry points of the hand-written kernels (simd_x86.c, and simd_arm.c where present),
// chosen at run time by kernels.c. Not part of the public header: Swift never calls them.
//
// Two activation formats (include/moe_kernels.h):
//   - 32-block ("q8"): q int8[n], d float[n/32], s16 float[n/16]; every type can take it.
//   - 256-block ("q8_K", llama.cpp's block_q8_K split into arrays): q int8[n], d float[n/256],
//     bsums int16[n/16]; the K-quants, IQ4_XS and the IQ2/IQ3 types take it where a kernel exists, which lets the
//     sub-block products accumulate in integers with the weights' small integer scales and leaves
//     one float operation per 256 weights and token.
//
// Signatures (keep them stable; a new ISA adds functions of the same shapes):
//   row_dot_fn   float f(row, n, q, d, s16)                 one token, q8 format
//   row_dot4_fn  void  f(row, n, q, d, s16, out[4])         four tokens (stride n), q8 format
//   row_dotn_fn  void  f(row, n, q, d, s16, out, tokens)    1..MOE_TILE_Q tokens (stride n), q8 format
//                (optional: wider prefill tiles where registers allow)
//   row_dotk_fn  void  f(row, n, q, dk, bsums, sums, out, tokens) 1..MOE_TILE_K tokens (stride n), q8_K
//                format; token t at q + t*n, dk + t*n/256, bsums + t*n/16, sums + t*n/16
//   row_dotk2_fn void  f(row, row_bytes, n, q, dk, bsums, sums, out, tokens) rows `row` and `row + row_bytes`
//                against 2..MOE_TILE_K tokens, q8_K format: out[t] row 0, out[MOE_TILE_K + t] row 1
//                (optional: ARM i8mm multiplies 2 rows x 2 tokens per instruction)
#ifndef SWIFTMOE_KERNELS_INTERNAL_H
#define SWIFTMOE_KERNELS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

/// Tokens per call of a q8_K kernel: a weight row's unpacked super-block is reused this often.
#ifndef MOE_TILE_K
#define MOE_TILE_K 8
#endif

/// Tokens per call of a row_dotn_fn kernel (q8 format, 1..MOE_TILE_Q tokens).
#define MOE_TILE_Q 8

typedef float (*row_dot_fn)(const uint8_t *, int, const int8_t *, const float *, const float *);
typedef void (*row_dot4_fn)(const uint8_t *, int, const int8_t *, const float *, const float *, float *);
typedef void (*row_dotn_fn)(const uint8_t *, int, const int8_t *, const float *, const float *, float *, int);
typedef void (*row_dotk_fn)(const uint8_t *, int, const int8_t *, const float *, const int16_t *, const float *, float *, int);
typedef void (*row_dotk2_fn)(const uint8_t *, size_t, int, const int8_t *, const float *, const int16_t *, const float *, float *, int);

#define MOE_DECLARE_DOT(type, isa)                                                                        \
    float moe_dot_##type##_##isa(const uint8_t *, int, const int8_t *, const float *, const float *);    \
    void moe_dot4_##type##_##isa(const uint8_t *, int, const int8_t *, const float *, const float *, float *);
#define MOE_DECLARE_DOTK(type, isa)                                                                       \
    void moe_dotk_##type##_##isa(const uint8_t *, int, const int8_t *, const float *, const int16_t *, const float *, float *, int);

/// Prefill GEMM for Q3_K and IQ4_XS at the AVX-512 VNNI level (simd_x86_tiled.c), q8_K format:
/// rows [r0, r1) against the first tokens of the batch in tiles of 16, y[t*ldy + r]; a last tile
/// of 5 tokens or more is padded with zero tokens (5-8 in 256-bit registers). Returns how many
/// tokens it did (0 when the type has none); the rest (at most 4) go to the row kernels, whose
/// arithmetic per (row, token) it repeats bit for bit.
int moe_tiled_matmul_k(int type, int n, const uint8_t *w, size_t row_bytes, int r0, int r1, int tokens, const int8_t *q,
                       const float *dk, const int16_t *bs, float *y, int ldy);

#if defined(__x86_64__) && defined(__clang__)
#include <immintrin.h>
#include <string.h>

/// The target of every 512-bit (AVX-512 VNNI) kernel and of the 256-bit AVX2 ones.
#define MOE_ZMM_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx512dq,avx2,fma,f16c")))
#define MOE_AVX2_TARGET __attribute__((target("avx2,fma,f16c")))

/// The f16 at p (unaligned) as a float, inserted into a register zeroed for it. With _cvtsh_ss
/// (or vmovd) clang emits vpinsrw into whatever register it likes, which in a kernel loop was
/// the float accumulator, so every block's scale conversion waited for
/// the previous block's FMA (Q8_0 decode on AVX2: ~20 cycles per block, 4.8 GB/s of 13.5).
__attribute__((target("f16c"))) static inline float moe_half_to_float(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    __m128i v = _mm_insert_epi16(_mm_setzero_si128(), h, 0);
    __asm__("" : "+x"(v));  /* every lane used, as far as clang knows: the zeros stay zeros */
    return _mm_cvtss_f32(_mm_cvtph_ps(v));
}

/// The f16 scales of four blocks `bytes` apart, starting at p, as four floats.
__attribute__((target("avx2,f16c"))) static inline __m128 moe_half4_to_float4(const uint8_t *p, int bytes) {
    uint16_t h[4];
    for (int i = 0; i < 4; i++) memcpy(&h[i], p + bytes * i, 2);
    return _mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)h));
}

/// Sum of the 8 lanes; AVX only, so every kernel can inline it.
__attribute__((target("avx"))) static inline float moe_hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/// Q6_K: half h of a super-block (ql = 64 bytes at 64h, qh = 32 bytes at 128 + 32h) as four runs
/// of 32 six-bit values, bias 32 kept: v[k] holds elements 128h + 32k .. 128h + 32k + 31.
MOE_AVX2_TARGET static inline void moe_q6k_unpack_half(const uint8_t *ql, const uint8_t *qh, __m256i v[4]) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
    const __m256i l0 = _mm256_loadu_si256((const __m256i *)ql), l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
    const __m256i h = _mm256_loadu_si256((const __m256i *)qh);
    v[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(h, 4), m30));
    v[1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(h, 2), m30));
    v[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(h, m30));
    v[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4), _mm256_and_si256(_mm256_srli_epi16(h, 2), m30));
}

/// The IQ4_NL / IQ4_XS levels (kvalues_iq4nl), for vpshufb.
static const int8_t moe_iq4nl_levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

// q8 format: AVX-512 VNNI (zmm = 512-bit vectors, vnni = 256-bit with VNNI) and AVX2.
MOE_DECLARE_DOT(q8_0, zmm)
MOE_DECLARE_DOT(q8_0, avx2)
MOE_DECLARE_DOT(q4_K, zmm)
MOE_DECLARE_DOT(q4_K, avx2)
MOE_DECLARE_DOT(q6_K, zmm)
MOE_DECLARE_DOT(q6_K, avx2)
MOE_DECLARE_DOT(q5_K, vnni)
MOE_DECLARE_DOT(q5_K, avx2)
void moe_dotn_q8_0_zmm(const uint8_t *, int, const int8_t *, const float *, const float *, float *, int);
void moe_dotn_iq4_nl_zmm(const uint8_t *, int, const int8_t *, const float *, const float *, float *, int);
void moe_dotn_mxfp4_zmm(const uint8_t *, int, const int8_t *, const float *, const float *, float *, int);
MOE_DECLARE_DOT(iq4_nl, zmm)
MOE_DECLARE_DOT(iq4_nl, avx2)
MOE_DECLARE_DOT(mxfp4, zmm)
MOE_DECLARE_DOT(mxfp4, avx2)
// q8_K format: zmm = 512-bit, vnni = 256-bit with vpdpwssd, avx2 = 256-bit.
MOE_DECLARE_DOTK(q4_K, vnni)
MOE_DECLARE_DOTK(q5_K, vnni)
MOE_DECLARE_DOTK(q6_K, vnni)
MOE_DECLARE_DOTK(q2_K, vnni)
MOE_DECLARE_DOTK(q2_K, avx2)
MOE_DECLARE_DOTK(q3_K, vnni)
MOE_DECLARE_DOTK(q3_K, avx2)
MOE_DECLARE_DOTK(q4_K, zmm)
MOE_DECLARE_DOTK(q4_K, avx2)
MOE_DECLARE_DOTK(q5_K, zmm)
MOE_DECLARE_DOTK(q5_K, avx2)
MOE_DECLARE_DOTK(q6_K, zmm)
MOE_DECLARE_DOTK(q6_K, avx2)
MOE_DECLARE_DOTK(q2_K, zmm)
MOE_DECLARE_DOTK(q3_K, zmm)
MOE_DECLARE_DOTK(iq4_xs, zmm)
MOE_DECLARE_DOTK(iq4_xs, vnni)
MOE_DECLARE_DOTK(iq4_xs, avx2)
// q8_K, simd_x86_iq.c: IQ2_XXS, IQ2_XS, IQ3_XXS, IQ3_S (grid lookups).
MOE_DECLARE_DOTK(iq2_xxs, zmm)
MOE_DECLARE_DOTK(iq2_xxs, avx2)
MOE_DECLARE_DOTK(iq2_xs, zmm)
MOE_DECLARE_DOTK(iq2_xs, avx2)
MOE_DECLARE_DOTK(iq3_xxs, zmm)
MOE_DECLARE_DOTK(iq3_xxs, avx2)
MOE_DECLARE_DOTK(iq3_s, zmm)
MOE_DECLARE_DOTK(iq3_s, avx2)
/* Q3_K's sixteen scales minus 32 as bytes, in vector registers: the 12 packed bytes by a masked load (nothing read
   past them), [u0 u1 u0 u1] >> [0 0 4 4] & 0x0f for the low nibbles, u2 >> [0 2 4 6] & 3 for the
   high pairs. */
MOE_ZMM_TARGET static inline __m128i q3k_scales_signed_v(const uint8_t *packed) {
    const __m128i v = _mm_maskz_loadu_epi8(0x0FFF, packed);
    const __m128i low = _mm_and_si128(_mm_srlv_epi32(_mm_shuffle_epi32(v, _MM_SHUFFLE(1, 0, 1, 0)), _mm_setr_epi32(0, 0, 4, 4)), _mm_set1_epi8(0x0F));
    const __m128i high = _mm_and_si128(_mm_srlv_epi32(_mm_shuffle_epi32(v, _MM_SHUFFLE(2, 2, 2, 2)), _mm_setr_epi32(0, 2, 4, 6)), _mm_set1_epi8(0x03));
    return _mm_sub_epi8(_mm_or_si128(low, _mm_slli_epi32(high, 4)), _mm_set1_epi8(32));
}

/* Q3_K's stored values (weight + 4, 0-7) of groups 4k..4k+3 of 16, in column order: the 2-bit
   plane of qs run k/2 at shifts 4(k%2) (low half) and 4(k%2)+2 (high half), + 4 where hmask bit
   2k (low half) or 2k+1 (high half) is set. `hm` is the super-block's 32 hmask bytes in both
   256-bit halves. Shared by the row kernel and the tiled GEMM's unpacker. */
MOE_ZMM_TARGET static inline __m512i q3k_values_v(const uint8_t *b, __m512i hm, int k) {
    const __m512i shift = _mm512_inserti64x4(_mm512_set1_epi16((short)(4 * (k % 2))), _mm256_set1_epi16((short)(4 * (k % 2) + 2)), 1);
    const __m512i bit = _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << (2 * k))), _mm256_set1_epi8((char)(2 << (2 * k))), 1);
    const __m512i run = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(b + 32 + 32 * (k / 2))));
    const __m512i low = _mm512_and_si512(_mm512_srlv_epi16(run, shift), _mm512_set1_epi8(3));
    return _mm512_mask_add_epi8(low, _mm512_test_epi8_mask(hm, bit), low, _mm512_set1_epi8(4));
}

/* IQ4_XS's level indices (0-15) of sub-blocks 4h..4h+3, in column order, as two 64-byte vectors:
   one 64-byte load of qs, its low and high nibbles put back in order ([lo | hi] per sub-block)
   by two two-source permutes. Shared by the row kernel and the tiled GEMM's unpacker. */
MOE_ZMM_TARGET static inline void iq4xs_indices_v(const uint8_t *b, int h, __m512i out[2]) {
    const __m512i nib = _mm512_set1_epi8(0x0F);
    const __m512i v = _mm512_loadu_si512((const void *)(b + 8 + 64 * h));
    const __m512i lo = _mm512_and_si512(v, nib), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), nib);
    out[0] = _mm512_permutex2var_epi64(lo, _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11), hi);
    out[1] = _mm512_permutex2var_epi64(lo, _mm512_setr_epi64(4, 5, 12, 13, 6, 7, 14, 15), hi);
}

/* The eight IQ4_XS scales (minus 32) as int16 lanes 0-7: low nibbles of scales_l, 2-bit fields of
   scales_h, without a scalar loop. AVX2 only (32-bit variable shifts), so the AVX2 row kernel
   and the 512-bit ones share it. */
MOE_AVX2_TARGET static inline __m128i iq4xs_scales_v(const uint8_t *b) {
    uint32_t l;
    uint16_t h;
    memcpy(&l, b + 4, 4);
    memcpy(&h, b + 2, 2);
    const __m128i lv = _mm_cvtsi32_si128((int)l), nib = _mm_set1_epi8(0x0F);
    const __m128i low = _mm_cvtepu8_epi16(_mm_unpacklo_epi8(_mm_and_si128(lv, nib), _mm_and_si128(_mm_srli_epi16(lv, 4), nib)));
    const __m256i hv = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(h), _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14)), _mm256_set1_epi32(3));
    const __m128i high = _mm_packs_epi32(_mm256_castsi256_si128(hv), _mm256_extracti128_si256(hv, 1));
    return _mm_sub_epi16(_mm_or_si128(low, _mm_slli_epi16(high, 4)), _mm_set1_epi16(32));
}

#endif

#if defined(__aarch64__)
// ARM64 q8_K kernels (simd_arm_q8k.c) at `level` (1 = NEON, 2 = dotprod, 3 = i8mm), or NULL.
row_dotk_fn moe_arm_row_dotk(int level, int type);
row_dotk2_fn moe_arm_row_dotk2(int level, int type);
#endif

#endif
