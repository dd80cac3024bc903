/* fair_count.c - one call of a like-for-like kernel of lab/bench_fair.c, for
 * counting its instructions: callgrind's total for N iterations minus the
 * total for N/2, divided by N/2, is the steady-state cost of one life or one
 * round trip, exactly repeatable (co.c's top comment has the figures).
 *
 * usage: fair_count switch|create SYSTEM N [BOOST_LIB]
 *   SYSTEM     a YF_FAIR_SW_* or YF_FAIR_LIFE_* number (lab/lab.h)
 *   BOOST_LIB  path or soname of libboost_context, for the Boost rows
 *   valgrind --tool=callgrind --callgrind-out-file=/dev/null fair_count create 0 200000
 * Prints "KIND SYSTEM N NS_PER_ITERATION"; exit status 1 when the kernel fails. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "lab/lab.h"

#define STACK 65536

int main(int argc, char **argv)
{
    if (argc < 4 || (strcmp(argv[1], "switch") != 0 && strcmp(argv[1], "create") != 0)) {
        fprintf(stderr, "usage: fair_count switch|create SYSTEM N [BOOST_LIB]\n");
        return 2;
    }
    int sys = (int)arg_int(argv[2], "SYSTEM", 0, 1000);
    long n = (long)arg_int(argv[3], "N", 0, 1LL << 40);
    if (argc > 4 && yf_bench_fcontext_load(argv[4]) != 0) {
        fprintf(stderr, "fair_count: %s\n", yf_bench_error());
        return 1;
    }
    double t = strcmp(argv[1], "create") == 0 ? yf_bench_fair_create(sys, 0, n, STACK)
                                              : yf_bench_fair_switch(sys, 0, n, STACK);
    if (t < 0) {
        fprintf(stderr, "fair_count: %s\n", strerror(errno));
        return 1;
    }
    printf("%s %d %ld %.2f\n", argv[1], sys, n, n ? t / (double)n : 0.0);
    return 0;
}
