/* yfi_build.h - what both the C and the assembly of the runtime must agree
 * on: which build this is (sanitizers) and, for x86-64's fused fast paths,
 * the offsets of the fields they touch. Preprocessor only, so that
 * ctx_x86_64.S can include it; co.c checks every offset with
 * _Static_assert(offsetof(...)). */
#ifndef YFI_BUILD_H
#define YFI_BUILD_H

/* ---- sanitizer builds ------------------------------------------------------- */

/* ASan and TSan track one stack per thread; a switch to a coroutine stack
 * must be announced to them (co.c), or ASan takes the coroutine's frames for
 * wild accesses and TSan's shadow call stack goes wrong. The annotations are
 * compiled in only when the compiler instruments for a sanitizer, so the
 * normal build's switch is unchanged. */
#if defined(__SANITIZE_ADDRESS__)
#define YFI_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__)
#define YFI_TSAN 1
#endif
#if defined(__has_feature)
#if __has_feature(address_sanitizer) && !defined(YFI_ASAN)
#define YFI_ASAN 1
#endif
#if __has_feature(thread_sanitizer) && !defined(YFI_TSAN)
#define YFI_TSAN 1
#endif
#endif
#if defined(YFI_ASAN) || defined(YFI_TSAN)
#define YFI_FIBERS 1
#endif

/* ---- x86-64's fused resume and yield ---------------------------------------- */

/* On x86-64, yf_co_resume and yf_co_yield are ctx_x86_64.S's: the hot path's
 * checks and bookkeeping and the register swap in one function, no tail
 * jump between them. Every case they do not take (an error, a thread
 * without its alternate signal stack, the slow mode) jumps, untouched, to
 * co.c's yfi_co_resume_c / yfi_co_yield_c, which are the whole functions.
 * Sanitizer builds announce every switch and use co.c's alone; so does
 * aarch64, and a build with -DYFI_NO_FAST_ASM (to compare the two). */
#if defined(__x86_64__) && !defined(YFI_FIBERS) && !defined(YFI_NO_FAST_ASM)
#define YFI_FAST_ASM 1
#endif

/* struct yf_co (co.c) */
#define YFI_CO_SP 0             /* its own context while switched out */
#define YFI_CO_RET 8            /* its resumer's context while it runs */
#define YFI_CO_S 16
#define YFI_CO_BACK 24
#define YFI_CO_NEXT 32
#define YFI_CO_PREV 40
#define YFI_CO_STATE 48         /* int */
/* struct yf_sched (co.c) */
#define YFI_S_MODE 0            /* unsigned: 0 default, 1 FP-fast, 2 slow */
#define YFI_S_RESUMES 8
#define YFI_S_READY 16          /* the ready queue's sentinel, a struct yf_co */
/* struct yfi_thread (yfi.h) */
#define YFI_THR_CUR 0
#define YFI_THR_ALTSTACK 8      /* int */
#define YFI_THR_IN_RUN 12       /* int */

#endif
