/* Known traffic for the statistics report: 1000 mallocs of 100 bytes,
 * 10 callocs, 5 aligned allocations, 7 reallocs; all freed; then
 * malloc_stats(). */
#include <malloc.h>
#include <stdlib.h>

int main(void) {
    void *p[1000];
    for (int i = 0; i < 1000; i++) p[i] = malloc(100);
    for (int i = 0; i < 1000; i++) free(p[i]);
    for (int i = 0; i < 10; i++) p[i] = calloc(10, 10);
    for (int i = 0; i < 10; i++) free(p[i]);
    for (int i = 0; i < 5; i++) p[i] = aligned_alloc(256, 256);
    for (int i = 0; i < 5; i++) free(p[i]);
    void *r = malloc(10);
    for (int i = 0; i < 7; i++) r = realloc(r, 1000 * (i + 1));
    free(r);
    malloc_stats();
    return 0;
}
