/*
 * stratalloc.h: the C interface of libstratalloc (libstratalloc.so and
 * libstratalloc.a, built from crates/capi).
 *
 * The library replaces the C allocator. Preload it, no recompilation needed:
 *
 *     LD_PRELOAD=/path/to/libstratalloc.so ./program
 *     LD_PRELOAD=/path/to/libstratalloc.so STRATALLOC_STRATEGY=tlsf ./program
 *
 * STRATALLOC_STRATEGY picks the allocator at start-up: "engine" (the
 * default: a thread-caching size-class allocator) or a core strategy over
 * regions mapped from the OS (bump, first-fit, next-fit, best-fit,
 * worst-fit, segregated, tlsf, buddy, slab, ...). An unknown name prints
 * the valid ones on stderr and uses the engine. STRATALLOC_STATS,
 * STRATALLOC_LEAKS, STRATALLOC_CHECK and STRATALLOC_TRACE stack wrappers on
 * top (see the project README).
 *
 * Semantics are glibc's (errno included): malloc(0) and calloc(0, n) return
 * unique freeable pointers; sizes above PTRDIFF_MAX, calloc/reallocarray
 * overflow and every failure return NULL with errno = ENOMEM; realloc(p, 0)
 * frees p and returns NULL; a failed realloc leaves the block intact;
 * posix_memalign returns EINVAL/ENOMEM (setting errno = ENOMEM too, as
 * glibc) and writes *out only on success;
 * aligned_alloc with an alignment that is not a power of two returns NULL
 * with errno = EINVAL (C17); memalign rounds such an alignment up (glibc);
 * free and successful calls leave errno alone. Every pointer from any
 * function here may be passed to free, realloc and malloc_usable_size.
 *
 * Loaded with dlopen() instead of preloaded, the process keeps glibc's
 * malloc and only calls made through dlsym() reach this library: never pass
 * a pointer from one allocator to the other's free. Our free detects a
 * foreign pointer and aborts with a message naming it.
 *
 * An invalid or double free that the allocator detects prints
 * "stratalloc: ..." naming the pointer on stderr and aborts.
 */
#ifndef STRATALLOC_H
#define STRATALLOC_H

#include <stddef.h>

/* ---- the C allocation functions
 *
 * malloc, free, calloc, realloc, reallocarray, posix_memalign,
 * aligned_alloc (<stdlib.h>) and memalign, valloc, pvalloc,
 * malloc_usable_size, malloc_trim, mallopt, malloc_stats, malloc_info,
 * mallinfo, mallinfo2 (<malloc.h>) keep the system headers' declarations.
 *
 * malloc_trim returns 1 if memory went back to the OS. mallopt accepts and
 * ignores every parameter (returns 1). The introspection calls carry
 * glibc's meanings under the engine and every strategy: mallinfo2's arena =
 * bytes held for ordinary blocks = uordblks (in use) + fordblks (free),
 * hblks/hblkhd = blocks in a mapping of their own and its bytes, keepcost =
 * free bytes malloc_trim could return, ordblks = free blocks, usmblks =
 * peak bytes mapped; malloc_stats prints glibc's "Arena 0" / "Total (incl.
 * mmap)" lines and the bytes returned to the OS on stderr (then the full
 * report under STRATALLOC_STATS); malloc_info writes glibc's XML elements
 * (options must be 0). tests/c/mallinfo.c checks them against glibc. */
#include <stdlib.h>
#include <malloc.h>

#if defined(__cplusplus) && __cplusplus >= 201103L
#define STRATALLOC_NOTHROW noexcept(true)
#elif defined(__cplusplus)
#define STRATALLOC_NOTHROW throw()
#else
#define STRATALLOC_NOTHROW
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* C23 (not declared by glibc before 2.39 or so): the size (and alignment)
 * are accepted and not needed. */
void free_sized(void *ptr, size_t size) STRATALLOC_NOTHROW;
void free_aligned_sized(void *ptr, size_t alignment, size_t size) STRATALLOC_NOTHROW;

/* glibc's internal names, also exported. */
void *__libc_malloc(size_t size) STRATALLOC_NOTHROW;
void __libc_free(void *ptr) STRATALLOC_NOTHROW;
void *__libc_calloc(size_t nmemb, size_t size) STRATALLOC_NOTHROW;
void *__libc_realloc(void *ptr, size_t size) STRATALLOC_NOTHROW;
void *__libc_memalign(size_t alignment, size_t size) STRATALLOC_NOTHROW;
void *__libc_valloc(size_t size) STRATALLOC_NOTHROW;
void *__libc_pvalloc(size_t size) STRATALLOC_NOTHROW;

/* ---- stratalloc's own API */

/* The library version, e.g. "0.1.0". */
const char *stratalloc_version(void);

/* The allocator serving the process: "engine" or a strategy name. */
const char *stratalloc_strategy_name(void);

/* The whole stack as the top allocator names it, e.g. "stats(tlsf)". */
const char *stratalloc_backend_name(void);

/* Verify the allocator's invariants: a core strategy's whole heap, or the
 * engine's calling-thread heap and segments. 0 if sound; -1 after a message
 * on stderr naming the first broken invariant. */
int stratalloc_check(void);

#ifdef __cplusplus
}
#endif

#endif /* STRATALLOC_H */
