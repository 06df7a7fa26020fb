// Shared by the ARM64 kernels (simd_arm.c: 32-block activations; simd_arm_q8k.c: q8_K
// activations): target attributes, the per-type NEON unpackers and the integer sums per 16
// weights at each level. Everything here is static inline; aarch64 only. No -march flag is
// needed: dotprod and i8mm code carries target attributes and runs only where the CPU has it.
#ifndef SWIFTMOE_SIMD_ARM_H
#define SWIFTMOE_SIMD_ARM_H
#if defined(__aarch64__)
#include <arm_neon.h>
#include <stdint.h>
#include <string.h>

#if defined(__clang__)
#define ARM_DOT __attribute__((target("dotprod")))
#define ARM_MM __attribute__((target("dotprod,i8mm")))
#else  // GCC's arm_neon.h declares these intrinsics for armv8.2-a + the feature.
#define ARM_DOT __attribute__((target("arch=armv8.2-a+dotprod")))
#define ARM_MM __attribute__((target("arch=armv8.2-a+dotprod+i8mm")))
#endif
#define ARM_BASE
#define ARM_INLINE static inline __attribute__((always_inline))

ARM_INLINE float half(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0);
}

static const int8_t iq4nl_table[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
static const int8_t mxfp4_table[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

// ---------------------------------------------------------------------------------------
// Unpackers (base NEON), kept in registers: `scales_X` gives a unit's (block's or super-block's)
// float scale and offset per 16 weights, w = ws * q - wm; `chunk_X` gives its int8 weights
// 64 at a time (32 for 32-weight blocks: v[0], v[1]), in the order of kernels.c's unpackers.

typedef struct {
    int8x16_t v[4];
} w64;

#define SCALES(name) ARM_INLINE void scales_##name(const uint8_t *b, float *ws, float *wm)
#define CHUNK(name) ARM_INLINE w64 chunk_##name(const uint8_t *b, int c)

ARM_INLINE void same2(float *ws, float *wm, float s, float m) {
    ws[0] = ws[1] = s;
    wm[0] = wm[1] = m;
}
ARM_INLINE int8x16_t low_nibbles(uint8x16_t v, int8_t offset) {
    return vaddq_s8(vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0F))), vdupq_n_s8(offset));
}
ARM_INLINE int8x16_t high_nibbles(uint8x16_t v, int8_t offset) { return vaddq_s8(vreinterpretq_s8_u8(vshrq_n_u8(v, 4)), vdupq_n_s8(offset)); }
ARM_INLINE w64 nibbles(const uint8_t *p, int8_t offset) {
    uint8x16_t v = vld1q_u8(p);
    return (w64){{low_nibbles(v, offset), high_nibbles(v, offset)}};
}
ARM_INLINE w64 nibbles_table(const uint8_t *p, const int8_t *levels) {
    uint8x16_t v = vld1q_u8(p);
    int8x16_t table = vld1q_s8(levels);
    return (w64){{vqtbl1q_s8(table, vandq_u8(v, vdupq_n_u8(0x0F))), vqtbl1q_s8(table, vshrq_n_u8(v, 4))}};
}
// Q5_0/Q5_1: weight e (0..31) takes bit e of qh as its fifth bit, added as 16.
ARM_INLINE w64 fifth_bits(const uint8_t *b, int qh_at, int qs_at, int8_t offset) {
    static const uint8_t pick_lo[16] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1};
    static const uint8_t pick_hi[16] = {2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3};
    static const uint8_t bit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    uint32_t qh;
    memcpy(&qh, b + qh_at, 4);
    uint8x16_t bytes = vreinterpretq_u8_u32(vdupq_n_u32(qh)), sixteen = vdupq_n_u8(16);
    uint8x16_t h0 = vandq_u8(vtstq_u8(vqtbl1q_u8(bytes, vld1q_u8(pick_lo)), vld1q_u8(bit)), sixteen);
    uint8x16_t h1 = vandq_u8(vtstq_u8(vqtbl1q_u8(bytes, vld1q_u8(pick_hi)), vld1q_u8(bit)), sixteen);
    uint8x16_t v = vld1q_u8(b + qs_at);
    return (w64){{vaddq_s8(vreinterpretq_s8_u8(vorrq_u8(vandq_u8(v, vdupq_n_u8(0x0F)), h0)), vdupq_n_s8(offset)),
                  vaddq_s8(vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(v, 4), h1)), vdupq_n_s8(offset))}};
}
ARM_INLINE float e8m0_half(uint8_t e) {  // 2^(e-128), as kernels.c (the table holds doubled FP4 values)
    uint32_t bits = e < 2 ? (0x00200000u << e) : ((uint32_t)(e - 1) << 23);
    float scale;
    memcpy(&scale, &bits, 4);
    return scale;
}

SCALES(q8_0) { same2(ws, wm, half(b), 0); }
CHUNK(q8_0) { (void)c; return (w64){{vld1q_s8((const int8_t *)b + 2), vld1q_s8((const int8_t *)b + 18)}}; }
SCALES(q4_0) { same2(ws, wm, half(b), 0); }
CHUNK(q4_0) { (void)c; return nibbles(b + 2, -8); }
SCALES(q4_1) { same2(ws, wm, half(b), -half(b + 2)); }
CHUNK(q4_1) { (void)c; return nibbles(b + 4, 0); }
SCALES(q5_0) { same2(ws, wm, half(b), 0); }
CHUNK(q5_0) { (void)c; return fifth_bits(b, 2, 6, -16); }
SCALES(q5_1) { same2(ws, wm, half(b), -half(b + 2)); }
CHUNK(q5_1) { (void)c; return fifth_bits(b, 4, 8, 0); }
SCALES(iq4_nl) { same2(ws, wm, half(b), 0); }
CHUNK(iq4_nl) { (void)c; return nibbles_table(b + 2, iq4nl_table); }
SCALES(mxfp4) { same2(ws, wm, e8m0_half(b[0]), 0); }
CHUNK(mxfp4) { (void)c; return nibbles_table(b + 1, mxfp4_table); }

// Q2_K: scales[16] | qs[64] | d | dmin. Group g = 8*half + 2*shift + part holds 2-bit field
// `shift` of qs[32*half + 16*part ..]; chunk c is groups 4c..4c+3.
SCALES(q2_K) {
    float d = half(b + 80), dmin = half(b + 82);
    for (int g = 0; g < 16; g++) {
        ws[g] = d * (float)(b[g] & 0x0F);
        wm[g] = dmin * (float)(b[g] >> 4);
    }
}
CHUNK(q2_K) {
    const uint8_t *qs = b + 16 + 32 * (c / 2);
    uint8x16_t part[2] = {vld1q_u8(qs), vld1q_u8(qs + 16)}, three = vdupq_n_u8(3);
    w64 w;
    for (int k = 0; k < 4; k++)
        w.v[k] = vreinterpretq_s8_u8(vandq_u8(vshlq_u8(part[k % 2], vdupq_n_s8((int8_t)(-2 * (2 * (c % 2) + k / 2)))), three));
    return w;
}

// Q3_K: hmask[32] | qs[64] | scales[12] | d. As Q2_K, minus 4 where bit (4*half + shift) of
// hmask[16*part ..] is clear; 6-bit scales - 32.
SCALES(q3_K) {
    float d = half(b + 108);
    const uint8_t *sc = b + 96;
    for (int g = 0; g < 16; g++) {
        int lo = g < 8 ? (sc[g] & 0x0F) : (sc[g - 8] >> 4), hi = (sc[8 + g % 4] >> (2 * (g / 4))) & 3;
        ws[g] = d * (float)((lo | (hi << 4)) - 32);
        wm[g] = 0;
    }
}
CHUNK(q3_K) {
    const uint8_t *qs = b + 32 + 32 * (c / 2);
    uint8x16_t part[2] = {vld1q_u8(qs), vld1q_u8(qs + 16)}, hmask[2] = {vld1q_u8(b), vld1q_u8(b + 16)};
    w64 w;
    for (int k = 0; k < 4; k++) {
        int shift = 2 * (c % 2) + k / 2;
        uint8x16_t low = vandq_u8(vshlq_u8(part[k % 2], vdupq_n_s8((int8_t)(-2 * shift))), vdupq_n_u8(3));
        uint8x16_t sub = vbicq_u8(vdupq_n_u8(4), vtstq_u8(hmask[k % 2], vdupq_n_u8((uint8_t)(1 << (4 * (c / 2) + shift)))));
        w.v[k] = vreinterpretq_s8_u8(vsubq_u8(low, sub));
    }
    return w;
}

// Q4_K / Q5_K: d | dmin | scales[12] (6-bit scale and min per 32) | [Q5_K: qh[32]] | qs[128].
ARM_INLINE void k4_scales(const uint8_t *b, float *ws, float *wm) {
    float d = half(b), dmin = half(b + 2);
    const uint8_t *s = b + 4;
    for (int j = 0; j < 8; j++) {
        int sc = j < 4 ? s[j] & 63 : (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4);
        int m = j < 4 ? s[j + 4] & 63 : (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
        same2(ws + 2 * j, wm + 2 * j, d * (float)sc, dmin * (float)m);
    }
}
SCALES(q4_K) { k4_scales(b, ws, wm); }
CHUNK(q4_K) {
    uint8x16_t x0 = vld1q_u8(b + 16 + 32 * c), x1 = vld1q_u8(b + 32 + 32 * c);
    return (w64){{low_nibbles(x0, 0), low_nibbles(x1, 0), high_nibbles(x0, 0), high_nibbles(x1, 0)}};
}
SCALES(q5_K) { k4_scales(b, ws, wm); }
CHUNK(q5_K) {  // the fifth bit of weight l of chunk c: bit 2c (low nibbles) or 2c+1 (high) of qh[l]
    uint8x16_t x[2] = {vld1q_u8(b + 48 + 32 * c), vld1q_u8(b + 64 + 32 * c)}, qh[2] = {vld1q_u8(b + 16), vld1q_u8(b + 32)};
    uint8x16_t sixteen = vdupq_n_u8(16), low = vdupq_n_u8(0x0F);
    w64 w;
    for (int i = 0; i < 2; i++) {
        uint8x16_t h0 = vandq_u8(vtstq_u8(qh[i], vdupq_n_u8((uint8_t)(1 << (2 * c)))), sixteen);
        uint8x16_t h1 = vandq_u8(vtstq_u8(qh[i], vdupq_n_u8((uint8_t)(2 << (2 * c)))), sixteen);
        w.v[i] = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(x[i], low), h0));
        w.v[2 + i] = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(x[i], 4), h1));
    }
    return w;
}

// Q6_K: ql[128] | qh[64] | scales[16] int8 | d; weight = 6-bit value - 32. Chunk c covers rows
// k = 2(c%2), 2(c%2)+1 of half c/2 (kernels.c's out[l + 32k]).
SCALES(q6_K) {
    float d = half(b + 208);
    for (int g = 0; g < 16; g++) {
        ws[g] = d * (float)(int8_t)b[192 + g];
        wm[g] = 0;
    }
}
CHUNK(q6_K) {
    const uint8x16_t low = vdupq_n_u8(0x0F), m30 = vdupq_n_u8(0x30);
    const int h = c / 2, upper = c % 2;
    w64 w;
    for (int i = 0; i < 2; i++) {
        const uint8_t *ql = b + 64 * h + 16 * i;
        uint8x16_t l0 = vld1q_u8(ql), l1 = vld1q_u8(ql + 32), qh = vld1q_u8(b + 128 + 32 * h + 16 * i);
        uint8x16_t a = upper ? vorrq_u8(vshrq_n_u8(l0, 4), vandq_u8(qh, m30)) : vorrq_u8(vandq_u8(l0, low), vandq_u8(vshlq_n_u8(qh, 4), m30));
        uint8x16_t e = upper ? vorrq_u8(vshrq_n_u8(l1, 4), vandq_u8(vshrq_n_u8(qh, 2), m30))
                             : vorrq_u8(vandq_u8(l1, low), vandq_u8(vshlq_n_u8(qh, 2), m30));
        w.v[i] = vsubq_s8(vreinterpretq_s8_u8(a), vdupq_n_s8(32));
        w.v[2 + i] = vsubq_s8(vreinterpretq_s8_u8(e), vdupq_n_s8(32));
    }
    return w;
}

// IQ4_XS: d | scales_h (u16) | scales_l[4] | qs[128]; sub-block s of 32: 6-bit scale - 32.
SCALES(iq4_xs) {
    float d = half(b);
    unsigned scales_h = (unsigned)(b[2] | (b[3] << 8));
    for (int s = 0; s < 8; s++) {
        int scale = (((b[4 + s / 2] >> (4 * (s % 2))) & 0x0F) | (((scales_h >> (2 * s)) & 3) << 4)) - 32;
        same2(ws + 2 * s, wm + 2 * s, d * (float)scale, 0);
    }
}
CHUNK(iq4_xs) {
    w64 a = nibbles_table(b + 8 + 32 * c, iq4nl_table), e = nibbles_table(b + 24 + 32 * c, iq4nl_table);
    return (w64){{a.v[0], a.v[1], e.v[0], e.v[1]}};
}

// ---------------------------------------------------------------------------------------
// Integer part: the exact sums of w·a per 16 weights, for 64 (→ int32x4) or 32 (→ int32x2)
// weights. Plain NEON widens to int16 (|w·a| ≤ 128·127, two per lane fit) and pairs up.

ARM_INLINE int32x4_t part_neon(int8x16_t w, int8x16_t a) {
    return vpaddlq_s16(vmlal_high_s8(vmull_s8(vget_low_s8(w), vget_low_s8(a)), w, a));
}
ARM_DOT ARM_INLINE int32x4_t part_dot(int8x16_t w, int8x16_t a) { return vdotq_s32(vdupq_n_s32(0), w, a); }

#define GROUP_SUMS(LEVEL, ATTR)                                                                          \
    ATTR ARM_INLINE int32x4_t sums64_##LEVEL(w64 w, const int8_t *a) {                                   \
        int32x4_t p0 = part_##LEVEL(w.v[0], vld1q_s8(a)), p1 = part_##LEVEL(w.v[1], vld1q_s8(a + 16));   \
        int32x4_t p2 = part_##LEVEL(w.v[2], vld1q_s8(a + 32)), p3 = part_##LEVEL(w.v[3], vld1q_s8(a + 48)); \
        return vpaddq_s32(vpaddq_s32(p0, p1), vpaddq_s32(p2, p3));                                        \
    }                                                                                                    \
    ATTR ARM_INLINE int32x2_t sums32_##LEVEL(w64 w, const int8_t *a) {                                   \
        int32x4_t p = vpaddq_s32(part_##LEVEL(w.v[0], vld1q_s8(a)), part_##LEVEL(w.v[1], vld1q_s8(a + 16))); \
        return vpadd_s32(vget_low_s32(p), vget_high_s32(p));                                             \
    }
GROUP_SUMS(neon, ARM_BASE)
GROUP_SUMS(dot, ARM_DOT)

// i8mm: 16 weights of each of 2 rows against 16 activations of each of 2 tokens, two SMMLA
// (8 of each per instruction): int32 lanes (r0,t0), (r0,t1), (r1,t0), (r1,t1), exact.
ARM_MM ARM_INLINE int32x4_t mm16(int8x16_t w0, int8x16_t w1, int8x16_t a0, int8x16_t a1) {
#define ZIP(f, x, y) vreinterpretq_s8_s64(f(vreinterpretq_s64_s8(x), vreinterpretq_s64_s8(y)))
    int32x4_t r = vmmlaq_s32(vdupq_n_s32(0), ZIP(vzip1q_s64, w0, w1), ZIP(vzip1q_s64, a0, a1));
    return vmmlaq_s32(r, ZIP(vzip2q_s64, w0, w1), ZIP(vzip2q_s64, a0, a1));
#undef ZIP
}

#endif
#endif
