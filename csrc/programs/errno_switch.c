/* errno_switch.c - does a coroutine still read the errno its own failed call
 * set after it switched away and other coroutines failed differently?
 *
 *   errno_switch MODE KEEP COROUTINES ROUNDS
 *     MODE yield: the switch is yf_co_yield (scheduler only)
 *          sleep: yf_sleep_ms(0) (the event loop)
 *          hooked-sleep: usleep(0), interposed by the hooks
 *     KEEP 1: the scheduler runs with YF_SCHED_KEEP_ERRNO.
 *
 * Each coroutine fails with its own errno (EBADF, ENOENT, ESPIPE or ECHILD,
 * by its index), switches, and compares errno with what its call set.
 * Prints {"mode", "keep", "checks", "wrong", "example"}. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "yf.h"

static const char *mode;
static long rounds, checks, wrong;
static char example[96];
static int pipefd[2];

static int fail_own_way(intptr_t i)
{
    switch (i % 4) {
    case 0:
        close(-1);
        return EBADF;
    case 1:
        access("/nonexistent/yfcore", F_OK);
        return ENOENT;
    case 2:
        lseek(pipefd[0], 0, SEEK_SET);
        return ESPIPE;
    default:
        waitpid(-1, NULL, WNOHANG);
        return ECHILD;
    }
}

static intptr_t body(void *arg)
{
    intptr_t i = (intptr_t)arg;
    for (long r = 0; r < rounds; r++) {
        int want = fail_own_way(i);
        if (strcmp(mode, "yield") == 0)
            yf_co_yield();
        else if (strcmp(mode, "sleep") == 0)
            yf_sleep_ms(0);
        else
            usleep(0);
        int got = errno;
        checks++;
        if (got != want && wrong++ == 0)
            snprintf(example, sizeof example, "coroutine %ld expected %s, read %s", (long)i,
                     strerrorname_np(want), got ? strerrorname_np(got) : "0");
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: %s yield|sleep|hooked-sleep KEEP COROUTINES ROUNDS\n", argv[0]);
        return 2;
    }
    mode = argv[1];
    int keep = atoi(argv[2]);
    long n = atol(argv[3]);
    rounds = atol(argv[4]);
    if (strcmp(mode, "yield") && strcmp(mode, "sleep") && strcmp(mode, "hooked-sleep")) {
        fprintf(stderr, "MODE must be yield, sleep or hooked-sleep, not %s\n", mode);
        return 2;
    }
    if (n < 1 || rounds < 1 || pipe(pipefd) != 0) {
        fprintf(stderr, "COROUTINES and ROUNDS must be >= 1\n");
        return 2;
    }
    yf_sched *s = yf_sched_new(16384, keep ? YF_SCHED_KEEP_ERRNO : 0);
    yf_loop *lp = s && strcmp(mode, "yield") ? yf_loop_new(s) : NULL;
    if (!s || (strcmp(mode, "yield") && !lp)) {
        perror("errno_switch");
        return 2;
    }
    for (long i = 0; i < n; i++) {
        yf_co *co = yf_co_create(s, body, (void *)(intptr_t)i);
        if (!co || yf_co_detach(co) != 0) {
            perror("yf_co_create");
            return 2;
        }
    }
    if ((lp ? yf_loop_run(lp) : yf_sched_run(s)) < 0) {
        perror("run");
        return 2;
    }
    printf("{\"mode\": \"%s\", \"keep\": %d, \"coroutines\": %ld, \"checks\": %ld, \"wrong\": %ld, "
           "\"example\": \"%s\"}\n", mode, keep ? 1 : 0, n, checks, wrong, example);
    return 0;
}
