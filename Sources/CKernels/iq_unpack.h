// Scalar unpackers of the IQ2/IQ3 super-block types (256 weights each) for kernels.c, included
// there after its scalar helpers (load_f16, load_u16, load_u32) and the UNPACK macro. Each writes
// the 256 weights as signed grid magnitudes `q` and a float scale per 16 weights `ws` (wm = 0),
// exactly the dequantized values: x = ws * q (every product is exact in f32). Layouts follow
// ggml-common.h; the Swift dequantizers (Sources/Quantization/DequantizeIQ.swift) agree.
// No include guard on purpose (one includer).
#include "iq_grids.h"

/* Element j of an 8-entry sign byte: -1 where bit j is set. */
#define IQ_SIGNED(v, signs, j) ((int8_t)(((signs) >> (j)) & 1 ? -(int)(v) : (int)(v)))

UNPACK(iq2_xxs) {
    // d | 8 x (u32 four grid indices, u32 four 7-bit sign indices | 4-bit scale << 28)
    float d = load_f16(b);
    for (int ib = 0; ib < 8; ib++) {
        uint32_t idx = load_u32(b + 2 + 8 * ib), aux = load_u32(b + 6 + 8 * ib);
        float db = d * (0.5f + (float)(aux >> 28)) * 0.25f;
        ws[2 * ib] = ws[2 * ib + 1] = db;
        wm[2 * ib] = wm[2 * ib + 1] = 0;
        for (int l = 0; l < 4; l++) {
            uint64_t grid = moe_iq2xxs_grid[(idx >> (8 * l)) & 0xFF];
            uint8_t signs = moe_iq_ksigns[(aux >> (7 * l)) & 127];
            for (int j = 0; j < 8; j++) q[32 * ib + 8 * l + j] = IQ_SIGNED((grid >> (8 * j)) & 0xFF, signs, j);
        }
    }
}

UNPACK(iq2_xs) {
    // d | 32 x u16 (9-bit grid index | 7-bit sign index << 9) | scales[8]: two 4-bit per 32
    float d = load_f16(b);
    for (int ib = 0; ib < 8; ib++) {
        uint8_t sc = b[66 + ib];
        for (int half = 0; half < 2; half++) {
            ws[2 * ib + half] = d * (0.5f + (float)((sc >> (4 * half)) & 0x0F)) * 0.25f;
            wm[2 * ib + half] = 0;
        }
        for (int l = 0; l < 4; l++) {
            uint16_t v = load_u16(b + 2 + 2 * (4 * ib + l));
            uint64_t grid = moe_iq2xs_grid[v & 511];
            uint8_t signs = moe_iq_ksigns[v >> 9];
            for (int j = 0; j < 8; j++) q[32 * ib + 8 * l + j] = IQ_SIGNED((grid >> (8 * j)) & 0xFF, signs, j);
        }
    }
}

UNPACK(iq3_xxs) {
    // d | qs[64]: one grid index per 4 weights | 8 x u32 (four 7-bit sign indices | 4-bit scale << 28)
    float d = load_f16(b);
    for (int ib = 0; ib < 8; ib++) {
        uint32_t aux = load_u32(b + 66 + 4 * ib);
        float db = d * (0.5f + (float)(aux >> 28)) * 0.5f;
        ws[2 * ib] = ws[2 * ib + 1] = db;
        wm[2 * ib] = wm[2 * ib + 1] = 0;
        for (int l = 0; l < 4; l++) {
            uint64_t grid = (uint64_t)moe_iq3xxs_grid[b[2 + 8 * ib + 2 * l]] | ((uint64_t)moe_iq3xxs_grid[b[3 + 8 * ib + 2 * l]] << 32);
            uint8_t signs = moe_iq_ksigns[(aux >> (7 * l)) & 127];
            for (int j = 0; j < 8; j++) q[32 * ib + 8 * l + j] = IQ_SIGNED((grid >> (8 * j)) & 0xFF, signs, j);
        }
    }
}

UNPACK(iq3_s) {
    // d | qs[64]: low 8 bits of a 9-bit grid index per 4 weights | qh[8]: the 9th bits | signs[32] | scales[4]
    float d = load_f16(b);
    const uint8_t *qs = b + 2, *qh = b + 66, *sg = b + 74, *sc = b + 106;
    for (int ib = 0; ib < 8; ib++) {
        float db = d * (float)(1 + 2 * ((sc[ib / 2] >> (4 * (ib % 2))) & 0x0F));
        ws[2 * ib] = ws[2 * ib + 1] = db;
        wm[2 * ib] = wm[2 * ib + 1] = 0;
        for (int l = 0; l < 4; l++) {
            int i0 = qs[8 * ib + 2 * l] | (((qh[ib] >> (2 * l)) & 1) << 8);
            int i1 = qs[8 * ib + 2 * l + 1] | (((qh[ib] >> (2 * l + 1)) & 1) << 8);
            uint64_t grid = (uint64_t)moe_iq3s_grid[i0] | ((uint64_t)moe_iq3s_grid[i1] << 32);
            uint8_t signs = sg[4 * ib + l];
            for (int j = 0; j < 8; j++) q[32 * ib + 8 * l + j] = IQ_SIGNED((grid >> (8 * j)) & 0xFF, signs, j);
        }
    }
}

#undef IQ_SIGNED
