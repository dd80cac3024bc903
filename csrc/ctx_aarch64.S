/* ctx_aarch64.S - context switch for AArch64 (AAPCS64, Linux, ELF).
 *
 * A context is a saved stack pointer. Switching stores a 176-byte frame
 * below the current stack pointer, stores sp, loads the other context's sp
 * and loads its frame. The frame, from the saved stack pointer up:
 *
 *   offset  size  slot
 *        0     8  FPCR             (floating-point control register; the
 *                                   architecture defines the low 32 bits)
 *        8     8  padding          (keeps every pair 16-byte aligned)
 *       16     8  x19
 *       24     8  x20
 *       32     8  x21
 *       40     8  x22
 *       48     8  x23
 *       56     8  x24
 *       64     8  x25
 *       72     8  x26
 *       80     8  x27
 *       88     8  x28
 *       96     8  x29              (frame pointer)
 *      104     8  x30              (link register: where the switch returns)
 *      112     8  d8               (low 64 bits of v8)
 *      120     8  d9
 *      128     8  d10
 *      136     8  d11
 *      144     8  d12
 *      152     8  d13
 *      160     8  d14
 *      168     8  d15
 *
 * AAPCS64 ("General-purpose registers" and "SIMD and Floating-Point
 * registers") makes x19-x29, sp and the low 64 bits of v8-v15 callee-saved;
 * x30 holds the return address; every other register, the high halves of
 * v8-v15 included, is caller-saved, so a switch, being an ordinary call,
 * does not preserve them. FPCR's mode fields (RMode, the rounding mode,
 * bits 22-23; FZ, flush-to-zero, bit 24; DN, AHP, FZ16 and the trap
 * enables) are state a callee that changes them restores before returning,
 * the same contract as MXCSR's control bits on x86-64; the status flags
 * live in FPSR and, like MXCSR's sticky bits, are not switched. co.c mirrors
 * the table in struct yfi_frame with _Static_assert(offsetof(...)).
 *
 * Signature of every switch entry point (the same as on x86-64):
 *     void *yfi_ctx_<variant>(void **save, void *load, void *value);
 * saves the current context into *save, resumes the context `load`, and the
 * resumed side sees `value` as the return value of its own switch call (or,
 * for a fresh context, as the argument of its entry function).
 *
 * Variants (YF_CTX_* in the lab's header; the names are x86-64's, so the
 * variant table and the benchmarks are the same on both architectures; the
 * runtime carries full and nofp, lab/ctx_variants_aarch64.S the rest):
 *   full        FPCR saved always and written only when it differs: writing
 *               FPCR can cost far more than reading it on some cores (glibc's
 *               fesetround and fesetenv skip an unchanged write for that
 *               reason); no aarch64 core was at hand to measure, so the
 *               compare is the cautious default and full_always the control
 *   nofp        general and FP registers only, FPCR untouched
 *               (YF_SCHED_FPFAST: the FP control state is switched in C,
 *               only for coroutines that set it)
 *   full_always FPCR saved and written always (the control experiment)
 *   full_ret, mxcsr_cmp, nofp_ret
 *               the same code as full, full and nofp: every variant here
 *               ends with `ret`, and FPCR is the only FP control register,
 *               so x86-64's return-instruction and MXCSR-compare ablations
 *               have nothing to vary.
 *
 * Why `ret` and not `br`: with BTI enforced, an indirect `br` may only land
 * on a `bti j` landing pad, and the return addresses the switch jumps to
 * are ordinary call sites; `ret` is exempt. As on x86-64, the return-address
 * predictor then guesses wrong after the stack changes in a tight
 * ping-pong; co.c's tail calls make the switch's `ret` the only return
 * that crosses contexts.
 *
 * Pointer authentication: the switch does not sign or authenticate x30. It
 * saves the raw return address its caller's `bl` left and returns to it; a
 * caller built with -mbranch-protection=pac-ret signs and authenticates its
 * own return address in its own frame, which the switch preserves as stack
 * memory, so that protection holds across a switch.
 */

#if !defined(__aarch64__)
#error "ctx_aarch64.S is for AArch64 only"
#endif

    .text

#include "ctx_aarch64.inc"

    SWITCH yfi_ctx_full, 1
    SWITCH yfi_ctx_nofp, 0
/* The switch out of a finished coroutine: it never runs again, so nothing
 * of it is saved (`save` is ignored); the loaded side is the same. */
    SWITCH yfi_ctx_full_exit, 1, 0
    SWITCH yfi_ctx_nofp_exit, 0, 0

/* co.c's resume and yield end in a tail call to a switch and return its
 * value as an int: these aliases give them a prototype that says so. */
    ALIAS yfi_ctx_full_int,  yfi_ctx_full
    ALIAS yfi_ctx_nofp_int,  yfi_ctx_nofp

/* First code a fresh context runs: the switch's `ret` lands here (a return,
 * so no landing pad is needed; one is kept for a caller that branches here
 * indirectly). yfi_ctx_make put the entry function in x19's slot and 0 in
 * x29's, which ends frame-pointer chains; the switch left the transfer value
 * in x0, the entry function's argument. The entry function never returns;
 * x30 is marked undefined so debuggers and unwinders stop here instead of
 * walking into the slot's header. */
    .globl yfi_ctx_entry
    .hidden yfi_ctx_entry
    .type yfi_ctx_entry, %function
    .p2align 4
yfi_ctx_entry:
    .cfi_startproc
    .cfi_undefined x30
    BTI_C
    blr     x19
    brk     #0x1
    .cfi_endproc
    .size yfi_ctx_entry, .-yfi_ctx_entry

    .section .note.GNU-stack, "", %progbits

    GNU_PROPERTY_BTI
