/* hook_bench.c - cost of the hooks on the fast path: a round trip is a send
 * and a recv of 64 bytes over a socketpair with the data ready, through
 * libc's functions (raw) and through the hooks (hooked), from inside a loop's
 * coroutine where the hooks take their cooperative path. Rounds alternate
 * which goes first. Prints {"raw": [ns per round trip...], "hooked": [...]}.
 *
 *   hook_bench N ROUNDS    (run with LD_PRELOAD=libyfhook.so) */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

#include "yf.h"

typedef ssize_t (*send_fn)(int, const void *, size_t, int);
typedef ssize_t (*recv_fn)(int, void *, size_t, int);

static long n, rounds;
static double raw_ns[1000], hooked_ns[1000];
static int failed;

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static double trips(int sv[2], send_fn s, recv_fn r)
{
    char buf[64] = {0};
    double t0 = now_ns();
    for (long i = 0; i < n; i++) {
        if (s(sv[0], buf, sizeof buf, 0) != 64 || r(sv[1], buf, sizeof buf, 0) != 64) {
            failed = 1;
            break;
        }
    }
    return (now_ns() - t0) / (double)n;
}

static intptr_t body(void *arg)
{
    (void)arg;
    void *(*real)(const char *) = (void *(*)(const char *))dlsym(RTLD_DEFAULT, "yf_hook_real");
    if (!real) {
        failed = 2;
        return 0;
    }
    send_fn raw_send = (send_fn)real("send");
    recv_fn raw_recv = (recv_fn)real("recv");
    int sv[2];
    if (!raw_send || !raw_recv || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) {
        failed = 3;
        return 0;
    }
    trips(sv, send, recv);                   /* warm-up; the hooks take the fds over */
    for (long k = 0; k < rounds; k++) {
        if (k % 2 == 0) {
            raw_ns[k] = trips(sv, raw_send, raw_recv);
            hooked_ns[k] = trips(sv, send, recv);
        } else {
            hooked_ns[k] = trips(sv, send, recv);
            raw_ns[k] = trips(sv, raw_send, raw_recv);
        }
    }
    return 0;
}

static void print_list(const char *name, const double *x)
{
    printf("\"%s\": [", name);
    for (long k = 0; k < rounds; k++)
        printf("%s%.2f", k ? ", " : "", x[k]);
    printf("]");
}

int main(int argc, char **argv)
{
    n = argc > 1 ? atol(argv[1]) : 100000;
    rounds = argc > 2 ? atol(argv[2]) : 7;
    if (n < 1 || rounds < 1 || rounds > 1000) {
        fprintf(stderr, "usage: %s N ROUNDS (ROUNDS <= 1000)\n", argv[0]);
        return 2;
    }
    yf_sched *s = yf_sched_new(65536, 0);
    yf_loop *lp = s ? yf_loop_new(s) : NULL;
    yf_co *co = lp ? yf_co_create(s, body, NULL) : NULL;
    if (!co || yf_co_detach(co) != 0 || yf_loop_run(lp) < 0) {
        perror("hook_bench");
        return 2;
    }
    if (failed) {
        fprintf(stderr, "hook_bench: failed (%d)\n", failed);
        return 1;
    }
    printf("{");
    print_list("raw", raw_ns);
    printf(", ");
    print_list("hooked", hooked_ns);
    printf("}\n");
    return 0;
}
