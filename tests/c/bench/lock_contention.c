/* Lock contention on a process heap: N threads each do ITERS (free, malloc)
 * pairs of 16..527-byte blocks over 256 slots; prints ns per pair.
 *   cc -O2 -pthread -o /tmp/lockbench tests/c/bench/lock_contention.c
 *   LD_PRELOAD=target/release/libstratalloc.so STRATALLOC_STRATEGY=tlsf /tmp/lockbench 8 250000
 * Not run by the test scripts (timings are not asserted). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <time.h>
static int iters;
static void *w(void *a) {
    uint64_t s = (uintptr_t)a * 0x9E3779B97F4A7C15ull + 1;
    void *slots[256] = {0};
    for (int i = 0; i < iters; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        unsigned k = s & 255;
        free(slots[k]);
        slots[k] = malloc(16 + (s >> 20) % 512);
    }
    for (int k = 0; k < 256; k++) free(slots[k]);
    return NULL;
}
int main(int argc, char **argv) {
    int n = atoi(argv[1]); iters = atoi(argv[2]);
    pthread_t t[256];
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < n; i++) pthread_create(&t[i], 0, w, (void *)(uintptr_t)(i + 1));
    for (int i = 0; i < n; i++) pthread_join(t[i], 0);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double s = (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
    printf("%d threads x %d ops: %.3f s, %.1f ns/op\n", n, iters, s, s * 1e9 / ((double)n * iters));
    return 0;
}
