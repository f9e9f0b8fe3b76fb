/* Leaks 3 blocks of 1234 bytes from leak_some() and 1 of 100 from main();
 * frees everything else. The leak report must name leak_some with 3702 bytes. */
#include <stdlib.h>
#include <string.h>

static void *keep[4];

__attribute__((noinline)) static void leak_some(void) {
    for (int i = 0; i < 3; i++) {
        char *p = malloc(1234);
        memset(p, i, 1234);
        keep[i] = p;
    }
}

int main(void) {
    leak_some();
    for (int i = 0; i < 1000; i++) free(malloc(i * 7 + 1));
    keep[3] = malloc(100);
    for (int i = 0; i < 4; i++) keep[i] = NULL; /* really leaked */
    return 0;
}
