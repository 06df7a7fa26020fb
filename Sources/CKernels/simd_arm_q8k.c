// ARM64 kernels against q8_K activations (kernels_internal.h): Q2_K, Q3_K, Q4_K, Q5_K, Q6_K,
// IQ4_XS and the grid types IQ2_XXS, IQ2_XS, IQ3_XXS, IQ3_S (their unpackers: simd_arm_iq.h)
// with integer partial sums and one float multiply-add per 256 weights and token (two for the
// types with minimums), as simd_x86_q8k.c and simd_x86_iq.c do on x86. kernels.c picks them at
// run time (moe_arm_row_dotk: one row, 1..MOE_TILE_K tokens; moe_arm_row_dotk2: i8mm, two rows).
//
// Per super-block and (row, token), every level computes the same exact integers
//   I = Σ_g scale_g · (Σ_16 w·a)   and   M = Σ_g min_g · bsum_g   (g = 16-weight groups)
// (NEON: SMULL + SADALP; dotprod: SDOT; i8mm: SMMLA on 2 rows x 2 tokens), and folds them with
// the same float operations: acc = fma(acc, I, d·da), accm = fma(accm, M, dmin·da), out = acc -
// accm. So all levels, a token alone or in a batch, a row alone or in an i8mm pair give
// bit-identical results; they agree with kernels.c's scalar q8_K reference within rounding.
// Signed weights (Q3_K, Q6_K, IQ4_XS, the grid types) need no offset term: SDOT multiplies
// signed by signed.
#include "kernels_internal.h"
#include "moe_kernels.h"

#if defined(__aarch64__)
#include "simd_arm.h"

/* A super-block's integer scale and minimum per 16-weight group (int8; `mn` zero where the type
   has none) and its float factors. */
typedef struct {
    int8x16_t sc, mn;
    float d, dmin;
} kscales;

ARM_INLINE uint8x16_t twice(uint8x8_t x) { return vcombine_u8(vzip1_u8(x, x), vzip2_u8(x, x)); }
ARM_INLINE uint32_t load32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* Q2_K: scales[16] = min << 4 | scale, per 16; d at 80, dmin at 82. */
ARM_INLINE kscales kscales_q2_K(const uint8_t *b) {
    uint8x16_t raw = vld1q_u8(b);
    return (kscales){vreinterpretq_s8_u8(vandq_u8(raw, vdupq_n_u8(0x0F))), vreinterpretq_s8_u8(vshrq_n_u8(raw, 4)), half(b + 80), half(b + 82)};
}

/* Q3_K: 6-bit scales - 32 per 16 from 12 bytes at 96: low nibble of byte g (g < 8) or high nibble
   of byte g - 8, and bits 2(g/4).. of byte 8 + g%4 as bits 4-5. */
ARM_INLINE kscales kscales_q3_K(const uint8_t *b) {
    static const int8_t shifts[16] = {0, 0, 0, 0, -2, -2, -2, -2, -4, -4, -4, -4, -6, -6, -6, -6};
    uint8x8_t low8 = vld1_u8(b + 96);
    uint8x16_t low = vcombine_u8(vand_u8(low8, vdup_n_u8(0x0F)), vshr_n_u8(low8, 4));
    uint8x16_t high = vandq_u8(vshlq_u8(vreinterpretq_u8_u32(vdupq_n_u32(load32(b + 104))), vld1q_s8(shifts)), vdupq_n_u8(3));
    int8x16_t sc = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(low, vshlq_n_u8(high, 4))), vdupq_n_s8(32));
    return (kscales){sc, vdupq_n_s8(0), half(b + 108), 0};
}

/* Q4_K / Q5_K: 6-bit scale and min per 32 from 12 bytes at 4 (j < 4: bytes j, j + 4; j >= 4:
   nibbles of byte j + 4 with the top two bits of bytes j - 4, j as bits 4-5); d at 0, dmin at 2. */
ARM_INLINE kscales kscales_q45_K(const uint8_t *b) {
    static const int8_t nibble[8] = {0, 0, 0, 0, -4, -4, -4, -4};
    uint8x8_t s = vld1_u8(b + 4);                                     /* scales 0-3 | mins 0-3, + top bits */
    uint8x8_t tail = vreinterpret_u8_u32(vdup_n_u32(load32(b + 12))); /* bytes 8-11, twice */
    uint8x8_t first = vand_u8(s, vdup_n_u8(63));
    uint8x8_t second = vorr_u8(vand_u8(vshl_u8(tail, vld1_s8(nibble)), vdup_n_u8(0x0F)), vshl_n_u8(vshr_n_u8(s, 6), 4));
    uint32x2_t a = vreinterpret_u32_u8(first), c = vreinterpret_u32_u8(second);
    uint8x8_t sc = vreinterpret_u8_u32(vzip1_u32(a, c)), mn = vreinterpret_u8_u32(vzip2_u32(a, c));
    return (kscales){vreinterpretq_s8_u8(twice(sc)), vreinterpretq_s8_u8(twice(mn)), half(b), half(b + 2)};
}
#define kscales_q4_K kscales_q45_K
#define kscales_q5_K kscales_q45_K

/* Q6_K: int8 scales per 16 at 192, d at 208. */
ARM_INLINE kscales kscales_q6_K(const uint8_t *b) { return (kscales){vld1q_s8((const int8_t *)b + 192), vdupq_n_s8(0), half(b + 208), 0}; }

/* IQ4_XS: per 32, the nibble s%2 of scales_l[s/2] (byte 4 + s/2) with bits 2s of scales_h (u16 at
   2) as bits 4-5, - 32; d at 0. */
ARM_INLINE kscales kscales_iq4_xs(const uint8_t *b) {
    static const int8_t nibble[8] = {0, -4, 0, -4, 0, -4, 0, -4}, pair[8] = {0, -2, -4, -6, 0, -2, -4, -6};
    static const uint8_t spread[8] = {4, 4, 5, 5, 6, 6, 7, 7}, halves[8] = {2, 2, 2, 2, 3, 3, 3, 3};
    uint8x8_t bytes = vld1_u8(b); /* d, scales_h, scales_l */
    uint8x8_t low = vand_u8(vshl_u8(vtbl1_u8(bytes, vld1_u8(spread)), vld1_s8(nibble)), vdup_n_u8(0x0F));
    uint8x8_t high = vand_u8(vshl_u8(vtbl1_u8(bytes, vld1_u8(halves)), vld1_s8(pair)), vdup_n_u8(3));
    int8x8_t sc = vsub_s8(vreinterpret_s8_u8(vorr_u8(low, vshl_n_u8(high, 4))), vdup_n_s8(32));
    return (kscales){vreinterpretq_s8_u8(twice(vreinterpret_u8_s8(sc))), vdupq_n_s8(0), half(b), 0};
}

/* IQ2_XXS, IQ2_XS, IQ3_XXS, IQ3_S: grid lookups, signs on the weights, odd scales 2s+1. */
#include "simd_arm_iq.h"

/* Groups 4c..4c+3's scales as int32 (chunk c of 64 weights). */
ARM_INLINE void widen(int8x16_t s, int32x4_t *out) {
    int16x8_t lo = vmovl_s8(vget_low_s8(s)), hi = vmovl_high_s8(s);
    out[0] = vmovl_s16(vget_low_s16(lo)), out[1] = vmovl_high_s16(lo);
    out[2] = vmovl_s16(vget_low_s16(hi)), out[3] = vmovl_high_s16(hi);
}
/* Σ_g mn_g · bsum_g over 16 groups as four int32 partial sums. */
ARM_INLINE int32x4_t min_sums(int8x16_t mn, const int16_t *bs) {
    int16x8_t lo = vmovl_s8(vget_low_s8(mn)), hi = vmovl_high_s8(mn), b0 = vld1q_s16(bs), b1 = vld1q_s16(bs + 8);
    int32x4_t p = vmull_s16(vget_low_s16(lo), vget_low_s16(b0));
    p = vmlal_high_s16(p, lo, b0);
    p = vmlal_s16(p, vget_low_s16(hi), vget_low_s16(b1));
    return vmlal_high_s16(p, hi, b1);
}
/* The totals of four int32x4 as one vector (lane i = Σ lanes of x_i). */
ARM_INLINE int32x4_t totals(int32x4_t x0, int32x4_t x1, int32x4_t x2, int32x4_t x3) { return vpaddq_s32(vpaddq_s32(x0, x1), vpaddq_s32(x2, x3)); }

/* One row against 1..MOE_TILE_K tokens at NEON or dotprod (LEVEL = neon, dot). Chunks of 64 weights are
   unpacked once and met by every token; four tokens share each float operation's vector. */
#define KROW(name, BYTES, MINS, LEVEL, ATTR)                                                                       \
    ATTR ARM_INLINE void krow_body_##name##_##LEVEL(const uint8_t *row, int n, const int8_t *q, const float *dk,   \
                                                    const int16_t *bs, float *out, int tokens) {                  \
        const int nb = n / 256;                                                                                    \
        float32x4_t acc[MOE_TILE_K / 4], accm[MOE_TILE_K / 4];                                                     \
        for (int i = 0; i < MOE_TILE_K / 4; i++) acc[i] = accm[i] = vdupq_n_f32(0);                                \
        for (int u = 0; u < nb; u++) {                                                                             \
            const uint8_t *b = row + (size_t)u * BYTES;                                                            \
            kscales k = kscales_##name(b);                                                                         \
            int32x4_t s32[4], isum[MOE_TILE_K], msum[MOE_TILE_K];                                                  \
            widen(k.sc, s32);                                                                                      \
            for (int t = 0; t < tokens; t++) isum[t] = vdupq_n_s32(0);                                             \
            for (int c = 0; c < 4; c++) {                                                                          \
                w64 w = chunk_##name(b, c);                                                                        \
                for (int t = 0; t < tokens; t++)                                                                   \
                    isum[t] = vmlaq_s32(isum[t], sums64_##LEVEL(w, q + (size_t)t * n + 256 * u + 64 * c), s32[c]); \
            }                                                                                                      \
            for (int t = 0; t < tokens; t++) msum[t] = MINS ? min_sums(k.mn, bs + (size_t)t * (n / 16) + 16 * u) : vdupq_n_s32(0); \
            for (int t = tokens; t < (tokens + 3) / 4 * 4; t++) isum[t] = msum[t] = vdupq_n_s32(0);                \
            for (int t4 = 0; t4 < tokens; t4 += 4) {                                                               \
                float32x4_t da = vdupq_n_f32(0);                                                                   \
                da = vsetq_lane_f32(dk[(size_t)t4 * nb + u], da, 0);                                               \
                if (t4 + 1 < tokens) da = vsetq_lane_f32(dk[(size_t)(t4 + 1) * nb + u], da, 1);                    \
                if (t4 + 2 < tokens) da = vsetq_lane_f32(dk[(size_t)(t4 + 2) * nb + u], da, 2);                    \
                if (t4 + 3 < tokens) da = vsetq_lane_f32(dk[(size_t)(t4 + 3) * nb + u], da, 3);                    \
                int32x4_t i4 = totals(isum[t4], isum[t4 + 1], isum[t4 + 2], isum[t4 + 3]);                         \
                acc[t4 / 4] = vfmaq_f32(acc[t4 / 4], vcvtq_f32_s32(i4), vmulq_n_f32(da, k.d));                     \
                if (MINS) {                                                                                        \
                    int32x4_t m4 = totals(msum[t4], msum[t4 + 1], msum[t4 + 2], msum[t4 + 3]);                     \
                    accm[t4 / 4] = vfmaq_f32(accm[t4 / 4], vcvtq_f32_s32(m4), vmulq_n_f32(da, k.dmin));            \
                }                                                                                                  \
            }                                                                                                      \
        }                                                                                                          \
        float all[MOE_TILE_K];                                                                                     \
        for (int i = 0; i < (tokens + 3) / 4; i++) vst1q_f32(all + 4 * i, MINS ? vsubq_f32(acc[i], accm[i]) : acc[i]); \
        for (int t = 0; t < tokens; t++) out[t] = all[t];                                                          \
    }                                                                                                              \
    ATTR static void krow_##name##_##LEVEL(const uint8_t *row, int n, const int8_t *q, const float *dk,            \
                                           const int16_t *bs, const float *sk, float *out, int tokens) {          \
        (void)sk;                                                                                                  \
        if (tokens == 1) krow_body_##name##_##LEVEL(row, n, q, dk, bs, out, 1);                                    \
        else if (tokens == MOE_TILE_K) krow_body_##name##_##LEVEL(row, n, q, dk, bs, out, MOE_TILE_K);             \
        else krow_body_##name##_##LEVEL(row, n, q, dk, bs, out, tokens);                                           \
    }

/* i8mm: rows r0, r0 + row_bytes against 2..MOE_TILE_K tokens in pairs (an odd last token is paired with
   itself). Lanes (r0,t), (r0,t+1), (r1,t), (r1,t+1) carry the same I and M as KROW computes and take the
   same float operations lane by lane. out[t]: row 0, out[MOE_TILE_K + t]: row 1. */
#define SPLAT2(x, y, k) vcombine_s32(vdup_laneq_s32(x, k), vdup_laneq_s32(y, k))
#define KPAIR(name, BYTES, MINS)                                                                                   \
    ARM_MM ARM_INLINE void kpair_body_##name(const uint8_t *row0, size_t row_bytes, int n, const int8_t *q,        \
                                             const float *dk, const int16_t *bs, float *out, int tokens) {         \
        const int nb = n / 256, pairs = (tokens + 1) / 2;                                                          \
        float32x4_t acc[MOE_TILE_K / 2], accm[MOE_TILE_K / 2];                                                     \
        for (int p = 0; p < pairs; p++) acc[p] = accm[p] = vdupq_n_f32(0);                                         \
        for (int u = 0; u < nb; u++) {                                                                             \
            const uint8_t *b0 = row0 + (size_t)u * BYTES, *b1 = b0 + row_bytes;                                    \
            kscales k0 = kscales_##name(b0), k1 = kscales_##name(b1);                                              \
            int32x4_t s0[4], s1[4], isum[MOE_TILE_K / 2];                                                          \
            widen(k0.sc, s0);                                                                                      \
            widen(k1.sc, s1);                                                                                      \
            for (int p = 0; p < pairs; p++) isum[p] = vdupq_n_s32(0);                                              \
            for (int c = 0; c < 4; c++) {                                                                          \
                w64 w0 = chunk_##name(b0, c), w1 = chunk_##name(b1, c);                                            \
                int32x4_t sv[4] = {SPLAT2(s0[c], s1[c], 0), SPLAT2(s0[c], s1[c], 1), SPLAT2(s0[c], s1[c], 2),      \
                                   SPLAT2(s0[c], s1[c], 3)};                                                       \
                for (int p = 0; p < pairs; p++) {                                                                  \
                    const int8_t *a0 = q + (size_t)(2 * p) * n + 256 * u + 64 * c;                                 \
                    const int8_t *a1 = 2 * p + 1 < tokens ? a0 + n : a0;                                           \
                    for (int j = 0; j < 4; j++)                                                                    \
                        isum[p] = vmlaq_s32(isum[p], mm16(w0.v[j], w1.v[j], vld1q_s8(a0 + 16 * j), vld1q_s8(a1 + 16 * j)), sv[j]); \
                }                                                                                                  \
            }                                                                                                      \
            const float32x4_t dd = {k0.d, k0.d, k1.d, k1.d}, dm = {k0.dmin, k0.dmin, k1.dmin, k1.dmin};            \
            for (int p = 0; p < pairs; p++) {                                                                      \
                int t0 = 2 * p, t1 = 2 * p + 1 < tokens ? 2 * p + 1 : 2 * p;                                       \
                float x0 = dk[(size_t)t0 * nb + u], x1 = dk[(size_t)t1 * nb + u];                                  \
                const float32x4_t da = {x0, x1, x0, x1};                                                           \
                acc[p] = vfmaq_f32(acc[p], vcvtq_f32_s32(isum[p]), vmulq_f32(dd, da));                             \
                if (MINS) {                                                                                        \
                    const int16_t *g0 = bs + (size_t)t0 * (n / 16) + 16 * u, *g1 = bs + (size_t)t1 * (n / 16) + 16 * u; \
                    int32x4_t m4 = totals(min_sums(k0.mn, g0), min_sums(k0.mn, g1), min_sums(k1.mn, g0), min_sums(k1.mn, g1)); \
                    accm[p] = vfmaq_f32(accm[p], vcvtq_f32_s32(m4), vmulq_f32(dm, da));                            \
                }                                                                                                  \
            }                                                                                                      \
        }                                                                                                          \
        for (int p = 0; p < pairs; p++) {                                                                          \
            float r[4];                                                                                            \
            vst1q_f32(r, MINS ? vsubq_f32(acc[p], accm[p]) : acc[p]);                                              \
            out[2 * p] = r[0], out[MOE_TILE_K + 2 * p] = r[2];                                                     \
            if (2 * p + 1 < tokens) out[2 * p + 1] = r[1], out[MOE_TILE_K + 2 * p + 1] = r[3];                     \
        }                                                                                                          \
    }                                                                                                              \
    ARM_MM static void kpair_##name(const uint8_t *row0, size_t row_bytes, int n, const int8_t *q, const float *dk, \
                                    const int16_t *bs, const float *sk, float *out, int tokens) {                  \
        (void)sk;                                                                                                  \
        if (tokens == MOE_TILE_K) kpair_body_##name(row0, row_bytes, n, q, dk, bs, out, MOE_TILE_K);               \
        else kpair_body_##name(row0, row_bytes, n, q, dk, bs, out, tokens);                                        \
    }

#define DEFINE_ARM_K(name, BYTES, MINS)    \
    KROW(name, BYTES, MINS, neon, ARM_BASE) \
    KROW(name, BYTES, MINS, dot, ARM_DOT)   \
    KPAIR(name, BYTES, MINS)

DEFINE_ARM_K(q2_K, 84, 1)
DEFINE_ARM_K(q3_K, 110, 0)
DEFINE_ARM_K(q4_K, 144, 1)
DEFINE_ARM_K(q5_K, 176, 1)
DEFINE_ARM_K(q6_K, 210, 0)
DEFINE_ARM_K(iq4_xs, 136, 0)
DEFINE_ARM_K(iq2_xxs, 66, 0)
DEFINE_ARM_K(iq2_xs, 74, 0)
DEFINE_ARM_K(iq3_xxs, 98, 0)
DEFINE_ARM_K(iq3_s, 110, 0)

#define ARM_K_TYPES(X)                                                                                             \
    X(MOE_Q2_K, q2_K) X(MOE_Q3_K, q3_K) X(MOE_Q4_K, q4_K) X(MOE_Q5_K, q5_K) X(MOE_Q6_K, q6_K) X(MOE_IQ4_XS, iq4_xs) \
    X(MOE_IQ2_XXS, iq2_xxs) X(MOE_IQ2_XS, iq2_xs) X(MOE_IQ3_XXS, iq3_xxs) X(MOE_IQ3_S, iq3_s)

row_dotk_fn moe_arm_row_dotk(int level, int type) {
    if (level < 1) return 0;
    switch (type) {
#define CASE(T, name) case T: return level >= 2 ? krow_##name##_dot : krow_##name##_neon;
        ARM_K_TYPES(CASE)
#undef CASE
    default: return 0;
    }
}

row_dotk2_fn moe_arm_row_dotk2(int level, int type) {
    if (level < 3) return 0;
    switch (type) {
#define CASE(T, name) case T: return kpair_##name;
        ARM_K_TYPES(CASE)
#undef CASE
    default: return 0;
    }
}
#endif
