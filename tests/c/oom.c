/* Out of memory under RLIMIT_AS: NULL + ENOMEM (never a crash), the
 * blocks already held intact, and recovery after freeing. */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <sys/resource.h>
#include <stdint.h>
#include "check.h"

static long vm_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256]; long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmSize: %ld kB", &kb) == 1) break;
    if (f) fclose(f);
    return kb;
}

#define MAXB 1000000
static void *blocks[MAXB];

static int run(size_t size, const char *what) {
    int n = 0, got_null = 0;
    while (n < MAXB) {
        errno = 0;
        void *p = malloc(size);
        if (!p) { CHECK(errno == ENOMEM); got_null = 1; break; }
        memset(p, n & 0xff, size < 4096 ? size : 4096);
        blocks[n++] = p;
    }
    CHECK(got_null);
    /* Everything else fails cleanly too. */
    errno = 0; CHECK(calloc(1, 64 << 20) == NULL && errno == ENOMEM);
    if (n > 0) {
        errno = 0;
        void *q = realloc(blocks[0], 256 << 20);
        CHECK(q == NULL && errno == ENOMEM);
    }
    for (int i = 0; i < n; i++) {
        unsigned char *c = blocks[i];
        size_t m = size < 4096 ? size : 4096;
        for (size_t j = 0; j < m; j += 97)
            if (c[j] != (unsigned char)(i & 0xff)) { CHECK(!"content kept"); break; }
    }
    for (int i = 0; i < n; i++) free(blocks[i]);
    printf("oom: %s: %d blocks of %zu before NULL\n", what, n, size);
    /* Recovery: the freed memory serves again. (Not for bump, which by
     * design reuses nothing freed out of order while other blocks live;
     * test-c.sh sets OOM_NO_REUSE for it.) */
    if (!getenv("OOM_NO_REUSE")) {
        void *again = malloc(size);
        CHECK(again != NULL);
        free(again);
    }
    return n;
}

int main(void) {
    long kb = vm_kb();
    CHECK(kb > 0);
    struct rlimit rl;
    rl.rlim_cur = rl.rlim_max = (rlim_t)kb * 1024 + (96 << 20);
    CHECK(setrlimit(RLIMIT_AS, &rl) == 0);
    run(2 << 20, "huge");
    run(100000, "large");
    run(1000, "small");
    run(2 << 20, "huge again");
    return failures != 0;
}
