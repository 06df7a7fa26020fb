// The ARM64 unpackers of the grid ("i-quant") types IQ2_XXS, IQ2_XS, IQ3_XXS and IQ3_S for the
// q8_K kernels of simd_arm_q8k.c, which includes this after its `kscales` type and `load32` and
// instantiates its one-row (NEON, dotprod) and row-pair (i8mm) kernels with them, as for the
// K-quants. No include guard on purpose (one includer); aarch64 only.
//
// Each 32 weights are 4 (IQ2) or 8 (IQ3) grid entries, looked up in the tables of iq_grids.h
// (unsigned magnitudes, at most 62), 32 sign bits and an odd integer scale 2s+1 (per 16 for
// IQ2_XS, per 32 for the others). Unlike the x86 kernels (simd_x86_iq.c), which sign the
// activations per token because `vpmaddubsw` wants unsigned weights, the signs go onto the
// weights here: `SDOT`, `SMULL` and `SMMLA` multiply signed by signed, and a super-block is
// unpacked once per row for every token of a tile, so the 64 int8 weights of `chunk_*` are
// exactly kernels.c's unpacked q (iq_unpack.h). `kscales_*` gives the odd scales per 16 weights
// and d times the format's power of two (1/8 IQ2, 1/4 IQ3_XXS, 1 IQ3_S): x = d' · (2s+1) · q.
#include "iq_grids.h"

/* 16 grid magnitudes with their signs: byte j negated where bit j % 8 of s0 (j < 8) or s1 is set. */
ARM_INLINE int8x16_t iq_signed(uint8x16_t mag, uint8_t s0, uint8_t s1) {
    static const uint8_t bit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    int8x16_t neg = vreinterpretq_s8_u8(vtstq_u8(vcombine_u8(vdup_n_u8(s0), vdup_n_u8(s1)), vld1q_u8(bit)));
    return vsubq_s8(veorq_s8(vreinterpretq_s8_u8(mag), neg), neg); /* (w ^ -1) - -1 = -w */
}
/* Two 8-byte grid entries (IQ2) or four 4-byte ones (IQ3) as 16 magnitudes, element order. */
ARM_INLINE uint8x16_t grid2(uint64_t e0, uint64_t e1) { return vcombine_u8(vcreate_u8(e0), vcreate_u8(e1)); }
ARM_INLINE uint8x16_t grid4(uint32_t e0, uint32_t e1, uint32_t e2, uint32_t e3) {
    return grid2((uint64_t)e0 | ((uint64_t)e1 << 32), (uint64_t)e2 | ((uint64_t)e3 << 32));
}
/* 4-bit scales s per 32 weights (8 lanes) as the 16 group scales 2s+1. */
ARM_INLINE int8x16_t odd_per32(uint8x8_t s) { return vreinterpretq_s8_u8(twice(vorr_u8(vshl_n_u8(s, 1), vdup_n_u8(1)))); }
/* Bytes k, k + 8, ..., k + 56 of the 64 at p: a field of each of 8 eight-byte records. */
ARM_INLINE uint8x8_t every8th(const uint8_t *p, int k) {
    static const uint8_t at[8] = {0, 8, 16, 24, 32, 40, 48, 56};
    uint8x16x4_t all = {{vld1q_u8(p), vld1q_u8(p + 16), vld1q_u8(p + 32), vld1q_u8(p + 48)}};
    return vqtbl4_u8(all, vadd_u8(vld1_u8(at), vdup_n_u8((uint8_t)k)));
}

/* IQ2_XXS (66 bytes): | f16 d | 8 x (u32 four grid indices, u32 four 7-bit sign indices | s << 28) |.
   s is the top nibble of byte 7 of each record. */
ARM_INLINE kscales kscales_iq2_xxs(const uint8_t *b) {
    return (kscales){odd_per32(vshr_n_u8(every8th(b + 2, 7), 4)), vdupq_n_s8(0), half(b) * 0.125f, 0};
}
CHUNK(iq2_xxs) {
    w64 w;
    for (int i = 0; i < 2; i++) {
        const uint8_t *p = b + 2 + 8 * (2 * c + i);
        const uint32_t aux = load32(p + 4);
        for (int h = 0; h < 2; h++)
            w.v[2 * i + h] = iq_signed(grid2(moe_iq2xxs_grid[p[2 * h]], moe_iq2xxs_grid[p[2 * h + 1]]),
                                       moe_iq_ksigns[(aux >> (14 * h)) & 127], moe_iq_ksigns[(aux >> (14 * h + 7)) & 127]);
    }
    return w;
}

/* IQ2_XS (74 bytes): | f16 d | 32 x u16 (9-bit grid index | 7-bit sign index << 9) | scales[8] |:
   the low nibble of scales[ib] scales weights 32ib.., the high nibble 32ib + 16... */
ARM_INLINE kscales kscales_iq2_xs(const uint8_t *b) {
    uint8x8_t s = vld1_u8(b + 66), lo = vand_u8(s, vdup_n_u8(0x0F)), hi = vshr_n_u8(s, 4);
    uint8x16_t sc = vcombine_u8(vzip1_u8(lo, hi), vzip2_u8(lo, hi));
    return (kscales){vreinterpretq_s8_u8(vorrq_u8(vshlq_n_u8(sc, 1), vdupq_n_u8(1))), vdupq_n_s8(0), half(b) * 0.125f, 0};
}
CHUNK(iq2_xs) {
    w64 w;
    for (int j = 0; j < 4; j++) {
        uint16_t v[2];
        memcpy(v, b + 2 + 16 * c + 4 * j, 4); /* grid entries 8c + 2j, 8c + 2j + 1 */
        w.v[j] = iq_signed(grid2(moe_iq2xs_grid[v[0] & 511], moe_iq2xs_grid[v[1] & 511]), moe_iq_ksigns[v[0] >> 9],
                           moe_iq_ksigns[v[1] >> 9]);
    }
    return w;
}

/* IQ3_XXS (98 bytes): | f16 d | qs[64]: a grid index per 4 weights | 8 x u32 (four 7-bit sign
   indices | s << 28) |; s is the top nibble of byte 3 of each u32. */
ARM_INLINE kscales kscales_iq3_xxs(const uint8_t *b) {
    static const uint8_t at[8] = {3, 7, 11, 15, 19, 23, 27, 31};
    uint8x16x2_t aux = {{vld1q_u8(b + 66), vld1q_u8(b + 82)}};
    return (kscales){odd_per32(vshr_n_u8(vqtbl2_u8(aux, vld1_u8(at)), 4)), vdupq_n_s8(0), half(b) * 0.25f, 0};
}
CHUNK(iq3_xxs) {
    w64 w;
    for (int i = 0; i < 2; i++) {
        const int ib = 2 * c + i;
        const uint8_t *qs = b + 2 + 8 * ib;
        const uint32_t aux = load32(b + 66 + 4 * ib);
        for (int h = 0; h < 2; h++) {
            const uint8_t *e = qs + 4 * h;
            w.v[2 * i + h] = iq_signed(grid4(moe_iq3xxs_grid[e[0]], moe_iq3xxs_grid[e[1]], moe_iq3xxs_grid[e[2]], moe_iq3xxs_grid[e[3]]),
                                       moe_iq_ksigns[(aux >> (14 * h)) & 127], moe_iq_ksigns[(aux >> (14 * h + 7)) & 127]);
        }
    }
    return w;
}

/* IQ3_S (110 bytes): | f16 d | qs[64]: low 8 bits of a grid index per 4 weights | qh[8]: bit k of
   qh[ib] is the 9th bit of index k of block ib | signs[32]: one bit per weight | scales[4]: 4 bits
   per 32, low nibble first |. The scales are read as one u32: the block ends 4 bytes later. */
ARM_INLINE kscales kscales_iq3_s(const uint8_t *b) {
    uint8x8_t s = vreinterpret_u8_u32(vdup_n_u32(load32(b + 106)));
    uint8x8_t lo = vand_u8(s, vdup_n_u8(0x0F)), hi = vshr_n_u8(s, 4);
    return (kscales){odd_per32(vzip1_u8(lo, hi)), vdupq_n_s8(0), half(b), 0};
}
CHUNK(iq3_s) {
    w64 w;
    for (int i = 0; i < 2; i++) {
        const int ib = 2 * c + i;
        const uint8_t *qs = b + 2 + 8 * ib, *sg = b + 74 + 4 * ib;
        const int qh = b[66 + ib];
        for (int h = 0; h < 2; h++) {
#define IQ3S(k) moe_iq3s_grid[qs[k] | (((qh >> (k)) & 1) << 8)]
            const int k = 4 * h;
            w.v[2 * i + h] = iq_signed(grid4(IQ3S(k), IQ3S(k + 1), IQ3S(k + 2), IQ3S(k + 3)), sg[2 * h], sg[2 * h + 1]);
#undef IQ3S
        }
    }
    return w;
}
