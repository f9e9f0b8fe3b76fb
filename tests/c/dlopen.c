/* The library dlopen'ed (not preloaded): its entry points work through
 * dlsym beside glibc's malloc, from several threads; fork still works (its
 * handlers are registered); handing it a glibc pointer is refused with a
 * message instead of corrupting anything; dlclose. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <fcntl.h>
#include "check.h"

static void *(*s_malloc)(size_t);
static void (*s_free)(void *);
static void *(*s_calloc)(size_t, size_t);
static void *(*s_realloc)(void *, size_t);
static int (*s_posix_memalign)(void **, size_t, size_t);
static size_t (*s_usable)(void *);
static const char *(*s_name)(void);
static int (*s_check)(void);
static int bad;

static void *worker(void *arg) {
    uintptr_t id = (uintptr_t)arg;
    for (int i = 0; i < 20000; i++) {
        size_t n = (i * 7919 + id) % 3000 + 1;
        unsigned char *ours = s_malloc(n);
        unsigned char *theirs = malloc(n);
        if (!ours || !theirs) { bad = 1; break; }
        memset(ours, (int)id, n);
        memset(theirs, (int)id + 1, n);
        ours = s_realloc(ours, n + 100);
        if (ours[n - 1] != (unsigned char)id || s_usable(ours) < n + 100) bad = 1;
        s_free(ours);
        free(theirs);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: dlopen path/to/libstratalloc.so\n"); return 2; }
    void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!h) { fprintf(stderr, "dlopen: %s\n", dlerror()); return 1; }
#define SYM(v, name) *(void **)&v = dlsym(h, name); CHECK(v != NULL)
    SYM(s_malloc, "malloc"); SYM(s_free, "free"); SYM(s_calloc, "calloc");
    SYM(s_realloc, "realloc"); SYM(s_posix_memalign, "posix_memalign");
    SYM(s_usable, "malloc_usable_size"); SYM(s_name, "stratalloc_strategy_name");
    SYM(s_check, "stratalloc_check");
    if (failures) return 1;
    /* The process still runs on glibc's malloc. */
    CHECK(malloc != s_malloc);
    const char *want = getenv("STRATALLOC_STRATEGY");
    CHECK(strcmp(s_name(), want && *want ? want : "engine") == 0);

    void *z = s_calloc(1000, 10);
    CHECK(z && ((char *)z)[9999] == 0);
    void *a = NULL;
    CHECK(s_posix_memalign(&a, 4096, 100) == 0 && ((uintptr_t)a & 4095) == 0);
    void *big = s_malloc(5 << 20);
    CHECK(big && s_usable(big) >= (5u << 20));
    s_free(z); s_free(a); s_free(big);

    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)(i + 1));
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    CHECK(!bad);
    CHECK(s_check() == 0);

    /* fork with the library loaded: the child can use both allocators. */
    pid_t pid = fork();
    if (pid == 0) {
        void *p = s_malloc(100), *q = malloc(100);
        s_free(p); free(q);
        _exit(p && q ? 0 : 1);
    }
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);

    /* A glibc pointer handed to our free: refused with a message. */
    int fds[2];
    CHECK(pipe(fds) == 0);
    pid = fork();
    if (pid == 0) {
        dup2(fds[1], 2);
        void *g = malloc(64);
        s_free(g);
        _exit(0); /* not refused */
    }
    close(fds[1]);
    char msg[1024] = {0};
    ssize_t got = 0, r;
    while ((r = read(fds[0], msg + got, sizeof msg - 1 - got)) > 0) got += r;
    close(fds[0]);
    CHECK(waitpid(pid, &st, 0) == pid);
    /* Every allocator (engine: segment map; strategies: regions and huge
     * headers) tells a foreign pointer from its own. */
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
    CHECK(strstr(msg, "not allocated by stratalloc") != NULL);
    if (failures) fprintf(stderr, "dlopen: glibc pointer to our free gave: %.300s\n", msg);

    CHECK(dlclose(h) == 0);
    /* Handlers of the unloaded library must be gone. */
    pid = fork();
    if (pid == 0) _exit(3);
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 3);
    printf("dlopen: ok (%s)\n", want && *want ? want : "engine");
    return failures != 0;
}
