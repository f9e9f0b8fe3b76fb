/* Tiny test harness shared by the C tests: CHECK counts failures and names
 * the line; main returns the failure count (0 = pass). */
#ifndef STRATALLOC_TEST_CHECK_H
#define STRATALLOC_TEST_CHECK_H
#include <stdio.h>
#include <stdlib.h>

static int failures;
#define CHECK(cond)                                                         \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, \
                    #cond);                                                 \
            failures++;                                                     \
        }                                                                   \
    } while (0)
#endif
