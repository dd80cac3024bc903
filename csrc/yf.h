/* yf.h - the public contract of the yfcore C runtime (also the cffi cdef source). */
#ifndef YF_H
#define YF_H

#include <stddef.h>
#include <stdint.h>

/* Everything between the CDEF markers is fed to cffi's cdef: plain
 * declarations only, no macros with values computed by the preprocessor. */
/* CDEF BEGIN */

/* ======================================================================
 * Scheduler: one per thread; owns coroutines, their stacks and the pool.
 * ====================================================================== */

typedef struct yf_sched yf_sched;
typedef struct yf_co yf_co;

/* A coroutine body; its return value is the coroutine's exit status. */
typedef intptr_t (*yf_co_fn)(void *arg);

enum {
    YF_SCHED_FPFAST = 1,        /* switches skip the FP control state; coroutines
                                   change it only through yf_co_fpenv_set */
    YF_SCHED_GUARD_MPROTECT = 2,/* guard pages by mprotect even where the kernel
                                   has MADV_GUARD_INSTALL guard regions */
    YF_SCHED_NOGUARD = 4        /* no guard page at all (the experiments' control) */
};

enum {
    YF_STACK_MIN = 16384,       /* stack sizes are powers of two in [MIN, MAX] */
    YF_STACK_MAX = 268435456,
    YF_CO_LOCALS = 8,           /* coroutine-local slots per coroutine */
    YF_CO_MAX = 16777215        /* live (unreaped) coroutines per scheduler */
};

/* Coroutine states, as yf_co_state reports them. */
enum {
    YF_NEW = 0,                 /* created, never run (can be cancelled) */
    YF_READY = 1,               /* in the ready queue */
    YF_RUNNING = 2,             /* on the CPU, or suspended inside a resume it made */
    YF_BLOCKED = 3,             /* in yf_co_block, waiting for yf_co_wake */
    YF_DONE = 4                 /* returned or cancelled; status kept until reaped */
};

/* Why a switch happened (trace records). */
enum {
    YF_REASON_RESUME = 1, YF_REASON_YIELD = 2, YF_REASON_BLOCK = 3,
    YF_REASON_EXIT = 4
};

typedef struct yf_counts {
    uint64_t live;              /* created and not yet reaped (zombies included) */
    uint64_t ready;
    uint64_t blocked;
    uint64_t done;              /* finished, waiting to be reaped */
    uint64_t created;           /* since the scheduler was made */
    uint64_t switches;
    uint64_t stacks_pooled;     /* free stacks kept for reuse */
    uint64_t stacks_mapped;     /* stack slots ever carved from arenas */
    uint64_t arenas;
} yf_counts;

typedef struct yf_trace_rec {
    uint64_t t_ns;              /* CLOCK_MONOTONIC */
    uint64_t from_id;           /* 0 is the scheduler's root context */
    uint64_t to_id;
    uint64_t reason;            /* YF_REASON_* */
} yf_trace_rec;

/* An exit callback; caller-owned, linked into the coroutine (intrusive). */
typedef struct yf_exit_hook {
    struct yf_exit_hook *next;
    void (*fn)(yf_co *co, intptr_t status, void *arg);
    void *arg;
} yf_exit_hook;

/* Makes a scheduler whose coroutines get stack_size-byte stacks (a power of
 * two in [YF_STACK_MIN, YF_STACK_MAX], guard page included). EINVAL for a bad
 * size or flags, ENOMEM. Installs the guard-hit reporter and, for the calling
 * thread, an alternate signal stack. */
yf_sched *yf_sched_new(size_t stack_size, unsigned flags);
/* Frees the scheduler, every coroutine (unfinished ones are discarded without
 * running their exit hooks) and every stack mapping. EBUSY when called from
 * inside one of its coroutines. */
int yf_sched_free(yf_sched *s);
/* Resumes ready coroutines in FIFO order until none is ready; returns the
 * number of resumes. EBUSY when called from inside a coroutine. */
int64_t yf_sched_run(yf_sched *s);
/* Fills *out. Never fails. */
void yf_sched_counts(const yf_sched *s, yf_counts *out);
/* Stack size and flags the scheduler was made with. */
size_t yf_sched_stack_size(const yf_sched *s);
unsigned yf_sched_flags(const yf_sched *s);
/* 1 when the scheduler's guards are MADV_GUARD_INSTALL guard regions, 0 when
 * they are mprotect(PROT_NONE) pages. */
int yf_sched_guard_regions(const yf_sched *s);
/* Starts recording switches in a ring of capacity records (0 stops and frees
 * the ring). ENOMEM. */
int yf_sched_trace(yf_sched *s, size_t capacity);
/* Copies up to max records, oldest first, into out; returns how many. The
 * ring keeps the newest capacity records. */
size_t yf_sched_trace_read(const yf_sched *s, yf_trace_rec *out, size_t max);
/* Unmaps the physical pages of pooled (free) stacks; returns bytes released. */
size_t yf_sched_trim(yf_sched *s);

/* ======================================================================
 * Coroutines
 * ====================================================================== */

/* Creates a coroutine in state YF_NEW, queued as ready. Takes a pooled stack
 * when one is free (no system call). EAGAIN past YF_CO_MAX, ENOMEM when no
 * stack can be mapped (vm.max_map_count included). */
yf_co *yf_co_create(yf_sched *s, yf_co_fn fn, void *arg);
/* Switches into co (YF_NEW or YF_READY) until it yields, blocks or ends.
 * Returns 0; EINVAL for a coroutine of another scheduler, EBUSY when co is
 * running, blocked, or done. */
int yf_co_resume(yf_co *co);
/* From inside a coroutine: requeue as ready and switch back to the resumer.
 * EPERM outside a coroutine. */
int yf_co_yield(void);
/* From inside a coroutine: block until yf_co_wake with the current token;
 * returns the value given to wake. Sets errno to EPERM and returns -1 outside
 * a coroutine. */
intptr_t yf_co_block(void);
/* The token the current coroutine's next yf_co_block will carry; 0 outside a
 * coroutine. */
uint64_t yf_co_next_token(void);
/* The token of co's current block, 0 unless co is blocked. */
uint64_t yf_co_token(const yf_co *co);
/* Makes a blocked co ready, passing value to its yf_co_block. ESTALE when co
 * is not blocked or the token is not the one of its current block (a stale or
 * duplicate wake-up). */
int yf_co_wake(yf_co *co, uint64_t token, intptr_t value);
/* Finishes a coroutine that never ran with status `status` (exit hooks run).
 * EBUSY when it has started. */
int yf_co_cancel(yf_co *co, intptr_t status);
/* Releases a finished coroutine, storing its status in *status (may be NULL).
 * EBUSY unless it is done. The handle is invalid afterwards. */
int yf_co_reap(yf_co *co, intptr_t *status);
/* Reap automatically when it finishes (status only seen by exit hooks). */
int yf_co_detach(yf_co *co);
/* Adds an exit hook, run (newest first) in the coroutine's context when it
 * returns, or in the canceller's on cancel. EBUSY when co is done. */
int yf_co_on_exit(yf_co *co, yf_exit_hook *hook);

/* The coroutine with this id, or NULL with ESRCH (never issued, or reaped:
 * ids are never reused). */
yf_co *yf_co_find(const yf_sched *s, uint64_t id);
/* The running coroutine, or NULL in the root context. */
yf_co *yf_co_current(void);
/* The scheduler running on this thread, or NULL. */
yf_sched *yf_sched_current(void);
uint64_t yf_co_id(const yf_co *co);
int yf_co_state(const yf_co *co);
/* Exit status of a done coroutine; EBUSY otherwise. */
int yf_co_status(const yf_co *co, intptr_t *status);
/* Coroutine-local slots; EINVAL for idx >= YF_CO_LOCALS. */
int yf_co_local_set(yf_co *co, unsigned idx, void *value);
void *yf_co_local_get(const yf_co *co, unsigned idx);

/* Stack of a coroutine: usable bytes, and the high-water mark (bytes ever
 * touched, page-granular, counted with mincore from the top down). */
size_t yf_co_stack_size(const yf_co *co);
size_t yf_co_stack_hwm(const yf_co *co);

/* For teaching and debugging: the addresses of co's stack slot: out[0] slot
 * base (= guard page), out[1] end of the guard, out[2] top of the usable
 * stack, out[3] end of the slot. EINVAL once co is done (no stack). */
int yf_co_stack_layout(const yf_co *co, uint64_t out[4]);
/* The 8 words of the frame a suspended (started, not running) coroutine left
 * on its stack (see ctx_x86_64.S) and its saved stack pointer in *sp.
 * EINVAL unless co is suspended with a frame. */
int yf_co_saved_frame(const yf_co *co, uint64_t *sp, uint64_t out[8]);

/* Writes "symbol+0xoff" for a code address into buf (dladdr: exported
 * symbols only); ENOENT when no symbol covers it. */
int yf_addr_name(uint64_t addr, char *buf, size_t len);

/* FP environment under YF_SCHED_FPFAST: the only sanctioned way to change
 * the rounding/exception-mask state (MXCSR and the x87 control word) inside a
 * coroutine; switches to and from it then carry the FP state. The root
 * context may change its own environment freely. Outside the fast mode it
 * simply loads the values. A new coroutine starts with the environment the
 * scheduler was made with (default mode) or the root's current one (FPFAST).
 * EINVAL for reserved MXCSR bits. */
int yf_co_fpenv_set(uint32_t mxcsr, uint16_t x87cw);
void yf_fpenv_get(uint32_t *mxcsr, uint16_t *x87cw);

/* ======================================================================
 * Built-in demo bodies (for Python, which cannot run inside a coroutine)
 * ====================================================================== */

/* arg = (intptr_t)n: yields n times, returns n. */
intptr_t yf_demo_yield_n(void *arg);
/* arg = (intptr_t)bytes: touches that many bytes of stack, yields once,
 * returns a checksum of them. */
intptr_t yf_demo_use_stack(void *arg);
/* arg = (intptr_t)bytes: allocates a stack array of that many bytes in one
 * frame (overflows the stack when larger than it). */
intptr_t yf_demo_overflow(void *arg);
/* Blocks once; returns the value it was woken with. */
intptr_t yf_demo_block_once(void *arg);
/* arg = (intptr_t)mode: sets rounding mode `mode` (0..3) through
 * yf_co_fpenv_set, yields, and returns the MXCSR it finds after resuming. */
intptr_t yf_demo_fp_round(void *arg);

/* ======================================================================
 * Benchmark kernels: one call runs n iterations and returns elapsed ns.
 * ====================================================================== */

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
double yf_bench_ctx(int variant, int64_t n, int depth);
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
/* An empty C call, to time the cffi call overhead from Python. */
void yf_bench_nop(void);
const char *yf_bench_error(void);

/* ======================================================================
 * Build and machine facts
 * ====================================================================== */

/* Compiler flags and arch the runtime was built with. */
const char *yf_build_info(void);
/* 1 when this kernel accepts MADV_GUARD_INSTALL (Linux 6.13+), else 0. */
int yf_guard_regions_supported(void);

/* CDEF END */

#endif
