/* Engine: memalign/aligned_alloc/posix_memalign with a large alignment and
 * size 0 returns a pointer that malloc_usable_size and free do not
 * recognise ("not an allocated block", abort). */
#define _GNU_SOURCE
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
int main(void) {
    for (int k = 4; k <= 30; k++) {
        void *p = memalign((size_t)1 << k, 0);
        fprintf(stderr, "memalign(1<<%d, 0) = %p\n", k, p);
        fprintf(stderr, "  usable %zu\n", malloc_usable_size(p));
        free(p);
    }
    puts("ok");
    return 0;
}
