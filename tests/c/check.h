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

/* Under valgrind: ON_VALGRIND() is true, and a stack a test switches to
 * itself is registered so that memcheck sees a switch, not a huge frame. */
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define ON_VALGRIND() (RUNNING_ON_VALGRIND != 0)
#define STACK_REGISTER(lo, hi) ((unsigned)VALGRIND_STACK_REGISTER((lo), (hi)))
#define STACK_DEREGISTER(id) VALGRIND_STACK_DEREGISTER(id)
#endif
#endif
#ifndef ON_VALGRIND
#define ON_VALGRIND() 0
#define STACK_REGISTER(lo, hi) ((void)(lo), (void)(hi), 0u)
#define STACK_DEREGISTER(id) ((void)(id))
#endif

#endif
