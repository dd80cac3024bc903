/* bench_fair.c - like-for-like switch and coroutine-life kernels: every
 * competitor gets the same stack size, the same allocator policy per row, the
 * same stack-top treatment (yfi_slot_top's colour offset) and the same code
 * placement treatment.
 *
 * Code placement: each kernel exists in YF_BENCH_PLACEMENTS copies that
 * differ only in where their code lies (placement.h says why); the benchmark
 * times every competitor at every placement and keeps each one's fastest,
 * the same rule for all. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <ucontext.h>

#include "../yfi.h"
#include "lab.h"
#include "placement.h"

/* Call shape: Boost's functions are reached through pointers from dlsym, one
 * indirect call each. yfcore's public functions, called from here by name,
 * would go through the PLT (a call, then a jump through the GOT): a second
 * taken branch per call that Boost does not pay. Declared noplt, they are
 * one indirect call through the GOT, as Boost's are through their pointers;
 * a program linked against either library by name pays the PLT for both. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define YF_BENCH_CALL __attribute__((noplt))
#else
#define YF_BENCH_CALL
#endif
YF_BENCH_CALL int yf_co_resume(yf_co *co);
YF_BENCH_CALL int yf_co_yield(void);
YF_BENCH_CALL yf_co *yf_co_create(yf_sched *s, yf_co_fn fn, void *arg);
YF_BENCH_CALL int64_t yf_sched_run(yf_sched *s);
YF_BENCH_CALL int yf_co_reap(yf_co *co, intptr_t *status);

/* ---- stacks: one policy per row, one top formula for all ------------------- */

struct stk {
    struct yfi_pool pool;      /* the pooled rows' pool; its size also serves
                                  yfi_slot_top for the malloc rows */
    int pooled;
};

static void stk_init(struct stk *k, size_t size, int pooled)
{
    yfi_pool_init(&k->pool, size, yf_guard_regions_supported() ? YFI_GUARD_REGIONS : YFI_GUARD_MPROTECT);
    k->pooled = pooled;
}

static void *stk_get(struct stk *k)
{
    void *p = k->pooled ? yfi_pool_get(&k->pool) : malloc(k->pool.size);
    if (!p)
        errno = ENOMEM;
    return p;
}

static void stk_put(struct stk *k, void *p)
{
    if (k->pooled)
        yfi_pool_put(&k->pool, p);
    else
        free(p);
}

/* The lowest usable byte: a pooled slot starts with its guard page. */
static char *stk_low(struct stk *k, void *p)
{
    return (char *)p + (k->pooled ? k->pool.page : 0);
}

static char *stk_top(struct stk *k, void *p)
{
    return yfi_slot_top(&k->pool, p);
}

static void stk_destroy(struct stk *k)
{
    yfi_pool_destroy(&k->pool);
}

/* ---- Boost.Context ------------------------------------------------------------ */

static fctx_jump_fn f_jump;
static fctx_make_fn f_make;

static int boost_ready(void)
{
    if (!f_jump) {
        void *j, *m;
        if (yfi_bench_fcontext_fns(&j, &m) != 0) {
            errno = ENOENT;
            return 0;
        }
        f_jump = (fctx_jump_fn)j;
        f_make = (fctx_make_fn)m;
    }
    return 1;
}

static YF_PLACED void f_pingpong(ftransfer t)
{
    for (;;)
        t = f_jump(t.ctx, NULL);
}

static YF_PLACED void f_three(ftransfer t)
{
    for (int i = 0; i < 3; i++)
        t = f_jump(t.ctx, NULL);
    /* The fourth switch out ends the life; nobody jumps back here. */
    f_jump(t.ctx, NULL);
}

/* ---- yfcore ------------------------------------------------------------------- */

static struct {
    void *main_sp, *co_sp;
    yfi_ctx_fn sw;
} raw;

static YF_PLACED void raw_body(void *v)
{
    (void)v;
    for (;;)
        raw.sw(&raw.co_sp, raw.main_sp, NULL);
}

static YF_PLACED intptr_t yield_until(void *arg)
{
    volatile int *stop = arg;
    while (!*stop)
        yf_co_yield();
    return 0;
}

static YF_PLACED intptr_t three_yields(void *arg)
{
    (void)arg;
    yf_co_yield();
    yf_co_yield();
    yf_co_yield();
    return 0;
}

/* ---- ucontext ----------------------------------------------------------------- */

static ucontext_t uc_main, uc_co;

static YF_PLACED void uc_pingpong(void)
{
    for (;;)
        swapcontext(&uc_co, &uc_main);
}

static YF_PLACED void uc_three(void)
{
    for (int i = 0; i < 3; i++)
        swapcontext(&uc_co, &uc_main);
    /* Returning follows uc_link back to uc_main: the fourth switch out. */
}

static void uc_prepare(char *low, char *top, void (*fn)(void), ucontext_t *link)
{
    getcontext(&uc_co);
    uc_co.uc_stack.ss_sp = low;
    uc_co.uc_stack.ss_size = (size_t)(top - low);
    uc_co.uc_link = link;
    makecontext(&uc_co, fn, 0);
}

/* ns for n runs of `stmt`: the timed loop of every switch kernel. */
#define TIME_N(n, stmt)                                                              \
    ({                                                                               \
        uint64_t t0_ = yfi_now_ns();                                                 \
        for (int64_t i_ = 0; i_ < (n); i_++)                                         \
            stmt;                                                                    \
        (double)(yfi_now_ns() - t0_);                                                \
    })

/* ---- the kernels, one copy per placement ---------------------------------------
 * A switch kernel makes one round trip to warm up, then times n; a life
 * kernel times n lives of create + 3 x (resume, yield) + exit with its
 * allocator policy. Each returns nanoseconds, or -1 with errno. */

#define SWITCH_KERNELS(P)                                                            \
    static YF_PLACED double sw_yf_##P(int64_t n, unsigned flags, size_t size)        \
    {                                                                                \
        YF_PAD(P);                                                                   \
        yf_sched *s = yf_sched_new(size, flags);                                     \
        if (!s)                                                                      \
            return -1;                                                               \
        volatile int stop = 0;                                                       \
        yf_co *co = yf_co_create(s, yield_until, (void *)&stop);                     \
        if (!co) {                                                                   \
            int e = errno;                                                           \
            yf_sched_free(s);                                                        \
            errno = e;                                                               \
            return -1;                                                               \
        }                                                                            \
        yf_co_resume(co);                                                            \
        double t = TIME_N(n, yf_co_resume(co));                                      \
        stop = 1;                                                                    \
        yf_co_resume(co);                                                            \
        yf_co_reap(co, NULL);                                                        \
        yf_sched_free(s);                                                            \
        return t;                                                                    \
    }                                                                                \
    static YF_PLACED double sw_raw_##P(int64_t n, yfi_ctx_fn sw, struct stk *k)      \
    {                                                                                \
        YF_PAD(P);                                                                   \
        void *p = stk_get(k);                                                        \
        if (!p)                                                                      \
            return -1;                                                               \
        uint32_t m;                                                                  \
        uint16_t c;                                                                  \
        yfi_fpenv_read(&m, &c);                                                      \
        raw.sw = sw;                                                                 \
        raw.co_sp = yfi_ctx_make(stk_top(k, p), raw_body, m, c);                     \
        raw.sw(&raw.main_sp, raw.co_sp, NULL);                                       \
        double t = TIME_N(n, raw.sw(&raw.main_sp, raw.co_sp, NULL));                 \
        /* The body never ends; its stack is simply dropped. */                      \
        stk_put(k, p);                                                               \
        return t;                                                                    \
    }                                                                                \
    static YF_PLACED double sw_boost_##P(int64_t n, struct stk *k)                   \
    {                                                                                \
        YF_PAD(P);                                                                   \
        void *p = stk_get(k);                                                        \
        if (!p)                                                                      \
            return -1;                                                               \
        char *top = stk_top(k, p);                                                   \
        ftransfer t = f_jump(f_make(top, (size_t)(top - stk_low(k, p)), f_pingpong), NULL); \
        double el = TIME_N(n, t = f_jump(t.ctx, NULL));                              \
        stk_put(k, p);                                                               \
        return el;                                                                   \
    }                                                                                \
    static YF_PLACED double sw_uc_##P(int64_t n, struct stk *k)                      \
    {                                                                                \
        YF_PAD(P);                                                                   \
        void *p = stk_get(k);                                                        \
        if (!p)                                                                      \
            return -1;                                                               \
        uc_prepare(stk_low(k, p), stk_top(k, p), uc_pingpong, NULL);                 \
        swapcontext(&uc_main, &uc_co);                                               \
        double t = TIME_N(n, swapcontext(&uc_main, &uc_co));                         \
        stk_put(k, p);                                                               \
        return t;                                                                    \
    }                                                                                \
    static YF_PLACED double life_yf_##P(int64_t n, unsigned flags, size_t size)      \
    {                                                                                \
        YF_PAD(P);                                                                   \
        yf_sched *s = yf_sched_new(size, flags);                                     \
        if (!s)                                                                      \
            return -1;                                                               \
        uint64_t t = 0;                                                              \
        /* Iteration -1 warms the pool, which the steady state never carves. */      \
        for (int64_t i = -1; i < n; i++) {                                           \
            if (i == 0)                                                              \
                t = yfi_now_ns();                                                    \
            yf_co *co = yf_co_create(s, three_yields, NULL);                         \
            if (!co) {                                                               \
                int e = errno;                                                       \
                yf_sched_free(s);                                                    \
                errno = e;                                                           \
                return -1;                                                           \
            }                                                                        \
            yf_sched_run(s);                                                         \
            yf_co_reap(co, NULL);                                                    \
        }                                                                            \
        t = yfi_now_ns() - t;                                                        \
        yf_sched_free(s);                                                            \
        return (double)t;                                                            \
    }                                                                                \
    static YF_PLACED double life_boost_##P(int64_t n, struct stk *k)                 \
    {                                                                                \
        YF_PAD(P);                                                                   \
        uint64_t t0 = 0;                                                             \
        for (int64_t i = -1; i < n; i++) {                                           \
            if (i == 0)                                                              \
                t0 = yfi_now_ns();                                                   \
            void *p = stk_get(k);                                                    \
            if (!p)                                                                  \
                return -1;                                                           \
            char *top = stk_top(k, p);                                               \
            ftransfer t = f_jump(f_make(top, (size_t)(top - stk_low(k, p)), f_three), NULL); \
            for (int j = 0; j < 3; j++)                                              \
                t = f_jump(t.ctx, NULL);                                             \
            stk_put(k, p);                                                           \
        }                                                                            \
        return (double)(yfi_now_ns() - t0);                                          \
    }                                                                                \
    /* One life per call: swapcontext returns twice, and a frame of its own          \
     * keeps the caller's loop counter out of the registers it may clobber. */       \
    static YF_PLACED int uc_life_##P(struct stk *k)                                  \
    {                                                                                \
        void *p = stk_get(k);                                                        \
        if (!p)                                                                      \
            return -1;                                                               \
        uc_prepare(stk_low(k, p), stk_top(k, p), uc_three, &uc_main);                \
        for (int j = 0; j < 4; j++)                                                  \
            swapcontext(&uc_main, &uc_co);                                           \
        stk_put(k, p);                                                               \
        return 0;                                                                    \
    }                                                                                \
    static YF_PLACED double life_uc_##P(int64_t n, struct stk *k)                    \
    {                                                                                \
        YF_PAD(P);                                                                   \
        uint64_t t0 = 0;                                                             \
        for (int64_t i = -1; i < n; i++) {                                           \
            if (i == 0)                                                              \
                t0 = yfi_now_ns();                                                   \
            if (uc_life_##P(k) != 0)                                                 \
                return -1;                                                           \
        }                                                                            \
        return (double)(yfi_now_ns() - t0);                                          \
    }

YF_EACH_PLACEMENT(SWITCH_KERNELS)

#define TABLE YF_PLACEMENT_TABLE
_Static_assert(YF_BENCH_PLACEMENTS == YF_NPLACEMENTS, "one table entry per placement");
static double (*const sw_yf[])(int64_t, unsigned, size_t) = TABLE(sw_yf);
static double (*const sw_raw[])(int64_t, yfi_ctx_fn, struct stk *) = TABLE(sw_raw);
static double (*const sw_boost[])(int64_t, struct stk *) = TABLE(sw_boost);
static double (*const sw_uc[])(int64_t, struct stk *) = TABLE(sw_uc);
static double (*const life_yf[])(int64_t, unsigned, size_t) = TABLE(life_yf);
static double (*const life_boost[])(int64_t, struct stk *) = TABLE(life_boost);
static double (*const life_uc[])(int64_t, struct stk *) = TABLE(life_uc);

static int fair_args(int system, int nsystems, int placement, int64_t n, size_t stack_size)
{
    if (system < 0 || system >= nsystems || placement < 0 || placement >= YF_BENCH_PLACEMENTS || n < 0 ||
        stack_size < YF_STACK_MIN || stack_size > YF_STACK_MAX || (stack_size & (stack_size - 1))) {
        errno = EINVAL;
        return 0;
    }
    return 1;
}

double yf_bench_fair_switch(int system, int placement, int64_t n, size_t stack_size)
{
    if (!fair_args(system, YF_FAIR_NSWITCH, placement, n, stack_size))
        return -1;
    if (system == YF_FAIR_SW_YF || system == YF_FAIR_SW_YF_FPFAST)
        return sw_yf[placement](n, system == YF_FAIR_SW_YF ? 0 : YF_SCHED_FPFAST, stack_size);
    if (system == YF_FAIR_SW_BOOST && !boost_ready())
        return -1;
    /* The bare switches, Boost and ucontext take their stack from the same
     * kind of pool the scheduler uses, warm, with the same top. */
    struct stk k;
    stk_init(&k, stack_size, 1);
    void *warm = stk_get(&k);
    double t = -1;
    if (warm) {
        stk_put(&k, warm);
        switch (system) {
        case YF_FAIR_SW_RAW:
            t = sw_raw[placement](n, yfi_ctx_full, &k);
            break;
        case YF_FAIR_SW_RAW_FPFAST:
            t = sw_raw[placement](n, yfi_ctx_nofp, &k);
            break;
        case YF_FAIR_SW_BOOST:
            t = sw_boost[placement](n, &k);
            break;
        default:
            t = sw_uc[placement](n, &k);
            break;
        }
    }
    int e = errno;
    stk_destroy(&k);
    errno = e;
    return t;
}

double yf_bench_fair_create(int system, int placement, int64_t n, size_t stack_size)
{
    if (!fair_args(system, YF_FAIR_NCREATE, placement, n, stack_size))
        return -1;
    switch (system) {
    case YF_FAIR_LIFE_YF:
        return life_yf[placement](n, 0, stack_size);
    case YF_FAIR_LIFE_YF_FPFAST:
        return life_yf[placement](n, YF_SCHED_FPFAST, stack_size);
    case YF_FAIR_LIFE_YF_MALLOC:
        return life_yf[placement](n, YF_SCHED_MALLOC_STACKS, stack_size);
    default:
        break;
    }
    if ((system == YF_FAIR_LIFE_BOOST || system == YF_FAIR_LIFE_BOOST_POOL) && !boost_ready())
        return -1;
    struct stk k;
    stk_init(&k, stack_size, system == YF_FAIR_LIFE_BOOST_POOL || system == YF_FAIR_LIFE_UCONTEXT_POOL);
    double t = system == YF_FAIR_LIFE_BOOST || system == YF_FAIR_LIFE_BOOST_POOL ? life_boost[placement](n, &k)
                                                                                  : life_uc[placement](n, &k);
    int e = errno;
    stk_destroy(&k);
    errno = e;
    return t;
}
