/* check.h - checks for the C test programs that survive NDEBUG: a failed
 * check names its file, line and expression, and ends the program with 1;
 * and what several of them share (a reproducible random sequence, a child
 * process, the qemu-user skip). */
#ifndef YF_TEST_CHECK_H
#define YF_TEST_CHECK_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

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

/* xorshift64: a fixed sequence from a fixed seed, so that a random test
 * that fails fails again the same way. */
static inline uint64_t xorshift64(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *state = x;
}

/* fn() in a forked child, which must exit 0 (a failed CHECK there exits 1):
 * for what changes the process for good (a seccomp filter, a resource
 * limit). */
static inline void in_child(void (*fn)(void))
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        fn();
        _exit(0);
    }
    int st;
    CHECK(waitpid(pid, &st, 0) == pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* Under qemu-user (tests/test_cross.py sets YF_TEST_QEMU_USER): prints the
 * "SKIPPED: test: why" line test_cross.py compares with its list, and is
 * true. */
static inline int skipped_under_qemu(const char *test, const char *why)
{
    if (!getenv("YF_TEST_QEMU_USER"))
        return 0;
    printf("SKIPPED: %s: %s\n", test, why);
    return 1;
}

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
