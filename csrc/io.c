/* io.c - exact-length I/O for coroutines: recvn, sendn, writevn, each with
 * one timeout for the whole call, waiting through the event loop. */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "yfi.h"

_Static_assert(sizeof(yf_iovec) == sizeof(struct iovec), "yf_iovec is struct iovec");

#define NS_PER_MS 1000000ull
/* The same bound yf_wait_fd puts on timeouts. */
#define TIMEOUT_MAX_MS YF_TIMEOUT_MAX_MS
/* iovecs handed to one sendmsg; the window lives on the coroutine's stack. */
#define IOV_WINDOW 64

/* UINT64_MAX for no timeout. */
static int deadline_of(int64_t timeout_ms, uint64_t *deadline)
{
    if (timeout_ms > TIMEOUT_MAX_MS) {
        errno = EINVAL;
        return -1;
    }
    *deadline = timeout_ms < 0 ? UINT64_MAX : yfi_now_ns() + (uint64_t)timeout_ms * NS_PER_MS;
    return 0;
}

/* Waits for fd until the call's deadline. The remaining time is rounded up
 * to whole ms, so no wait ends before the deadline; each wait starts from
 * the deadline again, so rounding does not accumulate over many waits.
 * 0 when ready; -1 with ETIMEDOUT, or yf_wait_fd's errno. */
static int wait_until(int fd, unsigned events, uint64_t deadline)
{
    int64_t ms = -1;
    if (deadline != UINT64_MAX) {
        uint64_t now = yfi_now_ns();
        if (now >= deadline) {
            errno = ETIMEDOUT;
            return -1;
        }
        ms = (int64_t)((deadline - now + NS_PER_MS - 1) / NS_PER_MS);
    }
    int rc = yf_wait_fd(fd, events, ms);
    if (rc == 0) {
        errno = ETIMEDOUT;
        return -1;
    }
    return rc < 0 ? -1 : 0;
}

/* A writev on a pipe whose reader is gone raises SIGPIPE, whose default
 * action kills the process (Python ignores it, but an embedding program or
 * a subprocess may restore it). Blocking it for the call, then taking back
 * the one the call raised (unless one was already pending), leaves the
 * thread's signals as they were; errno says EPIPE. */
static ssize_t writev_pipe(int fd, const struct iovec *iov, int cnt)
{
    sigset_t pipe, old, pending;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    int was_pending = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, &old);
    ssize_t r = writev(fd, iov, cnt);
    int e = errno;
    if (r < 0 && e == EPIPE && !was_pending) {
        const struct timespec zero = {0, 0};
        while (sigtimedwait(&pipe, NULL, &zero) < 0 && errno == EINTR)
            ;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = e;
    return r;
}

long yfi_writev_nosigpipe(int fd, struct iovec *iov, int cnt)
{
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)cnt};
    ssize_t r = sendmsg(fd, &mh, MSG_NOSIGNAL);
    if (r >= 0 || errno != ENOTSOCK)
        return r;
    return writev_pipe(fd, iov, cnt);
}

/* After a read or write failed with errno: 0 to try again (EINTR, or
 * EAGAIN and fd became ready before the deadline), else -1 with errno. */
static int retry(int fd, unsigned events, uint64_t deadline)
{
    if (errno == EAGAIN || errno == EWOULDBLOCK)
        return wait_until(fd, events, deadline);
    return errno == EINTR ? 0 : -1;
}

/* Sockets are used with MSG_DONTWAIT, so they need not be non-blocking
 * themselves, and sends use MSG_NOSIGNAL (a closed peer gives EPIPE, not a
 * SIGPIPE that would kill the process). Other fds (pipes) fall back to
 * read/write on the first ENOTSOCK and must be non-blocking. */
static ssize_t read_some(int fd, void *p, size_t n, int *notsock)
{
    if (!*notsock) {
        ssize_t r = recv(fd, p, n, MSG_DONTWAIT);
        if (r >= 0 || errno != ENOTSOCK)
            return r;
        *notsock = 1;
    }
    return read(fd, p, n);
}

static ssize_t write_some(int fd, struct iovec *iov, int cnt, int *notsock)
{
    if (!*notsock) {
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)cnt};
        ssize_t r = sendmsg(fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (r >= 0 || errno != ENOTSOCK)
            return r;
        *notsock = 1;
    }
    return writev_pipe(fd, iov, cnt);
}

int64_t yf_recvn(int fd, void *buf, size_t n, int64_t timeout_ms)
{
    uint64_t deadline;
    if (n > (size_t)INT64_MAX) {
        errno = EINVAL;
        return -1;
    }
    if (deadline_of(timeout_ms, &deadline) < 0)
        return -1;
    int notsock = 0;
    size_t got = 0;
    while (got < n) {
        ssize_t r = read_some(fd, (char *)buf + got, n - got, &notsock);
        if (r > 0) {
            got += (size_t)r;
        } else if (r == 0) {
            errno = ECONNRESET;
            return -1;
        } else if (retry(fd, YF_READ, deadline) < 0) {
            return -1;
        }
    }
    return (int64_t)n;
}

int64_t yf_writevn(int fd, const yf_iovec *iov, int cnt, int64_t timeout_ms)
{
    uint64_t deadline;
    if (cnt < 0 || (cnt > 0 && !iov)) {
        errno = EINVAL;
        return -1;
    }
    size_t total = 0;
    for (int i = 0; i < cnt; i++) {
        if (iov[i].len > (size_t)INT64_MAX - total) {
            errno = EINVAL;
            return -1;
        }
        total += iov[i].len;
    }
    if (deadline_of(timeout_ms, &deadline) < 0)
        return -1;
    int notsock = 0;
    int i = 0;
    size_t off = 0;             /* bytes of iov[i] already sent */
    while (i < cnt) {
        if (iov[i].len == off) {
            i++;
            off = 0;
            continue;
        }
        /* The caller's array is const: the partly sent first entry is
         * adjusted in a copy of the next window of entries. */
        struct iovec v[IOV_WINDOW];
        int k = 0;
        for (; k < IOV_WINDOW && i + k < cnt; k++) {
            v[k].iov_base = iov[i + k].base;
            v[k].iov_len = iov[i + k].len;
        }
        v[0].iov_base = (char *)v[0].iov_base + off;
        v[0].iov_len -= off;
        ssize_t r = write_some(fd, v, k, &notsock);
        if (r >= 0) {
            size_t left = (size_t)r;
            while (left > 0) {
                size_t room = iov[i].len - off;
                if (left < room) {
                    off += left;
                    break;
                }
                left -= room;
                i++;
                off = 0;
            }
        } else if (retry(fd, YF_WRITE, deadline) < 0) {
            return -1;
        }
    }
    return (int64_t)total;
}

int64_t yf_sendn(int fd, const void *buf, size_t n, int64_t timeout_ms)
{
    yf_iovec one = {(void *)buf, n};
    return yf_writevn(fd, &one, 1, timeout_ms);
}
