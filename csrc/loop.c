/* loop.c - the epoll event loop: coroutines wait for fd readiness and time,
 * and the loop resumes them. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "yfi.h"

_Static_assert((int)YF_READ == (int)EPOLLIN && (int)YF_WRITE == (int)EPOLLOUT, "yf.h event bits are epoll's");

#define NS_PER_TICK 1000000ull      /* the wheel's tick: 1 ms */
#define MAX_EVENTS 256
/* Timeouts past this (about 31 years) are refused rather than risk
 * overflowing the tick arithmetic. */
#define TIMEOUT_MAX_MS YF_TIMEOUT_MAX_MS
/* Closed-fd sweeps (see sweep_closed): at least this far apart, and at
 * least SWEEP_RATIO times as far apart as the last sweep took. */
#define SWEEP_MIN_NS 200000000ull
#define SWEEP_RATIO 1000

/* A coroutine's wait, on its own stack for the duration of the wait: the
 * loop links it (timer in the wheel, pointers in the fd table) but never
 * allocates or frees it. Only the waiting coroutine unlinks it (teardown),
 * after it is resumed, whoever woke it: a second source firing in between
 * (timer due and fd ready in the same iteration, or a wake from outside the
 * loop) finds the coroutine no longer blocked on w->token and its yf_co_wake
 * fails with ESTALE, so nothing is delivered twice. */
struct wait {
    yf_timer tm;
    yf_co *co;
    uint64_t token;
    yf_loop *lp;
    int fd;                     /* -1: a sleep */
    unsigned events;            /* YF_READ|YF_WRITE asked for */
    int err;                    /* set before the wake: the wait fails with it (EBADF) */
};

/* Registration policy: one epoll item per fd, armed EPOLLONESHOT with the
 * union of the directions waited for. A wait then costs exactly one
 * epoll_ctl (MOD; ADD the first time the loop sees the fd), and the kernel
 * disables the item when it fires, so an fd nobody waits on any more never
 * wakes the loop again and a closed fd leaves nothing behind. A persistent
 * level-triggered registration would need two epoll_ctl per wait (enable,
 * then disable, or the loop spins on a readable fd nobody reads); a
 * persistent edge-triggered one needs none, but only for callers that wait
 * strictly after EAGAIN, which a general yf_wait_fd cannot assume (a wait on
 * an fd that is already readable would miss its edge and hang). */
struct fdslot {
    struct wait *rd, *wr;
    int known;                  /* the loop has ADDed this fd (a hint: fd numbers are reused) */
};

struct yf_loop {
    yf_sched *s;
    yf_wheel *wh;
    int ep;
    int running;
    int stop;
    int no_pwait2;              /* the kernel lacks epoll_pwait2 (ENOSYS) */
    uint64_t now;               /* cached CLOCK_MONOTONIC ns */
    struct fdslot *fds;
    size_t nfds;
    uint64_t resumes;
    uint64_t last_sweep, sweep_every;   /* ns; see sweep_closed */
    yf_loop_counts n;
    struct yf_loop *next_all;   /* the registry that enforces one loop per scheduler */
    void (*idle_before)(void *), (*idle_after)(void *);  /* around a wait that may sleep */
    void *idle_arg;
    struct epoll_event evs[MAX_EVENTS];
};

/* initial-exec, as yfi_thr: no __tls_get_addr call per wait. */
static __thread yf_loop *running_loop __attribute__((tls_model("initial-exec")));

static pthread_mutex_t all_lock = PTHREAD_MUTEX_INITIALIZER;
static yf_loop *all_loops;

/* ---- life of a loop -------------------------------------------------------- */

yf_loop *yf_loop_new(yf_sched *s)
{
    if (!s)
        return yfi_fail_null(EINVAL);
    yf_loop *lp = calloc(1, sizeof *lp);
    if (!lp)
        return yfi_fail_null(ENOMEM);
    lp->s = s;
    lp->now = yfi_now_ns();
    lp->last_sweep = lp->now;
    lp->sweep_every = SWEEP_MIN_NS;
    /* tokio's shape: 6 levels of 64 slots of 1 ms cover 2^36 ms (2.2 years);
     * longer timeouts go to the wheel's far levels. */
    static const unsigned bits[6] = {6, 6, 6, 6, 6, 6};
    lp->wh = yf_wheel_new(bits, 6, lp->now / NS_PER_TICK);
    if (!lp->wh) {
        int e = errno;
        free(lp);
        errno = e;
        return NULL;
    }
    lp->ep = epoll_create1(EPOLL_CLOEXEC);
    if (lp->ep < 0) {
        int e = errno;
        yf_wheel_free(lp->wh);
        free(lp);
        errno = e;
        return NULL;
    }
    pthread_mutex_lock(&all_lock);
    for (yf_loop *o = all_loops; o; o = o->next_all) {
        if (o->s == s) {
            pthread_mutex_unlock(&all_lock);
            close(lp->ep);
            yf_wheel_free(lp->wh);
            free(lp);
            errno = EEXIST;
            return NULL;
        }
    }
    lp->next_all = all_loops;
    all_loops = lp;
    pthread_mutex_unlock(&all_lock);
    return lp;
}

int yf_loop_free(yf_loop *lp)
{
    /* Waiting records live on coroutine stacks and are still linked into
     * the wheel and the fd table: freeing now would leave them dangling. */
    if (lp->running || lp->n.waiting_fds || lp->n.sleeping) {
        errno = EBUSY;
        return -1;
    }
    pthread_mutex_lock(&all_lock);
    for (yf_loop **p = &all_loops; *p; p = &(*p)->next_all) {
        if (*p == lp) {
            *p = lp->next_all;
            break;
        }
    }
    pthread_mutex_unlock(&all_lock);
    int e = errno;
    close(lp->ep);
    errno = e;
    yf_wheel_free(lp->wh);
    free(lp->fds);
    free(lp);
    return 0;
}

void yf_loop_set_idle(yf_loop *lp, void (*before)(void *), void (*after)(void *), void *arg)
{
    /* Both or neither: poll_once calls after() whenever it called before(). */
    lp->idle_before = before && after ? before : NULL;
    lp->idle_after = before && after ? after : NULL;
    lp->idle_arg = arg;
}

void yf_loop_stop(yf_loop *lp)
{
    lp->stop = 1;
}

uint64_t yf_loop_now(const yf_loop *lp)
{
    return lp->now;
}

void yf_loop_counts_get(const yf_loop *lp, yf_loop_counts *out)
{
    *out = lp->n;
    out->resumes = lp->resumes;
}

yf_loop *yf_loop_current(void)
{
    yf_loop *lp = running_loop;
    return lp && yf_sched_current() == lp->s ? lp : NULL;
}

/* ---- waking ------------------------------------------------------------------ */

static void wake(yf_loop *lp, struct wait *w, intptr_t value)
{
    if (yf_co_wake(w->co, w->token, value) == 0)
        lp->n.wakeups++;
}

static void timer_fired(yf_timer *t, void *arg)
{
    (void)t;
    struct wait *w = arg;
    wake(w->lp, w, 0);
}

/* fd's one-shot epoll item for the directions its waiters wait for. */
static struct epoll_event waited_events(const struct fdslot *sl, int fd)
{
    struct epoll_event ev = {.events = EPOLLONESHOT, .data.u64 = (uint64_t)fd};
    if (sl->rd)
        ev.events |= EPOLLIN | EPOLLRDHUP;
    if (sl->wr)
        ev.events |= EPOLLOUT;
    return ev;
}

/* Arms fd's one-shot item for the directions still waited for. */
static int arm(yf_loop *lp, int fd)
{
    struct fdslot *sl = &lp->fds[fd];
    struct epoll_event ev = waited_events(sl, fd);
    int op = sl->known ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    int rc = epoll_ctl(lp->ep, op, fd, &ev);
    /* The hint is stale after a close (the kernel dropped the item: ENOENT)
     * or after a close and reuse of the number by a file added elsewhere. */
    if (rc < 0 && errno == ENOENT && op == EPOLL_CTL_MOD)
        rc = epoll_ctl(lp->ep, EPOLL_CTL_ADD, fd, &ev);
    else if (rc < 0 && errno == EEXIST && op == EPOLL_CTL_ADD)
        rc = epoll_ctl(lp->ep, EPOLL_CTL_MOD, fd, &ev);
    sl->known = rc == 0;
    return rc;
}

static void dispatch(yf_loop *lp, int fd, uint32_t got)
{
    if ((size_t)fd >= lp->nfds)
        return;
    struct fdslot *sl = &lp->fds[fd];
    /* An error or hang-up satisfies every direction: the caller's next
     * read or write reports it. */
    unsigned rd = (got & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) ? YF_READ : 0;
    unsigned wr = (got & (EPOLLOUT | EPOLLHUP | EPOLLERR)) ? YF_WRITE : 0;
    struct wait *r = rd ? sl->rd : NULL;
    struct wait *w = wr ? sl->wr : NULL;
    /* An item still armed for a waiter that timed out fires for nobody;
     * one-shot, it is disabled now and costs nothing more. */
    if (r || w)
        lp->n.events++;
    if (r) {
        sl->rd = NULL;
        if (r == w) {
            sl->wr = NULL;
            w = NULL;
            wake(lp, r, (intptr_t)(r->events & (rd | wr)));
        } else {
            wake(lp, r, YF_READ);
        }
    }
    if (w) {
        sl->wr = NULL;
        wake(lp, w, YF_WRITE);
    }
    /* The one-shot item is disabled now; a waiter for the other direction
     * still needs it. If that re-arm fails the fd is gone, and the waiter's
     * timeout (if any) is all that can end its wait. */
    if (sl->rd || sl->wr)
        (void)arm(lp, fd);
}

/* ---- closed fds ------------------------------------------------------------------ */

/* Closing an fd removes its epoll item without an event (when no other
 * descriptor shares the file), so a coroutine waiting on it would sleep
 * forever. Fails the waits on fd with EBADF: they wake and return -1. */
static int fail_waiters(yf_loop *lp, int fd)
{
    struct fdslot *sl = &lp->fds[fd];
    struct wait *r = sl->rd, *w = sl->wr;
    int woken = 0;
    sl->rd = sl->wr = NULL;
    sl->known = 0;
    if (r) {
        r->err = EBADF;
        wake(lp, r, -1);
        woken++;
    }
    if (w && w != r) {
        w->err = EBADF;
        wake(lp, w, -1);
        woken++;
    }
    return woken;
}

/* Whether the file the waiters of fd armed is still open under that
 * number: re-arming the item (the waiters' own events, so nothing changes)
 * fails with EBADF when the number is closed and ENOENT when it names
 * another file now (epoll keys items by file and number). */
static int fd_gone(yf_loop *lp, int fd)
{
    struct fdslot *sl = &lp->fds[fd];
    struct epoll_event ev = waited_events(sl, fd);
    int e = errno;
    int gone = epoll_ctl(lp->ep, EPOLL_CTL_MOD, fd, &ev) < 0 && (errno == EBADF || errno == ENOENT);
    errno = e;
    return gone;
}

/* Finds waits on fds closed behind the loop's back and fails them. One
 * epoll_ctl per waited fd, so the loop sweeps only when it is about to
 * sleep, and spaces sweeps by SWEEP_RATIO times their cost (at least
 * SWEEP_MIN_NS): the overhead stays under 0.1%, and a wait on a closed fd
 * ends within about that interval. Returns the waits failed. */
static int sweep_closed(yf_loop *lp)
{
    uint64_t t0 = yfi_now_ns();
    int woken = 0;
    for (size_t fd = 0; fd < lp->nfds; fd++)
        if ((lp->fds[fd].rd || lp->fds[fd].wr) && fd_gone(lp, (int)fd))
            woken += fail_waiters(lp, (int)fd);
    uint64_t t1 = yfi_now_ns();
    lp->last_sweep = t1;
    lp->sweep_every = (t1 - t0) * SWEEP_RATIO > SWEEP_MIN_NS ? (t1 - t0) * SWEEP_RATIO : SWEEP_MIN_NS;
    return woken;
}

int yf_loop_drop_fd(yf_loop *lp, int fd)
{
    if (!lp || fd < 0) {
        errno = fd < 0 ? EBADF : EINVAL;
        return -1;
    }
    if ((size_t)fd >= lp->nfds)
        return 0;
    int e = errno;
    /* The number may be closed already: then the kernel dropped the item. */
    if (lp->fds[fd].known)
        (void)epoll_ctl(lp->ep, EPOLL_CTL_DEL, fd, NULL);
    errno = e;
    return fail_waiters(lp, fd);
}

/* ---- running ----------------------------------------------------------------- */

/* How long to sleep, in ns, until the earliest timer is due (-1: no timer).
 * A deadline tick T is due once the clock reads T ms; wheel_next may be a
 * lower bound (a timer on a higher level), which only wakes the loop early
 * to cascade, never fires anything early. */
static int64_t poll_timeout(yf_loop *lp)
{
    uint64_t next = yf_wheel_next(lp->wh);
    if (next == UINT64_MAX)
        return -1;
    uint64_t due = next * NS_PER_TICK, now = yfi_now_ns();
    if (due <= now)
        return 0;
    return due - now > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)(due - now);
}

/* epoll_pwait2 (Linux 5.11) takes the timeout in ns: the wait ends at the
 * deadline plus the timer slack (50 us). epoll_wait's whole milliseconds,
 * rounded up so it never returns before the deadline, add up to 1 ms more
 * per wait; they are the fallback where the kernel lacks epoll_pwait2. */
static int wait_events(yf_loop *lp, int64_t timeout_ns)
{
    if (!lp->no_pwait2) {
        struct timespec ts = {timeout_ns / 1000000000, timeout_ns % 1000000000};
        int n = epoll_pwait2(lp->ep, lp->evs, MAX_EVENTS, timeout_ns < 0 ? NULL : &ts, NULL);
        if (n >= 0 || errno != ENOSYS)
            return n;
        lp->no_pwait2 = 1;
    }
    int ms = -1;
    if (timeout_ns >= 0) {
        uint64_t up = ((uint64_t)timeout_ns + NS_PER_TICK - 1) / NS_PER_TICK;
        ms = up > INT_MAX ? INT_MAX : (int)up;
    }
    return epoll_wait(lp->ep, lp->evs, MAX_EVENTS, ms);
}

/* One wait for events and due timers. 0, or -1 with the wait's errno. */
static int poll_once(yf_loop *lp, int64_t timeout_ns)
{
    int idle = timeout_ns != 0 && lp->idle_before;
    if (idle)
        lp->idle_before(lp->idle_arg);
    int n = wait_events(lp, timeout_ns);
    if (idle) {
        int e = errno;
        lp->idle_after(lp->idle_arg);
        errno = e;
    }
    if (n < 0)
        return -1;
    lp->n.iterations++;
    lp->now = yfi_now_ns();
    for (int i = 0; i < n; i++)
        dispatch(lp, (int)lp->evs[i].data.u64, lp->evs[i].events);
    int64_t fired = yf_wheel_advance(lp->wh, lp->now / NS_PER_TICK);
    YF_ASSERT(fired >= 0);
    lp->n.timers_fired += (uint64_t)fired;
    return 0;
}

static void run_ready(yf_loop *lp)
{
    int64_t r = yf_sched_run_once(lp->s);
    YF_ASSERT(r >= 0);
    lp->resumes += (uint64_t)r;
}

int64_t yf_loop_run(yf_loop *lp)
{
    if (yf_co_current() != NULL || lp->running) {
        errno = EBUSY;
        return -1;
    }
    lp->running = 1;
    running_loop = lp;
    uint64_t start = lp->resumes;
    int rc = 0;
    for (;;) {
        run_ready(lp);
        yf_counts c;
        yf_sched_counts(lp->s, &c);
        if (c.live == c.done)
            break;
        if (c.ready == 0 && lp->n.waiting_fds + lp->n.sleeping == 0) {
            /* Every unfinished coroutine is blocked on something other than
             * this loop: nothing here can ever wake it. */
            errno = EDEADLK;
            rc = -1;
            break;
        }
        /* Coroutines still ready (they yielded): poll without sleeping, so
         * fd waiters get their turn between passes. */
        int64_t timeout = (lp->stop || c.ready) ? 0 : poll_timeout(lp);
        if (timeout != 0 && lp->n.waiting_fds) {
            /* About to sleep with fd waiters: one of their fds may have been
             * closed, which no event will ever say. */
            if (yfi_now_ns() - lp->last_sweep >= lp->sweep_every && sweep_closed(lp) > 0)
                timeout = 0;
            else if (timeout < 0 || (uint64_t)timeout > lp->sweep_every)
                timeout = (int64_t)lp->sweep_every;
        }
        if (poll_once(lp, timeout) < 0) {
            /* EINTR included: the caller (Python's signal handlers) gets to
             * run; the loop is intact and run may be called again. */
            rc = -1;
            break;
        }
        if (lp->stop) {
            run_ready(lp);
            break;
        }
    }
    int e = errno;
    lp->stop = 0;
    lp->running = 0;
    running_loop = NULL;
    errno = e;
    return rc < 0 ? -1 : (int64_t)(lp->resumes - start);
}

/* ---- waiting ----------------------------------------------------------------- */

/* The current coroutine's loop, or NULL with EPERM. */
static yf_loop *current_or_eperm(void)
{
    yf_loop *lp = yf_loop_current();
    if (!lp)
        errno = EPERM;
    return lp;
}

/* Arms w's timer: due no earlier than timeout_ms after now, read fresh (the
 * cached clock may be a whole run of coroutines old, and a deadline from it
 * would fire early by that much), rounded up to the next tick. 0 yields:
 * due at once, it fires after the loop's next (non-blocking) poll. */
static void arm_timer(yf_loop *lp, struct wait *w, int64_t timeout_ms)
{
    uint64_t deadline = yf_wheel_now(lp->wh);
    if (timeout_ms > 0)
        deadline = (yfi_now_ns() + (uint64_t)timeout_ms * NS_PER_TICK + NS_PER_TICK - 1) / NS_PER_TICK;
    w->tm.fn = timer_fired;
    w->tm.arg = w;
    int rc = yf_wheel_add(lp->wh, &w->tm, deadline);
    YF_ASSERT(rc == 0);
}

/* Blocks until woken, then unlinks whatever of w is still linked. */
static intptr_t block_on(yf_loop *lp, struct wait *w)
{
    intptr_t v = yf_co_block();
    if (w->tm.owner)
        yf_wheel_cancel(lp->wh, &w->tm);
    if (w->fd >= 0) {
        struct fdslot *sl = &lp->fds[w->fd];
        if (sl->rd == w)
            sl->rd = NULL;
        if (sl->wr == w)
            sl->wr = NULL;
        lp->n.waiting_fds--;
    } else {
        lp->n.sleeping--;
    }
    if (w->err) {
        errno = w->err;
        return -1;
    }
    return v;
}

static int grow_fds(yf_loop *lp, int fd)
{
    size_t n = lp->nfds ? lp->nfds : 64;
    while (n <= (size_t)fd)
        n *= 2;
    struct fdslot *f = realloc(lp->fds, n * sizeof *f);
    if (!f) {
        errno = ENOMEM;
        return -1;
    }
    memset(f + lp->nfds, 0, (n - lp->nfds) * sizeof *f);
    lp->fds = f;
    lp->nfds = n;
    return 0;
}

int yf_wait_fd(int fd, unsigned events, int64_t timeout_ms)
{
    yf_loop *lp = current_or_eperm();
    if (!lp)
        return -1;
    if (fd < 0) {
        errno = EBADF;
        return -1;
    }
    if (events == 0 || (events & ~(unsigned)(YF_READ | YF_WRITE)) || timeout_ms > TIMEOUT_MAX_MS) {
        errno = EINVAL;
        return -1;
    }
    /* The table grows to the largest fd waited on; a number that is not an
     * open fd must not make it grow (a stray 2^30 would ask for gigabytes). */
    if ((size_t)fd >= lp->nfds && (fcntl(fd, F_GETFD) < 0 || grow_fds(lp, fd) < 0))
        return -1;
    struct fdslot *sl = &lp->fds[fd];
    if (((events & YF_READ) && sl->rd) || ((events & YF_WRITE) && sl->wr)) {
        /* The other waiter's fd may have been closed and the number reused
         * (by this very fd): its wait fails, and this one goes ahead. */
        if (!fd_gone(lp, fd)) {
            errno = EEXIST;
            return -1;
        }
        fail_waiters(lp, fd);
    }
    struct wait w = {.co = yf_co_current(), .lp = lp, .fd = fd, .events = events};
    if (events & YF_READ)
        sl->rd = &w;
    if (events & YF_WRITE)
        sl->wr = &w;
    if (arm(lp, fd) < 0) {
        int e = errno;
        if (sl->rd == &w)
            sl->rd = NULL;
        if (sl->wr == &w)
            sl->wr = NULL;
        /* epoll refuses regular files and directories (EPERM): they are
         * always ready, as poll(2) reports them. */
        if (e == EPERM)
            return (int)events;
        errno = e;
        return -1;
    }
    if (timeout_ms >= 0)
        arm_timer(lp, &w, timeout_ms);
    w.token = yf_co_next_token();
    lp->n.waiting_fds++;
    return (int)block_on(lp, &w);
}

int yf_sleep_ms(int64_t ms)
{
    yf_loop *lp = current_or_eperm();
    if (!lp)
        return -1;
    if (ms < 0 || ms > TIMEOUT_MAX_MS) {
        errno = EINVAL;
        return -1;
    }
    struct wait w = {.co = yf_co_current(), .lp = lp, .fd = -1};
    arm_timer(lp, &w, ms);
    w.token = yf_co_next_token();
    lp->n.sleeping++;
    block_on(lp, &w);
    return 0;
}
