/* link_drive.c - the loops notebook 04 times in each link build: the same
 * source lands in the executable (static, plt, noplt builds) or inside the
 * runtime's shared library (hidden build), so only the way its calls reach
 * the runtime changes. */
#include <errno.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "yf.h"
#include "link_drive.h"
#include "lab/placement.h"
#ifdef LINK_HOOKS
#include "yfhook.h"
#endif

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

/* One copy of the coroutine body and of the timed loop per placement: n
 * resumes each come back from one yield; the (n+1)th runs the body to its
 * end, outside the timed part. Each round trip is two calls into the
 * runtime (yf_co_resume, yf_co_yield) and two switches. */
#define SWITCH_LOOP(P)                                                                 \
    static YF_PLACED intptr_t yield_n_##P(void *arg)                                   \
    {                                                                                  \
        YF_PAD(P);                                                                     \
        int64_t n = (intptr_t)arg;                                                     \
        for (int64_t i = 0; i < n; i++)                                                \
            yf_co_yield();                                                             \
        return n;                                                                      \
    }                                                                                  \
    static YF_PLACED double resume_n_##P(yf_sched *s, int64_t n, yf_co **co)          \
    {                                                                                  \
        YF_PAD(P);                                                                     \
        *co = yf_co_create(s, yield_n_##P, (void *)(intptr_t)n);                       \
        if (!*co)                                                                      \
            return -1;                                                                 \
        double t0 = now_ns();                                                          \
        for (int64_t i = 0; i < n; i++)                                                \
            yf_co_resume(*co);                                                         \
        return now_ns() - t0;                                                          \
    }
YF_EACH_PLACEMENT(SWITCH_LOOP)
_Static_assert(LINK_PLACEMENTS == YF_NPLACEMENTS, "one copy per placement");
static double (*const resume_n[])(yf_sched *, int64_t, yf_co **) = YF_PLACEMENT_TABLE(resume_n);

double link_drive_switch(int placement, int64_t n, int64_t *finished)
{
    if (placement < 0 || placement >= LINK_PLACEMENTS || n < 1) {
        errno = EINVAL;
        return -1;
    }
    yf_sched *s = yf_sched_new(65536, 0);
    if (!s)
        return -1;
    yf_co *co;
    double t = resume_n[placement](s, n, &co);
    if (t < 0) {
        int e = errno;
        yf_sched_free(s);
        errno = e;
        return -1;
    }
    yf_co_resume(co);
    intptr_t status = -1;
    *finished = yf_co_state(co) == YF_DONE && yf_co_reap(co, &status) == 0 ? status : -1;
    yf_sched_free(s);
    return t / n;
}

double link_drive_call(int64_t n)
{
    /* yf_co_current is the cheapest exported function (it reads one
     * thread-local pointer), so the loop is mostly the call itself. The
     * volatile sink keeps the compiler from hoisting it. */
    yf_co *volatile sink;
    double t0 = now_ns();
    for (int64_t i = 0; i < n; i++)
        sink = yf_co_current();
    (void)sink;
    return (now_ns() - t0) / n;
}

#ifdef LINK_HOOKS
int link_drive_hooked(int64_t n, double *hooked_ns, double *real_ns)
{
    /* close(-1) is the cheapest call every hook passes to libc: EBADF from
     * the kernel, no state anywhere. The same call through the pointer the
     * hooks forward to gives the cost without the hook. */
    int (*real_close)(int) = (int (*)(int))yf_hook_real("close");
    if (!real_close)
        return -1;
    double t0 = now_ns();
    for (int64_t i = 0; i < n; i++)
        close(-1);
    double t1 = now_ns();
    for (int64_t i = 0; i < n; i++)
        real_close(-1);
    *hooked_ns = (t1 - t0) / n;
    *real_ns = (now_ns() - t1) / n;
    return 0;
}
#endif
