// Hand-written x86 kernels for the 4-bit lookup-table types with 32-element blocks, IQ4_NL
// (| f16 d | qs[16] |) and MXFP4 (| e8m0 | qs[16] |), against q8 activations
// (kernels_internal.h): byte j of qs holds element j (low nibble) and j+16 (high nibble), each
// an index into 16 signed levels; vpshufb does the lookup. |w| · sign(a, w) keeps the unsigned
// operand of the integer dot product exact (activations are never -128). One body per ISA for
// 1..4 tokens, so a token's result does not depend on the batch.
#include "kernels_internal.h"

#if defined(__x86_64__) && defined(__clang__)
#include <immintrin.h>
#include <string.h>

#define ZMM_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx512dq,avx2,fma,f16c")))
#define AVX2_TARGET __attribute__((target("avx2,fma,f16c")))

static const int8_t iq4nl_levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
/* Twice the FP4 (E2M1) values; the scale below is half the E8M0 power of two, as ggml does. */
static const int8_t mxfp4_levels[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

__attribute__((target("f16c"))) static inline float lut_half(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

static inline float lut_e8m0_half(const uint8_t *p) {
    uint8_t e = p[0];
    uint32_t bits = e < 2 ? (0x00200000u << e) : ((uint32_t)(e - 1) << 23);
    float out;
    memcpy(&out, &bits, 4);
    return out;
}

__attribute__((target("avx"))) static inline float lut_hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* 32 levels of one block: [elements 0-15 | elements 16-31]. */
AVX2_TARGET static inline __m256i lut_block(const uint8_t *qs, __m256i lut) {
    const __m128i low = _mm_set1_epi8(0x0F);
    __m128i x = _mm_loadu_si128((const __m128i *)qs);
    __m256i idx = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(x, 4), low), _mm_and_si128(x, low));
    return _mm256_shuffle_epi8(lut, idx);
}

#define LUT_AVX2(name, BYTES, OFFSET, SCALE, LEVELS)                                                             \
    AVX2_TARGET static inline void name##_body_avx2(const uint8_t *row, int n, const int8_t *q, const float *d,  \
                                                    float *out, int tokens) {                                    \
        const __m256i lut = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)LEVELS));             \
        const __m256i ones = _mm256_set1_epi16(1);                                                               \
        __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};    \
        for (int b = 0; b < n / 32; b++) {                                                                       \
            const uint8_t *blk = row + BYTES * b;                                                                \
            __m256i w = lut_block(blk + OFFSET, lut), aw = _mm256_abs_epi8(w);                                   \
            float dw = SCALE(blk);                                                                               \
            for (int t = 0; t < tokens; t++) {                                                                   \
                __m256i a = _mm256_loadu_si256((const __m256i *)(q + (size_t)t * n + 32 * b));                   \
                __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, _mm256_sign_epi8(a, w)), ones);           \
                acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dw * d[(size_t)t * (n / 32) + b]), acc[t]); \
            }                                                                                                    \
        }                                                                                                        \
        for (int t = 0; t < tokens; t++) out[t] = lut_hsum256(acc[t]);                                           \
    }                                                                                                            \
    AVX2_TARGET float moe_dot_##name##_avx2(const uint8_t *row, int n, const int8_t *q, const float *d, const float *s16) { \
        float out;                                                                                               \
        (void)s16;                                                                                               \
        name##_body_avx2(row, n, q, d, &out, 1);                                                                 \
        return out;                                                                                              \
    }                                                                                                            \
    AVX2_TARGET void moe_dot4_##name##_avx2(const uint8_t *row, int n, const int8_t *q, const float *d, const float *s16, float *out) { \
        (void)s16;                                                                                               \
        name##_body_avx2(row, n, q, d, out, 4);                                                                  \
    }

/* 512-bit: two blocks per vector, [block b | block b+1]; an odd last block takes 256 bits. */
#define LUT_ZMM(name, BYTES, OFFSET, SCALE, LEVELS)                                                              \
    ZMM_TARGET static inline void name##_body_zmm(const uint8_t *row, int n, const int8_t *q, const float *d,    \
                                                  float *out, int tokens) {                                      \
        const __m128i lut128 = _mm_loadu_si128((const __m128i *)LEVELS);                                         \
        const __m512i lut = _mm512_broadcast_i32x4(lut128);                                                      \
        const __m256i lut256 = _mm256_broadcastsi128_si256(lut128);                                              \
        const __m256i low = _mm256_set1_epi8(0x0F);                                                              \
        __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};    \
        __m256 tail[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};   \
        const int blocks = n / 32;                                                                               \
        int b = 0;                                                                                               \
        for (; b + 1 < blocks; b += 2) {                                                                         \
            const uint8_t *b0 = row + BYTES * b, *b1 = b0 + BYTES;                                               \
            __m256i x = _mm256_set_m128i(_mm_loadu_si128((const __m128i *)(b1 + OFFSET)),                        \
                                         _mm_loadu_si128((const __m128i *)(b0 + OFFSET)));                       \
            __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(x, low)),                     \
                                           _mm256_and_si256(_mm256_srli_epi16(x, 4), low), 1);                   \
            __m512i w = _mm512_shuffle_epi8(lut, _mm512_shuffle_i64x2(z, z, _MM_SHUFFLE(3, 1, 2, 0)));            \
            __m512i aw = _mm512_abs_epi8(w);                                                                     \
            __mmask64 negative = _mm512_movepi8_mask(w);                                                         \
            float d0 = SCALE(b0), d1 = SCALE(b1);                                                                \
            for (int t = 0; t < tokens; t++) {                                                                   \
                __m512i a = _mm512_loadu_si512((const void *)(q + (size_t)t * n + 32 * b));                      \
                __m512i sa = _mm512_mask_sub_epi8(a, negative, _mm512_setzero_si512(), a);                       \
                __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), aw, sa);                                 \
                const float *dt = d + (size_t)t * (n / 32) + b;                                                  \
                __m512 scale = _mm512_insertf32x8(_mm512_set1_ps(d0 * dt[0]), _mm256_set1_ps(d1 * dt[1]), 1);    \
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), scale, acc[t]);                                  \
            }                                                                                                    \
        }                                                                                                        \
        for (; b < blocks; b++) {                                                                                \
            const uint8_t *b0 = row + BYTES * b;                                                                 \
            __m256i w = lut_block(b0 + OFFSET, lut256), aw = _mm256_abs_epi8(w);                                 \
            float d0 = SCALE(b0);                                                                                \
            for (int t = 0; t < tokens; t++) {                                                                   \
                __m256i a = _mm256_loadu_si256((const __m256i *)(q + (size_t)t * n + 32 * b));                   \
                __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), aw, _mm256_sign_epi8(a, w));             \
                tail[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(d0 * d[(size_t)t * (n / 32) + b]), tail[t]); \
            }                                                                                                    \
        }                                                                                                        \
        for (int t = 0; t < tokens; t++) out[t] = _mm512_reduce_add_ps(acc[t]) + lut_hsum256(tail[t]);           \
    }                                                                                                            \
    ZMM_TARGET float moe_dot_##name##_zmm(const uint8_t *row, int n, const int8_t *q, const float *d, const float *s16) { \
        float out;                                                                                               \
        (void)s16;                                                                                               \
        name##_body_zmm(row, n, q, d, &out, 1);                                                                  \
        return out;                                                                                              \
    }                                                                                                            \
    ZMM_TARGET void moe_dot4_##name##_zmm(const uint8_t *row, int n, const int8_t *q, const float *d, const float *s16, float *out) { \
        (void)s16;                                                                                               \
        name##_body_zmm(row, n, q, d, out, 4);                                                                   \
    }

LUT_AVX2(iq4_nl, 18, 2, lut_half, iq4nl_levels)
LUT_AVX2(mxfp4, 17, 1, lut_e8m0_half, mxfp4_levels)
LUT_ZMM(iq4_nl, 18, 2, lut_half, iq4nl_levels)
LUT_ZMM(mxfp4, 17, 1, lut_e8m0_half, mxfp4_levels)
#endif
