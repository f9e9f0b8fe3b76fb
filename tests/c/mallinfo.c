/* mallinfo2 / mallinfo / malloc_stats / malloc_info read as glibc documents
 * them, on a program whose allocations are known. scripts/test-c.sh runs it
 * on glibc itself (so each check is what glibc does) and on the engine and
 * every strategy.
 *
 * The meanings checked (glibc's mallinfo(3) and malloc.c):
 *   arena     bytes the allocator holds for ordinary blocks (not blocks in a
 *             mapping of their own); arena == uordblks + fordblks
 *   uordblks  bytes in ordinary blocks in use
 *   fordblks  the rest of arena (free)
 *   hblks     blocks in a mapping of their own, hblkhd their bytes
 *   keepcost  free bytes malloc_trim could give back, part of fordblks
 *   malloc_stats: "Arena 0:", "system bytes = N", "in use bytes = N", then
 *             "Total (incl. mmap):" with the mapped blocks added
 *   malloc_info: <total type="mmap" count= size=> the mapped blocks,
 *             <system type="current" size=> the arena
 * and, while 4 threads map, move and unmap segments and huge blocks, the
 * figures stay consistent (the engine walks its segments when asked: a
 * walk that read an unmapped header crashed here 3 runs in 8). */
#define _GNU_SOURCE
#pragma GCC diagnostic ignored "-Wdeprecated-declarations" /* mallinfo */
#include <malloc.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>
#include "check.h"

#define N 100
#define SMALL 1000
#define HUGE ((size_t)64 << 20)

static void consistent(const struct mallinfo2 *m, int line) {
    if (m->uordblks + m->fordblks != m->arena || m->keepcost > m->fordblks) {
        fprintf(stderr, "line %d: arena %zu uordblks %zu fordblks %zu keepcost %zu\n", line,
                m->arena, m->uordblks, m->fordblks, m->keepcost);
        failures++;
    }
}

/* Run `f` with standard error sent to a temporary file; the output is left
 * in `out` (NUL-terminated). */
static char out[1 << 16];
static void capture_stderr(void (*f)(void)) {
    char path[] = "/tmp/stratalloc-mallinfo.XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) return;
    unlink(path);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    f();
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    ssize_t n = pread(fd, out, sizeof out - 1, 0);
    out[n > 0 ? n : 0] = 0;
    close(fd);
}

/* The number after `key` ... "=" in `s` (the first occurrence), or -1. */
static long long after(const char *s, const char *key) {
    const char *p = s ? strstr(s, key) : NULL;
    if (!p) return -1;
    p = strchr(p, '=');
    return p ? atoll(p + 1) : -1;
}

static long long attr(const char *tag, const char *name) {
    /* In <total type="mmap" count="1" size="..."/>: the value of name="..." */
    const char *p = strstr(out, tag);
    if (!p) return -1;
    const char *end = strchr(p, '>');
    char key[32];
    snprintf(key, sizeof key, " %s=\"", name);
    const char *q = strstr(p, key);
    if (!q || (end && q > end)) return -1;
    return atoll(q + strlen(key));
}

static void stats(void) { malloc_stats(); }

/* Threads that map and unmap segments and huge blocks (and move them with
 * realloc) while main reads the figures: the reads must not crash and
 * must stay consistent. */
static int done;
static void *churn(void *arg) {
    unsigned x = (unsigned)(size_t)arg;
    void *keep[64] = {0};
    for (int round = 0; round < 3000; round++) {
        x = x * 1103515245u + 12345u;
        int i = (x >> 8) % 64;
        free(keep[i]);
        size_t n = (x >> 16) % 8 == 0 ? ((size_t)3 << 20) + (x % 4096) : 16 + (x >> 12) % 20000;
        keep[i] = malloc(n);
        if (keep[i] && n > (1 << 20)) keep[i] = realloc(keep[i], n * 2);
    }
    for (int i = 0; i < 64; i++) free(keep[i]);
    __atomic_add_fetch(&done, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void concurrent(void) {
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, churn, (void *)(size_t)(i + 1));
    int reads = 0;
    while (__atomic_load_n(&done, __ATOMIC_ACQUIRE) < 4) {
        struct mallinfo2 m = mallinfo2();
        consistent(&m, __LINE__);
        reads++;
    }
    CHECK(reads > 0);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
}

static FILE *info;
static void minfo(void) {
    rewind(info);
    CHECK(malloc_info(0, info) == 0);
    fflush(info);
    long n = ftell(info);
    rewind(info);
    size_t got = fread(out, 1, n > 0 && n < (long)sizeof out ? (size_t)n : sizeof out - 1, info);
    out[got] = 0;
}

int main(void) {
    static void *p[N];
    info = tmpfile();
    CHECK(info != NULL);
    if (!info) return 1;
    setvbuf(info, NULL, _IOFBF, 1 << 12);
    fputs("warm the stream's buffer\n", info);
    fflush(info);
    capture_stderr(stats); /* and stderr's */

    struct mallinfo2 m0 = mallinfo2();
    consistent(&m0, __LINE__);
    for (int i = 0; i < N; i++) {
        p[i] = malloc(SMALL);
        memset(p[i], i, SMALL);
    }
    struct mallinfo2 m1 = mallinfo2();
    consistent(&m1, __LINE__);
    CHECK(m1.uordblks >= m0.uordblks + N * SMALL);
    CHECK(m1.arena >= N * SMALL);
    CHECK(m1.hblks == m0.hblks && m1.hblkhd == m0.hblkhd);

    /* mallinfo: the same figures in ints */
    struct mallinfo mi = mallinfo();
    CHECK((size_t)mi.uordblks == m1.uordblks && (size_t)mi.arena == m1.arena);
    CHECK((size_t)mi.hblkhd == m1.hblkhd && (size_t)mi.fordblks == m1.fordblks);

    /* malloc_stats: in use and mapped, per arena and in total */
    capture_stderr(stats);
    const char *arena0 = strstr(out, "Arena 0:");
    const char *total = strstr(out, "Total (incl. mmap):");
    CHECK(arena0 != NULL && total != NULL);
    CHECK(after(arena0, "system bytes") >= (long long)N * SMALL);
    CHECK(after(arena0, "in use bytes") >= (long long)N * SMALL);
    CHECK(after(total, "in use bytes") >= (long long)N * SMALL);
    if (failures) fprintf(stderr, "malloc_stats printed:\n%s", out);

    /* malloc_info: the arena under "system", no mapped block yet */
    int before = failures;
    struct mallinfo2 mb = mallinfo2();
    minfo();
    CHECK(attr("<total type=\"mmap\"", "count") == (long long)mb.hblks);
    CHECK(attr("<total type=\"mmap\"", "size") == (long long)mb.hblkhd);
    CHECK(attr("<system type=\"current\"", "size") == (long long)mb.arena);
    CHECK(attr("<total type=\"mmap\"", "size") < (long long)N * SMALL);

    for (int i = 0; i < N; i++) free(p[i]);
    struct mallinfo2 m2 = mallinfo2();
    consistent(&m2, __LINE__);
    /* (glibc keeps 7 freed blocks of a size in its thread cache, counted
     * in use: at least half the bytes must come back) */
    if (!getenv("STRATALLOC_CHECK")) CHECK(m2.uordblks + N * SMALL / 2 <= m1.uordblks);

    /* A huge block: in a mapping of its own, counted by hblks/hblkhd. */
    char *h = malloc(HUGE);
    CHECK(h != NULL);
    memset(h, 1, 4096);
    struct mallinfo2 m3 = mallinfo2();
    consistent(&m3, __LINE__);
    CHECK(m3.hblks >= m2.hblks + 1);
    CHECK(m3.hblkhd >= m2.hblkhd + HUGE);
    CHECK(m3.uordblks < m2.uordblks + HUGE);

    capture_stderr(stats);
    total = strstr(out, "Total (incl. mmap):");
    CHECK(total != NULL);
    CHECK(after(total, "in use bytes") >= (long long)HUGE);
    CHECK(after(total, "system bytes") >= (long long)HUGE);
    if (failures > before) fprintf(stderr, "malloc_stats printed:\n%s", out);

    before = failures;
    m3 = mallinfo2();
    minfo();
    CHECK(attr("<total type=\"mmap\"", "count") == (long long)m3.hblks);
    CHECK(attr("<total type=\"mmap\"", "size") == (long long)m3.hblkhd);
    CHECK(attr("<total type=\"mmap\"", "size") >= (long long)HUGE);
    if (failures > before) fprintf(stderr, "malloc_info printed:\n%s", out);

    free(h);
    struct mallinfo2 m4 = mallinfo2();
    consistent(&m4, __LINE__);
    /* (check mode holds freed blocks in quarantine for a while) */
    if (!getenv("STRATALLOC_CHECK")) {
        CHECK(m4.hblkhd + HUGE <= m3.hblkhd);
        CHECK(m4.hblks < m3.hblks);
    }
    concurrent();
    if (failures)
        fprintf(stderr, "arena %zu uordblks %zu fordblks %zu hblks %zu hblkhd %zu keepcost %zu\n",
                m3.arena, m3.uordblks, m3.fordblks, m3.hblks, m3.hblkhd, m3.keepcost);
    return failures;
}
