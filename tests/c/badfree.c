/* Invalid frees are reported, naming the pointer, and abort: argv[1] picks
 * the case. The program prints the pointer first so the script can check
 * the message names it.
 *   static   a pointer into a static array (in no heap region)
 *   interior a pointer into the middle of a live block
 *   double   the same block freed twice (it has merged with the free
 *            space after it in between). stdout is unbuffered so that
 *            printing the pointer allocates nothing between the two frees:
 *            a block reused by another allocation before the second free
 *            is a different fault (caught by check mode's quarantine, see
 *            tests/misuse), not one a header can show.
 *   double-mid  the same block freed twice, live blocks on both sides */
#include <stdint.h>
#include <string.h>
#include "check.h"

static char not_heap[256] __attribute__((aligned(64)));

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    setvbuf(stdout, NULL, _IONBF, 0);
    void *keep = malloc(100); /* something live around the bad pointer */
    char *p = NULL;
    if (strcmp(argv[1], "static") == 0) {
        p = not_heap + 64;
    } else if (strcmp(argv[1], "interior") == 0) {
        p = malloc(512);
        p += 48;
    } else if (strcmp(argv[1], "double") == 0) {
        p = malloc(512);
        free(p);
    } else if (strcmp(argv[1], "double-mid") == 0) {
        p = malloc(512);
        void *after = malloc(100);
        free(p);
        (void)after; /* stays live */
    } else {
        return 2;
    }
    printf("%p\n", (void *)p);
    fflush(stdout);
    free(p);
    printf("not refused\n");
    free(keep);
    return 0;
}
