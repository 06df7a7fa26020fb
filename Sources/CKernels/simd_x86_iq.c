// Hand-written x86 kernels of the grid ("i-quant") types IQ2_XXS, IQ2_XS, IQ3_XXS and IQ3_S
// against q8_K activations (kernels_internal.h), on AVX2 (256-bit) and AVX-512 VNNI (512-bit).
//
// Each 32 weights are 4 (IQ2) or 8 (IQ3) grid entries, looked up in the tables of iq_grids.h
// (format data, generated from gguf-py by tools/make_iq_grids.py), 32 sign bits and an odd
// integer scale 2s+1. The grid bytes are unsigned magnitudes (at most 62), so per token the
// signs go onto the activations (`vpsignb` on AVX2, a masked negate on AVX-512; activations are
// never -128), `vpmaddubsw` multiplies, and the scale meets the int16 pairs in `vpmaddwd` /
// `vpdpwssd`; one float multiply-add per 256 weights and token remains, with the format's
// power-of-two factor (1/8 IQ2, 1/4 IQ3_XXS, 1 IQ3_S) folded into it. A super-block is unpacked
// once for all tokens of a tile (1..MOE_TILE_K), so a token's result does not depend on the batch.
// kernels.c keeps the scalar reference (iq_unpack.h) they are tested against.
#include "kernels_internal.h"

#if defined(__x86_64__) && defined(__clang__)
#include "iq_grids.h"

/* One super-block unpacked: per 32 weights the magnitudes, the 32 sign bits (bit j: element j
   is negative) and the integer scales of its two halves of 16. Returns the f16 scale d. */
typedef struct {
    __m256i w[8];
    uint32_t signs[8];
    int16_t lo[8], hi[8];
} iq_unit;

static inline uint32_t ksigns4(uint32_t aux) {
    return (uint32_t)moe_iq_ksigns[aux & 127] | ((uint32_t)moe_iq_ksigns[(aux >> 7) & 127] << 8) |
           ((uint32_t)moe_iq_ksigns[(aux >> 14) & 127] << 16) | ((uint32_t)moe_iq_ksigns[(aux >> 21) & 127] << 24);
}

/* A 7-bit sign index as the 8 bytes +1 / -1 it stands for: byte j is -1 where bit j of
   moe_iq_ksigns[i] = i | parity(i) << 7 is set (the same table, spread out, built here). */
#define IQ_KS(i) ((i) | ((__builtin_popcount(i) & 1) << 7))
#define IQ_SB(i, j) ((uint64_t)((IQ_KS(i) >> (j)) & 1 ? 0xFF : 0x01) << (8 * (j)))
#define IQ_S64(i) (IQ_SB(i, 0) | IQ_SB(i, 1) | IQ_SB(i, 2) | IQ_SB(i, 3) | IQ_SB(i, 4) | IQ_SB(i, 5) | IQ_SB(i, 6) | IQ_SB(i, 7))
#define IQ_S4(i) IQ_S64(i), IQ_S64(i + 1), IQ_S64(i + 2), IQ_S64(i + 3)
#define IQ_S16(i) IQ_S4(i), IQ_S4(i + 4), IQ_S4(i + 8), IQ_S4(i + 12)
static const uint64_t iq_sign64[128] = {IQ_S16(0),  IQ_S16(16), IQ_S16(32), IQ_S16(48),
                                        IQ_S16(64), IQ_S16(80), IQ_S16(96), IQ_S16(112)};
#undef IQ_S16
#undef IQ_S4
#undef IQ_S64
#undef IQ_SB
#undef IQ_KS

/* Four 7-bit sign indices (aux bits 0-27) as 32 bytes of +1 / -1. */
MOE_AVX2_TARGET static inline __m256i iq_ksign_bytes(uint32_t aux) {
    return _mm256_set_epi64x((long long)iq_sign64[(aux >> 21) & 127], (long long)iq_sign64[(aux >> 14) & 127],
                             (long long)iq_sign64[(aux >> 7) & 127], (long long)iq_sign64[aux & 127]);
}

/* 32 sign bits to 32 bytes of +1 / -1 (byte j: bit j). */
MOE_AVX2_TARGET static inline __m256i iq_sign_bytes(uint32_t bits) {
    const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits), spread);
    return _mm256_or_si256(_mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit), _mm256_set1_epi8(1));
}

/* Sub-block ib (32 weights) of a super-block b, per type, in two forms:
   NAME_sub  (the tiles' unpack, and through it the 512-bit bodies): the magnitudes; *signs gets
             the 32 sign bits, *lo and *hi the integer scales of its two halves of 16;
   NAME_subd (decode): the magnitudes; *sg the signs as 32 bytes of +1 / -1, *sv the scales as
             int16 lanes (low 128 bits: the first half of 16). */

/* IQ2_XXS (66 bytes): | f16 d | 8 x (u32 four grid indices, u32 four 7-bit sign indices | scale << 28) |. */
MOE_AVX2_TARGET static inline __m256i iq2xxs_w(const uint8_t *b, int ib) {
    uint32_t idx;
    memcpy(&idx, b + 2 + 8 * ib, 4);
    return _mm256_set_epi64x((long long)moe_iq2xxs_grid[idx >> 24], (long long)moe_iq2xxs_grid[(idx >> 16) & 255],
                             (long long)moe_iq2xxs_grid[(idx >> 8) & 255], (long long)moe_iq2xxs_grid[idx & 255]);
}
MOE_AVX2_TARGET static inline __m256i iq2xxs_sub(const uint8_t *b, int ib, uint32_t *signs, int16_t *lo, int16_t *hi) {
    uint32_t aux;
    memcpy(&aux, b + 6 + 8 * ib, 4);
    *signs = ksigns4(aux);
    *lo = *hi = (int16_t)(2 * (aux >> 28) + 1);
    return iq2xxs_w(b, ib);
}
MOE_AVX2_TARGET static inline __m256i iq2xxs_subd(const uint8_t *b, int ib, __m256i *sg, __m256i *sv) {
    uint32_t aux;
    memcpy(&aux, b + 6 + 8 * ib, 4);
    *sg = iq_ksign_bytes(aux);
    *sv = _mm256_set1_epi16((int16_t)(2 * (aux >> 28) + 1));
    return iq2xxs_w(b, ib);
}

/* IQ2_XS (74 bytes): | f16 d | 32 x u16 (9-bit grid index | 7-bit sign index << 9) | scales[8]: 4 bits per 16 |. */
MOE_AVX2_TARGET static inline __m256i iq2xs_w(const uint16_t v[4]) {
    return _mm256_set_epi64x((long long)moe_iq2xs_grid[v[3] & 511], (long long)moe_iq2xs_grid[v[2] & 511],
                             (long long)moe_iq2xs_grid[v[1] & 511], (long long)moe_iq2xs_grid[v[0] & 511]);
}
MOE_AVX2_TARGET static inline __m256i iq2xs_sub(const uint8_t *b, int ib, uint32_t *signs, int16_t *lo, int16_t *hi) {
    uint16_t v[4];
    memcpy(v, b + 2 + 8 * ib, 8);
    *signs = (uint32_t)moe_iq_ksigns[v[0] >> 9] | ((uint32_t)moe_iq_ksigns[v[1] >> 9] << 8) |
             ((uint32_t)moe_iq_ksigns[v[2] >> 9] << 16) | ((uint32_t)moe_iq_ksigns[v[3] >> 9] << 24);
    *lo = (int16_t)(2 * (b[66 + ib] & 0x0F) + 1);
    *hi = (int16_t)(2 * (b[66 + ib] >> 4) + 1);
    return iq2xs_w(v);
}
MOE_AVX2_TARGET static inline __m256i iq2xs_subd(const uint8_t *b, int ib, __m256i *sg, __m256i *sv) {
    uint16_t v[4];
    memcpy(v, b + 2 + 8 * ib, 8);
    *sg = _mm256_set_epi64x((long long)iq_sign64[v[3] >> 9], (long long)iq_sign64[v[2] >> 9], (long long)iq_sign64[v[1] >> 9],
                            (long long)iq_sign64[v[0] >> 9]);
    *sv = _mm256_set_m128i(_mm_set1_epi16((int16_t)(2 * (b[66 + ib] >> 4) + 1)), _mm_set1_epi16((int16_t)(2 * (b[66 + ib] & 0x0F) + 1)));
    return iq2xs_w(v);
}

/* IQ3_XXS (98 bytes): | f16 d | qs[64]: a grid index per 4 weights | 8 x u32 (four 7-bit sign indices | scale << 28) |. */
MOE_AVX2_TARGET static inline __m256i iq3xxs_w(const uint8_t *b, int ib) {
    const uint8_t *qs = b + 2 + 8 * ib;
    return _mm256_set_epi32((int)moe_iq3xxs_grid[qs[7]], (int)moe_iq3xxs_grid[qs[6]], (int)moe_iq3xxs_grid[qs[5]],
                            (int)moe_iq3xxs_grid[qs[4]], (int)moe_iq3xxs_grid[qs[3]], (int)moe_iq3xxs_grid[qs[2]],
                            (int)moe_iq3xxs_grid[qs[1]], (int)moe_iq3xxs_grid[qs[0]]);
}
MOE_AVX2_TARGET static inline __m256i iq3xxs_sub(const uint8_t *b, int ib, uint32_t *signs, int16_t *lo, int16_t *hi) {
    uint32_t aux;
    memcpy(&aux, b + 66 + 4 * ib, 4);
    *signs = ksigns4(aux);
    *lo = *hi = (int16_t)(2 * (aux >> 28) + 1);
    return iq3xxs_w(b, ib);
}
MOE_AVX2_TARGET static inline __m256i iq3xxs_subd(const uint8_t *b, int ib, __m256i *sg, __m256i *sv) {
    uint32_t aux;
    memcpy(&aux, b + 66 + 4 * ib, 4);
    *sg = iq_ksign_bytes(aux);
    *sv = _mm256_set1_epi16((int16_t)(2 * (aux >> 28) + 1));
    return iq3xxs_w(b, ib);
}

/* IQ3_S (110 bytes): | f16 d | qs[64]: low 8 bits of a grid index per 4 weights | qh[8]: 9th bits |
   signs[32]: one bit per weight | scales[4]: 4 bits per 32 |. */
MOE_AVX2_TARGET static inline __m256i iq3s_w(const uint8_t *b, int ib) {
    const uint8_t *qs = b + 2 + 8 * ib;
    const int h = b[66 + ib];
#define IQ3S(k) (int)moe_iq3s_grid[qs[k] | (((h >> (k)) & 1) << 8)]
    return _mm256_set_epi32(IQ3S(7), IQ3S(6), IQ3S(5), IQ3S(4), IQ3S(3), IQ3S(2), IQ3S(1), IQ3S(0));
#undef IQ3S
}
MOE_AVX2_TARGET static inline __m256i iq3s_sub(const uint8_t *b, int ib, uint32_t *signs, int16_t *lo, int16_t *hi) {
    memcpy(signs, b + 74 + 4 * ib, 4);
    *lo = *hi = (int16_t)(2 * ((b[106 + ib / 2] >> (4 * (ib % 2))) & 0x0F) + 1);
    return iq3s_w(b, ib);
}
MOE_AVX2_TARGET static inline __m256i iq3s_subd(const uint8_t *b, int ib, __m256i *sg, __m256i *sv) {
    uint32_t bits;
    memcpy(&bits, b + 74 + 4 * ib, 4);
    *sg = iq_sign_bytes(bits);
    *sv = _mm256_set1_epi16((int16_t)(2 * ((b[106 + ib / 2] >> (4 * (ib % 2))) & 0x0F) + 1));
    return iq3s_w(b, ib);
}

/* A whole super-block unpacked (the tiles' path: once for all tokens of a tile). Returns d. */
#define IQ_UNPACK(unpack, SUB)                                                                          \
    MOE_AVX2_TARGET static inline float unpack(const uint8_t *b, iq_unit *u) {                          \
        for (int ib = 0; ib < 8; ib++) u->w[ib] = SUB(b, ib, &u->signs[ib], &u->lo[ib], &u->hi[ib]);   \
        return moe_half_to_float(b);                                                                    \
    }
IQ_UNPACK(iq2xxs_unpack, iq2xxs_sub)
IQ_UNPACK(iq2xs_unpack, iq2xs_sub)
IQ_UNPACK(iq3xxs_unpack, iq3xxs_sub)
IQ_UNPACK(iq3s_unpack, iq3s_sub)

/* The exported entry of a body: constant token counts 1 and MOE_TILE_K let the compiler unroll. */
#define IQ_ENTRY(name, isa, TARGET)                                                                                 \
    TARGET void moe_dotk_##name##_##isa(const uint8_t *row, int n, const int8_t *q, const float *dk, const int16_t *bs, \
                                        const float *sk, float *out, int tokens) {                                  \
        (void)bs;                                                                                                   \
        (void)sk;                                                                                                   \
        if (tokens == 1) name##_body_##isa(row, n, q, dk, out, 1);                                                  \
        else if (tokens == MOE_TILE_K) name##_body_##isa(row, n, q, dk, out, MOE_TILE_K);                           \
        else name##_body_##isa(row, n, q, dk, out, tokens);                                                         \
    }

/* 256-bit bodies (AVX2: vpmaddwd + add); the AVX-512 level takes the 512-bit bodies below. */
#define IQ_AVX2(name, BYTES, UNPACK, SUBD, FACTOR)                                                                      \
    MOE_AVX2_TARGET static inline void name##_body_avx2(const uint8_t *row, int n, const int8_t *q, const float *dk, \
                                                        float *out, int tokens) {                                \
        const int nb = n / 256;                                                                                   \
        __m256 acc[MOE_TILE_K];                                                                                   \
        for (int t = 0; t < tokens; t++) acc[t] = _mm256_setzero_ps();                                            \
        for (int u = 0; u < nb; u++) {                                                                            \
            iq_unit unit;                                                                                         \
            const float dd = UNPACK(row + (size_t)BYTES * u, &unit) * FACTOR;                                     \
            __m256i sg[8], sv[8];                                                                                 \
            for (int ib = 0; ib < 8; ib++) {                                                                      \
                sg[ib] = iq_sign_bytes(unit.signs[ib]);                                                           \
                sv[ib] = _mm256_set_m128i(_mm_set1_epi16(unit.hi[ib]), _mm_set1_epi16(unit.lo[ib]));             \
            }                                                                                                     \
            for (int t = 0; t < tokens; t++) {                                                                    \
                const int8_t *a = q + (size_t)t * n + 256 * u;                                                    \
                __m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();                                 \
                for (int ib = 0; ib < 8; ib += 2) {                                                               \
                    __m256i a0 = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)(a + 32 * ib)), sg[ib]);    \
                    __m256i a1 = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)(a + 32 * ib + 32)), sg[ib + 1]); \
                    s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(_mm256_maddubs_epi16(unit.w[ib], a0), sv[ib]));   \
                    s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(_mm256_maddubs_epi16(unit.w[ib + 1], a1), sv[ib + 1])); \
                }                                                                                                 \
                acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(s0, s1)),                            \
                                         _mm256_set1_ps(dd * dk[(size_t)t * nb + u]), acc[t]);                    \
            }                                                                                                     \
        }                                                                                                         \
        for (int t = 0; t < tokens; t++) out[t] = moe_hsum256(acc[t]);                                            \
    }                                                                                                             \
    /* Decode (one token): each sub-block is unpacked and used at once, in registers (no unit, no  \
       per-sub-block arrays to spill); the same integer sums in the same order as the body. */     \
    MOE_AVX2_TARGET static void name##_decode_avx2(const uint8_t *row, int n, const int8_t *q, const float *dk, float *out) { \
        const int nb = n / 256;                                                                   \
        __m256 acc = _mm256_setzero_ps();                                                         \
        for (int u = 0; u < nb; u++) {                                                            \
            const uint8_t *b = row + (size_t)BYTES * u;                                           \
            const int8_t *a = q + 256 * u;                                                        \
            __m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();                     \
            for (int ib = 0; ib < 8; ib += 2) {                                                   \
                __m256i g0, g1, v0, v1;                                                           \
                const __m256i w0 = SUBD(b, ib, &g0, &v0);                                         \
                const __m256i w1 = SUBD(b, ib + 1, &g1, &v1);                                     \
                __m256i a0 = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)(a + 32 * ib)), g0); \
                __m256i a1 = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)(a + 32 * ib + 32)), g1); \
                s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(_mm256_maddubs_epi16(w0, a0), v0));   \
                s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(_mm256_maddubs_epi16(w1, a1), v1));   \
            }                                                                                     \
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(s0, s1)),                   \
                                  _mm256_set1_ps(moe_half_to_float(b) * FACTOR * dk[u]), acc);    \
        }                                                                                         \
        out[0] = moe_hsum256(acc);                                                                \
    }                                                                                             \
    MOE_AVX2_TARGET void moe_dotk_##name##_avx2(const uint8_t *row, int n, const int8_t *q, const float *dk, const int16_t *bs, \
                                                const float *sk, float *out, int tokens) {        \
        (void)bs;                                                                                 \
        (void)sk;                                                                                 \
        if (tokens == 1) name##_decode_avx2(row, n, q, dk, out);                                  \
        else if (tokens == MOE_TILE_K) name##_body_avx2(row, n, q, dk, out, MOE_TILE_K);          \
        else name##_body_avx2(row, n, q, dk, out, tokens);                                        \
    }

/* 512-bit bodies: two 32-weight units per vector; the 64 sign bits are the mask of a negate. */
#define IQ_ZMM(name, BYTES, UNPACK, FACTOR)                                                                       \
    MOE_ZMM_TARGET static inline void name##_body_zmm(const uint8_t *row, int n, const int8_t *q, const float *dk, \
                                                      float *out, int tokens) {                                  \
        const int nb = n / 256;                                                                                   \
        __m512 acc[MOE_TILE_K];                                                                                   \
        for (int t = 0; t < tokens; t++) acc[t] = _mm512_setzero_ps();                                            \
        for (int u = 0; u < nb; u++) {                                                                            \
            iq_unit unit;                                                                                         \
            const float dd = UNPACK(row + (size_t)BYTES * u, &unit) * FACTOR;                                     \
            __m512i w[4], sv[4];                                                                                  \
            __mmask64 neg[4];                                                                                     \
            for (int k = 0; k < 4; k++) {                                                                         \
                w[k] = _mm512_inserti64x4(_mm512_castsi256_si512(unit.w[2 * k]), unit.w[2 * k + 1], 1);           \
                neg[k] = (__mmask64)unit.signs[2 * k] | ((__mmask64)unit.signs[2 * k + 1] << 32);                 \
                sv[k] = _mm512_inserti64x4(                                                                       \
                    _mm512_castsi256_si512(_mm256_set_m128i(_mm_set1_epi16(unit.hi[2 * k]), _mm_set1_epi16(unit.lo[2 * k]))), \
                    _mm256_set_m128i(_mm_set1_epi16(unit.hi[2 * k + 1]), _mm_set1_epi16(unit.lo[2 * k + 1])), 1); \
            }                                                                                                     \
            const __m512i zero = _mm512_setzero_si512();                                                          \
            for (int t = 0; t < tokens; t++) {                                                                    \
                const int8_t *a = q + (size_t)t * n + 256 * u;                                                    \
                __m512i s0 = zero, s1 = zero;                                                                     \
                for (int k = 0; k < 4; k += 2) {                                                                  \
                    __m512i a0 = _mm512_loadu_si512((const void *)(a + 64 * k));                                  \
                    __m512i a1 = _mm512_loadu_si512((const void *)(a + 64 * k + 64));                             \
                    a0 = _mm512_mask_sub_epi8(a0, neg[k], zero, a0);                                              \
                    a1 = _mm512_mask_sub_epi8(a1, neg[k + 1], zero, a1);                                          \
                    s0 = _mm512_dpwssd_epi32(s0, _mm512_maddubs_epi16(w[k], a0), sv[k]);                          \
                    s1 = _mm512_dpwssd_epi32(s1, _mm512_maddubs_epi16(w[k + 1], a1), sv[k + 1]);                  \
                }                                                                                                 \
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1)),                            \
                                         _mm512_set1_ps(dd * dk[(size_t)t * nb + u]), acc[t]);                    \
            }                                                                                                     \
        }                                                                                                         \
        for (int t = 0; t < tokens; t++) out[t] = _mm512_reduce_add_ps(acc[t]);                                  \
    }                                                                                                             \
    IQ_ENTRY(name, zmm, MOE_ZMM_TARGET)

/* x = d * (2s+1) * FACTOR * grid * sign: 1/8 for IQ2 (d·(0.5+s)/4), 1/4 for IQ3_XXS, 1 for IQ3_S. */
IQ_AVX2(iq2_xxs, 66, iq2xxs_unpack, iq2xxs_subd, 0.125f)
IQ_AVX2(iq2_xs, 74, iq2xs_unpack, iq2xs_subd, 0.125f)
IQ_AVX2(iq3_xxs, 98, iq3xxs_unpack, iq3xxs_subd, 0.25f)
IQ_AVX2(iq3_s, 110, iq3s_unpack, iq3s_subd, 1.0f)
IQ_ZMM(iq2_xxs, 66, iq2xxs_unpack, 0.125f)
IQ_ZMM(iq2_xs, 74, iq2xs_unpack, 0.125f)
IQ_ZMM(iq3_xxs, 98, iq3xxs_unpack, 0.25f)
IQ_ZMM(iq3_s, 110, iq3s_unpack, 1.0f)
#endif
