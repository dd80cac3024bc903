/* wheel_churn.c - runs the churn workload once so that callgrind can count
 * the instructions of its measured loop alone:
 *   valgrind --tool=callgrind --toggle-collect='churn_steps*' wheel_churn KIND PENDING STEPS SEED BITS [WARM]
 * KIND 0: the wheel, 1: the binary heap; BITS: slots per level as bits, "8,8,8,8";
 * WARM: steps run first, outside the count (default 0).
 * Prints "events N ns T". */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "yf.h"
#include "lab/lab.h"

int main(int argc, char **argv)
{
    if (argc != 6 && argc != 7) {
        fprintf(stderr, "usage: %s KIND PENDING STEPS SEED BITS [WARM]\n", argv[0]);
        return 2;
    }
    unsigned bits[8], n = 0;
    for (char *p = strtok(argv[5], ","); p && n < 8; p = strtok(NULL, ","))
        bits[n++] = (unsigned)strtoul(p, NULL, 10);
    uint64_t events = 0;
    int64_t warm = argc == 7 ? strtoll(argv[6], NULL, 10) : 0;
    double ns = yf_bench_wheel_churn(atoi(argv[1]), bits, n, strtoull(argv[2], NULL, 10), warm,
                                     strtoll(argv[3], NULL, 10), strtoull(argv[4], NULL, 10), &events);
    if (ns < 0) {
        fprintf(stderr, "yf_bench_wheel_churn: %s\n", strerror(errno));
        return 1;
    }
    printf("events %llu ns %.0f\n", (unsigned long long)events, ns);
    return 0;
}
