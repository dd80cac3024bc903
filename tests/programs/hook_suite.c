/* hook_suite.c - exercises every hooked call inside a loop's coroutines and
 * in a plain thread, over TCP (IPv4, IPv6), Unix and UDP loopback sockets,
 * pipes and files. Prints one JSON line per check: {"check", "ok", "detail"}.
 * Built three ways by tests/test_hooks.py: hook objects linked in, linked
 * against libyfhook.so, and against libyf.so with LD_PRELOAD=libyfhook.so. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "yf.h"

static int failures;

static void report(const char *check, int ok, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void report(const char *check, int ok, const char *fmt, ...)
{
    char detail[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    for (char *c = detail; *c; c++)
        if (*c == '"' || *c == '\\')
            *c = '\'';
    printf("{\"check\": \"%s\", \"ok\": %d, \"detail\": \"%s\"}\n", check, ok ? 1 : 0, detail);
    fflush(stdout);
    failures += !ok;
}

static int64_t ms_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Hook counters through dlsym: the preload build links no hook symbol. */
static int64_t hook_calls(const char *name)
{
    int64_t (*f)(const char *) = (int64_t (*)(const char *))dlsym(RTLD_DEFAULT, "yf_hook_calls");
    return f ? f(name) : -1;
}

static int kernel_flags(int fd)
{
    int (*real_fcntl)(int, int, ...) = NULL;
    void *(*real)(const char *) = (void *(*)(const char *))dlsym(RTLD_DEFAULT, "yf_hook_real");
    if (real)
        real_fcntl = (int (*)(int, int, ...))real("fcntl");
    return real_fcntl ? real_fcntl(fd, F_GETFL) : -1;
}

/* ---- a run of coroutines ---------------------------------------------------- */

static yf_sched *S;
static yf_loop *L;

static void spawn(yf_co_fn fn, void *arg)
{
    yf_co *co = yf_co_create(S, fn, arg);
    if (!co || yf_co_detach(co) != 0) {
        perror("yf_co_create");
        exit(2);
    }
}

static void run(void)
{
    if (yf_loop_run(L) < 0) {
        perror("yf_loop_run");
        exit(2);
    }
}

/* A coroutine that counts while the others wait, until they are all done:
 * proof that a hooked call blocked its coroutine, not the thread. */
static volatile int ticks, pending;

static intptr_t ticker(void *arg)
{
    (void)arg;
    while (pending > 0) {
        ticks++;
        usleep(1000);
    }
    return 0;
}

/* Runs the coroutines fns[0..n) (each gets arg) and the ticker to the end. */
static void run_all(int n, yf_co_fn *fns, void *arg)
{
    ticks = 0;
    pending = n;
    for (int i = 0; i < n; i++)
        spawn(fns[i], arg);
    spawn(ticker, NULL);
    run();
}

/* The same for one coroutine. */
static void run_one(yf_co_fn fn, void *arg)
{
    run_all(1, &fn, arg);
}

#define DONE() (pending--, 0)

/* ---- stream echo over one address family ----------------------------------------- */

struct echo {
    int family;
    int lfd;
    struct sockaddr_storage addr;
    socklen_t alen;
    int server_ok, client_ok, eof_ok;
    int nap_ticks;              /* the ticker's runs during the client's nap */
};

static intptr_t echo_server(void *arg)
{
    struct echo *e = arg;
    int c = accept4(e->lfd, NULL, NULL, SOCK_CLOEXEC);
    if (c >= 0) {
        char buf[64];
        struct iovec iov[2] = {{buf, 3}, {buf + 3, sizeof buf - 3}};
        ssize_t n = readv(c, iov, 2);       /* waits: the client sleeps first */
        struct iovec out = {buf, n > 0 ? (size_t)n : 0};
        struct msghdr mh = {.msg_iov = &out, .msg_iovlen = 1};
        e->server_ok = n == 8 && sendmsg(c, &mh, MSG_NOSIGNAL) == n;
        close(c);
    }
    return DONE();
}

static intptr_t echo_client(void *arg)
{
    struct echo *e = arg;
    int fd = socket(e->family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&e->addr, e->alen) == 0) {
        int t0 = ticks;
        usleep(20000);
        e->nap_ticks = ticks - t0;
        char got[16] = {0};
        if (write(fd, "hello yf", 8) == 8) {
            ssize_t n = recv(fd, got, sizeof got, 0);
            e->client_ok = n == 8 && memcmp(got, "hello yf", 8) == 0;
        }
        char x;
        e->eof_ok = read(fd, &x, 1) == 0;   /* orderly EOF after the server's close */
    }
    if (fd >= 0)
        close(fd);
    return DONE();
}

static int listener(int family, struct sockaddr_storage *ss, socklen_t *len, const char *path, int backlog)
{
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    memset(ss, 0, sizeof *ss);
    if (family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)ss;
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        *len = sizeof *a;
    } else if (family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        a->sin6_family = AF_INET6;
        a->sin6_addr = in6addr_loopback;
        *len = sizeof *a;
    } else {
        struct sockaddr_un *a = (struct sockaddr_un *)ss;
        a->sun_family = AF_UNIX;
        snprintf(a->sun_path, sizeof a->sun_path, "%s", path);
        unlink(path);
        *len = sizeof *a;
    }
    if (bind(fd, (struct sockaddr *)ss, *len) != 0 || listen(fd, backlog) != 0 ||
        getsockname(fd, (struct sockaddr *)ss, len) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static char unix_path[80];

static void check_echo(const char *name, int family)
{
    struct echo e = {.family = family};
    e.lfd = listener(family, &e.addr, &e.alen, unix_path, 16);
    if (e.lfd < 0) {
        report(name, family == AF_INET6 && errno == EADDRNOTAVAIL,
               "no listener: %s (IPv6 may be off here)", strerror(errno));
        return;
    }
    yf_co_fn fns[] = {echo_server, echo_client};
    run_all(2, fns, &e);
    close(e.lfd);
    if (family == AF_UNIX)
        unlink(unix_path);
    /* The server coroutine runs first and would hold the thread in accept
     * and then in readv for the client's 20 ms nap if they blocked it: the
     * ticker runs during the nap only if nothing blocks the thread (counted
     * there, as a busy machine may let it run only a few of its 1 ms turns). */
    report(name, e.server_ok && e.client_ok && e.eof_ok && e.nap_ticks >= 1,
           "server %d client %d eof %d; the ticker ran %d times during the client's 20 ms nap",
           e.server_ok, e.client_ok, e.eof_ok, e.nap_ticks);
}

/* ---- timeouts, flags, errors --------------------------------------------------------- */

struct pair {
    int sv[2];
    int r[8];
    int64_t t[8];
    int e[8];
};

/* A pair whose sv is a connected Unix stream socketpair. */
static struct pair unix_pair(void)
{
    struct pair p = {0};
    socketpair(AF_UNIX, SOCK_STREAM, 0, p.sv);
    return p;
}

static void close_pair(int fds[2])
{
    close(fds[0]);
    close(fds[1]);
}

/* Runs a and b (each gets p) and the ticker to the end. */
static void run_two(yf_co_fn a, yf_co_fn b, struct pair *p)
{
    yf_co_fn fns[] = {a, b};
    run_all(2, fns, p);
}

/* A writer coroutine: naps 10 ms (the reader waits meanwhile), then writes
 * one byte to p->sv[1]. */
static intptr_t nap_then_write(void *arg)
{
    struct pair *p = arg;
    usleep(10000);
    write(p->sv[1], "x", 1);
    return DONE();
}

static intptr_t rcvtimeo_body(void *arg)
{
    struct pair *p = arg;
    struct timeval tv = {0, 30000};
    setsockopt(p->sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char b[8];
    int64_t t0 = ms_now();
    errno = 0;
    p->r[0] = (int)recv(p->sv[0], b, sizeof b, 0);
    p->e[0] = errno;
    p->t[0] = ms_now() - t0;
    t0 = ms_now();
    p->r[1] = (int)read(p->sv[0], b, sizeof b);
    p->e[1] = errno;
    p->t[1] = ms_now() - t0;
    return DONE();
}

static void check_rcvtimeo(void)
{
    struct pair p = unix_pair();
    run_one(rcvtimeo_body, &p);
    report("rcvtimeo", p.r[0] == -1 && p.e[0] == EAGAIN && p.t[0] >= 30 && p.r[1] == -1 &&
           p.e[1] == EAGAIN && p.t[1] >= 30 && ticks >= 5,
           "recv %d errno %d after %lld ms, read %d errno %d after %lld ms, ticker %d",
           p.r[0], p.e[0], (long long)p.t[0], p.r[1], p.e[1], (long long)p.t[1], ticks);
    close_pair(p.sv);
}

static intptr_t nonblock_body(void *arg)
{
    struct pair *p = arg;
    int fd = p->sv[0];
    char b[8];
    /* A blocking fd: the kernel flag is set by the hooks, F_GETFL hides it. */
    p->r[0] = (fcntl(fd, F_GETFL) & O_NONBLOCK) == 0 && recv(fd, b, 1, MSG_PEEK | MSG_DONTWAIT) == -1 &&
              errno == EAGAIN;
    p->r[1] = (kernel_flags(fd) & O_NONBLOCK) != 0;
    /* The caller's O_NONBLOCK: EAGAIN at once, F_GETFL reports it. */
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    int64_t t0 = ms_now();
    p->r[2] = recv(fd, b, 1, 0) == -1 && errno == EAGAIN && ms_now() - t0 < 5 &&
              (fcntl(fd, F_GETFL) & O_NONBLOCK);
    /* Cleared again: waits (a writer coroutine sends after 10 ms). */
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    p->r[3] = recv(fd, b, 1, 0) == 1 && (kernel_flags(fd) & O_NONBLOCK) != 0;
    /* ioctl(FIONBIO) is the same wish. */
    int on = 1;
    ioctl(fd, FIONBIO, &on);
    p->r[4] = read(fd, b, 1) == -1 && errno == EAGAIN && (fcntl(fd, F_GETFL) & O_NONBLOCK);
    on = 0;
    ioctl(fd, FIONBIO, &on);
    /* SOCK_NONBLOCK given to socket() is a wish too. */
    int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    p->r[5] = (fcntl(s, F_GETFL) & O_NONBLOCK) && recv(s, b, 1, 0) == -1;
    int s2 = socket(AF_INET, SOCK_STREAM, 0);
    p->r[6] = !(fcntl(s2, F_GETFL) & O_NONBLOCK) && (kernel_flags(s2) & O_NONBLOCK);
    close(s);
    close(s2);
    return DONE();
}

static void check_nonblock(void)
{
    struct pair p = unix_pair();
    run_two(nonblock_body, nap_then_write, &p);
    report("nonblock-wish", p.r[0] && p.r[1] && p.r[2] && p.r[3] && p.r[4] && p.r[5] && p.r[6],
           "getfl hides kernel flag %d, kernel flag set %d, O_NONBLOCK gives EAGAIN %d, "
           "cleared waits %d, FIONBIO %d, SOCK_NONBLOCK %d, new socket kernel-nonblocking %d",
           p.r[0], p.r[1], p.r[2], p.r[3], p.r[4], p.r[5], p.r[6]);
    close_pair(p.sv);
}

static intptr_t epipe_body(void *arg)
{
    struct pair *p = arg;
    close(p->sv[1]);
    errno = 0;
    p->r[0] = (int)send(p->sv[0], "x", 1, MSG_NOSIGNAL);
    p->e[0] = errno;
    p->r[1] = (int)write(p->sv[0], "x", 1);
    p->e[1] = errno;
    return DONE();
}

static void check_epipe(void)
{
    struct pair p = unix_pair();
    run_one(epipe_body, &p);
    report("epipe", p.r[0] == -1 && p.e[0] == EPIPE && p.r[1] == -1 && p.e[1] == EPIPE,
           "send %d errno %d, write %d errno %d", p.r[0], p.e[0], p.r[1], p.e[1]);
    close(p.sv[0]);
}

struct reset {
    int lfd;
    struct sockaddr_storage addr;
    socklen_t alen;
    int r, e, r2, e2;
};

/* An IPv4 loopback listener with this backlog, in x->lfd and x->addr. */
static struct reset tcp_listener(int backlog)
{
    struct reset x = {0};
    x.lfd = listener(AF_INET, &x.addr, &x.alen, NULL, backlog);
    return x;
}

static intptr_t reset_server(void *arg)
{
    struct reset *x = arg;
    int c = accept(x->lfd, NULL, NULL);
    struct linger lg = {1, 0};
    setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    usleep(5000);
    close(c);                                /* RST instead of FIN */
    return DONE();
}

static intptr_t reset_client(void *arg)
{
    struct reset *x = arg;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    connect(fd, (struct sockaddr *)&x->addr, x->alen);
    char b[4];
    errno = 0;
    x->r = (int)recv(fd, b, sizeof b, 0);   /* waits, then the reset arrives */
    x->e = errno;
    close(fd);
    return DONE();
}

static void check_reset(void)
{
    struct reset x = tcp_listener(16);
    yf_co_fn fns[] = {reset_server, reset_client};
    run_all(2, fns, &x);
    close(x.lfd);
    report("econnreset", x.r == -1 && x.e == ECONNRESET, "recv %d errno %d", x.r, x.e);
}

static intptr_t refused_body(void *arg)
{
    struct reset *x = arg;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    errno = 0;
    x->r = connect(fd, (struct sockaddr *)&x->addr, x->alen);
    x->e = errno;
    close(fd);
    return DONE();
}

static void check_refused(void)
{
    struct reset x = tcp_listener(16);
    close(x.lfd);                            /* the port is closed now */
    run_one(refused_body, &x);
    report("connect-refused", x.r == -1 && x.e == ECONNREFUSED, "connect %d errno %d", x.r, x.e);
}

/* A listener with a full accept queue drops further SYNs: connect hangs,
 * and only a timeout ends it. */
static intptr_t connect_timeout_body(void *arg)
{
    struct reset *x = arg;
    int fds[8], n = 0, r = 0;
    struct timeval tv = {0, 50000};
    for (; n < 8; n++) {
        fds[n] = socket(AF_INET, SOCK_STREAM, 0);
        setsockopt(fds[n], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        errno = 0;
        int64_t t0 = ms_now();
        r = connect(fds[n], (struct sockaddr *)&x->addr, x->alen);
        if (r != 0) {
            x->r = (int)(ms_now() - t0);
            x->e = errno;
            n++;
            break;
        }
    }
    /* Without SO_SNDTIMEO the hooks' own bound applies and says ETIMEDOUT. */
    int64_t (*bound)(int64_t) = (int64_t (*)(int64_t))dlsym(RTLD_DEFAULT, "yf_hook_connect_timeout");
    if (bound && r != 0) {
        int64_t old = bound(40);
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        errno = 0;
        int64_t t0 = ms_now();
        x->e2 = connect(fd, (struct sockaddr *)&x->addr, x->alen) == 0 ? 0 : errno;
        x->r2 = (int)(ms_now() - t0);
        close(fd);
        bound(old);
    }
    for (int i = 0; i < n; i++)
        close(fds[i]);
    return DONE();
}

static void check_connect_timeout(void)
{
    struct reset x = tcp_listener(0);
    run_one(connect_timeout_body, &x);
    close(x.lfd);
    /* Linux says EINPROGRESS when SO_SNDTIMEO ends a blocking connect. */
    report("connect-timeout", x.e == EINPROGRESS && x.r >= 50 && x.e2 == ETIMEDOUT && x.r2 >= 40 && ticks >= 5,
           "SO_SNDTIMEO: errno %d after %d ms; the hooks' bound: errno %d after %d ms; ticker %d",
           x.e, x.r, x.e2, x.r2, ticks);
}

/* ---- fd reuse, sharing, files --------------------------------------------------------- */

static intptr_t reuse_body(void *arg)
{
    struct pair *p = arg;
    int s = socket(AF_INET, SOCK_STREAM, 0);
    close(s);
    int f = open("/proc/self/stat", O_RDONLY);   /* a file takes the number */
    char b[64];
    p->r[0] = f == s && read(f, b, sizeof b) > 0;
    close(f);
    int pp[2];
    pipe(pp);                                    /* then a pipe */
    p->r[1] = pp[0] == s;
    p->sv[1] = pp[1];
    int64_t t0 = ms_now();
    p->r[2] = read(pp[0], b, 1) == 1 && ms_now() - t0 >= 9;
    close(pp[0]);
    close(pp[1]);
    return DONE();
}

static void check_reuse(void)
{
    struct pair p = {0};
    run_two(reuse_body, nap_then_write, &p);
    report("fd-reuse", p.r[0] && p.r[1] && p.r[2],
           "file on a closed socket's number reads %d, pipe takes it %d, pipe read waits %d",
           p.r[0], p.r[1], p.r[2]);
}

static int shared_got[4];

static intptr_t shared_reader(void *arg)
{
    struct pair *p = arg;
    char b;
    int i = p->r[7]++;
    shared_got[i] = recv(p->sv[0], &b, 1, 0) == 1 ? b : -1;
    return DONE();
}

static intptr_t shared_writer(void *arg)
{
    struct pair *p = arg;
    for (int i = 0; i < 4; i++) {
        usleep(5000);
        send(p->sv[1], "abcd" + i, 1, 0);
    }
    return DONE();
}

static void check_shared(void)
{
    struct pair p = unix_pair();
    yf_co_fn fns[] = {shared_reader, shared_reader, shared_reader, shared_reader, shared_writer};
    run_all(5, fns, &p);
    int mask = 0;
    for (int i = 0; i < 4; i++)
        if (shared_got[i] >= 'a' && shared_got[i] <= 'd')
            mask |= 1 << (shared_got[i] - 'a');
    report("shared-socket", mask == 15, "four coroutines on one socket received %c%c%c%c",
           shared_got[0], shared_got[1], shared_got[2], shared_got[3]);
    close_pair(p.sv);
}

static intptr_t file_body(void *arg)
{
    struct pair *p = arg;
    char path[] = "/tmp/yf-hook-file-XXXXXX";
    int fd = mkstemp(path);
    unlink(path);
    struct iovec iov[2] = {{"ab", 2}, {"cd", 2}};
    p->r[0] = write(fd, "0123", 4) == 4 && writev(fd, iov, 2) == 4;
    lseek(fd, 0, SEEK_SET);
    char b[16] = {0};
    p->r[1] = read(fd, b, sizeof b) == 8 && memcmp(b, "0123abcd", 8) == 0;
    p->r[2] = (kernel_flags(fd) & O_NONBLOCK) == 0;   /* files are left alone */
    close(fd);
    return DONE();
}

static void check_file(void)
{
    struct pair p = {0};
    run_one(file_body, &p);
    report("regular-file", p.r[0] && p.r[1] && p.r[2], "write %d read back %d flags untouched %d",
           p.r[0], p.r[1], p.r[2]);
}

/* ---- datagrams, poll, select, sleep -------------------------------------------------- */

static intptr_t udp_body(void *arg)
{
    struct pair *p = arg;
    int a = socket(AF_INET, SOCK_DGRAM, 0), b = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    bind(a, (struct sockaddr *)&sa, len);
    getsockname(a, (struct sockaddr *)&sa, &len);
    p->sv[0] = b;
    memcpy(&p->t[0], &sa, sizeof sa);        /* the writer's destination */
    char buf[16] = {0};
    struct sockaddr_in from;
    socklen_t flen = sizeof from;
    p->r[0] = recvfrom(a, buf, sizeof buf, 0, (struct sockaddr *)&from, &flen) == 3 &&
              memcmp(buf, "udp", 3) == 0 && from.sin_family == AF_INET;
    struct iovec iov = {buf, sizeof buf};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    p->r[1] = recvmsg(a, &mh, 0) == 4 && memcmp(buf, "udp2", 4) == 0;
    close(a);
    close(b);
    return DONE();
}

static intptr_t udp_writer(void *arg)
{
    struct pair *p = arg;
    usleep(5000);
    struct sockaddr_in sa;
    memcpy(&sa, &p->t[0], sizeof sa);
    sendto(p->sv[0], "udp", 3, 0, (struct sockaddr *)&sa, sizeof sa);
    usleep(5000);
    sendto(p->sv[0], "udp2", 4, 0, (struct sockaddr *)&sa, sizeof sa);
    return DONE();
}

static void check_udp(void)
{
    struct pair p = {0};
    run_two(udp_body, udp_writer, &p);
    report("udp", p.r[0] && p.r[1] && ticks > 0, "recvfrom %d recvmsg %d ticker %d", p.r[0], p.r[1], ticks);
}

static intptr_t poll_body(void *arg)
{
    struct pair *p = arg;
    int a[2], b[2];
    pipe(a);
    pipe(b);
    p->sv[1] = b[1];
    /* Two fds: the private-epoll path. */
    struct pollfd fds[2] = {{a[0], POLLIN, 0}, {b[0], POLLIN, 0}};
    int64_t t0 = ms_now();
    int n = poll(fds, 2, 1000);
    p->r[0] = n == 1 && fds[1].revents == POLLIN && fds[0].revents == 0 && ms_now() - t0 >= 9;
    /* One fd, timing out. */
    struct pollfd one = {a[0], POLLIN, 0};
    t0 = ms_now();
    errno = 4242;
    p->r[1] = poll(&one, 1, 20) == 0 && ms_now() - t0 >= 20 && errno == 4242;
    /* select: readable pipe, then a timeout with the time left reported. */
    fd_set rd;
    FD_ZERO(&rd);
    FD_SET(a[0], &rd);
    FD_SET(b[0], &rd);
    struct timeval tv = {1, 0};
    p->r[2] = select(b[0] + 1, &rd, NULL, NULL, &tv) == 1 && FD_ISSET(b[0], &rd) && !FD_ISSET(a[0], &rd);
    FD_ZERO(&rd);
    FD_SET(a[0], &rd);
    tv = (struct timeval){0, 20000};
    t0 = ms_now();
    p->r[3] = select(a[0] + 1, &rd, NULL, NULL, &tv) == 0 && ms_now() - t0 >= 20 && tv.tv_usec == 0;
    close_pair(a);
    close_pair(b);
    return DONE();
}

static void check_poll(void)
{
    struct pair p = {0};
    run_two(poll_body, nap_then_write, &p);
    report("poll-select", p.r[0] && p.r[1] && p.r[2] && p.r[3] && ticks >= 5,
           "poll two fds %d, poll timeout keeps errno %d, select ready %d, select timeout %d, ticker %d",
           p.r[0], p.r[1], p.r[2], p.r[3], ticks);
}

static intptr_t sleep_body(void *arg)
{
    struct pair *p = arg;
    int64_t t0 = ms_now();
    errno = 777;
    struct timespec ts = {0, 15000000};
    p->r[0] = usleep(15000) == 0 && nanosleep(&ts, NULL) == 0 && errno == 777;
    p->t[0] = ms_now() - t0;
    ts.tv_nsec = 2000000000L;
    p->r[1] = nanosleep(&ts, NULL) == -1 && errno == EINVAL;
    return DONE();
}

static void check_sleep(void)
{
    struct pair p = {0};
    run_one(sleep_body, &p);
    report("sleep", p.r[0] && p.r[1] && p.t[0] >= 30 && ticks >= 5,
           "usleep+nanosleep %d (errno kept) in %lld ms, EINVAL %d, ticker %d", p.r[0],
           (long long)p.t[0], p.r[1], ticks);
}

/* ---- name lookups -------------------------------------------------------------------- */

static int count_threads(void)
{
    DIR *d = opendir("/proc/self/task");
    int n = 0;
    if (!d)
        return -1;
    while (readdir(d))
        n++;
    closedir(d);
    return n - 2;
}

static intptr_t dns_body(void *arg)
{
    struct pair *p = arg;
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *res = NULL;
    p->r[0] = getaddrinfo("localhost", "80", &hints, &res) == 0 && res &&
              ((struct sockaddr_in *)res->ai_addr)->sin_addr.s_addr == htonl(INADDR_LOOPBACK);
    if (res)
        freeaddrinfo(res);
    struct hostent *h = gethostbyname("localhost");
    p->r[1] = h && h->h_addrtype == AF_INET && ((struct in_addr *)h->h_addr_list[0])->s_addr ==
              htonl(INADDR_LOOPBACK);
    struct hostent he, *hr = NULL;
    char buf[1024];
    int herr = 0;
    p->r[2] = gethostbyname_r("localhost", &he, buf, sizeof buf, &hr, &herr) == 0 && hr == &he;
    p->r[3] = getaddrinfo("no-such-host.invalid", NULL, &hints, &res) != 0;
    p->r[4] = count_threads();
    return DONE();
}

static void check_dns(void)
{
    struct pair p = {0};
    int64_t before = hook_calls("getaddrinfo");
    int threads = count_threads();
    run_one(dns_body, &p);
    int64_t after = hook_calls("getaddrinfo");
    report("dns-workers", p.r[0] && p.r[1] && p.r[2] && p.r[3] && after - before == 2 && p.r[4] > threads,
           "getaddrinfo %d gethostbyname %d gethostbyname_r %d unknown host fails %d; hook calls %lld; "
           "threads %d -> %d (workers)", p.r[0], p.r[1], p.r[2], p.r[3], (long long)(after - before),
           threads, p.r[4]);
}

/* ---- errno across the switches a hooked call makes ---------------------------------------- */

static intptr_t errno_waiter(void *arg)
{
    struct pair *p = arg;
    struct timeval tv = {0, 20000};
    setsockopt(p->sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char b;
    errno = 0;
    p->r[0] = recv(p->sv[0], &b, 1, 0) == -1 && errno == EAGAIN;
    p->e[0] = errno;
    errno = 31337;
    p->r[1] = recv(p->sv[1], &b, 1, 0) == 1 && errno == 31337;   /* waits, succeeds */
    return DONE();
}

static intptr_t errno_noise(void *arg)
{
    struct pair *p = arg;
    for (int i = 0; i < 30; i++) {
        close(-1);                           /* errno = EBADF while the other waits */
        usleep(1000);
    }
    send(p->sv[0], "q", 1, 0);
    return DONE();
}

static void check_errno(void)
{
    struct pair p = unix_pair();
    run_two(errno_waiter, errno_noise, &p);
    report("errno-survives-wait", p.r[0] && p.r[1],
           "timed-out recv reads errno %d (EAGAIN %d), successful waiting recv keeps the caller's errno %d",
           p.e[0], EAGAIN, p.r[1]);
    close_pair(p.sv);
}

/* ---- outside any coroutine: plain libc ------------------------------------------------------ */

static void *thread_writer(void *arg)
{
    int fd = *(int *)arg;
    usleep(20000);
    write(fd, "t", 1);
    return NULL;
}

static void check_outside(void)
{
    int sv[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    /* Blocking recv blocks the thread until another thread writes. */
    pthread_t t;
    pthread_create(&t, NULL, thread_writer, &sv[1]);
    char b;
    int64_t t0 = ms_now();
    int ok0 = recv(sv[0], &b, 1, 0) == 1 && ms_now() - t0 >= 15 && (kernel_flags(sv[0]) & O_NONBLOCK) == 0;
    pthread_join(t, NULL);
    /* SO_RCVTIMEO as the kernel applies it. */
    struct timeval tv = {0, 20000};
    setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    t0 = ms_now();
    int ok1 = recv(sv[0], &b, 1, 0) == -1 && errno == EAGAIN && ms_now() - t0 >= 19;
    t0 = ms_now();
    usleep(10000);
    int ok2 = ms_now() - t0 >= 10;
    close(sv[0]);
    close(sv[1]);
    report("outside-coroutine", ok0 && ok1 && ok2, "blocking recv %d, SO_RCVTIMEO %d, usleep %d", ok0, ok1, ok2);
}

/* A socket made inside a coroutine (kernel flag set) and used by a plain
 * thread afterwards still blocks as its owner expects. */
static int made_fd[2];

static intptr_t make_body(void *arg)
{
    (void)arg;
    socketpair(AF_UNIX, SOCK_STREAM, 0, made_fd);
    char b;
    recv(made_fd[0], &b, 1, MSG_DONTWAIT);     /* the hooks take the fd over */
    return DONE();
}

static void check_handover(void)
{
    run_one(make_body, NULL);
    pthread_t t;
    pthread_create(&t, NULL, thread_writer, &made_fd[1]);
    char b;
    int64_t t0 = ms_now();
    int ok = recv(made_fd[0], &b, 1, 0) == 1 && ms_now() - t0 >= 15 &&
             (kernel_flags(made_fd[0]) & O_NONBLOCK) != 0 && !(fcntl(made_fd[0], F_GETFL) & O_NONBLOCK);
    pthread_join(t, NULL);
    report("coroutine-fd-in-thread", ok, "a coroutine's blocking socket blocks a plain thread %d", ok);
    close(made_fd[0]);
    close(made_fd[1]);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    snprintf(unix_path, sizeof unix_path, "/tmp/yf-hook-suite-%d.sock", (int)getpid());
    int64_t (*calls)(const char *) = (int64_t (*)(const char *))dlsym(RTLD_DEFAULT, "yf_hook_calls");
    report("hooks-present", calls != NULL, "yf_hook_calls %s", calls ? "found" : "missing");
    if (!calls)
        return 1;
    S = yf_sched_new(65536, 0);
    L = S ? yf_loop_new(S) : NULL;
    if (!L) {
        perror("yf_loop_new");
        return 2;
    }
    check_outside();
    check_echo("tcp4-echo", AF_INET);
    check_echo("tcp6-echo", AF_INET6);
    check_echo("unix-echo", AF_UNIX);
    check_rcvtimeo();
    check_nonblock();
    check_epipe();
    check_reset();
    check_refused();
    check_connect_timeout();
    check_reuse();
    check_shared();
    check_file();
    check_udp();
    check_poll();
    check_sleep();
    check_dns();
    check_errno();
    check_handover();
    yf_loop_free(L);
    yf_sched_free(S);
    return failures ? 1 : 0;
}
