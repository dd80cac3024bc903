/* fair_baselines.c - the like-for-like switch and life kernels of bench_fair.c
 * built into a program of their own and run by the same procedure as
 * yfcore.lab's fair(): every (system, placement) for CAL calibration rounds
 * of N/4 iterations, each system at its best placement (by its best round),
 * then ROUNDS interleaved rounds of N iterations. So a reader can compare
 * the figures of the Python process with those of an independent process.
 *
 * usage: fair_baselines switch|create BOOST_LIB N N_SLOW ROUNDS CAL
 *   BOOST_LIB  path or soname of libboost_context, "-" to leave Boost out
 *   N_SLOW     iterations for ucontext, which is 30-100x slower
 * One JSON line per system: {"kind", "system", "placement", "by_placement",
 * "samples"}; samples in ns per one-way switch, or lives per second. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lab/lab.h"

#define STACK 65536

static const char *sw_names[YF_FAIR_NSWITCH] = {"yf", "yf_fpfast", "yf_raw", "yf_raw_fpfast", "ucontext",
                                                "boost_fcontext"};
static const char *life_names[YF_FAIR_NCREATE] = {"yf", "yf_fpfast", "yf_malloc", "ucontext",
                                                  "ucontext_pool", "boost_fcontext", "boost_fcontext_pool"};

static int is_switch;

static int slow(int s)
{
    return is_switch ? s == YF_FAIR_SW_UCONTEXT : (s == YF_FAIR_LIFE_UCONTEXT || s == YF_FAIR_LIFE_UCONTEXT_POOL);
}

static int boost(int s)
{
    return is_switch ? s == YF_FAIR_SW_BOOST : (s == YF_FAIR_LIFE_BOOST || s == YF_FAIR_LIFE_BOOST_POOL);
}

/* One call: ns per one-way switch, or lives per second. */
static double one(int s, int p, int64_t n)
{
    double t = is_switch ? yf_bench_fair_switch(s, p, n, STACK) : yf_bench_fair_create(s, p, n, STACK);
    if (t < 0) {
        perror(is_switch ? "yf_bench_fair_switch" : "yf_bench_fair_create");
        exit(1);
    }
    return is_switch ? t / (2.0 * (double)n) : (double)n / (t / 1e9);
}

static int better(double a, double b)
{
    return is_switch ? a < b : a > b;
}

int main(int argc, char **argv)
{
    if (argc != 7 || (strcmp(argv[1], "switch") && strcmp(argv[1], "create"))) {
        fprintf(stderr, "usage: %s switch|create BOOST_LIB N N_SLOW ROUNDS CAL\n", argv[0]);
        return 2;
    }
    is_switch = !strcmp(argv[1], "switch");
    int have_boost = strcmp(argv[2], "-") != 0;
    if (have_boost && yf_bench_fcontext_load(argv[2]) != 0) {
        fprintf(stderr, "%s\n", yf_bench_error());
        return 2;
    }
    int64_t n = atoll(argv[3]), n_slow = atoll(argv[4]);
    int rounds = atoi(argv[5]), cal = atoi(argv[6]);
    if (n < 4 || n_slow < 4 || rounds < 1 || cal < 1) {
        fprintf(stderr, "N, N_SLOW >= 4; ROUNDS, CAL >= 1\n");
        return 2;
    }
    int nsys = is_switch ? YF_FAIR_NSWITCH : YF_FAIR_NCREATE;
    const char **names = is_switch ? sw_names : life_names;
    double by[YF_FAIR_NCREATE][YF_BENCH_PLACEMENTS];
    int best[YF_FAIR_NCREATE];
    double *samples = calloc((size_t)nsys * rounds, sizeof *samples);
    if (!samples)
        return 1;

    /* Interleaved as lab.bench.interleaved does: one warm-up round, then
     * rounds whose order starts one competitor later each time. */
    int ncal = nsys * YF_BENCH_PLACEMENTS;
    for (int r = -1; r < cal; r++)
        for (int k = 0; k < ncal; k++) {
            int c = (k + (r < 0 ? 0 : r)) % ncal, s = c / YF_BENCH_PLACEMENTS, p = c % YF_BENCH_PLACEMENTS;
            if (boost(s) && !have_boost)
                continue;
            double v = one(s, p, (slow(s) ? n_slow : n) / 4);
            if (r >= 0 && (r == 0 || better(v, by[s][p])))
                by[s][p] = v;
        }
    for (int s = 0; s < nsys; s++) {
        best[s] = 0;
        for (int p = 1; p < YF_BENCH_PLACEMENTS; p++)
            if (better(by[s][p], by[s][best[s]]))
                best[s] = p;
    }
    for (int r = -1; r < rounds; r++)
        for (int k = 0; k < nsys; k++) {
            int s = (k + (r < 0 ? 0 : r)) % nsys;
            if (boost(s) && !have_boost)
                continue;
            double v = one(s, best[s], slow(s) ? n_slow : n);
            if (r >= 0)
                samples[s * rounds + r] = v;
        }
    for (int s = 0; s < nsys; s++) {
        if (boost(s) && !have_boost)
            continue;
        printf("{\"kind\": \"%s\", \"system\": \"%s\", \"placement\": %d, \"by_placement\": [", argv[1], names[s],
               best[s]);
        for (int p = 0; p < YF_BENCH_PLACEMENTS; p++)
            printf("%s%.6g", p ? ", " : "", by[s][p]);
        printf("], \"samples\": [");
        for (int r = 0; r < rounds; r++)
            printf("%s%.6g", r ? ", " : "", samples[s * rounds + r]);
        printf("]}\n");
    }
    return 0;
}
