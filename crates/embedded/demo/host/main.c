/*
 * heap_test.c on the host, against the host build of libstratalloc_embedded.a
 * (the same C the Cortex-M3 kernel runs, without QEMU).
 *   main          the test, then a double free caught by its own handler (exit 0)
 *   main default  the test, then a double free with the default handler: the
 *                 message on stdout, then the trap (SIGILL on x86_64)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../heap_test.h"

void platform_write(const char *buf, size_t len) {
    fflush(stdout);
    (void)!write(1, buf, len);
}

void platform_exit(int status) { exit(status); }

int main(int argc, char **argv) {
    size_t size = 4 << 20;
    void *mem = aligned_alloc(4096, size);
    if (!mem) return 2;
    int failures = heap_test_run(mem, size);
    if (failures) return 1;
    heap_test_fatal(mem, size, !(argc > 1 && strcmp(argv[1], "default") == 0));
}
