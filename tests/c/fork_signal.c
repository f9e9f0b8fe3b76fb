/* fork from a signal handler, the way programs that fork in a SIGCHLD or
 * timer handler do it. A hang is reported by the script's timeout.
 *
 *   fork_signal [N]          single-threaded: the main thread allocates and
 *                            frees blocks of up to 70 000 bytes while a helper
 *                            process signals it; each signal forks (the child
 *                            _exits). N signals are handled (default 300).
 *                            One block in 16 is huge (2..5 MiB).
 *                            The signal lands inside malloc and free, often
 *                            while the allocator holds a lock of its own.
 *   fork_signal threads [N]  the same with a second thread allocating (the
 *                            signal goes to the main thread only), so the
 *                            process is multi-threaded and the fork
 *                            handlers take (or skip) their locks.
 *   fork_signal race [N]     the same with a second thread that forks in a
 *                            loop, and a handler that waits until that
 *                            thread has started its next fork before it
 *                            forks too: two forks at once, one of them
 *                            from a handler that interrupted the
 *                            allocator inside its lock, so the other
 *                            fork's prepare handlers run while that lock
 *                            is held by a thread that is itself about to
 *                            fork (a lock-order cycle through stdio's list
 *                            lock if prepare waits for it).
 *   fork_signal nested [N]   the parent forks a child that signals it at
 *                            once, so the signal lands while the parent is
 *                            still inside fork (in its fork handlers); the
 *                            handler forks again and that child calls exit()
 *                            (atexit handlers, stdio). N rounds (default 100).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "check.h"

enum { SLOTS = 1009, MAX_SIZE = 70000 };

/* Shared with the helper process: it signals only while `armed` is set and
 * clears it, so each iteration of the main loop takes at most one signal
 * and the loop always makes progress. */
static atomic_int *armed;
static volatile sig_atomic_t handled, handler_fails;

static void fork_and_reap(int use_exit) {
    int saved = errno;
    pid_t pid = fork();
    if (pid == 0) {
        if (use_exit) exit(0);
        _exit(0);
    }
    if (pid < 0) {
        handler_fails++;
    } else {
        int st;
        pid_t r;
        while ((r = waitpid(pid, &st, 0)) < 0 && errno == EINTR) {
        }
        if (r != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) handler_fails++;
    }
    handled++;
    errno = saved;
}

/* `race`: forks started by the forking thread (it counts before each). */
static atomic_int racing, race_forks;

static void on_usr1(int sig) {
    (void)sig;
    if (atomic_load(&racing)) {
        /* Let the other thread's next fork begin (its prepare handlers
         * run while this thread may hold the allocator's lock), up to
         * 20 ms. nanosleep is async-signal-safe. */
        int seen = atomic_load(&race_forks);
        struct timespec ts = {0, 20000};
        for (int i = 0; i < 1000 && atomic_load(&race_forks) == seen; i++) nanosleep(&ts, NULL);
        ts.tv_nsec = 200000;
        nanosleep(&ts, NULL);
    }
    fork_and_reap(0);
}

static void on_alrm(int sig) {
    (void)sig;
    fork_and_reap(1);
}

static atomic_int stop_busy;

static void *busy(void *arg) {
    (void)arg;
    /* Only the main thread takes the signal (this thread starts with it
     * blocked): a fork from a signal handler that interrupted malloc, in a
     * multi-threaded process. (Two threads that each fork from a handler
     * that interrupted a critical section of a different lock cannot both
     * go on: each child needs the section the other thread left.) */
    void *v[64] = {0};
    unsigned seed = 7;
    while (!atomic_load(&stop_busy)) {
        int k = rand_r(&seed) % 64;
        free(v[k]);
        v[k] = malloc((size_t)(rand_r(&seed) % MAX_SIZE));
    }
    for (int k = 0; k < 64; k++) free(v[k]);
    return NULL;
}

/* `race`: fork in a loop (each child _exits at once) while the main
 * thread forks from its signal handler. */
static void *forker(void *arg) {
    (void)arg;
    while (!atomic_load(&stop_busy)) {
        atomic_fetch_add(&race_forks, 1);
        pid_t pid = fork();
        if (pid == 0) _exit(0);
        if (pid < 0) {
            handler_fails++;
            continue;
        }
        int st;
        pid_t r;
        while ((r = waitpid(pid, &st, 0)) < 0 && errno == EINTR) {
        }
        if (r != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) handler_fails++;
    }
    return NULL;
}

static pid_t start_sender(void) {
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        unsigned seed = 3;
        for (;;) {
            int one = 1;
            if (atomic_compare_exchange_strong(armed, &one, 0)) {
                /* A random delay, so the signal lands anywhere in the loop. */
                for (volatile int d = rand_r(&seed) % 4000; d > 0; d--) {
                }
                if (kill(parent, SIGUSR1) != 0) _exit(1);
            }
            sched_yield();
        }
    }
    return pid;
}

/* threads: 0 alone, 1 with a thread allocating (`busy`), 2 with a thread
 * forking (`forker`). */
static int run_signals(int n, int threads) {
    armed = mmap(NULL, sizeof *armed, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(armed != MAP_FAILED);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
    /* The second thread starts with SIGUSR1 blocked (it inherits the
     * mask), so a signal can never reach it before it runs. */
    sigset_t usr1, old;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &usr1, &old);
    pthread_t t;
    atomic_store(&racing, threads == 2);
    if (threads) CHECK(pthread_create(&t, NULL, threads == 2 ? forker : busy, NULL) == 0);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pid_t sender = start_sender();
    CHECK(sender > 0);

    void *slot[SLOTS] = {0};
    unsigned seed = 1;
    unsigned long iters = 0;
    while (handled < n) {
        atomic_store(armed, 1);
        int k = rand_r(&seed) % SLOTS;
        free(slot[k]);
        /* Mostly small and large blocks; one in 16 huge (the engine's
         * huge-block cache is under its global lock). */
        size_t size = (size_t)(rand_r(&seed) % MAX_SIZE);
        if (rand_r(&seed) % 16 == 0) size = (size_t)(2 + rand_r(&seed) % 4) << 20;
        slot[k] = malloc(size);
        CHECK(slot[k] != NULL);
        if (slot[k]) memset(slot[k], 0xa5, size < 64 ? size : 64);
        iters++;
    }
    atomic_store(armed, 0);
    signal(SIGUSR1, SIG_IGN);
    kill(sender, SIGKILL);
    waitpid(sender, NULL, 0);
    if (threads) {
        atomic_store(&stop_busy, 1);
        pthread_join(t, NULL);
    }
    for (int k = 0; k < SLOTS; k++) free(slot[k]);
    CHECK(handler_fails == 0);
    printf("fork_signal: %d forks from the handler over %lu malloc/free pairs", (int)handled, iters);
    if (threads == 2) printf(", racing %d forks of a second thread\n", (int)race_forks);
    else printf("%s\n", threads ? ", two threads" : "");
    return failures != 0;
}

static int run_nested(int n) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alrm;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGALRM, &sa, NULL) == 0);
    free(malloc(16));
    for (int i = 0; i < n; i++) {
        pid_t parent = getpid();
        pid_t pid = fork();
        if (pid == 0) {
            kill(parent, SIGALRM);
            exit(0);
        }
        CHECK(pid > 0);
        pid_t r;
        while ((r = waitpid(pid, NULL, 0)) < 0 && errno == EINTR) {
        }
        CHECK(r == pid);
    }
    CHECK(handler_fails == 0);
    printf("fork_signal nested: %d rounds, %d forks from the handler\n", n, (int)handled);
    return failures != 0;
}

int main(int argc, char **argv) {
    int a = 1;
    int threads = 0, nested = 0;
    if (argc > a && strcmp(argv[a], "threads") == 0) threads = 1, a++;
    else if (argc > a && strcmp(argv[a], "race") == 0) threads = 2, a++;
    else if (argc > a && strcmp(argv[a], "nested") == 0) nested = 1, a++;
    int n = argc > a ? atoi(argv[a]) : (nested ? 100 : 300);
    return nested ? run_nested(n) : run_signals(n, threads);
}
