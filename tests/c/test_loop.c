/* test_loop.c - the event loop: sleep order and lateness (never early), fd
 * waits with timeouts, stale wakes (timer and fd in one iteration), re-arming
 * the other direction, stop from a coroutine, EDEADLK, EINTR, errors, the
 * loop not spinning, and recvn/sendn/writevn over socketpairs and TCP
 * loopback with many echo pairs at once; and the epoll_wait fallback. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "yf.h"
#include "lab/lab.h"
#include "check.h"

#define MS 1000000ll

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

static yf_sched *S;
static yf_loop *L;

static void setup(void)
{
    CHECK((S = yf_sched_new(65536, 0)) != NULL);
    CHECK((L = yf_loop_new(S)) != NULL);
}

static void teardown(void)
{
    CHECK(yf_loop_free(L) == 0);
    CHECK(yf_sched_free(S) == 0);
}

static yf_co *spawn(yf_co_fn fn, intptr_t arg)
{
    yf_co *co = yf_co_create(S, fn, (void *)arg);
    CHECK(co != NULL);
    return co;
}

static intptr_t reap(yf_co *co)
{
    intptr_t st;
    CHECK(yf_co_reap(co, &st) == 0);
    return st;
}

static yf_loop_counts counts(void)
{
    yf_loop_counts c;
    yf_loop_counts_get(L, &c);
    return c;
}

static void pair(int sv[2])
{
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
}

/* setup() with a socketpair, and its end. */
static void setup_pair(int sv[2])
{
    setup();
    pair(sv);
}

static void teardown_pair(int sv[2])
{
    close(sv[0]);
    close(sv[1]);
    teardown();
}

/* fn(arg) alone: spawned, the loop run until nothing is left, reaped. */
static intptr_t run_alone(yf_co_fn fn, void *arg)
{
    yf_co *co = spawn(fn, (intptr_t)arg);
    yf_loop_run(L);
    return reap(co);
}

/* ---- sleep: order, never early, no spinning --------------------------------- */

static int order[8];
static int norder;

static intptr_t sleeper(void *arg)
{
    int64_t ms = (intptr_t)arg;
    int64_t t0 = now_ns();
    CHECK(yf_sleep_ms(ms) == 0);
    int64_t dt = now_ns() - t0;
    order[norder++] = (int)ms;
    /* Never early: the deadline is rounded up to the next 1 ms tick. */
    CHECK(dt >= ms * MS);
    return (intptr_t)dt;
}

static void test_sleep_order(void)
{
    setup();
    /* The order holds when the five sleeps are armed within 10 ms of each
     * other; under valgrind the first one's code is translated first, which
     * takes longer, so the gaps grow tenfold there. */
    const int scale = ON_VALGRIND() ? 10 : 1;
    static const int base[] = {40, 10, 30, 0, 20};
    int ms[5];
    yf_co *co[5];
    norder = 0;
    for (int i = 0; i < 5; i++) {
        ms[i] = base[i] * scale;
        co[i] = spawn(sleeper, ms[i]);
    }
    int64_t t0 = now_ns();
    CHECK(yf_loop_run(L) == 10);
    CHECK(now_ns() - t0 >= 40 * scale * MS);
    static const int want[] = {0, 10, 20, 30, 40};
    CHECK(norder == 5);
    for (int i = 0; i < 5; i++)
        CHECK(order[i] == want[i] * scale);
    yf_loop_counts c = counts();
    CHECK(c.timers_fired == 5 && c.wakeups == 5 && c.sleeping == 0 && c.waiting_fds == 0);
    CHECK(c.resumes == 10);
    /* No spinning: the loop sleeps in epoll_wait until the next timer, so
     * five timers take a handful of iterations, not thousands. A 1 ms slack
     * per deadline can cost one extra iteration each. */
    CHECK(c.iterations <= 12);
    for (int i = 0; i < 5; i++)
        CHECK(reap(co[i]) >= ms[i] * MS);
    teardown();
}

/* ---- fd waits ------------------------------------------------------------------ */

/* One call a coroutine makes on fd (a wait: events and timeout_ms), and
 * what came of it: its result, the errno it left and the ns it took. */
struct callarg {
    int fd;
    unsigned events;
    int64_t timeout_ms;
    int64_t rc;
    int err;
    int64_t ns;
};

#define TIMED(a, call)                                                                \
    do {                                                                              \
        int64_t t0_ = now_ns();                                                       \
        errno = 0;                                                                    \
        (a)->rc = (call);                                                             \
        (a)->err = errno;                                                             \
        (a)->ns = now_ns() - t0_;                                                     \
    } while (0)

static intptr_t waiter(void *arg)
{
    struct callarg *w = arg;
    TIMED(w, yf_wait_fd(w->fd, w->events, w->timeout_ms));
    return 0;
}

static void test_wait_timeout_and_ready(void)
{
    int sv[2];
    setup_pair(sv);
    struct callarg idle = {sv[0], YF_READ, 25, 0, 0, 0};
    struct callarg wr = {sv[0], YF_WRITE, 1000, 0, 0, 0};
    yf_co *a = spawn(waiter, (intptr_t)&idle);
    yf_co *b = spawn(waiter, (intptr_t)&wr);
    CHECK(yf_loop_run(L) >= 4);
    CHECK(idle.rc == 0 && idle.ns >= 25 * MS);
    CHECK(wr.rc == YF_WRITE && wr.ns < 1000 * MS);
    reap(a);
    reap(b);
    /* Data already there: ready at once, and a 0 timeout still sees it
     * (fd events are dispatched before due timers). */
    CHECK(write(sv[1], "x", 1) == 1);
    struct callarg rd = {sv[0], YF_READ, 0, -1, 0, 0};
    run_alone(waiter, &rd);
    CHECK(rd.rc == YF_READ);
    /* A 0 timeout on an idle direction times out after one poll. */
    char c;
    CHECK(read(sv[0], &c, 1) == 1);
    rd.rc = -1;
    run_alone(waiter, &rd);
    CHECK(rd.rc == 0);
    teardown_pair(sv);
}

/* A coroutine writing one byte to fd after ms: asleep in the loop meanwhile
 * (yf_sleep_ms), or holding the thread (nanosleep) so that the loop cannot
 * poll. */
struct late_write {
    int fd;
    int64_t ms;
    int hold_thread;
};

static intptr_t write_later(void *arg)
{
    struct late_write *lw = arg;
    if (lw->hold_thread) {
        struct timespec ts = {0, lw->ms * MS};
        nanosleep(&ts, NULL);
    } else {
        CHECK(yf_sleep_ms(lw->ms) == 0);
    }
    CHECK(write(lw->fd, "x", 1) == 1);
    return 0;
}

/* The fd becomes ready and the timeout passes before the loop polls again:
 * both sources fire in one iteration. The fd event is dispatched first and
 * wins; the timer's wake carries a stale token and is rejected. */
static void test_stale_wake(void)
{
    int sv[2];
    setup_pair(sv);
    struct callarg w = {sv[0], YF_READ, 5, -1, 0, 0};
    struct late_write lw = {sv[1], 30, 1};
    yf_co *a = spawn(waiter, (intptr_t)&w);
    yf_co *b = spawn(write_later, (intptr_t)&lw);
    CHECK(yf_loop_run(L) == 3);
    CHECK(w.rc == YF_READ);
    yf_loop_counts c = counts();
    CHECK(c.iterations == 1 && c.events == 1 && c.timers_fired == 1);
    CHECK(c.wakeups == 1);          /* the timer's wake was rejected */
    reap(a);
    reap(b);
    teardown_pair(sv);
}

/* A reader and a writer on one fd: the one-shot item fires for one
 * direction, and the loop re-arms it for the waiter left. */
static void test_two_directions(void)
{
    int sv[2];
    setup_pair(sv);
    struct late_write lw = {sv[1], 20, 0};
    struct callarg r = {sv[0], YF_READ, 5000, -1, 0, 0};
    struct callarg r2 = {sv[0], YF_READ, 5000, -1, 0, 0};
    struct callarg w = {sv[0], YF_WRITE, 5000, -1, 0, 0};
    yf_co *a = spawn(waiter, (intptr_t)&r);
    yf_co *dup = spawn(waiter, (intptr_t)&r2);
    yf_co *b = spawn(waiter, (intptr_t)&w);
    yf_co *c = spawn(write_later, (intptr_t)&lw);
    CHECK(yf_loop_run(L) > 0);
    CHECK(r2.rc == -1 && r2.err == EEXIST);
    CHECK(w.rc == YF_WRITE && w.ns < 1000 * MS);
    CHECK(r.rc == YF_READ && r.ns >= 20 * MS && r.ns < 4000 * MS);
    /* Both directions at once, one record in both slots. */
    struct callarg both = {sv[0], YF_READ | YF_WRITE, 5000, -1, 0, 0};
    reap(a), reap(dup), reap(b), reap(c);
    run_alone(waiter, &both);
    CHECK(both.rc == (YF_READ | YF_WRITE));
    teardown_pair(sv);
}

/* ---- errors --------------------------------------------------------------------- */

static int err_fd;

static intptr_t error_cases(void *arg)
{
    (void)arg;
    CHECK_ERR(yf_wait_fd(-1, YF_READ, 10), EBADF);
    CHECK_ERR(yf_wait_fd(err_fd, YF_READ, 10), EBADF);
    CHECK_ERR(yf_wait_fd(0, 0, 10), EINVAL);
    CHECK_ERR(yf_wait_fd(0, 2, 10), EINVAL);
    CHECK_ERR(yf_wait_fd(0, YF_READ, INT64_MAX), EINVAL);
    CHECK_ERR(yf_sleep_ms(-1), EINVAL);
    CHECK_ERR(yf_sleep_ms(INT64_MAX), EINVAL);
    CHECK_ERR(yf_loop_run(L), EBUSY);
    CHECK_ERR(yf_loop_free(L), EBUSY);
    CHECK(yf_loop_current() == L);
    /* A regular file is always ready (epoll refuses it). */
    char path[] = "/tmp/yf-loop-XXXXXX";
    int f = mkstemp(path);
    CHECK(f >= 0);
    unlink(path);
    CHECK(yf_wait_fd(f, YF_READ | YF_WRITE, -1) == (YF_READ | YF_WRITE));
    close(f);
    return 7;
}

static intptr_t outside_loop(void *arg)
{
    (void)arg;
    CHECK(yf_loop_current() == NULL);
    CHECK_ERR(yf_wait_fd(0, YF_READ, 10), EPERM);
    CHECK_ERR(yf_sleep_ms(1), EPERM);
    return 0;
}

static void test_errors(void)
{
    setup();
    CHECK_NULL(yf_loop_new(S), EEXIST);
    CHECK_NULL(yf_loop_new(NULL), EINVAL);
    CHECK_ERR(yf_wait_fd(0, YF_READ, 10), EPERM);
    CHECK_ERR(yf_sleep_ms(0), EPERM);
    CHECK(yf_loop_current() == NULL);
    int sv[2];
    pair(sv);
    close(sv[1]);
    err_fd = sv[1];
    yf_co *a = spawn(error_cases, 0);
    CHECK(yf_loop_run(L) == 1);
    CHECK(reap(a) == 7);
    /* A coroutine run by the bare scheduler is not a loop's. */
    a = spawn(outside_loop, 0);
    CHECK(yf_sched_run(S) == 1);
    reap(a);
    close(sv[0]);
    teardown();
}

/* Every unfinished coroutine blocked outside the loop: nothing can wake
 * them, and the loop says so instead of sleeping forever. */
static void test_deadlock(void)
{
    setup();
    yf_co *a = spawn(yf_demo_block_once, 0);
    CHECK_ERR(yf_loop_run(L), EDEADLK);
    CHECK(yf_co_wake(a, yf_co_token(a), 42) == 0);
    CHECK(yf_loop_run(L) == 1);
    CHECK(reap(a) == 42);
    teardown();
}

/* ---- stop --------------------------------------------------------------------- */

static void test_stop(void)
{
    setup();
    yf_co *slow = spawn(yf_demo_sleep, 300);
    yf_co *stopper = spawn(yf_demo_loop_stop, 10);
    int64_t t0 = now_ns();
    CHECK(yf_loop_run(L) == 3);
    int64_t dt = now_ns() - t0;
    CHECK(dt >= 10 * MS && dt < 250 * MS);
    CHECK(reap(stopper) == 0);
    yf_loop_counts c = counts();
    CHECK(c.sleeping == 1);
    CHECK_ERR(yf_loop_free(L), EBUSY);
    /* Stop outside run: the next run does one non-blocking iteration. */
    yf_loop_stop(L);
    t0 = now_ns();
    CHECK(yf_loop_run(L) == 0);
    CHECK(now_ns() - t0 < 250 * MS);
    CHECK(counts().iterations == c.iterations + 1);
    /* And the next run goes on to the end. */
    CHECK(yf_loop_run(L) == 1);
    CHECK(reap(slow) >= 300 * MS);
    teardown();
}

/* ---- EINTR -------------------------------------------------------------------- */

static volatile sig_atomic_t alarms;

static void on_alarm(int sig)
{
    (void)sig;
    alarms++;
}

static void test_eintr(void)
{
    setup();
    struct sigaction sa = {.sa_handler = on_alarm};
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGALRM, &sa, NULL) == 0);
    struct itimerval it = {{0, 0}, {0, 20000}};
    CHECK(setitimer(ITIMER_REAL, &it, NULL) == 0);
    yf_co *a = spawn(yf_demo_sleep, 150);
    CHECK_ERR(yf_loop_run(L), EINTR);
    CHECK(alarms == 1);
    CHECK(yf_loop_run(L) == 1);
    CHECK(reap(a) >= 150 * MS);
    signal(SIGALRM, SIG_DFL);
    teardown();
}

/* ---- recvn / sendn / writevn -------------------------------------------------- */

#define BIG (3 << 20)
static unsigned char *big_out, *big_in;

static intptr_t big_sender(void *arg)
{
    struct callarg *a = arg;
    /* Uneven pieces, more than one window of iovecs, and empty ones. */
    yf_iovec iov[200];
    size_t off = 0;
    int cnt = 0;
    for (; cnt < 199; cnt++) {
        size_t len = (cnt % 7 == 3) ? 0 : (size_t)(cnt * 977) % 20000;
        iov[cnt].base = big_out + off;
        iov[cnt].len = len;
        off += len;
    }
    iov[cnt].base = big_out + off;
    iov[cnt].len = BIG - off;
    cnt++;
    TIMED(a, yf_writevn(a->fd, iov, cnt, 10000));
    return 0;
}

static intptr_t big_receiver(void *arg)
{
    struct callarg *a = arg;
    TIMED(a, yf_recvn(a->fd, big_in, BIG, 10000));
    return 0;
}

static intptr_t timed_recv(void *arg)
{
    struct callarg *a = arg;
    char buf[16];
    TIMED(a, yf_recvn(a->fd, buf, sizeof buf, 30));
    return 0;
}

static void test_io(void)
{
    setup();
    big_out = malloc(BIG);
    big_in = malloc(BIG);
    CHECK(big_out && big_in);
    for (size_t i = 0; i < BIG; i++)
        big_out[i] = (unsigned char)(i * 2654435761u >> 13);
    int sv[2];
    pair(sv);
    struct callarg s = {.fd = sv[0]}, r = {.fd = sv[1]};
    yf_co *a = spawn(big_sender, (intptr_t)&s);
    yf_co *b = spawn(big_receiver, (intptr_t)&r);
    CHECK(yf_loop_run(L) > 2);
    CHECK(s.rc == BIG && r.rc == BIG);
    CHECK(memcmp(big_out, big_in, BIG) == 0);
    CHECK(counts().events > 2);    /* the socket buffer filled: real waits */
    reap(a), reap(b);
    /* Timeout for the whole call, with some bytes arriving meanwhile. */
    CHECK(write(sv[0], "abc", 3) == 3);
    struct callarg t = {.fd = sv[1]};
    run_alone(timed_recv, &t);
    CHECK(t.rc == -1 && t.err == ETIMEDOUT && t.ns >= 30 * MS);
    /* EOF before n. */
    CHECK(write(sv[0], "abc", 3) == 3);
    close(sv[0]);
    run_alone(timed_recv, &t);
    CHECK(t.rc == -1 && t.err == ECONNRESET);
    close(sv[1]);
    /* A send to a closed peer is EPIPE, never a SIGPIPE. */
    pair(sv);
    close(sv[1]);
    s.fd = sv[0];
    run_alone(big_sender, &s);
    CHECK(s.rc == -1 && s.err == EPIPE);
    close(sv[0]);
    free(big_out);
    free(big_in);
    teardown();
}

/* ---- echo: many socketpairs and TCP connections in one loop ------------------- */

#define NPAIRS 64

static void test_echo_many(void)
{
    setup();
    int lst = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(lst >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    CHECK(bind(lst, (struct sockaddr *)&sa, sizeof sa) == 0);
    CHECK(listen(lst, NPAIRS) == 0);
    CHECK(getsockname(lst, (struct sockaddr *)&sa, &len) == 0);
    int fds[2 * NPAIRS][2];
    yf_co *srv[2 * NPAIRS], *cli[2 * NPAIRS];
    for (int i = 0; i < NPAIRS; i++) {
        pair(fds[i]);
        int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        CHECK(c >= 0);
        CHECK(connect(c, (struct sockaddr *)&sa, sizeof sa) == 0 || errno == EINPROGRESS);
        int s = accept4(lst, NULL, NULL, SOCK_NONBLOCK);
        CHECK(s >= 0);
        /* Without it Nagle holds each echo's tail back for a delayed ACK. */
        int one = 1;
        CHECK(setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0);
        CHECK(setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0);
        fds[NPAIRS + i][0] = s;
        fds[NPAIRS + i][1] = c;
    }
    uint64_t n = 50;
    for (int i = 0; i < 2 * NPAIRS; i++) {
        uint64_t size = 1 + (uint64_t)(i * 613) % 9000;
        srv[i] = spawn(yf_demo_echo, fds[i][0]);
        cli[i] = spawn(yf_demo_client, (intptr_t)((uint64_t)fds[i][1] | n << 24 | size << 48));
    }
    CHECK(yf_loop_run(L) > 4 * NPAIRS);
    for (int i = 0; i < 2 * NPAIRS; i++) {
        uint64_t size = 1 + (uint64_t)(i * 613) % 9000;
        CHECK(reap(cli[i]) == (intptr_t)n);
        CHECK(reap(srv[i]) == (intptr_t)(n * size));
        close(fds[i][0]);
        close(fds[i][1]);
    }
    yf_loop_counts c = counts();
    CHECK(c.waiting_fds == 0 && c.sleeping == 0);
    close(lst);
    teardown();
}

/* ---- the epoll_wait fallback ---------------------------------------------- */

/* A kernel without epoll_pwait2 (before 5.11), made with a seccomp filter in
 * a child: the loop falls back to epoll_wait's whole milliseconds, rounded
 * up, and timers still never fire early. */
static void without_epoll_pwait2(void)
{
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_epoll_pwait2, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof f / sizeof f[0], .filter = f};
    CHECK(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0);
    CHECK(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0);
    CHECK(syscall(__NR_epoll_pwait2, -1, NULL, 0, NULL, NULL, 0) == -1 && errno == ENOSYS);
    test_sleep_order();
    test_wait_timeout_and_ready();
    test_stop();
}

static void test_without_epoll_pwait2(void)
{
    if (skipped_under_qemu("test_without_epoll_pwait2",
                           "qemu-user refuses PR_SET_SECCOMP (EINVAL): a filter would bind the emulator's "
                           "own host system calls, not the guest's"))
        return;
    in_child(without_epoll_pwait2);
}

/* ---- a coroutine that only yields does not starve fd waiters ----------------- */

static volatile int spin_stop;
static int64_t spins;

static intptr_t spinner(void *arg)
{
    (void)arg;
    while (!spin_stop) {
        spins++;
        yf_co_yield();
    }
    return 0;
}

static intptr_t reader_stops_spinner(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char c;
    int ev = yf_wait_fd(fd, YF_READ, 5000);
    spin_stop = 1;
    return ev > 0 && read(fd, &c, 1) == 1 ? c : -1;
}

static void test_yield_does_not_starve(void)
{
    int sv[2];
    setup_pair(sv);
    spin_stop = 0;
    spins = 0;
    yf_co *sp = spawn(spinner, 0);
    yf_co *rd = spawn(reader_stops_spinner, sv[0]);
    CHECK(write(sv[1], "x", 1) == 1);
    CHECK(yf_loop_run(L) >= 0);
    CHECK(reap(rd) == 'x');
    CHECK(reap(sp) == 0);
    /* The data was there from the start: the reader runs after one poll
     * between passes, not after the spinner gives up (it never would). */
    CHECK(spins < 100);
    teardown_pair(sv);
}

/* ---- closing an fd a coroutine waits on ---------------------------------------- */

static int close_fd;

static intptr_t closer(void *arg)
{
    CHECK(yf_sleep_ms((intptr_t)arg) == 0);
    CHECK(close(close_fd) == 0);
    return 0;
}

static int reuse_fd, reuse_src;
static struct callarg *reuse_wait;

/* Closes reuse_fd, makes the number name another socket, waits on it. */
static intptr_t reuser(void *arg)
{
    (void)arg;
    CHECK(yf_sleep_ms(5) == 0);
    CHECK(close(reuse_fd) == 0);
    CHECK(dup2(reuse_src, reuse_fd) == reuse_fd);
    CHECK(close(reuse_src) == 0);
    return waiter(reuse_wait);
}

static intptr_t dropper(void *arg)
{
    CHECK(yf_sleep_ms(5) == 0);
    CHECK(yf_loop_drop_fd(L, (int)(intptr_t)arg) == 1);
    CHECK(close((int)(intptr_t)arg) == 0);
    return 0;
}

/* The waiter wakes with -1/EBADF instead of sleeping forever: found by the
 * loop's sweep (closed, and closed then reused by a new socket that another
 * coroutine waits on), or at once through yf_loop_drop_fd. */
static void test_closed_fd_wakes_waiter(void)
{
    int sv[2];
    setup_pair(sv);
    close_fd = sv[0];
    struct callarg a = {.fd = sv[0], .events = YF_READ, .timeout_ms = -1};
    yf_co *w = spawn(waiter, (intptr_t)&a), *c = spawn(closer, 10);
    int64_t t0 = now_ns();
    CHECK(yf_loop_run(L) >= 0);
    CHECK(a.rc == -1 && a.err == EBADF);
    /* The sweep runs at most ~200 ms after the loop starts sleeping. */
    CHECK(now_ns() - t0 < 5000 * MS);
    CHECK(counts().waiting_fds == 0);
    reap(w);
    reap(c);

    /* Closed, and the number reused at once: a new wait on it goes ahead,
     * the old one fails. */
    int q[2], np[2];
    pair(q);
    pair(np);
    int fd = q[0];
    reuse_fd = fd;
    reuse_src = np[0];
    struct callarg b = {.fd = fd, .events = YF_READ, .timeout_ms = -1};
    struct callarg b2 = {.fd = fd, .events = YF_READ, .timeout_ms = 50};
    reuse_wait = &b2;
    w = spawn(waiter, (intptr_t)&b);
    yf_co *w2 = spawn(reuser, 0);
    CHECK(yf_loop_run(L) >= 0);
    CHECK(b.rc == -1 && b.err == EBADF && b.ns < 150 * MS);
    CHECK(b2.rc == 0);                      /* its own wait: a timeout */
    np[0] = fd;
    reap(w);
    reap(w2);

    /* yf_loop_drop_fd: at once, both directions. */
    struct callarg d = {.fd = np[1], .events = YF_READ | YF_WRITE, .timeout_ms = -1};
    int full = np[1];
    /* Fill the socket so that the write direction waits too. */
    char junk[4096] = {0};
    while (write(full, junk, sizeof junk) > 0)
        ;
    w = spawn(waiter, (intptr_t)&d);
    c = spawn(dropper, full);
    t0 = now_ns();
    CHECK(yf_loop_run(L) >= 0);
    CHECK(d.rc == -1 && d.err == EBADF && d.ns < 150 * MS);
    reap(w);
    reap(c);
    CHECK(yf_loop_drop_fd(L, 1000) == 0);
    CHECK_ERR(yf_loop_drop_fd(L, -1), EBADF);
    close(np[0]);
    close(q[1]);
    close(sv[1]);
    teardown();
}

int main(void)
{
    test_sleep_order();
    test_wait_timeout_and_ready();
    test_stale_wake();
    test_two_directions();
    test_errors();
    test_deadlock();
    test_stop();
    test_eintr();
    test_io();
    test_echo_many();
    test_yield_does_not_starve();
    test_without_epoll_pwait2();
    test_closed_fd_wakes_waiter();
    printf("test_loop: ok\n");
    return 0;
}
