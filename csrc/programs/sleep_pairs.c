/* sleep_pairs.c - how late the event loop's timers are against a plain
 * clock_nanosleep of the same length, side by side in one thread under the
 * same load: one coroutine of a yf loop alternates yf_sleep_ms(L) (a timer
 * in the loop's wheel, 1 ms ticks) with clock_nanosleep(L), L uniform in
 * 1..MAX_MS, the order swapped every pair so neither always goes first,
 * each pair starting at a random phase within the 1 ms tick.
 *
 *   sleep_pairs PAIRS MAX_MS SEED
 *
 * Prints one JSON line {"loop": [...], "nanosleep": [...]}: for each pair the
 * ns each sleep ended after the time asked (negative: early). Whatever delays
 * this thread's wake-ups (other processes, the kernel's timer slack) delays
 * both; what the loop adds on top is its own: the deadline rounded to ticks. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "yf.h"
#include "args.h"

static long pairs, max_ms;
static uint64_t rng;
static int64_t *loop_late, *plain_late;

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t next(void)
{
    uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int64_t loop_sleep(int64_t ms)
{
    uint64_t t0 = mono_ns();
    if (yf_sleep_ms(ms) != 0)
        return INT64_MIN;
    return (int64_t)(mono_ns() - t0) - ms * 1000000;
}

static int64_t plain_sleep(int64_t ms)
{
    struct timespec req = {ms / 1000, (ms % 1000) * 1000000};
    uint64_t t0 = mono_ns();
    /* A relative sleep, as yf_sleep_ms is; EINTR restarts with what is left. */
    while (clock_nanosleep(CLOCK_MONOTONIC, 0, &req, &req) == EINTR)
        ;
    return (int64_t)(mono_ns() - t0) - ms * 1000000;
}

static intptr_t body(void *arg)
{
    (void)arg;
    for (long i = 0; i < pairs; i++) {
        int64_t ms = 1 + (int64_t)(next() % (uint64_t)max_ms);
        /* A random phase within the tick first: back-to-back sleeps would
         * otherwise always start just after a tick boundary (where the last
         * loop sleep ended) and the rounding would not be sampled fairly. */
        struct timespec phase = {0, (long)(next() % 1000000)};
        clock_nanosleep(CLOCK_MONOTONIC, 0, &phase, NULL);
        if (i % 2 == 0) {
            loop_late[i] = loop_sleep(ms);
            plain_late[i] = plain_sleep(ms);
        } else {
            plain_late[i] = plain_sleep(ms);
            loop_late[i] = loop_sleep(ms);
        }
        if (loop_late[i] == INT64_MIN)
            return -1;
    }
    return 0;
}

static void print_array(const char *name, const int64_t *a)
{
    printf("\"%s\": [", name);
    for (long i = 0; i < pairs; i++)
        printf("%s%lld", i ? ", " : "", (long long)a[i]);
    printf("]");
}

int main(int argc, char **argv)
{
    args_count(argc, argv, 3, "PAIRS MAX_MS SEED");
    pairs = (long)arg_int(argv[1], "PAIRS", 1, 1000000);
    max_ms = (long)arg_int(argv[2], "MAX_MS", 1, 10000);
    rng = strtoull(argv[3], NULL, 10);
    loop_late = calloc((size_t)pairs, sizeof *loop_late);
    plain_late = calloc((size_t)pairs, sizeof *plain_late);
    yf_sched *s = loop_late && plain_late ? yf_sched_new(65536, 0) : NULL;
    yf_loop *lp = s ? yf_loop_new(s) : NULL;
    yf_co *co = lp ? yf_co_create(s, body, NULL) : NULL;
    intptr_t status = -1;
    if (!co || yf_loop_run(lp) < 0 || yf_co_reap(co, &status) != 0 || status != 0) {
        perror("sleep_pairs");
        return 1;
    }
    printf("{");
    print_array("loop", loop_late);
    printf(", ");
    print_array("nanosleep", plain_late);
    printf("}\n");
    yf_loop_free(lp);
    yf_sched_free(s);
    return 0;
}
