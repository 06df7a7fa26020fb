// One thread's read bandwidth, printed by tools/arm/bench.sh beside the kernels' decode GB/s (the
// figure Benchmarks/matvec measures in Swift): a read-only sum over 256 MB with eight independent
// 64-bit sums (no dependency chain limits the loop), best of 10 runs of this thread's CPU time,
// as Benchmarks/kernels/ab.c times the kernels. Plain C; the compiler vectorizes the sum.
//
//     cc -O2 tools/arm/bandwidth.c -o bandwidth && ./bandwidth [MB]
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    size_t mb = argc > 1 ? (size_t)atol(argv[1]) : 256, size = mb << 20, words = size / 8;
    uint64_t *buffer = malloc(size);
    if (!buffer || words < 8) return fprintf(stderr, "cannot allocate %zu MB\n", mb), 1;
    memset(buffer, 1, size);  // fault every page in before timing
    double best = 1e30;
    uint64_t sink = 0;
    for (int rep = 0; rep < 10; rep++) {
        uint64_t acc[8] = {0};
        double t0 = cpu_seconds();
        for (size_t i = 0; i + 8 <= words; i += 8)
            for (int k = 0; k < 8; k++) acc[k] += buffer[i + k];
        double t = cpu_seconds() - t0;
        for (int k = 0; k < 8; k++) sink += acc[k];
        if (t < best) best = t;
    }
    printf("read bandwidth, one thread: %.1f GB/s (read-only sum over %zu MB, best of 10; checksum %llu)\n",
           (double)size / best / 1e9, mb, (unsigned long long)(sink & 0xFF));
    free(buffer);
    return 0;
}
