// Checks every hand-written kernel level this CPU offers against the scalar reference, in C,
// so it runs where Swift does not: cross-compiled for aarch64 under qemu-user (tools/arm/check.sh)
// and natively on x86. Linked with Sources/CKernels/*.c; fixed seed; no arguments needed.
//
// For every type with an 8-bit-activation kernel and every level from the detected one down
// to 0 (portable C), on random blocks (random bytes with modest, finite scale fields):
//   - matvec vs moe_matvec_q_reference within 1e-5 x sum|w_i x_i| (the Swift KernelTests bound);
//   - a 19-token matmul (tiles of 4 and 8 and remainders), and one over a row sub-range,
//     bit-identical to one matvec per token
//     (a token gives the same result alone or in a batch, as KernelTests demands);
//   - rows of ~12 KB (prefill's ~64 KB row blocks then hold 5 rows, so an i8mm row pair meets a
//     block edge): a 19-token matmul bit-identical to one matvec per token, at every SIMD level,
//     for two types per activation format (the blocking loop is shared by all types of a format);
//   - on aarch64, every NEON level bit-identical to the top one (simd_arm.c and simd_arm_q8k.c
//     fold the same exact int32 sums with the same float code at every level).
// Rows marked "qa" (when the header has llama.cpp's q8_K layout, MOE_KERNELS_Q8K) go through
// moe_matmul_qa with both activation formats, as Swift calls it; "okK" means the level used the
// q8_K format and was compared with moe_matvec_qk_reference (every 256-weight type must, at every
// SIMD level: the K-quants, IQ4_XS and the grid types IQ2_XXS, IQ2_XS, IQ3_XXS, IQ3_S). -DMOE_NO_Q8K_CHECK leaves them out
// (check.sh does, loudly, if this part no longer compiles against the header).
// The f32/f16/bf16 helpers are checked against double sums. Prints a table; exits 1 on a failure.
#include "moe_kernels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(MOE_KERNELS_Q8K) && !defined(MOE_NO_Q8K_CHECK)
#define MOE_HAVE_Q8K 1
#endif

static uint64_t rng_state = 20261130;
static uint64_t next_u64(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double uniform(void) { return (double)(next_u64() >> 11) / 9007199254740992.0; }
static float gaussian(void) { return (float)(sqrt(-2 * log(uniform() + 1e-12)) * cos(6.283185307179586 * uniform())); }

// A modest finite f16 for scale fields: |v| in [2^-9, 2^-4), either sign.
static void put_scale(uint8_t *p) {
    uint16_t h = (uint16_t)((next_u64() & 0x3FF) | ((6 + next_u64() % 5) << 10) | ((next_u64() & 1) << 15));
    p[0] = (uint8_t)h;
    p[1] = (uint8_t)(h >> 8);
}

struct type_info {
    int id;
    const char *name;
    int unit, bytes;
    int f16_at[2];  // offsets of f16 scale fields in a block, -1 = none
    int e8m0;       // 1: byte 0 is an E8M0 exponent (MXFP4)
};
static const struct type_info types[] = {
    {MOE_Q8_0, "Q8_0", 32, 34, {0, -1}, 0},       {MOE_Q4_0, "Q4_0", 32, 18, {0, -1}, 0},
    {MOE_Q4_1, "Q4_1", 32, 20, {0, 2}, 0},        {MOE_Q5_0, "Q5_0", 32, 22, {0, -1}, 0},
    {MOE_Q5_1, "Q5_1", 32, 24, {0, 2}, 0},        {MOE_IQ4_NL, "IQ4_NL", 32, 18, {0, -1}, 0},
    {MOE_MXFP4, "MXFP4", 32, 17, {-1, -1}, 1},    {MOE_Q2_K, "Q2_K", 256, 84, {80, 82}, 0},
    {MOE_Q3_K, "Q3_K", 256, 110, {108, -1}, 0},   {MOE_Q4_K, "Q4_K", 256, 144, {0, 2}, 0},
    {MOE_Q5_K, "Q5_K", 256, 176, {0, 2}, 0},      {MOE_Q6_K, "Q6_K", 256, 210, {208, -1}, 0},
    {MOE_IQ4_XS, "IQ4_XS", 256, 136, {0, -1}, 0},
    {MOE_IQ2_XXS, "IQ2_XXS", 256, 66, {0, -1}, 0}, {MOE_IQ2_XS, "IQ2_XS", 256, 74, {0, -1}, 0},
    {MOE_IQ3_XXS, "IQ3_XXS", 256, 98, {0, -1}, 0}, {MOE_IQ3_S, "IQ3_S", 256, 110, {0, -1}, 0},
};
enum { NTYPES = sizeof types / sizeof types[0], ROWS = 9, TOKENS = 19 };

static const char *level_name(int level) {
#if defined(__aarch64__)
    static const char *names[] = {"C", "neon", "dotprod", "i8mm"};
#elif defined(__x86_64__)
    static const char *names[] = {"C", "avx2", "avx512"};
#else
    static const char *names[] = {"C"};
#endif
    return level < (int)(sizeof names / sizeof names[0]) ? names[level] : "?";
}

static int failures = 0;
static void fail(const char *what, const char *type, int n, int level, int row, int token, double got, double want) {
    if (failures++ < 20)
        fprintf(stderr, "FAIL %s: %s n=%d level %s row %d token %d: got %.9g, want %.9g\n", what, type, n,
                level_name(level), row, token, got, want);
}

// Row r's weights, dequantized through the reference with one-hot activations (x = e_i).
static void dequantize(const struct type_info *t, int n, const uint8_t *w, size_t row_bytes, float *out /* ROWS x n */) {
    int8_t *q = calloc((size_t)n, 1);
    float *d = malloc(sizeof(float) * (size_t)(n / 32)), *s16 = calloc((size_t)(n / 16), sizeof(float)), y[ROWS];
    for (int b = 0; b < n / 32; b++) d[b] = 1;
    for (int i = 0; i < n; i++) {
        q[i] = 1;
        s16[i / 16] = 1;
        moe_matvec_q_reference(t->id, n, w, row_bytes, 0, ROWS, q, d, s16, y);
        for (int r = 0; r < ROWS; r++) out[(size_t)r * n + i] = y[r];
        q[i] = 0;
        s16[i / 16] = 0;
    }
    free(q), free(d), free(s16);
}

// The kernel call under test. Mode 0: moe_matmul_q on 32-block activations. Mode 1 (when the
// library has llama.cpp's q8_K layout): moe_matmul_qa with both formats given, as Swift calls
// it; it picks per type and level (moe_kernel_format).
struct acts {
    const int8_t *q, *qk;
    const float *d, *s16, *dk, *sums;
    const int16_t *bsums;
};
static int call(int mode, int type, int n, const uint8_t *w, size_t row_bytes, int r0, int r1, int tokens,
                const struct acts *a, float *y, int ldy) {
#if defined(MOE_HAVE_Q8K)
    if (mode == 1) {
        moe_activations x = {.q = a->q, .d = a->d, .s16 = a->s16, .qk = a->qk, .dk = a->dk, .bsums = a->bsums, .sums = a->sums};
        return moe_matmul_qa(type, n, w, row_bytes, r0, r1, tokens, &x, y, ldy);
    }
#endif
    (void)mode;
    return moe_matmul_q(type, n, w, row_bytes, r0, r1, tokens, a->q, a->d, a->s16, y, ldy);
}

// ROWS random rows of n elements: random bytes with modest, finite scale fields.
static uint8_t *random_rows(const struct type_info *t, size_t row_bytes) {
    uint8_t *w = malloc(row_bytes * ROWS);
    for (size_t i = 0; i < row_bytes * ROWS; i++) w[i] = (uint8_t)next_u64();
    for (size_t b = 0; b < row_bytes * ROWS / (size_t)t->bytes; b++) {
        uint8_t *block = w + b * (size_t)t->bytes;
        for (int k = 0; k < 2; k++)
            if (t->f16_at[k] >= 0) put_scale(block + t->f16_at[k]);
        if (t->e8m0) block[0] = (uint8_t)(118 + next_u64() % 8);
    }
    return w;
}

// Returns the worst |fast - reference| / sum|w x| seen (all levels).
static double check_type(const struct type_info *t, int n, int mode) {
    size_t row_bytes = (size_t)(n / t->unit) * (size_t)t->bytes;
    uint8_t *w = random_rows(t, row_bytes);
    // Tokens: Gaussian, and (odd tokens) near ±1 so most quantize to ±127: the largest sums.
    float *x = malloc(sizeof(float) * (size_t)n * TOKENS), *d = malloc(sizeof(float) * (size_t)n / 32 * TOKENS);
    float *s16 = malloc(sizeof(float) * (size_t)n / 16 * TOKENS), *deq = malloc(sizeof(float) * (size_t)n * ROWS);
    int8_t *q = malloc((size_t)n * TOKENS);
    for (int i = 0; i < n * TOKENS; i++) x[i] = (i / n) % 2 ? ((next_u64() & 1) ? 1.0f : -1.0f) * (float)(0.95 + 0.05 * uniform()) : gaussian();
    for (int k = 0; k < TOKENS; k++) moe_quantize_activations(x + (size_t)k * n, n, q + (size_t)k * n, d + (size_t)k * n / 32, s16 + (size_t)k * n / 16);
    dequantize(t, n, w, row_bytes, deq);
    // The q8_K form (one scale per 256), for mode 1: reference[1] and magnitude[1] use it.
    int8_t *qk = malloc((size_t)n * TOKENS);
    float *dk = malloc(sizeof(float) * ((size_t)n / 256 * TOKENS + 1));
    int16_t *bsums = malloc(sizeof(int16_t) * (size_t)n / 16 * TOKENS);
    float *sums = malloc(sizeof(float) * (size_t)n / 16 * TOKENS);
    int has_k = 0;
#if defined(MOE_HAVE_Q8K)
    if (mode == 1) {
        for (int k = 0; k < TOKENS; k++) {
            size_t e = (size_t)k * n;
            moe_quantize_activations_k(x + e, n, qk + e, dk + e / 256, bsums + e / 16, sums + e / 16);
        }
        has_k = 1;
    }
#endif
    struct acts a = {q, qk, d, s16, dk, sums, bsums};

    float reference[2][TOKENS][ROWS], one[TOKENS][ROWS], batch[TOKENS][ROWS], part[TOKENS][ROWS], top[TOKENS][ROWS];
    double magnitude[2][TOKENS][ROWS], worst = 0;
    for (int k = 0; k < TOKENS; k++) {
        size_t e = (size_t)k * n;
        moe_matvec_q_reference(t->id, n, w, row_bytes, 0, ROWS, q + e, d + e / 32, s16 + e / 16, reference[0][k]);
#if defined(MOE_HAVE_Q8K)
        if (has_k) moe_matvec_qk_reference(t->id, n, w, row_bytes, 0, ROWS, qk + e, dk + e / 256, bsums + e / 16, reference[1][k]);
#endif
        for (int f = 0; f < 1 + has_k; f++)
            for (int r = 0; r < ROWS; r++) {
                double m = 0;
                for (int i = 0; i < n; i++)
                    m += fabs((double)deq[(size_t)r * n + i] * (f ? (double)qk[e + i] * dk[(e + i) / 256] : (double)q[e + i] * d[(e + i) / 32]));
                magnitude[f][k][r] = m > 1e-6 ? m : 1e-6;
            }
    }
    int detected = moe_kernel_level();
    printf("%-7s %5d%s|", t->name, n, mode ? " qa" : "   ");
    for (int level = detected; level >= 0; level--) {
        int before = failures;
        moe_force_kernel_level(level);
        if (moe_kernel_level() != level) fail("forced level not taken", t->name, n, level, -1, -1, moe_kernel_level(), level);
        int f = 0;  // which activation format, hence which reference
#if defined(MOE_HAVE_Q8K)
        f = has_k && moe_kernel_format(t->id) == 2;
        // Every super-block type (K-quants, IQ4_XS, the grid types) has q8_K kernels at every
        // SIMD level, x86 and ARM: a level that falls back to the 32-block form lost its dispatch.
        if (has_k && level >= 1 && !f) fail("q8_K kernel not taken", t->name, n, level, -1, -1, moe_kernel_format(t->id), 2);
#endif
        for (int k = 0; k < TOKENS; k++) {
            size_t e = (size_t)k * n;
            struct acts ak = {q + e, qk + e, d + e / 32, s16 + e / 16, dk + e / 256, sums + e / 16, bsums + e / 16};
            if (call(mode, t->id, n, w, row_bytes, 0, ROWS, 1, &ak, one[k], 0) != 0) fail("matvec refused", t->name, n, level, -1, k, 0, 0);
        }
        memset(part, 0, sizeof part);
        call(mode, t->id, n, w, row_bytes, 0, ROWS, TOKENS, &a, &batch[0][0], ROWS);
        call(mode, t->id, n, w, row_bytes, 1, ROWS, TOKENS, &a, &part[0][0], ROWS);
        for (int k = 0; k < TOKENS; k++)
            for (int r = 0; r < ROWS; r++) {
                double error = fabs((double)one[k][r] - reference[f][k][r]) / magnitude[f][k][r];
                worst = error > worst ? error : worst;
                if (!(error <= 1e-5)) fail(f ? "vs scalar q8_K reference" : "vs scalar reference", t->name, n, level, r, k, one[k][r], reference[f][k][r]);
                if (memcmp(&batch[k][r], &one[k][r], 4) != 0) fail("batch != alone", t->name, n, level, r, k, batch[k][r], one[k][r]);
                if (r >= 1 && memcmp(&part[k][r], &one[k][r], 4) != 0) fail("rows 1.. != alone", t->name, n, level, r, k, part[k][r], one[k][r]);
#if defined(__aarch64__)
                if (level == detected) top[k][r] = one[k][r];
                else if (level >= 1 && memcmp(&top[k][r], &one[k][r], 4) != 0)
                    fail("NEON levels differ", t->name, n, level, r, k, one[k][r], top[k][r]);
#endif
            }
        printf(" %-7s %-4s|", level_name(level), failures == before ? (f ? "okK" : "ok") : "FAIL");
    }
    (void)top;
    moe_force_kernel_level(-1);
    printf(" %.1e\n", worst);
    free(w), free(x), free(d), free(s16), free(deq), free(q), free(qk), free(dk), free(bsums), free(sums);
    return worst;
}

// Wide rows (~12 KB, so the ~64 KB row blocks of a prefill hold 5 rows and an i8mm row pair
// meets a block edge): a 19-token matmul, bit-identical to one matvec per token, at every SIMD level.
// No reference here (check_type compares with it at smaller widths).
static int check_blocked(const struct type_info *t, int mode) {
    int n = (12000 / t->bytes + 1) * t->unit;
    n = (n + 255) / 256 * 256;
    size_t row_bytes = (size_t)(n / t->unit) * (size_t)t->bytes;
    uint8_t *w = random_rows(t, row_bytes);
    float *x = malloc(sizeof(float) * (size_t)n * TOKENS), *d = malloc(sizeof(float) * (size_t)n / 32 * TOKENS);
    float *s16 = malloc(sizeof(float) * (size_t)n / 16 * TOKENS), *dk = malloc(sizeof(float) * (size_t)n / 256 * TOKENS);
    float *sums = malloc(sizeof(float) * (size_t)n / 16 * TOKENS);
    int8_t *q = malloc((size_t)n * TOKENS), *qk = malloc((size_t)n * TOKENS);
    int16_t *bsums = malloc(sizeof(int16_t) * (size_t)n / 16 * TOKENS);
    for (int i = 0; i < n * TOKENS; i++) x[i] = gaussian();
    for (int k = 0; k < TOKENS; k++) {
        size_t e = (size_t)k * n;
        moe_quantize_activations(x + e, n, q + e, d + e / 32, s16 + e / 16);
#if defined(MOE_HAVE_Q8K)
        moe_quantize_activations_k(x + e, n, qk + e, dk + e / 256, bsums + e / 16, sums + e / 16);
#endif
    }
    struct acts a = {q, qk, d, s16, dk, sums, bsums};
    float one[TOKENS][ROWS], batch[TOKENS][ROWS];
    int before = failures;
    for (int level = moe_kernel_level(); level >= 1; level--) {  // the portable C has no blocking
        moe_force_kernel_level(level);
        for (int k = 0; k < TOKENS; k++) {
            size_t e = (size_t)k * n;
            struct acts ak = {q + e, qk + e, d + e / 32, s16 + e / 16, dk + e / 256, sums + e / 16, bsums + e / 16};
            call(mode, t->id, n, w, row_bytes, 0, ROWS, 1, &ak, one[k], 0);
        }
        call(mode, t->id, n, w, row_bytes, 0, ROWS, TOKENS, &a, &batch[0][0], ROWS);
        for (int k = 0; k < TOKENS; k++)
            for (int r = 0; r < ROWS; r++)
                if (memcmp(&batch[k][r], &one[k][r], 4) != 0) fail("blocked batch != alone", t->name, n, level, r, k, batch[k][r], one[k][r]);
    }
    moe_force_kernel_level(-1);
    free(w), free(x), free(d), free(s16), free(dk), free(sums), free(q), free(qk), free(bsums);
    return failures == before;
}

static float f16_value(uint16_t h) {  // IEEE half to float, independent of the library
    int e = (h >> 10) & 31, m = h & 1023;
    float v = e == 0 ? ldexpf((float)m, -24) : e == 31 ? INFINITY : ldexpf((float)(m | 1024), e - 25);
    return (h & 0x8000) ? -v : v;
}

static void check_float_helpers(void) {
    enum { N = 77, R = 3 };  // not a multiple of any vector width
    int before = failures;
    float a[N * R], b[N], y[N], y0[N], out[R];
    uint16_t h[N * R], bf[N * R];
    for (int i = 0; i < N * R; i++) a[i] = gaussian();
    for (int i = 0; i < N; i++) b[i] = gaussian(), y[i] = y0[i] = gaussian();
    moe_f32_to_f16(a, h, N * R);
    for (int i = 0; i < N * R; i++) {
        uint32_t bits;
        memcpy(&bits, &a[i], 4);
        bf[i] = (uint16_t)(bits >> 16);
        if (fabsf(f16_value(h[i]) - a[i]) > fabsf(a[i]) / 1024) fail("moe_f32_to_f16", "f16", N, 0, i, 0, f16_value(h[i]), a[i]);
    }
    double dot = 0, mag = 0, dot16 = 0, mag16 = 0;
    for (int i = 0; i < N; i++) {
        dot += (double)a[i] * b[i], mag += fabs((double)a[i] * b[i]);
        dot16 += (double)f16_value(h[i]) * b[i], mag16 += fabs((double)f16_value(h[i]) * b[i]);
    }
    float got = moe_dot_f32(a, b, N);
    if (fabs(got - dot) > 1e-6 * mag) fail("moe_dot_f32", "f32", N, 0, 0, 0, got, dot);
    got = moe_dot_f16(h, b, N);
    if (fabs(got - dot16) > 1e-6 * mag16) fail("moe_dot_f16", "f16", N, 0, 0, 0, got, dot16);
    moe_axpy_f32(0.5f, b, y, N);
    for (int i = 0; i < N; i++)
        if (fabsf(y[i] - (y0[i] + 0.5f * b[i])) > 1e-6f * (fabsf(y0[i]) + fabsf(b[i]))) fail("moe_axpy_f32", "f32", N, 0, i, 0, y[i], y0[i] + 0.5 * b[i]);
    memcpy(y, y0, sizeof y);
    moe_axpy_f16(-2.0f, h, y, N);
    for (int i = 0; i < N; i++) {
        double want = y0[i] - 2.0 * f16_value(h[i]);
        if (fabs(y[i] - want) > 1e-6 * (fabs(y0[i]) + 2 * fabs(f16_value(h[i])))) fail("moe_axpy_f16", "f16", N, 0, i, 0, y[i], want);
    }
    const void *weights[3] = {a, h, bf};
    const int ids[3] = {MOE_F32, MOE_F16, MOE_BF16};
    const size_t width[3] = {4, 2, 2};
    for (int k = 0; k < 3; k++) {
        moe_matmul_f(ids[k], N, weights[k], N * width[k], 0, R, 1, b, out, R);
        for (int r = 0; r < R; r++) {
            double want = 0, m = 0;
            for (int i = 0; i < N; i++) {
                uint32_t bits = (uint32_t)bf[r * N + i] << 16;
                float bv;
                memcpy(&bv, &bits, 4);
                double wv = k == 0 ? a[r * N + i] : k == 1 ? f16_value(h[r * N + i]) : bv;
                want += wv * b[i], m += fabs(wv * b[i]);
            }
            if (fabs(out[r] - want) > 1e-6 * m) fail("moe_matmul_f", k == 0 ? "F32" : k == 1 ? "F16" : "BF16", N, 0, r, 0, out[r], want);
        }
    }
    printf("f32/f16 helpers (dot, axpy, to_f16, matmul_f F32/F16/BF16): %s\n", failures == before ? "ok" : "FAIL");
}

// Usage: kernel_check [label] [expected level]. With an expected level, a different detected
// level fails (qemu's -cpu model fixes what the CPU reports, so detection itself is checked).
int main(int argc, char **argv) {
    const char *label = argc > 1 ? argv[1] : "this CPU";
    int detected = moe_kernel_level();
    printf("kernel check on %s: detected level %d (%s), isa %s\n", label, detected, level_name(detected), moe_kernel_isa());
    if (argc > 2 && argv[2][0] && atoi(argv[2]) != detected) fail("detected level differs from the expected", label, 0, detected, -1, -1, detected, atoi(argv[2]));
    printf("type        n | levels, top first (each vs reference, batch, sub-range%s)        | worst err/sum|wx|\n",
#if defined(__aarch64__)
           ", = top level"
#else
           ""
#endif
    );
    for (int i = 0; i < NTYPES; i++) {
        if (moe_kernel_kind(types[i].id) != 1) {
            printf("%-7s: no 8-bit-activation kernel in this build (not checked)\n", types[i].name);
            continue;
        }
        int small = types[i].unit == 32 ? 96 : 256, large = types[i].unit == 32 ? 320 : 768;
        check_type(&types[i], small, 0);
        check_type(&types[i], large, 0);
#if defined(MOE_HAVE_Q8K)
        if (types[i].unit == 256) check_type(&types[i], large, 1);
#endif
    }
    // The blocking is one loop shared by every type of a format (simd_arm.c's DEFINE_ARM,
    // kernels.c's matmul_rows_k): two types per format keep this part short under qemu.
    printf("wide rows, 19 tokens in ~64 KB row blocks, batch = alone at every SIMD level:");
    for (int i = 0; i < NTYPES; i++) {
        int id = types[i].id;
        if (moe_kernel_kind(id) != 1) continue;
        if (id == MOE_Q8_0 || id == MOE_Q4_K) printf(" %s %s;", types[i].name, check_blocked(&types[i], 0) ? "ok" : "FAIL");
#if defined(MOE_HAVE_Q8K)
        if (id == MOE_Q4_K || id == MOE_Q6_K) printf(" %s qa %s;", types[i].name, check_blocked(&types[i], 1) ? "ok" : "FAIL");
#endif
    }
    printf("\n");
    // Types the library has kernels for but this table cannot generate: said, not hidden.
    for (int id = 0; id < 64; id++) {
        int known = 0;
        for (int i = 0; i < NTYPES; i++) known |= types[i].id == id;
        if (!known && moe_kernel_kind(id) == 1) printf("WARNING: type %d has a kernel but no generator here: not checked\n", id);
    }
    check_float_helpers();
    printf("%s: %d failure(s)\n", failures ? "FAILED" : "passed", failures);
    return failures ? 1 : 0;
}
