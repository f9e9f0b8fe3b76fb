/* malloc_stats() is not a cancellation point: glibc writes its report with
 * cancellation disabled, so a thread with a pending deferred cancel gets
 * the whole report and is cancelled only at its next cancellation point.
 * Standard error goes to a temporary file here so the report can be read
 * back. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>
#include "check.h"

static volatile int returned;

static void *worker(void *arg) {
    (void)arg;
    void *p = malloc(1000); /* something to report */
    CHECK(pthread_cancel(pthread_self()) == 0); /* deferred: now pending */
    malloc_stats();
    returned = 1;
    free(p);
    pthread_testcancel(); /* the cancel is still pending: acts here */
    return NULL;
}

int main(void) {
    char path[] = "/tmp/stratalloc-stats-cancel.XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) return 1;
    unlink(path);
    fflush(stderr);
    int saved = dup(2);
    CHECK(saved >= 0 && dup2(fd, 2) == 2);

    pthread_t t;
    void *res = NULL;
    CHECK(pthread_create(&t, NULL, worker, NULL) == 0);
    CHECK(pthread_join(t, &res) == 0);

    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    char buf[4096];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    close(fd);
    buf[n > 0 ? n : 0] = 0;

    CHECK(res == PTHREAD_CANCELED);  /* the cancel was kept pending... */
    CHECK(returned);                 /* ...not acted on inside malloc_stats */
    CHECK(n > 0);                    /* and the report was written */
    /* The report is complete: it ends with a newline. */
    CHECK(n > 0 && buf[n - 1] == '\n');
    if (failures) fprintf(stderr, "stats_cancel: report was %zd bytes: '%s'\n", n, buf);
    return failures != 0;
}
