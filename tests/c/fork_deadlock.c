/* Lock order between fork and stdio. Threads that fork, threads that read a
 * long line with getline (which holds the FILE's lock while it grows its
 * buffer with realloc) and a thread that flushes every stream (which holds
 * stdio's list lock while it takes each FILE's lock) run together for a
 * while. An allocator whose fork handler takes its own locks before fork
 * takes the list lock closes a cycle: forker -> list lock -> flusher ->
 * FILE lock -> reader -> allocator lock -> forker. The run then hangs; the
 * script's timeout reports it.
 *
 * Each child allocates before it exits (small, large and huge blocks, and a
 * thread of its own), so a child that inherited allocator state in a bad
 * way fails too; a churn thread keeps the allocators' shared state busy at
 * the forks (huge blocks, threads started and ended).
 *
 *   fork_deadlock [SECONDS]     (default 1)
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "check.h"

enum { FORKERS = 3, READERS = 6, LINE = 40000 };

static atomic_int stop;
static atomic_long forks, lines, flushes;
static char path[64];

static void *child_thread(void *arg) {
    for (int i = 0; i < 200; i++) {
        char *p = malloc((size_t)(i * 97 % 4000) + 1);
        if (!p) return arg;
        p[0] = 1;
        free(p);
    }
    return NULL;
}

/* What a child does: allocate in every size range, start a thread. */
static int child_work(void) {
    char *v[64];
    for (int i = 0; i < 64; i++) {
        v[i] = malloc((size_t)i * 301 + 1);
        if (!v[i]) return 1;
        memset(v[i], i, (size_t)i * 301 + 1);
    }
    char *large = malloc(700 << 10), *huge = malloc(5 << 20);
    if (!large || !huge) return 1;
    large[0] = huge[(5 << 20) - 1] = 1;
    free(huge);
    free(large);
    for (int i = 0; i < 64; i++) free(v[i]);
    pthread_t t;
    void *r = (void *)1;
    if (pthread_create(&t, NULL, child_thread, NULL) != 0 || pthread_join(t, &r) != 0) return 1;
    return r == NULL ? 0 : 1;
}

static void *forker(void *arg) {
    (void)arg;
    while (!atomic_load(&stop)) {
        pid_t pid = fork();
        if (pid == 0) _exit(child_work() == 0 ? 17 : 1);
        CHECK(pid > 0);
        if (pid < 0) return NULL;
        int st;
        CHECK(waitpid(pid, &st, 0) == pid);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 17);
        atomic_fetch_add(&forks, 1);
    }
    return NULL;
}

static void *reader(void *arg) {
    (void)arg;
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    if (!f) return NULL;
    while (!atomic_load(&stop)) {
        rewind(f);
        char *line = NULL;
        size_t cap = 0;
        ssize_t n = getline(&line, &cap, f);
        CHECK(n == LINE + 1);
        free(line);
        atomic_fetch_add(&lines, 1);
    }
    fclose(f);
    return NULL;
}

static void *churn(void *arg) {
    (void)arg;
    while (!atomic_load(&stop)) {
        char *h = malloc(3 << 20);
        CHECK(h != NULL);
        if (h) h[0] = 1;
        free(h);
        pthread_t t;
        void *r = (void *)1;
        CHECK(pthread_create(&t, NULL, child_thread, NULL) == 0 && pthread_join(t, &r) == 0);
        CHECK(r == NULL);
    }
    return NULL;
}

static void *flusher(void *arg) {
    (void)arg;
    while (!atomic_load(&stop)) {
        CHECK(fflush(NULL) == 0);
        atomic_fetch_add(&flushes, 1);
    }
    return NULL;
}

int main(int argc, char **argv) {
    double secs = argc > 1 ? atof(argv[1]) : 1.0;
    snprintf(path, sizeof path, "/tmp/stratalloc-fork-deadlock.%d", (int)getpid());
    FILE *w = fopen(path, "w");
    CHECK(w != NULL);
    if (!w) return 1;
    for (int i = 0; i < LINE; i++) fputc('x', w);
    fputc('\n', w);
    CHECK(fclose(w) == 0);

    pthread_t t[FORKERS + READERS + 2];
    int n = 0;
    for (int i = 0; i < FORKERS; i++) pthread_create(&t[n++], NULL, forker, NULL);
    for (int i = 0; i < READERS; i++) pthread_create(&t[n++], NULL, reader, NULL);
    pthread_create(&t[n++], NULL, flusher, NULL);
    pthread_create(&t[n++], NULL, churn, NULL);
    usleep((useconds_t)(secs * 1e6));
    atomic_store(&stop, 1);
    for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
    unlink(path);
    CHECK(forks > 0 && lines > 0 && flushes > 0);
    printf("fork_deadlock: %ld forks, %ld lines, %ld flushes\n", (long)forks, (long)lines,
           (long)flushes);
    return failures != 0;
}
