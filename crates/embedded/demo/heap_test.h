/*
 * The kernel-side test of libstratalloc_embedded.a, in portable C with no
 * libc: heap_test.c runs it, a platform (cortex-m3/kernel.c under QEMU,
 * host/main.c on Linux) supplies memory, output and exit.
 */
#ifndef HEAP_TEST_H
#define HEAP_TEST_H

#include <stddef.h>

/* Supplied by the platform. */
void platform_write(const char *buf, size_t len);
__attribute__((noreturn)) void platform_exit(int status);

/* Everything over [mem, mem + size): heap_init, bad input, random
 * alloc/calloc/realloc/aligned_alloc/free with fill bytes checked and
 * heap_check, every strategy through heap_init_with, stats and a heap map.
 * Returns the number of failures. */
int heap_test_run(void *mem, size_t size);

/* The last step: free a block twice. With own_handler, the error handler
 * set here checks the pointer and the message and exits 0; without, the
 * default handler writes the message and halts (the platform's trap
 * handler must exit). Does not return. */
__attribute__((noreturn)) void heap_test_fatal(void *mem, size_t size, int own_handler);

void put(const char *s);

#endif
