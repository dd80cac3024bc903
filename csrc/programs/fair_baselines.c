/* fair_baselines.c - the like-for-like switch and life kernels of bench_fair.c
 * built into a program of their own, so a reader can compare the figures of
 * the Python process with those of an independent process.
 *
 * The program is a kernel server: it reads one request per line on stdin,
 * runs that one kernel call and answers one line on stdout, until end of
 * input. yfcore.lab.context_switch.fair(..., standalone=True) puts its calls
 * into the same interleaved rounds as the in-process calls, so both sides are
 * timed in the same minutes of the same session: the speed of a shared VM
 * drifts by a quarter over minutes (its host's other guests), which a
 * comparison of two runs one after the other would mistake for a difference
 * between the processes. While a kernel runs here, the Python process waits
 * in a read, and the other way round.
 *
 * usage: fair_baselines BOOST_LIB
 *   BOOST_LIB  path or soname of libboost_context, "-" to leave Boost out
 * request: "switch|create SYSTEM PLACEMENT N STACK_SIZE"
 * answer:  the kernel's nanoseconds ("%.17g"), or "error ERRNO" */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "lab/lab.h"

int main(int argc, char **argv)
{
    args_count(argc, argv, 1, "BOOST_LIB   (then requests on stdin: switch|create SYSTEM PLACEMENT N STACK)");
    if (strcmp(argv[1], "-") != 0 && yf_bench_fcontext_load(argv[1]) != 0) {
        fprintf(stderr, "%s\n", yf_bench_error());
        return 2;
    }
    char kind[16];
    int system, placement;
    long long n;
    unsigned long long stack;
    int got;
    while ((got = scanf("%15s %d %d %lld %llu", kind, &system, &placement, &n, &stack)) == 5) {
        double t;
        if (!strcmp(kind, "switch"))
            t = yf_bench_fair_switch(system, placement, n, (size_t)stack);
        else if (!strcmp(kind, "create"))
            t = yf_bench_fair_create(system, placement, n, (size_t)stack);
        else {
            t = -1;
            errno = EINVAL;
        }
        if (t < 0)
            printf("error %d\n", errno);
        else
            printf("%.17g\n", t);
        fflush(stdout);
    }
    if (got != EOF) {
        fprintf(stderr, "fair_baselines: a request is \"switch|create SYSTEM PLACEMENT N STACK\"\n");
        return 2;
    }
    return 0;
}
