/*
 * What a kernel does with libstratalloc_embedded.a, checked: see heap_test.h.
 * No libc: output through platform_write, numbers formatted by hand.
 */
#include "heap_test.h"

#include <stdint.h>

#include "stratalloc_embedded.h"

static int failures;

static size_t len(const char *s) {
    size_t n = 0;
    while (s[n]) n++;
    return n;
}

void put(const char *s) { platform_write(s, len(s)); }

static void put_dec(uint64_t v) {
    char b[24];
    int i = sizeof b;
    b[--i] = 0;
    do {
        b[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    put(b + i);
}

static void put_hex(uintptr_t v) {
    char b[2 + 2 * sizeof v + 1];
    int i = sizeof b;
    b[--i] = 0;
    do {
        b[--i] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v);
    b[--i] = 'x';
    b[--i] = '0';
    put(b + i);
}

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            failures++;                                                                  \
            put("FAIL ");                                                                \
            put(__FILE__);                                                               \
            put(":");                                                                    \
            put_dec(__LINE__);                                                           \
            put(": " #cond "\n");                                                        \
        }                                                                                \
    } while (0)

/* xorshift32: the same run every time. */
static uint32_t rng = 2463534242u;
static uint32_t rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return rng;
}

/* A request size: mostly small, some pages, a few large. */
static size_t rnd_size(void) {
    uint32_t r = rnd() % 100;
    if (r < 70) return 1 + rnd() % 256;
    if (r < 95) return 1 + rnd() % 4096;
    return 1 + rnd() % 65536;
}

#define SLOTS 128
struct slot {
    unsigned char *p;
    size_t n;
    unsigned char fill;
};
static struct slot slots[SLOTS];

static int filled(const unsigned char *p, size_t n, unsigned char v) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != v) return 0;
    return 1;
}

static void fill(struct slot *s, unsigned char *p, size_t n) {
    s->p = p;
    s->n = n;
    s->fill = (unsigned char)(rnd() | 1);
    for (size_t i = 0; i < n; i++) p[i] = s->fill;
}

static int in_region(const void *p, size_t n, const void *mem, size_t size) {
    uintptr_t a = (uintptr_t)p, m = (uintptr_t)mem;
    return a >= m && a + n <= m + size;
}

/* One random operation on a random slot. Returns 1 if an allocation
 * failed (the heap is full for that size), else 0. */
static int step(const void *mem, size_t size) {
    struct slot *s = &slots[rnd() % SLOTS];
    if (s->p) {
        if (!filled(s->p, s->n, s->fill)) {
            CHECK(!"fill bytes intact");
            put("  block ");
            put_hex((uintptr_t)s->p);
            put(" was overwritten\n");
        }
        if (rnd() % 2) {
            if (s->fill & 1)
                heap_free_sized(s->p, s->n); /* the size it was allocated with */
            else
                heap_free(s->p);
            s->p = 0;
            return 0;
        }
        size_t n = rnd_size(), keep = n < s->n ? n : s->n;
        unsigned char *q = heap_realloc(s->p, n);
        if (!q) {
            CHECK(filled(s->p, s->n, s->fill)); /* a failed realloc keeps the block */
            return 1;
        }
        CHECK(in_region(q, n, mem, size) && (uintptr_t)q % 16 == 0);
        CHECK(filled(q, keep, s->fill));
        CHECK(heap_usable_size(q) >= n);
        fill(s, q, n);
        return 0;
    }
    size_t n = rnd_size(), align = 16;
    unsigned char *p;
    switch (rnd() % 4) {
    case 0:
        p = heap_calloc(1, n);
        if (p) CHECK(filled(p, n, 0));
        break;
    case 1:
        align = (size_t)16 << (rnd() % 9); /* 16 .. 4096 */
        p = heap_aligned_alloc(align, n);
        break;
    default:
        p = heap_alloc(n);
    }
    if (!p) return 1;
    CHECK(in_region(p, n, mem, size) && (uintptr_t)p % align == 0);
    CHECK(heap_usable_size(p) >= n);
    fill(s, p, n);
    return 0;
}

static void free_all(void) {
    for (int i = 0; i < SLOTS; i++) {
        if (slots[i].p) {
            CHECK(filled(slots[i].p, slots[i].n, slots[i].fill));
            heap_free(slots[i].p);
            slots[i].p = 0;
        }
    }
}

/* The walk draws a map of 64 cells ('#' used, '.' free, ':' overhead) and
 * adds up the spans. */
struct map {
    uintptr_t base, size, next, bytes;
    size_t used;
    int in_order;
    char cells[65];
};

static void draw(const struct heap_block *b, void *ctx) {
    struct map *m = ctx;
    m->in_order &= b->addr >= m->next;
    m->next = b->addr + b->size;
    m->bytes += b->size;
    if (b->state == HEAP_BLOCK_USED) m->used++;
    char c = b->state == HEAP_BLOCK_USED ? '#' : b->state == HEAP_BLOCK_FREE ? '.' : ':';
    for (uintptr_t a = b->addr; a < b->addr + b->size; a += m->size / 64 ? m->size / 64 : 1) {
        uintptr_t cell = (a - m->base) * 64 / m->size;
        if (cell < 64 && (m->cells[cell] == ' ' || c == '#')) m->cells[cell] = c;
    }
}

static size_t live_blocks(void) {
    size_t n = 0;
    for (int i = 0; i < SLOTS; i++) n += slots[i].p != 0;
    return n;
}

static void show(const char *when, const void *mem, size_t size) {
    struct heap_stats st;
    heap_stats(&st);
    put("  ");
    put(when);
    put(": in use ");
    put_dec(st.in_use);
    put(", free ");
    put_dec(st.free);
    put(" in ");
    put_dec(st.free_blocks);
    put(" blocks, peak ");
    put_dec(st.peak_in_use);
    put(", allocs ");
    put_dec(st.allocs);
    put(", frees ");
    put_dec(st.frees);
    put(", failed ");
    put_dec(st.failed);
    put("\n");
    struct map m = {(uintptr_t)mem, size, 0, 0, 0, 1, {0}};
    for (int i = 0; i < 64; i++) m.cells[i] = ' ';
    heap_walk(draw, &m);
    put("  |");
    put(m.cells);
    put("|\n");
    CHECK(m.in_order);
    CHECK(m.bytes <= size && m.bytes + 256 > size);
    CHECK(m.used == live_blocks());
    CHECK(st.allocs - st.frees == live_blocks());
    CHECK(st.region_bytes == size);
}

/* Random operations over one strategy. */
static void workload(const char *name, void *mem, size_t size, int ops) {
    int oom = 0;
    put("strategy ");
    put(name);
    put("\n");
    for (int i = 1; i <= ops; i++) {
        oom += step(mem, size);
        if (i % 256 == 0) CHECK(heap_check() == HEAP_OK);
        if (i == ops / 2) show("halfway", mem, size);
    }
    CHECK(heap_check() == HEAP_OK);
    free_all();
    struct heap_stats st;
    heap_stats(&st);
    CHECK(st.in_use == 0 && st.allocs == st.frees);
    CHECK(heap_check() == HEAP_OK);
    put("  ");
    put_dec(ops);
    put(" operations, ");
    put_dec(oom);
    put(" refused for lack of memory, all freed, check ok\n");
}

static void bad_input(void *mem, size_t size) {
    put("bad input\n");
    CHECK(heap_init(0, size) == HEAP_EINVAL);
    CHECK(heap_init(mem, 8) == HEAP_ETOOSMALL);
    CHECK(heap_init_with("no-such-strategy", mem, size) == HEAP_EINVAL);
    CHECK(heap_init_with(0, mem, size) == HEAP_EINVAL);
    CHECK(heap_init(mem, size) == HEAP_OK);
    CHECK(heap_add_region(mem, size) == HEAP_EOVERLAP);
    CHECK(heap_alloc(SIZE_MAX) == 0);
    CHECK(heap_alloc(size) == 0);
    CHECK(heap_calloc(SIZE_MAX / 2, 3) == 0);
    CHECK(heap_aligned_alloc(24, 16) == 0);
    CHECK(heap_aligned_alloc(0, 16) == 0);
    CHECK(heap_usable_size(0) == 0);
    heap_free(0);
    heap_stats(0);
    heap_walk(0, 0);
    char *p = heap_alloc(40);
    CHECK(p != 0);
    CHECK(heap_realloc(p, SIZE_MAX) == 0);
    CHECK(heap_usable_size(p + 16) == 0);
    CHECK(heap_realloc(p, 0) == 0);
    CHECK(heap_realloc(0, 0) != 0); /* realloc(NULL, 0) is malloc(0) */
    CHECK(heap_set_lock_hooks(0, 0, 0) == HEAP_OK);
    CHECK(heap_check() == HEAP_OK);
}

int heap_test_run(void *mem, size_t size) {
    heap_set_write(platform_write);
    put("heap: ");
    put_hex((uintptr_t)mem);
    put(", ");
    put_dec(size);
    put(" bytes\n");

    /* What the seed's kernel does: heap_init, alloc, use, free. */
    CHECK(heap_init(mem, size) == HEAP_OK);
    char *msg = heap_alloc(32);
    CHECK(msg != 0);
    const char *hello = "hello from the heap\n";
    for (size_t i = 0; i <= len(hello); i++) msg[i] = hello[i];
    put(msg);
    heap_free(msg);

    bad_input(mem, size);
    for (size_t i = 0; heap_strategy_name(i); i++) {
        const char *name = heap_strategy_name(i);
        CHECK(heap_init_with(name, mem, size) == HEAP_OK);
        struct heap_stats st;
        heap_stats(&st);
        CHECK(len(st.strategy) == len(name));
        workload(name, mem, size, 4000);
    }

    /* Two regions: the second half joins after the first fills up. */
    put("two regions\n");
    size_t half = size / 2 & ~(size_t)15;
    CHECK(heap_init(mem, half) == HEAP_OK);
    CHECK(heap_add_region((char *)mem + half, size - half) == HEAP_OK);
    int in_second = 0;
    for (int i = 0; i < SLOTS; i++) {
        slots[i].p = heap_alloc(half / SLOTS);
        if (slots[i].p) {
            fill(&slots[i], slots[i].p, half / SLOTS);
            in_second += (char *)slots[i].p >= (char *)mem + half;
        }
    }
    CHECK(in_second > 0);
    free_all();
    CHECK(heap_check() == HEAP_OK);

    put(failures ? "heap test: FAILED\n" : "heap test: ok\n");
    return failures;
}

static void *fatal_ptr;

static int contains(const char *s, const char *word) {
    for (; *s; s++) {
        size_t i = 0;
        while (word[i] && s[i] == word[i]) i++;
        if (!word[i]) return 1;
    }
    return 0;
}

static void on_error(void *ptr, const char *msg) {
    put("error handler: ");
    put(msg);
    put("\n");
    if (ptr == fatal_ptr && contains(msg, "double free")) {
        put("error handler: the double free of ");
        put_hex((uintptr_t)ptr);
        put(" was reported\n");
        platform_exit(0);
    }
    put("FAIL error handler: wrong pointer or message\n");
    platform_exit(1);
}

void heap_test_fatal(void *mem, size_t size, int own_handler) {
    CHECK(heap_init(mem, size) == HEAP_OK);
    heap_set_error_handler(own_handler ? on_error : 0);
    char *p = heap_alloc(64);
    char *keep = heap_alloc(64); /* so p is not merged away */
    fatal_ptr = p;
    heap_free(p);
    put("freeing ");
    put_hex((uintptr_t)p);
    put(" twice\n");
    heap_free(p);
    put("FAIL: a double free returned\n");
    heap_free(keep);
    platform_exit(1);
}
