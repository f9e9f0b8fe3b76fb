/* fork while other threads allocate and print; the child allocates, prints
 * and exits. Then fork from a signal handler that may interrupt malloc. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>
#include "check.h"

static volatile int stop;

static void *churn(void *arg) {
    FILE *out = fopen("/dev/null", "w");
    unsigned long i = (uintptr_t)arg;
    while (!stop) {
        size_t n = (i * 2654435761u) % 5000 + 1;
        char *p = malloc(n);
        memset(p, 1, n);
        fprintf(out, "thread %lu block %zu %p\n", (unsigned long)(uintptr_t)arg, n, (void *)p);
        if (i % 100 == 0) { char *b = malloc(1 << 20); b[0] = 1; free(b); }
        free(p);
        i++;
    }
    fclose(out);
    return NULL;
}

static volatile sig_atomic_t handler_forks, handler_fails, stop_timer;
/* One-shot 2 ms timer, re-armed by the handler after each fork: a periodic
 * one could fire during every fork of a large address space, and the
 * kernel restarts a fork that a signal interrupted (a livelock). */
static void arm(void) {
    struct itimerval it = {{0, 0}, {0, stop_timer ? 0 : 2000}};
    setitimer(ITIMER_REAL, &it, NULL);
}
static void on_alarm(int sig) {
    (void)sig;
    pid_t pid = fork();
    if (pid == 0) _exit(42);
    if (pid < 0) { handler_fails++; return; }
    int st;
    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 42) handler_fails++;
    handler_forks++;
    arm();
}

int main(void) {
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, churn, (void *)(uintptr_t)(i + 1));
    int ok = 0;
    for (int k = 0; k < 200; k++) {
        pid_t pid = fork();
        if (pid == 0) {
            /* Child: the allocator and stdio must work. */
            char *v[100];
            for (int i = 0; i < 100; i++) { v[i] = malloc(i * 37 + 1); memset(v[i], i, i * 37 + 1); }
            char *big = malloc(3 << 20); memset(big, 2, 3 << 20);
            for (int i = 0; i < 100; i++) free(v[i]);
            free(big);
            FILE *f = fopen("/dev/null", "w");
            fprintf(f, "child %d\n", k);
            fclose(f);
            _exit(7);
        }
        CHECK(pid > 0);
        int st;
        CHECK(waitpid(pid, &st, 0) == pid);
        if (WIFEXITED(st) && WEXITSTATUS(st) == 7) ok++;
        else fprintf(stderr, "fork %d: child status %#x\n", k, st);
    }
    stop = 1;
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    CHECK(ok == 200);

    /* Fork from a signal handler, the main thread busy in malloc/free. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &sa, NULL);
    arm();
    unsigned long n = 0;
    while (handler_forks < 50) {
        size_t sz = (n * 7919) % 3000 + 1;
        void *p = malloc(sz);
        void *q = realloc(p, sz * 2);
        free(q ? q : p);
        n++;
    }
    stop_timer = 1;
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    CHECK(handler_fails == 0);
    printf("fork: %d forks under threads, %d from a signal handler\n", ok, (int)handler_forks);
    return failures != 0;
}
