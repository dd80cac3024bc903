/* args.h - the command line of the programs here: a usage line when the
 * count of arguments is wrong, and integer arguments checked against their
 * ranges. Either mistake ends the program with 2, which the lab's callers
 * report as a bad call. */
#ifndef YF_PROGRAMS_ARGS_H
#define YF_PROGRAMS_ARGS_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

/* Exits 2 with "usage: <program> <usage>" unless there are n arguments. */
static void args_count(int argc, char **argv, int n, const char *usage)
{
    if (argc != n + 1) {
        fprintf(stderr, "usage: %s %s\n", argv[0], usage);
        exit(2);
    }
}

/* s as a whole decimal integer in [lo, hi]; otherwise exits 2 naming the
 * argument and its range. */
static long long arg_int(const char *s, const char *name, long long lo, long long hi)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "%s must be an integer in %lld..%lld, got '%s'\n", name, lo, hi, s);
        exit(2);
    }
    return v;
}

#endif
