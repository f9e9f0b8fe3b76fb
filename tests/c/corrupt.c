/* Damage a region heap's own metadata the way a buggy program does, and
 * what must follow; argv[1] picks the case (run under a region strategy,
 * STRATALLOC_STRATEGY=slab, tlsf, ...; the script runs it with a timeout).
 *   forged-link    a write after free over a free block's list links (a
 *                  pointer to readable memory outside the heap), then
 *                  allocations of its size: the allocator must abort with
 *                  "heap corruption" naming the block (printed first), not
 *                  hand the forged address out, panic, hang or crash.
 *   abort-handler  the same, with a SIGABRT handler that calls malloc and
 *                  free and prints "abort handler: malloc ok": the handler
 *                  must run to the end (the heap lock is not left held by
 *                  the aborting call), then the process dies of SIGABRT.
 *   double-free-handler  a double free with that handler installed: the
 *                  message names the pointer, then the handler runs to the
 *                  end (the refused free releases the lock before it
 *                  aborts).
 *   munmap-fails   munmap fails (a seccomp filter makes it return ENOMEM,
 *                  as it does when unmapping would exceed vm.max_map_count):
 *                  free of a huge block must return, errno unchanged, and
 *                  the heap go on working (glibc ignores the failure).
 *                  Exit 77 if seccomp is not available. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "check.h"

static void *volatile sink;
/* Where the forged links point: readable memory outside every heap. */
static uintptr_t decoy[64] __attribute__((aligned(64)));

/* Two free 64-byte blocks kept apart by live ones; the one freed last has
 * its first words (its list links in every region strategy) overwritten. */
static void forge_a_link(void) {
    char *a = malloc(64), *g1 = malloc(64), *p = malloc(64), *g2 = malloc(64);
    sink = g1;
    sink = g2;
    free(a);
    free(p);
    printf("%p\n", (void *)p);
    /* The bug: a write after free, a plausible pointer (readable memory)
     * over both link words. */
    uintptr_t forged[2] = {(uintptr_t)&decoy[16], (uintptr_t)&decoy[16]};
    memcpy(p, forged, sizeof forged);
    for (int i = 0; i < 4; i++) sink = malloc(64);
}

static void on_abort(int sig) {
    (void)sig;
    void *q = malloc(100);
    memset(q, 1, 100);
    free(q);
    static const char line[] = "abort handler: malloc ok\n";
    ssize_t n = write(2, line, sizeof line - 1);
    (void)n;
}

static int deny_munmap(void) {
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_munmap, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOMEM & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof f / sizeof f[0], .filter = f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -1;
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}

static int munmap_fails(void) {
    char *big = malloc(8 << 20); /* huge: a mapping of its own */
    char *small = malloc(100);
    CHECK(big && small);
    memset(big, 7, 8 << 20);
    if (deny_munmap() != 0) {
        printf("seccomp not available: %s\n", strerror(errno));
        return 77;
    }
    errno = EDOM;
    free(big); /* munmap fails: ignored */
    CHECK(errno == EDOM);
    char *again = malloc(8 << 20);
    CHECK(again != NULL);
    memset(again, 9, 8 << 20);
    errno = EDOM;
    free(again);
    CHECK(errno == EDOM);
    free(small);
    CHECK(errno == EDOM);
    if (failures == 0) puts("munmap-fails: ok");
    return failures;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    setvbuf(stdout, NULL, _IONBF, 0);
    if (strcmp(argv[1], "forged-link") == 0) {
        forge_a_link();
        puts("forged link went unnoticed");
        return 0;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_abort;
    if (strcmp(argv[1], "abort-handler") == 0) {
        sigaction(SIGABRT, &sa, NULL);
        forge_a_link();
        puts("forged link went unnoticed");
        return 0;
    }
    if (strcmp(argv[1], "double-free-handler") == 0) {
        sigaction(SIGABRT, &sa, NULL);
        char *p = malloc(48), *keep = malloc(48);
        sink = keep;
        free(p);
        printf("%p\n", (void *)p);
        free(p); /* the bug */
        puts("double free went unnoticed");
        return 0;
    }
    if (strcmp(argv[1], "munmap-fails") == 0) return munmap_fails();
    return 2;
}
