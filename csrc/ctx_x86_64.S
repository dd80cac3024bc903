/* ctx_x86_64.S - context switch for x86-64 System V (Linux, ELF).
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
 * the runtime carries full and nofp, lab/ctx_variants_x86_64.S the rest):
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
/* The switch out of a finished coroutine: it never runs again, so nothing
 * of it is saved (`save` is ignored); the loaded side is the same. */
    SWITCH yfi_ctx_full_exit,   0, 1, 0, 0
    SWITCH yfi_ctx_nofp_exit,   0, 0, 0, 0

/* First code a fresh context runs: yfi_ctx_make put the entry function in
 * %rbx's slot; the switch left the transfer value in %rax. The entry
 * function never returns; %rip is marked undefined so debuggers and
 * unwinders stop here instead of walking into the slot's header. */
    .globl yfi_ctx_entry
    .hidden yfi_ctx_entry
    .type yfi_ctx_entry, @function
    .p2align 4
yfi_ctx_entry:
    .cfi_startproc
    .cfi_undefined rip
    movq    %rax, %rdi
    callq   *%rbx
    ud2
    .cfi_endproc
    .size yfi_ctx_entry, .-yfi_ctx_entry

    .section .note.GNU-stack, "", @progbits
