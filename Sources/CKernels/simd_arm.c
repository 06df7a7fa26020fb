// Hand-written ARM64 (NEON) kernels for every type with an 8-bit-activation kernel, chosen at
// run time in kernels.c: level 3 = i8mm (SMMLA, 2 rows x 2 tokens per instruction), 2 = dotprod
// (SDOT), 1 = plain NEON (SMULL + SADALP), 0 = the portable C. Compiled to nothing elsewhere.
//
// Weights are unpacked into registers 64 at a time (`chunk_*`, simd_arm.h) and used for up to
// 8 tokens (the i8mm tile: 2 rows x 4 tokens). The q8_K kernels are in simd_arm_q8k.c.
// Every level computes the same exact int32 sum per 16 weights and folds the sums into floats
// with the same code in the same order (`fold4`, `fold2`), so all levels, a token alone and a
// token in a batch give bit-identical results; only the integer part differs per level.
// The float fold differs from the scalar reference's order, so they agree within rounding.
// No -march flag is needed: the dotprod and i8mm functions carry target attributes and are
// called only when the CPU reports the feature (getauxval on Linux/Android, sysctl on Apple).
#include "moe_kernels.h"

#if defined(__aarch64__)
#include "simd_arm.h"
#if defined(__APPLE__)
#include <sys/sysctl.h>
#elif defined(__linux__)
#include <sys/auxv.h>
#endif

static int feature(const char *apple_name, int linux_cap, unsigned long linux_bit) {
#if defined(__APPLE__)
    (void)linux_cap, (void)linux_bit;
    int value = 0;
    size_t size = sizeof value;
    return sysctlbyname(apple_name, &value, &size, 0, 0) == 0 && value != 0;
#elif defined(__linux__)
    (void)apple_name;
    return (getauxval((unsigned long)linux_cap) & linux_bit) != 0;
#else
    (void)apple_name, (void)linux_cap, (void)linux_bit;
    return 0;
#endif
}

/// 3 = i8mm and dotprod, 2 = dotprod, 1 = NEON (every AArch64 CPU). Detected once.
int moe_arm_detected_level(void) {
    static int cached = -1;
    int level = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (level < 0) {
        // Linux: AT_HWCAP = 16, HWCAP_ASIMDDP = 1 << 20; AT_HWCAP2 = 26, HWCAP2_I8MM = 1 << 13.
        int dot = feature("hw.optional.arm.FEAT_DotProd", 16, 1ul << 20);
        int mm = feature("hw.optional.arm.FEAT_I8MM", 26, 1ul << 13);
        level = dot ? (mm ? 3 : 2) : 1;
        __atomic_store_n(&cached, level, __ATOMIC_RELAXED);
    }
    return level;
}

// Float part, shared by every level: acc += ws·da·isum − wm·s16 per 16-group (da per 32).
ARM_INLINE float32x4_t fold4(float32x4_t acc, int32x4_t isum, const float *ws, const float *wm, const float *da, const float *sa) {
    float32x2_t dd = vld1_f32(da);
    float32x4_t scale = vmulq_f32(vld1q_f32(ws), vcombine_f32(vdup_lane_f32(dd, 0), vdup_lane_f32(dd, 1)));
    return vfmsq_f32(vfmaq_f32(acc, vcvtq_f32_s32(isum), scale), vld1q_f32(wm), vld1q_f32(sa));
}
ARM_INLINE float32x2_t fold2(float32x2_t acc, int32x2_t isum, const float *ws, const float *wm, float da, const float *sa) {
    return vfms_f32(vfma_f32(acc, vcvt_f32_s32(isum), vmul_n_f32(vld1_f32(ws), da)), vld1_f32(wm), vld1_f32(sa));
}

// One row against 1..ARM_TILE tokens (activation t at q + t·n, d + t·n/32, s16 + t·n/16). Each
// chunk of weights is unpacked once into registers and used for every token; the entry point
// passes 1 and ARM_TILE as constants so those loops unroll and the accumulators stay in registers.
#define ARM_TILE 8
#define ROW(name, UNIT, BYTES, LEVEL, ATTR)                                                              \
    ATTR ARM_INLINE void row_body_##name##_##LEVEL(const uint8_t *row, int n, int tokens, const int8_t *q, \
                                                   const float *d, const float *s16, float *out) {       \
        float ws[UNIT / 16], wm[UNIT / 16];                                                              \
        float32x4_t acc[ARM_TILE];                                                                       \
        float32x2_t acc2[ARM_TILE];                                                                      \
        for (int t = 0; t < tokens; t++) acc[t] = vdupq_n_f32(0), acc2[t] = vdup_n_f32(0);               \
        for (int u = 0; u < n / UNIT; u++) {                                                             \
            const uint8_t *b = row + (size_t)u * BYTES;                                                  \
            scales_##name(b, ws, wm);                                                                    \
            for (int c = 0; c < (UNIT + 63) / 64; c++) {                                                 \
                w64 w = chunk_##name(b, c);                                                              \
                for (int t = 0; t < tokens; t++) {                                                       \
                    size_t e = (size_t)t * n + (size_t)u * UNIT + 64 * c;                                \
                    if (UNIT == 32)                                                                      \
                        acc2[t] = fold2(acc2[t], sums32_##LEVEL(w, q + e), ws, wm, d[e / 32], s16 + e / 16); \
                    else                                                                                 \
                        acc[t] = fold4(acc[t], sums64_##LEVEL(w, q + e), ws + 4 * c, wm + 4 * c, d + e / 32, s16 + e / 16); \
                }                                                                                        \
            }                                                                                            \
        }                                                                                                \
        for (int t = 0; t < tokens; t++) out[t] = UNIT == 32 ? vaddv_f32(acc2[t]) : vaddvq_f32(acc[t]);  \
    }                                                                                                    \
    ATTR static void row_##name##_##LEVEL(const uint8_t *row, int n, int tokens, const int8_t *q,        \
                                          const float *d, const float *s16, float *out) {                \
        if (tokens == 1) row_body_##name##_##LEVEL(row, n, 1, q, d, s16, out);                           \
        else if (tokens == ARM_TILE) row_body_##name##_##LEVEL(row, n, ARM_TILE, q, d, s16, out);        \
        else row_body_##name##_##LEVEL(row, n, tokens, q, d, s16, out);                                  \
    }

// i8mm: 2 rows x 2 tokens per SMMLA (8 weights of each row against 8 activations of each
// token): lanes (r0,t0), (r0,t1), (r1,t0), (r1,t1). Transposing four groups' results gives
// each (row, token) its int32x4 of group sums, folded exactly as in ROW. pairs = 1 or 2.
#define TILE(name, UNIT, BYTES)                                                                          \
    ARM_MM static void tile_##name(const uint8_t *row0, size_t row_bytes, int n, int pairs, const int8_t *q, \
                                   const float *d, const float *s16, float *out /* [row][token] of 2 x 4 */) { \
        float ws[2][UNIT / 16], wm[2][UNIT / 16];                                                        \
        float32x4_t acc[2][4];                                                                           \
        float32x2_t acc2[2][4];                                                                          \
        for (int i = 0; i < 8; i++) acc[i / 4][i % 4] = vdupq_n_f32(0), acc2[i / 4][i % 4] = vdup_n_f32(0); \
        for (int u = 0; u < n / UNIT; u++) {                                                             \
            const uint8_t *b[2] = {row0 + (size_t)u * BYTES, row0 + row_bytes + (size_t)u * BYTES};      \
            scales_##name(b[0], ws[0], wm[0]);                                                           \
            scales_##name(b[1], ws[1], wm[1]);                                                           \
            for (int c = 0; c < (UNIT + 63) / 64; c++) {                                                 \
                w64 w0 = chunk_##name(b[0], c), w1 = chunk_##name(b[1], c);                              \
                for (int p = 0; p < pairs; p++) {                                                        \
                    size_t e0 = (size_t)(2 * p) * n + (size_t)u * UNIT + 64 * c, e1 = e0 + (size_t)n;    \
                    int32x4_t g[4];                                                                      \
                    for (int k = 0; k < (UNIT == 32 ? 2 : 4); k++)                                       \
                        g[k] = mm16(w0.v[k], w1.v[k], vld1q_s8(q + e0 + 16 * k), vld1q_s8(q + e1 + 16 * k)); \
                    if (UNIT == 32) {                                                                    \
                        int32x4_t lo = vtrn1q_s32(g[0], g[1]), hi = vtrn2q_s32(g[0], g[1]);              \
                        int32x2_t s[2][2] = {{vget_low_s32(lo), vget_low_s32(hi)}, {vget_high_s32(lo), vget_high_s32(hi)}}; \
                        for (int r = 0; r < 2; r++)                                                      \
                            for (int t = 0; t < 2; t++) {                                                \
                                size_t e = t ? e1 : e0;                                                  \
                                acc2[r][2 * p + t] = fold2(acc2[r][2 * p + t], s[r][t], ws[r], wm[r], d[e / 32], s16 + e / 16); \
                            }                                                                            \
                    } else {                                                                             \
                        int32x4_t t0 = vtrn1q_s32(g[0], g[1]), t1 = vtrn2q_s32(g[0], g[1]);              \
                        int32x4_t t2 = vtrn1q_s32(g[2], g[3]), t3 = vtrn2q_s32(g[2], g[3]);              \
                        int32x4_t s[2][2] = {                                                            \
                            {vreinterpretq_s32_s64(vzip1q_s64(vreinterpretq_s64_s32(t0), vreinterpretq_s64_s32(t2))), \
                             vreinterpretq_s32_s64(vzip1q_s64(vreinterpretq_s64_s32(t1), vreinterpretq_s64_s32(t3)))}, \
                            {vreinterpretq_s32_s64(vzip2q_s64(vreinterpretq_s64_s32(t0), vreinterpretq_s64_s32(t2))), \
                             vreinterpretq_s32_s64(vzip2q_s64(vreinterpretq_s64_s32(t1), vreinterpretq_s64_s32(t3)))}}; \
                        for (int r = 0; r < 2; r++)                                                      \
                            for (int t = 0; t < 2; t++) {                                                \
                                size_t e = t ? e1 : e0;                                                  \
                                acc[r][2 * p + t] = fold4(acc[r][2 * p + t], s[r][t], ws[r] + 4 * c, wm[r] + 4 * c, d + e / 32, s16 + e / 16); \
                            }                                                                            \
                    }                                                                                    \
                }                                                                                        \
            }                                                                                            \
        }                                                                                                \
        for (int r = 0; r < 2; r++)                                                                      \
            for (int t = 0; t < 2 * pairs; t++) out[4 * r + t] = UNIT == 32 ? vaddv_f32(acc2[r][t]) : vaddvq_f32(acc[r][t]); \
    }

// Prefill is blocked as kernels.c's matmul_rows: a block of rows (~64 KB of weights, kept in L2)
// meets one tile of ARM_TILE tokens at a time (its activations stay in L1). Within a tile, rows
// go in pairs through the i8mm tile (level 3; tokens in fours, then a pair), the rest one row at
// a time. Same arithmetic per (row, token) on every path, so the blocking never shows in results.
#define DEFINE_ARM(name, UNIT, BYTES)                                                                    \
    ROW(name, UNIT, BYTES, neon, ARM_BASE)                                                               \
    ROW(name, UNIT, BYTES, dot, ARM_DOT)                                                                 \
    TILE(name, UNIT, BYTES)                                                                              \
    static void tokens_##name(int level, int n, const uint8_t *w, size_t row_bytes, int r0, int r1, int tokens, \
                              const int8_t *q, const float *d, const float *s16, float *y, int ldy) {    \
        void (*row)(const uint8_t *, int, int, const int8_t *, const float *, const float *, float *) =  \
            level >= 2 ? row_##name##_dot : row_##name##_neon;                                           \
        int r = r0;                                                                                      \
        for (; level >= 3 && tokens >= 2 && r + 2 <= r1; r += 2) {                                       \
            const uint8_t *pair = w + (size_t)r * row_bytes;                                             \
            int t = 0;                                                                                   \
            float out[8];                                                                                \
            while (t + 2 <= tokens) {                                                                    \
                int pairs = t + 4 <= tokens ? 2 : 1;                                                     \
                size_t e = (size_t)t * n;                                                                \
                tile_##name(pair, row_bytes, n, pairs, q + e, d + e / 32, s16 + e / 16, out);            \
                for (int i = 0; i < 2 * pairs; i++)                                                      \
                    y[(size_t)(t + i) * ldy + r] = out[i], y[(size_t)(t + i) * ldy + r + 1] = out[4 + i]; \
                t += 2 * pairs;                                                                          \
            }                                                                                            \
            for (; t < tokens; t++)                                                                      \
                for (int i = 0; i < 2; i++) {                                                            \
                    size_t e = (size_t)t * n;                                                            \
                    row(pair + i * row_bytes, n, 1, q + e, d + e / 32, s16 + e / 16, &y[(size_t)t * ldy + r + i]); \
                }                                                                                        \
        }                                                                                                \
        for (; r < r1; r++) {                                                                            \
            float out[ARM_TILE];                                                                         \
            row(w + (size_t)r * row_bytes, n, tokens, q, d, s16, out);                                   \
            for (int i = 0; i < tokens; i++) y[(size_t)i * ldy + r] = out[i];                            \
        }                                                                                                \
    }                                                                                                    \
    static void matmul_##name(int level, int n, const uint8_t *w, size_t row_bytes, int r0, int r1, int tokens, \
                              const int8_t *q, const float *d, const float *s16, float *y, int ldy) {    \
        int block = tokens <= ARM_TILE ? r1 - r0 : (int)(65536 / (row_bytes ? row_bytes : 1));           \
        if (block < 1) block = 1;                                                                        \
        for (int rb = r0; rb < r1; rb += block)                                                          \
            for (int t = 0; t < tokens; t += ARM_TILE) {                                                 \
                size_t e = (size_t)t * n;                                                                \
                tokens_##name(level, n, w, row_bytes, rb, r1 - rb < block ? r1 : rb + block,             \
                              tokens - t < ARM_TILE ? tokens - t : ARM_TILE, q + e, d + e / 32, s16 + e / 16, \
                              y + (size_t)t * ldy, ldy);                                                 \
            }                                                                                            \
    }

DEFINE_ARM(q8_0, 32, 34)
DEFINE_ARM(q4_0, 32, 18)
DEFINE_ARM(q4_1, 32, 20)
DEFINE_ARM(q5_0, 32, 22)
DEFINE_ARM(q5_1, 32, 24)
DEFINE_ARM(iq4_nl, 32, 18)
DEFINE_ARM(mxfp4, 32, 17)
DEFINE_ARM(q2_K, 256, 84)
DEFINE_ARM(q3_K, 256, 110)
DEFINE_ARM(q4_K, 256, 144)
DEFINE_ARM(q5_K, 256, 176)
DEFINE_ARM(q6_K, 256, 210)
DEFINE_ARM(iq4_xs, 256, 136)

/// kernels.c's hook: computes moe_matmul_q at `level` (1..3) and returns 0, or -1 if `type`
/// has no NEON kernel here (the caller then runs the portable C).
int moe_arm_matmul(int level, int type, int n, const void *w, size_t row_bytes, int r0, int r1, int tokens,
                   const int8_t *q, const float *d, const float *s16, float *y, int ldy) {
    const uint8_t *bytes = (const uint8_t *)w;
    switch (type) {
#define CASE(T, name) case T: matmul_##name(level, n, bytes, row_bytes, r0, r1, tokens, q, d, s16, y, ldy); return 0;
        CASE(MOE_Q8_0, q8_0)
        CASE(MOE_Q4_0, q4_0)
        CASE(MOE_Q4_1, q4_1)
        CASE(MOE_Q5_0, q5_0)
        CASE(MOE_Q5_1, q5_1)
        CASE(MOE_IQ4_NL, iq4_nl)
        CASE(MOE_MXFP4, mxfp4)
        CASE(MOE_Q2_K, q2_K)
        CASE(MOE_Q3_K, q3_K)
        CASE(MOE_Q4_K, q4_K)
        CASE(MOE_Q5_K, q5_K)
        CASE(MOE_Q6_K, q6_K)
        CASE(MOE_IQ4_XS, iq4_xs)
#undef CASE
    default: return -1;
    }
}
#endif
