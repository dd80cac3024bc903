/* check.h - checks for the C test programs that survive NDEBUG: a failed
 * check names its file, line and expression, and ends the program with 1. */
#ifndef YF_TEST_CHECK_H
#define YF_TEST_CHECK_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define CHECK(e)                                                                      \
    do {                                                                              \
        if (!(e)) {                                                                   \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #e);     \
            exit(1);                                                                  \
        }                                                                             \
    } while (0)

/* A call fails with -1 and this errno. */
#define CHECK_ERR(call, err)                                                          \
    do {                                                                              \
        errno = 0;                                                                    \
        CHECK((intptr_t)(call) == -1 && errno == (err));                              \
    } while (0)

/* A constructor fails with NULL and this errno. */
#define CHECK_NULL(call, err)                                                         \
    do {                                                                              \
        errno = 0;                                                                    \
        CHECK((call) == NULL && errno == (err));                                      \
    } while (0)

#endif
