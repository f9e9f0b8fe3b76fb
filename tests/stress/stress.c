/*
 * A long stress program for a malloc loaded with LD_PRELOAD.
 *
 *   usage: stress SECONDS [THREADS]      (THREADS defaults to 8)
 *
 * What it does, all at once, until SECONDS have passed:
 *   - THREADS workers allocate, verify and free random sizes from 0 bytes to
 *     8 MiB (most small, a few above 1 MiB), with malloc, calloc, realloc,
 *     posix_memalign, aligned_alloc and memalign;
 *   - every block carries a header (size, fill byte) and is filled; the fill
 *     is VERIFIED before every free and realloc, and calloc memory is checked
 *     to be zero, so a block that overlaps another or loses its contents is
 *     found at the first changed byte;
 *   - realloc storms: one block grown and shrunk a dozen times in a row,
 *     its prefix verified at every step;
 *   - cross-thread frees: blocks are passed through a shared table of slots
 *     and freed by whichever thread takes them;
 *   - thread churn: each worker exits after a random number of operations,
 *     leaving some of its blocks in the shared table for others to free, and
 *     the main thread starts a new one;
 *   - fork while allocating: workers fork now and then; the child allocates
 *     and frees for a while (under an alarm, so a deadlocked child is seen)
 *     and must exit 0.
 * At the end it prints one line:
 *   stress: seconds=S ops=N threads=T forks=F huge=H null=Z failures=X
 * and exits 1 if failures > 0. A NULL return is counted (null=), not a
 * failure: the scripts run this under a virtual-memory limit.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define LOCAL_SLOTS 64
#define SHARED_SLOTS 512
#define MAX_FAIL_MSGS 20

typedef struct {
    size_t size;   /* bytes asked for, header included */
    uint64_t byte; /* fill byte of bytes [16, size) */
} header_t;

static _Atomic(header_t *) shared[SHARED_SLOTS];
static atomic_int stop;
static atomic_ullong total_ops, total_forks, total_huge, total_null, total_threads;
static atomic_int failures;

#define FAIL(...)                                                   \
    do {                                                            \
        if (atomic_fetch_add(&failures, 1) < MAX_FAIL_MSGS) {       \
            fprintf(stderr, "stress: FAIL: " __VA_ARGS__);          \
            fputc('\n', stderr);                                    \
        }                                                           \
    } while (0)

static uint64_t next(uint64_t *s) {
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* A size from 16 bytes to 8 MiB: mostly small, some large, a few huge. */
static size_t pick_size(uint64_t *rng) {
    uint64_t r = next(rng);
    unsigned c = r % 1000;
    r >>= 10;
    if (c < 700) return 16 + r % 241;
    if (c < 900) return 257 + r % 3840;
    if (c < 995) return 4097 + r % 61440;
    if (c < 999 || (r >> 40) % 8) return 65537 + r % (1 << 20);
    return (1 << 20) + 1 + r % (7 << 20); /* huge: above 1 MiB, 1 in 8000 */
}

static void fill(header_t *h, size_t size, uint8_t byte) {
    h->size = size;
    h->byte = byte;
    memset((char *)h + sizeof *h, byte, size - sizeof *h);
}

/* Verify header and fill of the first `upto` bytes (0 = all). */
static int verify(const header_t *h, size_t upto, const char *when) {
    size_t size = h->size;
    if (size < sizeof *h || size > (16u << 20)) {
        FAIL("%s: header of %p damaged (size %zu)", when, (void *)h, size);
        return 0;
    }
    if (upto == 0 || upto > size) upto = size;
    const uint8_t *p = (const uint8_t *)h;
    uint8_t byte = (uint8_t)h->byte;
    /* Word by word first (fast), then byte by byte to name the offset. */
    uint64_t word = 0x0101010101010101ull * byte;
    size_t i = sizeof *h;
    for (; i + 8 <= upto; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        if (w != word) break;
    }
    for (; i < upto; i++) {
        if (p[i] != byte) {
            FAIL("%s: block %p (%zu bytes) lost its fill %#x at +%zu (found %#x)", when,
                 (void *)h, size, byte, i, p[i]);
            return 0;
        }
    }
    return 1;
}

static void check_new(void *p, size_t size, size_t align, const char *fn) {
    if ((uintptr_t)p % align) FAIL("%s(%zu) = %p not aligned to %zu", fn, size, p, align);
    size_t us = malloc_usable_size(p);
    if (us < size) FAIL("%s(%zu) = %p: usable size %zu too small", fn, size, p, us);
}

static header_t *new_block(uint64_t *rng, unsigned long long *ops) {
    size_t size = pick_size(rng);
    uint64_t r = next(rng);
    void *p = NULL;
    size_t align = 16;
    const char *fn = "malloc";
    switch (r % 8) {
    case 0:
        fn = "calloc";
        p = calloc(1, size);
        if (p) {
            /* calloc memory is zero: check (a bounded prefix for huge). */
            const uint8_t *b = p;
            size_t n = size < 65536 ? size : 65536;
            for (size_t i = 0; i < n; i++)
                if (b[i]) { FAIL("calloc(%zu) = %p not zero at +%zu", size, p, i); break; }
        }
        break;
    case 1:
        fn = "posix_memalign";
        align = (size_t)1 << (4 + (r >> 8) % 9); /* 16 .. 4096 */
        if (posix_memalign(&p, align, size) != 0) p = NULL;
        break;
    case 2:
        fn = "aligned_alloc";
        align = (size_t)1 << (4 + (r >> 8) % 13); /* 16 .. 64 KiB */
        p = aligned_alloc(align, (size + align - 1) / align * align);
        break;
    case 3:
        fn = "memalign";
        align = (size_t)1 << (4 + (r >> 8) % 8);
        p = memalign(align, size);
        break;
    default:
        p = malloc(size);
    }
    (*ops)++;
    if (!p) {
        atomic_fetch_add(&total_null, 1);
        return NULL;
    }
    if (size > (1 << 20)) atomic_fetch_add(&total_huge, 1);
    check_new(p, size, align, fn);
    fill(p, size, (uint8_t)(r >> 32) | 1);
    return p;
}

static void release(header_t *h, unsigned long long *ops) {
    if (!h) return;
    verify(h, 0, "free");
    free(h);
    (*ops)++;
}

/* Grow and shrink one block a dozen times, verifying the kept prefix. */
static header_t *realloc_storm(header_t *h, uint64_t *rng, unsigned long long *ops) {
    for (int i = 0; i < 12 && h; i++) {
        size_t old = h->size;
        size_t size = (next(rng) & 1) ? pick_size(rng) : 16 + next(rng) % (old + 64);
        header_t *q = realloc(h, size);
        (*ops)++;
        if (!q) {
            atomic_fetch_add(&total_null, 1);
            verify(h, 0, "failed realloc");
            return h;
        }
        size_t kept = old < size ? old : size;
        /* The header moved with the block; its size is the old one. */
        if (q->size != old) FAIL("realloc(%zu -> %zu) = %p lost its header", old, size, (void *)q);
        else verify(q, kept, "realloc");
        if (size > (1 << 20)) atomic_fetch_add(&total_huge, 1);
        check_new(q, size, 16, "realloc");
        fill(q, size, (uint8_t)q->byte);
        h = q;
    }
    return h;
}

/* In a forked child: allocate and free for a while, then exit 0. */
static void child_work(uint64_t seed) {
    alarm(20); /* a deadlocked child dies of SIGALRM, which the parent reports */
    int before = atomic_load(&failures);
    header_t *keep[16] = {0};
    unsigned long long ops = 0;
    for (int i = 0; i < 3000; i++) {
        int k = next(&seed) % 16;
        release(keep[k], &ops);
        keep[k] = new_block(&seed, &ops);
    }
    for (int k = 0; k < 16; k++) release(keep[k], &ops);
    _exit(atomic_load(&failures) != before ? 1 : 0);
}

static void do_fork(uint64_t *rng) {
    pid_t pid = fork();
    if (pid < 0) {
        FAIL("fork: %s", strerror(errno));
        return;
    }
    if (pid == 0) child_work(next(rng));
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    atomic_fetch_add(&total_forks, 1);
    if (WIFSIGNALED(status))
        FAIL("forked child killed by signal %d%s", WTERMSIG(status),
             WTERMSIG(status) == SIGALRM ? " (deadlock?)" : "");
    else if (WEXITSTATUS(status) != 0)
        FAIL("forked child exited %d", WEXITSTATUS(status));
}

static void *worker(void *arg) {
    uint64_t rng = (uint64_t)(uintptr_t)arg * 0x9E3779B97F4A7C15ull + 1;
    header_t *local[LOCAL_SLOTS] = {0};
    unsigned long long ops = 0;
    unsigned long long life = 1000 + next(&rng) % 50000;
    while (!atomic_load_explicit(&stop, memory_order_relaxed) && ops < life) {
        uint64_t r = next(&rng);
        int k = (r >> 8) % LOCAL_SLOTS;
        unsigned c = r % 1000;
        if (c < 600) {
            release(local[k], &ops);
            local[k] = new_block(&rng, &ops);
        } else if (c < 640) {
            local[k] = realloc_storm(local[k] ? local[k] : new_block(&rng, &ops), &rng, &ops);
        } else if (c < 900) {
            /* Trade with the shared table: our block in, someone's out. */
            int s = (r >> 20) % SHARED_SLOTS;
            header_t *got = atomic_exchange(&shared[s], local[k]);
            local[k] = NULL;
            if (got && (r >> 40) & 1) {
                release(got, &ops); /* a cross-thread free */
            } else {
                if (got) verify(got, 0, "cross-thread take");
                local[k] = got;
            }
        } else if (c < 999) {
            /* Tiny requests, 0 to 15 bytes, freed at once. */
            size_t n = (r >> 16) % 16;
            uint8_t *p = malloc(n);
            ops++;
            if (!p) { atomic_fetch_add(&total_null, 1); continue; }
            check_new(p, n, 16, "malloc");
            memset(p, 0x5c, n);
            for (size_t i = 0; i < n; i++)
                if (p[i] != 0x5c) { FAIL("tiny block %p lost a byte", (void *)p); break; }
            free(p);
            ops++;
        } else if ((r >> 32) % 4 == 0) {
            do_fork(&rng);
        }
    }
    /* Thread exit: leave half our blocks to other threads, free the rest. */
    for (int k = 0; k < LOCAL_SLOTS; k++) {
        if (local[k] && (k & 1)) {
            header_t *got = atomic_exchange(&shared[(next(&rng) >> 5) % SHARED_SLOTS], local[k]);
            release(got, &ops);
        } else {
            release(local[k], &ops);
        }
    }
    atomic_fetch_add(&total_ops, ops);
    return NULL;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s SECONDS [THREADS]\n", argv[0]);
        return 2;
    }
    double seconds = atof(argv[1]);
    int nthreads = argc > 2 ? atoi(argv[2]) : 8;
    if (nthreads < 1 || nthreads > 256) nthreads = 8;
    pthread_t *tids = calloc(nthreads, sizeof *tids);
    int *running = calloc(nthreads, sizeof *running);
    uint64_t seed = (uint64_t)time(NULL);
    if (getenv("STRESS_SEED")) seed = strtoull(getenv("STRESS_SEED"), NULL, 0);
    fprintf(stderr, "stress: seed=%llu threads=%d seconds=%g\n", (unsigned long long)seed, nthreads, seconds);
    double start = now();
    unsigned long long started = 0;
    /* Keep `nthreads` workers alive; each exits after its own lifetime, and
     * the main thread replaces it (thread churn). Workers are joined in turn. */
    for (int i = 0; i < nthreads; i++) {
        if (pthread_create(&tids[i], NULL, worker, (void *)(uintptr_t)(seed + ++started)) == 0)
            running[i] = 1;
    }
    while (now() - start < seconds) {
        for (int i = 0; i < nthreads; i++) {
            if (running[i] && pthread_tryjoin_np(tids[i], NULL) == 0) running[i] = 0;
            if (!running[i] &&
                pthread_create(&tids[i], NULL, worker, (void *)(uintptr_t)(seed + ++started)) == 0)
                running[i] = 1;
        }
        usleep(1000);
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < nthreads; i++)
        if (running[i]) pthread_join(tids[i], NULL);
    /* Drain the shared table. */
    unsigned long long ops = 0;
    for (int s = 0; s < SHARED_SLOTS; s++) release(atomic_exchange(&shared[s], NULL), &ops);
    atomic_fetch_add(&total_ops, ops);
    atomic_store(&total_threads, started);
    free(tids);
    free(running);
    printf("stress: seconds=%.1f ops=%llu threads=%llu forks=%llu huge=%llu null=%llu failures=%d\n",
           now() - start, (unsigned long long)total_ops, (unsigned long long)total_threads,
           (unsigned long long)total_forks, (unsigned long long)total_huge,
           (unsigned long long)total_null, atomic_load(&failures));
    return atomic_load(&failures) ? 1 : 0;
}
