/*
 * stratalloc_embedded.h: one heap for a kernel or firmware, over memory you
 * hand it, with any stratalloc strategy. Link libstratalloc_embedded.a
 * (no libc, no OS; built for thumbv7m-none-eabi, thumbv7em-none-eabihf,
 * riscv32imac-unknown-none-elf, aarch64-unknown-none and the host).
 *
 *   extern char __heap_start[], __heap_end[];
 *   if (heap_init(__heap_start, __heap_end - __heap_start) != 0) panic();
 *   char *p = heap_alloc(100);
 *   p = heap_realloc(p, 200);
 *   heap_free(p);
 *
 * Bad input gets the answer of the C function mirrored (NULL, 0, or a
 * negative HEAP_E* code), never a damaged heap. Freeing a pointer the heap
 * did not hand out (or twice), reallocating one, and damage the heap finds
 * in its own metadata are fatal: the error handler is called (default: the
 * message goes to the write hook), then the CPU halts on an undefined
 * instruction. Every call takes a spin lock; set lock hooks that disable
 * interrupts if interrupt handlers use the heap. Callbacks (the walk, the
 * error handler) run with the heap locked and must not call it.
 */
#ifndef STRATALLOC_EMBEDDED_H
#define STRATALLOC_EMBEDDED_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HEAP_OK 0
#define HEAP_EINVAL (-1)    /* NULL base, wrapping span, unknown strategy name */
#define HEAP_ETOOSMALL (-2) /* no room for the heap's metadata and one block */
#define HEAP_EOVERLAP (-3)  /* overlaps a region the heap holds */
#define HEAP_EFULL (-4)     /* the strategy takes no more regions */
#define HEAP_ECORRUPT (-5)  /* heap_check: a broken invariant (message written) */

/* A new TLSF heap over [base, base + size): 0 or HEAP_E*. A second call
 * starts a new heap (the old blocks are forgotten). */
int heap_init(void *base, size_t size);
/* The same with any strategy: "tlsf", "buddy", "best-fit", "first-fit",
 * "next-fit", "worst-fit", "segregated", "bump", "slab". */
int heap_init_with(const char *strategy, void *base, size_t size);
/* More memory for the heap. */
int heap_add_region(void *base, size_t size);
/* The i-th strategy name, NULL past the last. */
const char *heap_strategy_name(size_t i);

void *heap_alloc(size_t size);                       /* malloc; 16-aligned */
void *heap_calloc(size_t n, size_t size);            /* calloc; NULL on overflow */
void *heap_realloc(void *p, size_t size);            /* realloc; size 0 frees, returns NULL */
void *heap_aligned_alloc(size_t align, size_t size); /* NULL unless align is a power of two */
void heap_free(void *p);                             /* NULL: nothing */
void heap_free_sized(void *p, size_t size);          /* free_sized: a size the block cannot have is fatal */
size_t heap_usable_size(void *p);                    /* 0 for NULL or a foreign pointer */

/* 0 if every invariant holds, else HEAP_ECORRUPT. O(blocks). */
int heap_check(void);

struct heap_stats {
    size_t region_bytes; /* every region as handed over */
    size_t in_use;       /* bytes in live blocks (usable sizes) */
    size_t free;         /* bytes in free blocks */
    size_t largest_free; /* the largest heap_alloc that can succeed now */
    size_t free_blocks;
    size_t peak_in_use;
    uint64_t allocs, frees, failed;
    char strategy[16];   /* NUL-terminated */
};
void heap_stats(struct heap_stats *out);

#define HEAP_BLOCK_USED 0
#define HEAP_BLOCK_FREE 1
#define HEAP_BLOCK_OVERHEAD 2
struct heap_block {
    uintptr_t addr;    /* first byte of the span */
    size_t size;       /* metadata included */
    uintptr_t payload; /* used blocks: the pointer heap_alloc returned; else 0 */
    int state;         /* HEAP_BLOCK_* */
};
typedef void (*heap_walk_fn)(const struct heap_block *block, void *ctx);
/* Every span of every region, in address order (draw the heap with it). */
void heap_walk(heap_walk_fn fn, void *ctx);

/* Hooks (NULL restores the default). */
void heap_set_write(void (*write)(const char *buf, size_t len)); /* not NUL-terminated */
void heap_set_error_handler(void (*on_error)(void *ptr, const char *msg));
/* lock(ctx) before each call takes the spin lock (e.g. disable interrupts,
 * return the old mask), unlock(ctx, saved) after it is released. Both or
 * neither: HEAP_EINVAL otherwise. */
int heap_set_lock_hooks(uintptr_t (*lock)(void *ctx), void (*unlock)(void *ctx, uintptr_t saved),
                        void *ctx);

#ifdef __cplusplus
}
#endif
#endif
