/* echo_load.c - a small bounded load client for echo servers: CONNS TCP
 * connections to 127.0.0.1:PORT, each making REQUESTS round trips of SIZE
 * bytes (write the message, read all of it back, check it), with at most
 * one request outstanding per connection, all driven by one epoll loop in
 * one thread. So the load is the same for every server, and a server is
 * never asked for more than CONNS requests at once.
 *
 * usage: echo_load PORT CONNS REQUESTS SIZE
 * Prints one JSON line: {"requests", "seconds", "per_second", "p50_us",
 * "p99_us"} (latency of each round trip, from its write to its last byte).
 * Exit 1 when a connection fails or an echo differs from what was sent. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "args.h"

struct conn {
    int fd;
    long done;          /* round trips finished */
    size_t got;         /* bytes of the current echo received */
    double sent_at;     /* ns */
};

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void fail(const char *what)
{
    fprintf(stderr, "echo_load: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* Writes the whole message: it is small enough for the socket's buffer,
 * which holds at least SIZE bytes (checked by the caller's range). */
static void send_msg(struct conn *c, const char *msg, size_t size)
{
    c->got = 0;
    c->sent_at = now_ns();
    if (send(c->fd, msg, size, MSG_NOSIGNAL) != (ssize_t)size)
        fail("send");
}

int main(int argc, char **argv)
{
    args_count(argc, argv, 4, "PORT CONNS REQUESTS SIZE");
    int port = (int)arg_int(argv[1], "PORT", 1, 65535);
    int nconn = (int)arg_int(argv[2], "CONNS", 1, 1000);
    long requests = (long)arg_int(argv[3], "REQUESTS", 1, 1000000);
    size_t size = (size_t)arg_int(argv[4], "SIZE", 1, 16384);

    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct conn *cs = calloc((size_t)nconn, sizeof *cs);
    double *lat = malloc((size_t)nconn * (size_t)requests * sizeof *lat);
    char *msg = malloc(size), *buf = malloc(size);
    if (!cs || !lat || !msg || !buf)
        fail("malloc");
    for (size_t i = 0; i < size; i++)
        msg[i] = (char)('a' + i % 26);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        fail("epoll_create1");
    for (int i = 0; i < nconn; i++) {
        cs[i].fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (cs[i].fd < 0 || connect(cs[i].fd, (struct sockaddr *)&sa, sizeof sa) != 0)
            fail("connect");
        int one = 1;
        setsockopt(cs[i].fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &cs[i]};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev) != 0)
            fail("epoll_ctl");
    }

    long nlat = 0, open = nconn;
    double t0 = now_ns();
    for (int i = 0; i < nconn; i++)
        send_msg(&cs[i], msg, size);
    struct epoll_event evs[64];
    while (open > 0) {
        int n = epoll_wait(ep, evs, 64, 10000);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            errno = n == 0 ? ETIMEDOUT : errno;
            fail("epoll_wait (the server stopped answering)");
        }
        for (int k = 0; k < n; k++) {
            struct conn *c = evs[k].data.ptr;
            ssize_t r = recv(c->fd, buf + c->got, size - c->got, 0);
            if (r < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (r <= 0) {
                errno = r == 0 ? ECONNRESET : errno;
                fail("recv");
            }
            c->got += (size_t)r;
            if (c->got < size)
                continue;
            if (memcmp(buf, msg, size) != 0) {
                fprintf(stderr, "echo_load: the echo differs from the message\n");
                return 1;
            }
            lat[nlat++] = now_ns() - c->sent_at;
            if (++c->done < requests) {
                send_msg(c, msg, size);
            } else {
                close(c->fd);
                open--;
            }
        }
    }
    double secs = (now_ns() - t0) / 1e9;
    qsort(lat, (size_t)nlat, sizeof *lat, cmp_double);
    printf("{\"requests\": %ld, \"seconds\": %.6f, \"per_second\": %.1f, \"p50_us\": %.2f, \"p99_us\": %.2f}\n",
           nlat, secs, (double)nlat / secs, lat[nlat / 2] / 1e3, lat[(long)(nlat * 0.99)] / 1e3);
    return 0;
}
