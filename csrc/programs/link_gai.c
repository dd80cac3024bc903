/* link_gai.c - the socket calls getaddrinfo makes inside libc, and what the
 * hooks (csrc/hook/, linked in) see of them.
 *     link_gai plain   one lookup from plain code (run it under strace)
 *     link_gai loop    one hooked lookup and one straight to libc, each from a
 *                      loop's coroutine while a second coroutine counts how
 *                      often it gets to run
 * The lookup is always of the numeric address 127.0.0.1 with AI_ADDRCONFIG:
 * libc still asks the kernel for the machine's addresses over netlink (the
 * diary's strace), and no name server is ever contacted. Prints one JSON
 * line; "inner" names every hook but getaddrinfo's own entered during the
 * lookup, with its count. */
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "yf.h"
#include "yfhook.h"

typedef int (*gai_fn)(const char *, const char *, const struct addrinfo *, struct addrinfo **);

static int64_t snap[64];
static int nnames;

static void snapshot(void)
{
    const char *const *names = yf_hook_names();
    for (nnames = 0; names[nnames] && nnames < 64; nnames++)
        snap[nnames] = yf_hook_calls(names[nnames]);
}

/* Entries into the getaddrinfo hook since snapshot(). */
static int64_t since_gai(void)
{
    const char *const *names = yf_hook_names();
    for (int i = 0; i < nnames; i++)
        if (strcmp(names[i], "getaddrinfo") == 0)
            return yf_hook_calls(names[i]) - snap[i];
    return 0;
}

/* The hooks entered since snapshot(), getaddrinfo's own left out, as the
 * members of a JSON object ("name": count, ...), into buf. */
static void since_names(char *buf, size_t len)
{
    const char *const *names = yf_hook_names();
    size_t used = 0;
    buf[0] = 0;
    for (int i = 0; i < nnames && used < len; i++) {
        int64_t d = yf_hook_calls(names[i]) - snap[i];
        if (d && strcmp(names[i], "getaddrinfo") != 0)
            used += snprintf(buf + used, len - used, "%s\"%s\": %lld", used ? ", " : "", names[i], (long long)d);
    }
}

static int lookup(gai_fn fn)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_flags = AI_ADDRCONFIG | AI_NUMERICHOST | AI_NUMERICSERV;
    hints.ai_socktype = SOCK_STREAM;
    int rc = fn("127.0.0.1", "80", &hints, &res);
    if (rc == 0)
        freeaddrinfo(res);
    return rc;
}

static volatile int stop;
static volatile int64_t ticks;

static intptr_t ticker(void *arg)
{
    (void)arg;
    /* yf_sleep_ms(0) yields through the loop, which polls its fds before
     * resuming it: a plain yield would never let the loop reach epoll. */
    while (!stop) {
        ticks++;
        yf_sleep_ms(0);
    }
    return 0;
}

struct result {
    char inner_names[256];
    int rc_hooked, rc_real;
    int64_t gai_hooked, ticks_hooked, ticks_real;
};

static intptr_t looker(void *arg)
{
    struct result *r = arg;
    /* Let the ticker run once so both coroutines are in the loop's rhythm. */
    yf_sleep_ms(0);
    snapshot();
    int64_t t0 = ticks;
    r->rc_hooked = lookup(getaddrinfo);
    r->ticks_hooked = ticks - t0;
    r->gai_hooked = since_gai();
    since_names(r->inner_names, sizeof r->inner_names);
    t0 = ticks;
    r->rc_real = lookup((gai_fn)yf_hook_real("getaddrinfo"));
    r->ticks_real = ticks - t0;
    stop = 1;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "plain") == 0) {
        snapshot();
        int rc = lookup(getaddrinfo);
        char inner[256];
        since_names(inner, sizeof inner);
        printf("{\"mode\": \"plain\", \"rc\": %d, \"inner\": {%s}, \"gai_hooked\": %lld}\n", rc, inner,
               (long long)since_gai());
        return rc != 0;
    }
    if (argc != 2 || strcmp(argv[1], "loop") != 0) {
        fprintf(stderr, "usage: %s plain|loop\n", argv[0]);
        return 2;
    }
    yf_sched *s = yf_sched_new(65536, 0);
    yf_loop *lp = s ? yf_loop_new(s) : NULL;
    struct result r = {"", -1, -1, -1, -1, -1};
    if (!lp || !yf_co_create(s, ticker, NULL) || !yf_co_create(s, looker, &r) || yf_loop_run(lp) < 0) {
        perror("link_gai");
        return 1;
    }
    printf("{\"mode\": \"loop\", \"pid\": %d, \"rc_hooked\": %d, \"rc_real\": %d, \"gai_hooked\": %lld, "
           "\"ticks_hooked\": %lld, \"ticks_real\": %lld, \"inner\": {%s}}\n",
           (int)getpid(), r.rc_hooked, r.rc_real, (long long)r.gai_hooked, (long long)r.ticks_hooked,
           (long long)r.ticks_real, r.inner_names);
    return r.rc_hooked != 0 || r.rc_real != 0;
}
