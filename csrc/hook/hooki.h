/* hooki.h - internals shared by the hook library's files: hook ids, the real
 * functions, returning a failure, the fd table, the wait policy. */
#ifndef YF_HOOKI_H
#define YF_HOOKI_H

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <sys/select.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "yfi.h"
#include "yfhook.h"

#define YFH_FUNC __attribute__((visibility("hidden")))

/* Every interposed symbol, in one list: the ids, the names given to dlsym
 * and the call counters are generated from it, so they cannot disagree. */
#define YF_HOOKS(X)                                                                \
    X(socket) X(connect) X(accept) X(accept4) X(read) X(write) X(recv) X(send)     \
    X(recvfrom) X(sendto) X(recvmsg) X(sendmsg) X(readv) X(writev) X(close)        \
    X(shutdown) X(fcntl) X(fcntl64) X(ioctl) X(setsockopt) X(getsockopt) X(poll)   \
    X(select) X(sleep) X(usleep) X(nanosleep) X(getaddrinfo) X(gethostbyname)      \
    X(gethostbyname_r)

enum {
#define YF_HOOK_ID(n) H_##n,
    YF_HOOKS(YF_HOOK_ID)
#undef YF_HOOK_ID
    H_N
};

/* ---- the real functions (symbols.c) ------------------------------------------ */

YFH_FUNC extern const char *const yfh_names[H_N + 1];
YFH_FUNC extern void *yfh_reals[H_N];
YFH_FUNC extern uint64_t yfh_calls[H_N];
/* dlsym(RTLD_NEXT) for hook id, cached; NULL while this thread is already
 * inside dlsym (it may allocate, and an allocator that logs would re-enter). */
YFH_FUNC void *yfh_resolve(int id);
/* The bound yf_hook_connect_timeout set (ms, -1: none). */
YFH_FUNC int64_t yfh_connect_timeout_ms(void);

static inline void *yfh_real(int id)
{
    void *p = __atomic_load_n(&yfh_reals[id], __ATOMIC_RELAXED);
    return YF_LIKELY(p != NULL) ? p : yfh_resolve(id);
}

/* The libc function behind hook `n`, typed from libc's own prototype. */
#define REAL(n) ((__typeof__(&n))yfh_real(H_##n))
#define COUNT(n) __atomic_fetch_add(&yfh_calls[H_##n], 1, __ATOMIC_RELAXED)

/* The call itself, through libc when resolved, else as a raw system call. */
#define CALL_OR_SYS(n, args, sysno, ...) \
    (REAL(n) ? REAL(n) args : syscall(sysno, __VA_ARGS__))
#define CALL_OR(n, args, fallback) (REAL(n) ? REAL(n) args : (fallback))

/* AArch64, like every Linux port newer than x86-64, has no poll or select
 * system call, only ppoll and pselect6: the raw fallbacks take those there,
 * converting the timeout (and back: select reports the time left). */
static inline long yfh_raw_poll(struct pollfd *fds, nfds_t n, int timeout)
{
#ifdef SYS_poll
    return syscall(SYS_poll, fds, n, timeout);
#else
    struct timespec ts = {.tv_sec = timeout / 1000, .tv_nsec = (long)(timeout % 1000) * 1000000};
    /* No signal mask, so the kernel ignores its size argument. */
    return syscall(SYS_ppoll, fds, n, timeout >= 0 ? &ts : NULL, NULL, (size_t)0);
#endif
}

static inline long yfh_raw_select(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, struct timeval *tv)
{
#ifdef SYS_select
    return syscall(SYS_select, nfds, rd, wr, ex, tv);
#else
    struct timespec ts = {0, 0};
    if (tv) {
        ts.tv_sec = tv->tv_sec;
        ts.tv_nsec = (long)tv->tv_usec * 1000;
    }
    long r = syscall(SYS_pselect6, nfds, rd, wr, ex, tv ? &ts : NULL, NULL);
    if (tv) {
        tv->tv_sec = ts.tv_sec;
        tv->tv_usec = ts.tv_nsec / 1000;
    }
    return r;
#endif
}

/* ---- returning a failure (log.c) ---------------------------------------------- */

/* Every hook fails through yfh_fail, which sets errno and returns -1. The
 * shipped build sets errno last: nothing the hook calls afterwards can
 * overwrite it, and no switch can happen in between. The two log variants
 * (built by _hookbuild.py to re-create the diary's 2016/04/26 bug) also
 * write a line per failure through yfh_log, a logger that sets errno to 0 on
 * its way as many do: "log-late" sets errno after the line (right), and
 * "log-early" before it, the 2016 order, so the logger clobbers it. */
#ifdef YF_HOOK_LOG
YFH_FUNC void yfh_log(int id, int err);
YFH_FUNC void yfh_log_init(void);
#endif

static inline int yfh_fail(int id, int err)
{
#if defined(YF_HOOK_LOG) && defined(YF_HOOK_ERRNO_EARLY)
    errno = err;
    yfh_log(id, err);
#elif defined(YF_HOOK_LOG)
    yfh_log(id, err);
    errno = err;
#else
    (void)id;
    errno = err;
#endif
    return -1;
}

/* ---- the fd table (fdtable.c) -------------------------------------------------- */

/* What the hooks know about one fd number. Zeroed when the number is
 * (re)issued by socket/accept or released by close. */
struct yfh_fd {
    uint8_t kind;        /* K_UNKNOWN, K_PASS (regular file, ...), K_COOP */
    uint8_t user_nb;     /* the caller's O_NONBLOCK wish (K_COOP: kernel flag is always set) */
    uint8_t sent;        /* a send since the last recv (forced-EAGAIN builds) */
    uint8_t pad;
    int32_t rcv_ms;      /* SO_RCVTIMEO in ms, 0: none */
    int32_t snd_ms;      /* SO_SNDTIMEO in ms, 0: none */
};

enum { K_UNKNOWN = 0, K_PASS = 1, K_COOP = 2 };

/* The entry of fd (NULL for a negative or huge fd, or when create is 0 and
 * its chunk of the table was never made; ENOMEM is not reported). */
YFH_FUNC struct yfh_fd *yfh_ent(int fd, int create);
/* Zeroes fd's entry: the number is new, or released. */
YFH_FUNC void yfh_forget(int fd);
/* A number socket or accept just issued: its old entry is forgotten and,
 * when coop, it is marked cooperative with the caller's O_NONBLOCK wish and
 * the given timeouts. */
YFH_FUNC void yfh_issued(int fd, int coop, int user_nb, int32_t rcv_ms, int32_t snd_ms);
/* Decides, once per fd number, whether calls on it can wait cooperatively;
 * the entry of a cooperative fd, else NULL. */
YFH_FUNC struct yfh_fd *yfh_track(int fd);

static inline int yfh_in_loop(void)
{
    return yf_loop_current() != NULL;
}

/* The entry of an fd whose calls the hooks handle, or NULL for plain libc.
 * Outside a loop's coroutine only fds already made non-blocking here are
 * handled (their blocking behaviour is emulated with poll). */
static inline struct yfh_fd *yfh_io_ent(int fd)
{
    if (yfh_in_loop())
        return yfh_track(fd);
    struct yfh_fd *e = yfh_ent(fd, 0);
    return (e && e->kind == K_COOP) ? e : NULL;
}

/* ---- the wait policy (wait.c) -------------------------------------------------- */

static inline int64_t yfh_now_ms(void)
{
    return (int64_t)(yfi_now_ns() / 1000000u);
}

/* An absolute deadline for a timeout in ms (<= 0: none, as SO_RCVTIMEO's 0). */
static inline int64_t yfh_deadline_after(int64_t ms)
{
    return ms > 0 ? yfh_now_ms() + ms : -1;
}

/* ms left until deadline (-1: none), never negative. */
YFH_FUNC int64_t yfh_left_ms(int64_t deadline);
/* Waits until fd is ready for `ev` (YF_READ or YF_WRITE) or the deadline
 * passes: in the loop when called from its coroutine, else in poll. Returns
 * > 0 ready, 0 at the deadline, -1 with errno. */
YFH_FUNC int yfh_wait_ready(int fd, unsigned ev, int64_t deadline);
/* One millisecond: in the loop from a coroutine, else nanosleep. */
YFH_FUNC void yfh_pause_1ms(void);

#endif
