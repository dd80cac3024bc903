/* mc_client.c - drives the unmodified libmemcached client with ordinary
 * blocking calls, from N coroutines of one thread (the hooks make the calls
 * cooperative) or from N threads, and counts what went wrong.
 *
 *   mc_client PORT MODE WORKERS OPS [binary]
 *     MODE coro: WORKERS coroutines in one thread (needs the hooks);
 *          threads: WORKERS threads, each its own client.
 *     OPS: set/get calls per worker (alternating set k, get k).
 *
 * Prints one JSON line: ops, seconds, ops_per_s, failures (return codes
 * other than SUCCESS), wrong (a get that returned another value), connects
 * (connect() calls the hooks saw; -1 without hooks), the first failure. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <libmemcached/memcached.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "yf.h"

static int port, ops, binary;
static uint64_t failures, wrong;
static char first_failure[160];

static void note_failure(memcached_st *mc, memcached_return_t rc, const char *what)
{
    if (__atomic_fetch_add(&failures, 1, __ATOMIC_RELAXED) == 0)
        snprintf(first_failure, sizeof first_failure, "%s: %s", what, memcached_strerror(mc, rc));
}

/* One client's run: OPS calls alternating set and get of its own keys. */
static intptr_t client(void *arg)
{
    intptr_t id = (intptr_t)arg;
    memcached_st *mc = memcached_create(NULL);
    if (!mc)
        return -1;
    memcached_server_add(mc, "127.0.0.1", (in_port_t)port);
    if (binary)
        memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_BINARY_PROTOCOL, 1);
    char key[48], val[64];
    for (int i = 0; i < ops; i += 2) {
        int klen = snprintf(key, sizeof key, "yf-%ld-%d", (long)id, (i / 2) % 64);
        int vlen = snprintf(val, sizeof val, "value-%ld-%d-0123456789abcdef", (long)id, i);
        memcached_return_t rc = memcached_set(mc, key, (size_t)klen, val, (size_t)vlen, 0, 0);
        /* A failed set is counted and the get still made: every call counts. */
        if (rc != MEMCACHED_SUCCESS)
            note_failure(mc, rc, "set");
        if (i + 1 >= ops)
            break;
        size_t len = 0;
        uint32_t flags = 0;
        char *got = memcached_get(mc, key, (size_t)klen, &len, &flags, &rc);
        if (rc != MEMCACHED_SUCCESS)
            note_failure(mc, rc, "get");
        else if (!got || len != (size_t)vlen || memcmp(got, val, len) != 0)
            __atomic_fetch_add(&wrong, 1, __ATOMIC_RELAXED);
        free(got);
    }
    memcached_free(mc);
    return 0;
}

static void *thread_main(void *arg)
{
    client(arg);
    return NULL;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: %s PORT coro|threads WORKERS OPS [binary]\n", argv[0]);
        return 2;
    }
    port = atoi(argv[1]);
    const char *mode = argv[2];
    int workers = atoi(argv[3]);
    ops = atoi(argv[4]);
    binary = argc > 5 && strcmp(argv[5], "binary") == 0;
    if (port <= 0 || workers <= 0 || ops <= 0) {
        fprintf(stderr, "PORT, WORKERS and OPS must be positive\n");
        return 2;
    }
    int64_t (*calls)(const char *) = (int64_t (*)(const char *))dlsym(RTLD_DEFAULT, "yf_hook_calls");
    int64_t connects0 = calls ? calls("connect") : -1;
    double t0 = now_s();
    if (strcmp(mode, "coro") == 0) {
        if (!calls) {
            fprintf(stderr, "coro mode needs the hooks (LD_PRELOAD=libyfhook.so)\n");
            return 2;
        }
        yf_sched *s = yf_sched_new(131072, 0);
        yf_loop *lp = s ? yf_loop_new(s) : NULL;
        if (!lp) {
            perror("yf_loop_new");
            return 2;
        }
        for (intptr_t i = 0; i < workers; i++) {
            yf_co *co = yf_co_create(s, client, (void *)i);
            if (!co || yf_co_detach(co) != 0) {
                perror("yf_co_create");
                return 2;
            }
        }
        if (yf_loop_run(lp) < 0) {
            perror("yf_loop_run");
            return 2;
        }
        yf_loop_free(lp);
        yf_sched_free(s);
    } else if (strcmp(mode, "threads") == 0) {
        pthread_t *t = calloc((size_t)workers, sizeof *t);
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setstacksize(&at, 262144);
        for (intptr_t i = 0; i < workers; i++)
            if (pthread_create(&t[i], &at, thread_main, (void *)i) != 0) {
                perror("pthread_create");
                return 2;
            }
        for (int i = 0; i < workers; i++)
            pthread_join(t[i], NULL);
        free(t);
    } else {
        fprintf(stderr, "MODE must be coro or threads, not %s\n", mode);
        return 2;
    }
    double dt = now_s() - t0;
    long long total = (long long)workers * ops;
    printf("{\"mode\": \"%s\", \"workers\": %d, \"protocol\": \"%s\", \"ops\": %lld, \"seconds\": %.6f, "
           "\"ops_per_s\": %.1f, \"failures\": %llu, \"wrong\": %llu, \"connects\": %lld, "
           "\"first_failure\": \"%s\"}\n",
           mode, workers, binary ? "binary" : "text", total, dt, (double)total / dt,
           (unsigned long long)failures, (unsigned long long)wrong,
           calls ? (long long)(calls("connect") - connects0) : -1LL, first_failure);
    return 0;
}
