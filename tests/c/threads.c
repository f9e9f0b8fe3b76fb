/* Threads: per-thread churn with content checks, blocks freed by another
 * thread (a shared mailbox), and >= 1000 threads created over the run. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <malloc.h>
#include "check.h"

#define MAILBOX 4096
static void *mailbox[MAILBOX];
static pthread_mutex_t mbox_lock = PTHREAD_MUTEX_INITIALIZER;
static int bad;

static uint64_t rnd(uint64_t *s) { *s ^= *s << 13; *s ^= *s >> 7; *s ^= *s << 17; return *s; }

/* A block carries its size and a fill byte in its first 16 bytes. */
static void *make(size_t n, unsigned char v) {
    if (n < 16) n = 16;
    unsigned char *p = malloc(n);
    if (!p) return NULL;
    memcpy(p, &n, sizeof n);
    memset(p + 8, v, n - 8);
    return p;
}
static void verify_free(void *p) {
    if (!p) return;
    unsigned char *c = p;
    size_t n; memcpy(&n, c, sizeof n);
    if (malloc_usable_size(p) < n) __atomic_store_n(&bad, 1, __ATOMIC_RELAXED);
    for (size_t i = 8; i < n; i += 61)
        if (c[i] != c[8]) { __atomic_store_n(&bad, 1, __ATOMIC_RELAXED); break; }
    free(p);
}

static void *worker(void *arg) {
    uint64_t s = (uintptr_t)arg * 2654435761u + 1;
    void *mine[64] = {0};
    int iters = 3000;
    for (int i = 0; i < iters; i++) {
        uint64_t r = rnd(&s);
        size_t n = (r >> 8) % 3 == 0 ? (r >> 20) % 20000 : (r >> 20) % 300;
        if ((r & 1023) == 0) n = (1 << 20) + (r >> 40) % 100000; /* huge path */
        unsigned k = (r >> 32) % 64;
        verify_free(mine[k]);
        mine[k] = make(n, (unsigned char)r);
        if ((r & 7) == 0) {
            /* Swap one with the mailbox: it will be freed by another thread. */
            unsigned m = (r >> 44) % MAILBOX;
            pthread_mutex_lock(&mbox_lock);
            void *old = mailbox[m];
            mailbox[m] = mine[k];
            pthread_mutex_unlock(&mbox_lock);
            mine[k] = old;
        }
        if ((r & 255) == 1) {
            void *q = realloc(mine[k], 5000);
            if (q) { size_t n2 = 5000; memcpy(q, &n2, 8); memset((char *)q + 8, ((char *)q)[8], 5000 - 8); mine[k] = q; }
        }
    }
    for (int k = 0; k < 64; k++) verify_free(mine[k]);
    return NULL;
}

static void *tiny(void *arg) {
    /* Short-lived threads: allocate, hand a block to the mailbox, exit. */
    void *p = make(100 + (uintptr_t)arg % 500, 7);
    unsigned m = (unsigned)((uintptr_t)arg * 7919) % MAILBOX;
    pthread_mutex_lock(&mbox_lock);
    void *old = mailbox[m];
    mailbox[m] = p;
    pthread_mutex_unlock(&mbox_lock);
    verify_free(old);
    return NULL;
}

int main(void) {
    int created = 0;
    /* 8 rounds of 8 long workers. */
    for (int round = 0; round < 8; round++) {
        pthread_t t[8];
        for (int i = 0; i < 8; i++) {
            CHECK(pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)(round * 8 + i + 1)) == 0);
            created++;
        }
        for (int i = 0; i < 8; i++) pthread_join(t[i], NULL);
    }
    /* 1000 short-lived threads, 50 at a time. */
    for (int round = 0; round < 20; round++) {
        pthread_t t[50];
        for (int i = 0; i < 50; i++) {
            CHECK(pthread_create(&t[i], NULL, tiny, (void *)(uintptr_t)(round * 50 + i)) == 0);
            created++;
        }
        for (int i = 0; i < 50; i++) pthread_join(t[i], NULL);
    }
    for (int m = 0; m < MAILBOX; m++) verify_free(mailbox[m]);
    CHECK(created >= 1000);
    CHECK(!bad);
    printf("threads: %d threads created\n", created);
    return failures != 0;
}
