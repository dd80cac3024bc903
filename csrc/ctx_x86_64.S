/* ctx_x86_64.S - context switch for x86-64 System V (Linux, ELF), and the
 * scheduler's resume and yield fused with it (at the end of this file).
 *
 * A context is a saved stack pointer. Switching pushes a 64-byte frame on
 * the current stack, stores %rsp, loads the other context's %rsp and pops
 * its frame. The frame, from the saved stack pointer up:
 *
 *   offset  size  slot
 *        0     4  MXCSR            (control/status register of SSE)
 *        4     2  x87 control word
 *        6     2  padding
 *        8     8  %r12
 *       16     8  %r13
 *       24     8  %r14
 *       32     8  %r15
 *       40     8  %rbx
 *       48     8  %rbp
 *       56     8  return address   (pushed by the caller's `call`)
 *
 * The psABI (x86-64 System V, section 3.2.1 and figure 3.4) makes %rbx, %rbp,
 * %r12-%r15 and %rsp callee-saved, together with the control bits of MXCSR
 * and the x87 control word; every other register is caller-saved, so a
 * switch, being an ordinary call, does not preserve them. co.c mirrors the
 * table in struct yfi_frame with _Static_assert(offsetof(...)).
 *
 * The frame is built with push and restored with pop rather than with movs
 * into a pre-allocated area: measured 0.1-0.2 ns faster per switch on Zen 5,
 * where the stack engine folds the %rsp updates away.
 *
 * Signature of every switch entry point:
 *     void *yfi_ctx_<variant>(void **save, void *load, void *value);
 * saves the current context into *save, resumes the context `load`, and the
 * resumed side sees `value` as the return value of its own switch call (or,
 * for a fresh context, as the argument of its entry function).
 *
 * Variants (see lab/lab.h YF_CTX_*; the notebook 01 ablation times them;
 * the runtime carries full and nofp, and the run loops' three below;
 * lab/ctx_variants_x86_64.S the rest):
 *   full        MXCSR saved and loaded always, x87 control word saved always
 *               and loaded only when it differs (fldcw is microcoded and
 *               slow; stmxcsr/ldmxcsr are cheap enough to do always, and a
 *               compare for MXCSR measured slower than loading it)
 *   full_ret    the same, returning with `ret`
 *   full_always both loaded always (Boost.Context fcontext does this)
 *   mxcsr_cmp   both loaded only when they differ
 *   nofp        general registers only (YF_SCHED_FPFAST: the FP control
 *               state is switched in C, only for coroutines that set it)
 *   nofp_ret    the same, returning with `ret`
 *
 * Why pop+jmp by default: after the stack pointer changes, `ret` pops an
 * address the return-stack buffer did not predict (the RSB holds the other
 * context's call), so in a tight ping-pong every `ret` mispredicts; an
 * indirect `jmp` is predicted by the branch target buffer instead. When the
 * switch is called from deep call chains the picture changes; the ablation
 * in notebook 01 measures both.
 */

#if !defined(__x86_64__)
#error "ctx_x86_64.S is for x86-64 only"
#endif

    .text

#include "yfi_build.h"
#include "ctx_x86_64.inc"

/* co.c's resume and yield end in a tail call to a switch and return its
 * value as an int: these aliases give them a prototype that says so. */
    .globl yfi_ctx_full_int
    .hidden yfi_ctx_full_int
    .type yfi_ctx_full_int, @function
    .set yfi_ctx_full_int, yfi_ctx_full
    .globl yfi_ctx_nofp_int
    .hidden yfi_ctx_nofp_int
    .type yfi_ctx_nofp_int, @function
    .set yfi_ctx_nofp_int, yfi_ctx_nofp

    SWITCH yfi_ctx_full,        1, 1, 0
    SWITCH yfi_ctx_nofp,        0, 0, 0
/* The run loops' resumes (co.c's run_resume; the root, between two of
 * them, runs only the loop): uint64_t \name(struct yf_co *co, uint64_t
 * fpword) saves the root's context into co->ret and enters co->sp, handing
 * co 0. yfi_run_first saves the root's FP control state and loads co's
 * whole; yfi_run_known stores `fpword`, the state the loop learnt, instead
 * of reading it, and loads co's whole; yfi_run_live stores it and loads
 * nothing, the CPU holding co's state already. Each returns what the
 * switch back returns: a deferring yield's word (below), or 0. */
.macro RUN_SWITCH name, fpsave, fpload
    .globl \name
    .hidden \name
    .type \name, @function
    .p2align 4
\name:
    .cfi_startproc
    SWAP \fpsave, \fpload, 0, 1, YFI_CO_RET(%rdi), YFI_CO_SP(%rdi), 1, %rsi
    .cfi_endproc
    .size \name, .-\name
.endm
    RUN_SWITCH yfi_run_first, 1, 2
    RUN_SWITCH yfi_run_known, 2, 2
    RUN_SWITCH yfi_run_live,  2, 0

/* The switch out of a finished coroutine: it never runs again, so nothing
 * of it is saved (`save` is ignored); the loaded side is the same, except
 * that yfi_ctx_full_exit loads the x87 CW always: comparing it first needs
 * the current one read (fnstcw, then a load and a branch on it), which
 * measured 3-4% of a coroutine's life slower on the machine this was
 * written on (co.c's top comment, fifth round). */
    SWITCH yfi_ctx_full_exit,   0, 2, 0, 0
    SWITCH yfi_ctx_nofp_exit,   0, 0, 0, 0

/* ---- x86-64's fused resume and yield (yfi_build.h) ---------------------------
 *
 * co.c's resume and yield end in a tail jump to yfi_ctx_full or
 * yfi_ctx_nofp. Here the same checks and bookkeeping and the same swap are
 * one function: no jump between them, the swap saves into and loads from
 * the coroutine's own two cells (%rdi holds it throughout), and the value
 * returned is a plain 0. Every case but the two fast modes' hot path jumps,
 * with nothing changed, to co.c's yfi_co_resume_c / yfi_co_yield_c, the
 * whole functions (errors, the first resume on a thread, the slow mode).
 * co.c is the reference for what each instruction below does; its
 * _Static_asserts hold the offsets of yfi_build.h. Measured on the machine
 * this was written on (AMD EPYC, KVM), one-way, best placement, in one
 * quiet spell: FP-fast 4.16 ns through co.c's, 3.85 ns through these;
 * default 6.94 and 6.79 ns (co.c's top comment has the steps). */
#ifdef YFI_FAST_ASM

/* The swap of a fast path: save the frame at \save(%rdi), load the one at
 * \load(%rdi); \fp 1 is yfi_ctx_full's FP control handling, 0 none. */
.macro FAST_SWAP fp, save, load
    SWAP \fp, \fp, 0, 1, \save(%rdi), \load(%rdi), 1
.endm

/* A build that hides every symbol (-fvisibility=hidden, which does not reach
 * assembly) defines YFI_ASM_HIDDEN, so that its calls of the two public
 * functions below bind inside the library as its C ones do. */
#ifdef YFI_ASM_HIDDEN
    .hidden yf_co_resume
    .hidden yf_co_yield
#endif

/* int yf_co_resume(yf_co *co) */
    .globl yf_co_resume
    .type yf_co_resume, @function
    .p2align 4
yf_co_resume:
    .cfi_startproc
    movq    yfi_thr@gottpoff(%rip), %rdx
    movq    YFI_CO_S(%rdi), %rax                    /* s */
    cmpl    $0, %fs:YFI_THR_ALTSTACK(%rdx)
    je      yfi_co_resume_c
    movq    %fs:YFI_THR_CUR(%rdx), %rcx             /* back = cur */
    testq   %rcx, %rcx
    je      1f
    cmpq    %rax, YFI_CO_S(%rcx)                    /* a resumer of another scheduler */
    jne     yfi_co_resume_c
1:
    cmpl    $1, YFI_CO_STATE(%rdi)                  /* neither new nor ready */
    jg      yfi_co_resume_c
    cmpl    $1, YFI_S_MODE(%rax)                    /* the slow mode; the flags say */
    ja      yfi_co_resume_c                         /* which fast one below */
    movl    $2, YFI_CO_STATE(%rdi)                  /* YF_RUNNING (it stays queued) */
    movq    %rcx, YFI_CO_BACK(%rdi)
    movq    %rdi, %fs:YFI_THR_CUR(%rdx)
    je      2f
    addq    $1, YFI_S_RESUMES(%rax)
    .cfi_remember_state
    FAST_SWAP 1, YFI_CO_RET, YFI_CO_SP
2:
    .cfi_restore_state
    addq    $1, YFI_S_RESUMES(%rax)
    FAST_SWAP 0, YFI_CO_RET, YFI_CO_SP
    .cfi_endproc
    .size yf_co_resume, .-yf_co_resume

/* int yf_co_yield(void) */
    .globl yf_co_yield
    .type yf_co_yield, @function
    .p2align 4
yf_co_yield:
    .cfi_startproc
    movq    yfi_thr@gottpoff(%rip), %rdx
    movq    %fs:YFI_THR_CUR(%rdx), %rdi             /* co = cur */
    testq   %rdi, %rdi
    je      yfi_co_yield_c
    movq    YFI_CO_S(%rdi), %rax                    /* s */
    cmpq    %rdi, YFI_S_READY+YFI_CO_PREV(%rax)     /* not at the queue's tail */
    jne     3f
4:
    cmpl    $1, YFI_S_MODE(%rax)                    /* the slow mode; the flags say */
    ja      yfi_co_yield_c                          /* which fast one below */
    movl    $1, YFI_CO_STATE(%rdi)                  /* YF_READY */
    movq    YFI_CO_BACK(%rdi), %rsi                 /* cur = back */
    movq    %rsi, %fs:YFI_THR_CUR(%rdx)
    je      2f
    cmpl    $0, %fs:YFI_THR_IN_RUN(%rdx)            /* the root is in a run loop */
    jne     5f
6:
    .cfi_remember_state
    FAST_SWAP 1, YFI_CO_SP, YFI_CO_RET
5:
    /* ...and co's resumer is the root, so the loop (co.c's run_resume),
     * which does no floating point: the FP control state stays in the CPU,
     * co's frame does not get it, and the loop learns so from the value
     * returned, the root's state that its resume saved, with bit 63 set. */
    .cfi_restore_state
    testq   %rsi, %rsi
    jne     6b
    .cfi_remember_state
    SWAP    0, 0, 0, 1, YFI_CO_SP(%rdi), YFI_CO_RET(%rdi), 2
2:
    .cfi_restore_state
    .cfi_remember_state
    FAST_SWAP 0, YFI_CO_SP, YFI_CO_RET
3:
    .cfi_restore_state
    /* co to the tail (co.c's requeue), in a fast mode only: the fallback
     * finds nothing changed. */
    cmpl    $1, YFI_S_MODE(%rax)
    ja      yfi_co_yield_c
    movq    YFI_CO_PREV(%rdi), %r8                  /* out of the queue */
    movq    YFI_CO_NEXT(%rdi), %rsi
    movq    %rsi, YFI_CO_NEXT(%r8)
    movq    %r8, YFI_CO_PREV(%rsi)
    movq    YFI_S_READY+YFI_CO_PREV(%rax), %r8      /* in at its tail */
    leaq    YFI_S_READY(%rax), %rsi
    movq    %rsi, YFI_CO_NEXT(%rdi)
    movq    %r8, YFI_CO_PREV(%rdi)
    movq    %rdi, YFI_CO_NEXT(%r8)
    movq    %rdi, YFI_S_READY+YFI_CO_PREV(%rax)
    jmp     4b
    .cfi_endproc
    .size yf_co_yield, .-yf_co_yield
#endif

/* First code a fresh context runs: yfi_ctx_make put the entry function in
 * %rbx's slot; the switch left the transfer value in %rax. It zeroes %rbp
 * (ending frame-pointer chains) and %r12-%r15, whose slots yfi_ctx_make
 * leaves unwritten: zero-idiom xors cost no store and no load. The entry
 * function never returns; %rip is marked undefined so debuggers and
 * unwinders stop here instead of walking into the slot's header. */
    .globl yfi_ctx_entry
    .hidden yfi_ctx_entry
    .type yfi_ctx_entry, @function
    .p2align 4
yfi_ctx_entry:
    .cfi_startproc
    .cfi_undefined rip
    xorl    %ebp, %ebp
    xorl    %r12d, %r12d
    xorl    %r13d, %r13d
    xorl    %r14d, %r14d
    xorl    %r15d, %r15d
    movq    %rax, %rdi
    callq   *%rbx
    ud2
    .cfi_endproc
    .size yfi_ctx_entry, .-yfi_ctx_entry

    .section .note.GNU-stack, "", @progbits
