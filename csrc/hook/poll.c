/* poll.c - the interposed waits: poll and select (one fd straight to the
 * loop, larger sets through a private epoll instance) and the sleeps. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <time.h>

#include "hooki.h"

/* ---- poll, select ------------------------------------------------------------------ */

static int real_poll(struct pollfd *fds, nfds_t n, int timeout)
{
    return (int)CALL_OR(poll, (fds, n, timeout), yfh_raw_poll(fds, n, timeout));
}

static uint32_t poll_to_epoll(short ev)
{
    uint32_t out = 0;
    if (ev & (POLLIN | POLLRDNORM | POLLRDBAND))
        out |= EPOLLIN;
    if (ev & (POLLOUT | POLLWRNORM | POLLWRBAND))
        out |= EPOLLOUT;
    if (ev & POLLPRI)
        out |= EPOLLPRI;
    if (ev & POLLRDHUP)
        out |= EPOLLRDHUP;
    return out;
}

/* One fd waiting for plain input or output goes to the loop directly; any
 * other set is gathered in a private epoll instance, which is itself
 * readable when one of its fds is ready, and the loop waits on that. */
static int wait_fd_for(struct pollfd *fds, nfds_t n, int *tmp_ep, unsigned *ev)
{
    if (n == 1 && fds[0].fd >= 0) {
        short want = fds[0].events;
        if (want == POLLIN || want == (POLLIN | POLLRDNORM)) {
            *ev = YF_READ;
            return fds[0].fd;
        }
        if (want == POLLOUT || want == (POLLOUT | POLLWRNORM)) {
            *ev = YF_WRITE;
            return fds[0].fd;
        }
    }
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        return -1;
    for (nfds_t i = 0; i < n; i++) {
        if (fds[i].fd < 0)
            continue;
        struct epoll_event e = {.events = poll_to_epoll(fds[i].events), .data.fd = fds[i].fd};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fds[i].fd, &e) != 0 && errno == EEXIST) {
            /* The same fd twice in the set: wait for the union. */
            for (nfds_t j = 0; j < i; j++)
                if (fds[j].fd == fds[i].fd)
                    e.events |= poll_to_epoll(fds[j].events);
            epoll_ctl(ep, EPOLL_CTL_MOD, fds[i].fd, &e);
        }
    }
    *tmp_ep = ep;
    *ev = YF_READ;
    return ep;
}

static int coop_poll(int id, struct pollfd *fds, nfds_t n, int64_t timeout)
{
    int saved = errno;
    int r = real_poll(fds, n, 0);
    if (r != 0 || timeout == 0) {
        if (r < 0)
            return yfh_fail(id, errno);
        errno = saved;
        return r;
    }
    int64_t dl = timeout > 0 ? yfh_now_ms() + timeout : -1;
    if (n == 0) {
        while (dl < 0 || yfh_now_ms() < dl)
            yf_sleep_ms(dl < 0 ? INT32_MAX : yfh_left_ms(dl));
        errno = saved;
        return 0;
    }
    int tmp_ep = -1;
    unsigned ev;
    int wfd = wait_fd_for(fds, n, &tmp_ep, &ev);
    if (wfd < 0)
        return yfh_fail(id, errno);
    int err = 0;
    for (;;) {
        int w = yfh_wait_ready(wfd, ev, dl);
        if (w < 0) {
            err = errno;
            break;
        }
        r = real_poll(fds, n, 0);
        if (r < 0) {
            err = errno;
            break;
        }
        if (r > 0 || w == 0)
            break;
    }
    if (tmp_ep >= 0)
        CALL_OR_SYS(close, (tmp_ep), SYS_close, tmp_ep);
    if (err)
        return yfh_fail(id, err);
    errno = saved;
    return r;
}

int poll(struct pollfd *fds, nfds_t n, int timeout)
{
    COUNT(poll);
    if (!yfh_in_loop() || timeout == 0) {
        int r = real_poll(fds, n, timeout);
        return r < 0 ? yfh_fail(H_poll, errno) : r;
    }
    return coop_poll(H_poll, fds, n, timeout);
}

int select(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, struct timeval *tv)
{
    COUNT(select);
    if (!yfh_in_loop() || (tv && tv->tv_sec == 0 && tv->tv_usec == 0) || nfds < 0 || nfds > FD_SETSIZE) {
        int r = (int)CALL_OR(select, (nfds, rd, wr, ex, tv), yfh_raw_select(nfds, rd, wr, ex, tv));
        return r < 0 ? yfh_fail(H_select, errno) : r;
    }
    if (tv && (tv->tv_sec < 0 || tv->tv_usec < 0 || tv->tv_usec >= 1000000))
        return yfh_fail(H_select, EINVAL);
    nfds_t n = 0;
    for (int fd = 0; fd < nfds; fd++)
        n += (rd && FD_ISSET(fd, rd)) || (wr && FD_ISSET(fd, wr)) || (ex && FD_ISSET(fd, ex));
    struct pollfd small[16];
    struct pollfd *p = small;
    if (n > 16) {
        int saved = errno;
        p = malloc(n * sizeof *p);
        errno = saved;
        if (!p)
            return yfh_fail(H_select, ENOMEM);
    }
    nfds_t k = 0;
    for (int fd = 0; fd < nfds; fd++) {
        short ev = (rd && FD_ISSET(fd, rd) ? POLLIN : 0) | (wr && FD_ISSET(fd, wr) ? POLLOUT : 0) |
                   (ex && FD_ISSET(fd, ex) ? POLLPRI : 0);
        if (ev)
            p[k++] = (struct pollfd){.fd = fd, .events = ev};
    }
    int64_t timeout = tv ? (int64_t)tv->tv_sec * 1000 + (tv->tv_usec + 999) / 1000 : -1;
    int64_t start = yfh_now_ms();
    int r = coop_poll(H_select, p, n, timeout);
    int err = r < 0 ? errno : 0;
    /* A closed fd is an error for select, not an event. */
    for (nfds_t i = 0; i < n && r >= 0 && !err; i++)
        if (p[i].revents & POLLNVAL)
            err = EBADF;
    if (!err) {
        /* select counts each (fd, set) pair. */
        int count = 0;
        if (rd) FD_ZERO(rd);
        if (wr) FD_ZERO(wr);
        if (ex) FD_ZERO(ex);
        for (nfds_t i = 0; i < n; i++) {
            short re = p[i].revents;
            if (rd && (p[i].events & POLLIN) && (re & (POLLIN | POLLHUP | POLLERR))) {
                FD_SET(p[i].fd, rd);
                count++;
            }
            if (wr && (p[i].events & POLLOUT) && (re & (POLLOUT | POLLERR))) {
                FD_SET(p[i].fd, wr);
                count++;
            }
            if (ex && (p[i].events & POLLPRI) && (re & POLLPRI)) {
                FD_SET(p[i].fd, ex);
                count++;
            }
        }
        r = count;
        if (tv) {
            /* Linux reports the time left. */
            int64_t left = timeout - (yfh_now_ms() - start);
            left = left > 0 ? left : 0;
            tv->tv_sec = left / 1000;
            tv->tv_usec = (left % 1000) * 1000;
        }
    }
    if (p != small) {
        int saved = errno;
        free(p);
        errno = saved;
    }
    if (err)
        return yfh_fail(H_select, err);
    return r;
}

/* ---- sleeping ---------------------------------------------------------------- */

static void coop_sleep(int64_t ms)
{
    int saved = errno;
    yf_sleep_ms(ms);
    errno = saved;
}

unsigned int sleep(unsigned int s)
{
    COUNT(sleep);
    if (!yfh_in_loop())
        return REAL(sleep) ? REAL(sleep)(s) : 0;
    coop_sleep((int64_t)s * 1000);
    return 0;
}

int usleep(useconds_t us)
{
    COUNT(usleep);
    if (!yfh_in_loop()) {
        struct timespec ts = {us / 1000000, (long)(us % 1000000) * 1000};
        int r = REAL(usleep) ? REAL(usleep)(us) : (int)syscall(SYS_nanosleep, &ts, NULL);
        return r < 0 ? yfh_fail(H_usleep, errno) : r;
    }
    coop_sleep(((int64_t)us + 999) / 1000);
    return 0;
}

int nanosleep(const struct timespec *req, struct timespec *rem)
{
    COUNT(nanosleep);
    if (!yfh_in_loop()) {
        int r = (int)CALL_OR_SYS(nanosleep, (req, rem), SYS_nanosleep, req, rem);
        return r < 0 ? yfh_fail(H_nanosleep, errno) : r;
    }
    if (!req)
        return yfh_fail(H_nanosleep, EFAULT);
    if (req->tv_sec < 0 || req->tv_nsec < 0 || req->tv_nsec >= 1000000000L)
        return yfh_fail(H_nanosleep, EINVAL);
    coop_sleep((int64_t)req->tv_sec * 1000 + (req->tv_nsec + 999999) / 1000000);
    return 0;
}
