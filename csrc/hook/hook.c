/* hook.c - interposed libc symbols: exactly libc outside a loop's coroutine,
 * cooperative inside one (the fd stays non-blocking in the kernel and the
 * coroutine waits in the event loop instead of the thread in the kernel). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "yf.h"
#include "hooki.h"

#define LIKELY(x) __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)

#if defined(YF_HOOK_LOG) && defined(YF_HOOK_ERRNO_EARLY)
#define VARIANT "log-early"
#elif defined(YF_HOOK_LOG)
#define VARIANT "log-late"
#else
#define VARIANT "default"
#endif

/* ---- the real functions ------------------------------------------------------ */

static const char *const names[H_N + 1] = {
#define YF_HOOK_NAME(n) #n,
    YF_HOOKS(YF_HOOK_NAME)
#undef YF_HOOK_NAME
    NULL
};

static void *reals[H_N];
static uint64_t calls[H_N];
/* Set while this thread is inside dlsym: dlsym may allocate, and an
 * allocator that logs would re-enter a hook; the hooks then fall back to the
 * raw system call instead of recursing into dlsym. */
static __thread int resolving;

static __attribute__((noinline)) void *resolve(int id)
{
    if (resolving)
        return NULL;
    int saved = errno;
    resolving = 1;
    void *p = dlsym(RTLD_NEXT, names[id]);
    resolving = 0;
    __atomic_store_n(&reals[id], p, __ATOMIC_RELAXED);
    errno = saved;
    return p;
}

static inline void *real_fn(int id)
{
    void *p = __atomic_load_n(&reals[id], __ATOMIC_RELAXED);
    return LIKELY(p != NULL) ? p : resolve(id);
}

/* The libc function behind hook `n`, typed from libc's own prototype. */
#define REAL(n) ((__typeof__(&n))real_fn(H_##n))
#define COUNT(n) __atomic_fetch_add(&calls[H_##n], 1, __ATOMIC_RELAXED)

/* The call itself, through libc when resolved, else as a raw system call. */
#define CALL_OR_SYS(n, args, sysno, ...) \
    (REAL(n) ? REAL(n) args : syscall(sysno, __VA_ARGS__))

int64_t yf_hook_calls(const char *name)
{
    for (int i = 0; name && i < H_N; i++)
        if (strcmp(name, names[i]) == 0)
            return (int64_t)__atomic_load_n(&calls[i], __ATOMIC_RELAXED);
    errno = ENOENT;
    return -1;
}

void *yf_hook_real(const char *name)
{
    for (int i = 0; name && i < H_N; i++)
        if (strcmp(name, names[i]) == 0) {
            void *p = real_fn(i);
            if (!p)
                errno = ENOENT;
            return p;
        }
    errno = ENOENT;
    return NULL;
}

const char *const *yf_hook_names(void) { return names; }
const char *yf_hook_variant(void) { return VARIANT; }

static int64_t connect_timeout_ms = -1;

int64_t yf_hook_connect_timeout(int64_t ms)
{
    return __atomic_exchange_n(&connect_timeout_ms, ms < 0 ? -1 : ms, __ATOMIC_RELAXED);
}

/* ---- returning a failure ------------------------------------------------------ */

#ifdef YF_HOOK_LOG
/* A stand-in for the "external log library" of the diary's 2016/04/26 entry:
 * like many loggers it parses its level with strtol, whose documented usage
 * sets errno to 0 first, and it writes a line; on success neither touches
 * errno again, so errno leaves it as 0. */
static int log_fd = -1;
static const char *log_level = "1";

static void hook_log(int id, int err)
{
    errno = 0;
    long level = strtol(log_level, NULL, 10);
    if (errno != 0 || level < 1 || log_fd < 0)
        return;
    char line[96];
    int n = snprintf(line, sizeof line, "yfhook: %s failed: errno %d\n", names[id], err);
    if (n > 0 && REAL(write))
        (void)REAL(write)(log_fd, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

#ifdef YF_HOOK_ERRNO_EARLY
/* The 2016 order, kept to reproduce it: errno first, then the log line,
 * which overwrites it before the caller can read it. */
static int fail(int id, int err)
{
    errno = err;
    hook_log(id, err);
    return -1;
}
#else
static int fail(int id, int err)
{
    hook_log(id, err);
    errno = err;
    return -1;
}
#endif
#else
/* errno is the last thing a hook sets before returning: nothing it calls
 * afterwards can overwrite it, and no switch can happen in between. */
static inline int fail(int id, int err)
{
    (void)id;
    errno = err;
    return -1;
}
#endif

/* ---- the fd table -------------------------------------------------------------- */

#define FD_CHUNK_BITS 12
#define FD_CHUNK (1u << FD_CHUNK_BITS)
#define FD_CHUNKS 1024u          /* 4M fd numbers */

static struct yfh_fd *fd_chunks[FD_CHUNKS];

static struct yfh_fd *ent(int fd, int create)
{
    if (UNLIKELY(fd < 0 || (unsigned)fd >= FD_CHUNK * FD_CHUNKS))
        return NULL;
    unsigned c = (unsigned)fd >> FD_CHUNK_BITS;
    struct yfh_fd *chunk = __atomic_load_n(&fd_chunks[c], __ATOMIC_ACQUIRE);
    if (UNLIKELY(!chunk)) {
        if (!create)
            return NULL;
        int saved = errno;
        struct yfh_fd *fresh = calloc(FD_CHUNK, sizeof *fresh);
        errno = saved;
        if (!fresh)
            return NULL;
        /* Chunks are never freed: another thread may hold a pointer into one. */
        if (__atomic_compare_exchange_n(&fd_chunks[c], &chunk, fresh, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE))
            chunk = fresh;
        else
            free(fresh);
    }
    return &chunk[fd & (FD_CHUNK - 1)];
}

static void forget(int fd)
{
    struct yfh_fd *e = ent(fd, 0);
    if (e)
        memset(e, 0, sizeof *e);
}

static inline int in_loop(void)
{
    return yf_loop_current() != NULL;
}

/* Decides, once per fd number, whether calls on it can wait cooperatively:
 * sockets and pipes can (their kernel flag is set non-blocking here and the
 * caller's wish remembered); regular files, directories and devices pass
 * straight to libc. Returns the entry of a cooperative fd, else NULL. */
static struct yfh_fd *track(int fd)
{
    struct yfh_fd *e = ent(fd, 1);
    if (UNLIKELY(!e))
        return NULL;
    if (LIKELY(e->kind == K_COOP))
        return e;
    if (e->kind == K_PASS)
        return NULL;
    int saved = errno;
    struct stat st;
    int fl;
    if (fstat(fd, &st) != 0 || (fl = REAL(fcntl)(fd, F_GETFL)) < 0) {
        /* A bad fd: the real call will say so. */
        errno = saved;
        return NULL;
    }
    if (!S_ISSOCK(st.st_mode) && !S_ISFIFO(st.st_mode)) {
        e->kind = K_PASS;
        errno = saved;
        return NULL;
    }
    e->user_nb = (fl & O_NONBLOCK) != 0;
    if (!e->user_nb && REAL(fcntl)(fd, F_SETFL, fl | O_NONBLOCK) != 0) {
        errno = saved;
        return NULL;
    }
    e->kind = K_COOP;
    errno = saved;
    return e;
}

/* The entry of an fd whose calls the hooks handle, or NULL for plain libc.
 * Outside a loop's coroutine only fds already made non-blocking here are
 * handled (their blocking behaviour is emulated with poll). */
static inline struct yfh_fd *io_ent(int fd)
{
    if (in_loop())
        return track(fd);
    struct yfh_fd *e = ent(fd, 0);
    return (e && e->kind == K_COOP) ? e : NULL;
}

/* ---- waiting ------------------------------------------------------------------- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* An absolute deadline for a timeout in ms (<= 0: none, as SO_RCVTIMEO's 0). */
static int64_t deadline_after(int64_t ms)
{
    return ms > 0 ? now_ms() + ms : -1;
}

static int64_t left_ms(int64_t deadline)
{
    if (deadline < 0)
        return -1;
    int64_t left = deadline - now_ms();
    return left > 0 ? left : 0;
}

static int real_poll1(int fd, short events, int64_t timeout)
{
    struct pollfd p = {.fd = fd, .events = events};
    int t = timeout > INT32_MAX ? INT32_MAX : (int)timeout;
    int r = CALL_OR_SYS(poll, (&p, 1, t), SYS_poll, &p, 1, t);
    if (r > 0 && (p.revents & POLLNVAL)) {
        errno = EBADF;
        return -1;
    }
    return r;
}

static void pause_1ms(void)
{
    if (in_loop()) {
        yf_sleep_ms(1);
    } else {
        struct timespec ts = {0, 1000000};
        syscall(SYS_nanosleep, &ts, NULL);
    }
}

/* Waits until fd is ready for `ev` (YF_READ or YF_WRITE) or the deadline
 * passes: in the loop when called from its coroutine, else in poll. Returns
 * > 0 ready, 0 at the deadline, -1 with errno. */
static int wait_ready(int fd, unsigned ev, int64_t deadline)
{
    if (!in_loop())
        return real_poll1(fd, ev == YF_READ ? POLLIN : POLLOUT, left_ms(deadline));
    for (;;) {
        int w = yf_wait_fd(fd, ev, left_ms(deadline));
        if (w >= 0 || errno != EEXIST)
            return w;
        /* Another coroutine already waits on this fd in this direction and
         * the loop admits one waiter per fd and direction: the others check
         * again every millisecond until the first is done. */
        yf_sleep_ms(1);
        if (deadline >= 0 && now_ms() >= deadline)
            return 0;
    }
}

/* The body of every data-moving hook: the call as libc would make it on a
 * blocking fd. CALL is retried after each wait while it fails with EAGAIN;
 * a timeout (SO_RCVTIMEO/SO_SNDTIMEO through `tfield`) gives EAGAIN, as in
 * the kernel. Callers that asked for non-blocking I/O get libc's answer. */
#define COOP_IO(name, fd, ev, tfield, nowait, CALL)                                  \
    do {                                                                             \
        struct yfh_fd *e_ = io_ent(fd);                                              \
        if (!e_ || e_->user_nb || (nowait)) {                                        \
            ssize_t r_ = (CALL);                                                     \
            if (r_ >= 0)                                                             \
                return r_;                                                           \
            return fail(H_##name, errno);                                            \
        }                                                                            \
        int saved_ = errno;                                                          \
        int64_t dl_ = deadline_after(e_->tfield);                                    \
        for (;;) {                                                                   \
            ssize_t r_ = (CALL);                                                     \
            if (r_ >= 0) {                                                           \
                errno = saved_;                                                      \
                return r_;                                                           \
            }                                                                        \
            int err_ = errno;                                                        \
            if (err_ != EAGAIN && err_ != EWOULDBLOCK)                               \
                return fail(H_##name, err_);                                         \
            int w_ = wait_ready(fd, ev, dl_);                                        \
            if (w_ == 0)                                                             \
                return fail(H_##name, EAGAIN);                                       \
            if (w_ < 0)                                                              \
                return fail(H_##name, errno);                                        \
        }                                                                            \
    } while (0)

#ifdef YF_HOOK_FORCE_EAGAIN
/* Reproduction aid: the first receive after each send on a non-blocking fd
 * reports EAGAIN without asking the kernel (a reply is seldom there yet
 * anyway; forcing it makes every request take the EAGAIN path). */
#define MARK_SENT(fd)                                                                \
    do {                                                                             \
        struct yfh_fd *s_ = ent(fd, 0);                                              \
        if (s_)                                                                      \
            s_->sent = 1;                                                            \
    } while (0)
#define FORCE_EAGAIN(name, fd)                                                       \
    do {                                                                             \
        struct yfh_fd *s_ = ent(fd, 0);                                              \
        if (s_ && s_->sent && s_->kind == K_COOP && s_->user_nb) {                   \
            s_->sent = 0;                                                            \
            return fail(H_##name, EAGAIN);                                           \
        }                                                                            \
    } while (0)
#else
#define MARK_SENT(fd) ((void)0)
#define FORCE_EAGAIN(name, fd) ((void)0)
#endif

/* ---- data ------------------------------------------------------------------------ */

ssize_t read(int fd, void *buf, size_t n)
{
    COUNT(read);
    FORCE_EAGAIN(read, fd);
    COOP_IO(read, fd, YF_READ, rcv_ms, 0, CALL_OR_SYS(read, (fd, buf, n), SYS_read, fd, buf, n));
}

ssize_t write(int fd, const void *buf, size_t n)
{
    COUNT(write);
    MARK_SENT(fd);
    COOP_IO(write, fd, YF_WRITE, snd_ms, 0, CALL_OR_SYS(write, (fd, buf, n), SYS_write, fd, buf, n));
}

ssize_t readv(int fd, const struct iovec *iov, int cnt)
{
    COUNT(readv);
    FORCE_EAGAIN(readv, fd);
    COOP_IO(readv, fd, YF_READ, rcv_ms, 0, CALL_OR_SYS(readv, (fd, iov, cnt), SYS_readv, fd, iov, cnt));
}

ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
    COUNT(writev);
    MARK_SENT(fd);
    COOP_IO(writev, fd, YF_WRITE, snd_ms, 0, CALL_OR_SYS(writev, (fd, iov, cnt), SYS_writev, fd, iov, cnt));
}

ssize_t recv(int fd, void *buf, size_t n, int flags)
{
    COUNT(recv);
    FORCE_EAGAIN(recv, fd);
    COOP_IO(recv, fd, YF_READ, rcv_ms, flags & MSG_DONTWAIT,
            CALL_OR_SYS(recv, (fd, buf, n, flags), SYS_recvfrom, fd, buf, n, flags, NULL, NULL));
}

ssize_t send(int fd, const void *buf, size_t n, int flags)
{
    COUNT(send);
    MARK_SENT(fd);
    COOP_IO(send, fd, YF_WRITE, snd_ms, flags & MSG_DONTWAIT,
            CALL_OR_SYS(send, (fd, buf, n, flags), SYS_sendto, fd, buf, n, flags, NULL, 0));
}

ssize_t recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *addr, socklen_t *alen)
{
    COUNT(recvfrom);
    FORCE_EAGAIN(recvfrom, fd);
    COOP_IO(recvfrom, fd, YF_READ, rcv_ms, flags & MSG_DONTWAIT,
            CALL_OR_SYS(recvfrom, (fd, buf, n, flags, addr, alen), SYS_recvfrom, fd, buf, n, flags,
                        addr, alen));
}

ssize_t sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *addr,
               socklen_t alen)
{
    COUNT(sendto);
    MARK_SENT(fd);
    COOP_IO(sendto, fd, YF_WRITE, snd_ms, flags & MSG_DONTWAIT,
            CALL_OR_SYS(sendto, (fd, buf, n, flags, addr, alen), SYS_sendto, fd, buf, n, flags,
                        addr, alen));
}

ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
    COUNT(recvmsg);
    FORCE_EAGAIN(recvmsg, fd);
    COOP_IO(recvmsg, fd, YF_READ, rcv_ms, flags & MSG_DONTWAIT,
            CALL_OR_SYS(recvmsg, (fd, msg, flags), SYS_recvmsg, fd, msg, flags));
}

ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
    COUNT(sendmsg);
    MARK_SENT(fd);
    COOP_IO(sendmsg, fd, YF_WRITE, snd_ms, flags & MSG_DONTWAIT,
            CALL_OR_SYS(sendmsg, (fd, msg, flags), SYS_sendmsg, fd, msg, flags));
}

/* ---- connections ------------------------------------------------------------- */

int socket(int domain, int type, int protocol)
{
    COUNT(socket);
    int coop = in_loop();
    int t = coop ? type | SOCK_NONBLOCK : type;
    int fd = (int)CALL_OR_SYS(socket, (domain, t, protocol), SYS_socket, domain, t, protocol);
    if (fd < 0)
        return fail(H_socket, errno);
    forget(fd);
    if (coop) {
        struct yfh_fd *e = ent(fd, 1);
        if (e) {
            e->kind = K_COOP;
            e->user_nb = (type & SOCK_NONBLOCK) != 0;
        }
    }
    return fd;
}

static int real_connect(int fd, const struct sockaddr *addr, socklen_t len)
{
    return (int)CALL_OR_SYS(connect, (fd, addr, len), SYS_connect, fd, addr, len);
}

int connect(int fd, const struct sockaddr *addr, socklen_t len)
{
    COUNT(connect);
    struct yfh_fd *e = io_ent(fd);
    if (!e || e->user_nb) {
        if (real_connect(fd, addr, len) == 0)
            return 0;
        return fail(H_connect, errno);
    }
    int saved = errno;
    /* SO_SNDTIMEO bounds a blocking connect in the kernel and its expiry says
     * EINPROGRESS; without it the hooks' own bound applies, saying ETIMEDOUT. */
    int64_t tmo = e->snd_ms > 0 ? e->snd_ms : __atomic_load_n(&connect_timeout_ms, __ATOMIC_RELAXED);
    int tmo_err = e->snd_ms > 0 ? EINPROGRESS : ETIMEDOUT;
    int64_t dl = tmo > 0 ? now_ms() + tmo : (tmo == 0 ? now_ms() : -1);
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
            return fail(H_connect, err);
        if (dl >= 0 && now_ms() >= dl)
            return fail(H_connect, EAGAIN);
        pause_1ms();
    }
    int w = wait_ready(fd, YF_WRITE, dl);
    if (w == 0)
        return fail(H_connect, tmo_err);
    if (w < 0)
        return fail(H_connect, errno);
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (CALL_OR_SYS(getsockopt, (fd, SOL_SOCKET, SO_ERROR, &soerr, &sl), SYS_getsockopt, fd,
                    SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0)
        return fail(H_connect, errno);
    if (soerr != 0)
        return fail(H_connect, soerr);
    errno = saved;
    return 0;
}

static int do_accept(int id, int fd, struct sockaddr *addr, socklen_t *alen, int flags)
{
    struct yfh_fd *e = io_ent(fd);
    /* Accepted sockets inherit the listener's timeouts in the kernel; the
     * table follows. */
    int coop = e != NULL;
    int32_t rcv = e ? e->rcv_ms : 0, snd = e ? e->snd_ms : 0;
    int saved = errno;
    int64_t dl = deadline_after(e ? e->rcv_ms : 0);
    int f = coop ? flags | SOCK_NONBLOCK : flags;
    for (;;) {
        int nfd = (int)CALL_OR_SYS(accept4, (fd, addr, alen, f), SYS_accept4, fd, addr, alen, f);
        if (nfd >= 0) {
            forget(nfd);
            if (coop) {
                struct yfh_fd *n = ent(nfd, 1);
                if (n) {
                    n->kind = K_COOP;
                    n->user_nb = (flags & SOCK_NONBLOCK) != 0;
                    n->rcv_ms = rcv;
                    n->snd_ms = snd;
                }
            }
            errno = saved;
            return nfd;
        }
        int err = errno;
        if (!coop || e->user_nb || (err != EAGAIN && err != EWOULDBLOCK))
            return fail(id, err);
        int w = wait_ready(fd, YF_READ, dl);
        if (w == 0)
            return fail(id, EAGAIN);
        if (w < 0)
            return fail(id, errno);
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
    forget(fd);
    if (CALL_OR_SYS(close, (fd), SYS_close, fd) == 0)
        return 0;
    return fail(H_close, errno);
}

int shutdown(int fd, int how)
{
    COUNT(shutdown);
    if (CALL_OR_SYS(shutdown, (fd, how), SYS_shutdown, fd, how) == 0)
        return 0;
    return fail(H_shutdown, errno);
}

/* ---- flags and options ---------------------------------------------------------- */

static int do_fcntl(int id, int fd, int cmd, void *arg)
{
    struct yfh_fd *e = ent(fd, 0);
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
        return fail(id, errno);
    if (coop && cmd == F_GETFL)
        r = (r & ~O_NONBLOCK) | (e->user_nb ? O_NONBLOCK : 0);
    if (coop && (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC)) {
        struct yfh_fd *d = ent((int)r, 1);
        if (d)
            *d = *e;
    }
    return (int)r;
}

int fcntl(int fd, int cmd, ...)
{
    COUNT(fcntl);
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return do_fcntl(H_fcntl, fd, cmd, arg);
}

int fcntl64(int fd, int cmd, ...)
{
    COUNT(fcntl64);
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return do_fcntl(H_fcntl64, fd, cmd, arg);
}

int ioctl(int fd, unsigned long req, ...)
{
    COUNT(ioctl);
    va_list ap;
    va_start(ap, req);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    struct yfh_fd *e = ent(fd, 0);
    if (req == FIONBIO && e && e->kind == K_COOP && arg) {
        int one = 1;
        if (CALL_OR_SYS(ioctl, (fd, FIONBIO, &one), SYS_ioctl, fd, FIONBIO, &one) != 0)
            return fail(H_ioctl, errno);
        e->user_nb = *(int *)arg != 0;
        return 0;
    }
    long r = CALL_OR_SYS(ioctl, (fd, req, arg), SYS_ioctl, fd, req, arg);
    if (r < 0)
        return fail(H_ioctl, errno);
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
        return fail(H_setsockopt, errno);
    /* The kernel keeps the value (getsockopt reports it) but never applies
     * it to a non-blocking fd: the hooks apply it. */
    if (level == SOL_SOCKET && val) {
        struct yfh_fd *e = NULL;
        if (opt == SO_RCVTIMEO_OLD || opt == SO_RCVTIMEO_NEW || opt == SO_SNDTIMEO_OLD ||
            opt == SO_SNDTIMEO_NEW)
            e = ent(fd, 1);
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
        return fail(H_getsockopt, errno);
    return 0;
}

/* ---- poll, select ------------------------------------------------------------------ */

static int real_poll(struct pollfd *fds, nfds_t n, int timeout)
{
    return (int)CALL_OR_SYS(poll, (fds, n, timeout), SYS_poll, fds, n, timeout);
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
            return fail(id, errno);
        errno = saved;
        return r;
    }
    int64_t dl = timeout > 0 ? now_ms() + timeout : -1;
    if (n == 0) {
        while (dl < 0 || now_ms() < dl)
            yf_sleep_ms(dl < 0 ? INT32_MAX : left_ms(dl));
        errno = saved;
        return 0;
    }
    int tmp_ep = -1;
    unsigned ev;
    int wfd = wait_fd_for(fds, n, &tmp_ep, &ev);
    if (wfd < 0)
        return fail(id, errno);
    int err = 0;
    for (;;) {
        int w = wait_ready(wfd, ev, dl);
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
        return fail(id, err);
    errno = saved;
    return r;
}

int poll(struct pollfd *fds, nfds_t n, int timeout)
{
    COUNT(poll);
    if (!in_loop() || timeout == 0) {
        int r = real_poll(fds, n, timeout);
        return r < 0 ? fail(H_poll, errno) : r;
    }
    return coop_poll(H_poll, fds, n, timeout);
}

int select(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, struct timeval *tv)
{
    COUNT(select);
    if (!in_loop() || (tv && tv->tv_sec == 0 && tv->tv_usec == 0) || nfds < 0 || nfds > FD_SETSIZE) {
        int r = (int)CALL_OR_SYS(select, (nfds, rd, wr, ex, tv), SYS_select, nfds, rd, wr, ex, tv);
        return r < 0 ? fail(H_select, errno) : r;
    }
    if (tv && (tv->tv_sec < 0 || tv->tv_usec < 0 || tv->tv_usec >= 1000000))
        return fail(H_select, EINVAL);
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
            return fail(H_select, ENOMEM);
    }
    nfds_t k = 0;
    for (int fd = 0; fd < nfds; fd++) {
        short ev = (rd && FD_ISSET(fd, rd) ? POLLIN : 0) | (wr && FD_ISSET(fd, wr) ? POLLOUT : 0) |
                   (ex && FD_ISSET(fd, ex) ? POLLPRI : 0);
        if (ev)
            p[k++] = (struct pollfd){.fd = fd, .events = ev};
    }
    int64_t timeout = tv ? (int64_t)tv->tv_sec * 1000 + (tv->tv_usec + 999) / 1000 : -1;
    int64_t start = now_ms();
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
            int64_t left = timeout - (now_ms() - start);
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
        return fail(H_select, err);
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
    if (!in_loop())
        return REAL(sleep) ? REAL(sleep)(s) : 0;
    coop_sleep((int64_t)s * 1000);
    return 0;
}

int usleep(useconds_t us)
{
    COUNT(usleep);
    if (!in_loop()) {
        struct timespec ts = {us / 1000000, (long)(us % 1000000) * 1000};
        int r = REAL(usleep) ? REAL(usleep)(us) : (int)syscall(SYS_nanosleep, &ts, NULL);
        return r < 0 ? fail(H_usleep, errno) : r;
    }
    coop_sleep(((int64_t)us + 999) / 1000);
    return 0;
}

int nanosleep(const struct timespec *req, struct timespec *rem)
{
    COUNT(nanosleep);
    if (!in_loop()) {
        int r = (int)CALL_OR_SYS(nanosleep, (req, rem), SYS_nanosleep, req, rem);
        return r < 0 ? fail(H_nanosleep, errno) : r;
    }
    if (!req)
        return fail(H_nanosleep, EFAULT);
    if (req->tv_sec < 0 || req->tv_nsec < 0 || req->tv_nsec >= 1000000000L)
        return fail(H_nanosleep, EINVAL);
    coop_sleep((int64_t)req->tv_sec * 1000 + (req->tv_nsec + 999999) / 1000000);
    return 0;
}

/* ---- name lookups on worker threads ------------------------------------------------ */

/* A lookup the coroutine hands to a worker thread; it lives on the
 * coroutine's stack, which stays put while the coroutine waits on `efd`. */
struct job {
    struct job *next;
    int id;
    const char *node, *service;
    const struct addrinfo *hints;
    struct addrinfo **res;
    struct hostent *he;
    char *buf;
    size_t buflen;
    struct hostent **result;
    int *h_err;
    int rc, err;
    int efd;
};

#define MAX_WORKERS 8

static pthread_mutex_t jq_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t jq_cv = PTHREAD_COND_INITIALIZER;
static struct job *jq_head, *jq_tail;
static int workers, idle_workers;

static void run_job(struct job *j)
{
    errno = 0;
    if (j->id == H_getaddrinfo)
        j->rc = REAL(getaddrinfo)(j->node, j->service, j->hints, j->res);
    else
        j->rc = REAL(gethostbyname_r)(j->node, j->he, j->buf, j->buflen, j->result, j->h_err);
    j->err = errno;
}

static void *worker(void *unused)
{
    (void)unused;
    pthread_mutex_lock(&jq_mu);
    for (;;) {
        while (!jq_head) {
            idle_workers++;
            pthread_cond_wait(&jq_cv, &jq_mu);
            idle_workers--;
        }
        struct job *j = jq_head;
        jq_head = j->next;
        if (!jq_head)
            jq_tail = NULL;
        pthread_mutex_unlock(&jq_mu);
        run_job(j);
        /* The coroutine may run (and its stack frame end) as soon as the
         * eventfd is written: read nothing from j afterwards. */
        eventfd_write(j->efd, 1);
        pthread_mutex_lock(&jq_mu);
    }
    return NULL;
}

/* Runs j on a worker and waits for it in the loop; runs it here (blocking
 * the thread, as libc would) when no worker or eventfd can be had. */
static void offload(struct job *j)
{
    j->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (j->efd < 0) {
        run_job(j);
        return;
    }
    pthread_mutex_lock(&jq_mu);
    if (idle_workers == 0 && workers < MAX_WORKERS) {
        pthread_t t;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &at, worker, NULL) == 0)
            workers++;
        pthread_attr_destroy(&at);
    }
    if (workers == 0) {
        pthread_mutex_unlock(&jq_mu);
        CALL_OR_SYS(close, (j->efd), SYS_close, j->efd);
        run_job(j);
        return;
    }
    j->next = NULL;
    if (jq_tail)
        jq_tail->next = j;
    else
        jq_head = j;
    jq_tail = j;
    pthread_cond_signal(&jq_cv);
    pthread_mutex_unlock(&jq_mu);
    eventfd_t v;
    while (eventfd_read(j->efd, &v) != 0)
        yf_wait_fd(j->efd, YF_READ, -1);
    CALL_OR_SYS(close, (j->efd), SYS_close, j->efd);
}

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res)
{
    COUNT(getaddrinfo);
    if (!REAL(getaddrinfo))
        return EAI_SYSTEM;
    if (!in_loop())
        return REAL(getaddrinfo)(node, service, hints, res);
    int saved = errno;
    struct job j = {.id = H_getaddrinfo, .node = node, .service = service, .hints = hints, .res = res};
    offload(&j);
    /* getaddrinfo reports through its return value; errno matters only
     * for EAI_SYSTEM, and is otherwise the caller's, as before the call. */
    errno = j.rc == EAI_SYSTEM ? j.err : saved;
    return j.rc;
}

int gethostbyname_r(const char *name, struct hostent *ret, char *buf, size_t buflen,
                    struct hostent **result, int *h_errnop)
{
    COUNT(gethostbyname_r);
    if (!REAL(gethostbyname_r))
        return ENOSYS;
    if (!in_loop())
        return REAL(gethostbyname_r)(name, ret, buf, buflen, result, h_errnop);
    int saved = errno;
    struct job j = {.id = H_gethostbyname_r, .node = name, .he = ret, .buf = buf, .buflen = buflen,
                    .result = result, .h_err = h_errnop};
    offload(&j);
    errno = j.rc != 0 ? j.err : saved;
    return j.rc;
}

/* gethostbyname's result lives in static storage that the next call
 * overwrites; one such storage per thread, as glibc's is per process. */
static __thread struct hostent ghbn_ent;
static __thread char ghbn_buf[4096];

struct hostent *gethostbyname(const char *name)
{
    COUNT(gethostbyname);
    if (!in_loop())
        return REAL(gethostbyname) ? REAL(gethostbyname)(name) : NULL;
    int saved = errno;
    struct hostent *res = NULL;
    int herr = 0;
    struct job j = {.id = H_gethostbyname_r, .node = name, .he = &ghbn_ent, .buf = ghbn_buf,
                    .buflen = sizeof ghbn_buf, .result = &res, .h_err = &herr};
    if (!REAL(gethostbyname_r))
        return NULL;
    offload(&j);
    if (!res)
        h_errno = herr;
    errno = j.rc != 0 ? j.rc : saved;
    return res;
}

/* ---- start-up ------------------------------------------------------------------------ */

__attribute__((constructor)) static void hook_init(void)
{
    for (int i = 0; i < H_N; i++)
        real_fn(i);
    const char *t = getenv("YF_HOOK_CONNECT_TIMEOUT_MS");
    if (t && *t)
        yf_hook_connect_timeout(strtoll(t, NULL, 10));
#ifdef YF_HOOK_LOG
    const char *level = getenv("YF_HOOK_LOG_LEVEL");
    if (level && *level)
        log_level = level;
    const char *path = getenv("YF_HOOK_LOG");
    log_fd = (int)syscall(SYS_openat, AT_FDCWD, path && *path ? path : "/dev/null",
                          O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
#endif
}
