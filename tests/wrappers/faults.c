/* One heap bug per run, chosen by argv[1], for STRATALLOC_CHECK=1:
 *   overflow | underflow | double | invalid | interior | uaf | realloc-freed
 *   | exit-two (two blocks overflowed and never freed: both reported at
 *   exit) | ok
 * Blocks are made by make_block() and freed by drop_block(), so the
 * reports' stacks can be asserted by function name. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int global_int;

__attribute__((noinline)) static char *make_block(size_t n) {
    char *p = malloc(n);
    memset(p, 'x', n);
    return p;
}

__attribute__((noinline)) static void drop_block(char *p) {
    free(p);
}

int main(int argc, char **argv) {
    const char *what = argc > 1 ? argv[1] : "ok";
    char *volatile p = make_block(1000);
    if (!strcmp(what, "overflow")) {
        p[1003] = 'X'; /* 4 bytes past the end */
        free(p);
    } else if (!strcmp(what, "underflow")) {
        p[-1] = 'X';
        free(p);
    } else if (!strcmp(what, "double")) {
        drop_block(p);
        free(p);
    } else if (!strcmp(what, "invalid")) {
        free(&global_int);
    } else if (!strcmp(what, "interior")) {
        free(p + 100);
    } else if (!strcmp(what, "uaf")) {
        drop_block(p);
        p[8] = 'X'; /* write after free */
        /* Push the block out of quarantine: free enough other blocks. */
        for (int i = 0; i < 10000; i++) free(malloc(4096));
    } else if (!strcmp(what, "realloc-freed")) {
        drop_block(p);
        p = realloc(p, 2000);
    } else if (!strcmp(what, "exit-two")) {
        char *volatile q = make_block(500);
        p[1000] = 'X';
        q[-3] = 'Y';
        puts("two blocks damaged");
        return 0; /* both found at exit */
    } else {
        char *q = realloc(p, 5000);
        if (q[999] != 'x') return 3;
        free(q);
        void *a = aligned_alloc(4096, 8192);
        if ((unsigned long)a % 4096) return 4;
        free(a);
        void *c = calloc(100, 10);
        for (int i = 0; i < 1000; i++) if (((char *)c)[i]) return 5;
        free(c);
        puts("clean run");
        return 0;
    }
    puts("fault not detected");
    return 1;
}
