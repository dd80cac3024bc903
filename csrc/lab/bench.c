/* bench.c - benchmark kernels: yfcore's switch and coroutine life against glibc
 * ucontext (Boost.Context fcontext: fcontext.c), raw switch variants, stack costs. Each
 * kernel runs n iterations in one call and returns the elapsed nanoseconds
 * (or -1 with errno), so Python's per-call cost never enters the figure. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include "../yfi.h"
#include "lab.h"

void yf_bench_nop(void)
{
}

/* ---- raw switch variants ------------------------------------------------------ */

/* lab/ctx_variants_<arch>.S; the runtime's own two come from yfi.h. */
YFI_FUNC void *yfi_ctx_full_ret(void **save, void *load, void *value);
YFI_FUNC void *yfi_ctx_full_always(void **save, void *load, void *value);
YFI_FUNC void *yfi_ctx_mxcsr_cmp(void **save, void *load, void *value);
YFI_FUNC void *yfi_ctx_nofp_ret(void **save, void *load, void *value);

const yfi_ctx_fn yfi_ctx_variants[YF_CTX_NVARIANTS] = {
    [YF_CTX_FULL] = yfi_ctx_full,
    [YF_CTX_FULL_RET] = yfi_ctx_full_ret,
    [YF_CTX_FULL_ALWAYS] = yfi_ctx_full_always,
    [YF_CTX_MXCSR_CMP] = yfi_ctx_mxcsr_cmp,
    [YF_CTX_NOFP] = yfi_ctx_nofp,
    [YF_CTX_NOFP_RET] = yfi_ctx_nofp_ret,
};

static struct {
    void *main_sp, *co_sp;
    yfi_ctx_fn sw;
    int depth;
} raw;

static __attribute__((noinline)) void raw_deep(int d)
{
    if (d == 0)
        raw.sw(&raw.co_sp, raw.main_sp, NULL);
    else
        raw_deep(d - 1);
    /* Keeps the recursive call a real call, not a tail jump. */
    __asm__ volatile("" ::: "memory");
}

static void raw_body(void *v)
{
    (void)v;
    for (;;) {
        if (raw.depth)
            raw_deep(raw.depth);
        else
            raw.sw(&raw.co_sp, raw.main_sp, NULL);
    }
}

double yf_bench_ctx(int64_t n, int variant, int depth)
{
    if (variant < 0 || variant >= YF_CTX_NVARIANTS || n < 0 || depth < 0 || depth > 1000) {
        errno = EINVAL;
        return -1;
    }
    size_t size = 256 * 1024;
    char *stk = malloc(size);
    if (!stk) {
        errno = ENOMEM;
        return -1;
    }
    uint32_t m;
    uint16_t c;
    yfi_fpenv_read(&m, &c);
    raw.sw = yfi_ctx_variants[variant];
    raw.depth = depth;
    raw.co_sp = yfi_ctx_make(stk + size, raw_body, m, c);
    raw.sw(&raw.main_sp, raw.co_sp, NULL);
    uint64_t t0 = yfi_now_ns();
    for (int64_t i = 0; i < n; i++)
        raw.sw(&raw.main_sp, raw.co_sp, NULL);
    double t = (double)(yfi_now_ns() - t0);
    /* The body never ends; its stack is simply dropped. */
    free(stk);
    return t;
}

/* ---- yfcore through the scheduler -------------------------------------------------- */

/* A kernel's failure after it made s: frees s, keeps errno, returns -1. */
static double free_failing(yf_sched *s)
{
    int e = errno;
    yf_sched_free(s);
    errno = e;
    return -1;
}

static intptr_t yield_until(void *arg)
{
    volatile int *stop = arg;
    while (!*stop)
        yf_co_yield();
    return 0;
}

double yf_bench_switch_yf(int64_t n, unsigned flags, size_t stack_size, size_t trace_cap)
{
    yf_sched *s = yf_sched_new(stack_size, flags);
    if (!s)
        return -1;
    if (trace_cap && yf_sched_trace(s, trace_cap) != 0)
        return free_failing(s);
    volatile int stop = 0;
    yf_co *co = yf_co_create(s, yield_until, (void *)&stop);
    if (!co)
        return free_failing(s);
    yf_co_resume(co);
    uint64_t t0 = yfi_now_ns();
    for (int64_t i = 0; i < n; i++)
        yf_co_resume(co);
    double t = (double)(yfi_now_ns() - t0);
    stop = 1;
    yf_co_resume(co);
    yf_co_reap(co, NULL);
    yf_sched_free(s);
    return t;
}

static intptr_t three_yields(void *arg)
{
    (void)arg;
    for (int i = 0; i < 3; i++)
        yf_co_yield();
    return 0;
}

double yf_bench_create_yf(int64_t n, unsigned flags, size_t stack_size)
{
    yf_sched *s = yf_sched_new(stack_size, flags);
    if (!s)
        return -1;
    uint64_t t0 = 0;
    /* Iteration -1 warms the pool: the first stack is carved from a new
     * arena, which the steady state never does. */
    for (int64_t i = -1; i < n; i++) {
        if (i == 0)
            t0 = yfi_now_ns();
        yf_co *co = yf_co_create(s, three_yields, NULL);
        if (!co)
            return free_failing(s);
        yf_sched_run(s);
        yf_co_reap(co, NULL);
    }
    double t = (double)(yfi_now_ns() - t0);
    yf_sched_free(s);
    return t;
}

/* ---- glibc ucontext ---------------------------------------------------------------- */

static ucontext_t uc_main, uc_co;

static void uc_pingpong(void)
{
    for (;;)
        swapcontext(&uc_co, &uc_main);
}

/* Makes uc_co run fn on a fresh malloc'ed stack of stack_size bytes,
 * continuing at link when fn returns. Returns the stack (the caller frees
 * it), NULL with ENOMEM. */
static char *uc_prepare(void (*fn)(void), size_t stack_size, ucontext_t *link)
{
    char *stk = malloc(stack_size);
    if (!stk) {
        errno = ENOMEM;
        return NULL;
    }
    getcontext(&uc_co);
    uc_co.uc_stack.ss_sp = stk;
    uc_co.uc_stack.ss_size = stack_size;
    uc_co.uc_link = link;
    makecontext(&uc_co, fn, 0);
    return stk;
}

double yf_bench_switch_ucontext(int64_t n, size_t stack_size)
{
    char *stk = uc_prepare(uc_pingpong, stack_size, NULL);
    if (!stk)
        return -1;
    swapcontext(&uc_main, &uc_co);
    uint64_t t0 = yfi_now_ns();
    for (int64_t i = 0; i < n; i++)
        swapcontext(&uc_main, &uc_co);
    double t = (double)(yfi_now_ns() - t0);
    free(stk);
    return t;
}

static void uc_three(void)
{
    for (int i = 0; i < 3; i++)
        swapcontext(&uc_co, &uc_main);
    /* Returning follows uc_link back to uc_main: the fourth switch out. */
}

/* One life per call: swapcontext returns twice, and a separate frame keeps
 * the caller's loop counter out of the registers it may clobber. */
static __attribute__((noinline)) int uc_life(size_t stack_size)
{
    char *stk = uc_prepare(uc_three, stack_size, &uc_main);
    if (!stk)
        return -1;
    for (int k = 0; k < 4; k++)
        swapcontext(&uc_main, &uc_co);
    free(stk);
    return 0;
}

double yf_bench_create_ucontext(int64_t n, size_t stack_size)
{
    uint64_t t0 = yfi_now_ns();
    for (int64_t i = 0; i < n; i++)
        if (uc_life(stack_size) != 0)
            return -1;
    return (double)(yfi_now_ns() - t0);
}

/* ---- stack costs ------------------------------------------------------------------ */

static int guard_kind(int guard_regions)
{
    return guard_regions ? YFI_GUARD_REGIONS : YFI_GUARD_MPROTECT;
}

double yf_bench_stack_mmap(int64_t n, size_t stack_size, int guard_regions)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    uint64_t t0 = yfi_now_ns();
    for (int64_t i = 0; i < n; i++) {
        char *p = mmap(NULL, stack_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return -1;
        if (yfi_guard_install(p, page, guard_kind(guard_regions)) != 0) {
            munmap(p, stack_size);
            return -1;
        }
        /* Every coroutine touches the top of its stack: count that fault. */
        ((volatile char *)p)[stack_size - 64] = 1;
        munmap(p, stack_size);
    }
    return (double)(yfi_now_ns() - t0);
}

double yf_bench_stack_pool(int64_t n, size_t stack_size)
{
    struct yfi_pool pool;
    yfi_pool_init(&pool, stack_size, guard_kind(yf_guard_regions_supported()));
    void *warm = yfi_pool_get(&pool);
    if (!warm) {
        yfi_pool_destroy(&pool);
        return -1;
    }
    yfi_pool_put(&pool, warm);
    uint64_t t0 = yfi_now_ns();
    for (int64_t i = 0; i < n; i++) {
        char *p = yfi_pool_get(&pool);
        ((volatile char *)p)[stack_size - 64] = 1;
        yfi_pool_put(&pool, p);
    }
    double t = (double)(yfi_now_ns() - t0);
    yfi_pool_destroy(&pool);
    return t;
}

double yf_bench_stack_malloc(int64_t n, size_t stack_size)
{
    uint64_t t0 = yfi_now_ns();
    for (int64_t i = 0; i < n; i++) {
        char *p = malloc(stack_size);
        if (!p)
            return -1;
        ((volatile char *)p)[stack_size - 64] = 1;
        free(p);
    }
    return (double)(yfi_now_ns() - t0);
}

/* One timed loop per instruction; the memory operand holds the current
 * state, so every load writes back what is there. */
#define FP_LOOP(n, insn8, ...)                                                       \
    ({                                                                               \
        uint64_t t0_ = yfi_now_ns();                                                 \
        for (int64_t i_ = 0; i_ < (n); i_++)                                         \
            __asm__ volatile(insn8 __VA_ARGS__);                                     \
        (double)(yfi_now_ns() - t0_);                                                \
    })
#define X8(s) s "\n" s "\n" s "\n" s "\n" s "\n" s "\n" s "\n" s "\n"

double yf_bench_fp_insn(int64_t n, int which)
{
    if (n < 0 || which < 0 || which >= YF_FPI_N) {
        errno = EINVAL;
        return -1;
    }
#if defined(__x86_64__)
    uint32_t m;
    uint16_t c;
    yfi_fpenv_read(&m, &c);
    switch (which) {
    case YF_FPI_STMXCSR:
        return FP_LOOP(n, X8("stmxcsr %0"), : "=m"(m));
    case YF_FPI_LDMXCSR:
        return FP_LOOP(n, X8("ldmxcsr %0"), : : "m"(m));
    case YF_FPI_FNSTCW:
        return FP_LOOP(n, X8("fnstcw %0"), : "=m"(c));
    case YF_FPI_FLDCW:
        return FP_LOOP(n, X8("fldcw %0"), : : "m"(c));
    default:
        return FP_LOOP(n, "");
    }
#elif defined(__aarch64__)
    uint64_t r;
    __asm__ volatile("mrs %0, fpcr" : "=r"(r));
    switch (which) {
    case YF_FPI_STMXCSR:
        return FP_LOOP(n, X8("mrs %0, fpcr"), : "=r"(r));
    case YF_FPI_LDMXCSR:
        return FP_LOOP(n, X8("msr fpcr, %0"), : : "r"(r));
    case YF_FPI_NONE:
        return FP_LOOP(n, "");
    default:
        errno = EINVAL;
        return -1;
    }
#endif
}

double yf_bench_sigprocmask(int64_t n)
{
    /* What swapcontext adds to every switch: one rt_sigprocmask that sets
     * the mask it already has and reads the old one back. */
    sigset_t cur, old;
    if (sigprocmask(SIG_SETMASK, NULL, &cur) != 0)
        return -1;
    uint64_t t0 = yfi_now_ns();
    for (int64_t i = 0; i < n; i++)
        if (sigprocmask(SIG_SETMASK, &cur, &old) != 0)
            return -1;
    return (double)(yfi_now_ns() - t0);
}
