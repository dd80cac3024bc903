/* co.c - coroutines and the scheduler: create, resume, yield, block/wake,
 * exit, ids, locals, FP environment, trace ring. */
#define _GNU_SOURCE
/* GCC 12's -O2 pairs adjacent stores of two registers into one SSE store
 * (movq, movq, punpcklqdq, movups for two movs: the ready queue's links, the
 * counters): 4 instructions more per round trip and 11 per life here, and a
 * 16-byte store that the next switch reads back as two 8-byte loads. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-tree-slp-vectorize")
#endif
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "yfi.h"

/* Where the time of a switch and of a life goes (callgrind instruction
 * counts at -O2 on x86-64, steady state: the difference of a 200k and a
 * 100k iteration run, so they repeat exactly; wall time on the 2-vCPU VMs
 * this was written on does not).
 *
 * One round trip through the scheduler (resume + yield), before -> after
 * the first fast-path work:  default 143 -> 123, FPFAST 153 -> 115.
 *   yfi_ctx_full  28 + 28  push 6, stmxcsr, fnstcw, 3 movs, ldmxcsr, the x87
 *                          compare, pop 6, jmp (yfi_ctx_nofp: 21 + 21)
 *   yf_co_resume  48 -> 33-37  its checks, unlink from the ready queue, the
 *                          state, resumer/back, cur, n.ready and
 *                          n.switches; it used to push and pop six
 *                          callee-saved registers for its cold paths
 *                          (errno, the alternate stack, the slow switch),
 *                          now out of line (resume_slow, switch_slow)
 *   yf_co_yield   32 -> 25-27  the same on the other side (enqueue at the
 *                          tail, three pushes and pops gone)
 *   the caller's loop  5
 * FPFAST used to take the slow path on every switch (trace, errno and
 * flags tests, both contexts' CO_FPENV) only to find nothing to do; the
 * scheduler's mode (set_mode) now says so once: a scheduled FP-fast switch
 * is the default one with the short swap.
 *
 * One life (create + 3 x (resume, yield) + exit, then reap), before ->
 * after that work: default 768 -> 589, FPFAST 808 -> 561, MALLOC_STACKS
 * 1054 -> 897 (yf_sched_run resumes with resume_go, its checks done once;
 * the pool's get and put inline; the stack colour a shift and a mask, not a
 * 64-bit division).
 *
 * Second round, measured on the like-for-like kernels themselves
 * (lab/bench_fair.c through yf_bench_fair_create/_switch, placement 0,
 * 64 KiB stacks, the runtime and the lab built -O2 -fPIC into one shared
 * object as in the module; the kernel's own loop is included). The program
 * csrc/programs/fair_count.c runs one such kernel for callgrind; built by
 * yfcore.lab.toolchain (with_lab, -fPIC, an executable) it counts 593, 564,
 * 900 and 123, 114 at the start of this round and 524, 498, 870 and 114,
 * 106 at its end (Boost: 611, 300 and 59).  Step by step:
 *                         life: default  FPFAST  MALLOC   round trip: default  FPFAST
 *   start                         599     571     907                 125     117
 *   exit switch saves nothing     590     563     898                 125     117
 *     (yfi_ctx_full_exit/_nofp_exit: a finished coroutine is never resumed,
 *     so push 6, stmxcsr, fnstcw and the stack-pointer store go)
 *   create's steady state         564     537     899
 *     (a reaped structure and a pooled stack at hand: no call, hence no
 *     callee-saved register, the six pushes and pops now in create_slow;
 *     no reset of what a reaped structure keeps: s, hooks, resumer, status)
 *   exit's pool put inline        551     524     898
 *     (retire_stack no longer calls release_stack; co_free's state store,
 *     already YF_DONE, gone)
 *   no SLP store pairing          540     513     889                 121     113
 *     (the pragma at the top of this file)
 *   run loop unlinks the first    536     509     885
 *     (its prev is the sentinel: one load fewer per resume from
 *     yf_sched_run)
 *   generation + 1 as one add     531     504     877
 *   resume tests per context      531     504     877                 117     109
 *     (from the root only the alternate stack, from a coroutine only the
 *     resumer's scheduler: each holds by construction in the other case)
 * Boost.Context fcontext in the same kernels (never measured before):
 * a life 301 instructions with the pooled stacks, 612 with malloc; a round
 * trip 59. Of the pooled life, 194 are its 8 jump_fcontext (24 each: the
 * same work as yfi_ctx_full: 6 registers, stmxcsr, fnstcw, ldmxcsr, fldcw),
 * 11 make_fcontext and about 96 the kernel's loop, f_three and the pool.
 *
 * Where yfcore's default life of 531 goes now: the 7 full switches and the
 * exit switch about 196 (Boost's 8 jumps: 194; this part is the same floor
 * for both), yf_sched_run 106 (4 x 21 per resume: unlink, state, resumer,
 * back, cur, n.switches, the mode, the call; 22 per call: the prologue and
 * epilogue of four callee-saved registers and its two checks), 3 yields 69,
 * create 63, co_main's exit 49, reap 15, yfi_ctx_entry 12, the kernel 23.
 * Against Boost's life: matching the pooled Boost life (301) with equal
 * instructions per cycle needs everything but the switches (335
 * instructions: ids with generations, the ready queue and its counts,
 * states, resumer and back, cur, the token, errno slot, locals and exit
 * hooks, the slot header's owner id (one store, read only from a core
 * dump), the run loop's checks) to fit in the 105 Boost
 * spends on its loop, its frame and its pool alone: out of reach while
 * those guarantees stay. 1.1x Boost with malloc (612) is met in
 * instructions (531 < 612 / 1.1) but not in time: malloc's straight-line
 * code runs at more instructions per cycle than the scheduler's loads and
 * stores. `yfcore bench create` on the shared 2-vCPU VM (quiet spell, 3
 * runs) after this round: yf 13.1-13.4M lives/s, FPFAST 14.1-14.8M, Boost
 * 13.4-13.6M with malloc and 16.9-17.0M pooled: yf / Boost malloc 0.98-0.99
 * (0.90 before), yf / Boost pooled 0.78-0.79 (0.73 before).
 * The scheduled switch's bars (`yfcore bench switch`, same spell): default
 * 7.1-7.2 ns one way against Boost's 6.7-6.8 (1.06x; 1.08-1.11x before),
 * FPFAST 4.8 ns (0.68-0.69x; 0.72-0.75x before), the bare FP-fast switch
 * 2.8-2.9 ns (0.42x). FPFAST at 0.6x leaves the scheduler about 1.2 ns one
 * way where it takes 1.9: at its present pace, 17 of its 27 instructions
 * per one-way switch, while the stores alone are 8 per side (state, cur,
 * resumer and back or the queue's links, n.ready, n.switches). The default
 * switch's floor is Boost's own (yfi_ctx_full alone times as jump_fcontext
 * does, 0.94-0.95x), so 1.0x needs the bookkeeping to hide entirely behind
 * the FP control instructions' latency. Neither is reached without giving
 * up a piece of that bookkeeping (per-switch counters, the doubly linked
 * queue), which this round did not do.
 * Third round. What bounds the switch here is not one chain of dependent
 * loads: taking the resumer's load off yield's chain (below) alone bought
 * nothing in wall time. Removing pieces of the bookkeeping one at a time
 * (an experiment, never committed) moved the FP-fast switch by a cycle or
 * less each and by 0.8 ns one way all together: what costs is the sum of
 * the work, the instructions and above all the stores, around a switch
 * whose own floor is low. Steps (fair_count's counts; one-way ns, best
 * placement, in-process, in one quiet spell, Boost 6.63 throughout):
 *                         life: default  FPFAST  MALLOC   round trip: default  FPFAST   ns: default  FPFAST
 *   start                         525     498     871                 114     107          6.94    4.47
 *   C: the resumer's context kept in the resumed coroutine (`ret`: resume
 *     saves there, yield, block and exit load from there, so no `resumer`
 *     field and no resumer->sp load); ready and switch counts derived in
 *     yf_sched_counts instead of four read-modify-writes per round trip;
 *     cur and the alternate-stack flag in one thread-local block (one GOT
 *     load); resume's checks without a taken branch; yfi_ctx_nofp without
 *     the x87 compare's frame copy
 *                                 503     469     850                 108      98          6.94    4.16
 *   x86-64: resume and yield fused with the swap in ctx_x86_64.S
 *     (yfi_build.h: no tail jump, the coroutine's cells addressed from one
 *     register, co.c's functions the fallback for every other case)
 *                                 500     460     846                 104      89          6.79    3.85
 * So yf / Boost is 1.024 in the default mode and 0.58 in the FP-fast one.
 * The default switch's remaining gap: the bare swap runs 6.17 ns, 0.93 of
 * Boost's (yfi_ctx_full skips fldcw when the control words agree), and the
 * bookkeeping (resume 19 instructions, 6 of them stores; yield 14, 6
 * stores) adds 0.6 ns; to reach Boost it may add 0.46. Tried and not kept:
 * MXCSR compared before loading it (slower, as the ablation in notebook 01
 * finds for the bare switch), the FP control state read and loaded before
 * the bookkeeping (no change), a per-mode copy of the bookkeeping with one
 * test each (the FP-fast switch 0.15 ns slower), a function pointer per
 * mode instead of the two tests (no change), 64-byte alignment of resume,
 * yield and the swaps (FP-fast 0.15 ns faster, default 0.15 ns slower).
 * The bench kernels call yfcore through the GOT (bench_fair.c's
 * YF_BENCH_CALL), as they call Boost through pointers; through the PLT
 * they measured the same here.
 * Fourth round: the FP control state. Timed alone in a loop (a throwaway C
 * harness on the same machine), stmxcsr costs 4.8-5.0 ns each, and 16
 * independent loads, 16 stores or a chain of dependent loads beside it
 * cost nothing more; ldmxcsr 0.3-0.6 ns, fnstcw and fldcw 0.3-0.5 ns. So
 * what the default mode pays over the FP-fast one is reading MXCSR, and a
 * switch that knows the state it would read need not read it. Steps (same
 * units; ns as min over 5 processes in quiet spells, Boost's life 69.8 ns
 * with malloc and 58.3 pooled, its switch 6.63):
 *                         life: default  FPFAST  MALLOC   round trip: default  FPFAST   ns: default  FPFAST  life: default  FPFAST
 *   start                         500     460     846                 104      89          6.79    3.85          67-70   60-62
 *   a fresh frame writes only the slots its first switch reads (co.c's
 *     yfi_ctx_make: r12-r15 and rbp are zeroed by yfi_ctx_entry instead);
 *     the queue keeps running coroutines (requeue: 8 loads and stores per
 *     round trip gone); the x87 CW compared from a register; yield's mode
 *     tests on the flags of one compare
 *                                 468     434     812                  90      78          6.48-6.60  3.55   63.5-66 52
 *   run loops save the root's FP state once per run, not once per resume
 *     (root_fpword, yfi_ctx_full_known): 3 of a life's 7 stmxcsr gone
 *                                 481     441     825                  90      77                            64.5-66 53
 *   (minima over processes do not separate the last two steps; one process
 *   running both builds interleaved does: the default life 0.91-0.975x the
 *   step before in medians over 15 rounds, FP-fast 1.00-1.02x.)
 * Fifth round: the run loops' FP control state (struct run_fp, which
 * replaced root_fpword; yfi_run_known replaced yfi_ctx_full_known). Where a
 * stmxcsr sits matters more than how many there are. The fourth round's
 * read at the start of a run, right after the create's stores, cost about
 * 6% of a life alone (a build without it, for the experiment only, beside
 * the one with it in one process: 0.94x); the same read inside the first
 * resume's swap, after its pushes, costs little. And taking the three
 * yields' reads out alone bought nothing (they are cheap there), until the
 * run-start read went too. The exit's compare of the x87 CW, which needs
 * the current one read first (fnstcw, then a load and a branch on it),
 * cost 3-4% of a life against loading the root's always; yfi_ctx_full
 * keeps its compare, where an unconditional fldcw measured 2-3% slower per
 * switch. Counts as above; wall time as medians of the ratio to the
 * fourth round's build over 31 interleaved rounds in one process, in
 * noisy spells:
 *                         life: default  FPFAST  MALLOC   round trip: default  FPFAST   life vs before: default  FPFAST
 *   fourth round's end            477     439     823                  90      77
 *   a yield to the loop saves and loads no FP state, nor does the next
 *     resume of the same coroutine; the root's state read in the first
 *     resume's swap, not before it; the exit loads the x87 CW always; an
 *     FP-fast scheduler's loop the plain one
 *                                 485     440     830                  91      78                0.94-0.96   1.00-1.02 */

#ifdef YFI_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#ifdef YFI_TSAN
#include <sanitizer/tsan_interface.h>
#endif

/* struct yfi_frame mirrors the slot table at the top of ctx_<arch>.S. */
#define AT(f, off) (offsetof(struct yfi_frame, f) == (off))
#if defined(__x86_64__)
_Static_assert(AT(mxcsr, 0) && AT(x87cw, 4) && AT(r12, 8) && AT(r13, 16) && AT(r14, 24) && AT(r15, 32) &&
                   AT(rbx, 40) && AT(rbp, 48) && AT(rip, 56) && sizeof(struct yfi_frame) == 64,
               "struct yfi_frame differs from the frame table in ctx_x86_64.S");
#elif defined(__aarch64__)
_Static_assert(AT(fpcr, 0) && AT(x19, 16) && AT(x21, 32) && AT(x23, 48) && AT(x25, 64) && AT(x27, 80) &&
                   AT(x29, 96) && AT(x30, 104) && AT(d8, 112) && AT(d10, 128) && AT(d12, 144) &&
                   AT(d14, 160) && AT(d15, 168) && sizeof(struct yfi_frame) == 176,
               "struct yfi_frame differs from the frame table in ctx_aarch64.S");
#endif
#undef AT

#define FRAME_SLOT(f) {#f, offsetof(struct yfi_frame, f), sizeof(((struct yfi_frame *)0)->f)}
static const yf_frame_slot frame_slots[] = {
#if defined(__x86_64__)
    FRAME_SLOT(mxcsr), FRAME_SLOT(x87cw), FRAME_SLOT(r12), FRAME_SLOT(r13), FRAME_SLOT(r14),
    FRAME_SLOT(r15), FRAME_SLOT(rbx), FRAME_SLOT(rbp), FRAME_SLOT(rip), {NULL, 0, 0},
#else
    FRAME_SLOT(fpcr), FRAME_SLOT(x19), FRAME_SLOT(x20), FRAME_SLOT(x21), FRAME_SLOT(x22),
    FRAME_SLOT(x23), FRAME_SLOT(x24), FRAME_SLOT(x25), FRAME_SLOT(x26), FRAME_SLOT(x27),
    FRAME_SLOT(x28), FRAME_SLOT(x29), FRAME_SLOT(x30), FRAME_SLOT(d8), FRAME_SLOT(d9),
    FRAME_SLOT(d10), FRAME_SLOT(d11), FRAME_SLOT(d12), FRAME_SLOT(d13), FRAME_SLOT(d14),
    FRAME_SLOT(d15), {NULL, 0, 0},
#endif
};

const yf_frame_slot *yf_frame_slots(void)
{
    return frame_slots;
}

void yfi_assert_fail(const char *e, const char *file, int line)
{
    fprintf(stderr, "yfcore: assertion failed: %s (%s:%d)\n", e, file, line);
    abort();
}

void *yfi_ctx_make(void *top, void (*entry)(void *), uint32_t mxcsr, uint16_t x87cw)
{
    uintptr_t t = (uintptr_t)top & ~(uintptr_t)15;
    struct yfi_frame *f = (struct yfi_frame *)(t - sizeof *f);
#if defined(__x86_64__)
    /* After the switch pops the 64-byte frame, %rsp = frame + 64 must be a
     * multiple of 16 so that yfi_ctx_entry's `call` leaves the entry function
     * with the psABI's (%rsp + 8) % 16 == 0.
     * Only the slots the first switch uses are written: the FP control
     * state, the entry function and the trampoline. r12-r15 and rbp keep
     * what the stack held (yfi_ctx_entry zeroes the registers before its
     * call). Measured (AMD EPYC, KVM, one quiet spell): the pooled FP-fast
     * life 59-60 ns with a zero store per slot (memset's four 16-byte
     * stores did the same), 53-55 ns without them; why, this VM's lack of
     * hardware counters leaves unmeasured. */
    f->mxcsr = mxcsr;
    f->x87cw = x87cw;
    f->rbx = (uint64_t)(uintptr_t)entry;
    f->rip = (uint64_t)(uintptr_t)yfi_ctx_entry;
#else
    memset(f, 0, sizeof *f);
    /* AAPCS64 wants sp 16-byte aligned at every instruction that uses it, so
     * the frame's 176 bytes end exactly at the aligned top; x29 stays 0 to
     * end frame-pointer chains at the entry function. */
    (void)x87cw;
    f->fpcr = mxcsr;
    f->x19 = (uint64_t)(uintptr_t)entry;
    f->x30 = (uint64_t)(uintptr_t)yfi_ctx_entry;
#endif
    return f;
}

/* ---- structures ------------------------------------------------------------ */

#define CO_FPENV 1u            /* set its own FP environment (FPFAST mode) */
#define CO_DETACHED 2u
#define CO_LOCALS 4u           /* a local slot was set: the next life clears them */


/* Ids are (generation << IDX_BITS) | index. An index is reused only with a
 * new generation, so a reaped coroutine's id never finds its successor. */
#define IDX_BITS 24
#define IDX_MASK ((1ull << IDX_BITS) - 1)
#define CHUNK_BITS 10
#define CHUNK ((size_t)1 << CHUNK_BITS)

struct yf_co {
    /* Hot: what resume and yield touch, in the first cache line. */
    void *sp;                   /* its own context while switched out */
    void *ret;                  /* its resumer's context while it runs (see SWITCH) */
    yf_sched *s;
    struct yf_co *back;         /* its resumer and `yfi_thr.cur` to restore on switching
                                   back: NULL for the root (resumer_of) */
    struct yf_co *next, *prev;  /* ready queue */
    int state;
    unsigned flags;
    uint64_t id;
    /* Cold. */
    yf_co_fn fn;
    void *arg;
    void *slot;
    intptr_t status;           /* exit status, or the wake value while blocked */
    uint64_t token;            /* number of the current/last block */
    yf_exit_hook *hooks;
    uint32_t mxcsr;
    uint16_t x87cw;
    int err;                   /* its errno while switched out (KEEP_ERRNO) */
    void *locals[YF_CO_LOCALS];
#ifdef YFI_FIBERS
    /* The root's stack as ASan reported it when the root last switched out
     * (a coroutine's comes from its slot); each coroutine's TSan fiber. */
    const void *san_lo;
    size_t san_size;
    void *tsan_fiber;
#endif
};

struct yf_sched {
    /* Hot, at offsets of their own (ctx_x86_64.S's fast paths use them). */
    /* Which switch the hot path makes (MODE_*, set_mode): one load and at
     * most two well-predicted branches decide it. */
    unsigned mode;
    unsigned flags;
    /* Resumes made (yf_sched_run's included). The ready and switch counts
     * are not kept: the hot path would pay four read-modify-writes per round
     * trip for them, and yf_sched_counts derives both (sched_running). */
    uint64_t resumes;
    struct yf_co ready;         /* sentinel of the circular ready queue */
    /* Cold. */
    struct yf_co root;          /* the context that called resume from outside */
    int fpenv_used;             /* FPFAST: some coroutine set its own FP environment */
    struct yfi_pool pool;
    struct yf_co **chunks;      /* id index -> coroutine */
    size_t nchunks;
    uint64_t next_idx;          /* first never-used index */
    struct yf_co *free_co;      /* reaped structures, linked by next */
    yf_counts n;
    uint32_t mxcsr;             /* FP environment new coroutines start with */
    uint16_t x87cw;
    void *dead_stack;           /* MALLOC_STACKS: the last finished coroutine's */
    yf_trace_rec *trace;
    size_t trace_cap;
    uint64_t trace_len;
};

/* The offsets yfi_build.h gives ctx_x86_64.S's fast paths. */
#define AT(t, f, off) (offsetof(t, f) == (off))
_Static_assert(AT(struct yf_co, sp, YFI_CO_SP) && AT(struct yf_co, ret, YFI_CO_RET) &&
                   AT(struct yf_co, s, YFI_CO_S) && AT(struct yf_co, back, YFI_CO_BACK) &&
                   AT(struct yf_co, next, YFI_CO_NEXT) && AT(struct yf_co, prev, YFI_CO_PREV) &&
                   AT(struct yf_co, state, YFI_CO_STATE) && sizeof(((struct yf_co *)0)->state) == 4,
               "struct yf_co differs from yfi_build.h");
_Static_assert(AT(yf_sched, mode, YFI_S_MODE) && sizeof(((yf_sched *)0)->mode) == 4 &&
                   AT(yf_sched, resumes, YFI_S_RESUMES) && AT(yf_sched, ready, YFI_S_READY),
               "struct yf_sched differs from yfi_build.h");
_Static_assert(AT(struct yfi_thread, cur, YFI_THR_CUR) && AT(struct yfi_thread, altstack_ready, YFI_THR_ALTSTACK) &&
                   sizeof(yfi_thr.altstack_ready) == 4 && AT(struct yfi_thread, in_run, YFI_THR_IN_RUN) &&
                   sizeof(yfi_thr.in_run) == 4,
               "struct yfi_thread differs from yfi_build.h");
_Static_assert(YF_READY == 1 && YF_RUNNING == 2, "ctx_x86_64.S's fast paths store and test these states");
#undef AT

/* co.c's resume and yield are the public ones, or the whole functions that
 * x86-64's fused fast paths (yfi_build.h) fall back to. */
#ifdef YFI_FAST_ASM
#define RESUME_FN yfi_co_resume_c
#define YIELD_FN yfi_co_yield_c
YFI_FUNC int yfi_co_resume_c(yf_co *co);
YFI_FUNC int yfi_co_yield_c(void);
#else
#define RESUME_FN yf_co_resume
#define YIELD_FN yf_co_yield
#endif

/* Where a switch saves the context it leaves and finds the one it enters.
 * A coroutine keeps both ends of its resumes: resume saves the resumer's
 * context in the resumed coroutine's `ret` and enters its `sp`; yield,
 * block and exit save into its own `sp` and enter `ret`. The resumer's own
 * `sp` is then never used while it waits (it is RUNNING, so nothing else
 * can switch to it). Yield thus reaches its target in two dependent loads
 * (cur, then cur->ret) where it took three (cur, cur->resumer,
 * resumer->sp); see the profile at the top of this file. */
#define SWITCH_SAVE(co, reason) ((reason) == YF_REASON_RESUME ? &(co)->ret : &(co)->sp)
#define SWITCH_LOAD(co, reason) ((reason) == YF_REASON_RESUME ? (co)->sp : (co)->ret)

/* The context a running coroutine goes back to on yield, block or exit. */
static inline struct yf_co *resumer_of(struct yf_co *co)
{
    return co->back ? co->back : &co->s->root;
}

/* The two ends of the switch that `co` makes for `reason`: into co for a
 * resume, out of it otherwise. Only the slow path and the sanitizer builds
 * need them; the fast path names nothing but co. */
static inline void switch_ends(struct yf_co *co, int reason, struct yf_co **from, struct yf_co **to)
{
    struct yf_co *other = resumer_of(co);
    *from = reason == YF_REASON_RESUME ? other : co;
    *to = reason == YF_REASON_RESUME ? co : other;
}

/* ---- ready queue ----------------------------------------------------------- */

/* The queue holds every new, ready and running coroutine: a resume leaves
 * the coroutine where it was, and its yield moves it to the tail unless it
 * is there already, its block and its exit take it out. So a coroutine that
 * runs alone (a ping-pong, or one life at a time) touches the queue only in
 * yield's test; before, resume unlinked it and yield linked it back, eight
 * loads and stores per round trip. The order is the same: FIFO, re-entered
 * only at the tail. From the root nothing of a scheduler is running, so
 * there every queued coroutine may be resumed. */

static inline void enqueue(yf_sched *s, struct yf_co *co)
{
    struct yf_co *last = s->ready.prev;
    co->next = &s->ready;
    co->prev = last;
    last->next = co;
    s->ready.prev = co;
}

static inline void unlink_ready(yf_sched *s, struct yf_co *co)
{
    co->prev->next = co->next;
    co->next->prev = co->prev;
}

/* Yield's part: the running coroutine co to the tail of the queue. */
static inline void requeue(yf_sched *s, struct yf_co *co)
{
    if (YF_LIKELY(s->ready.prev == co))
        return;
    unlink_ready(s, co);
    enqueue(s, co);
}

/* ---- switch modes ---------------------------------------------------------- */

/* MODE_FULL: the default register swap and nothing else (yfi_ctx_full).
 * MODE_NOFP: FPFAST while no coroutine has its own FP environment: the swap
 * without the FP control state (yfi_ctx_nofp) and nothing else; every
 * context then runs in the ambient environment, so there is nothing to hand
 * over (fpenv_handoff would do nothing for such a pair). The FP-fast mode
 * used to take the slow path on every switch to find that out (four loads
 * and three tests more than the default mode, on the switch's dependency
 * chain). MODE_SLOW: tracing, errno hand-over, an FPFAST coroutine with its
 * own environment, or a debug build's FPFAST contract check. */
enum { MODE_FULL = 0, MODE_NOFP = 1, MODE_SLOW = 2 };
_Static_assert(MODE_FULL == 0 && MODE_NOFP == 1, "ctx_x86_64.S's fast paths test these modes (yfi_build.h)");

static void set_mode(yf_sched *s)
{
    int fpfast = (s->flags & YF_SCHED_FPFAST) != 0;
    int slow = s->trace != NULL || (s->flags & YF_SCHED_KEEP_ERRNO) || (fpfast && s->fpenv_used);
#ifdef YF_DEBUG
    slow |= fpfast;
#endif
    s->mode = slow ? MODE_SLOW : fpfast ? MODE_NOFP : MODE_FULL;
}

/* ---- trace ----------------------------------------------------------------- */

static __attribute__((noinline, cold)) void trace_switch(yf_sched *s, struct yf_co *from,
                                                          struct yf_co *to, int reason)
{
    yf_trace_rec *r = &s->trace[s->trace_len++ % s->trace_cap];
    r->t_ns = yfi_now_ns();
    r->from_id = from->id;
    r->to_id = to->id;
    r->reason = (uint64_t)reason;
}

int yf_sched_trace(yf_sched *s, size_t capacity)
{
    yf_trace_rec *t = NULL;
    if (capacity) {
        t = calloc(capacity, sizeof *t);
        if (!t) {
            errno = ENOMEM;
            return -1;
        }
    }
    free(s->trace);
    s->trace = t;
    s->trace_cap = capacity;
    s->trace_len = 0;
    set_mode(s);
    return 0;
}

size_t yf_sched_trace_read(const yf_sched *s, yf_trace_rec *out, size_t max)
{
    if (!s->trace)
        return 0;
    uint64_t have = s->trace_len < s->trace_cap ? s->trace_len : s->trace_cap;
    uint64_t first = s->trace_len - have;
    size_t n = have < max ? (size_t)have : max;
    for (size_t i = 0; i < n; i++)
        out[i] = s->trace[(first + i) % s->trace_cap];
    return n;
}

/* ---- the switch ------------------------------------------------------------ */

static __attribute__((noinline)) void fpenv_handoff(yf_sched *s, struct yf_co *from, struct yf_co *to)
{
    /* A context without its own environment runs in the ambient one, the
     * root's. The root may have changed it since the scheduler was made (it
     * is an ordinary caller of resume, and the psABI makes the control bits
     * callee-saved), so the ambient environment is saved here, not assumed:
     * restoring the one from yf_sched_new clobbered the root's. */
    if (from->flags & CO_FPENV)
        yfi_fpenv_read(&from->mxcsr, &from->x87cw);
    else
        yfi_fpenv_read(&s->mxcsr, &s->x87cw);
    if (to->flags & CO_FPENV)
        yfi_fpenv_write(to->mxcsr, to->x87cw);
    else
        yfi_fpenv_write(s->mxcsr, s->x87cw);
}

#ifdef YF_DEBUG
/* The FPFAST contract: a coroutine changes the FP environment only through
 * yf_co_fpenv_set. Debug builds check it on every switch out. */
static void fpenv_check(yf_sched *s, struct yf_co *from)
{
    uint32_t m;
    uint16_t c;
    yfi_fpenv_read(&m, &c);
    /* The contract binds coroutines, not the root: whatever the root set is
     * the ambient environment the coroutines without their own then run in. */
    if (from == &s->root) {
        s->mxcsr = m;
        s->x87cw = c;
        return;
    }
    uint32_t want_m = (from->flags & CO_FPENV) ? from->mxcsr : s->mxcsr;
    uint16_t want_c = (from->flags & CO_FPENV) ? from->x87cw : s->x87cw;
    /* Sticky exception flags are status, not control state. */
    if ((m & ~YFI_FPENV_STATUS) != (want_m & ~YFI_FPENV_STATUS) || c != want_c) {
        fprintf(stderr,
                "yfcore: coroutine %llu changed the FP environment without yf_co_fpenv_set "
                "(" YFI_FPENV_FMT "; expected 0x%x, 0x%x)\n",
                (unsigned long long)from->id, m, c, want_m, want_c);
        abort();
    }
}
#endif

#ifdef YFI_FIBERS
/* Sanitizer builds: announce every switch, as a fiber switch, to ASan (so it
 * moves its notion of the current stack and keeps one fake stack per
 * coroutine) and to TSan (one fiber per coroutine, switches ordered). The
 * switch is then an ordinary call, since the announcement must be finished
 * on the far side; the normal build keeps its tail call (see below). */

/* The context the last switch on this thread left. */
static __thread struct yf_co *san_from;

static void san_bounds(yf_sched *s, const struct yf_co *co, const void **lo, size_t *size)
{
    if (co == &s->root) {
        *lo = co->san_lo;
        *size = co->san_size;
    } else {
        *lo = (char *)co->slot + s->pool.page;
        *size = s->pool.size - s->pool.page;
    }
}

/* First thing on arriving in a context, by a return from san_switch or at a
 * coroutine's first entry (fake = NULL: no fake stack yet). */
static void san_arrive(void *fake)
{
    struct yf_co *from = san_from;
    yf_sched *s = from->s;
#ifdef YFI_ASAN
    const void *lo;
    size_t size;
    __sanitizer_finish_switch_fiber(fake, &lo, &size);
    /* The root's stack is the thread's: learnt here, the first time any
     * switch leaves it, so it is known before anything switches back. */
    if (from == &s->root) {
        from->san_lo = lo;
        from->san_size = size;
    }
#else
    (void)fake;
    (void)s;
#endif
#ifdef YFI_TSAN
    /* A finished coroutine's fiber can go once nothing runs on it. */
    if (from != &s->root && from->state == YF_DONE && from->tsan_fiber) {
        __tsan_destroy_fiber(from->tsan_fiber);
        from->tsan_fiber = NULL;
    }
#endif
}

static __attribute__((noinline)) int san_switch(int (*sw)(void **, void *, void *), yf_sched *s,
                                                struct yf_co *co, int reason)
{
    void *fake = NULL;
    struct yf_co *from, *to;
    switch_ends(co, reason, &from, &to);
    san_from = from;
#ifdef YFI_ASAN
    const void *lo;
    size_t size;
    san_bounds(s, to, &lo, &size);
    /* A finished coroutine never comes back: NULL lets ASan free its fake stack. */
    __sanitizer_start_switch_fiber(reason == YF_REASON_EXIT ? NULL : &fake, lo, size);
#else
    (void)reason;
#endif
#ifdef YFI_TSAN
    if (from == &s->root)
        from->tsan_fiber = __tsan_get_current_fiber();
    __tsan_switch_to_fiber(to->tsan_fiber, 0);
#endif
    sw(SWITCH_SAVE(co, reason), SWITCH_LOAD(co, reason), NULL);
    san_arrive(fake);
    return 0;
}

static void san_fiber_new(yf_sched *s, struct yf_co *co)
{
#ifdef YFI_ASAN
    /* A pooled stack still carries the shadow of the frames its last
     * coroutine left when it switched out for good (co_main, the switch):
     * a fresh coroutine has no frames, so none of it is poisoned. */
    const void *lo;
    size_t size;
    san_bounds(s, co, &lo, &size);
    ASAN_UNPOISON_MEMORY_REGION(lo, size);
#else
    (void)s;
#endif
#ifdef YFI_TSAN
    co->tsan_fiber = __tsan_create_fiber(0);
#else
    (void)co;
#endif
}

/* A coroutine that will never run again (cancelled, or freed with its
 * scheduler while blocked or new) gives its fiber back. */
static void san_fiber_end(struct yf_co *co)
{
#ifdef YFI_TSAN
    if (co->tsan_fiber) {
        __tsan_destroy_fiber(co->tsan_fiber);
        co->tsan_fiber = NULL;
    }
#else
    (void)co;
#endif
}

#define SWITCH(sw, s, co, reason) san_switch(sw, s, co, reason)
#else
#define SWITCH(sw, s, co, reason) sw(SWITCH_SAVE(co, reason), SWITCH_LOAD(co, reason), NULL)
#endif

/* The slow path of a switch: what tracing, errno hand-over and coroutines
 * with their own FP environment add. Out of line, so that resume and yield
 * need no callee-saved registers of their own (they used to push and pop
 * six and three around the switch, which pushes them again) and reach the
 * swap with a tail call; it ends in the same tail call. */
static __attribute__((noinline, cold)) int switch_slow(yf_sched *s, struct yf_co *co, int reason)
{
    struct yf_co *from, *to;
    switch_ends(co, reason, &from, &to);
    if (s->trace)
        trace_switch(s, from, to, reason);
    /* errno lives in thread-local storage, so the context switch leaves
     * it alone: hand the thread's errno over here, before the tail call,
     * and `to` resumes seeing its own. */
    if (s->flags & YF_SCHED_KEEP_ERRNO) {
        from->err = errno;
        errno = to->err;
    }
    if (s->flags & YF_SCHED_FPFAST) {
#ifdef YF_DEBUG
        fpenv_check(s, from);
#endif
        if ((from->flags | to->flags) & CO_FPENV)
            fpenv_handoff(s, from, to);
        return SWITCH(yfi_ctx_nofp_int, s, co, reason);
    }
    return SWITCH(yfi_ctx_full_int, s, co, reason);
}

/* Bookkeeping, then the register swap as a tail call: the swap's final jump
 * then lands straight in the caller of yf_co_resume/yf_co_yield. Had the
 * swap been an ordinary call, the `ret` out of resume or yield right after it
 * would pop a return address pushed in the other context and mispredict on
 * every switch (measured: 12 ns instead of 5 ns one way). The transfer value
 * is always 0, which resume and yield return. */
static inline int switch_to(yf_sched *s, struct yf_co *co, int reason)
{
    unsigned mode = s->mode;
    if (YF_LIKELY(mode == MODE_FULL))
        return SWITCH(yfi_ctx_full_int, s, co, reason);
    if (YF_LIKELY(mode == MODE_NOFP))
        return SWITCH(yfi_ctx_nofp_int, s, co, reason);
    return switch_slow(s, co, reason);
}

/* The last switch of a coroutine, to its resumer: in the two fast modes the
 * exiting context is not saved (push 6, stmxcsr, fnstcw and the store of
 * its stack pointer are gone); the slow mode and the sanitizer builds,
 * which announce every switch, take the ordinary one. */
static inline __attribute__((noreturn)) void switch_exit(yf_sched *s, struct yf_co *co)
{
#ifndef YFI_FIBERS
    unsigned mode = s->mode;
    if (YF_LIKELY(mode == MODE_FULL))
        yfi_ctx_full_exit(NULL, co->ret, NULL);
    if (YF_LIKELY(mode == MODE_NOFP))
        yfi_ctx_nofp_exit(NULL, co->ret, NULL);
    switch_slow(s, co, YF_REASON_EXIT);
#else
    switch_to(s, co, YF_REASON_EXIT);
#endif
    /* A finished context is never resumed. */
    YF_ASSERT(0);
    __builtin_unreachable();
}

static inline int resume_go(yf_sched *s, struct yf_co *co, struct yf_co *back);

/* What every resume records before its switch: co runs (it stays in the
 * ready queue: see requeue), for `back`. */
static inline void resume_mark(yf_sched *s, struct yf_co *co, struct yf_co *back)
{
    co->state = YF_RUNNING;
    co->back = back;
    yfi_thr.cur = co;
    s->resumes++;
}

/* ---- ids ------------------------------------------------------------------- */

/* A reaped structure, off the free list: its index comes back with the next
 * generation. */
static inline struct yf_co *co_reuse(yf_sched *s, struct yf_co *co)
{
    s->free_co = co->next;
    /* generation + 1, the index kept: one add (the shift-and-mask form was
     * five instructions); after 2^40 generations it wraps, as it did. */
    co->id += 1ull << IDX_BITS;
    return co;
}

static struct yf_co *co_alloc(yf_sched *s)
{
    struct yf_co *co = s->free_co;
    if (YF_LIKELY(co != NULL))
        return co_reuse(s, co);
    uint64_t idx = s->next_idx;
    if (idx > YF_CO_MAX) {
        errno = EAGAIN;
        return NULL;
    }
    size_t c = (size_t)(idx >> CHUNK_BITS);
    if (c >= s->nchunks) {
        size_t n = s->nchunks ? 2 * s->nchunks : 16;
        struct yf_co **ch = realloc(s->chunks, n * sizeof *ch);
        if (!ch) {
            errno = ENOMEM;
            return NULL;
        }
        memset(ch + s->nchunks, 0, (n - s->nchunks) * sizeof *ch);
        s->chunks = ch;
        s->nchunks = n;
    }
    if (!s->chunks[c]) {
        s->chunks[c] = calloc(CHUNK, sizeof(struct yf_co));
        if (!s->chunks[c]) {
            errno = ENOMEM;
            return NULL;
        }
    }
    co = &s->chunks[c][idx & (CHUNK - 1)];
    co->id = idx;
    /* A structure stays in its scheduler's chunks for good: set once. */
    co->s = s;
    s->next_idx = idx + 1;
    return co;
}

yf_co *yf_co_find(const yf_sched *s, uint64_t id)
{
    uint64_t idx = id & IDX_MASK;
    if (idx == 0 || idx >= s->next_idx) {
        errno = ESRCH;
        return NULL;
    }
    struct yf_co *co = &s->chunks[idx >> CHUNK_BITS][idx & (CHUNK - 1)];
    /* A reaped coroutine sits in the free list with its old id until reuse;
     * its fn is cleared, which is what marks it as gone. */
    if (co->id != id || co->fn == NULL) {
        errno = ESRCH;
        return NULL;
    }
    return co;
}

/* ---- scheduler --------------------------------------------------------------- */

yf_sched *yf_sched_new(size_t stack_size, unsigned flags)
{
    if (stack_size < YF_STACK_MIN || stack_size > YF_STACK_MAX || (stack_size & (stack_size - 1)) ||
        (flags & ~(unsigned)(YF_SCHED_FPFAST | YF_SCHED_GUARD_MPROTECT | YF_SCHED_NOGUARD |
                            YF_SCHED_KEEP_ERRNO | YF_SCHED_MALLOC_STACKS)) ||
        ((flags & YF_SCHED_GUARD_MPROTECT) && (flags & YF_SCHED_NOGUARD)))
        return yfi_fail_null(EINVAL);
    yf_sched *s = calloc(1, sizeof *s);
    if (!s)
        return yfi_fail_null(ENOMEM);
    int guard = YFI_GUARD_MPROTECT;
    if (flags & (YF_SCHED_NOGUARD | YF_SCHED_MALLOC_STACKS))
        guard = YFI_GUARD_NONE;
    else if (!(flags & YF_SCHED_GUARD_MPROTECT) && yf_guard_regions_supported())
        guard = YFI_GUARD_REGIONS;
    yfi_pool_init(&s->pool, stack_size, guard);
    s->flags = flags;
    set_mode(s);
    s->root.s = s;
    s->root.id = 0;
    s->root.state = YF_RUNNING;
    s->ready.next = s->ready.prev = &s->ready;
    s->next_idx = 1;
    yfi_fpenv_read(&s->mxcsr, &s->x87cw);
    if (yfi_guard_reporter_install() != 0) {
        int e = errno;
        free(s);
        errno = e;
        return NULL;
    }
    return s;
}

int yf_sched_free(yf_sched *s)
{
    if (yfi_thr.cur != NULL) {
        errno = EBUSY;
        return -1;
    }
#ifdef YFI_FIBERS
    for (uint64_t i = 1; i < s->next_idx; i++)
        san_fiber_end(&s->chunks[i >> CHUNK_BITS][i & (CHUNK - 1)]);
#endif
    for (size_t c = 0; c < s->nchunks; c++) {
        /* Pooled stacks go with the pool; malloc'ed ones one by one. */
        for (size_t i = 0; s->chunks[c] && (s->flags & YF_SCHED_MALLOC_STACKS) && i < CHUNK; i++)
            free(s->chunks[c][i].slot);
        free(s->chunks[c]);
    }
    free(s->chunks);
    free(s->dead_stack);
    free(s->trace);
    yfi_pool_destroy(&s->pool);
    free(s);
    return 0;
}

/* How many of s's coroutines are RUNNING: the chain from this thread's
 * current coroutine back to the root, all of one scheduler (resume refuses
 * a resumer of another). */
static uint64_t sched_running(const yf_sched *s)
{
    uint64_t n = 0;
    for (const struct yf_co *co = yfi_thr.cur; co && co->s == s; co = co->back)
        n++;
    return n;
}

/* How many are ready: every live coroutine is new or ready, running
 * (`running` of them: sched_running), blocked or done; the queue holds the
 * first three. */
static uint64_t sched_ready(const yf_sched *s, uint64_t running)
{
    uint64_t n = s->n.live - s->n.blocked - s->n.done - running;
#ifdef YF_DEBUG
    uint64_t queued = 0;
    for (const struct yf_co *co = s->ready.next; co != &s->ready; co = co->next)
        queued += co->state != YF_RUNNING;
    YF_ASSERT(n == queued);
#endif
    return n;
}

/* The run loops' FP control state (x86-64). From the root, nothing but the
 * loop runs between two of its resumes, and the loop does no floating
 * point. So:
 *
 * - The first resume of a run saves the root's state into the root's frame
 *   (yfi_run_first), as every switch does; a coroutine's yield back to the
 *   loop returns that word, and later resumes store it instead of reading
 *   the state again (yfi_run_known, yfi_run_live). Every switch back to the
 *   loop that loads the root's frame (an exit, a block, a yield in another
 *   mode) thus loads the state read at the first. (The root's MXCSR status
 *   flags, which the psABI does not ask a callee to keep, come back as they
 *   were then.)
 * - A coroutine's yield back to the loop (ctx_x86_64.S's fast path, in the
 *   default mode, while yfi_thr.in_run says the root is in a loop) neither
 *   saves its own state nor loads the root's: the CPU keeps holding the
 *   coroutine's, and the loop remembers whose it is (`live`). Resuming that
 *   coroutine again loads nothing (yfi_run_live); before the loop resumes
 *   any other it writes the state into the waiting coroutine's frame
 *   (fp_park), and before it returns it loads the root's too. No other code
 *   runs meanwhile, so everything else finds every suspended coroutine's
 *   state in its frame. (A signal handler does not see the difference
 *   either: Linux starts it in the initial FP state whatever the thread
 *   held.)
 *
 * The yield tells the loop by what it returns: the root's word with bit 63
 * set; every other switch back returns 0. Only coroutines the root resumed
 * (back == NULL) defer: a nested resume's resumer is a coroutine, which may
 * do floating point. A resume in another mode (tracing on) clears in_run
 * around its switch, since the slow paths do not return the word. */
struct run_fp {
    uint64_t root;              /* the root's state with bit 63; 0 until known */
    struct yf_co *live;         /* whose state the CPU holds, not its frame; NULL: none */
};

#ifdef YFI_FAST_ASM
static __attribute__((noinline)) void fp_park(struct yf_co *live)
{
    struct yfi_frame *f = live->sp;
    yfi_fpenv_read(&f->mxcsr, &f->x87cw);
}
#endif

/* One resume of a run loop (see struct run_fp). */
static inline void run_resume(yf_sched *s, struct yf_co *co, struct run_fp *fp)
{
#ifdef YFI_FAST_ASM
    struct yf_co *live = fp->live;
    if (YF_LIKELY(s->mode == MODE_FULL)) {
        /* The switch below loads co's state whole. */
        if (YF_UNLIKELY(live != co) && live)
            fp_park(live);
        resume_mark(s, co, NULL);
        uint64_t r;
        if (live == co)
            r = yfi_run_live(co, fp->root);
        else if (fp->root)
            r = yfi_run_known(co, fp->root);
        else
            r = yfi_run_first(co, 0);
        /* Not 0: co yielded, leaving its state in the CPU, and r is the
         * root's. 0: it blocked or exited, or yielded in another mode,
         * through switches that loaded the root's state. */
        fp->live = r ? co : NULL;
        if (r)
            fp->root = r;
        return;
    }
    /* The slow mode (tracing): the ordinary switches, which save the CPU's
     * state as the root's. It holds the root's: a mode changes only while
     * some coroutine runs, and the last switch back was then not a
     * deferring yield, which needs the default mode. co may turn tracing
     * off and then yield through a switch whose value is not seen here: it
     * must not defer. */
#ifdef YF_DEBUG
    YF_ASSERT(live == NULL);
#endif
    yfi_thr.in_run = 0;
    resume_go(s, co, NULL);
    yfi_thr.in_run = 1;
#else
    (void)fp;
    resume_go(s, co, NULL);
#endif
}

/* Before a run of the queue from the root (the caller has checked): 0 when
 * nothing is queued; else the thread has its alternate signal stack, so
 * resume's checks hold for every queued coroutine (new or ready, of this
 * scheduler), and *fp is set up for run_resume. */
static inline int run_start(yf_sched *s, struct run_fp *fp)
{
    if (s->ready.next == &s->ready)
        return 0;
    if (YF_UNLIKELY(!yfi_thr.altstack_ready)) {
        int e = errno;
        (void)yfi_altstack_install();
        errno = e;
    }
    fp->root = 0;
    fp->live = NULL;
    yfi_thr.in_run = 1;
    return 1;
}

/* After a run: a coroutine's state that the CPU still holds to its frame,
 * and the root's back. */
static inline void run_end(struct run_fp *fp)
{
    yfi_thr.in_run = 0;
#ifdef YFI_FAST_ASM
    if (fp->live) {
        fp_park(fp->live);
        yfi_fpenv_write((uint32_t)fp->root, (uint16_t)(fp->root >> 32));
    }
#else
    (void)fp;
#endif
}

int64_t yf_sched_run(yf_sched *s)
{
    if (yfi_thr.cur != NULL) {
        errno = EBUSY;
        return -1;
    }
    int64_t n = 0;
    struct run_fp fp;
    if (run_start(s, &fp)) {
        /* An FP-fast scheduler never defers (its mode is never the
         * default): the plain loop. */
        if (s->flags & YF_SCHED_FPFAST)
            for (struct yf_co *co; (co = s->ready.next) != &s->ready; n++)
                resume_go(s, co, NULL);
        else
            for (struct yf_co *co; (co = s->ready.next) != &s->ready; n++)
                run_resume(s, co, &fp);
        run_end(&fp);
    }
    return n;
}

int64_t yf_sched_run_once(yf_sched *s)
{
    if (yfi_thr.cur != NULL) {
        errno = EBUSY;
        return -1;
    }
    /* The queue is FIFO and a coroutine re-enters it only at the tail, so
     * the entries queued now are exactly this pass (from the root, tested
     * above, none of s's coroutines is running). */
    int64_t max = (int64_t)sched_ready(s, 0), n = 0;
    struct run_fp fp;
    if (run_start(s, &fp)) {
        if (s->flags & YF_SCHED_FPFAST)
            for (struct yf_co *co; n < max && (co = s->ready.next) != &s->ready; n++)
                resume_go(s, co, NULL);
        else
            for (struct yf_co *co; n < max && (co = s->ready.next) != &s->ready; n++)
                run_resume(s, co, &fp);
        run_end(&fp);
    }
    return n;
}

void yf_sched_counts(const yf_sched *s, yf_counts *out)
{
    *out = s->n;
    uint64_t running = sched_running(s);
    out->ready = sched_ready(s, running);
    /* Every resume is one switch in, and one switch out once it has
     * yielded, blocked or exited: all but the running ones have. */
    out->switches = 2 * s->resumes - running;
    out->stacks_pooled = s->pool.nfree;
    out->stacks_mapped = s->pool.carved;
    out->arenas = s->pool.narenas;
}

size_t yf_sched_stack_size(const yf_sched *s)
{
    return s->pool.size;
}

size_t yf_sched_usable_stack(const yf_sched *s)
{
    return yfi_pool_usable(&s->pool);
}

unsigned yf_sched_flags(const yf_sched *s)
{
    return s->flags;
}

int yf_sched_guard_regions(const yf_sched *s)
{
    return s->pool.guard == YFI_GUARD_REGIONS;
}

size_t yf_sched_trim(yf_sched *s)
{
    return yfi_pool_trim(&s->pool);
}

yf_sched *yf_sched_current(void)
{
    return yfi_thr.cur ? yfi_thr.cur->s : NULL;
}

/* ---- life of a coroutine -------------------------------------------------------- */

static void run_hooks(struct yf_co *co)
{
    yf_exit_hook *h = co->hooks;
    if (h)
        co->hooks = NULL;
    while (h) {
        yf_exit_hook *next = h->next;
        h->fn(co, co->status, h->arg);
        h = next;
    }
}

static void release_stack(yf_sched *s, struct yf_co *co)
{
    if (co->slot) {
        if (s->flags & YF_SCHED_MALLOC_STACKS)
            free(co->slot);
        else
            yfi_pool_put(&s->pool, co->slot);
        co->slot = NULL;
    }
}

/* The stack of a coroutine that is finishing, while it still runs on it. A
 * pooled slot goes back to the pool at once: nothing else runs on this
 * thread before the switch that leaves it for good. A malloc'ed stack cannot
 * be freed yet (free unmaps a large block at once, and ASan poisons it): it
 * waits until the next exit, create or yf_sched_free frees it. */
static inline void retire_stack(yf_sched *s, struct yf_co *co)
{
    /* A coroutine that ran has its stack: no test for NULL, no call. */
    if (YF_LIKELY(!(s->flags & YF_SCHED_MALLOC_STACKS))) {
        yfi_pool_put(&s->pool, co->slot);
    } else {
        free(s->dead_stack);
        s->dead_stack = co->slot;
    }
    co->slot = NULL;
}

/* co is YF_DONE already (every caller's condition). */
static void co_free(yf_sched *s, struct yf_co *co)
{
    co->fn = NULL;
    co->next = s->free_co;
    s->free_co = co;
    s->n.done--;
    s->n.live--;
}

/* First function of every coroutine. The switch's transfer value is unused:
 * resume set `cur` before switching. */
static __attribute__((noreturn)) void co_main(void *unused)
{
    (void)unused;
#ifdef YFI_FIBERS
    san_arrive(NULL);
#endif
    struct yf_co *co = yfi_thr.cur;
    co->status = co->fn(co->arg);
    run_hooks(co);
    yf_sched *s = co->s;
    unlink_ready(s, co);
    co->state = YF_DONE;
    s->n.done++;
    retire_stack(s, co);
    if (co->flags & CO_DETACHED)
        co_free(s, co);
    yfi_thr.cur = co->back;
    switch_exit(s, co);
}

/* Makes co (its id already of this life) a new coroutine on `slot`. What a
 * reaped structure keeps needs no reset: `s` (set once), `hooks` (run_hooks
 * and cancel leave it NULL, and on_exit refuses a finished coroutine),
 * `back` and `ret` (set by every resume before anything reads them) and
 * `status` (written by the exit, a cancel or a wake before it is read). */
static inline yf_co *co_init(yf_sched *s, struct yf_co *co, void *slot, yf_co_fn fn, void *arg)
{
    co->slot = slot;
    co->fn = fn;
    co->arg = arg;
    co->state = YF_NEW;
    /* A structure from calloc, or one whose lives never set a local, has
     * them all NULL already. */
    if (YF_UNLIKELY(co->flags & CO_LOCALS))
        memset(co->locals, 0, sizeof co->locals);
    co->flags = 0;
    co->token = 0;
    co->err = 0;
    struct yfi_slot_header *h = yfi_slot_header((uintptr_t)slot, s->pool.size);
    h->owner_id = co->id;
    co->sp = yfi_ctx_make(yfi_slot_top(&s->pool, slot), co_main, s->mxcsr, s->x87cw);
#ifdef YFI_FIBERS
    san_fiber_new(s, co);
#endif
    enqueue(s, co);
    s->n.live++;
    s->n.created++;
    return co;
}

/* Every case of create but the steady state's: a bad argument, a structure
 * or a stack never used before, malloc'ed stacks. */
static __attribute__((noinline)) yf_co *create_slow(yf_sched *s, yf_co_fn fn, void *arg)
{
    if (!fn) {
        errno = EINVAL;
        return NULL;
    }
    struct yf_co *co = co_alloc(s);
    if (!co)
        return NULL;
    if (YF_UNLIKELY(s->dead_stack != NULL)) {
        free(s->dead_stack);
        s->dead_stack = NULL;
    }
    void *slot = (s->flags & YF_SCHED_MALLOC_STACKS) ? malloc(s->pool.size) : yfi_pool_get(&s->pool);
    if (!slot) {
        if (s->flags & YF_SCHED_MALLOC_STACKS)
            errno = ENOMEM;
        int e = errno;
        co->fn = NULL;
        co->next = s->free_co;
        s->free_co = co;
        errno = e;
        return NULL;
    }
    return co_init(s, co, slot, fn, arg);
}

/* The steady state (a reaped structure and a pooled stack at hand) makes no
 * call, so it needs no callee-saved register: the six pushes and pops the
 * cold cases cost every create are in create_slow. */
yf_co *yf_co_create(yf_sched *s, yf_co_fn fn, void *arg)
{
    if (s->flags & YF_SCHED_MALLOC_STACKS)
        return create_slow(s, fn, arg);
    struct yf_co *co = s->free_co;
    if (YF_UNLIKELY(!fn || !co || !s->pool.nfree))
        return create_slow(s, fn, arg);
    co_reuse(s, co);
    return co_init(s, co, s->pool.free[--s->pool.nfree], fn, arg);
}

/* The switch into co, which the caller has checked may run. */
static inline int resume_go(yf_sched *s, struct yf_co *co, struct yf_co *back)
{
    resume_mark(s, co, back);
    return switch_to(s, co, YF_REASON_RESUME);
}

/* Every case resume's hot path does not take, out of line (see
 * switch_slow): the errors, and the first resume on a thread without its
 * alternate signal stack. */
static __attribute__((noinline, cold)) int resume_slow(yf_sched *s, struct yf_co *co, struct yf_co *back)
{
    struct yf_co *from = back ? back : &s->root;
    if (from->s != s) {
        errno = EINVAL;
        return -1;
    }
    if (co->state > YF_READY) {
        errno = EBUSY;
        return -1;
    }
    /* A thread that never made a scheduler may resume coroutines too: it
     * needs its own alternate signal stack for the overflow report. Without
     * one, the reporter cannot run and the overflow dies unreported. */
    if (!yfi_thr.altstack_ready) {
        int e = errno;
        (void)yfi_altstack_install();
        errno = e;
    }
    return resume_go(s, co, back);
}

int RESUME_FN(yf_co *co)
{
    yf_sched *s = co->s;
    struct yf_co *back = yfi_thr.cur;
    /* One test of the thread's alternate signal stack serves both contexts:
     * the root resume or yf_sched_run that started a chain installed it, or
     * tried (when that failed, every resume retries, nested ones too). Only
     * a coroutine can be of another scheduler than co (the root's is s by
     * construction). */
    if (YF_UNLIKELY(!yfi_thr.altstack_ready) || (back && YF_UNLIKELY(back->s != s)) ||
        YF_UNLIKELY(co->state > YF_READY))
        return resume_slow(s, co, back);
    return resume_go(s, co, back);
}

static __attribute__((noinline, cold)) int not_in_coroutine(void)
{
    errno = EPERM;
    return -1;
}

int YIELD_FN(void)
{
    struct yf_co *co = yfi_thr.cur;
    if (YF_UNLIKELY(!co))
        return not_in_coroutine();
    yf_sched *s = co->s;
    co->state = YF_READY;
    requeue(s, co);
    yfi_thr.cur = co->back;
    return switch_to(s, co, YF_REASON_YIELD);
}

intptr_t yf_co_block(void)
{
    struct yf_co *co = yfi_thr.cur;
    if (!co) {
        errno = EPERM;
        return -1;
    }
    yf_sched *s = co->s;
    unlink_ready(s, co);
    co->state = YF_BLOCKED;
    co->token++;
    s->n.blocked++;
    yfi_thr.cur = co->back;
    switch_to(s, co, YF_REASON_BLOCK);
    return co->status;
}

uint64_t yf_co_next_token(void)
{
    return yfi_thr.cur ? yfi_thr.cur->token + 1 : 0;
}

uint64_t yf_co_token(const yf_co *co)
{
    return co->state == YF_BLOCKED ? co->token : 0;
}

int yf_co_wake(yf_co *co, uint64_t token, intptr_t value)
{
    if (co->state != YF_BLOCKED || token != co->token) {
        errno = ESTALE;
        return -1;
    }
    co->s->n.blocked--;
    co->status = value;
    co->state = YF_READY;
    enqueue(co->s, co);
    return 0;
}

int yf_co_cancel(yf_co *co, intptr_t status)
{
    if (co->state != YF_NEW) {
        errno = EBUSY;
        return -1;
    }
    yf_sched *s = co->s;
    unlink_ready(s, co);
    co->status = status;
    co->state = YF_DONE;
    s->n.done++;
#ifdef YFI_FIBERS
    san_fiber_end(co);
#endif
    run_hooks(co);
    release_stack(s, co);
    if (co->flags & CO_DETACHED)
        co_free(s, co);
    return 0;
}

int yf_co_reap(yf_co *co, intptr_t *status)
{
    if (co->state != YF_DONE || co->fn == NULL) {
        errno = EBUSY;
        return -1;
    }
    if (status)
        *status = co->status;
    co_free(co->s, co);
    return 0;
}

int yf_co_detach(yf_co *co)
{
    if (co->state == YF_DONE)
        return yf_co_reap(co, NULL);
    co->flags |= CO_DETACHED;
    return 0;
}

int yf_co_on_exit(yf_co *co, yf_exit_hook *hook)
{
    if (co->state == YF_DONE) {
        errno = EBUSY;
        return -1;
    }
    hook->next = co->hooks;
    co->hooks = hook;
    return 0;
}

yf_co *yf_co_current(void)
{
    return yfi_thr.cur;
}

uint64_t yf_co_id(const yf_co *co)
{
    return co->id;
}

int yf_co_state(const yf_co *co)
{
    return co->state;
}

int yf_co_status(const yf_co *co, intptr_t *status)
{
    if (co->state != YF_DONE) {
        errno = EBUSY;
        return -1;
    }
    *status = co->status;
    return 0;
}

int yf_co_local_set(yf_co *co, unsigned idx, void *value)
{
    if (idx >= YF_CO_LOCALS) {
        errno = EINVAL;
        return -1;
    }
    co->locals[idx] = value;
    co->flags |= CO_LOCALS;
    return 0;
}

void *yf_co_local_get(const yf_co *co, unsigned idx)
{
    if (idx >= YF_CO_LOCALS) {
        errno = EINVAL;
        return NULL;
    }
    return co->locals[idx];
}

size_t yf_co_stack_size(const yf_co *co)
{
    const struct yfi_pool *p = &co->s->pool;
    void *slot = co->slot;
    if (!slot)
        return 0;
    return (size_t)((char *)yfi_slot_top(p, slot) - ((char *)slot + p->page));
}

size_t yf_co_stack_hwm(const yf_co *co)
{
    return co->slot ? yfi_slot_hwm(&co->s->pool, co->slot) : 0;
}

int yf_co_fpenv_set(uint32_t mxcsr, uint16_t x87cw)
{
    /* Reserved MXCSR bits set make ldmxcsr raise #GP; refuse them here, and
     * FPCR's RES0 bits and a second word on AArch64, which has no x87. */
    if ((mxcsr & ~YFI_FPENV_VALID) || (!YFI_HAS_X87 && x87cw != 0)) {
        errno = EINVAL;
        return -1;
    }
    struct yf_co *co = yfi_thr.cur;
    if (co && (co->s->flags & YF_SCHED_FPFAST)) {
        /* Until now co ran in the ambient environment (see fpenv_handoff);
         * keep it for the switch that leaves co. */
        if (!(co->flags & CO_FPENV))
            yfi_fpenv_read(&co->s->mxcsr, &co->s->x87cw);
        co->flags |= CO_FPENV;
        /* From now on the scheduler's switches hand environments over. */
        if (!co->s->fpenv_used) {
            co->s->fpenv_used = 1;
            set_mode(co->s);
        }
        co->mxcsr = mxcsr;
        co->x87cw = x87cw;
    }
    yfi_fpenv_write(mxcsr, x87cw);
    return 0;
}

void yf_fpenv_get(uint32_t *mxcsr, uint16_t *x87cw)
{
    yfi_fpenv_read(mxcsr, x87cw);
}

#ifndef YF_CFLAGS
#define YF_CFLAGS "unknown"
#endif

const char *yf_build_info(void)
{
#ifdef YF_DEBUG
    return "arch=" YFI_ARCH " debug=1 cflags=" YF_CFLAGS;
#else
    return "arch=" YFI_ARCH " debug=0 cflags=" YF_CFLAGS;
#endif
}

int yf_co_stack_layout(const yf_co *co, uint64_t out[4])
{
    if (!co->slot) {
        errno = EINVAL;
        return -1;
    }
    const struct yfi_pool *p = &co->s->pool;
    uintptr_t slot = (uintptr_t)co->slot;
    out[0] = slot;
    out[1] = slot + p->page;
    out[2] = (uintptr_t)yfi_slot_top(p, co->slot);
    out[3] = slot + p->size;
    return 0;
}

int yf_co_saved_frame(const yf_co *co, uint64_t *sp, uint64_t out[8])
{
    /* A YF_NEW coroutine has the frame yfi_ctx_make laid; a running one has
     * none until it switches out. */
    if (!co->slot || co->state == YF_RUNNING) {
        errno = EINVAL;
        return -1;
    }
    *sp = (uint64_t)(uintptr_t)co->sp;
    memcpy(out, co->sp, 8 * sizeof *out);
    return 0;
}

int yf_addr_name(uint64_t addr, char *buf, size_t len)
{
    /* The two hidden entry points a fresh frame holds, which dladdr cannot see. */
    if (addr == (uintptr_t)yfi_ctx_entry || addr == (uintptr_t)co_main) {
        snprintf(buf, len, "%s", addr == (uintptr_t)co_main ? "co_main" : "yfi_ctx_entry");
        return 0;
    }
    Dl_info di;
    if (!dladdr((void *)(uintptr_t)addr, &di) || !di.dli_sname || !di.dli_saddr) {
        errno = ENOENT;
        return -1;
    }
    snprintf(buf, len, "%s+0x%lx", di.dli_sname, (unsigned long)(addr - (uintptr_t)di.dli_saddr));
    return 0;
}
