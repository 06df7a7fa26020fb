// Hand-written ARM64 (NEON) kernels for every type with an 8-bit-activation kernel, chosen at
// run time in kernels.c: level 3 = i8mm (SMMLA, 2 rows x 2 tokens per instruction), 2 = dotprod
// (SDOT), 1 = plain NEON (SMULL + SADALP), 0 = the portable C. Compiled to nothing elsewhere.
//
// Every level computes the same exact int32 sum per 16 weights and folds the sums into floats
// with the same code in the same order (`fold4`, `fold2`), so all levels, a token alone and a
// token in a batch give bit-identical results; only the integer part differs per level.
// The float fold differs from the scalar reference's order, so they agree within rounding.
// No -march flag is needed: the dotprod and i8mm functions carry target attributes and are
// called only when the CPU reports the feature (getauxval on Linux/Android, sysctl on Apple).
#include "moe_kernels.h"

#if defined(__aarch64__)
#include <arm_neon.h>
#include <string.h>
#if defined(__APPLE__)
#include <sys/sysctl.h>
#elif defined(__linux__)
#include <sys/auxv.h>
#endif

#if defined(__clang__)
#define ARM_DOT __attribute__((target("dotprod")))
#define ARM_MM __attribute__((target("dotprod,i8mm")))
#else  // GCC's arm_neon.h declares these intrinsics for armv8.2-a + the feature.
#define ARM_DOT __attribute__((target("arch=armv8.2-a+dotprod")))
#define ARM_MM __attribute__((target("arch=armv8.2-a+dotprod+i8mm")))
#endif
#define ARM_BASE
#define ARM_INLINE static inline __attribute__((always_inline))

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

ARM_INLINE float half(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0);
}

static const int8_t iq4nl_table[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
static const int8_t mxfp4_table[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

// ---------------------------------------------------------------------------------------
// Unpackers (base NEON): a unit to int8 weights (into `q`, or a pointer into the block when
// the bytes already are the weights), with ws/wm per 16 weights: w = ws * q - wm. The same
// layouts and meanings as kernels.c's unpackers.

#define UNPACK(name) ARM_INLINE const int8_t *unpack_##name(const uint8_t *b, int8_t *q, float *ws, float *wm)

ARM_INLINE void nibbles(uint8x16_t v, int8x16_t offset, int8_t *lo, int8_t *hi) {
    vst1q_s8(lo, vaddq_s8(vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0F))), offset));
    vst1q_s8(hi, vaddq_s8(vreinterpretq_s8_u8(vshrq_n_u8(v, 4)), offset));
}
ARM_INLINE void nibbles_table(uint8x16_t v, int8x16_t table, int8_t *lo, int8_t *hi) {
    vst1q_s8(lo, vqtbl1q_s8(table, vandq_u8(v, vdupq_n_u8(0x0F))));
    vst1q_s8(hi, vqtbl1q_s8(table, vshrq_n_u8(v, 4)));
}
ARM_INLINE void same2(float *ws, float *wm, float s, float m) {
    ws[0] = ws[1] = s;
    wm[0] = wm[1] = m;
}
// Q5_0/Q5_1: weight e (0..31) takes bit e of qh as its fifth bit, added as 16.
ARM_INLINE void fifth_bits(const uint8_t *b, int8_t *q, int qh_at, int qs_at, int8x16_t offset) {
    static const uint8_t pick_lo[16] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1};
    static const uint8_t pick_hi[16] = {2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3};
    static const uint8_t bit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    uint32_t qh;
    memcpy(&qh, b + qh_at, 4);
    uint8x16_t bytes = vreinterpretq_u8_u32(vdupq_n_u32(qh)), sixteen = vdupq_n_u8(16);
    uint8x16_t h0 = vandq_u8(vtstq_u8(vqtbl1q_u8(bytes, vld1q_u8(pick_lo)), vld1q_u8(bit)), sixteen);
    uint8x16_t h1 = vandq_u8(vtstq_u8(vqtbl1q_u8(bytes, vld1q_u8(pick_hi)), vld1q_u8(bit)), sixteen);
    uint8x16_t v = vld1q_u8(b + qs_at);
    vst1q_s8(q, vaddq_s8(vreinterpretq_s8_u8(vorrq_u8(vandq_u8(v, vdupq_n_u8(0x0F)), h0)), offset));
    vst1q_s8(q + 16, vaddq_s8(vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(v, 4), h1)), offset));
}

UNPACK(q8_0) { (void)q; same2(ws, wm, half(b), 0); return (const int8_t *)(b + 2); }
UNPACK(q4_0) { nibbles(vld1q_u8(b + 2), vdupq_n_s8(-8), q, q + 16); same2(ws, wm, half(b), 0); return q; }
UNPACK(q4_1) { nibbles(vld1q_u8(b + 4), vdupq_n_s8(0), q, q + 16); same2(ws, wm, half(b), -half(b + 2)); return q; }
UNPACK(q5_0) { fifth_bits(b, q, 2, 6, vdupq_n_s8(-16)); same2(ws, wm, half(b), 0); return q; }
UNPACK(q5_1) { fifth_bits(b, q, 4, 8, vdupq_n_s8(0)); same2(ws, wm, half(b), -half(b + 2)); return q; }
UNPACK(iq4_nl) { nibbles_table(vld1q_u8(b + 2), vld1q_s8(iq4nl_table), q, q + 16); same2(ws, wm, half(b), 0); return q; }
UNPACK(mxfp4) {
    // 2^(e-128), as kernels.c's e8m0_half (the table holds doubled FP4 values).
    uint32_t bits = b[0] < 2 ? (0x00200000u << b[0]) : ((uint32_t)(b[0] - 1) << 23);
    float scale;
    memcpy(&scale, &bits, 4);
    nibbles_table(vld1q_u8(b + 1), vld1q_s8(mxfp4_table), q, q + 16);
    same2(ws, wm, scale, 0);
    return q;
}

UNPACK(q2_K) {  // scales[16] | qs[64] | d | dmin; group g = 8*half + 2*shift_index + part
    float d = half(b + 80), dmin = half(b + 82);
    const uint8x16_t three = vdupq_n_u8(3);
    for (int h = 0; h < 2; h++) {
        uint8x16_t part[2] = {vld1q_u8(b + 16 + 32 * h), vld1q_u8(b + 32 + 32 * h)};
        for (int s = 0; s < 4; s++)
            for (int p = 0; p < 2; p++) {
                int g = 8 * h + 2 * s + p;
                vst1q_s8(q + 16 * g, vreinterpretq_s8_u8(vandq_u8(vshlq_u8(part[p], vdupq_n_s8((int8_t)(-2 * s))), three)));
                ws[g] = d * (float)(b[g] & 0x0F);
                wm[g] = dmin * (float)(b[g] >> 4);
            }
    }
    return q;
}

UNPACK(q3_K) {  // hmask[32] | qs[64] | scales[12] | d; a clear hmask bit subtracts 4
    float d = half(b + 108);
    const uint8_t *sc = b + 96;
    const uint8x16_t three = vdupq_n_u8(3), four = vdupq_n_u8(4);
    uint8x16_t hmask[2] = {vld1q_u8(b), vld1q_u8(b + 16)};
    for (int h = 0; h < 2; h++) {
        uint8x16_t part[2] = {vld1q_u8(b + 32 + 32 * h), vld1q_u8(b + 48 + 32 * h)};
        for (int s = 0; s < 4; s++)
            for (int p = 0; p < 2; p++) {
                int g = 8 * h + 2 * s + p;
                uint8x16_t low = vandq_u8(vshlq_u8(part[p], vdupq_n_s8((int8_t)(-2 * s))), three);
                uint8x16_t sub = vbicq_u8(four, vtstq_u8(hmask[p], vdupq_n_u8((uint8_t)(1 << (4 * h + s)))));
                vst1q_s8(q + 16 * g, vreinterpretq_s8_u8(vsubq_u8(low, sub)));
                int lo = g < 8 ? (sc[g] & 0x0F) : (sc[g - 8] >> 4), hi = (sc[8 + g % 4] >> (2 * (g / 4))) & 3;
                ws[g] = d * (float)((lo | (hi << 4)) - 32);
                wm[g] = 0;
            }
    }
    return q;
}

ARM_INLINE void k4_scales(const uint8_t *b, float *ws, float *wm) {  // Q4_K/Q5_K: d | dmin | scales[12]
    float d = half(b), dmin = half(b + 2);
    const uint8_t *s = b + 4;
    for (int j = 0; j < 8; j++) {
        int sc = j < 4 ? s[j] & 63 : (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4);
        int m = j < 4 ? s[j + 4] & 63 : (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
        same2(ws + 2 * j, wm + 2 * j, d * (float)sc, dmin * (float)m);
    }
}

UNPACK(q4_K) {
    k4_scales(b, ws, wm);
    for (int c = 0; c < 4; c++)
        for (int i = 0; i < 2; i++) nibbles(vld1q_u8(b + 16 + 32 * c + 16 * i), vdupq_n_s8(0), q + 64 * c + 16 * i, q + 64 * c + 32 + 16 * i);
    return q;
}

UNPACK(q5_K) {  // d | dmin | scales[12] | qh[32] | qs[128]
    k4_scales(b, ws, wm);
    const uint8x16_t low = vdupq_n_u8(0x0F), sixteen = vdupq_n_u8(16);
    for (int c = 0; c < 4; c++)
        for (int i = 0; i < 2; i++) {
            uint8x16_t v = vld1q_u8(b + 48 + 32 * c + 16 * i), qh = vld1q_u8(b + 16 + 16 * i);
            uint8x16_t h0 = vandq_u8(vtstq_u8(qh, vdupq_n_u8((uint8_t)(1 << (2 * c)))), sixteen);
            uint8x16_t h1 = vandq_u8(vtstq_u8(qh, vdupq_n_u8((uint8_t)(2 << (2 * c)))), sixteen);
            vst1q_s8(q + 64 * c + 16 * i, vreinterpretq_s8_u8(vorrq_u8(vandq_u8(v, low), h0)));
            vst1q_s8(q + 64 * c + 32 + 16 * i, vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(v, 4), h1)));
        }
    return q;
}

UNPACK(q6_K) {  // ql[128] | qh[64] | scales[16] int8 | d
    float d = half(b + 208);
    const uint8x16_t low = vdupq_n_u8(0x0F), m30 = vdupq_n_u8(0x30);
    const int8x16_t minus32 = vdupq_n_s8(-32);
    for (int h = 0; h < 2; h++)
        for (int i = 0; i < 2; i++) {
            const uint8_t *ql = b + 64 * h + 16 * i;
            uint8x16_t l0 = vld1q_u8(ql), l1 = vld1q_u8(ql + 32), qh = vld1q_u8(b + 128 + 32 * h + 16 * i);
            uint8x16_t v[4] = {vorrq_u8(vandq_u8(l0, low), vandq_u8(vshlq_n_u8(qh, 4), m30)),
                               vorrq_u8(vandq_u8(l1, low), vandq_u8(vshlq_n_u8(qh, 2), m30)),
                               vorrq_u8(vshrq_n_u8(l0, 4), vandq_u8(qh, m30)),
                               vorrq_u8(vshrq_n_u8(l1, 4), vandq_u8(vshrq_n_u8(qh, 2), m30))};
            for (int k = 0; k < 4; k++) vst1q_s8(q + 128 * h + 32 * k + 16 * i, vaddq_s8(vreinterpretq_s8_u8(v[k]), minus32));
        }
    for (int g = 0; g < 16; g++) {
        ws[g] = d * (float)(int8_t)b[192 + g];
        wm[g] = 0;
    }
    return q;
}

UNPACK(iq4_xs) {  // d | scales_h (u16) | scales_l[4] | qs[128]
    float d = half(b);
    unsigned scales_h = (unsigned)(b[2] | (b[3] << 8));
    const int8x16_t table = vld1q_s8(iq4nl_table);
    for (int sub = 0; sub < 8; sub++) {
        int scale = (((b[4 + sub / 2] >> (4 * (sub % 2))) & 0x0F) | (((scales_h >> (2 * sub)) & 3) << 4)) - 32;
        nibbles_table(vld1q_u8(b + 8 + 16 * sub), table, q + 32 * sub, q + 32 * sub + 16);
        same2(ws + 2 * sub, wm + 2 * sub, d * (float)scale, 0);
    }
    return q;
}

// ---------------------------------------------------------------------------------------
// Integer part: the exact sums of w·a per 16 weights, for 64 (→ int32x4) or 32 (→ int32x2)
// weights. Plain NEON widens to int16 (|w·a| ≤ 128·127, two per lane fit) and pairs up.

ARM_INLINE int32x4_t part_neon(int8x16_t w, int8x16_t a) {
    return vpaddlq_s16(vmlal_high_s8(vmull_s8(vget_low_s8(w), vget_low_s8(a)), w, a));
}
ARM_DOT ARM_INLINE int32x4_t part_dot(int8x16_t w, int8x16_t a) { return vdotq_s32(vdupq_n_s32(0), w, a); }

#define GROUP_SUMS(LEVEL, ATTR)                                                                          \
    ATTR ARM_INLINE int32x4_t sums64_##LEVEL(const int8_t *w, const int8_t *a) {                         \
        int32x4_t p0 = part_##LEVEL(vld1q_s8(w), vld1q_s8(a)), p1 = part_##LEVEL(vld1q_s8(w + 16), vld1q_s8(a + 16)); \
        int32x4_t p2 = part_##LEVEL(vld1q_s8(w + 32), vld1q_s8(a + 32)), p3 = part_##LEVEL(vld1q_s8(w + 48), vld1q_s8(a + 48)); \
        return vpaddq_s32(vpaddq_s32(p0, p1), vpaddq_s32(p2, p3));                                        \
    }                                                                                                    \
    ATTR ARM_INLINE int32x2_t sums32_##LEVEL(const int8_t *w, const int8_t *a) {                         \
        int32x4_t p = vpaddq_s32(part_##LEVEL(vld1q_s8(w), vld1q_s8(a)), part_##LEVEL(vld1q_s8(w + 16), vld1q_s8(a + 16))); \
        return vpadd_s32(vget_low_s32(p), vget_high_s32(p));                                             \
    }
GROUP_SUMS(neon, ARM_BASE)
GROUP_SUMS(dot, ARM_DOT)

// Float part, shared by every level: acc += ws·da·isum − wm·s16 per 16-group (da per 32).
ARM_INLINE float32x4_t fold4(float32x4_t acc, int32x4_t isum, const float *ws, const float *wm, const float *da, const float *sa) {
    float32x2_t dd = vld1_f32(da);
    float32x4_t scale = vmulq_f32(vld1q_f32(ws), vcombine_f32(vdup_lane_f32(dd, 0), vdup_lane_f32(dd, 1)));
    return vfmsq_f32(vfmaq_f32(acc, vcvtq_f32_s32(isum), scale), vld1q_f32(wm), vld1q_f32(sa));
}
ARM_INLINE float32x2_t fold2(float32x2_t acc, int32x2_t isum, const float *ws, const float *wm, float da, const float *sa) {
    return vfms_f32(vfma_f32(acc, vcvt_f32_s32(isum), vmul_n_f32(vld1_f32(ws), da)), vld1_f32(wm), vld1_f32(sa));
}

// One row against 1..4 tokens (activation t at q + t·n, d + t·n/32, s16 + t·n/16).
#define ROW(name, UNIT, BYTES, LEVEL, ATTR)                                                              \
    ATTR static void row_##name##_##LEVEL(const uint8_t *row, int n, int tokens, const int8_t *q,        \
                                          const float *d, const float *s16, float *out) {                \
        int8_t buf[UNIT];                                                                                \
        float ws[UNIT / 16], wm[UNIT / 16];                                                              \
        float32x4_t acc[4] = {vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0)};           \
        float32x2_t acc2[4] = {vdup_n_f32(0), vdup_n_f32(0), vdup_n_f32(0), vdup_n_f32(0)};              \
        for (int u = 0; u < n / UNIT; u++) {                                                             \
            const int8_t *w = unpack_##name(row + (size_t)u * BYTES, buf, ws, wm);                       \
            for (int t = 0; t < tokens; t++) {                                                           \
                const int8_t *a = q + (size_t)t * n + (size_t)u * UNIT;                                  \
                const float *da = d + ((size_t)t * n + (size_t)u * UNIT) / 32;                           \
                const float *sa = s16 + ((size_t)t * n + (size_t)u * UNIT) / 16;                         \
                if (UNIT == 32) {                                                                        \
                    acc2[t] = fold2(acc2[t], sums32_##LEVEL(w, a), ws, wm, da[0], sa);                   \
                } else {                                                                                 \
                    for (int c = 0; c < UNIT / 64; c++)                                                  \
                        acc[t] = fold4(acc[t], sums64_##LEVEL(w + 64 * c, a + 64 * c), ws + 4 * c, wm + 4 * c, da + 2 * c, sa + 4 * c); \
                }                                                                                        \
            }                                                                                            \
        }                                                                                                \
        for (int t = 0; t < tokens; t++) out[t] = UNIT == 32 ? vaddv_f32(acc2[t]) : vaddvq_f32(acc[t]);  \
    }

// i8mm: 2 rows x 2 tokens per SMMLA (8 weights of each row against 8 activations of each
// token): lanes (r0,t0), (r0,t1), (r1,t0), (r1,t1). Transposing four groups' results gives
// each (row, token) its int32x4 of group sums, folded exactly as in ROW. pairs = 1 or 2.
ARM_MM ARM_INLINE int32x4_t mm16(int8x16_t w0, int8x16_t w1, int8x16_t a0, int8x16_t a1) {
#define ZIP(f, x, y) vreinterpretq_s8_s64(f(vreinterpretq_s64_s8(x), vreinterpretq_s64_s8(y)))
    int32x4_t r = vmmlaq_s32(vdupq_n_s32(0), ZIP(vzip1q_s64, w0, w1), ZIP(vzip1q_s64, a0, a1));
    return vmmlaq_s32(r, ZIP(vzip2q_s64, w0, w1), ZIP(vzip2q_s64, a0, a1));
#undef ZIP
}
#define TILE(name, UNIT, BYTES)                                                                          \
    ARM_MM static void tile_##name(const uint8_t *row0, size_t row_bytes, int n, int pairs, const int8_t *q, \
                                   const float *d, const float *s16, float *out /* [row][token] of 2 x 4 */) { \
        int8_t buf[2][UNIT];                                                                             \
        float ws[2][UNIT / 16], wm[2][UNIT / 16];                                                        \
        float32x4_t acc[2][4];                                                                           \
        float32x2_t acc2[2][4];                                                                          \
        for (int i = 0; i < 8; i++) acc[i / 4][i % 4] = vdupq_n_f32(0), acc2[i / 4][i % 4] = vdup_n_f32(0); \
        for (int u = 0; u < n / UNIT; u++) {                                                             \
            const int8_t *w[2];                                                                          \
            for (int r = 0; r < 2; r++) w[r] = unpack_##name(row0 + r * row_bytes + (size_t)u * BYTES, buf[r], ws[r], wm[r]); \
            for (int p = 0; p < pairs; p++) {                                                            \
                size_t e0 = (size_t)(2 * p) * n + (size_t)u * UNIT, e1 = e0 + (size_t)n;                 \
                const int8_t *a0 = q + e0, *a1 = q + e1;                                                 \
                for (int c = 0; c < UNIT / 64 + (UNIT == 32); c++) {                                     \
                    int32x4_t g[4];                                                                      \
                    for (int k = 0; k < (UNIT == 32 ? 2 : 4); k++) {                                     \
                        int o = 64 * c + 16 * k;                                                         \
                        g[k] = mm16(vld1q_s8(w[0] + o), vld1q_s8(w[1] + o), vld1q_s8(a0 + o), vld1q_s8(a1 + o)); \
                    }                                                                                    \
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
                                size_t e = (t ? e1 : e0) + 64 * c;                                       \
                                acc[r][2 * p + t] = fold4(acc[r][2 * p + t], s[r][t], ws[r] + 4 * c, wm[r] + 4 * c, d + e / 32, s16 + e / 16); \
                            }                                                                            \
                    }                                                                                    \
                }                                                                                        \
            }                                                                                            \
        }                                                                                                \
        for (int r = 0; r < 2; r++)                                                                      \
            for (int t = 0; t < 2 * pairs; t++) out[4 * r + t] = UNIT == 32 ? vaddv_f32(acc2[r][t]) : vaddvq_f32(acc[r][t]); \
    }

// Rows in pairs and tokens in fours through the i8mm tile (level 3); the rest one row at a
// time in tiles of up to 4 tokens. Same arithmetic per (row, token) on every path.
#define DEFINE_ARM(name, UNIT, BYTES)                                                                    \
    ROW(name, UNIT, BYTES, neon, ARM_BASE)                                                               \
    ROW(name, UNIT, BYTES, dot, ARM_DOT)                                                                 \
    TILE(name, UNIT, BYTES)                                                                              \
    static void matmul_##name(int level, int n, const uint8_t *w, size_t row_bytes, int r0, int r1, int tokens, \
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
            float out[4];                                                                                \
            for (int t = 0; t < tokens; t += 4) {                                                        \
                int count = tokens - t < 4 ? tokens - t : 4;                                             \
                size_t e = (size_t)t * n;                                                                \
                row(w + (size_t)r * row_bytes, n, count, q + e, d + e / 32, s16 + e / 16, out);          \
                for (int i = 0; i < count; i++) y[(size_t)(t + i) * ldy + r] = out[i];                   \
            }                                                                                            \
        }                                                                                                \
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
