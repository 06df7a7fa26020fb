// See include/moe_kernels.h. Block layouts follow ggml-common.h; Sources/Quantization has
// the Swift dequantizers these unpackers agree with (tested).
#include "moe_kernels.h"
#include "kernels_internal.h"

#include <math.h>
#include <string.h>

// Under ThreadSanitizer the clones are left out (baseline code only): TSan instruments the
// resolver that target_clones generates, and the dynamic loader runs resolvers while it
// relocates the binary, before TSan's runtime is set up, so the binary died with SIGSEGV in
// __tsan_func_entry before main (tools/sanitize.sh thread; docs/reliability.md). The threads
// are in Swift, so the race checks lose nothing; the hand-written kernels still dispatch.
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MOE_NO_CLONES 1
#endif
#endif

#if defined(__x86_64__) && defined(__clang__) && !defined(MOE_NO_CLONES)
#define MOE_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define MOE_CLONES
#endif

#define MOE_INLINE static inline __attribute__((always_inline))

// ---------------------------------------------------------------------------------------
// Scalar helpers

MOE_INLINE float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exponent = (h >> 10) & 0x1F;
    uint32_t mantissa = h & 0x3FF;
    uint32_t bits;
    if (exponent == 0) {
        if (mantissa == 0) {
            bits = sign;
        } else {
            // Subnormal: value = mantissa * 2^-24.
            float v = (float)mantissa * 5.9604644775390625e-08f;
            memcpy(&bits, &v, 4);
            bits |= sign;
        }
    } else if (exponent == 31) {
        bits = sign | 0x7F800000u | (mantissa << 13);
    } else {
        bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
    }
    float out;
    memcpy(&out, &bits, 4);
    return out;
}

MOE_INLINE float bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float out;
    memcpy(&out, &bits, 4);
    return out;
}

MOE_INLINE uint16_t load_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
MOE_INLINE uint32_t load_u32(const uint8_t *p) { return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24); }
MOE_INLINE float load_f16(const uint8_t *p) { return f16_to_f32(load_u16(p)); }

static const int8_t iq4nl_levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
static const int8_t mxfp4_levels[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

MOE_INLINE float e8m0_half(uint8_t e) {
    // ggml's GGML_E8M0_TO_FP32_HALF: 2^(e-128); the mxfp4 levels above are doubled FP4 values.
    uint32_t bits = e < 2 ? (0x00200000u << e) : ((uint32_t)(e - 1) << 23);
    float out;
    memcpy(&out, &bits, 4);
    return out;
}

// ---------------------------------------------------------------------------------------
// Activation quantization

// roundf(y) for |y| <= 128 (what the quantizers below produce), written so that it
// vectorizes: adding the largest float below 0.5 (0x1.fffffep-2) with y's sign and truncating gives the same
// integer as roundf (halves away from zero) for every float in [-128, 128] (checked
// exhaustively), where roundf itself is a libm call per element.
MOE_INLINE int round_half_away(float y) { return (int)(y + copysignf(0x1.fffffep-2f, y)); }

void moe_quantize_activations(const float *x, int n, int8_t *q, float *d, float *s16) {
    for (int b = 0; b < n / 32; b++) {
        const float *xb = x + 32 * b;
        float amax = 0;
        for (int i = 0; i < 32; i++) {
            float a = fabsf(xb[i]);
            amax = a > amax ? a : amax;
        }
        float scale = amax / 127.0f;
        float inverse = scale != 0 ? 1.0f / scale : 0.0f;
        int sum0 = 0, sum1 = 0;
        for (int i = 0; i < 32; i++) {
            int v = round_half_away(xb[i] * inverse);
            q[32 * b + i] = (int8_t)v;
            if (i < 16) sum0 += v; else sum1 += v;
        }
        d[b] = scale;
        s16[2 * b] = scale * (float)sum0;
        s16[2 * b + 1] = scale * (float)sum1;
    }
}

void moe_quantize_activations_k(const float *x, int n, int8_t *q, float *d, int16_t *bsums, float *sums) {
    for (int b = 0; b < n / 256; b++) {
        const float *xb = x + 256 * b;
        float amax = 0;
        for (int i = 0; i < 256; i++) {
            float a = fabsf(xb[i]);
            amax = a > amax ? a : amax;
        }
        float scale = amax / 127.0f;
        float inverse = scale != 0 ? 1.0f / scale : 0.0f;
        for (int g = 0; g < 16; g++) {
            int sum = 0;
            for (int i = 0; i < 16; i++) {
                int v = round_half_away(xb[16 * g + i] * inverse);
                q[256 * b + 16 * g + i] = (int8_t)v;
                sum += v;
            }
            bsums[16 * b + g] = (int16_t)sum;
            sums[16 * b + g] = scale * (float)sum;
        }
        d[b] = scale;
    }
}

// ---------------------------------------------------------------------------------------
// Unpackers: one unit (a 32-element block, or a 256-element super-block) to int8 values
// `q` with a scale `ws[g]` and offset `wm[g]` per 16 elements: w = ws * q - wm.

#define UNPACK(name) MOE_INLINE void unpack_##name(const uint8_t *b, int8_t *q, float *ws, float *wm)

UNPACK(q8_0) {
    float d = load_f16(b);
    for (int i = 0; i < 32; i++) q[i] = (int8_t)b[2 + i];
    ws[0] = ws[1] = d;
    wm[0] = wm[1] = 0;
}

UNPACK(q4_0) {
    float d = load_f16(b);
    for (int j = 0; j < 16; j++) {
        q[j] = (int8_t)((b[2 + j] & 0x0F) - 8);
        q[j + 16] = (int8_t)((b[2 + j] >> 4) - 8);
    }
    ws[0] = ws[1] = d;
    wm[0] = wm[1] = 0;
}

UNPACK(q4_1) {
    float d = load_f16(b), m = load_f16(b + 2);
    for (int j = 0; j < 16; j++) {
        q[j] = (int8_t)(b[4 + j] & 0x0F);
        q[j + 16] = (int8_t)(b[4 + j] >> 4);
    }
    ws[0] = ws[1] = d;
    wm[0] = wm[1] = -m;
}

UNPACK(q5_0) {
    float d = load_f16(b);
    uint32_t qh = load_u32(b + 2);
    for (int j = 0; j < 16; j++) {
        int h0 = ((qh >> j) << 4) & 0x10, h1 = (qh >> (j + 12)) & 0x10;
        q[j] = (int8_t)(((b[6 + j] & 0x0F) | h0) - 16);
        q[j + 16] = (int8_t)(((b[6 + j] >> 4) | h1) - 16);
    }
    ws[0] = ws[1] = d;
    wm[0] = wm[1] = 0;
}

UNPACK(q5_1) {
    float d = load_f16(b), m = load_f16(b + 2);
    uint32_t qh = load_u32(b + 4);
    for (int j = 0; j < 16; j++) {
        int h0 = ((qh >> j) << 4) & 0x10, h1 = (qh >> (j + 12)) & 0x10;
        q[j] = (int8_t)((b[8 + j] & 0x0F) | h0);
        q[j + 16] = (int8_t)((b[8 + j] >> 4) | h1);
    }
    ws[0] = ws[1] = d;
    wm[0] = wm[1] = -m;
}

UNPACK(iq4_nl) {
    float d = load_f16(b);
    for (int j = 0; j < 16; j++) {
        q[j] = iq4nl_levels[b[2 + j] & 0x0F];
        q[j + 16] = iq4nl_levels[b[2 + j] >> 4];
    }
    ws[0] = ws[1] = d;
    wm[0] = wm[1] = 0;
}

UNPACK(mxfp4) {
    float d = e8m0_half(b[0]);
    for (int j = 0; j < 16; j++) {
        q[j] = mxfp4_levels[b[1 + j] & 0x0F];
        q[j + 16] = mxfp4_levels[b[1 + j] >> 4];
    }
    ws[0] = ws[1] = d;
    wm[0] = wm[1] = 0;
}

UNPACK(q2_K) {
    // scales[16] | qs[64] | d | dmin
    float d = load_f16(b + 80), dmin = load_f16(b + 82);
    int g = 0;
    for (int half = 0; half < 2; half++) {
        const uint8_t *qs = b + 16 + 32 * half;
        for (int shift = 0; shift < 8; shift += 2) {
            for (int part = 0; part < 2; part++) {
                uint8_t sc = b[g];
                ws[g] = d * (float)(sc & 0x0F);
                wm[g] = dmin * (float)(sc >> 4);
                for (int l = 0; l < 16; l++) q[16 * g + l] = (int8_t)((qs[16 * part + l] >> shift) & 3);
                g++;
            }
        }
    }
}

MOE_INLINE int q3_K_scale(const uint8_t *scales, int j) {
    int low = j < 8 ? (scales[j] & 0x0F) : (scales[j - 8] >> 4);
    int high = (scales[8 + j % 4] >> (2 * (j / 4))) & 3;
    return (low | (high << 4)) - 32;
}

UNPACK(q3_K) {
    // hmask[32] | qs[64] | scales[12] | d
    float d = load_f16(b + 108);
    int g = 0;
    uint8_t mask = 1;
    for (int half = 0; half < 2; half++) {
        const uint8_t *qs = b + 32 + 32 * half;
        for (int shift = 0; shift < 8; shift += 2) {
            for (int part = 0; part < 2; part++) {
                ws[g] = d * (float)q3_K_scale(b + 96, g);
                wm[g] = 0;
                for (int l = 0; l < 16; l++) {
                    int low = (qs[16 * part + l] >> shift) & 3;
                    int high = (b[16 * part + l] & mask) ? 0 : 4;
                    q[16 * g + l] = (int8_t)(low - high);
                }
                g++;
            }
            mask <<= 1;
        }
    }
}

MOE_INLINE void k4_scale_min(const uint8_t *scales, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = scales[j] & 63;
        *m = scales[j + 4] & 63;
    } else {
        *sc = (scales[j + 4] & 0x0F) | ((scales[j - 4] >> 6) << 4);
        *m = (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4);
    }
}

UNPACK(q4_K) {
    // d | dmin | scales[12] | qs[128]
    float d = load_f16(b), dmin = load_f16(b + 2);
    for (int chunk = 0; chunk < 4; chunk++) {
        const uint8_t *qs = b + 16 + 32 * chunk;
        int sc1, m1, sc2, m2;
        k4_scale_min(b + 4, 2 * chunk, &sc1, &m1);
        k4_scale_min(b + 4, 2 * chunk + 1, &sc2, &m2);
        for (int l = 0; l < 32; l++) {
            q[64 * chunk + l] = (int8_t)(qs[l] & 0x0F);
            q[64 * chunk + 32 + l] = (int8_t)(qs[l] >> 4);
        }
        ws[4 * chunk] = ws[4 * chunk + 1] = d * (float)sc1;
        wm[4 * chunk] = wm[4 * chunk + 1] = dmin * (float)m1;
        ws[4 * chunk + 2] = ws[4 * chunk + 3] = d * (float)sc2;
        wm[4 * chunk + 2] = wm[4 * chunk + 3] = dmin * (float)m2;
    }
}

UNPACK(q5_K) {
    // d | dmin | scales[12] | qh[32] | qs[128]
    float d = load_f16(b), dmin = load_f16(b + 2);
    const uint8_t *qh = b + 16;
    for (int chunk = 0; chunk < 4; chunk++) {
        const uint8_t *qs = b + 48 + 32 * chunk;
        int sc1, m1, sc2, m2;
        k4_scale_min(b + 4, 2 * chunk, &sc1, &m1);
        k4_scale_min(b + 4, 2 * chunk + 1, &sc2, &m2);
        uint8_t bit1 = (uint8_t)(1 << (2 * chunk)), bit2 = (uint8_t)(2 << (2 * chunk));
        for (int l = 0; l < 32; l++) {
            q[64 * chunk + l] = (int8_t)((qs[l] & 0x0F) + ((qh[l] & bit1) ? 16 : 0));
            q[64 * chunk + 32 + l] = (int8_t)((qs[l] >> 4) + ((qh[l] & bit2) ? 16 : 0));
        }
        ws[4 * chunk] = ws[4 * chunk + 1] = d * (float)sc1;
        wm[4 * chunk] = wm[4 * chunk + 1] = dmin * (float)m1;
        ws[4 * chunk + 2] = ws[4 * chunk + 3] = d * (float)sc2;
        wm[4 * chunk + 2] = wm[4 * chunk + 3] = dmin * (float)m2;
    }
}

UNPACK(q6_K) {
    // ql[128] | qh[64] | scales[16] (int8) | d
    float d = load_f16(b + 208);
    for (int half = 0; half < 2; half++) {
        const uint8_t *ql = b + 64 * half, *qh = b + 128 + 32 * half;
        int8_t *out = q + 128 * half;
        for (int l = 0; l < 32; l++) {
            out[l] = (int8_t)(((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) - 32);
            out[l + 32] = (int8_t)(((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32);
            out[l + 64] = (int8_t)(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
            out[l + 96] = (int8_t)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
        }
    }
    for (int g = 0; g < 16; g++) {
        ws[g] = d * (float)(int8_t)b[192 + g];
        wm[g] = 0;
    }
}

UNPACK(iq4_xs) {
    // d | scales_h (u16) | scales_l[4] | qs[128]
    float d = load_f16(b);
    uint16_t scales_h = load_u16(b + 2);
    for (int sub = 0; sub < 8; sub++) {
        int low = (b[4 + sub / 2] >> (4 * (sub % 2))) & 0x0F;
        int high = (scales_h >> (2 * sub)) & 3;
        float dl = d * (float)((low | (high << 4)) - 32);
        const uint8_t *qs = b + 8 + 16 * sub;
        for (int j = 0; j < 16; j++) {
            q[32 * sub + j] = iq4nl_levels[qs[j] & 0x0F];
            q[32 * sub + j + 16] = iq4nl_levels[qs[j] >> 4];
        }
        ws[2 * sub] = ws[2 * sub + 1] = dl;
        wm[2 * sub] = wm[2 * sub + 1] = 0;
    }
}

// IQ2_XXS, IQ2_XS, IQ3_XXS, IQ3_S: grid lookups (iq_unpack.h, tables in iq_grids.h).
#include "iq_unpack.h"

// ---------------------------------------------------------------------------------------
// The dot product of one unpacked unit with quantized activations.

MOE_INLINE float dot_unit(int groups, const int8_t *wq, const float *ws, const float *wm,
                          const int8_t *aq, const float *ad, const float *as16) {
    int32_t isum[16];
    for (int g = 0; g < groups; g++) {
        int32_t s = 0;
        for (int i = 0; i < 16; i++) s += (int32_t)wq[16 * g + i] * (int32_t)aq[16 * g + i];
        isum[g] = s;
    }
    float sum = 0;
    for (int g = 0; g < groups; g++) sum += ws[g] * ad[g >> 1] * (float)isum[g] - wm[g] * as16[g];
    return sum;
}

// One matvec/matmul per type, cloned per CPU level. `UNIT` elements per unit of `BYTES`.
#define DEFINE_TYPE(name, UNIT, BYTES)                                                                  \
    MOE_CLONES static void matmul_##name(int n, const uint8_t *w, size_t row_bytes, int r0, int r1,      \
                                         int tokens, const int8_t *q, const float *d, const float *s16,  \
                                         float *y, int ldy) {                                            \
        int8_t wq[256];                                                                                  \
        float ws[16], wm[16];                                                                            \
        float acc[64];                                                                                   \
        for (int r = r0; r < r1; r++) {                                                                  \
            const uint8_t *row = w + (size_t)r * row_bytes;                                              \
            for (int t0 = 0; t0 < tokens; t0 += 64) {                                                    \
                int tn = tokens - t0 < 64 ? tokens - t0 : 64;                                            \
                for (int t = 0; t < tn; t++) acc[t] = 0;                                                 \
                for (int u = 0; u < n / UNIT; u++) {                                                     \
                    unpack_##name(row + (size_t)u * BYTES, wq, ws, wm);                                  \
                    for (int t = 0; t < tn; t++) {                                                       \
                        size_t a = (size_t)(t0 + t) * n + (size_t)u * UNIT;                              \
                        acc[t] += dot_unit(UNIT / 16, wq, ws, wm, q + a, d + a / 32, s16 + a / 16);      \
                    }                                                                                    \
                }                                                                                        \
                for (int t = 0; t < tn; t++) y[(size_t)(t0 + t) * ldy + r] = acc[t];                     \
            }                                                                                            \
        }                                                                                                \
    }                                                                                                    \
    __attribute__((optnone)) static void reference_##name(int n, const uint8_t *w, size_t row_bytes,     \
                                                          int r0, int r1, const int8_t *q,               \
                                                          const float *d, const float *s16, float *y) {  \
        int8_t wq[256];                                                                                  \
        float ws[16], wm[16];                                                                            \
        for (int r = r0; r < r1; r++) {                                                                  \
            const uint8_t *row = w + (size_t)r * row_bytes;                                              \
            float acc = 0;                                                                               \
            for (int u = 0; u < n / UNIT; u++) {                                                         \
                unpack_##name(row + (size_t)u * BYTES, wq, ws, wm);                                      \
                for (int g = 0; g < UNIT / 16; g++) {                                                    \
                    int32_t s = 0;                                                                       \
                    for (int i = 0; i < 16; i++) s += (int32_t)wq[16 * g + i] * (int32_t)q[u * UNIT + 16 * g + i]; \
                    acc += ws[g] * d[(u * UNIT + 16 * g) / 32] * (float)s - wm[g] * s16[(u * UNIT) / 16 + g]; \
                }                                                                                        \
            }                                                                                            \
            y[r] = acc;                                                                                  \
        }                                                                                                \
    }

// Scalar reference against q8_K activations: per 16 weights an exact integer dot product, then
// (ws·isum - wm·bsum) · d_activation in f32.
#define DEFINE_REFERENCE_K(name, BYTES)                                                                  \
    static void reference_k_##name(int n, const uint8_t *w, size_t row_bytes, int r0, int r1,            \
                                   const int8_t *q, const float *dk, const int16_t *bs, float *y) {      \
        int8_t wq[256];                                                                                  \
        float ws[16], wm[16];                                                                            \
        for (int r = r0; r < r1; r++) {                                                                  \
            const uint8_t *row = w + (size_t)r * row_bytes;                                              \
            float acc = 0;                                                                               \
            for (int u = 0; u < n / 256; u++) {                                                          \
                unpack_##name(row + (size_t)u * BYTES, wq, ws, wm);                                      \
                float unit = 0;                                                                          \
                for (int g = 0; g < 16; g++) {                                                           \
                    int32_t s = 0;                                                                       \
                    for (int i = 0; i < 16; i++) s += (int32_t)wq[16 * g + i] * (int32_t)q[256 * u + 16 * g + i]; \
                    unit += ws[g] * (float)s - wm[g] * (float)bs[16 * u + g];                            \
                }                                                                                        \
                acc += unit * dk[u];                                                                     \
            }                                                                                            \
            y[r] = acc;                                                                                  \
        }                                                                                                \
    }
DEFINE_REFERENCE_K(q2_K, 84)
DEFINE_REFERENCE_K(q3_K, 110)
DEFINE_REFERENCE_K(q4_K, 144)
DEFINE_REFERENCE_K(q5_K, 176)
DEFINE_REFERENCE_K(q6_K, 210)
DEFINE_REFERENCE_K(iq4_xs, 136)
DEFINE_REFERENCE_K(iq2_xxs, 66)
DEFINE_REFERENCE_K(iq2_xs, 74)
DEFINE_REFERENCE_K(iq3_xxs, 98)
DEFINE_REFERENCE_K(iq3_s, 110)

DEFINE_TYPE(q8_0, 32, 34)
DEFINE_TYPE(q4_0, 32, 18)
DEFINE_TYPE(q4_1, 32, 20)
DEFINE_TYPE(q5_0, 32, 22)
DEFINE_TYPE(q5_1, 32, 24)
DEFINE_TYPE(iq4_nl, 32, 18)
DEFINE_TYPE(mxfp4, 32, 17)
DEFINE_TYPE(q2_K, 256, 84)
DEFINE_TYPE(q3_K, 256, 110)
DEFINE_TYPE(q4_K, 256, 144)
DEFINE_TYPE(q5_K, 256, 176)
DEFINE_TYPE(q6_K, 256, 210)
DEFINE_TYPE(iq4_xs, 256, 136)
DEFINE_TYPE(iq2_xxs, 256, 66)
DEFINE_TYPE(iq2_xs, 256, 74)
DEFINE_TYPE(iq3_xxs, 256, 98)
DEFINE_TYPE(iq3_s, 256, 110)

// Hand-written row dots (simd_x86*.c, kernels_internal.h), chosen once per process.
#if defined(__x86_64__) && defined(__clang__)
static int forced_level = -1;
static int detected_level(void);
static int simd_level(void) {
    int detected = detected_level();
    return forced_level >= 0 && forced_level < detected ? forced_level : detected;
}
// Detected once. The pool's threads may all ask first at the same time: the cache is read and
// written atomically (relaxed: every thread computes the same value, nothing else is published
// with it), as moe_arm_detected_level does. A plain int here was a data race (TSan).
static int detected_level(void) {
    static int cached = -1;
    int level = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (level < 0) {
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
            __builtin_cpu_supports("avx512dq"))
            level = 2;
        else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
            level = 1;
        else
            level = 0;
        __atomic_store_n(&cached, level, __ATOMIC_RELAXED);
    }
    return level;
}
static row_dot_fn row_dot(int type) {
    int level = simd_level();
    if (level == 0) return 0;
    switch (type) {
    case MOE_Q8_0: return level == 2 ? moe_dot_q8_0_zmm : moe_dot_q8_0_avx2;
    case MOE_Q4_K: return level == 2 ? moe_dot_q4_K_zmm : moe_dot_q4_K_avx2;
    case MOE_Q6_K: return level == 2 ? moe_dot_q6_K_zmm : moe_dot_q6_K_avx2;
    case MOE_Q5_K: return level == 2 ? moe_dot_q5_K_vnni : moe_dot_q5_K_avx2;
    case MOE_IQ4_NL: return level == 2 ? moe_dot_iq4_nl_zmm : moe_dot_iq4_nl_avx2;
    case MOE_MXFP4: return level == 2 ? moe_dot_mxfp4_zmm : moe_dot_mxfp4_avx2;
    default: return 0;
    }
}
static row_dot4_fn row_dot4(int type) {
    int level = simd_level();
    if (level == 0) return 0;
    switch (type) {
    case MOE_Q8_0: return level == 2 ? moe_dot4_q8_0_zmm : moe_dot4_q8_0_avx2;
    case MOE_Q4_K: return level == 2 ? moe_dot4_q4_K_zmm : moe_dot4_q4_K_avx2;
    case MOE_Q6_K: return level == 2 ? moe_dot4_q6_K_zmm : moe_dot4_q6_K_avx2;
    case MOE_Q5_K: return level == 2 ? moe_dot4_q5_K_vnni : moe_dot4_q5_K_avx2;
    case MOE_IQ4_NL: return level == 2 ? moe_dot4_iq4_nl_zmm : moe_dot4_iq4_nl_avx2;
    case MOE_MXFP4: return level == 2 ? moe_dot4_mxfp4_zmm : moe_dot4_mxfp4_avx2;
    default: return 0;
    }
}
static row_dotn_fn row_dotn(int type) {
    if (simd_level() != 2) return 0;
    switch (type) {
    case MOE_Q8_0: return moe_dotn_q8_0_zmm;
    case MOE_IQ4_NL: return moe_dotn_iq4_nl_zmm;
    case MOE_MXFP4: return moe_dotn_mxfp4_zmm;
    default: return 0;
    }
}
static row_dotk_fn row_dotk(int type) {
    int level = simd_level();
    if (level == 0) return 0;
    switch (type) {
    case MOE_Q2_K: return level == 2 ? moe_dotk_q2_K_zmm : moe_dotk_q2_K_avx2;
    case MOE_Q3_K: return level == 2 ? moe_dotk_q3_K_zmm : moe_dotk_q3_K_avx2;
    case MOE_Q4_K: return level == 2 ? moe_dotk_q4_K_zmm : moe_dotk_q4_K_avx2;
    case MOE_Q5_K: return level == 2 ? moe_dotk_q5_K_zmm : moe_dotk_q5_K_avx2;
    case MOE_Q6_K: return level == 2 ? moe_dotk_q6_K_zmm : moe_dotk_q6_K_avx2;
    case MOE_IQ4_XS: return level == 2 ? moe_dotk_iq4_xs_zmm : moe_dotk_iq4_xs_avx2;
    case MOE_IQ2_XXS: return level == 2 ? moe_dotk_iq2_xxs_zmm : moe_dotk_iq2_xxs_avx2;
    case MOE_IQ2_XS: return level == 2 ? moe_dotk_iq2_xs_zmm : moe_dotk_iq2_xs_avx2;
    case MOE_IQ3_XXS: return level == 2 ? moe_dotk_iq3_xxs_zmm : moe_dotk_iq3_xxs_avx2;
    case MOE_IQ3_S: return level == 2 ? moe_dotk_iq3_s_zmm : moe_dotk_iq3_s_avx2;
    default: return 0;
    }
}
static row_dotk2_fn row_dotk2(int type) { (void)type; return 0; }  // pairs of rows: ARM i8mm only
int moe_kernel_level(void) { return simd_level(); }
void moe_force_kernel_level(int level) { forced_level = level; }
#else
#if defined(__aarch64__)
// NEON kernels (simd_arm.c): 3 = i8mm, 2 = dotprod, 1 = NEON, 0 = portable C. They take the
// whole matmul in moe_matmul_q (the i8mm path pairs rows), so the row_dot stubs below stay.
int moe_arm_detected_level(void);
int moe_arm_matmul(int level, int type, int n, const void *w, size_t row_bytes, int r0, int r1, int tokens,
                   const int8_t *q, const float *d, const float *s16, float *y, int ldy);
static int forced_level = -1;
static int simd_level(void) {
    int detected = moe_arm_detected_level();
    return forced_level >= 0 && forced_level < detected ? forced_level : detected;
}
int moe_kernel_level(void) { return simd_level(); }
void moe_force_kernel_level(int level) { forced_level = level; }
// q8_K kernels (simd_arm_q8k.c): one row at NEON/dotprod, and pairs of rows at i8mm.
static row_dotk_fn row_dotk(int type) { return moe_arm_row_dotk(simd_level(), type); }
static row_dotk2_fn row_dotk2(int type) { return moe_arm_row_dotk2(simd_level(), type); }
#else
int moe_kernel_level(void) { return 0; }
void moe_force_kernel_level(int level) { (void)level; }
static row_dotk_fn row_dotk(int type) { (void)type; return 0; }
static row_dotk2_fn row_dotk2(int type) { (void)type; return 0; }
#endif
static row_dot_fn row_dot(int type) { (void)type; return 0; }
static row_dot4_fn row_dot4(int type) { (void)type; return 0; }
static row_dotn_fn row_dotn(int type) { (void)type; return 0; }
#endif

// Rows outer, tokens inner in tiles of 4: a weight row is read from memory once per call and
// unpacked once per 4 tokens. Arithmetic per (row, token) is the same in both forms, so a
// token gives the same result alone or in a batch.
// Decode streams each weight row from memory once. The hardware prefetcher alone leaves a
// single thread well below the machine's read bandwidth (the kernel's arithmetic and the
// memory latency add up instead of overlapping), so while one row is computed the row about
// MOE_PREFETCH_BYTES ahead is requested (Benchmarks/kernels/ab.sh, DRAM-resident weights, one
// thread: q4_K 6.0 -> 9-12 GB/s, q8_0 8.0 -> 10-11, q6_K 7 -> 10-13; docs/performance.md).
#define MOE_PREFETCH_BYTES 3072
MOE_INLINE int prefetch_rows_ahead(size_t row_bytes) {
    size_t rows = row_bytes ? (MOE_PREFETCH_BYTES + row_bytes - 1) / row_bytes : 1;
    return rows > 8 ? 8 : (int)rows;
}
MOE_INLINE void prefetch_row(const uint8_t *w, size_t row_bytes, int r, int r1) {
    if (r >= r1) return;
    const uint8_t *p = w + (size_t)r * row_bytes;
    for (size_t o = 0; o < row_bytes; o += 64) __builtin_prefetch(p + o, 0, 3);
}

static void matmul_rows(row_dot_fn dot, row_dot4_fn dot4, row_dotn_fn dotn, int n, const uint8_t *w, size_t row_bytes, int r0,
                        int r1, int tokens, const int8_t *q, const float *d, const float *s16, float *y, int ldy) {
    if (dotn && tokens > 1) {  /* blocked as matmul_rows_k below; decode keeps the one-token entry point */
        int block = tokens <= MOE_TILE_Q ? r1 - r0 : (int)(65536 / (row_bytes ? row_bytes : 1));
        if (block < 1) block = 1;
        const int ahead = prefetch_rows_ahead(row_bytes);
        for (int rb = r0; rb < r1; rb += block) {
            int re = r1 - rb < block ? r1 : rb + block;
            for (int t = 0; t < tokens; t += MOE_TILE_Q) {
                int count = tokens - t < MOE_TILE_Q ? tokens - t : MOE_TILE_Q;
                size_t a = (size_t)t * n;
                for (int r = rb; r < re; r++) {
                    float out[MOE_TILE_Q];
                    if (t == 0) prefetch_row(w, row_bytes, r + ahead, r1);  /* the first tile reads the rows from memory */
                    dotn(w + (size_t)r * row_bytes, n, q + a, d + a / 32, s16 + a / 16, out, count);
                    for (int i = 0; i < count; i++) y[(size_t)(t + i) * ldy + r] = out[i];
                }
            }
        }
        return;
    }
    const int ahead = prefetch_rows_ahead(row_bytes);
    for (int r = r0; r < r1; r++) {
        const uint8_t *row = w + (size_t)r * row_bytes;
        int t = 0;
        prefetch_row(w, row_bytes, r + ahead, r1);  /* every token of this row runs before the next row */
        if (dot4) {
            float out[4];
            for (; t + 4 <= tokens; t += 4) {
                size_t a = (size_t)t * n;
                dot4(row, n, q + a, d + a / 32, s16 + a / 16, out);
                for (int i = 0; i < 4; i++) y[(size_t)(t + i) * ldy + r] = out[i];
            }
        }
        for (; t < tokens; t++) {
            size_t a = (size_t)t * n;
            y[(size_t)t * ldy + r] = dot(row, n, q + a, d + a / 32, s16 + a / 16);
        }
    }
}

/* Tokens per q8_K kernel call. Q4_K and Q5_K (whose 512-bit bodies hold the most per token)
   halve the tile when its activations (MOE_TILE_K x n bytes) would crowd L1: an FFN's down
   projection (n = 5632 in the benchmark model, 14336 in Mixtral). Benchmarks/kernels/ab.c,
   4 MB of weights, 32 tokens, Gw·tok/s, tile 8 -> 4: q4_K 43.9 -> 51.5 (n = 5632), 42.2 -> 48.3
   (14336), but 57.7 -> 52.5 at n = 4096; q5_K 33-42 -> 47.7 (5632). The other types lose
   3-12% with the smaller tile at any width, so they keep 8. A token's arithmetic does not
   depend on its tile, so results are the same. */
#define MOE_TILE_BYTES (40 << 10)
MOE_INLINE int k_tile(int type, int n) {
    if ((type == MOE_Q4_K || type == MOE_Q5_K) && (size_t)MOE_TILE_K * (size_t)n > MOE_TILE_BYTES) return MOE_TILE_K / 2;
    return MOE_TILE_K;
}

// The same for q8_K kernels, which take 1..MOE_TILE_K tokens per call.
// Blocked: a block of rows (about 64 KB of weights, kept in L2) meets one token tile at a time
// (its activations stay in L1), so neither operand is streamed from memory more than once per
// block. A token's arithmetic is the same in any tile, so results do not depend on the blocking.
// `dot2` (optional) takes two rows at once when a tile has two tokens or more.
static void matmul_rows_k(row_dotk_fn dot, row_dotk2_fn dot2, int tile, int n, const uint8_t *w, size_t row_bytes, int r0, int r1, int tokens,
                          const int8_t *q, const float *dk, const int16_t *bs, const float *sk, float *y, int ldy) {
    int block = tokens <= tile ? r1 - r0 : (int)(65536 / (row_bytes ? row_bytes : 1));
    if (block < 1) block = 1;
    const int ahead = prefetch_rows_ahead(row_bytes);
    for (int rb = r0; rb < r1; rb += block) {
        int re = r1 - rb < block ? r1 : rb + block;
        for (int t = 0; t < tokens; t += tile) {
            int count = tokens - t < tile ? tokens - t : tile;
            size_t a = (size_t)t * n;
            for (int r = rb; r < re; r++) {
                float out[2 * MOE_TILE_K];
                if (t == 0) prefetch_row(w, row_bytes, r + ahead, r1);  /* the first tile reads the rows from memory */
                if (dot2 && count >= 2 && r + 1 < re) {
                    if (t == 0) prefetch_row(w, row_bytes, r + 1 + ahead, r1);
                    dot2(w + (size_t)r * row_bytes, row_bytes, n, q + a, dk + a / 256, bs + a / 16, sk + a / 16, out, count);
                    for (int i = 0; i < count; i++)
                        y[(size_t)(t + i) * ldy + r] = out[i], y[(size_t)(t + i) * ldy + r + 1] = out[MOE_TILE_K + i];
                    r++;
                    continue;
                }
                dot(w + (size_t)r * row_bytes, n, q + a, dk + a / 256, bs + a / 16, sk + a / 16, out, count);
                for (int i = 0; i < count; i++) y[(size_t)(t + i) * ldy + r] = out[i];
            }
        }
    }
}

typedef void (*matmul_fn)(int, const uint8_t *, size_t, int, int, int, const int8_t *, const float *, const float *, float *, int);
typedef void (*reference_k_fn)(int, const uint8_t *, size_t, int, int, const int8_t *, const float *, const int16_t *, float *);

static reference_k_fn lookup_k(int type) {
    switch (type) {
    case MOE_Q2_K: return reference_k_q2_K;
    case MOE_Q3_K: return reference_k_q3_K;
    case MOE_Q4_K: return reference_k_q4_K;
    case MOE_Q5_K: return reference_k_q5_K;
    case MOE_Q6_K: return reference_k_q6_K;
    case MOE_IQ4_XS: return reference_k_iq4_xs;
    case MOE_IQ2_XXS: return reference_k_iq2_xxs;
    case MOE_IQ2_XS: return reference_k_iq2_xs;
    case MOE_IQ3_XXS: return reference_k_iq3_xxs;
    case MOE_IQ3_S: return reference_k_iq3_s;
    default: return 0;
    }
}

int moe_kernel_format(int type) {
    return row_dotk(type) ? 2 : (moe_kernel_kind(type) == 1 ? 1 : 0);
}

int moe_matmul_qa(int type, int n, const void *w, size_t row_bytes, int r0, int r1, int tokens,
                  const moe_activations *a, float *y, int ldy) {
    row_dotk_fn dotk = a->qk ? row_dotk(type) : 0;
    if (dotk && n % 256 == 0) {
        int done = 0;  /* tokens the tiled GEMM took (16-token tiles, where the type has one); the row kernels take the rest */
#if defined(__x86_64__) && defined(__clang__)
        if (simd_level() == 2) done = moe_tiled_matmul_k(type, n, (const uint8_t *)w, row_bytes, r0, r1, tokens, a->qk, a->dk, a->bsums, y, ldy);
#endif
        if (done < tokens)
            matmul_rows_k(dotk, row_dotk2(type), k_tile(type, n), n, (const uint8_t *)w, row_bytes, r0, r1, tokens - done,
                          a->qk + (size_t)done * n, a->dk + (size_t)done * (n / 256), a->bsums + (size_t)done * (n / 16),
                          a->sums + (size_t)done * (n / 16), y + (size_t)done * ldy, ldy);
        return 0;
    }
    if (!a->q) return -1;
    return moe_matmul_q(type, n, w, row_bytes, r0, r1, tokens, a->q, a->d, a->s16, y, ldy);
}

int moe_matvec_qk_reference(int type, int n, const void *w, size_t row_bytes, int r0, int r1,
                            const int8_t *q, const float *dk, const int16_t *bsums, float *y) {
    reference_k_fn r = lookup_k(type);
    if (!r || n % 256 != 0) return -1;
    r(n, (const uint8_t *)w, row_bytes, r0, r1, q, dk, bsums, y);
    return 0;
}
typedef void (*reference_fn)(int, const uint8_t *, size_t, int, int, const int8_t *, const float *, const float *, float *);

static int lookup(int type, matmul_fn *m, reference_fn *r, int *unit) {
    switch (type) {
#define CASE(T, name, U) case T: *m = matmul_##name; *r = reference_##name; *unit = U; return 0;
        CASE(MOE_Q8_0, q8_0, 32)
        CASE(MOE_Q4_0, q4_0, 32)
        CASE(MOE_Q4_1, q4_1, 32)
        CASE(MOE_Q5_0, q5_0, 32)
        CASE(MOE_Q5_1, q5_1, 32)
        CASE(MOE_IQ4_NL, iq4_nl, 32)
        CASE(MOE_MXFP4, mxfp4, 32)
        CASE(MOE_Q2_K, q2_K, 256)
        CASE(MOE_Q3_K, q3_K, 256)
        CASE(MOE_Q4_K, q4_K, 256)
        CASE(MOE_Q5_K, q5_K, 256)
        CASE(MOE_Q6_K, q6_K, 256)
        CASE(MOE_IQ4_XS, iq4_xs, 256)
        CASE(MOE_IQ2_XXS, iq2_xxs, 256)
        CASE(MOE_IQ2_XS, iq2_xs, 256)
        CASE(MOE_IQ3_XXS, iq3_xxs, 256)
        CASE(MOE_IQ3_S, iq3_s, 256)
#undef CASE
    default: return -1;
    }
}

int moe_kernel_kind(int type) {
    matmul_fn m;
    reference_fn r;
    int unit;
    if (lookup(type, &m, &r, &unit) == 0) return 1;
    if (type == MOE_F32 || type == MOE_F16 || type == MOE_BF16) return 2;
    return 0;
}

int moe_matmul_q(int type, int n, const void *w, size_t row_bytes, int r0, int r1, int tokens,
                 const int8_t *q, const float *d, const float *s16, float *y, int ldy) {
    matmul_fn m;
    reference_fn r;
    int unit;
    if (lookup(type, &m, &r, &unit) != 0 || n % unit != 0) return -1;
#if defined(__aarch64__)
    if (simd_level() > 0 && moe_arm_matmul(simd_level(), type, n, w, row_bytes, r0, r1, tokens, q, d, s16, y, ldy) == 0) return 0;
#endif
    row_dot_fn dot = row_dot(type);
    if (dot) {
        matmul_rows(dot, row_dot4(type), row_dotn(type), n, (const uint8_t *)w, row_bytes, r0, r1, tokens, q, d, s16, y, ldy);
    } else {
        m(n, (const uint8_t *)w, row_bytes, r0, r1, tokens, q, d, s16, y, ldy);
    }
    return 0;
}

int moe_matvec_q(int type, int n, const void *w, size_t row_bytes, int r0, int r1,
                 const int8_t *q, const float *d, const float *s16, float *y) {
    return moe_matmul_q(type, n, w, row_bytes, r0, r1, 1, q, d, s16, y, 0);
}

int moe_matvec_q_reference(int type, int n, const void *w, size_t row_bytes, int r0, int r1,
                           const int8_t *q, const float *d, const float *s16, float *y) {
    matmul_fn m;
    reference_fn r;
    int unit;
    if (lookup(type, &m, &r, &unit) != 0 || n % unit != 0) return -1;
    r(n, (const uint8_t *)w, row_bytes, r0, r1, q, d, s16, y);
    return 0;
}

// ---------------------------------------------------------------------------------------
// Float-activation kernels (F32, F16, BF16 weights). 16 partial sums per row so the
// compiler can vectorize without reassociating a single sum.

#define DEFINE_FLOAT(name, ELEMENT, CONVERT)                                                             \
    MOE_CLONES static void matmul_##name(int n, const uint8_t *w, size_t row_bytes, int r0, int r1,      \
                                         int tokens, const float *x, float *y, int ldy) {                \
        for (int r = r0; r < r1; r++) {                                                                  \
            const ELEMENT *row = (const ELEMENT *)(w + (size_t)r * row_bytes);                           \
            for (int t = 0; t < tokens; t++) {                                                           \
                const float *xt = x + (size_t)t * n;                                                     \
                float acc[16] = {0};                                                                     \
                int i = 0;                                                                               \
                for (; i + 16 <= n; i += 16)                                                             \
                    for (int j = 0; j < 16; j++) acc[j] += CONVERT(row[i + j]) * xt[i + j];              \
                float sum = 0;                                                                           \
                for (int j = 0; j < 16; j++) sum += acc[j];                                              \
                for (; i < n; i++) sum += CONVERT(row[i]) * xt[i];                                       \
                y[(size_t)t * ldy + r] = sum;                                                            \
            }                                                                                            \
        }                                                                                                \
    }

#define AS_IS(v) (v)
#if defined(__FLT16_MANT_DIG__)
// Hardware conversion (F16C in the x86-64-v3/v4 clones) where the compiler has _Float16.
#define F16_AS_FLOAT(v) ((float)(v))
typedef _Float16 moe_half;
#else
#define F16_AS_FLOAT(v) f16_to_f32(v)
typedef uint16_t moe_half;
#endif
DEFINE_FLOAT(f32, float, AS_IS)
DEFINE_FLOAT(f16, moe_half, F16_AS_FLOAT)
DEFINE_FLOAT(bf16, uint16_t, bf16_to_f32)

int moe_matmul_f(int type, int n, const void *w, size_t row_bytes, int r0, int r1, int tokens,
                 const float *x, float *y, int ldy) {
    switch (type) {
    case MOE_F32: matmul_f32(n, (const uint8_t *)w, row_bytes, r0, r1, tokens, x, y, ldy); return 0;
    case MOE_F16: matmul_f16(n, (const uint8_t *)w, row_bytes, r0, r1, tokens, x, y, ldy); return 0;
    case MOE_BF16: matmul_bf16(n, (const uint8_t *)w, row_bytes, r0, r1, tokens, x, y, ldy); return 0;
    default: return -1;
    }
}

MOE_CLONES float moe_dot_f32(const float *a, const float *b, int n) {
    float acc[16] = {0};
    int i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 16; j++) acc[j] += a[i + j] * b[i + j];
    float sum = 0;
    for (int j = 0; j < 16; j++) sum += acc[j];
    for (; i < n; i++) sum += a[i] * b[i];
    return sum;
}

MOE_CLONES void moe_axpy_f32(float a, const float *x, float *y, int n) {
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

MOE_CLONES void moe_scale_f32(float a, float *y, int n) {
    for (int i = 0; i < n; i++) y[i] *= a;
}

MOE_CLONES float moe_dot_f16(const uint16_t *a, const float *b, int n) {
    const moe_half *h = (const moe_half *)a;
    float acc[16] = {0};
    int i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 16; j++) acc[j] += F16_AS_FLOAT(h[i + j]) * b[i + j];
    float sum = 0;
    for (int j = 0; j < 16; j++) sum += acc[j];
    for (; i < n; i++) sum += F16_AS_FLOAT(h[i]) * b[i];
    return sum;
}

MOE_CLONES void moe_axpy_f16(float a, const uint16_t *x, float *y, int n) {
    const moe_half *h = (const moe_half *)x;
    for (int i = 0; i < n; i++) y[i] += a * F16_AS_FLOAT(h[i]);
}

void moe_f32_to_f16(const float *x, uint16_t *y, int n) {
#if defined(__FLT16_MANT_DIG__)
    _Float16 *h = (_Float16 *)y;
    for (int i = 0; i < n; i++) h[i] = (_Float16)x[i];
#else
    for (int i = 0; i < n; i++) {
        // Round-to-nearest-even by bit manipulation (same as Half.fromFloat).
        uint32_t bits;
        memcpy(&bits, &x[i], 4);
        uint32_t sign = (bits >> 16) & 0x8000;
        int exponent = (int)((bits >> 23) & 0xFF) - 127 + 15;
        uint32_t mantissa = bits & 0x7FFFFF;
        if (((bits >> 23) & 0xFF) == 0xFF) { y[i] = (uint16_t)(sign | 0x7C00 | (mantissa ? 0x200 : 0)); continue; }
        if (exponent >= 31) { y[i] = (uint16_t)(sign | 0x7C00); continue; }
        if (exponent <= 0) {
            if (exponent < -10) { y[i] = (uint16_t)sign; continue; }
            mantissa |= 0x800000;
            int shift = 14 - exponent;
            uint32_t half = mantissa >> shift, rest = mantissa & ((1u << shift) - 1), mid = 1u << (shift - 1);
            if (rest > mid || (rest == mid && (half & 1))) half++;
            y[i] = (uint16_t)(sign | half);
            continue;
        }
        uint32_t half = ((uint32_t)exponent << 10) | (mantissa >> 13);
        uint32_t rest = mantissa & 0x1FFF;
        if (rest > 0x1000 || (rest == 0x1000 && (half & 1))) half++;
        y[i] = (uint16_t)(sign | half);
    }
#endif
}

const char *moe_kernel_isa(void) {
#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")) return "x86-64-v4";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "x86-64-v3";
    return "baseline";
#elif defined(__aarch64__)
    static const char *names[] = {"baseline", "arm64-neon", "arm64-dotprod", "arm64-i8mm"};
    return names[moe_arm_detected_level()];
#else
    return "baseline";
#endif
}
