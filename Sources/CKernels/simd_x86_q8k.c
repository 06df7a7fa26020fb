// Hand-written x86 kernels against q8_K activations (kernels_internal.h): the K-quants and
// IQ4_XS with one float operation per 256 weights and token. 256-bit bodies for AVX2 and
// AVX-512 VNNI (x86_q8k_body.h, included once per ISA) and 512-bit bodies for every one of them
// (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS); kernels.c picks one at run time (the 256-bit VNNI
// bodies stay for A/B runs) and keeps the scalar reference they are tested against.
#include "kernels_internal.h"

#if defined(__x86_64__) && defined(__clang__)
#define ZMM_TARGET MOE_ZMM_TARGET

/* Byte shuffles that spread the scales of groups 2s and 2s+1 over 8 bytes each. */
static const uint8_t pair_shuffle[8][16] = {
    {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1},         {2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3},
    {4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5},         {6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7},
    {8, 8, 8, 8, 8, 8, 8, 8, 9, 9, 9, 9, 9, 9, 9, 9},         {10, 10, 10, 10, 10, 10, 10, 10, 11, 11, 11, 11, 11, 11, 11, 11},
    {12, 12, 12, 12, 12, 12, 12, 12, 13, 13, 13, 13, 13, 13, 13, 13}, {14, 14, 14, 14, 14, 14, 14, 14, 15, 15, 15, 15, 15, 15, 15, 15}};

/* Q3_K's sixteen 6-bit scales (without the -32) from its 12 packed bytes: low nibbles from
   bytes 0-7, high 2-bit pairs from bytes 8-11, four scales per 32-bit word. */
static inline void q3k_scales(const uint8_t *packed, uint8_t *out) {
    uint32_t u[4];
    memcpy(u, packed, 12);
    const uint32_t low4 = 0x0f0f0f0f, low2 = 0x03030303, high = u[2];
    u[2] = ((u[0] >> 4) & low4) | (((high >> 4) & low2) << 4);
    u[3] = ((u[1] >> 4) & low4) | (((high >> 6) & low2) << 4);
    u[0] = (u[0] & low4) | ((high & low2) << 4);
    u[1] = (u[1] & low4) | (((high >> 2) & low2) << 4);
    memcpy(out, u, 16);
}

/* The same minus 32: Q3_K's signed scales as 16 bytes. */
__attribute__((target("avx2"))) static inline __m128i q3k_scales_signed(const uint8_t *packed) {
    uint8_t scales[16];
    q3k_scales(packed, scales);
    return _mm_sub_epi8(_mm_loadu_si128((const __m128i *)scales), _mm_set1_epi8(32));
}

/* Q4_K/Q5_K's eight 6-bit scales (out[0..7]) and eight 6-bit mins (out[8..15]). */
static inline void k4_scales_mins(const uint8_t *s, uint8_t *out) {
    uint32_t u[4];
    memcpy(u, s, 12);
    const uint32_t low6 = 0x3f3f3f3f, low4 = 0x0f0f0f0f, low2 = 0x03030303;
    u[3] = ((u[2] >> 4) & low4) | (((u[1] >> 6) & low2) << 4);
    const uint32_t mins_low = u[1] & low6;
    u[1] = (u[2] & low4) | (((u[0] >> 6) & low2) << 4);
    u[2] = mins_low;
    u[0] &= low6;
    memcpy(out, u, 16);
}

/* The same in vector registers: bytes 0-7 scales, 8-15 mins (reads 16 bytes from s). */
__attribute__((target("avx2"))) static inline __m128i k4_scales_mins_v(const uint8_t *s) {
    const __m128i v = _mm_loadu_si128((const __m128i *)s); /* u0 u1 u2 (and 4 bytes of qs) */
    const __m128i low6 = _mm_set1_epi8(0x3f), low4 = _mm_set1_epi8(0x0f), low2 = _mm_set1_epi8(0x03);
    const __m128i u22 = _mm_shuffle_epi32(v, _MM_SHUFFLE(2, 2, 2, 2));
    const __m128i u01 = _mm_shuffle_epi32(v, _MM_SHUFFLE(1, 0, 1, 0));
    /* lane 0: scales 4-7 = (u2 & 0x0f) | ((u0 >> 6) & 3) << 4; lane 1: mins 4-7 = ((u2 >> 4) & 0x0f) | ((u1 >> 6) & 3) << 4 */
    const __m128i hi = _mm_or_si128(_mm_and_si128(_mm_srlv_epi32(u22, _mm_setr_epi32(0, 4, 0, 4)), low4),
                                    _mm_slli_epi32(_mm_and_si128(_mm_srli_epi32(u01, 6), low2), 4));
    /* lanes 0, 1 of v & 0x3f: scales 0-3, mins 0-3 */
    return _mm_unpacklo_epi32(_mm_and_si128(v, low6), hi);
}

/* Eight mins as int16 pairs (m0, m0, m1, m1, ...) to multiply the activations' sums of 16. */
__attribute__((target("avx2"))) static inline __m256i k4_mins_pairs(const uint8_t *m8) {
    __m128i m = _mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)m8));
    return _mm256_set_m128i(_mm_unpackhi_epi16(m, m), _mm_unpacklo_epi16(m, m));
}

#define K_TARGET __attribute__((target("avx2,fma,f16c")))
#define K_SUFFIX avx2
#define K_DPWSSD(acc, p, s) _mm256_add_epi32((acc), _mm256_madd_epi16((p), (s)))
#include "x86_q8k_body.h"
#undef K_TARGET
#undef K_SUFFIX
#undef K_DPWSSD

#define K_TARGET ZMM_TARGET
#define K_SUFFIX vnni
#define K_DPWSSD(acc, p, s) _mm256_dpwssd_epi32((acc), (p), (s))
#include "x86_q8k_body.h"
#undef K_TARGET
#undef K_SUFFIX
#undef K_DPWSSD

/* acc + float(Σ lanes of sum) · f, rounded once (a fused multiply-add): the float step of the
   Q3_K and IQ4_XS kernels, in the order the tiled prefill GEMM (simd_x86_tiled.c) repeats per
   token, so both paths give the same bits. */
ZMM_TARGET static inline float z_fma_sum(__m512i sum, float f, float acc) {
    const float s = (float)_mm512_reduce_add_epi32(sum);
    return _mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(s), _mm_set_ss(f), _mm_set_ss(acc)));
}

/* Σ lanes of four vectors at once, [Σ a, Σ b, Σ c, Σ d]: the same integers as four
   _mm512_reduce_add_epi32, in about a third of the instructions. */
ZMM_TARGET static inline __m128i z_reduce4(__m512i a, __m512i b, __m512i c, __m512i d) {
    const __m512i ab = _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
    const __m512i cd = _mm512_add_epi32(_mm512_unpacklo_epi32(c, d), _mm512_unpackhi_epi32(c, d));
    const __m512i abcd = _mm512_add_epi32(_mm512_unpacklo_epi64(ab, cd), _mm512_unpackhi_epi64(ab, cd));
    const __m256i h = _mm256_add_epi32(_mm512_castsi512_si256(abcd), _mm512_extracti64x4_epi64(abcd, 1));
    return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

/* z_fma_sum over `count` (1-4) pending super-blocks in order: acc = fma(float(Σ p[i]), f[i], acc). */
ZMM_TARGET static inline float z_flush(const __m512i *p, int count, const float *f, float acc) {
    if (count == 4) {
        const __m128 s = _mm_cvtepi32_ps(z_reduce4(p[0], p[1], p[2], p[3]));
        __m128 a = _mm_set_ss(acc);
        a = _mm_fmadd_ss(s, _mm_set_ss(f[0]), a);
        a = _mm_fmadd_ss(_mm_movehdup_ps(s), _mm_set_ss(f[1]), a);
        a = _mm_fmadd_ss(_mm_movehl_ps(s, s), _mm_set_ss(f[2]), a);
        a = _mm_fmadd_ss(_mm_shuffle_ps(s, s, 3), _mm_set_ss(f[3]), a);
        return _mm_cvtss_f32(a);
    }
    for (int i = 0; i < count; i++) acc = z_fma_sum(p[i], f[i], acc);
    return acc;
}

/* Σ over one super-block as four 64-byte vectors: vpmaddubsw(w, a) · int16 scale pairs, int32 lanes. */
ZMM_TARGET static inline __m512i z_dot4(const __m512i *w, const __m512i *sv, const int8_t *a) {
    __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
    s0 = _mm512_dpwssd_epi32(s0, _mm512_maddubs_epi16(w[0], _mm512_loadu_si512((const void *)a)), sv[0]);
    s1 = _mm512_dpwssd_epi32(s1, _mm512_maddubs_epi16(w[1], _mm512_loadu_si512((const void *)(a + 64))), sv[1]);
    s0 = _mm512_dpwssd_epi32(s0, _mm512_maddubs_epi16(w[2], _mm512_loadu_si512((const void *)(a + 128))), sv[2]);
    s1 = _mm512_dpwssd_epi32(s1, _mm512_maddubs_epi16(w[3], _mm512_loadu_si512((const void *)(a + 192))), sv[3]);
    return _mm512_add_epi32(s0, s1);
}

/* Sixteen int16 scales (one per 16 weights) as the int16 lanes of vector k: lane i gets scale 4k + i/8. */
ZMM_TARGET static inline __m512i z_scales16(__m256i sc16, int k) {
    static const int16_t group[32] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3};
    const __m512i idx = _mm512_add_epi16(_mm512_loadu_si512((const void *)group), _mm512_set1_epi16((short)(4 * k)));
    return _mm512_permutexvar_epi16(idx, _mm512_castsi256_si512(sc16));
}

/* Two 16-bit shift counts, one per 256-bit half. */
ZMM_TARGET static inline __m512i z_halves16(int low, int high) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi16((short)low)), _mm256_set1_epi16((short)high), 1);
}

/* 512-bit Q2_K: sub-blocks 2k and 2k+1 come from the same 32-byte run of qs (run k/2, shifts
   4(k%2) and 4(k%2)+2), so one broadcast and one variable shift make a 64-weight vector. */
ZMM_TARGET static inline void q2k_z_body(const uint8_t *row, int n, const int8_t *q, const float *dk, const int16_t *bs, const float *sk,
                                         float *out, int tokens) {
    (void)sk;
    const int nb = n / 256;
    const __m512i three = _mm512_set1_epi8(3);
    const __m512i shifts[2] = {z_halves16(0, 2), z_halves16(4, 6)};
    const __m128i m4 = _mm_set1_epi8(0x0F);
    __m512 acc[MOE_TILE_K];
    __m256 accm[MOE_TILE_K];
    for (int t = 0; t < tokens; t++) {
        acc[t] = _mm512_setzero_ps();
        accm[t] = _mm256_setzero_ps();
    }
    for (int u = 0; u < nb; u++) {
        const uint8_t *b = row + 84 * u;
        const float dd = moe_half_to_float(b + 80), dmin = moe_half_to_float(b + 82);
        const __m128i raw = _mm_loadu_si128((const __m128i *)b);
        const __m256i sc16 = _mm256_cvtepu8_epi16(_mm_and_si128(raw, m4));
        const __m256i mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), m4));
        __m512i w[4], sv[4];
        for (int k = 0; k < 4; k++) {
            const __m512i run = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(b + 16 + 32 * (k / 2))));
            w[k] = _mm512_and_si512(_mm512_srlv_epi16(run, shifts[k % 2]), three);
            sv[k] = z_scales16(sc16, k);
        }
        for (int t = 0; t < tokens; t++) {
            const float da = dk[(size_t)t * nb + u];
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(z_dot4(w, sv, q + (size_t)t * n + 256 * u)), _mm512_set1_ps(dd * da), acc[t]);
            __m256i m = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(bs + (size_t)t * (n / 16) + 16 * u)), mins);
            accm[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(m), _mm256_set1_ps(dmin * da), accm[t]);
        }
    }
    for (int t = 0; t < tokens; t++) out[t] = _mm512_reduce_add_ps(acc[t]) - moe_hsum256(accm[t]);
}

/* 512-bit Q3_K: Q2_K's planes plus bit s of hmask as bit 2 (stored value = weight + 4, the 4 is
   subtracted as 4 · Σ scale · bsum in integers). */
ZMM_TARGET static inline void q3k_z_body(const uint8_t *row, int n, const int8_t *q, const float *dk, const int16_t *bs, const float *sk,
                                         float *out, int tokens) {
    (void)sk;
    const int nb = n / 256;
    float acc[MOE_TILE_K];
    for (int t = 0; t < tokens; t++) acc[t] = 0;
    /* Super-blocks' integer sums wait in fours for one shared reduction (z_flush). */
    __m512i pend[MOE_TILE_K][4];
    float fac[MOE_TILE_K][4];
    for (int u = 0; u < nb; u++) {
        const uint8_t *b = row + 110 * u;
        const float dd = moe_half_to_float(b + 108);
        const __m256i sc16 = _mm256_cvtepi8_epi16(q3k_scales_signed_v(b + 96));
        const __m512i hm = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)b));
        __m512i w[4], sv[4];
        for (int k = 0; k < 4; k++) {
            w[k] = q3k_values_v(b, hm, k);
            sv[k] = z_scales16(sc16, k);
        }
        for (int t = 0; t < tokens; t++) {
            __m256i offset = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(bs + (size_t)t * (n / 16) + 16 * u)), sc16);
            __m512i sumi = _mm512_sub_epi32(z_dot4(w, sv, q + (size_t)t * n + 256 * u), _mm512_zextsi256_si512(_mm256_slli_epi32(offset, 2)));
            pend[t][u & 3] = sumi;
            fac[t][u & 3] = dd * dk[(size_t)t * nb + u];
        }
        if ((u & 3) == 3 || u == nb - 1)
            for (int t = 0; t < tokens; t++) acc[t] = z_flush(pend[t], (u & 3) + 1, fac[t], acc[t]);
    }
    for (int t = 0; t < tokens; t++) out[t] = acc[t];
}

/* 512-bit IQ4_XS: sub-blocks 2k and 2k+1 (32 bytes of qs) become [lo | hi | lo | hi] by one
   two-source permute, then vpshufb looks the levels up; |w| · (a negated where w < 0). */
ZMM_TARGET static inline void iq4xs_z_body(const uint8_t *row, int n, const int8_t *q, const float *dk, const int16_t *bs, const float *sk,
                                           float *out, int tokens) {
    (void)bs;
    (void)sk;
    const int nb = n / 256;
    const __m512i lut = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)moe_iq4nl_levels));
    const __m512i zero = _mm512_setzero_si512();
    /* int16 lanes 0-15: scale 2k, lanes 16-31: scale 2k + 1 */
    const __m512i pick[4] = {_mm512_inserti64x4(_mm512_set1_epi16(0), _mm256_set1_epi16(1), 1), _mm512_inserti64x4(_mm512_set1_epi16(2), _mm256_set1_epi16(3), 1),
                             _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(5), 1), _mm512_inserti64x4(_mm512_set1_epi16(6), _mm256_set1_epi16(7), 1)};
    float acc[MOE_TILE_K];
    for (int t = 0; t < tokens; t++) acc[t] = 0;
    /* Super-blocks' integer sums wait in fours for one shared reduction (z_flush). */
    __m512i pend[MOE_TILE_K][4];
    float fac[MOE_TILE_K][4];
    for (int u = 0; u < nb; u++) {
        const uint8_t *b = row + 136 * u;
        const float dd = moe_half_to_float(b);
        __m512i aw[4], sv[4];
        __mmask64 neg[4];
        for (int h = 0; h < 2; h++) {
            __m512i idx[2];
            iq4xs_indices_v(b, h, idx);
            for (int j = 0; j < 2; j++) {
                const __m512i w = _mm512_shuffle_epi8(lut, idx[j]);
                aw[2 * h + j] = _mm512_abs_epi8(w);
                neg[2 * h + j] = _mm512_movepi8_mask(w);
            }
        }
        const __m512i sc = _mm512_castsi128_si512(iq4xs_scales_v(b));
        for (int k = 0; k < 4; k++) sv[k] = _mm512_permutexvar_epi16(pick[k], sc);
        for (int t = 0; t < tokens; t++) {
            const int8_t *a = q + (size_t)t * n + 256 * u;
            __m512i s0 = zero, s1 = zero;
            for (int k = 0; k < 4; k += 2) {
                __m512i a0 = _mm512_loadu_si512((const void *)(a + 64 * k)), a1 = _mm512_loadu_si512((const void *)(a + 64 * k + 64));
                s0 = _mm512_dpwssd_epi32(s0, _mm512_maddubs_epi16(aw[k], _mm512_mask_sub_epi8(a0, neg[k], zero, a0)), sv[k]);
                s1 = _mm512_dpwssd_epi32(s1, _mm512_maddubs_epi16(aw[k + 1], _mm512_mask_sub_epi8(a1, neg[k + 1], zero, a1)), sv[k + 1]);
            }
            pend[t][u & 3] = _mm512_add_epi32(s0, s1);
            fac[t][u & 3] = dd * dk[(size_t)t * nb + u];
        }
        if ((u & 3) == 3 || u == nb - 1)
            for (int t = 0; t < tokens; t++) acc[t] = z_flush(pend[t], (u & 3) + 1, fac[t], acc[t]);
    }
    for (int t = 0; t < tokens; t++) out[t] = acc[t];
}

/* 512-bit Q4_K/Q5_K: the low and high nibbles of a 32-byte run (sub-blocks 2j and 2j+1) fill one
   64-byte vector against 64 contiguous activations; int32 lane pairs carry the two scales. */
ZMM_TARGET static inline void q45k_z_body(const uint8_t *row, int n, const int8_t *q, const float *dk, const int16_t *bs, const float *sk,
                                          float *out, int tokens, int five) {
    const int nb = n / 256;
    const size_t bytes = five ? 176 : 144;
    const __m512i low = _mm512_set1_epi8(0x0F);
    const __m512i pick[4] = {_mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1),
                             _mm512_setr_epi32(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3),
                             _mm512_setr_epi32(4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5),
                             _mm512_setr_epi32(6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7)};
    const __m512i dup = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    __m512 acc[MOE_TILE_K], accm[MOE_TILE_K];
    for (int t = 0; t < tokens; t++) acc[t] = accm[t] = _mm512_setzero_ps();
    for (int u = 0; u < nb; u++) {
        const uint8_t *b = row + bytes * u;
        const float dd = moe_half_to_float(b), dmin = moe_half_to_float(b + 2);
        const __m128i sm = k4_scales_mins_v(b + 4);
        /* dmin · min of each sub-block, once per 16 activations: against the activations' scaled sums. */
        const __m512 mins = _mm512_mul_ps(_mm512_set1_ps(dmin),
                                          _mm512_cvtepi32_ps(_mm512_permutexvar_epi32(dup, _mm512_cvtepu8_epi32(_mm_unpackhi_epi64(sm, sm)))));
        __m256i sc32 = _mm256_cvtepu8_epi32(sm);
        const __m512i scz = _mm512_castsi256_si512(_mm256_or_si256(sc32, _mm256_slli_epi32(sc32, 16)));
        const uint8_t *qs = b + (five ? 48 : 16);
        const __m512i qh = five ? _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(b + 16))) : _mm512_setzero_si512();
        __m512i w[4], sv[4];
        for (int k = 0; k < 2; k++) {
            /* 64 bytes = runs j = 2k, 2k+1: [lo_j | hi_j] and [lo_j+1 | hi_j+1] by 128-bit lane shuffles */
            __m512i v = _mm512_loadu_si512((const void *)(qs + 64 * k));
            __m512i lo = _mm512_and_si512(v, low), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), low);
            w[2 * k] = _mm512_shuffle_i64x2(lo, hi, _MM_SHUFFLE(1, 0, 1, 0));
            w[2 * k + 1] = _mm512_shuffle_i64x2(lo, hi, _MM_SHUFFLE(3, 2, 3, 2));
        }
        for (int j = 0; j < 4; j++) {
            if (five) {
                const __m512i bit = _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << (2 * j))), _mm256_set1_epi8((char)(2 << (2 * j))), 1);
                w[j] = _mm512_mask_add_epi8(w[j], _mm512_test_epi8_mask(qh, bit), w[j], _mm512_set1_epi8(16));
            }
            sv[j] = _mm512_permutexvar_epi32(pick[j], scz);
        }
        for (int t = 0; t < tokens; t++) {
            const float da = dk[(size_t)t * nb + u];
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(z_dot4(w, sv, q + (size_t)t * n + 256 * u)), _mm512_set1_ps(dd * da), acc[t]);
            accm[t] = _mm512_fmadd_ps(mins, _mm512_loadu_ps(sk + (size_t)t * (n / 16) + 16 * u), accm[t]);
        }
    }
    for (int t = 0; t < tokens; t++) out[t] = _mm512_reduce_add_ps(_mm512_sub_ps(acc[t], accm[t]));
}

/* 512-bit Q6_K: 64 six-bit weights (four groups of 16) per vector; int32 lanes carry the group
   scales as int16 pairs; the -32 offset is 32 · Σ scale · bsum, subtracted in integers. */
ZMM_TARGET static inline void q6k_z_body(const uint8_t *row, int n, const int8_t *q, const float *dk, const int16_t *bs, const float *sk,
                                         float *out, int tokens) {
    const int nb = n / 256;
    const __m512i pick[4] = {_mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3),
                             _mm512_setr_epi32(4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7),
                             _mm512_setr_epi32(8, 8, 8, 8, 9, 9, 9, 9, 10, 10, 10, 10, 11, 11, 11, 11),
                             _mm512_setr_epi32(12, 12, 12, 12, 13, 13, 13, 13, 14, 14, 14, 14, 15, 15, 15, 15)};
    __m512 acc[MOE_TILE_K];
    for (int t = 0; t < tokens; t++) acc[t] = _mm512_setzero_ps();
    for (int u = 0; u < nb; u++) {
        const uint8_t *b = row + 210 * u;
        const float dd = moe_half_to_float(b + 208);
        const __m128i sc8 = _mm_loadu_si128((const __m128i *)(b + 192));
        const __m256i sc16 = _mm256_cvtepi8_epi16(sc8);
        const __m512i sc32 = _mm512_cvtepi8_epi32(sc8);
        const __m512i scz = _mm512_or_si512(_mm512_and_si512(sc32, _mm512_set1_epi32(0xFFFF)), _mm512_slli_epi32(sc32, 16));
        __m512i w[4], sv[4];
        for (int half = 0; half < 2; half++) {
            __m256i v[4];
            moe_q6k_unpack_half(b + 64 * half, b + 128 + 32 * half, v);
            w[2 * half] = _mm512_inserti64x4(_mm512_castsi256_si512(v[0]), v[1], 1);
            w[2 * half + 1] = _mm512_inserti64x4(_mm512_castsi256_si512(v[2]), v[3], 1);
        }
        for (int j = 0; j < 4; j++) sv[j] = _mm512_permutexvar_epi32(pick[j], scz);
        for (int t = 0; t < tokens; t++) {
            __m256i offset = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(bs + (size_t)t * (n / 16) + 16 * u)), sc16);
            __m512i sumi = _mm512_sub_epi32(z_dot4(w, sv, q + (size_t)t * n + 256 * u), _mm512_zextsi256_si512(_mm256_slli_epi32(offset, 5)));
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi), _mm512_set1_ps(dd * dk[(size_t)t * nb + u]), acc[t]);
        }
    }
    for (int t = 0; t < tokens; t++) out[t] = _mm512_reduce_add_ps(acc[t]);
}

#define Z_ENTRY(type, body, ...)                                                                                 \
    ZMM_TARGET void moe_dotk_##type##_zmm(const uint8_t *row, int n, const int8_t *q, const float *dk,          \
                                          const int16_t *bs, const float *sk, float *out, int tokens) {           \
        if (tokens == 1) body(row, n, q, dk, bs, sk, out, 1 __VA_ARGS__);                                            \
        else if (tokens == MOE_TILE_K) body(row, n, q, dk, bs, sk, out, MOE_TILE_K __VA_ARGS__);                                       \
        else if (tokens == MOE_TILE_K / 2) body(row, n, q, dk, bs, sk, out, MOE_TILE_K / 2 __VA_ARGS__);                             \
        else body(row, n, q, dk, bs, sk, out, tokens __VA_ARGS__);                                                   \
    }
Z_ENTRY(q4_K, q45k_z_body, , 0)
Z_ENTRY(q5_K, q45k_z_body, , 1)
Z_ENTRY(q6_K, q6k_z_body)
Z_ENTRY(q2_K, q2k_z_body)
Z_ENTRY(q3_K, q3k_z_body)
Z_ENTRY(iq4_xs, iq4xs_z_body)
#endif
