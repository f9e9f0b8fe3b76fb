/* free(p + 1) on the engine: silently releases the live block p, which a
 * later malloc hands out again. Expected: abort naming p+1 (as the core
 * strategies do), or at least leave p alone. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(void) {
    char *volatile p = malloc(64);
    memset(p, 0x77, 64);
    free(p + 1); /* invalid: not the start of a block */
    for (int i = 0; i < 10000; i++) {
        char *q = malloc(64);
        if (q >= p && q < p + 64) {
            printf("BUG: after free(p+1), malloc #%d returned %p, inside the live block p=%p\n", i, (void *)q, (void *)p);
            return 1;
        }
    }
    puts("ok: p never handed out again");
    return 0;
}
