/* delay_proxy.c - a TCP proxy on 127.0.0.1 that holds every chunk going
 * from a client to the server for a fixed delay before passing it on; the
 * replies go back at once. It is built on yfcore's own event loop: one
 * coroutine per direction of each connection, the delay a yf_sleep_ms on
 * the loop's timer wheel, so any number of requests wait at the same time.
 *
 *   delay_proxy UPSTREAM_PORT DELAY_MS
 *
 * Listens on a free port of 127.0.0.1, prints {"port": P, "delay_ms": D}
 * on one line, then serves until killed. Bytes arriving while a chunk waits
 * leave with it, so a request written in pieces is held once. With a
 * request/response client
 * (one request in flight per connection, as libmemcached's blocking calls
 * make it) every round trip then lasts at least DELAY_MS, and at most one
 * wheel tick (1 ms) more plus the machine's own latency: what a server on
 * another host would add, so a client that overlaps its waits shows it. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "yf.h"
#include "args.h"

#define CHUNK 16384

static int upstream_port;
static int64_t delay_ms;
static yf_sched *sched;

/* One proxied connection; freed by whichever of its two pumps ends last. */
struct conn {
    int client, server;
    int live;                   /* pumps still running */
};

struct pump {
    struct conn *c;
    int from, to;
    int64_t delay;              /* ms each chunk waits before it is passed on */
};

/* Copies from -> to until EOF or an error. At EOF it half-closes `to`, so
 * the peer sees the end and the other direction drains; on an error it shuts
 * both sockets down, which wakes the other pump (a hang-up counts as ready)
 * and ends it too. Only the last pump closes the fds: no coroutine waits on
 * them any more. */
static intptr_t pump(void *arg)
{
    struct pump *p = arg;
    char buf[CHUNK];
    int failed = 0;
    for (;;) {
        ssize_t n = recv(p->from, buf, sizeof buf, MSG_DONTWAIT);
        if (n == 0)
            break;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (yf_wait_fd(p->from, YF_READ, -1) < 0) {
                    failed = 1;
                    break;
                }
                continue;
            }
            failed = 1;
            break;
        }
        if (p->delay > 0) {
            if (yf_sleep_ms(p->delay) < 0) {
                failed = 1;
                break;
            }
            /* What arrived while the first chunk waited (the rest of a
             * request the client wrote in pieces) leaves with it: the delay
             * is per request, not per write() the client happened to make. */
            while ((size_t)n < sizeof buf) {
                ssize_t more = recv(p->from, buf + n, sizeof buf - (size_t)n, MSG_DONTWAIT);
                if (more <= 0)
                    break;
                n += more;
            }
        }
        if (yf_sendn(p->to, buf, (size_t)n, -1) < 0) {
            failed = 1;
            break;
        }
    }
    struct conn *c = p->c;
    if (failed) {
        shutdown(c->client, SHUT_RDWR);
        shutdown(c->server, SHUT_RDWR);
    } else {
        shutdown(p->to, SHUT_WR);
    }
    free(p);
    if (--c->live == 0) {
        close(c->client);
        close(c->server);
        free(c);
    }
    return 0;
}

static int connect_upstream(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)upstream_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* A loopback connect to a listening server completes at once; the
     * sockets are then driven with MSG_DONTWAIT through the loop. */
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static int start_pump(struct conn *c, int from, int to, int64_t delay)
{
    struct pump *p = malloc(sizeof *p);
    if (!p)
        return -1;
    *p = (struct pump){c, from, to, delay};
    yf_co *co = yf_co_create(sched, pump, p);
    if (!co || yf_co_detach(co) != 0) {
        free(p);
        return -1;
    }
    c->live++;
    return 0;
}

static intptr_t acceptor(void *arg)
{
    int lfd = (int)(intptr_t)arg;
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (yf_wait_fd(lfd, YF_READ, -1) < 0)
                    return -1;
                continue;
            }
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            return -1;
        }
        int one = 1;
        int up = connect_upstream();
        struct conn *c = up >= 0 ? calloc(1, sizeof *c) : NULL;
        if (!c) {
            if (up >= 0)
                close(up);
            close(fd);
            continue;
        }
        /* Small requests must leave at once, not wait for Nagle. */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        setsockopt(up, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        *c = (struct conn){fd, up, 0};
        if (start_pump(c, fd, up, delay_ms) < 0 || start_pump(c, up, fd, 0) < 0) {
            /* A pump that did start ends on the shutdown and frees c. */
            shutdown(fd, SHUT_RDWR);
            shutdown(up, SHUT_RDWR);
            if (c->live == 0) {
                close(fd);
                close(up);
                free(c);
            }
        }
    }
}

int main(int argc, char **argv)
{
    args_count(argc, argv, 2, "UPSTREAM_PORT DELAY_MS");
    upstream_port = (int)arg_int(argv[1], "UPSTREAM_PORT", 1, 65535);
    delay_ms = arg_int(argv[2], "DELAY_MS", 0, 10000);
    signal(SIGPIPE, SIG_IGN);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof a;
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 1024) < 0 ||
        getsockname(lfd, (struct sockaddr *)&a, &alen) < 0) {
        perror("listen");
        return 2;
    }
    sched = yf_sched_new(65536, 0);
    yf_loop *lp = sched ? yf_loop_new(sched) : NULL;
    yf_co *co = lp ? yf_co_create(sched, acceptor, (void *)(intptr_t)lfd) : NULL;
    if (!co || yf_co_detach(co) != 0) {
        perror("yf_loop_new");
        return 2;
    }
    printf("{\"port\": %d, \"delay_ms\": %lld}\n", ntohs(a.sin_port), (long long)delay_ms);
    fflush(stdout);
    /* The acceptor never returns while it can accept: the loop ending at
     * all (other than by a signal) is a failure. */
    for (;;) {
        if (yf_loop_run(lp) < 0 && errno == EINTR)
            continue;
        perror("delay_proxy: the accept loop ended");
        return 1;
    }
}
