/*
 * Misuse cases for a preloaded malloc: each case does one thing a buggy C
 * program does, then keeps allocating for a while (so a checker that finds
 * damage late still gets its chance) and exits 0 if nothing stopped it.
 *
 *   usage: misuse CASE        (misuse --list prints the cases)
 *
 * scripts/test-misuse.sh runs every case under LD_PRELOAD, in default and in
 * check mode (STRATALLOC_CHECK=1), and compares the outcome with
 * tests/misuse/expected.tsv. Outcomes: "caught" (killed by a signal after
 * the allocator printed a message), "crash" (killed without the message),
 * "silent" (exit 0: the misuse went unnoticed).
 *
 * The compiler must not see through the misuse, so pointers pass through
 * `launder` (an opaque volatile store and load).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
#include <stdalign.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *volatile sink;
static void *launder(void *p) { sink = p; return sink; }

/* Name the pointer the misuse is about, so the script can require the
 * allocator's message to name it too ("caught" means: the right pointer). */
static void *target(void *p) {
    fprintf(stderr, "misuse: target %p\n", p);
    fflush(stderr);
    return launder(p);
}

/* Keep the allocator busy after the misuse: mixed sizes, some kept live,
 * contents checked, so late detection (and late damage) shows. */
static void churn(int rounds) {
    enum { N = 64 };
    unsigned char *keep[N] = {0};
    size_t len[N] = {0};
    uint32_t x = 12345;
    for (int i = 0; i < rounds; i++) {
        x = x * 1103515245u + 12345u;
        int k = (x >> 8) % N;
        if (keep[k]) {
            for (size_t j = 0; j < len[k]; j++)
                if (keep[k][j] != (unsigned char)k) {
                    fprintf(stderr, "misuse: live block %p lost its contents\n", (void *)keep[k]);
                    exit(3);
                }
            free(keep[k]);
        }
        len[k] = ((x >> 16) % 4 == 0) ? (x >> 12) % 70000 : (x >> 12) % 600;
        keep[k] = malloc(len[k]);
        if (!keep[k]) { fprintf(stderr, "misuse: malloc failed\n"); exit(4); }
        memset(keep[k], k, len[k]);
    }
    for (int k = 0; k < N; k++) free(keep[k]);
}

static alignas(64) char global_buf[256];

typedef void (*free_sized_fn)(void *, size_t);

static int c_double_free_small(void) { char *p = malloc(32); free(p); free(target(p)); return 0; }
static int c_double_free_large(void) { char *p = malloc(256 << 10); free(p); free(target(p)); return 0; }
static int c_double_free_huge(void) { char *p = malloc(8 << 20); free(p); free(target(p)); return 0; }
static int c_double_free_delayed(void) {
    char *p = malloc(48);
    free(p);
    churn(2000);
    free(target(p));
    return 0;
}
/* free(p + off) of a live block: an allocator that does not notice may
 * free the whole block under the program's feet; churn then reuses it and
 * the check of p's contents reports damage (exit 3). */
static int interior(size_t size, size_t off) {
    unsigned char *p = malloc(size);
    memset(p, 0x77, size);
    free(target(p + off)); /* the bug */
    churn(3000);
    for (size_t i = 0; i < size; i++)
        if (p[i] != 0x77) {
            fprintf(stderr, "misuse: free(p+%zu) freed the live block %p\n", off, (void *)p);
            exit(3);
        }
    free(p);
    return 0;
}
static int c_free_interior_1(void) { return interior(64, 1); }
static int c_free_interior_16(void) { return interior(256, 16); }
static int c_free_interior_large(void) { return interior(300 << 10, 4096); }
static int c_free_stack(void) { alignas(64) char buf[256]; memset(buf, 0, sizeof buf); free(target(buf + 64)); return 0; }
static int c_free_global(void) { free(target(global_buf + 64)); return 0; }
static int overflow(size_t size, size_t by) {
    unsigned char *p = target(malloc(size));
    memset(p, 1, size);
    memset(p + size, 0x42, by); /* the bug */
    free(p);
    return 0;
}
static int c_overflow1_small(void) { return overflow(24, 1); }
static int c_overflow8_small(void) { return overflow(40, 8); }
static int c_overflow1_large(void) { return overflow(100000, 1); }
static int c_overflow8_large(void) { return overflow(100000, 8); }
static int c_write_after_free_small(void) {
    char *p = malloc(64);
    free(p);
    memset(target(p), 0x41, 64); /* the bug */
    churn(2000);
    return 0;
}
static int c_write_after_free_large(void) {
    char *p = malloc(200 << 10);
    free(p);
    memset(target(p), 0x41, 4096); /* the bug */
    churn(2000);
    return 0;
}
static int c_realloc_after_free(void) { char *p = malloc(64); free(p); p = realloc(target(p), 128); free(p); return 0; }
static int c_free_sized_mismatch(void) {
    free_sized_fn fs = (free_sized_fn)dlsym(RTLD_DEFAULT, "free_sized");
    if (!fs) { fprintf(stderr, "misuse: free_sized not provided\n"); return 77; }
    char *p = malloc(100);
    fs(target(p), 5000); /* the bug: wrong size */
    return 0;
}
static int c_free_sized_small_mismatch(void) {
    free_sized_fn fs = (free_sized_fn)dlsym(RTLD_DEFAULT, "free_sized");
    if (!fs) { fprintf(stderr, "misuse: free_sized not provided\n"); return 77; }
    char *p = malloc(100);
    fs(target(p), 40); /* the bug: wrong size, same small range */
    return 0;
}
static int c_clean(void) { /* control: no misuse at all */ return 0; }

static const struct { const char *name; int (*run)(void); } cases[] = {
    {"clean", c_clean},
    {"double_free_small", c_double_free_small},
    {"double_free_large", c_double_free_large},
    {"double_free_huge", c_double_free_huge},
    {"double_free_delayed", c_double_free_delayed},
    {"free_interior_1", c_free_interior_1},
    {"free_interior_16", c_free_interior_16},
    {"free_interior_large", c_free_interior_large},
    {"free_stack", c_free_stack},
    {"free_global", c_free_global},
    {"overflow1_small", c_overflow1_small},
    {"overflow8_small", c_overflow8_small},
    {"overflow1_large", c_overflow1_large},
    {"overflow8_large", c_overflow8_large},
    {"write_after_free_small", c_write_after_free_small},
    {"write_after_free_large", c_write_after_free_large},
    {"realloc_after_free", c_realloc_after_free},
    {"free_sized_mismatch", c_free_sized_mismatch},
    {"free_sized_small_mismatch", c_free_sized_small_mismatch},
};

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: %s CASE | --list\n", argv[0]); return 2; }
    size_t n = sizeof cases / sizeof cases[0];
    if (strcmp(argv[1], "--list") == 0) {
        for (size_t i = 0; i < n; i++) puts(cases[i].name);
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (strcmp(argv[1], cases[i].name) == 0) {
            int rc = cases[i].run();
            if (rc) return rc;
            churn(3000);
            printf("misuse: %s went unnoticed\n", cases[i].name);
            return 0;
        }
    }
    fprintf(stderr, "misuse: unknown case %s\n", argv[1]);
    return 2;
}
