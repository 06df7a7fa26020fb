// Same-run A/B of the C kernels of two revisions (see ab.sh): per type, one-thread matvec GB/s
// (decode) and prefill throughput (weights x tokens per second), best of many repetitions of
// this thread's CPU time, so other jobs on a shared machine disturb it less than wall time.
// Built once per revision against that revision's Sources/CKernels; prints one line per type.
//
//     cc -O2 -I REV/Sources/CKernels/include REV/Sources/CKernels/*.c ab.c -lm -o ab-REV
//     ./ab-REV [--kb 65536] [--tokens 32] [--columns 4096] [--types q4_K,q8_0] [--level N]
// --level N caps the hand-written kernel level (moe_force_kernel_level; 0 = portable C) and
// exits without a table when this CPU does not have level N (tools/arm/bench.sh runs each).
#include "moe_kernels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t state = 1;
static uint64_t next(void) {
    state += 0x9E3779B97F4A7C15ull;
    uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static float uniform(void) { return (float)(next() >> 40) / (float)(1 << 24) * 2 - 1; }

/* ggml type, elements and bytes per block, offsets of f16 scales (-1: none), e8m0 scale at 0. */
struct type { const char *name; int id, unit, bytes, f16a, f16b, e8m0; };
static const struct type types[] = {
    {"q8_0", 8, 32, 34, 0, -1, 0},     {"q4_K", 12, 256, 144, 0, 2, 0},   {"q5_K", 13, 256, 176, 0, 2, 0},
    {"q6_K", 14, 256, 210, 208, -1, 0}, {"q3_K", 11, 256, 110, 108, -1, 0}, {"q2_K", 10, 256, 84, 80, 82, 0},
    {"iq4_xs", 23, 256, 136, 0, -1, 0}, {"iq4_nl", 20, 32, 18, 0, -1, 0},   {"mxfp4", 39, 32, 17, -1, -1, 1},
    {"iq2_xxs", 16, 256, 66, 0, -1, 0}, {"iq2_xs", 17, 256, 74, 0, -1, 0},  {"iq3_xxs", 18, 256, 98, 0, -1, 0},
    {"iq3_s", 21, 256, 110, 0, -1, 0},
};

/* Random blocks with finite, modest scales (speed does not depend on the values). */
static void fill(const struct type *t, uint8_t *w, size_t bytes) {
    for (size_t i = 0; i < bytes; i++) w[i] = (uint8_t)next();
    for (size_t b = 0; b < bytes / t->bytes; b++) {
        uint8_t *block = w + b * t->bytes;
        if (t->e8m0) block[0] = (uint8_t)(118 + next() % 8);
        if (t->f16a >= 0) block[t->f16a + 1] = 0x1C;
        if (t->f16b >= 0) block[t->f16b + 1] = 0x1C;
    }
}

static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    size_t kb = 65536;
    int tokens = 32, n = 4096;
    const char *only = 0;
    int level = -1;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--kb")) kb = (size_t)atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--tokens")) tokens = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--columns")) n = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--types")) only = argv[i + 1];
        else if (!strcmp(argv[i], "--level")) level = atoi(argv[i + 1]);
    }
    if (level >= 0) {
        moe_force_kernel_level(level);
        if (moe_kernel_level() != level) {
            printf("level %d: not on this CPU (it has up to %d, %s)\n", level, moe_kernel_level(), moe_kernel_isa());
            return 0;
        }
        printf("kernel level %d (of %s)\n", level, moe_kernel_isa());
    }
    int8_t *q = malloc((size_t)n * tokens);
    float *d = malloc(sizeof(float) * n * tokens / 32), *s16 = malloc(sizeof(float) * n * tokens / 16);
    float *x = malloc(sizeof(float) * n * tokens);
    for (int i = 0; i < n * tokens; i++) x[i] = uniform();
    moe_quantize_activations(x, n * tokens, q, d, s16);
#ifdef MOE_KERNELS_Q8K
    int8_t *qk = malloc((size_t)n * tokens);
    float *dk = malloc(sizeof(float) * n * tokens / 256), *sums = malloc(sizeof(float) * n * tokens / 16);
    int16_t *bsums = malloc(sizeof(int16_t) * n * tokens / 16);
    moe_quantize_activations_k(x, n * tokens, qk, dk, bsums, sums);
    moe_activations a = {q, d, s16, qk, dk, bsums, sums};
#endif
    {
        /* The machine's one-thread read bandwidth in the same run: a sum over 256 MB (best of 5). */
        size_t words = (size_t)32 << 20;
        uint64_t *buffer = malloc(words * sizeof *buffer), total = 0;
        for (size_t i = 0; i < words; i++) buffer[i] = i;
        double best = 1e30;
        for (int rep = 0; rep < 5; rep++) {
            double t0 = cpu_seconds();
            uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            for (size_t i = 0; i < words; i += 4) s0 += buffer[i], s1 += buffer[i + 1], s2 += buffer[i + 2], s3 += buffer[i + 3];
            double t1 = cpu_seconds();
            total += s0 + s1 + s2 + s3;
            if (t1 - t0 < best) best = t1 - t0;
        }
        printf("read bandwidth (sum over 256 MB, one thread): %.1f GB/s%s\n", words * sizeof *buffer / best / 1e9, total == 1 ? " " : "");
        free(buffer);
    }
    printf("type    decode GB/s  prefill Gweights*tokens/s  (%zu KB of weights, %d columns, %d tokens)\n", kb, n, tokens);
    for (size_t k = 0; k < sizeof types / sizeof *types; k++) {
        const struct type *t = &types[k];
        if (only && !strstr(only, t->name)) continue;
        size_t row_bytes = (size_t)n / t->unit * t->bytes;
        int rows = (int)(kb * 1024 / row_bytes);
        if (rows < 1) rows = 1;
        uint8_t *w = malloc(row_bytes * rows);
        fill(t, w, row_bytes * rows);
        float *y = malloc(sizeof(float) * rows * tokens);
        double decode = 1e30, prefill = 1e30;
        if (moe_matvec_q(t->id, n, w, row_bytes, 0, 1, q, d, s16, y) != 0) {
            printf("%-7s %8s  %10s  (no kernel in this revision)\n", t->name, "-", "-");
            free(w);
            free(y);
            continue;
        }
        int reps = kb <= 4096 ? 200 : 15;
        for (int rep = 0; rep < reps; rep++) {
            double t0 = cpu_seconds();
#ifdef MOE_KERNELS_Q8K
            moe_matmul_qa(t->id, n, w, row_bytes, 0, rows, 1, &a, y, rows);
#else
            moe_matvec_q(t->id, n, w, row_bytes, 0, rows, q, d, s16, y);
#endif
            double t1 = cpu_seconds();
            if (t1 - t0 < decode) decode = t1 - t0;
        }
        for (int rep = 0; rep < reps / 4 + 1; rep++) {
            double t0 = cpu_seconds();
#ifdef MOE_KERNELS_Q8K
            moe_matmul_qa(t->id, n, w, row_bytes, 0, rows, tokens, &a, y, rows);
#else
            moe_matmul_q(t->id, n, w, row_bytes, 0, rows, tokens, q, d, s16, y, rows);
#endif
            double t1 = cpu_seconds();
            if (t1 - t0 < prefill) prefill = t1 - t0;
        }
        for (int i = 0; i < rows; i++)
            if (!isfinite(y[i])) { fprintf(stderr, "%s: non-finite output\n", t->name); return 1; }
        printf("%-7s %8.1f  %10.1f\n", t->name, row_bytes * rows / decode / 1e9, (double)n * rows * tokens / prefill / 1e9);
        free(w);
        free(y);
    }
    return 0;
}
