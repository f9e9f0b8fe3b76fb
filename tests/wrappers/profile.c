/* Known truth for the allocation profile (scripts/test-wrappers.sh): the
 * program's only allocations, in this order:
 *   alloc_temp   500 x 64 B, each freed at once (temporary)
 *   alloc_many  1000 x 100 B, held at the peak
 *   alloc_big      1 x 600000 B, held at the peak
 *   (peak: 700000 B in 1001 blocks; alloc_big holds 6/7 of it, alloc_many 1/7)
 *   every held block freed, then
 *   leak_some      3 x 1000 B, live at exit
 * No stdio before the end, so libc allocates nothing before the peak. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void *held[1001];

__attribute__((noinline)) void alloc_temp(void) {
    for (int i = 0; i < 500; i++) {
        char *p = malloc(64);
        memset(p, i, 64);
        free(p);
    }
}

__attribute__((noinline)) void alloc_many(void) {
    for (int i = 0; i < 1000; i++) {
        held[i] = malloc(100);
        memset(held[i], 1, 100);
    }
}

__attribute__((noinline)) void alloc_big(void) {
    held[1000] = malloc(600000);
    memset(held[1000], 2, 600000);
}

__attribute__((noinline)) void *leak_some(void) {
    void *last = NULL;
    for (int i = 0; i < 3; i++) last = malloc(1000);
    return last;
}

int main(void) {
    alloc_temp();
    alloc_many();
    alloc_big();
    for (int i = 0; i <= 1000; i++) free(held[i]);
    leak_some();
    write(1, "profile done\n", 13);
    return 0;
}
