/* Any strategy serving the process (STRATALLOC_STRATEGY=tlsf, buddy, ...):
 * freeing a huge block (>= 1 MiB, mapped on its own) twice dies of SIGSEGV
 * instead of printing a message: the second free reads the block's header
 * inside the mapping the first free unmapped. (The engine reports it.) */
#include <stdlib.h>
int main(void) {
    char *volatile p = malloc(8 << 20);
    free(p);
    free(p); /* the bug; expected: "stratalloc: ... double free" and abort */
    return 0;
}
