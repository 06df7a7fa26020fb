// Hand-written x86 kernels for the hottest types: Q8_0, Q4_K and Q6_K on AVX2 (vpmaddubsw +
// vpmaddwd, the KERNELS macro) and on AVX-512 VNNI with 512-bit vectors (the *_z bodies);
// Q5_K on both with 256-bit vectors (KERNELS_Q5K). Selected at run time in kernels.c; the
// portable C in kernels.c is the fallback and the reference they are tested against. Arithmetic per 32-element block: an exact int32
// dot product, scaled in f32 (same as the portable code up to float summation order).
#include "moe_kernels.h"
#include "kernels_internal.h"

#if defined(__x86_64__) && defined(__clang__)

static inline void k4_scales(const uint8_t *s, int *sc, int *m) {
    for (int j = 0; j < 4; j++) {
        sc[j] = s[j] & 63;
        m[j] = s[j + 4] & 63;
    }
    for (int j = 4; j < 8; j++) {
        sc[j] = (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4);
        m[j] = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* One body per type for 1..4 tokens: each weight vector is loaded and unpacked once and
   multiplied with every token's activations (stride n). A token's arithmetic is the same
   whatever `tokens` is, so decode (1) and prefill tiles (4) give bit-identical results. */
#define KERNELS(SUFFIX, TARGET, DPBUSD)                                                                   \
    /* Q8_0: | f16 d | 32 x int8 |. |w| · sign(a, w) keeps vpdpbusd's unsigned operand exact. */        \
    __attribute__((target(TARGET))) static inline void q8_0_body_##SUFFIX(const uint8_t *row, int n, const int8_t *q, \
                                                                          const float *d, float *out, int tokens) { \
        __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()}; \
        for (int b = 0; b < n / 32; b++) {                                                                \
            const uint8_t *w0 = row + 34 * b;                                                             \
            __m256i x0 = _mm256_loadu_si256((const __m256i *)(w0 + 2));                                   \
            __m256i ax = _mm256_abs_epi8(x0);                                                             \
            float dw = moe_half_to_float(w0);                                                                 \
            for (int t = 0; t < tokens; t++) {                                                            \
                __m256i a0 = _mm256_loadu_si256((const __m256i *)(q + (size_t)t * n + 32 * b));           \
                __m256i p0 = DPBUSD(_mm256_setzero_si256(), ax, _mm256_sign_epi8(a0, x0));                 \
                acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(dw * d[(size_t)t * (n / 32) + b]), acc[t]); \
            }                                                                                             \
        }                                                                                                 \
        for (int t = 0; t < tokens; t++) out[t] = moe_hsum256(acc[t]);                                  \
    }                                                                                                     \
    /* Q4_K: | f16 d | f16 dmin | scales[12] | qs[128] |; sub-block j of 32 uses scale/min j. */          \
    __attribute__((target(TARGET))) static inline void q4_K_body_##SUFFIX(const uint8_t *row, int n, const int8_t *q, \
                                                                          const float *d, const float *s16, float *out, int tokens) { \
        const __m256i low = _mm256_set1_epi8(0x0F);                                                       \
        __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()}; \
        float minimum[4] = {0, 0, 0, 0};                                                                  \
        for (int u = 0; u < n / 256; u++) {                                                               \
            const uint8_t *b = row + 144 * u;                                                             \
            float dd = moe_half_to_float(b), dmin = moe_half_to_float(b + 2);                                     \
            int sc[8], m[8];                                                                              \
            k4_scales(b + 4, sc, m);                                                                      \
            for (int j = 0; j < 4; j++) {                                                                 \
                __m256i v = _mm256_loadu_si256((const __m256i *)(b + 16 + 32 * j));                        \
                __m256i lo = _mm256_and_si256(v, low);                                                    \
                __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);                              \
                for (int t = 0; t < tokens; t++) {                                                        \
                    const int8_t *a = q + (size_t)t * n + 256 * u + 64 * j;                               \
                    const float *da = d + (size_t)t * (n / 32) + 8 * u + 2 * j;                           \
                    const float *sa = s16 + (size_t)t * (n / 16) + 16 * u + 4 * j;                        \
                    __m256i p0 = DPBUSD(_mm256_setzero_si256(), lo, _mm256_loadu_si256((const __m256i *)a)); \
                    __m256i p1 = DPBUSD(_mm256_setzero_si256(), hi, _mm256_loadu_si256((const __m256i *)(a + 32))); \
                    acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(dd * (float)sc[2 * j] * da[0]), acc[t]); \
                    acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1), _mm256_set1_ps(dd * (float)sc[2 * j + 1] * da[1]), acc[t]); \
                    minimum[t] += dmin * ((float)m[2 * j] * (sa[0] + sa[1]) + (float)m[2 * j + 1] * (sa[2] + sa[3])); \
                }                                                                                         \
            }                                                                                             \
        }                                                                                                 \
        for (int t = 0; t < tokens; t++) out[t] = moe_hsum256(acc[t]) - minimum[t];                     \
    }                                                                                                     \
    /* Q6_K: | ql[128] | qh[64] | scales[16] int8 | f16 d |; q = 6-bit value - 32, scale per 16. */     \
    __attribute__((target(TARGET))) static inline void q6_K_body_##SUFFIX(const uint8_t *row, int n, const int8_t *q, \
                                                                          const float *d, const float *s16, float *out, int tokens) { \
        __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()}; \
        float offset[4] = {0, 0, 0, 0};                                                                   \
        for (int u = 0; u < n / 256; u++) {                                                               \
            const uint8_t *b = row + 210 * u;                                                             \
            const int8_t *sc = (const int8_t *)(b + 192);                                                 \
            float dd = moe_half_to_float(b + 208);                                                            \
            for (int half = 0; half < 2; half++) {                                                        \
                __m256i v[4];                                                                             \
                moe_q6k_unpack_half(b + 64 * half, b + 128 + 32 * half, v);                               \
                for (int k = 0; k < 4; k++) {                                                             \
                    int g = 8 * half + 2 * k; /* first 16-group of this 32 */                             \
                    __m256i scales = _mm256_setr_epi32(sc[g], sc[g], sc[g], sc[g], sc[g + 1], sc[g + 1], sc[g + 1], sc[g + 1]); \
                    for (int t = 0; t < tokens; t++) {                                                    \
                        const int8_t *a = q + (size_t)t * n + 256 * u + 128 * half + 32 * k;              \
                        const float *da = d + (size_t)t * (n / 32) + 8 * u;                               \
                        const float *sa = s16 + (size_t)t * (n / 16) + 16 * u;                            \
                        __m256i p = DPBUSD(_mm256_setzero_si256(), v[k], _mm256_loadu_si256((const __m256i *)a)); \
                        p = _mm256_mullo_epi32(p, scales);                                                \
                        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dd * da[g / 2]), acc[t]); \
                        offset[t] += 32.0f * dd * ((float)sc[g] * sa[g] + (float)sc[g + 1] * sa[g + 1]);  \
                    }                                                                                     \
                }                                                                                         \
            }                                                                                             \
        }                                                                                                 \
        for (int t = 0; t < tokens; t++) out[t] = moe_hsum256(acc[t]) - offset[t];                      \
    }                                                                                                     \
    __attribute__((target(TARGET))) float moe_dot_q8_0_##SUFFIX(const uint8_t *row, int n, const int8_t *q, \
                                                                const float *d, const float *s16) {       \
        float out;                                                                                        \
        (void)s16;                                                                                        \
        q8_0_body_##SUFFIX(row, n, q, d, &out, 1);                                                        \
        return out;                                                                                       \
    }                                                                                                     \
    __attribute__((target(TARGET))) void moe_dot4_q8_0_##SUFFIX(const uint8_t *row, int n, const int8_t *q, \
                                                                const float *d, const float *s16, float *out) { \
        (void)s16;                                                                                        \
        q8_0_body_##SUFFIX(row, n, q, d, out, 4);                                                         \
    }                                                                                                     \
    __attribute__((target(TARGET))) float moe_dot_q4_K_##SUFFIX(const uint8_t *row, int n, const int8_t *q, \
                                                                const float *d, const float *s16) {       \
        float out;                                                                                        \
        q4_K_body_##SUFFIX(row, n, q, d, s16, &out, 1);                                                   \
        return out;                                                                                       \
    }                                                                                                     \
    __attribute__((target(TARGET))) void moe_dot4_q4_K_##SUFFIX(const uint8_t *row, int n, const int8_t *q, \
                                                                const float *d, const float *s16, float *out) { \
        q4_K_body_##SUFFIX(row, n, q, d, s16, out, 4);                                                    \
    }                                                                                                     \
    __attribute__((target(TARGET))) float moe_dot_q6_K_##SUFFIX(const uint8_t *row, int n, const int8_t *q, \
                                                                const float *d, const float *s16) {       \
        float out;                                                                                        \
        q6_K_body_##SUFFIX(row, n, q, d, s16, &out, 1);                                                   \
        return out;                                                                                       \
    }                                                                                                     \
    __attribute__((target(TARGET))) void moe_dot4_q6_K_##SUFFIX(const uint8_t *row, int n, const int8_t *q, \
                                                                const float *d, const float *s16, float *out) { \
        q6_K_body_##SUFFIX(row, n, q, d, s16, out, 4);                                                    \
    }

#define DPBUSD_VNNI(acc, u, s) _mm256_dpbusd_epi32(acc, u, s)
#define DPBUSD_AVX2(acc, u, s) _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)))

KERNELS(avx2, "avx2,fma,f16c", DPBUSD_AVX2)

/* Q5_K: | f16 d | f16 dmin | scales[12] | qh[32] | qs[128] |: Q4_K's nibbles plus a 5th bit
   from qh (bit 2j for sub-block 2j, bit 2j+1 for 2j+1). One body for 1 and 4 tokens. */
#define KERNELS_Q5K(SUFFIX, TARGET, DPBUSD)                                                               \
    __attribute__((target(TARGET))) static inline void q5k_body_##SUFFIX(const uint8_t *row, int n, const int8_t *q, \
                                                                         const float *d, const float *s16, float *out, int tokens) { \
        const __m256i low = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);                           \
        __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()}; \
        float minimum[4] = {0, 0, 0, 0};                                                                  \
        for (int u = 0; u < n / 256; u++) {                                                               \
            const uint8_t *b = row + 176 * u;                                                             \
            float dd = moe_half_to_float(b), dmin = moe_half_to_float(b + 2);                                     \
            int sc[8], m[8];                                                                              \
            k4_scales(b + 4, sc, m);                                                                      \
            __m256i qh = _mm256_loadu_si256((const __m256i *)(b + 16));                                   \
            for (int j = 0; j < 4; j++) {                                                                 \
                __m256i v = _mm256_loadu_si256((const __m256i *)(b + 48 + 32 * j));                        \
                __m256i h0 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * j), one), 4);    \
                __m256i h1 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * j + 1), one), 4); \
                __m256i lo = _mm256_or_si256(_mm256_and_si256(v, low), h0);                               \
                __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v, 4), low), h1);         \
                for (int t = 0; t < tokens; t++) {                                                        \
                    const int8_t *a = q + (size_t)t * n + 256 * u + 64 * j;                               \
                    const float *da = d + (size_t)t * (n / 32) + 8 * u + 2 * j;                           \
                    const float *sa = s16 + (size_t)t * (n / 16) + 16 * u + 4 * j;                        \
                    __m256i p0 = DPBUSD(_mm256_setzero_si256(), lo, _mm256_loadu_si256((const __m256i *)a)); \
                    __m256i p1 = DPBUSD(_mm256_setzero_si256(), hi, _mm256_loadu_si256((const __m256i *)(a + 32))); \
                    acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(dd * (float)sc[2 * j] * da[0]), acc[t]); \
                    acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1), _mm256_set1_ps(dd * (float)sc[2 * j + 1] * da[1]), acc[t]); \
                    minimum[t] += dmin * ((float)m[2 * j] * (sa[0] + sa[1]) + (float)m[2 * j + 1] * (sa[2] + sa[3])); \
                }                                                                                         \
            }                                                                                             \
        }                                                                                                 \
        for (int t = 0; t < tokens; t++) out[t] = moe_hsum256(acc[t]) - minimum[t];                     \
    }                                                                                                     \
    __attribute__((target(TARGET))) float moe_dot_q5_K_##SUFFIX(const uint8_t *row, int n, const int8_t *q, \
                                                                const float *d, const float *s16) {       \
        float out;                                                                                        \
        q5k_body_##SUFFIX(row, n, q, d, s16, &out, 1);                                                    \
        return out;                                                                                       \
    }                                                                                                     \
    __attribute__((target(TARGET))) void moe_dot4_q5_K_##SUFFIX(const uint8_t *row, int n, const int8_t *q, \
                                                                const float *d, const float *s16, float *out) { \
        q5k_body_##SUFFIX(row, n, q, d, s16, out, 4);                                                     \
    }

KERNELS_Q5K(vnni, "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c", DPBUSD_VNNI)
KERNELS_Q5K(avx2, "avx2,fma,f16c", DPBUSD_AVX2)

#endif

#if defined(__x86_64__) && defined(__clang__)
/* Q4_K with 512-bit vectors (AVX-512 VNNI): the low and high nibbles of a 32-byte run (two
   sub-blocks of 32) go into one 64-byte vector against 64 contiguous activations, so one
   vpdpbusd covers two sub-blocks; the eight per-sub-block scales d·sc[j]·da[j] are one 8-wide
   multiply per super-block. One body for 1 and 4 tokens keeps them bit-identical. */
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx512dq,avx2,fma,f16c")))
static inline void q4k_z_body(const uint8_t *row, int n, const int8_t *q, const float *d, const float *s16, float *out, int tokens) {
    const __m256i low = _mm256_set1_epi8(0x0F);
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    float minimum[4] = {0, 0, 0, 0};
    const __m512i pick[4] = {
        _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1),
        _mm512_setr_epi32(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3),
        _mm512_setr_epi32(4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5),
        _mm512_setr_epi32(6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7)};
    for (int u = 0; u < n / 256; u++) {
        const uint8_t *b = row + 144 * u;
        float dd = moe_half_to_float(b), dmin = moe_half_to_float(b + 2);
        int sc[8], m[8];
        k4_scales(b + 4, sc, m);
        const __m256 wscale = _mm256_mul_ps(_mm256_set1_ps(dd), _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)sc)));
        __m512i w[4];
        for (int j = 0; j < 4; j++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(b + 16 + 32 * j));
            __m256i lo = _mm256_and_si256(v, low);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
            w[j] = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
        }
        for (int t = 0; t < tokens; t++) {
            const int8_t *a = q + (size_t)t * n + 256 * u;
            const float *da = d + (size_t)t * (n / 32) + 8 * u;
            const float *sa = s16 + (size_t)t * (n / 16) + 16 * u;
            const __m512 scale = _mm512_castps256_ps512(_mm256_mul_ps(wscale, _mm256_loadu_ps(da)));
            for (int j = 0; j < 4; j++) {
                __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w[j], _mm512_loadu_si512((const void *)(a + 64 * j)));
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_permutexvar_ps(pick[j], scale), acc[t]);
            }
            float mins = 0;
            for (int j = 0; j < 8; j++) mins += (float)m[j] * (sa[2 * j] + sa[2 * j + 1]);
            minimum[t] += dmin * mins;
        }
    }
    for (int t = 0; t < tokens; t++) out[t] = _mm512_reduce_add_ps(acc[t]) - minimum[t];
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx512dq,avx2,fma,f16c")))
float moe_dot_q4_K_zmm(const uint8_t *row, int n, const int8_t *q, const float *d, const float *s16) {
    float out;
    q4k_z_body(row, n, q, d, s16, &out, 1);
    return out;
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx512dq,avx2,fma,f16c")))
void moe_dot4_q4_K_zmm(const uint8_t *row, int n, const int8_t *q, const float *d, const float *s16, float *out) {
    q4k_z_body(row, n, q, d, s16, out, 4);
}
#endif

#if defined(__x86_64__) && defined(__clang__)
/* Q8_0 with 512-bit vectors: two 32-weight blocks per vpdpbusd. |w| is the unsigned operand
   and the activations are negated where w < 0 (activations are never -128: the quantizer
   rounds to ±127). The scales of the two blocks fill the two halves of the scale vector. A
   last pair or odd block goes through the narrower code below. One body for 1..4 tokens. */
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx512dq,avx2,fma,f16c")))
static inline void q8_0_z_body(const uint8_t *row, int n, const int8_t *q, const float *d, float *out, int tokens) {
    __m512 acc[MOE_TILE_Q], acc2[MOE_TILE_Q];
    __m256 tail[MOE_TILE_Q];
    for (int t = 0; t < tokens; t++) {
        acc[t] = acc2[t] = _mm512_setzero_ps();
        tail[t] = _mm256_setzero_ps();
    }
    const int blocks = n / 32;
    const __m512i first = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    const __m512i second = _mm512_setr_epi32(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    int b = 0;
    /* Four blocks per step: their f16 scales convert together and meet the activations' four
       scales in one multiply; two permutes spread them over the two vectors. */
    for (; b + 3 < blocks; b += 4) {
        const uint8_t *w0 = row + 34 * b;
        __m512i x01 = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(w0 + 2))),
                                         _mm256_loadu_si256((const __m256i *)(w0 + 36)), 1);
        __m512i x23 = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(w0 + 70))),
                                         _mm256_loadu_si256((const __m256i *)(w0 + 104)), 1);
        __m512i ax01 = _mm512_abs_epi8(x01), ax23 = _mm512_abs_epi8(x23);
        __mmask64 n01 = _mm512_movepi8_mask(x01), n23 = _mm512_movepi8_mask(x23);
        const __m128 dw = moe_half4_to_float4(w0, 34);
        for (int t = 0; t < tokens; t++) {
            const int8_t *a = q + (size_t)t * n + 32 * b;
            __m512i a01 = _mm512_loadu_si512((const void *)a), a23 = _mm512_loadu_si512((const void *)(a + 64));
            __m512i p01 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ax01, _mm512_mask_sub_epi8(a01, n01, _mm512_setzero_si512(), a01));
            __m512i p23 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ax23, _mm512_mask_sub_epi8(a23, n23, _mm512_setzero_si512(), a23));
            __m512 scale = _mm512_castps128_ps512(_mm_mul_ps(dw, _mm_loadu_ps(d + (size_t)t * (n / 32) + b)));
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p01), _mm512_permutexvar_ps(first, scale), acc[t]);
            acc2[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p23), _mm512_permutexvar_ps(second, scale), acc2[t]);
        }
    }
    for (; b + 1 < blocks; b += 2) {
        const uint8_t *w0 = row + 34 * b, *w1 = w0 + 34;
        __m512i x = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(w0 + 2))),
                                       _mm256_loadu_si256((const __m256i *)(w1 + 2)), 1);
        __m512i ax = _mm512_abs_epi8(x);
        __mmask64 negative = _mm512_movepi8_mask(x);
        float d0 = moe_half_to_float(w0), d1 = moe_half_to_float(w1);
        for (int t = 0; t < tokens; t++) {
            __m512i a = _mm512_loadu_si512((const void *)(q + (size_t)t * n + 32 * b));
            __m512i sa = _mm512_mask_sub_epi8(a, negative, _mm512_setzero_si512(), a);
            __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ax, sa);
            const float *dt = d + (size_t)t * (n / 32) + b;
            __m512 scale = _mm512_insertf32x8(_mm512_set1_ps(d0 * dt[0]), _mm256_set1_ps(d1 * dt[1]), 1);
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), scale, acc[t]);
        }
    }
    for (; b < blocks; b++) {
        const uint8_t *w0 = row + 34 * b;
        __m256i x0 = _mm256_loadu_si256((const __m256i *)(w0 + 2));
        __m256i ax = _mm256_abs_epi8(x0);
        float d0 = moe_half_to_float(w0);
        for (int t = 0; t < tokens; t++) {
            __m256i a0 = _mm256_loadu_si256((const __m256i *)(q + (size_t)t * n + 32 * b));
            __m256i p0 = _mm256_dpbusd_epi32(_mm256_setzero_si256(), ax, _mm256_sign_epi8(a0, x0));
            tail[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(d0 * d[(size_t)t * (n / 32) + b]), tail[t]);
        }
    }
    for (int t = 0; t < tokens; t++) out[t] = _mm512_reduce_add_ps(_mm512_add_ps(acc[t], acc2[t])) + moe_hsum256(tail[t]);
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx512dq,avx2,fma,f16c")))
float moe_dot_q8_0_zmm(const uint8_t *row, int n, const int8_t *q, const float *d, const float *s16) {
    float out;
    (void)s16;
    q8_0_z_body(row, n, q, d, &out, 1);
    return out;
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx512dq,avx2,fma,f16c")))
void moe_dot4_q8_0_zmm(const uint8_t *row, int n, const int8_t *q, const float *d, const float *s16, float *out) {
    (void)s16;
    q8_0_z_body(row, n, q, d, out, 4);
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx512dq,avx2,fma,f16c")))
void moe_dotn_q8_0_zmm(const uint8_t *row, int n, const int8_t *q, const float *d, const float *s16, float *out, int tokens) {
    (void)s16;
    if (tokens == 1) q8_0_z_body(row, n, q, d, out, 1);
    else if (tokens == MOE_TILE_Q) q8_0_z_body(row, n, q, d, out, MOE_TILE_Q);
    else q8_0_z_body(row, n, q, d, out, tokens);
}
#endif

#if defined(__x86_64__) && defined(__clang__)
/* Q6_K with 512-bit vectors: 64 six-bit weights (four 16-groups) per vpdpbusd against 64
   contiguous activations; the group scales multiply the int32 lanes (4 lanes per group), the
   two 32-blocks' activation scales fill the two halves of the float scale. One body for 1..4
   tokens. */
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx512dq,avx2,fma,f16c")))
static inline void q6k_z_body(const uint8_t *row, int n, const int8_t *q, const float *d, const float *s16, float *out, int tokens) {
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    float offset[4] = {0, 0, 0, 0};
    for (int u = 0; u < n / 256; u++) {
        const uint8_t *b = row + 210 * u;
        const int8_t *sc = (const int8_t *)(b + 192);
        float dd = moe_half_to_float(b + 208);
        for (int half = 0; half < 2; half++) {
            __m256i v[4];
            moe_q6k_unpack_half(b + 64 * half, b + 128 + 32 * half, v);
            __m512i w[2] = {_mm512_inserti64x4(_mm512_castsi256_si512(v[0]), v[1], 1), _mm512_inserti64x4(_mm512_castsi256_si512(v[2]), v[3], 1)};
            for (int k = 0; k < 2; k++) {
                int g = 8 * half + 4 * k;  // first of the four 16-groups in w[k]
                __m512i scales = _mm512_setr_epi32(sc[g], sc[g], sc[g], sc[g], sc[g + 1], sc[g + 1], sc[g + 1], sc[g + 1],
                                                   sc[g + 2], sc[g + 2], sc[g + 2], sc[g + 2], sc[g + 3], sc[g + 3], sc[g + 3], sc[g + 3]);
                for (int t = 0; t < tokens; t++) {
                    const int8_t *a = q + (size_t)t * n + 256 * u + 128 * half + 64 * k;
                    const float *da = d + (size_t)t * (n / 32) + 8 * u + g / 2;
                    const float *sa = s16 + (size_t)t * (n / 16) + 16 * u + g;
                    __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w[k], _mm512_loadu_si512((const void *)a));
                    p = _mm512_mullo_epi32(p, scales);
                    __m512 scale = _mm512_insertf32x8(_mm512_set1_ps(dd * da[0]), _mm256_set1_ps(dd * da[1]), 1);
                    acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), scale, acc[t]);
                    offset[t] += 32.0f * dd * ((float)sc[g] * sa[0] + (float)sc[g + 1] * sa[1] + (float)sc[g + 2] * sa[2] + (float)sc[g + 3] * sa[3]);
                }
            }
        }
    }
    for (int t = 0; t < tokens; t++) out[t] = _mm512_reduce_add_ps(acc[t]) - offset[t];
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx512dq,avx2,fma,f16c")))
float moe_dot_q6_K_zmm(const uint8_t *row, int n, const int8_t *q, const float *d, const float *s16) {
    float out;
    q6k_z_body(row, n, q, d, s16, &out, 1);
    return out;
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx512dq,avx2,fma,f16c")))
void moe_dot4_q6_K_zmm(const uint8_t *row, int n, const int8_t *q, const float *d, const float *s16, float *out) {
    q6k_z_body(row, n, q, d, s16, out, 4);
}
#endif
