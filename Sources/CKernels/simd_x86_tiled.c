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

static inline float half_to_float(const uint8_t *p) { return moe_half_to_float(p); }

/* Q3_K super-block (hmask[32] | qs[64] | scales[12] | d) to 256 bytes w·s + 124, column order. */
ZT static void unpack_q3k(const uint8_t *b, uint8_t *out) {
    const uint8_t *sc = b + 96;
    const __m128i three = _mm_set1_epi8(3), one = _mm_set1_epi8(1);
    for (int g = 0; g < 16; g++) {
        /* group g = 8 half + 2 shift + part: 16 weights (qs >> 2 shift) & 3, hmask bit 4 half + shift */
        const int half = g / 8, shift = (g / 2) % 4, part = g % 2;
        const int low4 = g < 8 ? (sc[g] & 0x0F) : (sc[g - 8] >> 4);
        const int s = (low4 | (((sc[8 + g % 4] >> (2 * (g / 4))) & 3) << 4)) - 32;
        const __m128i qs = _mm_loadu_si128((const __m128i *)(b + 32 + 32 * half + 16 * part));
        const __m128i hm = _mm_loadu_si128((const __m128i *)(b + 16 * part));
        const __m128i lo = _mm_and_si128(_mm_srl_epi16(qs, _mm_cvtsi32_si128(2 * shift)), three);
        const __m128i hi = _mm_and_si128(_mm_srl_epi16(hm, _mm_cvtsi32_si128(4 * half + shift)), one);
        /* stored value v = w + 4 in [0, 7]: out = v·s + 124 - 4s */
        const __m256i v16 = _mm256_cvtepu8_epi16(_mm_or_si128(lo, _mm_slli_epi16(hi, 2)));
        const __m256i o16 = _mm256_add_epi16(_mm256_mullo_epi16(v16, _mm256_set1_epi16((short)s)), _mm256_set1_epi16((short)(124 - 4 * s)));
        _mm_storeu_si128((__m128i *)(out + 16 * g), _mm256_cvtepi16_epi8(o16));
    }
}

/* IQ4_XS super-block (d | scales_h | scales_l[4] | qs[128]) to 256 bytes level + 128 and the
   eight sub-block scales. */
ZT static void unpack_iq4xs(const uint8_t *b, uint8_t *out, int32_t *scales) {
    const unsigned scales_h = (unsigned)b[2] | ((unsigned)b[3] << 8);
    /* the levels + 128 as a byte table for vpshufb */
    const __m128i lut = _mm_xor_si128(_mm_loadu_si128((const __m128i *)moe_iq4nl_levels), _mm_set1_epi8((char)0x80));
    const __m128i low = _mm_set1_epi8(0x0F);
    for (int sub = 0; sub < 8; sub++) {
        scales[sub] = (int32_t)((((b[4 + sub / 2] >> (4 * (sub % 2))) & 0x0F) | (((scales_h >> (2 * sub)) & 3) << 4))) - 32;
        const __m128i v = _mm_loadu_si128((const __m128i *)(b + 8 + 16 * sub));
        _mm_storeu_si128((__m128i *)(out + 32 * sub), _mm_shuffle_epi8(lut, _mm_and_si128(v, low)));
        _mm_storeu_si128((__m128i *)(out + 32 * sub + 16), _mm_shuffle_epi8(lut, _mm_and_si128(_mm_srli_epi16(v, 4), low)));
    }
}

/* Interleaves 16 tokens' int8 activations: x[64 g + 4 t + i] = q[t n + 4 g + i]. */
static void interleave(const int8_t *q, int n, int8_t *x) {
    int32_t *dst = (int32_t *)x;
    for (int t = 0; t < TILE_TOKENS; t++) {
        const int8_t *src = q + (size_t)t * n;
        for (int g = 0; g < n / 4; g++) {
            int32_t v;
            memcpy(&v, src + 4 * g, 4);
            dst[TILE_TOKENS * g + t] = v;
        }
    }
}

/* 8 rows × 16 tokens of one Q3_K super-block: the biased weights are one vpdpbusd run. */
ZT static inline void q3k_band(const uint8_t *uw, int n, const int8_t *x, __m512i corr, __m512 ddk[BAND_ROWS], __m512 f[BAND_ROWS]) {
    __m512i acc[BAND_ROWS];
    for (int r = 0; r < BAND_ROWS; r++) acc[r] = _mm512_setzero_si512();
    for (int g = 0; g < 64; g++) {
        const __m512i a = _mm512_load_si512((const void *)(x + 64 * g));
        for (int r = 0; r < BAND_ROWS; r++) {
            int32_t w;
            memcpy(&w, uw + (size_t)r * n + 4 * g, 4);
            acc[r] = _mm512_dpbusd_epi32(acc[r], _mm512_set1_epi32(w), a);
        }
    }
    for (int r = 0; r < BAND_ROWS; r++) f[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc[r], corr)), ddk[r], f[r]);
}

/* 8 rows × 16 tokens of one IQ4_XS super-block: per 32-wide sub-block, vpdpbusd, the bias off,
   times the row's scale. The corrections and the float accumulators stay in memory (one access
   per sub-block or super-block) so that the 16 integer accumulators do not spill. */
ZT static inline void iq4xs_band(const uint8_t *uw, int n, const int32_t *sc, int nb_stride, const int8_t *x, const int32_t *corr,
                                 const float *wd, int wd_stride, __m512 dv, float *f) {
    __m512i sum[BAND_ROWS];
    for (int r = 0; r < BAND_ROWS; r++) sum[r] = _mm512_setzero_si512();
    for (int j = 0; j < 8; j++) {
        __m512i acc[BAND_ROWS];
        for (int r = 0; r < BAND_ROWS; r++) acc[r] = _mm512_setzero_si512();
        for (int g = 8 * j; g < 8 * j + 8; g++) {
            const __m512i a = _mm512_load_si512((const void *)(x + 64 * g));
            for (int r = 0; r < BAND_ROWS; r++) {
                int32_t w;
                memcpy(&w, uw + (size_t)r * n + 4 * g, 4);
                acc[r] = _mm512_dpbusd_epi32(acc[r], _mm512_set1_epi32(w), a);
            }
        }
        const __m512i cj = _mm512_load_si512((const void *)(corr + j * TILE_TOKENS));
        for (int r = 0; r < BAND_ROWS; r++)
            sum[r] = _mm512_add_epi32(sum[r], _mm512_mullo_epi32(_mm512_sub_epi32(acc[r], cj), _mm512_set1_epi32(sc[(size_t)r * nb_stride + j])));
    }
    for (int r = 0; r < BAND_ROWS; r++) {
        const __m512 ddk = _mm512_mul_ps(_mm512_set1_ps(wd[(size_t)r * wd_stride]), dv);
        _mm512_store_ps(f + TILE_TOKENS * r, _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum[r]), ddk, _mm512_load_ps(f + TILE_TOKENS * r)));
    }
}

ZT int moe_tiled_matmul_k(int type, int n, const uint8_t *w, size_t row_bytes, int r0, int r1, int tokens, const int8_t *q,
                          const float *dk, const int16_t *bs, float *y, int ldy) {
    const int iq4 = type == MOE_IQ4_XS;
    if ((type != MOE_Q3_K && !iq4) || n % 256 != 0 || tokens < TILE_TOKENS || r1 <= r0) return 0;
    const int nb = n / 256, tiles = tokens / TILE_TOKENS, subs = iq4 ? 8 : 1;
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
        const int t0 = tile * TILE_TOKENS;
        interleave(q + (size_t)t0 * n, n, x + (size_t)tile * n * TILE_TOKENS);
        for (int u = 0; u < nb; u++) {
            float *dv = da + ((size_t)tile * nb + u) * TILE_TOKENS;
            int32_t *cv = corr + ((size_t)tile * nb + u) * subs * TILE_TOKENS;
            for (int t = 0; t < TILE_TOKENS; t++) {
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
        for (int r = 0; r < BAND_ROWS; r++) {
            uint8_t *dst = uw + (size_t)r * n;
            if (r >= rows) {  /* a short band: zero weights, zero scale, results dropped */
                memset(dst, 0, (size_t)n);
                for (int u = 0; u < nb; u++) wd[(size_t)r * nb + u] = 0;
                if (iq4) memset(sc + (size_t)r * nb * 8, 0, (size_t)nb * 8 * sizeof(int32_t));
                continue;
            }
            const uint8_t *row = w + (size_t)(rb + r) * row_bytes;
            for (int u = 0; u < nb; u++) {
                const uint8_t *b = row + block_bytes * u;
                if (iq4) {
                    unpack_iq4xs(b, dst + 256 * u, sc + ((size_t)r * nb + u) * 8);
                    wd[(size_t)r * nb + u] = half_to_float(b);
                } else {
                    unpack_q3k(b, dst + 256 * u);
                    wd[(size_t)r * nb + u] = half_to_float(b + 108);
                }
            }
        }
        for (int tile = 0; tile < tiles; tile++) {
            const int8_t *xt = x + (size_t)tile * n * TILE_TOKENS;
            _Alignas(64) float out[BAND_ROWS][TILE_TOKENS];
            if (iq4) {
                memset(out, 0, sizeof out);
                for (int u = 0; u < nb; u++) {
                    const __m512 dv = _mm512_load_ps(da + ((size_t)tile * nb + u) * TILE_TOKENS);
                    iq4xs_band(uw + 256 * u, n, sc + (size_t)u * 8, nb * 8, xt + (size_t)u * 256 * TILE_TOKENS,
                               corr + ((size_t)tile * nb + u) * subs * TILE_TOKENS, wd + u, nb, dv, &out[0][0]);
                }
            } else {
                __m512 f[BAND_ROWS];
                for (int r = 0; r < BAND_ROWS; r++) f[r] = _mm512_setzero_ps();
                for (int u = 0; u < nb; u++) {
                    const __m512 dv = _mm512_load_ps(da + ((size_t)tile * nb + u) * TILE_TOKENS);
                    __m512 ddk[BAND_ROWS];
                    for (int r = 0; r < BAND_ROWS; r++) ddk[r] = _mm512_mul_ps(_mm512_set1_ps(wd[(size_t)r * nb + u]), dv);
                    q3k_band(uw + 256 * u, n, xt + (size_t)u * 256 * TILE_TOKENS,
                             _mm512_load_si512((const void *)(corr + ((size_t)tile * nb + u) * TILE_TOKENS)), ddk, f);
                }
                for (int r = 0; r < BAND_ROWS; r++) _mm512_store_ps(out[r], f[r]);
            }
            for (int r = 0; r < rows; r++)
                for (int t = 0; t < TILE_TOKENS; t++) y[(size_t)(tile * TILE_TOKENS + t) * ldy + rb + r] = out[r][t];
        }
    }
    return tiles * TILE_TOKENS;
}
#endif
