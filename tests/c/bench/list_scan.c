/* A long free list under many threads: N threads each do ITERS (free,
 * malloc) pairs over 512 slots of mixed sizes (16 B .. 8 KiB, one in 16 up
 * to 64 KiB), so a fit search walks hundreds of free blocks while the
 * other threads wait on the heap lock. With AS_MIB, RLIMIT_AS is set to
 * that many MiB first: the process heap then maps small regions, many of
 * them (as under glibc's tst-malloc-thread-fail), and a free list links
 * blocks of many regions. Prints the wall time.
 *   cc -O2 -pthread -o /tmp/list_scan tests/c/bench/list_scan.c
 *   LD_PRELOAD=target/release/libstratalloc.so STRATALLOC_STRATEGY=best-fit \
 *       /tmp/list_scan 8 20000 [AS_MIB [SLOTS]]    (AS_MIB 0: no limit)
 * Not run by the test scripts (timings are not asserted). */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
static int iters;
static unsigned SLOTS = 512;
static long failed;
static void *w(void *a) {
    uint64_t s = (uintptr_t)a * 0x9E3779B97F4A7C15ull + 1;
    void **slots = calloc(SLOTS, sizeof *slots);
    if (!slots) return NULL;
    for (int i = 0; i < iters; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        unsigned k = s % SLOTS;
        free(slots[k]);
        size_t n = (s >> 40) % 16 == 0 ? 8192 + (s >> 20) % 57344 : 16 + (s >> 20) % 8176;
        slots[k] = malloc(n);
        if (!slots[k]) __atomic_fetch_add(&failed, 1, __ATOMIC_RELAXED);
    }
    for (int k = 0; k < SLOTS; k++) free(slots[k]);
    free(slots);
    return NULL;
}
int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: %s THREADS ITERS [AS_MIB [SLOTS]]\n", argv[0]); return 2; }
    int n = atoi(argv[1]);
    iters = atoi(argv[2]);
    if (argc > 4) SLOTS = atoi(argv[4]);
    if (argc > 3 && atol(argv[3]) > 0) {
        struct rlimit r = {(rlim_t)atol(argv[3]) << 20, (rlim_t)atol(argv[3]) << 20};
        if (setrlimit(RLIMIT_AS, &r) != 0) { perror("setrlimit"); return 1; }
    }
    pthread_t t[256];
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    int started = 0;
    for (int i = 0; i < n; i++)
        if (pthread_create(&t[started], 0, w, (void *)(uintptr_t)(i + 1)) == 0) started++;
    for (int i = 0; i < started; i++) pthread_join(t[i], 0);
    if (started < n) printf("%d threads could not start\n", n - started);
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%.3f s, %ld mallocs failed\n", (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9,
           failed);
    return 0;
}
