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

/* Twice the FP4 (E2M1) values; the scale below is half the E8M0 power of two, as ggml does. */
static const int8_t mxfp4_levels[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

static inline float lut_e8m0_half(const uint8_t *p) {
    uint8_t e = p[0];
    uint32_t bits = e < 2 ? (0x00200000u << e) : ((uint32_t)(e - 1) << 23);
    float out;
    memcpy(&out, &bits, 4);
    return out;
}

__attribute__((target("avx2"))) static inline __m128 lut_e8m0_half4(const uint8_t *b, int bytes) {
    const __m128i e = _mm_setr_epi32(b[0], b[bytes], b[2 * bytes], b[3 * bytes]);
    const __m128i normal = _mm_slli_epi32(_mm_sub_epi32(e, _mm_set1_epi32(1)), 23);
    const __m128i tiny = _mm_sllv_epi32(_mm_set1_epi32(0x00200000), e);
    return _mm_castsi128_ps(_mm_blendv_epi8(normal, tiny, _mm_cmpgt_epi32(_mm_set1_epi32(2), e)));
}

/* 32 levels of one block: [elements 0-15 | elements 16-31]. */
MOE_AVX2_TARGET static inline __m256i lut_block(const uint8_t *qs, __m256i lut) {
    const __m128i low = _mm_set1_epi8(0x0F);
    __m128i x = _mm_loadu_si128((const __m128i *)qs);
    __m256i idx = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(x, 4), low), _mm_and_si128(x, low));
    return _mm256_shuffle_epi8(lut, idx);
}

#define LUT_AVX2(name, BYTES, OFFSET, SCALE, LEVELS)                                                             \
    MOE_AVX2_TARGET static inline void name##_body_avx2(const uint8_t *row, int n, const int8_t *q, const float *d,  \
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
        for (int t = 0; t < tokens; t++) out[t] = moe_hsum256(acc[t]);                                           \
    }                                                                                                            \
    MOE_AVX2_TARGET float moe_dot_##name##_avx2(const uint8_t *row, int n, const int8_t *q, const float *d, const float *s16) { \
        float out;                                                                                               \
        (void)s16;                                                                                               \
        name##_body_avx2(row, n, q, d, &out, 1);                                                                 \
        return out;                                                                                              \
    }                                                                                                            \
    MOE_AVX2_TARGET void moe_dot4_##name##_avx2(const uint8_t *row, int n, const int8_t *q, const float *d, const float *s16, float *out) { \
        (void)s16;                                                                                               \
        name##_body_avx2(row, n, q, d, out, 4);                                                                  \
    }

/* 512-bit: two blocks per vector, [block b | block b+1], four per step; a last pair or odd block
   takes the narrower code. */
#define LUT_ZMM(name, BYTES, OFFSET, SCALE, SCALE4, LEVELS)                                                      \
    MOE_ZMM_TARGET static inline void name##_body_zmm(const uint8_t *row, int n, const int8_t *q, const float *d,    \
                                                  float *out, int tokens) {                                      \
        const __m128i lut128 = _mm_loadu_si128((const __m128i *)LEVELS);                                         \
        const __m512i lut = _mm512_broadcast_i32x4(lut128);                                                      \
        const __m256i lut256 = _mm256_broadcastsi128_si256(lut128);                                              \
        const __m256i low = _mm256_set1_epi8(0x0F);                                                              \
        __m512 acc[MOE_TILE_Q], acc2[MOE_TILE_Q];                                                                \
        __m256 tail[MOE_TILE_Q];                                                                                 \
        for (int t = 0; t < tokens; t++) {                                                                       \
            acc[t] = acc2[t] = _mm512_setzero_ps();                                                              \
            tail[t] = _mm256_setzero_ps();                                                                       \
        }                                                                                                        \
        const int blocks = n / 32;                                                                               \
        const __m512i low512 = _mm512_set1_epi8(0x0F);                                                           \
        const __m512i first = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);                 \
        const __m512i second = _mm512_setr_epi32(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);                \
        const __m512i pair01 = _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11);                                      \
        const __m512i pair23 = _mm512_setr_epi64(4, 5, 12, 13, 6, 7, 14, 15);                                    \
        int b = 0;                                                                                               \
        /* Four blocks per step: [x0 x1 x2 x3] -> [lo0 hi0 lo1 hi1], [lo2 hi2 lo3 hi3]; four scales at once. */  \
        for (; b + 3 < blocks; b += 4) {                                                                         \
            const uint8_t *b0 = row + BYTES * b;                                                                 \
            __m512i x = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(b0 + OFFSET)));                 \
            x = _mm512_inserti32x4(x, _mm_loadu_si128((const __m128i *)(b0 + BYTES + OFFSET)), 1);               \
            x = _mm512_inserti32x4(x, _mm_loadu_si128((const __m128i *)(b0 + 2 * BYTES + OFFSET)), 2);           \
            x = _mm512_inserti32x4(x, _mm_loadu_si128((const __m128i *)(b0 + 3 * BYTES + OFFSET)), 3);           \
            __m512i lo = _mm512_and_si512(x, low512), hi = _mm512_and_si512(_mm512_srli_epi16(x, 4), low512);    \
            __m512i w01 = _mm512_shuffle_epi8(lut, _mm512_permutex2var_epi64(lo, pair01, hi));                   \
            __m512i w23 = _mm512_shuffle_epi8(lut, _mm512_permutex2var_epi64(lo, pair23, hi));                   \
            __m512i aw01 = _mm512_abs_epi8(w01), aw23 = _mm512_abs_epi8(w23);                                    \
            __mmask64 n01 = _mm512_movepi8_mask(w01), n23 = _mm512_movepi8_mask(w23);                            \
            const __m128 dw = SCALE4(b0, BYTES);                                                                 \
            for (int t = 0; t < tokens; t++) {                                                                   \
                const int8_t *a = q + (size_t)t * n + 32 * b;                                                    \
                __m512i a01 = _mm512_loadu_si512((const void *)a), a23 = _mm512_loadu_si512((const void *)(a + 64)); \
                __m512i p01 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), aw01, _mm512_mask_sub_epi8(a01, n01, _mm512_setzero_si512(), a01)); \
                __m512i p23 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), aw23, _mm512_mask_sub_epi8(a23, n23, _mm512_setzero_si512(), a23)); \
                __m512 scale = _mm512_castps128_ps512(_mm_mul_ps(dw, _mm_loadu_ps(d + (size_t)t * (n / 32) + b))); \
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p01), _mm512_permutexvar_ps(first, scale), acc[t]);  \
                acc2[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p23), _mm512_permutexvar_ps(second, scale), acc2[t]); \
            }                                                                                                    \
        }                                                                                                        \
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
        for (int t = 0; t < tokens; t++) out[t] = _mm512_reduce_add_ps(_mm512_add_ps(acc[t], acc2[t])) + moe_hsum256(tail[t]); \
    }                                                                                                            \
    MOE_ZMM_TARGET float moe_dot_##name##_zmm(const uint8_t *row, int n, const int8_t *q, const float *d, const float *s16) { \
        float out;                                                                                               \
        (void)s16;                                                                                               \
        name##_body_zmm(row, n, q, d, &out, 1);                                                                  \
        return out;                                                                                              \
    }                                                                                                            \
    MOE_ZMM_TARGET void moe_dot4_##name##_zmm(const uint8_t *row, int n, const int8_t *q, const float *d, const float *s16, float *out) { \
        (void)s16;                                                                                               \
        name##_body_zmm(row, n, q, d, out, 4);                                                                   \
    }                                                                                                            \
    MOE_ZMM_TARGET void moe_dotn_##name##_zmm(const uint8_t *row, int n, const int8_t *q, const float *d, const float *s16, \
                                          float *out, int tokens) {                                              \
        (void)s16;                                                                                               \
        if (tokens == 1) name##_body_zmm(row, n, q, d, out, 1);                                                  \
        else if (tokens == MOE_TILE_Q) name##_body_zmm(row, n, q, d, out, MOE_TILE_Q);                           \
        else name##_body_zmm(row, n, q, d, out, tokens);                                                         \
    }

LUT_AVX2(iq4_nl, 18, 2, moe_half_to_float, moe_iq4nl_levels)
LUT_AVX2(mxfp4, 17, 1, lut_e8m0_half, mxfp4_levels)
LUT_ZMM(iq4_nl, 18, 2, moe_half_to_float, moe_half4_to_float4, moe_iq4nl_levels)
LUT_ZMM(mxfp4, 17, 1, lut_e8m0_half, lut_e8m0_half4, mxfp4_levels)
#endif
