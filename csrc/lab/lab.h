/* lab.h - the contract of the lab: benchmark kernels, baselines (ucontext,
 * Boost.Context fcontext), demo coroutine bodies and stream parsers that the
 * experiments call. Compiled into the Python module and the C tests, never
 * into libyf.so or libyfhook: the runtime's contract is yf.h alone. */
#ifndef YF_LAB_H
#define YF_LAB_H

#include <stddef.h>
#include <stdint.h>

#include "../yf.h"

/* Everything between the CDEF markers is fed to cffi's cdef after yf.h's. */
/* CDEF BEGIN */

/* ======================================================================
 * Demo coroutine bodies (demo.c, loopdemo.c) for Python, which cannot run
 * inside a coroutine. Each takes one pointer-sized integer argument; the
 * loop bodies return a non-negative result or -errno, and those with
 * several fields take them packed at the shifts below.
 * ====================================================================== */

enum {
    YF_DEMO_FD_BITS = 24,           /* every packed argument: fd in bits 0..23 */
    YF_DEMO_CLIENT_N_SHIFT = 24,    /* client: n in bits 24..47 */
    YF_DEMO_CLIENT_SIZE_SHIFT = 48, /* client: message size in bits 48..63 */
    YF_DEMO_MSG_MAX = 16384,        /* client: largest message size */
    YF_DEMO_WAIT_EVENTS_SHIFT = 24, /* wait: YF_READ|YF_WRITE in bits 24..27 */
    YF_DEMO_WAIT_TIMEOUT_SHIFT = 28,/* wait: timeout_ms + 1 from bit 28 up */
    YF_DEMO_WAIT_EVENTS_BITS = 4    /* wait's result: ns << 4 | events */
};

/* n: yields n times, returns n. */
intptr_t yf_demo_yield_n(void *arg);
/* bytes: touches that many bytes of stack, yields once, returns a checksum
 * of them. */
intptr_t yf_demo_use_stack(void *arg);
/* bytes: allocates a stack array of that many bytes in one frame
 * (overflows the stack when larger than it). */
intptr_t yf_demo_overflow(void *arg);
/* Blocks once; returns the value it was woken with. */
intptr_t yf_demo_block_once(void *arg);
/* mode: sets rounding mode `mode` (0..3, the hardware's encoding: MXCSR RC
 * on x86-64, FPCR RMode on AArch64) through yf_co_fpenv_set, yields, and
 * returns the MXCSR (FPCR) it finds after resuming. */
intptr_t yf_demo_fp_round(void *arg);
/* ms: yf_sleep_ms(ms); returns the ns it measured asleep. */
intptr_t yf_demo_sleep(void *arg);
/* socket fd: echoes until EOF, then shuts its writing side down; returns
 * the bytes echoed. */
intptr_t yf_demo_echo(void *arg);
/* fd | n << 24 | size << 48 (size 1..YF_DEMO_MSG_MAX): sends n messages of
 * size bytes, checks each echo (EBADMSG on a mismatch), shuts down its
 * writing side and checks that EOF follows; returns n. */
intptr_t yf_demo_client(void *arg);
/* fd | events << 24 | (timeout_ms + 1) << 28: yf_wait_fd; returns
 * (ns waited << 4) | the events returned. */
intptr_t yf_demo_wait(void *arg);
/* ms: sleeps ms, then stops its loop; returns 0. */
intptr_t yf_demo_loop_stop(void *arg);

/* ======================================================================
 * Switch and coroutine-life kernels (bench.c, fcontext.c): one call runs
 * n iterations (n comes first) and returns elapsed ns, or -1 with errno.
 * ====================================================================== */

/* The context-switch variants (ctx_x86_64.S has the two the runtime uses,
 * lab/ctx_variants_x86_64.S the others). */
enum {
    YF_CTX_FULL = 0,            /* default: MXCSR always, x87 CW when it differs */
    YF_CTX_FULL_RET = 1,        /* same, ends with ret instead of pop+jmp */
    YF_CTX_FULL_ALWAYS = 2,     /* MXCSR and x87 CW saved and loaded always */
    YF_CTX_MXCSR_CMP = 3,       /* MXCSR also loaded only when it differs */
    YF_CTX_NOFP = 4,            /* general registers only, pop+jmp */
    YF_CTX_NOFP_RET = 5,        /* general registers only, ret */
    YF_CTX_NVARIANTS = 6
};

/* n round trips between two raw contexts with switch variant `variant`;
 * the coroutine side yields from `depth` nested calls (0: from its loop). */
double yf_bench_ctx(int64_t n, int variant, int depth);
/* n resume+yield round trips through the scheduler (flags: YF_SCHED_*),
 * recording them in a trace ring of trace_cap records when trace_cap > 0. */
double yf_bench_switch_yf(int64_t n, unsigned flags, size_t stack_size, size_t trace_cap);
/* n create + 3 x (resume, yield) + exit + reap through the scheduler. */
double yf_bench_create_yf(int64_t n, unsigned flags, size_t stack_size);
/* The same two with glibc ucontext (malloc'ed stacks for create). */
double yf_bench_switch_ucontext(int64_t n, size_t stack_size);
double yf_bench_create_ucontext(int64_t n, size_t stack_size);
/* Boost.Context fcontext, loaded at run time from a shared library path.
 * yf_bench_fcontext_load: 0, or -1 with a message in yf_bench_error(). */
int yf_bench_fcontext_load(const char *path);
double yf_bench_switch_fcontext(int64_t n, size_t stack_size);
double yf_bench_create_fcontext(int64_t n, size_t stack_size);
/* Cost of a stack for one coroutine life: mmap + guard + munmap per stack,
 * the pool, and malloc/free. */
double yf_bench_stack_mmap(int64_t n, size_t stack_size, int guard_regions);
double yf_bench_stack_pool(int64_t n, size_t stack_size);
double yf_bench_stack_malloc(int64_t n, size_t stack_size);
/* n rt_sigprocmask system calls that set the current mask (what
 * swapcontext makes on every switch): ns in all, -1 with errno. */
double yf_bench_sigprocmask(int64_t n);
/* What the FP control state costs a switch: n iterations of 8 back-to-back
 * copies of one instruction (YF_FPI_*; on AArch64 MRS / MSR of FPCR in
 * place of both MXCSR ones, and no x87), each reading or writing the
 * current state again: ns in all, -1 with errno (EINVAL for an instruction
 * this architecture lacks). YF_FPI_NONE times the empty loop. */
enum { YF_FPI_NONE = 0, YF_FPI_STMXCSR = 1, YF_FPI_LDMXCSR = 2, YF_FPI_FNSTCW = 3, YF_FPI_FLDCW = 4, YF_FPI_N = 5 };
double yf_bench_fp_insn(int64_t n, int which);
/* Like-for-like kernels (bench_fair.c): the same stack size, allocator
 * policy per row, stack-top formula and code-placement treatment for every
 * competitor. `placement` (0..YF_BENCH_PLACEMENTS-1) picks one of the copies
 * of the kernel that differ only in where their code lies. */
enum { YF_BENCH_PLACEMENTS = 8 };
enum {
    YF_FAIR_SW_YF, YF_FAIR_SW_YF_FPFAST, YF_FAIR_SW_RAW, YF_FAIR_SW_RAW_FPFAST,
    YF_FAIR_SW_UCONTEXT, YF_FAIR_SW_BOOST, YF_FAIR_NSWITCH
};
enum {
    YF_FAIR_LIFE_YF, YF_FAIR_LIFE_YF_FPFAST, YF_FAIR_LIFE_YF_MALLOC, YF_FAIR_LIFE_UCONTEXT,
    YF_FAIR_LIFE_UCONTEXT_POOL, YF_FAIR_LIFE_BOOST, YF_FAIR_LIFE_BOOST_POOL, YF_FAIR_NCREATE
};
/* ns for n resume+yield round trips of YF_FAIR_SW_* `system` on a warm pooled
 * stack; -1 with EINVAL (bad argument), ENOENT (Boost not loaded), ENOMEM. */
double yf_bench_fair_switch(int system, int placement, int64_t n, size_t stack_size);
/* ns for n lives (create, 3 x resume+yield, exit) of YF_FAIR_LIFE_* `system`;
 * -1 with EINVAL, ENOENT (Boost not loaded), ENOMEM. */
double yf_bench_fair_create(int system, int placement, int64_t n, size_t stack_size);
/* An empty C call, to time the cffi call overhead from Python. */
void yf_bench_nop(void);
const char *yf_bench_error(void);

/* ======================================================================
 * Timer workloads (bench_wheel.c)
 * ====================================================================== */

enum {
    YF_CHURN_WHEEL = 0,         /* kind: the runtime's wheel */
    YF_CHURN_HEAP = 1,          /* kind: a binary heap with indexed cancel */
    YF_CHURN_HORIZON = 10000,   /* deadlines uniform in [now+1, now+HORIZON] */
    YF_CHURN_TICK_STEPS = 64    /* time advances one tick every TICK_STEPS steps */
};

/* The churn benchmark: `pending` timers; each step adds one with a deadline
 * uniform in [now+1, now+YF_CHURN_HORIZON] and cancels one chosen
 * uniformly; every YF_CHURN_TICK_STEPS steps time advances one tick and
 * expired timers are re-armed. kind YF_CHURN_WHEEL: the wheel with levels
 * `bits`; YF_CHURN_HEAP: a binary heap with indexed cancel over yf_timer
 * nodes (bits unused). `warm` steps run first, untimed and uncounted (one
 * horizon, HORIZON * TICK_STEPS steps, reaches the steady state), then
 * `steps`. Returns their elapsed ns (setup excluded) and the number of
 * events (adds + cancels) in *events; -1 with EINVAL, ENOMEM. */
double yf_bench_wheel_churn(int kind, const unsigned *bits, unsigned nlevels, size_t pending,
                            int64_t warm, int64_t steps, uint64_t seed, uint64_t *events);
/* Lateness of the event loop's timers under load: a scheduler and loop run
 * ncos coroutines; each sleeps `sleeps` times for a uniform 1..max_ms ms
 * (yf_sleep_ms), then spins busy_us us of CPU (load that delays the others'
 * wake-ups). Writes (wake time - asked time) in ns, negative when early, to
 * out (at most max) and returns how many; -1 with EINVAL, ENOMEM, or the
 * loop's errno. */
int64_t yf_bench_loop_lateness(unsigned ncos, unsigned sleeps, unsigned max_ms, unsigned busy_us,
                               uint64_t seed, int64_t *out, size_t max);

/* ======================================================================
 * Socket-buffer stream (sbuf_stream.c)
 * ====================================================================== */

/* The message-stream kernel of notebook 06: alternates yf_sbuf_take_msgs and
 * yf_sbuf_recv(fd, recv_max) (fd blocking) until n messages are parsed.
 * Returns elapsed ns; -1 with errno of recv, ECONNRESET at EOF before n
 * messages, EMSGSIZE, EINVAL. */
double yf_bench_sbuf_stream(int64_t n, yf_sbuf *sb, int fd, size_t recv_max, size_t max_len,
                            uint64_t *sum, uint64_t *bytes);

/* CDEF END */

/* For the lab's C files and the C tests (not exported: hidden in every
 * shared object). Every switch variant, indexed by YF_CTX_*; they share the
 * signature of the runtime's switch (see ctx_x86_64.S). */
typedef void *(*yfi_ctx_fn)(void **save, void *load, void *value);
__attribute__((visibility("hidden"))) extern const yfi_ctx_fn yfi_ctx_variants[YF_CTX_NVARIANTS];

/* Boost.Context's C-linkage fcontext API (libboost_context), which the lab
 * loads at run time and calls through pointers of these types. */
typedef void *fctx;
typedef struct {
    fctx ctx;
    void *data;
} ftransfer;
typedef ftransfer (*fctx_jump_fn)(fctx to, void *vp);
typedef fctx (*fctx_make_fn)(void *sp, size_t size, void (*fn)(ftransfer));

/* The Boost.Context entry points yf_bench_fcontext_load found (fcontext.c);
 * -1 before a successful load. */
__attribute__((visibility("hidden"))) int yfi_bench_fcontext_fns(void **jump, void **make);

#endif
