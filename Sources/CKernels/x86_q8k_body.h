// 256-bit kernels of the K-quants and IQ4_XS against q8_K activations (kernels_internal.h),
// included by simd_x86_q8k.c once per ISA with K_TARGET (a target attribute), K_SUFFIX and
// K_DPWSSD(acc, int16 products, int16 scales) defined: vpdpwssd on AVX-512 VNNI, vpmaddwd + add
// on AVX2. No include guard on purpose.
//
// Per 32 weights w (unsigned bytes after unpacking) and activations a: p = vpmaddubsw(w, a)
// (16 int16 sums of two products, never saturating for these value ranges), then
// sumi += p · scale (int16 × int16 → int32 pairs). Offsets and minimums use the activations'
// int16 sums of 16 (bsums). One convert + one FMA per 256 weights and token.
#define K_NAME2(a, b) a##_##b
#define K_NAME1(a, b) K_NAME2(a, b)
#define K_NAME(a) K_NAME1(a, K_SUFFIX)

/* Sum of the 8 lanes of an int32 product vector times a float factor into acc. */
#define K_ACCUMULATE(acc, sumi, factor) (acc) = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), _mm256_set1_ps(factor), (acc))

/* Σ over the 8 sub-blocks of 32 of one super-block: vpmaddubsw(w, a) · scale pairs, in int32 lanes. */
K_TARGET static inline __m256i K_NAME(k_dot8)(const __m256i *w, const __m256i *sv, const int8_t *a) {
    __m256i sumi = _mm256_setzero_si256();
    for (int s = 0; s < 8; s++) sumi = K_DPWSSD(sumi, _mm256_maddubs_epi16(w[s], _mm256_loadu_si256((const __m256i *)(a + 32 * s))), sv[s]);
    return sumi;
}

/* The token loop of the types with minimums (Q2_K, Q4_K, Q5_K): acc += d·da·Σ w·a and
   accm += dmin·da·Σ min·bsum, `mins` holding each 16-group's min as int16 (pairs per int32 lane). */
K_TARGET static inline void K_NAME(k_tokens_min)(const __m256i *w, const __m256i *sv, __m256i mins, float dd, float dmin,
                                                 const int8_t *q, const float *dk, const int16_t *bs, int n, int u,
                                                 __m256 *acc, __m256 *accm, int tokens) {
    const int nb = n / 256;
    for (int t = 0; t < tokens; t++) {
        const float da = dk[(size_t)t * nb + u];
        K_ACCUMULATE(acc[t], K_NAME(k_dot8)(w, sv, q + (size_t)t * n + 256 * u), dd * da);
        __m256i m = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(bs + (size_t)t * (n / 16) + 16 * u)), mins);
        K_ACCUMULATE(accm[t], m, dmin * da);
    }
}

/* The token loop of the types with an offset (Q3_K: weights stored + 4, Q6_K: + 32, 2^shift):
   the offset times Σ scale·bsum is subtracted in integers. */
K_TARGET static inline void K_NAME(k_tokens_offset)(const __m256i *w, const __m256i *sv, __m256i sc16, int shift, float dd,
                                                    const int8_t *q, const float *dk, const int16_t *bs, int n, int u,
                                                    __m256 *acc, int tokens) {
    const int nb = n / 256;
    for (int t = 0; t < tokens; t++) {
        __m256i sumi = K_NAME(k_dot8)(w, sv, q + (size_t)t * n + 256 * u);
        __m256i offset = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(bs + (size_t)t * (n / 16) + 16 * u)), sc16);
        sumi = _mm256_sub_epi32(sumi, _mm256_sll_epi32(offset, _mm_cvtsi32_si128(shift)));
        K_ACCUMULATE(acc[t], sumi, dd * dk[(size_t)t * nb + u]);
    }
}

/* Q2_K: | scales[16]: min<<4 | scale | qs[64] | f16 d | f16 dmin |. Sub-block s (32 weights) is
   (qs[32*(s/4) + i] >> 2*(s%4)) & 3; groups of 16 have their own scale and min. */
K_TARGET static inline void K_NAME(q2k_body)(const uint8_t *row, int n, const int8_t *q, const float *dk, const int16_t *bs, const float *sk,
                                             float *out, int tokens) {
    const int nb = n / 256;
    const __m256i three = _mm256_set1_epi8(3);
    const __m128i m4 = _mm_set1_epi8(0x0F);
    __m256 acc[MOE_TILE_K];
    for (int t = 0; t < tokens; t++) acc[t] = _mm256_setzero_ps();
    __m256 accm[MOE_TILE_K];
    for (int t = 0; t < tokens; t++) accm[t] = _mm256_setzero_ps();
    for (int u = 0; u < nb; u++) {
        const uint8_t *b = row + 84 * u;
        const float dd = moe_half_to_float(b + 80), dmin = moe_half_to_float(b + 82);
        const __m128i raw = _mm_loadu_si128((const __m128i *)b);
        const __m128i sc8 = _mm_and_si128(raw, m4);
        const __m256i mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), m4));
        __m256i w[8], sv[8];
        for (int s = 0; s < 8; s++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(b + 16 + 32 * (s / 4)));
            w[s] = _mm256_and_si256(_mm256_srli_epi16(v, 2 * (s % 4)), three);
            sv[s] = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc8, _mm_loadu_si128((const __m128i *)pair_shuffle[s])));
        }
        K_NAME(k_tokens_min)(w, sv, mins, dd, dmin, q, dk, bs, n, u, acc, accm, tokens);
    }
    for (int t = 0; t < tokens; t++) out[t] = moe_hsum256(acc[t]) - moe_hsum256(accm[t]);
}

/* Q3_K: | hmask[32] | qs[64] | scales[12] | f16 d |. Sub-block s: v = low 2 bits
   (qs[32*(s/4) + i] >> 2*(s%4)) + 4 * bit s of hmask[i], weight = v - 4; 6-bit scales - 32 per 16. */
K_TARGET static inline void K_NAME(q3k_body)(const uint8_t *row, int n, const int8_t *q, const float *dk, const int16_t *bs, const float *sk,
                                             float *out, int tokens) {
    const int nb = n / 256;
    const __m256i three = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
    __m256 acc[MOE_TILE_K];
    for (int t = 0; t < tokens; t++) acc[t] = _mm256_setzero_ps();
    for (int u = 0; u < nb; u++) {
        const uint8_t *b = row + 110 * u;
        const float dd = moe_half_to_float(b + 108);
        const __m128i sc8 = q3k_scales_signed(b + 96);
        const __m256i sc16 = _mm256_cvtepi8_epi16(sc8);
        const __m256i hm = _mm256_loadu_si256((const __m256i *)b);
        __m256i w[8], sv[8];
        for (int s = 0; s < 8; s++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(b + 32 + 32 * (s / 4)));
            __m256i low = _mm256_and_si256(_mm256_srli_epi16(v, 2 * (s % 4)), three);
            __m256i high = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hm, s), one), 2);
            w[s] = _mm256_or_si256(low, high);
            sv[s] = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc8, _mm_loadu_si128((const __m128i *)pair_shuffle[s])));
        }
        K_NAME(k_tokens_offset)(w, sv, sc16, 2, dd, q, dk, bs, n, u, acc, tokens);
    }
    for (int t = 0; t < tokens; t++) out[t] = moe_hsum256(acc[t]);
}

/* Q4_K / Q5_K: | f16 d | f16 dmin | scales[12] | (Q5_K: qh[32]) | qs[128] |; sub-block 2j is the
   low nibbles of qs[32j..], 2j+1 the high ones; Q5_K adds 16 where bit s of qh[i] is set. */
K_TARGET static inline void K_NAME(q45k_body)(const uint8_t *row, int n, const int8_t *q, const float *dk, const int16_t *bs, const float *sk,
                                              float *out, int tokens, int five) {
    const int nb = n / 256;
    const size_t bytes = five ? 176 : 144;
    const __m256i low = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
    __m256 acc[MOE_TILE_K];
    for (int t = 0; t < tokens; t++) acc[t] = _mm256_setzero_ps();
    __m256 accm[MOE_TILE_K];
    for (int t = 0; t < tokens; t++) accm[t] = _mm256_setzero_ps();
    for (int u = 0; u < nb; u++) {
        const uint8_t *b = row + bytes * u;
        const float dd = moe_half_to_float(b), dmin = moe_half_to_float(b + 2);
        uint8_t sm[16];
        k4_scales_mins(b + 4, sm);
        const __m256i mins = k4_mins_pairs(sm + 8);
        const uint8_t *qs = b + (five ? 48 : 16);
        const __m256i qh = five ? _mm256_loadu_si256((const __m256i *)(b + 16)) : _mm256_setzero_si256();
        __m256i w[8], sv[8];
        for (int j = 0; j < 4; j++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(qs + 32 * j));
            w[2 * j] = _mm256_and_si256(v, low);
            w[2 * j + 1] = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
        }
        for (int s = 0; s < 8; s++) {
            if (five) w[s] = _mm256_or_si256(w[s], _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, s), one), 4));
            sv[s] = _mm256_set1_epi16(sm[s]);
        }
        K_NAME(k_tokens_min)(w, sv, mins, dd, dmin, q, dk, bs, n, u, acc, accm, tokens);
    }
    for (int t = 0; t < tokens; t++) out[t] = moe_hsum256(acc[t]) - moe_hsum256(accm[t]);
}

/* Q6_K: | ql[128] | qh[64] | scales[16] int8 | f16 d |; weight = 6-bit value - 32, scale per 16. */
K_TARGET static inline void K_NAME(q6k_body)(const uint8_t *row, int n, const int8_t *q, const float *dk, const int16_t *bs, const float *sk,
                                             float *out, int tokens) {
    const int nb = n / 256;
    __m256 acc[MOE_TILE_K];
    for (int t = 0; t < tokens; t++) acc[t] = _mm256_setzero_ps();
    for (int u = 0; u < nb; u++) {
        const uint8_t *b = row + 210 * u;
        const float dd = moe_half_to_float(b + 208);
        const __m128i sc8 = _mm_loadu_si128((const __m128i *)(b + 192));
        const __m256i sc16 = _mm256_cvtepi8_epi16(sc8);
        __m256i w[8], sv[8];
        moe_q6k_unpack_half(b, b + 128, w);
        moe_q6k_unpack_half(b + 64, b + 160, w + 4);
        for (int s = 0; s < 8; s++) sv[s] = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc8, _mm_loadu_si128((const __m128i *)pair_shuffle[s])));
        K_NAME(k_tokens_offset)(w, sv, sc16, 5, dd, q, dk, bs, n, u, acc, tokens);
    }
    for (int t = 0; t < tokens; t++) out[t] = moe_hsum256(acc[t]);
}

/* IQ4_XS: | f16 d | u16 scales_h | scales_l[4] | qs[128] |; sub-block s is the 16 bytes
   qs[16s..]: low nibbles elements 0-15, high nibbles 16-31, through the IQ4_NL levels; scale per
   32 = 6 bits - 32. Signed levels: |w| · sign(a, w) keeps vpmaddubsw's unsigned operand exact. */
K_TARGET static inline void K_NAME(iq4xs_body)(const uint8_t *row, int n, const int8_t *q, const float *dk, const int16_t *bs, const float *sk,
                                               float *out, int tokens) {
    (void)bs;
    const int nb = n / 256;
    const __m256i low = _mm256_set1_epi8(0x0F);
    const __m256i lut = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)moe_iq4nl_levels));
    __m256 acc[MOE_TILE_K];
    for (int t = 0; t < tokens; t++) acc[t] = _mm256_setzero_ps();
    for (int u = 0; u < nb; u++) {
        const uint8_t *b = row + 136 * u;
        const float dd = moe_half_to_float(b);
        __m256i w[8], aw[8], sv[8];
        for (int k = 0; k < 4; k++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(b + 8 + 32 * k));
            __m256i lo = _mm256_and_si256(v, low), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
            w[2 * k] = _mm256_shuffle_epi8(lut, _mm256_permute2x128_si256(lo, hi, 0x20));
            w[2 * k + 1] = _mm256_shuffle_epi8(lut, _mm256_permute2x128_si256(lo, hi, 0x31));
        }
        const __m256i sc = _mm256_broadcastsi128_si256(iq4xs_scales_v(b));
        for (int s = 0; s < 8; s++) {
            sv[s] = _mm256_shuffle_epi8(sc, _mm256_set1_epi16((short)((2 * s + 1) << 8 | 2 * s)));  /* int16 lane s everywhere */
            aw[s] = _mm256_abs_epi8(w[s]);
        }
        for (int t = 0; t < tokens; t++) {
            const int8_t *a = q + (size_t)t * n + 256 * u;
            __m256i sumi = _mm256_setzero_si256();
            for (int s = 0; s < 8; s++) {
                __m256i as = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)(a + 32 * s)), w[s]);
                sumi = K_DPWSSD(sumi, _mm256_maddubs_epi16(aw[s], as), sv[s]);
            }
            K_ACCUMULATE(acc[t], sumi, dd * dk[(size_t)t * nb + u]);
        }
    }
    for (int t = 0; t < tokens; t++) out[t] = moe_hsum256(acc[t]);
}

/* Exported entry points: constant token counts 1 and 4 let the compiler unroll the token loop. */
#define K_ENTRY(type, body, ...)                                                                                \
    K_TARGET void K_NAME(moe_dotk_##type)(const uint8_t *row, int n, const int8_t *q, const float *dk,         \
                                          const int16_t *bs, const float *sk, float *out, int tokens) {          \
        if (tokens == 1) body(row, n, q, dk, bs, sk, out, 1 __VA_ARGS__);                                           \
        else if (tokens == MOE_TILE_K) body(row, n, q, dk, bs, sk, out, MOE_TILE_K __VA_ARGS__);                                      \
        else if (tokens == MOE_TILE_K / 2) body(row, n, q, dk, bs, sk, out, MOE_TILE_K / 2 __VA_ARGS__);                            \
        else body(row, n, q, dk, bs, sk, out, tokens __VA_ARGS__);                                                  \
    }
K_ENTRY(q2_K, K_NAME(q2k_body))
K_ENTRY(q3_K, K_NAME(q3k_body))
K_ENTRY(q6_K, K_NAME(q6k_body))
K_ENTRY(iq4_xs, K_NAME(iq4xs_body))
K_ENTRY(q4_K, K_NAME(q45k_body), , 0)
K_ENTRY(q5_K, K_NAME(q45k_body), , 1)
#undef K_ENTRY
#undef K_ACCUMULATE
#undef K_NAME
#undef K_NAME1
#undef K_NAME2
