/* io.c - the interposed I/O calls: data (read, write, recv, send and their
 * vector and message forms), connections (socket, connect, accept, close,
 * shutdown) and flags and options (fcntl, ioctl, setsockopt, getsockopt).
 * Exactly libc outside a loop's coroutine; inside one the fd stays
 * non-blocking in the kernel and the coroutine waits in the event loop
 * instead of the thread in the kernel. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>

#include "hooki.h"

/* ---- data ------------------------------------------------------------------------ */

/* The arguments of one data-moving call; each hook fills what its call takes. */
struct io_call {
    int fd, flags, cnt;
    void *buf;
    const void *cbuf;
    size_t n;
    const struct iovec *iov;
    struct sockaddr *addr;
    socklen_t *alen;
    const struct sockaddr *caddr;
    socklen_t clen;
    struct msghdr *msg;
    const struct msghdr *cmsg;
};

typedef ssize_t (*io_fn)(const struct io_call *c);

#ifdef YF_HOOK_FORCE_EAGAIN
/* Reproduction aid: the first receive after each send on a non-blocking fd
 * reports EAGAIN without asking the kernel (a reply is seldom there yet
 * anyway; forcing it makes every request take the EAGAIN path). 1 when
 * this receive is to fail so. */
static int forced_eagain(int fd, unsigned ev)
{
    struct yfh_fd *s = yfh_ent(fd, 0);
    if (!s)
        return 0;
    if (ev == YF_WRITE) {
        s->sent = 1;
        return 0;
    }
    if (s->sent && s->kind == K_COOP && s->user_nb) {
        s->sent = 0;
        return 1;
    }
    return 0;
}
#else
static inline int forced_eagain(int fd, unsigned ev)
{
    (void)fd, (void)ev;
    return 0;
}
#endif

/* The body of every data-moving hook: the call as libc would make it on a
 * blocking fd, returning its value (or -1 through yfh_fail). `call` is
 * retried after each wait while it fails with EAGAIN; a timeout
 * (SO_RCVTIMEO for ev YF_READ, SO_SNDTIMEO for YF_WRITE) gives EAGAIN, as
 * in the kernel. Callers that asked for non-blocking I/O (the fd's flag or
 * `nowait`, MSG_DONTWAIT) get libc's answer. Inlined into each hook, so
 * `call` is a direct call. */
static inline __attribute__((always_inline)) ssize_t coop_io(int id, const struct io_call *c, unsigned ev,
                                                             int nowait, io_fn call)
{
    if (forced_eagain(c->fd, ev))
        return yfh_fail(id, EAGAIN);
    struct yfh_fd *e = yfh_io_ent(c->fd);
    if (!e || e->user_nb || nowait) {
        ssize_t r = call(c);
        return r >= 0 ? r : yfh_fail(id, errno);
    }
    int saved = errno;
    int64_t dl = yfh_deadline_after(ev == YF_READ ? e->rcv_ms : e->snd_ms);
    for (;;) {
        ssize_t r = call(c);
        if (r >= 0) {
            errno = saved;
            return r;
        }
        int err = errno;
        if (err != EAGAIN && err != EWOULDBLOCK)
            return yfh_fail(id, err);
        int w = yfh_wait_ready(c->fd, ev, dl);
        if (w == 0)
            return yfh_fail(id, EAGAIN);
        if (w < 0)
            return yfh_fail(id, errno);
    }
}

static ssize_t call_read(const struct io_call *c)
{
    return CALL_OR_SYS(read, (c->fd, c->buf, c->n), SYS_read, c->fd, c->buf, c->n);
}

static ssize_t call_write(const struct io_call *c)
{
    return CALL_OR_SYS(write, (c->fd, c->cbuf, c->n), SYS_write, c->fd, c->cbuf, c->n);
}

static ssize_t call_readv(const struct io_call *c)
{
    return CALL_OR_SYS(readv, (c->fd, c->iov, c->cnt), SYS_readv, c->fd, c->iov, c->cnt);
}

static ssize_t call_writev(const struct io_call *c)
{
    return CALL_OR_SYS(writev, (c->fd, c->iov, c->cnt), SYS_writev, c->fd, c->iov, c->cnt);
}

static ssize_t call_recv(const struct io_call *c)
{
    return CALL_OR_SYS(recv, (c->fd, c->buf, c->n, c->flags), SYS_recvfrom, c->fd, c->buf, c->n, c->flags,
                       NULL, NULL);
}

static ssize_t call_send(const struct io_call *c)
{
    return CALL_OR_SYS(send, (c->fd, c->cbuf, c->n, c->flags), SYS_sendto, c->fd, c->cbuf, c->n, c->flags,
                       NULL, 0);
}

static ssize_t call_recvfrom(const struct io_call *c)
{
    return CALL_OR_SYS(recvfrom, (c->fd, c->buf, c->n, c->flags, c->addr, c->alen), SYS_recvfrom, c->fd,
                       c->buf, c->n, c->flags, c->addr, c->alen);
}

static ssize_t call_sendto(const struct io_call *c)
{
    return CALL_OR_SYS(sendto, (c->fd, c->cbuf, c->n, c->flags, c->caddr, c->clen), SYS_sendto, c->fd,
                       c->cbuf, c->n, c->flags, c->caddr, c->clen);
}

static ssize_t call_recvmsg(const struct io_call *c)
{
    return CALL_OR_SYS(recvmsg, (c->fd, c->msg, c->flags), SYS_recvmsg, c->fd, c->msg, c->flags);
}

static ssize_t call_sendmsg(const struct io_call *c)
{
    return CALL_OR_SYS(sendmsg, (c->fd, c->cmsg, c->flags), SYS_sendmsg, c->fd, c->cmsg, c->flags);
}

ssize_t read(int fd, void *buf, size_t n)
{
    COUNT(read);
    return coop_io(H_read, &(struct io_call){.fd = fd, .buf = buf, .n = n}, YF_READ, 0, call_read);
}

ssize_t write(int fd, const void *buf, size_t n)
{
    COUNT(write);
    return coop_io(H_write, &(struct io_call){.fd = fd, .cbuf = buf, .n = n}, YF_WRITE, 0, call_write);
}

ssize_t readv(int fd, const struct iovec *iov, int cnt)
{
    COUNT(readv);
    return coop_io(H_readv, &(struct io_call){.fd = fd, .iov = iov, .cnt = cnt}, YF_READ, 0, call_readv);
}

ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
    COUNT(writev);
    return coop_io(H_writev, &(struct io_call){.fd = fd, .iov = iov, .cnt = cnt}, YF_WRITE, 0, call_writev);
}

ssize_t recv(int fd, void *buf, size_t n, int flags)
{
    COUNT(recv);
    struct io_call c = {.fd = fd, .buf = buf, .n = n, .flags = flags};
    return coop_io(H_recv, &c, YF_READ, flags & MSG_DONTWAIT, call_recv);
}

ssize_t send(int fd, const void *buf, size_t n, int flags)
{
    COUNT(send);
    struct io_call c = {.fd = fd, .cbuf = buf, .n = n, .flags = flags};
    return coop_io(H_send, &c, YF_WRITE, flags & MSG_DONTWAIT, call_send);
}

ssize_t recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *addr, socklen_t *alen)
{
    COUNT(recvfrom);
    struct io_call c = {.fd = fd, .buf = buf, .n = n, .flags = flags, .addr = addr, .alen = alen};
    return coop_io(H_recvfrom, &c, YF_READ, flags & MSG_DONTWAIT, call_recvfrom);
}

ssize_t sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *addr,
               socklen_t alen)
{
    COUNT(sendto);
    struct io_call c = {.fd = fd, .cbuf = buf, .n = n, .flags = flags, .caddr = addr, .clen = alen};
    return coop_io(H_sendto, &c, YF_WRITE, flags & MSG_DONTWAIT, call_sendto);
}

ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
    COUNT(recvmsg);
    struct io_call c = {.fd = fd, .msg = msg, .flags = flags};
    return coop_io(H_recvmsg, &c, YF_READ, flags & MSG_DONTWAIT, call_recvmsg);
}

ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
    COUNT(sendmsg);
    struct io_call c = {.fd = fd, .cmsg = msg, .flags = flags};
    return coop_io(H_sendmsg, &c, YF_WRITE, flags & MSG_DONTWAIT, call_sendmsg);
}

/* ---- connections ------------------------------------------------------------- */

int socket(int domain, int type, int protocol)
{
    COUNT(socket);
    int coop = yfh_in_loop();
    int t = coop ? type | SOCK_NONBLOCK : type;
    int fd = (int)CALL_OR_SYS(socket, (domain, t, protocol), SYS_socket, domain, t, protocol);
    if (fd < 0)
        return yfh_fail(H_socket, errno);
    yfh_issued(fd, coop, type & SOCK_NONBLOCK, 0, 0);
    return fd;
}

static int real_connect(int fd, const struct sockaddr *addr, socklen_t len)
{
    return (int)CALL_OR_SYS(connect, (fd, addr, len), SYS_connect, fd, addr, len);
}

int connect(int fd, const struct sockaddr *addr, socklen_t len)
{
    COUNT(connect);
    struct yfh_fd *e = yfh_io_ent(fd);
    if (!e || e->user_nb) {
        if (real_connect(fd, addr, len) == 0)
            return 0;
        return yfh_fail(H_connect, errno);
    }
    int saved = errno;
    /* SO_SNDTIMEO bounds a blocking connect in the kernel and its expiry says
     * EINPROGRESS; without it the hooks' own bound applies, saying ETIMEDOUT. */
    int64_t tmo = e->snd_ms > 0 ? e->snd_ms : yfh_connect_timeout_ms();
    int tmo_err = e->snd_ms > 0 ? EINPROGRESS : ETIMEDOUT;
    int64_t dl = tmo > 0 ? yfh_now_ms() + tmo : (tmo == 0 ? yfh_now_ms() : -1);
    for (;;) {
        if (real_connect(fd, addr, len) == 0) {
            errno = saved;
            return 0;
        }
        int err = errno;
        if (err == EINPROGRESS)
            break;
        /* A Unix socket whose listener's backlog is full says EAGAIN and
         * offers nothing to wait on: try again each millisecond. */
        if (err != EAGAIN || addr->sa_family != AF_UNIX)
            return yfh_fail(H_connect, err);
        if (dl >= 0 && yfh_now_ms() >= dl)
            return yfh_fail(H_connect, EAGAIN);
        yfh_pause_1ms();
    }
    int w = yfh_wait_ready(fd, YF_WRITE, dl);
    if (w == 0)
        return yfh_fail(H_connect, tmo_err);
    if (w < 0)
        return yfh_fail(H_connect, errno);
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (CALL_OR_SYS(getsockopt, (fd, SOL_SOCKET, SO_ERROR, &soerr, &sl), SYS_getsockopt, fd,
                    SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0)
        return yfh_fail(H_connect, errno);
    if (soerr != 0)
        return yfh_fail(H_connect, soerr);
    errno = saved;
    return 0;
}

static int do_accept(int id, int fd, struct sockaddr *addr, socklen_t *alen, int flags)
{
    struct yfh_fd *e = yfh_io_ent(fd);
    /* Accepted sockets inherit the listener's timeouts in the kernel; the
     * table follows. */
    int coop = e != NULL;
    int32_t rcv = e ? e->rcv_ms : 0, snd = e ? e->snd_ms : 0;
    int saved = errno;
    int64_t dl = yfh_deadline_after(e ? e->rcv_ms : 0);
    int f = coop ? flags | SOCK_NONBLOCK : flags;
    for (;;) {
        int nfd = (int)CALL_OR_SYS(accept4, (fd, addr, alen, f), SYS_accept4, fd, addr, alen, f);
        if (nfd >= 0) {
            yfh_issued(nfd, coop, flags & SOCK_NONBLOCK, rcv, snd);
            errno = saved;
            return nfd;
        }
        int err = errno;
        if (!coop || e->user_nb || (err != EAGAIN && err != EWOULDBLOCK))
            return yfh_fail(id, err);
        int w = yfh_wait_ready(fd, YF_READ, dl);
        if (w == 0)
            return yfh_fail(id, EAGAIN);
        if (w < 0)
            return yfh_fail(id, errno);
    }
}

int accept(int fd, struct sockaddr *addr, socklen_t *alen)
{
    COUNT(accept);
    return do_accept(H_accept, fd, addr, alen, 0);
}

int accept4(int fd, struct sockaddr *addr, socklen_t *alen, int flags)
{
    COUNT(accept4);
    return do_accept(H_accept4, fd, addr, alen, flags);
}

int close(int fd)
{
    COUNT(close);
    /* Forgotten before the kernel releases the number: another thread may
     * be issued it the moment close returns. */
    yfh_forget(fd);
    if (CALL_OR_SYS(close, (fd), SYS_close, fd) == 0)
        return 0;
    return yfh_fail(H_close, errno);
}

int shutdown(int fd, int how)
{
    COUNT(shutdown);
    if (CALL_OR_SYS(shutdown, (fd, how), SYS_shutdown, fd, how) == 0)
        return 0;
    return yfh_fail(H_shutdown, errno);
}

/* ---- flags and options ---------------------------------------------------------- */

static int do_fcntl(int id, int fd, int cmd, void *arg)
{
    struct yfh_fd *e = yfh_ent(fd, 0);
    int coop = e && e->kind == K_COOP;
    long r;
    if (coop && cmd == F_SETFL) {
        /* The kernel flag stays set; the wish is what F_GETFL reports and
         * what decides whether calls wait. */
        int fl = (int)(intptr_t)arg;
        r = CALL_OR_SYS(fcntl, (fd, F_SETFL, fl | O_NONBLOCK), SYS_fcntl, fd, F_SETFL, fl | O_NONBLOCK);
        if (r == 0)
            e->user_nb = (fl & O_NONBLOCK) != 0;
    } else {
        r = CALL_OR_SYS(fcntl, (fd, cmd, arg), SYS_fcntl, fd, cmd, arg);
    }
    if (r < 0)
        return yfh_fail(id, errno);
    if (coop && cmd == F_GETFL)
        r = (r & ~O_NONBLOCK) | (e->user_nb ? O_NONBLOCK : 0);
    if (coop && (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC)) {
        struct yfh_fd *d = yfh_ent((int)r, 1);
        if (d)
            *d = *e;
    }
    return (int)r;
}

/* fcntl and ioctl take one optional argument, an int or a pointer; reading it
 * as a pointer is what glibc's own wrappers do on x86-64. */
#define ONE_VARARG(last, arg)                                                        \
    va_list ap_;                                                                     \
    va_start(ap_, last);                                                             \
    void *arg = va_arg(ap_, void *);                                                 \
    va_end(ap_)

int fcntl(int fd, int cmd, ...)
{
    COUNT(fcntl);
    ONE_VARARG(cmd, arg);
    return do_fcntl(H_fcntl, fd, cmd, arg);
}

int fcntl64(int fd, int cmd, ...)
{
    COUNT(fcntl64);
    ONE_VARARG(cmd, arg);
    return do_fcntl(H_fcntl64, fd, cmd, arg);
}

int ioctl(int fd, unsigned long req, ...)
{
    COUNT(ioctl);
    ONE_VARARG(req, arg);
    struct yfh_fd *e = yfh_ent(fd, 0);
    if (req == FIONBIO && e && e->kind == K_COOP && arg) {
        int one = 1;
        if (CALL_OR_SYS(ioctl, (fd, FIONBIO, &one), SYS_ioctl, fd, FIONBIO, &one) != 0)
            return yfh_fail(H_ioctl, errno);
        e->user_nb = *(int *)arg != 0;
        return 0;
    }
    long r = CALL_OR_SYS(ioctl, (fd, req, arg), SYS_ioctl, fd, req, arg);
    if (r < 0)
        return yfh_fail(H_ioctl, errno);
    return (int)r;
}

static int32_t timeval_ms(const void *v, socklen_t len)
{
    /* struct timeval and the kernel's 64-bit sock timeval have one layout on
     * x86-64: two 64-bit fields. Sub-millisecond values round up, so a
     * timeout is never shorter than asked; 0 means none. */
    if (len < (socklen_t)sizeof(struct timeval))
        return 0;
    const struct timeval *tv = v;
    int64_t ms = (int64_t)tv->tv_sec * 1000 + (tv->tv_usec + 999) / 1000;
    return ms > INT32_MAX ? INT32_MAX : ms < 0 ? 0 : (int32_t)ms;
}

int setsockopt(int fd, int level, int opt, const void *val, socklen_t len)
{
    COUNT(setsockopt);
    if (CALL_OR_SYS(setsockopt, (fd, level, opt, val, len), SYS_setsockopt, fd, level, opt, val, len) != 0)
        return yfh_fail(H_setsockopt, errno);
    /* The kernel keeps the value (getsockopt reports it) but never applies
     * it to a non-blocking fd: the hooks apply it. */
    if (level == SOL_SOCKET && val) {
        struct yfh_fd *e = NULL;
        if (opt == SO_RCVTIMEO_OLD || opt == SO_RCVTIMEO_NEW || opt == SO_SNDTIMEO_OLD ||
            opt == SO_SNDTIMEO_NEW)
            e = yfh_ent(fd, 1);
        if (e && (opt == SO_RCVTIMEO_OLD || opt == SO_RCVTIMEO_NEW))
            e->rcv_ms = timeval_ms(val, len);
        else if (e)
            e->snd_ms = timeval_ms(val, len);
    }
    return 0;
}

int getsockopt(int fd, int level, int opt, void *val, socklen_t *len)
{
    COUNT(getsockopt);
    if (CALL_OR_SYS(getsockopt, (fd, level, opt, val, len), SYS_getsockopt, fd, level, opt, val, len) != 0)
        return yfh_fail(H_getsockopt, errno);
    return 0;
}
