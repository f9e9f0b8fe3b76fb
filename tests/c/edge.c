/* glibc edge cases of every entry point, errno included. */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <dlfcn.h>
#include "check.h"

/* C23, not declared by glibc 2.36: looked up at run time. */
static void (*free_sized_p)(void *, size_t);
static void (*free_aligned_sized_p)(void *, size_t, size_t);

static int aligned(void *p, size_t a) { return ((uintptr_t)p & (a - 1)) == 0; }

static void fill(void *p, size_t n, int v) { memset(p, v, n); }
static int all(const void *p, size_t n, int v) {
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        if (c[i] != (unsigned char)v) return 0;
    return 1;
}

int main(void) {
    size_t ps = (size_t)sysconf(_SC_PAGESIZE);
    void *p, *q, *r;
    free_sized_p = (void (*)(void *, size_t))dlsym(RTLD_DEFAULT, "free_sized");
    free_aligned_sized_p = (void (*)(void *, size_t, size_t))dlsym(RTLD_DEFAULT, "free_aligned_sized");
    CHECK(free_sized_p && free_aligned_sized_p);
    if (!free_sized_p || !free_aligned_sized_p) return 1;

    /* malloc(0), calloc(0, n): unique, freeable, usable_size works. */
    errno = 1234;
    p = malloc(0); q = malloc(0);
    CHECK(p && q && p != q);
    CHECK(errno == 1234);
    CHECK(malloc_usable_size(p) < 1u << 20);
    free(p); free(q);
    p = calloc(0, 10); q = calloc(10, 0);
    CHECK(p && q && p != q);
    free(p); free(q);
    CHECK(errno == 1234);
    CHECK(malloc_usable_size(NULL) == 0);
    free(NULL);
    CHECK(errno == 1234);

    /* Sizes above PTRDIFF_MAX and failures: NULL + ENOMEM. */
    size_t sizes[] = {SIZE_MAX, SIZE_MAX - 15, (size_t)PTRDIFF_MAX + 1, (size_t)PTRDIFF_MAX,
                      (size_t)PTRDIFF_MAX - 4096};
    for (unsigned i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        errno = 0; CHECK(malloc(sizes[i]) == NULL && errno == ENOMEM);
        errno = 0; CHECK(calloc(1, sizes[i]) == NULL && errno == ENOMEM);
        errno = 0; CHECK(aligned_alloc(64, sizes[i]) == NULL && errno == ENOMEM);
        errno = 0; CHECK(memalign(4096, sizes[i]) == NULL && errno == ENOMEM);
        errno = 0; CHECK(valloc(sizes[i]) == NULL && errno == ENOMEM);
        errno = 0; CHECK(pvalloc(sizes[i]) == NULL && errno == ENOMEM);
        /* glibc also sets errno to ENOMEM here (programs and glibc's own
         * tests read it); *out stays untouched. */
        void *o = (void *)&ps;
        errno = 77;
        CHECK(posix_memalign(&o, 64, sizes[i]) == ENOMEM && o == (void *)&ps && errno == ENOMEM);
    }
    /* calloc / reallocarray overflow. */
    errno = 0; CHECK(calloc(SIZE_MAX / 2, 3) == NULL && errno == ENOMEM);
    errno = 0; CHECK(calloc((size_t)1 << 32, (size_t)1 << 32) == NULL && errno == ENOMEM);
    p = malloc(10); fill(p, 10, 0x5a);
    errno = 0; CHECK(reallocarray(p, SIZE_MAX / 2, 3) == NULL && errno == ENOMEM);
    CHECK(all(p, 10, 0x5a));
    /* Failed realloc leaves the block intact. */
    errno = 0; CHECK(realloc(p, SIZE_MAX) == NULL && errno == ENOMEM);
    errno = 0; CHECK(realloc(p, (size_t)PTRDIFF_MAX) == NULL && errno == ENOMEM);
    CHECK(all(p, 10, 0x5a));
    errno = 1234;
    q = reallocarray(p, 10, 100);
    CHECK(q && all(q, 10, 0x5a) && errno == 1234);
    /* realloc(p, 0) frees and returns NULL; realloc(NULL, n) is malloc. */
    CHECK(realloc(q, 0) == NULL);
    p = realloc(NULL, 100);
    CHECK(p && malloc_usable_size(p) >= 100);
    free(p);

    /* calloc zeroes, also after reuse. */
    for (int round = 0; round < 3; round++) {
        size_t ns[] = {1, 16, 100, 4000, 70000, 1 << 20, 5 << 20};
        for (unsigned i = 0; i < sizeof ns / sizeof *ns; i++) {
            p = malloc(ns[i]); fill(p, ns[i], 0xff); free(p);
            p = calloc(ns[i], 1);
            CHECK(p && all(p, ns[i], 0) && aligned(p, 16));
            free(p);
        }
    }

    /* 16-byte alignment for requests >= 16 (and everything, here). */
    for (size_t n = 0; n < 5000; n += 7) {
        p = malloc(n);
        CHECK(p && aligned(p, 16) && malloc_usable_size(p) >= n);
        free(p);
    }

    /* posix_memalign: EINVAL for 0, 3, 24, < sizeof(void*); out and errno
     * untouched (as glibc). */
    size_t bad[] = {0, 1, 2, 3, 4, 24, 48, 4095, (size_t)1 << 63 | 8};
    for (unsigned i = 0; i < sizeof bad / sizeof *bad; i++) {
        void *o = (void *)&ps;
        errno = 55;
        CHECK(posix_memalign(&o, bad[i], 16) == EINVAL && o == (void *)&ps && errno == 55);
    }
    /* aligned_alloc: non-power-of-two -> NULL/EINVAL. */
    size_t badaa[] = {0, 3, 24, 48, 4095};
    for (unsigned i = 0; i < sizeof badaa / sizeof *badaa; i++) {
        errno = 0; CHECK(aligned_alloc(badaa[i], 64) == NULL && errno == EINVAL);
    }
    /* Every alignment on every aligned entry point; free + usable_size work. */
    for (size_t a = 8; a <= ((size_t)1 << 24); a <<= 1) {
        size_t ns[] = {0, 1, 24, 1000, 70000, 3 << 20};
        for (unsigned i = 0; i < sizeof ns / sizeof *ns; i++) {
            size_t n = ns[i];
            errno = 1234;
            void *o = NULL;
            CHECK(posix_memalign(&o, a, n) == 0 && o && aligned(o, a));
            CHECK(malloc_usable_size(o) >= n);
            fill(o, n, 1);
            r = realloc(o, n + 100);
            CHECK(r && all(r, n, 1));
            free(r);
            p = aligned_alloc(a, n); CHECK(p && aligned(p, a) && malloc_usable_size(p) >= n);
            fill(p, n, 2); free_aligned_sized_p(p, a, n);
            p = memalign(a, n); CHECK(p && aligned(p, a) && malloc_usable_size(p) >= n);
            fill(p, n, 3); free(p);
            CHECK(errno == 1234);
        }
    }
    /* memalign rounds a non-power-of-two alignment up, like glibc. */
    p = memalign(24, 100); CHECK(p && aligned(p, 32)); free(p);
    p = memalign(0, 100); CHECK(p && aligned(p, 16)); free(p);
    errno = 0; CHECK(memalign((size_t)1 << 63 | 1, 16) == NULL && errno == EINVAL);

    /* valloc / pvalloc. */
    p = valloc(1); CHECK(p && aligned(p, ps) && malloc_usable_size(p) >= 1); free(p);
    p = pvalloc(1); CHECK(p && aligned(p, ps) && malloc_usable_size(p) >= ps); free(p);
    p = pvalloc(0); CHECK(p && aligned(p, ps) && malloc_usable_size(p) >= ps); free(p);
    p = pvalloc(ps + 1); CHECK(p && malloc_usable_size(p) >= 2 * ps);
    fill(p, 2 * ps, 9); free(p);
    errno = 0; CHECK(pvalloc(SIZE_MAX - ps / 2) == NULL && errno == ENOMEM);

    /* realloc keeps contents through every size range, both ways. */
    size_t steps[] = {1, 17, 300, 5000, 100000, 900000, 2 << 20, 9 << 20, 1 << 20, 40000, 40, 3};
    p = NULL;
    size_t prev = 0;
    for (unsigned i = 0; i < sizeof steps / sizeof *steps; i++) {
        q = realloc(p, steps[i]);
        CHECK(q != NULL);
        if (!q) break;
        size_t keep = prev < steps[i] ? prev : steps[i];
        CHECK(all(q, keep, 0x33));
        fill(q, steps[i], 0x33);
        CHECK(malloc_usable_size(q) >= steps[i]);
        p = q; prev = steps[i];
    }
    free(p);

    /* free_sized and the rest. */
    p = malloc(123); free_sized_p(p, 123);
    errno = 1234;
    CHECK(mallopt(M_TRIM_THRESHOLD, 1 << 20) == 1);
    struct mallinfo2 mi = mallinfo2();
    CHECK(mi.arena > 0);
    (void)mallinfo();
    malloc_trim(0);
    CHECK(errno == 1234);
    p = malloc(1000);
    FILE *devnull = fopen("/dev/null", "w");
    CHECK(malloc_info(0, devnull) == 0);
    fclose(devnull);
    free(p);

    /* Our own API, if present, and a heap check at the end. */
    const char *(*name)(void) = (const char *(*)(void))dlsym(RTLD_DEFAULT, "stratalloc_strategy_name");
    int (*check)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "stratalloc_check");
    CHECK(name != NULL && check != NULL);
    if (name) {
        /* STRATALLOC_EXPECT: the name when STRATALLOC_STRATEGY is not one. */
        const char *want = getenv("STRATALLOC_EXPECT");
        if (!want) want = getenv("STRATALLOC_STRATEGY");
        CHECK(strcmp(name(), want && *want ? want : "engine") == 0);
    }
    if (check) CHECK(check() == 0);
    if (failures) fprintf(stderr, "edge: %d failures\n", failures);
    return failures != 0;
}
