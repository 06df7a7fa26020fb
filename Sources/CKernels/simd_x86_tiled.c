// Prefill GEMM for Q3_K and IQ4_XS at the AVX-512 VNNI level (kernels_internal.h,
// moe_tiled_matmul_k): register tiles of 8 weight rows × 16 tokens.
//
// The row kernels (simd_x86_q8k.c) unpack a super-block and reuse it for up to 8 tokens, but
// every product still costs a vpmaddubsw, a vpdpwssd and a sign fix per 64 weights and token.
// Here the weights of a band of 8 rows are unpacked once per call into unsigned bytes, the
// activations of 16 tokens are interleaved so that one 64-byte vector holds 4 consecutive
// columns of each of the 16 tokens, and each vpdpbusd multiplies 4 weights of one row
// (broadcast) by those 4 columns of all 16 tokens: 64 products per instruction, no sign fix.
//
//   Q3_K: weight w in [-4, 3] times its sub-block scale s in [-32, 31] lies in [-124, 128], so
//   w·s + 124 fits an unsigned byte and the whole super-block is one run of vpdpbusd; the bias
//   comes back out as 124 · Σ a over the super-block (from the activations' bsums).
//   IQ4_XS: level + 128 in [1, 241]; each 32-wide sub-block's int32 sums take
//   128 · Σ a off and are multiplied by the sub-block's scale (vpmulld) before they add up.
//
// Both give the super-block's exact integer Σ w·s·a, the same integer the row kernels form;
// the float step per super-block and token is acc = fma(float(sum), d_w · d_a, acc), in the
// same order as the row kernels', so a token's result is bit-identical whichever path ran it
// (tested: KernelTests, batch against single tokens).
#include "kernels_internal.h"
#include "moe_kernels.h"

#if defined(__x86_64__) && defined(__clang__)
#include <stdlib.h>

#define ZT MOE_ZMM_TARGET
#define TILE_TOKENS 16
#define BAND_ROWS 8
/* The fewest tokens a padded last tile may hold. */
#define MIN_SHORT_TILE 5

/* One growing scratch buffer per thread (pool threads live as long as the process). */
static _Thread_local uint8_t *scratch_base;
static _Thread_local size_t scratch_size;

static uint8_t *scratch(size_t bytes) {
    if (bytes > scratch_size) {
        free(scratch_base);
        scratch_base = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
        scratch_size = scratch_base ? bytes : 0;
    }
    return scratch_base;
}

/* Real tokens in tile `tile` of a call that does `done` tokens (the last may be short). */
static inline int tile_count(int done, int tile) { return done - tile * TILE_TOKENS < TILE_TOKENS ? done - tile * TILE_TOKENS : TILE_TOKENS; }

/* Q3_K super-block (hmask[32] | qs[64] | scales[12] | d) to 256 bytes w·s + 124, column order.
   64 weights (groups 4k..4k+3 of 16) at a time, decoded as the row kernel decodes them
   (q3k_values_v: the stored value v = w + 4). Each group's products v·s + 124 - 4s come from an 8-entry table per 128-bit
   lane (vpshufb), built once per super-block from the scales. */
ZT static void unpack_q3k(const uint8_t *b, uint8_t *out) {
    /* int16 lane l of table m: group 4m + l/8, entry v = l % 8 */
    static const int16_t entry[32] = {-4, -3, -2, -1, 0, 1, 2, 3, -4, -3, -2, -1, 0, 1, 2, 3,
                                      -4, -3, -2, -1, 0, 1, 2, 3, -4, -3, -2, -1, 0, 1, 2, 3};
    static const int16_t group[32] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3};
    const __m512i vm4 = _mm512_loadu_si512((const void *)entry), g4 = _mm512_loadu_si512((const void *)group);
    const __m512i spread = _mm512_setr_epi64(0, 0, 1, 1, 2, 2, 3, 3);
    const __m512i s16 = _mm512_castsi256_si512(_mm256_cvtepi8_epi16(q3k_scales_signed_v(b + 96)));
    const __m512i hm = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)b));
    for (int k = 0; k < 4; k++) {
        const __m512i sk = _mm512_permutexvar_epi16(_mm512_add_epi16(g4, _mm512_set1_epi16((short)(4 * k))), s16);
        const __m512i t16 = _mm512_add_epi16(_mm512_mullo_epi16(vm4, sk), _mm512_set1_epi16(124));
        const __m512i table = _mm512_permutexvar_epi64(spread, _mm512_castsi256_si512(_mm512_cvtepi16_epi8(t16)));
        _mm512_storeu_si512((void *)(out + 64 * k), _mm512_shuffle_epi8(table, q3k_values_v(b, hm, k)));
    }
}

/* IQ4_XS super-block (d | scales_h | scales_l[4] | qs[128]) to 256 bytes level + 128 and the
   eight sub-block scales: the row kernel's level indices (iq4xs_indices_v) through a table of
   the levels + 128. */
ZT static void unpack_iq4xs(const uint8_t *b, uint8_t *out, int32_t *scales) {
    const __m512i lut = _mm512_broadcast_i32x4(_mm_xor_si128(_mm_loadu_si128((const __m128i *)moe_iq4nl_levels), _mm_set1_epi8((char)0x80)));
    _mm256_storeu_si256((__m256i *)scales, _mm256_cvtepi16_epi32(iq4xs_scales_v(b)));
    for (int h = 0; h < 2; h++) {
        __m512i idx[2];
        iq4xs_indices_v(b, h, idx);
        _mm512_storeu_si512((void *)(out + 128 * h), _mm512_shuffle_epi8(lut, idx[0]));
        _mm512_storeu_si512((void *)(out + 128 * h + 64), _mm512_shuffle_epi8(lut, idx[1]));
    }
}

/* Interleaves 16 tokens' int8 activations: x[64 g + 4 t + i] = q[t n + 4 g + i] (zero for t >= count). */
static void interleave(const int8_t *q, int n, int count, int8_t *x) {
    int32_t *dst = (int32_t *)x;
    for (int t = 0; t < TILE_TOKENS; t++) {
        const int8_t *src = q + (size_t)t * n;
        for (int g = 0; g < n / 4; g++) {
            int32_t v = 0;  /* tokens past `count` pad a short tile with zeros */
            if (t < count) memcpy(&v, src + 4 * g, 4);
            dst[TILE_TOKENS * g + t] = v;
        }
    }
}

/* The register kernels, once per vector width: 16 tokens in a zmm (suffix 16), or the first 8
   tokens of a tile in a ymm (suffix 8, for a short last tile; the layout is the same, the upper
   lanes unused). PFX/BITS spell the intrinsics of the width.

   q3k_band: 8 rows × W tokens of one Q3_K super-block; the biased weights are one vpdpbusd run.
   iq4xs_band: 8 rows × W tokens of one IQ4_XS super-block: per 32-wide sub-block, vpdpbusd, the
   bias off, times the row's scale. Its corrections and float accumulators stay in memory (one
   access per sub-block or super-block) so that the 16 integer accumulators do not spill. */
#define DEFINE_BANDS(W, VI, VF, PFX, BITS)                                                                                          \
    /* acc[r] = Σ over column groups [g0, g1) of row r's 4 weights (broadcast) · those columns of the tokens */              \
    ZT static inline void groups##W(const uint8_t *ub, const int8_t *x, int g0, int g1, VI acc[BAND_ROWS]) {                       \
        for (int r = 0; r < BAND_ROWS; r++) acc[r] = PFX##_setzero_si##BITS();                                                     \
        for (int g = g0; g < g1; g++) {                                                                                             \
            const VI a = PFX##_load_si##BITS((const void *)(x + 64 * g));                                                         \
            for (int r = 0; r < BAND_ROWS; r++) {                                                                                   \
                int32_t w;                                                                                                          \
                memcpy(&w, ub + 256 * r + 4 * g, 4);                                                                                \
                acc[r] = PFX##_dpbusd_epi32(acc[r], PFX##_set1_epi32(w), a);                                                        \
            }                                                                                                                       \
        }                                                                                                                           \
    }                                                                                                                               \
    ZT static inline void q3k_band##W(const uint8_t *ub, const int8_t *x, VI corr, VF ddk[BAND_ROWS], VF f[BAND_ROWS]) {           \
        VI acc[BAND_ROWS];                                                                                                          \
        groups##W(ub, x, 0, 64, acc);                                                                                               \
        for (int r = 0; r < BAND_ROWS; r++) f[r] = PFX##_fmadd_ps(PFX##_cvtepi32_ps(PFX##_sub_epi32(acc[r], corr)), ddk[r], f[r]); \
    }                                                                                                                               \
    ZT static inline void iq4xs_band##W(const uint8_t *ub, const int32_t *sc, int nb_stride, const int8_t *x, const int32_t *corr, \
                                        const float *wd, int wd_stride, VF dv, float *f) {                                          \
        VI sum[BAND_ROWS];                                                                                                          \
        for (int r = 0; r < BAND_ROWS; r++) sum[r] = PFX##_setzero_si##BITS();                                                     \
        for (int j = 0; j < 8; j++) {                                                                                               \
            VI acc[BAND_ROWS];                                                                                                      \
            groups##W(ub, x, 8 * j, 8 * j + 8, acc);                                                                                \
            const VI cj = PFX##_load_si##BITS((const void *)(corr + j * TILE_TOKENS));                                            \
            for (int r = 0; r < BAND_ROWS; r++)                                                                                     \
                sum[r] = PFX##_add_epi32(sum[r], PFX##_mullo_epi32(PFX##_sub_epi32(acc[r], cj), PFX##_set1_epi32(sc[(size_t)r * nb_stride + j]))); \
        }                                                                                                                           \
        for (int r = 0; r < BAND_ROWS; r++) {                                                                                       \
            const VF ddk = PFX##_mul_ps(PFX##_set1_ps(wd[(size_t)r * wd_stride]), dv);                                              \
            PFX##_store_ps(f + TILE_TOKENS * r, PFX##_fmadd_ps(PFX##_cvtepi32_ps(sum[r]), ddk, PFX##_load_ps(f + TILE_TOKENS * r))); \
        }                                                                                                                           \
    }
DEFINE_BANDS(16, __m512i, __m512, _mm512, 512)
DEFINE_BANDS(8, __m256i, __m256, _mm256, 256)

/* One tile (16 tokens, or a short last one of 8 in a ymm) of a band: out[r][t] for t < width. */
#define RUN_TILE(W, VF, PFX, BITS)                                                                                                        \
    do {                                                                                                                            \
        if (iq4) {                                                                                                                  \
            memset(out, 0, sizeof out);                                                                                             \
            for (int u = 0; u < nb; u++) {                                                                                          \
                const VF dv = PFX##_load_ps(da + ((size_t)tile * nb + u) * TILE_TOKENS);                                            \
                iq4xs_band##W(uw + (size_t)u * 256 * BAND_ROWS, sc + (size_t)u * 8, nb * 8, xt + (size_t)u * 256 * TILE_TOKENS,     \
                              corr + ((size_t)tile * nb + u) * subs * TILE_TOKENS, wd + u, nb, dv, &out[0][0]);                     \
            }                                                                                                                       \
        } else {                                                                                                                    \
            VF f[BAND_ROWS];                                                                                                        \
            for (int r = 0; r < BAND_ROWS; r++) f[r] = PFX##_setzero_ps();                                                          \
            for (int u = 0; u < nb; u++) {                                                                                          \
                const VF dv = PFX##_load_ps(da + ((size_t)tile * nb + u) * TILE_TOKENS);                                            \
                VF ddk[BAND_ROWS];                                                                                                  \
                for (int r = 0; r < BAND_ROWS; r++) ddk[r] = PFX##_mul_ps(PFX##_set1_ps(wd[(size_t)r * nb + u]), dv);               \
                q3k_band##W(uw + (size_t)u * 256 * BAND_ROWS, xt + (size_t)u * 256 * TILE_TOKENS,                                   \
                            PFX##_load_si##BITS((const void *)(corr + ((size_t)tile * nb + u) * TILE_TOKENS)), ddk, f);               \
            }                                                                                                                       \
            for (int r = 0; r < BAND_ROWS; r++) PFX##_store_ps(out[r], f[r]);                                                       \
        }                                                                                                                           \
    } while (0)

ZT int moe_tiled_matmul_k(int type, int n, const uint8_t *w, size_t row_bytes, int r0, int r1, int tokens, const int8_t *q,
                          const float *dk, const int16_t *bs, float *y, int ldy) {
    const int iq4 = type == MOE_IQ4_XS;
    if ((type != MOE_Q3_K && !iq4) || n % 256 != 0 || r1 <= r0) return 0;
    /* What is left after whole 16-token tiles becomes one more tile padded with zero tokens: a
       zmm tile from 9 tokens, a ymm tile of 8 lanes from 5 (measured, ab.c: 8 tokens 73 → 88
       Gw·tok/s for IQ4_XS against a padded zmm tile); up to 4 tokens go to the row kernels,
       which are as fast or faster there (4 tokens: Q3_K 45 against 37 in a ymm tile). */
    const int rest = tokens % TILE_TOKENS, extra = rest >= MIN_SHORT_TILE;
    const int tiles = tokens / TILE_TOKENS + extra, done = extra ? tokens : tokens - rest;
    const int last_width = extra && rest <= TILE_TOKENS / 2 ? TILE_TOKENS / 2 : TILE_TOKENS;
    if (tiles == 0) return 0;
    const int nb = n / 256, subs = iq4 ? 8 : 1;
    const size_t block_bytes = iq4 ? 136 : 110;
    /* Scratch: interleaved activations, per tile and super-block d_a and bias corrections, and
       the band's unpacked weights, scales and d_w. */
    const size_t xbytes = (size_t)tiles * n * TILE_TOKENS;
    const size_t dbytes = (size_t)tiles * nb * TILE_TOKENS * sizeof(float);
    const size_t cbytes = (size_t)tiles * nb * subs * TILE_TOKENS * sizeof(int32_t);
    const size_t ubytes = (size_t)BAND_ROWS * n, sbytes = (size_t)BAND_ROWS * nb * 8 * sizeof(int32_t), wdbytes = (size_t)BAND_ROWS * nb * sizeof(float);
    uint8_t *base = scratch(xbytes + dbytes + cbytes + ubytes + sbytes + wdbytes);
    if (!base) return 0;
    int8_t *x = (int8_t *)base;
    float *da = (float *)(base + xbytes);
    int32_t *corr = (int32_t *)(base + xbytes + dbytes);
    uint8_t *uw = base + xbytes + dbytes + cbytes;
    int32_t *sc = (int32_t *)(uw + ubytes);
    float *wd = (float *)((uint8_t *)sc + sbytes);

    for (int tile = 0; tile < tiles; tile++) {
        const int t0 = tile * TILE_TOKENS, count = tile_count(done, tile);
        interleave(q + (size_t)t0 * n, n, count, x + (size_t)tile * n * TILE_TOKENS);
        for (int u = 0; u < nb; u++) {
            float *dv = da + ((size_t)tile * nb + u) * TILE_TOKENS;
            int32_t *cv = corr + ((size_t)tile * nb + u) * subs * TILE_TOKENS;
            for (int t = 0; t < TILE_TOKENS; t++) {
                if (t >= count) {
                    dv[t] = 0;
                    for (int j = 0; j < subs; j++) cv[j * TILE_TOKENS + t] = 0;
                    continue;
                }
                const int16_t *b16 = bs + (size_t)(t0 + t) * (n / 16) + 16 * u;
                dv[t] = dk[(size_t)(t0 + t) * nb + u];
                if (iq4) {
                    for (int j = 0; j < 8; j++) cv[j * TILE_TOKENS + t] = 128 * ((int32_t)b16[2 * j] + (int32_t)b16[2 * j + 1]);
                } else {
                    int32_t s = 0;
                    for (int i = 0; i < 16; i++) s += b16[i];
                    cv[t] = 124 * s;
                }
            }
        }
    }

    for (int rb = r0; rb < r1; rb += BAND_ROWS) {
        const int rows = r1 - rb < BAND_ROWS ? r1 - rb : BAND_ROWS;
        /* The band's weights by super-block: uw[(8 u + r) · 256 + k] is weight 256 u + k of row r,
           so a group's 8 broadcasts read at fixed distances from one address. A short band's
           missing rows are zero weights with zero d, their results dropped. */
        if (rows < BAND_ROWS) {
            memset(uw, 0, ubytes);
            memset(wd, 0, wdbytes);
            if (iq4) memset(sc, 0, sbytes);
        }
        for (int r = 0; r < rows; r++) {
            const uint8_t *row = w + (size_t)(rb + r) * row_bytes;
            for (int u = 0; u < nb; u++) {
                const uint8_t *b = row + block_bytes * u;
                uint8_t *dst = uw + ((size_t)u * BAND_ROWS + r) * 256;
                if (iq4) {
                    unpack_iq4xs(b, dst, sc + ((size_t)r * nb + u) * 8);
                    wd[(size_t)r * nb + u] = moe_half_to_float(b);
                } else {
                    unpack_q3k(b, dst);
                    wd[(size_t)r * nb + u] = moe_half_to_float(b + 108);
                }
            }
        }
        for (int tile = 0; tile < tiles; tile++) {
            const int8_t *xt = x + (size_t)tile * n * TILE_TOKENS;
            _Alignas(64) float out[BAND_ROWS][TILE_TOKENS];
            if (tile == tiles - 1 && last_width < TILE_TOKENS)
                RUN_TILE(8, __m256, _mm256, 256);
            else
                RUN_TILE(16, __m512, _mm512, 512);
            const int count = tile_count(done, tile);
            for (int r = 0; r < rows; r++)
                for (int t = 0; t < count; t++) y[(size_t)(tile * TILE_TOKENS + t) * ldy + rb + r] = out[r][t];
        }
    }
    return done;
}
#endif
