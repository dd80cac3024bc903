/* test_ctx_aarch64.c - the context switch keeps what AAPCS64 makes
 * callee-saved: x19-x29, sp, the low halves of v8-v15 (d8-d15) and FPCR's
 * control fields (rounding mode, flush-to-zero, default NaN), and a fresh
 * context starts on a 16-byte aligned stack, where unwinding stops at the
 * first-entry trampoline. Raw switch variants and the scheduler (default and
 * YF_SCHED_FPFAST) are both checked by ctx_tests.h, which test_ctx.c shares
 * for the x86-64 psABI; this file is the aarch64 part, and the unwinding.
 *
 * arch: aarch64
 */
#define _GNU_SOURCE
#include <unwind.h>

#define NX 11                   /* x19-x29 */
#define NREGS (NX + 8)          /* and d8-d15 */
#include "ctx_tests.h"

#define RMODE 0x00c00000u       /* FPCR.RMode, bits 22-23: 0 RN, 1 RP, 2 RM, 3 RZ */
#define RM_SHIFT 22
#define FZ (1u << 24)           /* flush-to-zero */
#define DN (1u << 25)           /* default NaN */

/* call_with_regs(fn, in, out): loads in[0..10] into x19-x29 and in[11..18]
 * into d8-d15, calls fn(), then stores those registers into out[0..18].
 * Written as a whole function so that x29 can be loaded freely and the call
 * is made with sp 16-byte aligned; its own callers' x19-x30 and d8-d15 are
 * kept in a 176-byte frame. */
__asm__(
    "    .text\n"
    "    .p2align 2\n"
    "    .type call_with_regs, %function\n"
    "call_with_regs:\n"
    "    hint 34\n" /* bti c: called through a pointer when BTI is on */
    "    sub sp, sp, #176\n"
    "    stp x19, x20, [sp, #0]\n"
    "    stp x21, x22, [sp, #16]\n"
    "    stp x23, x24, [sp, #32]\n"
    "    stp x25, x26, [sp, #48]\n"
    "    stp x27, x28, [sp, #64]\n"
    "    stp x29, x30, [sp, #80]\n"
    "    stp d8, d9, [sp, #96]\n"
    "    stp d10, d11, [sp, #112]\n"
    "    stp d12, d13, [sp, #128]\n"
    "    stp d14, d15, [sp, #144]\n"
    "    str x2, [sp, #160]\n"
    "    mov x16, x0\n"
    "    ldp x19, x20, [x1, #0]\n"
    "    ldp x21, x22, [x1, #16]\n"
    "    ldp x23, x24, [x1, #32]\n"
    "    ldp x25, x26, [x1, #48]\n"
    "    ldp x27, x28, [x1, #64]\n"
    "    ldr x29, [x1, #80]\n"
    "    ldp d8, d9, [x1, #88]\n"
    "    ldp d10, d11, [x1, #104]\n"
    "    ldp d12, d13, [x1, #120]\n"
    "    ldp d14, d15, [x1, #136]\n"
    "    blr x16\n"
    "    ldr x0, [sp, #160]\n"
    "    stp x19, x20, [x0, #0]\n"
    "    stp x21, x22, [x0, #16]\n"
    "    stp x23, x24, [x0, #32]\n"
    "    stp x25, x26, [x0, #48]\n"
    "    stp x27, x28, [x0, #64]\n"
    "    str x29, [x0, #80]\n"
    "    stp d8, d9, [x0, #88]\n"
    "    stp d10, d11, [x0, #104]\n"
    "    stp d12, d13, [x0, #120]\n"
    "    stp d14, d15, [x0, #136]\n"
    "    ldp x19, x20, [sp, #0]\n"
    "    ldp x21, x22, [sp, #16]\n"
    "    ldp x23, x24, [sp, #32]\n"
    "    ldp x25, x26, [sp, #48]\n"
    "    ldp x27, x28, [sp, #64]\n"
    "    ldp x29, x30, [sp, #80]\n"
    "    ldp d8, d9, [sp, #96]\n"
    "    ldp d10, d11, [sp, #112]\n"
    "    ldp d12, d13, [sp, #128]\n"
    "    ldp d14, d15, [sp, #144]\n"
    "    add sp, sp, #176\n"
    "    ret\n"
    "    .size call_with_regs, .-call_with_regs\n");

/* sp_at_call(): the caller's sp at its call (Linux also traps sp-relative
 * accesses when it is not 16-byte aligned). */
__asm__(
    "    .text\n"
    "    .p2align 2\n"
    "    .type sp_at_call, %function\n"
    "sp_at_call:\n"
    "    hint 34\n"
    "    mov x0, sp\n"
    "    ret\n"
    "    .size sp_at_call, .-sp_at_call\n");

/* Distinct values per register, and per side: the x-registers get patterns,
 * the d-registers bit patterns of distinct doubles (any 64 bits would do:
 * the switch moves them with ldp/stp and never computes with them). */
static void fill(uint64_t regs[NREGS], uint64_t base)
{
    for (int i = 0; i < NREGS; i++)
        regs[i] = base * (uint64_t)(i + 1) ^ 0x0123456789abcdefull * (uint64_t)(i + 3);
}

static const char *const REG_NAMES[NREGS] = {"x19", "x20", "x21", "x22", "x23", "x24", "x25",
                                             "x26", "x27", "x28", "x29", "d8",  "d9",  "d10",
                                             "d11", "d12", "d13", "d14", "d15"};

static uint32_t fp_get(void)
{
    uint64_t v;
    __asm__ volatile("mrs %0, fpcr" : "=r"(v));
    return (uint32_t)v;
}

static void fp_set(uint32_t v)
{
    __asm__ volatile("msr fpcr, %0" : : "r"((uint64_t)v));
}

/* The FP unit really computes in the mode FPCR says, not only the register
 * bits: the rounding of 1 + 2^-60, and a subnormal product flushed by FZ. */
static void check_fp_behaviour(uint32_t fpcr)
{
    volatile double one = 1.0, eps = 0x1p-60, tiny = 0x1p-1060;
    double up = one + eps, down = one - eps;
    switch ((fpcr & RMODE) >> RM_SHIFT) {
    case 0: /* to nearest */
        CHECK(up == 1.0 && down == 1.0);
        break;
    case 1: /* toward +inf */
        CHECK(up > 1.0 && down == 1.0);
        break;
    case 2: /* toward -inf */
        CHECK(up == 1.0 && down < 1.0);
        break;
    default: /* toward zero */
        CHECK(up == 1.0 && down < 1.0);
        break;
    }
    double sub = tiny * one;
    if (fpcr & FZ)
        CHECK(sub == 0.0);
    else
        CHECK(sub != 0.0);
}

/* Touches a 16-byte aligned quad (long double is binary128 here) and checks
 * the alignment of its own calls. */
static __attribute__((noinline)) void check_alignment(void)
{
    CHECK(sp_at_call() % 16 == 0);
    volatile long double ld = 3.0L;
    CHECK(((uintptr_t)&ld & 15) == 0);
    CHECK(ld * 2 == 6.0L);
    volatile __int128 q = 5;
    CHECK(((uintptr_t)&q & 15) == 0 && q * 3 == 15);
}

static fpenv fp_now(void)
{
    return (fpenv){fp_get(), 0};
}

static void fp_load(fpenv e)
{
    fp_set(e.w);
}

static int fp_equal(fpenv a, fpenv b)
{
    return a.w == b.w && a.x == b.x;
}

/* FPCR has no sticky flags (they are in FPSR): all of it must match. */
static void check_env(fpenv want)
{
    CHECK(fp_get() == want.w);
    check_fp_behaviour(want.w);
}

/* FPCR.RMode of each of FE_MODES: 0 nearest (RN), 2 down (RM), 1 up (RP),
 * 3 toward zero (RZ). */
static const unsigned RM_OF[4] = {0, 2, 1, 3};

static void check_rounding(int fe_mode)
{
    uint32_t f = fp_get();
    CHECK((f & RMODE) == (RM_OF[mode_index(fe_mode)] << RM_SHIFT) && (f & FZ) == 0);
    check_fp_behaviour(f);
}

/* Besides the rounding mode, no flush-to-zero or default NaN. */
static void check_sched_env(void)
{
    uint32_t f = fp_get();
    CHECK((f & (RMODE | FZ | DN)) == 0);
    check_fp_behaviour(f);
}

/* Round toward -inf with flush-to-zero. */
static fpenv fp_raw_start(fpenv root)
{
    return (fpenv){(root.w & ~RMODE) | (2u << RM_SHIFT) | FZ, 0};
}

/* A raw msr with another mode, flush-to-zero and default NaN. */
static void set_own_env_across_yield(void)
{
    uint32_t mine = (fp_get() & ~RMODE) | (3u << RM_SHIFT) | FZ | DN;
    fp_set(mine);
    CHECK(yf_co_yield() == 0);
    check_env((fpenv){mine, 0});
}

/* Up with flush-to-zero; the runtime reads FPCR as the registers hold it. */
static fpenv fp_fast_env(void)
{
    uint32_t m;
    uint16_t c;
    yf_fpenv_get(&m, &c);
    CHECK(m == fp_get() && c == 0);
    return (fpenv){(m & ~RMODE) | (1u << RM_SHIFT) | FZ, 0};
}

/* RES0 FPCR bits and a second word (there is no x87 here). */
static void check_fpenv_set_refuses(fpenv mine)
{
    CHECK_ERR(yf_co_fpenv_set(mine.w | (1u << 27), 0), EINVAL);
    CHECK_ERR(yf_co_fpenv_set(mine.w | (1u << 4), 0), EINVAL);
    CHECK_ERR(yf_co_fpenv_set(mine.w, 0x037f), EINVAL);
}

/* The unwinder walks a coroutine's stack from its body up to the first-entry
 * trampoline and ends there: yfi_ctx_entry's CFI marks x30 undefined, which
 * is the end of the stack. Without it the walk would find the trampoline
 * again and again (its x30 still holds its own return address). */
struct walk {
    uintptr_t pcs[32];
    int n;
};

static _Unwind_Reason_Code walk_frame(struct _Unwind_Context *ctx, void *arg)
{
    struct walk *w = arg;
    if (w->n == 32)
        return _URC_NORMAL_STOP;
    w->pcs[w->n++] = (uintptr_t)_Unwind_GetIP(ctx);
    return _URC_NO_REASON;
}

static __attribute__((noinline)) intptr_t unwind_body(void *arg)
{
    (void)arg;
    struct walk w = {.n = 0};
    _Unwind_Reason_Code rc = _Unwind_Backtrace(walk_frame, &w);
    /* The frame past the undefined return address is reported with ip 0. */
    if (w.n > 0 && w.pcs[w.n - 1] == 0)
        w.n--;
    CHECK(w.n >= 2);
    uintptr_t entry = (uintptr_t)yfi_ctx_entry;
    int in_entry = 0;
    for (int i = 0; i < w.n; i++)
        in_entry += w.pcs[i] > entry && w.pcs[i] <= entry + 12;
    if (rc != _URC_END_OF_STACK || in_entry != 1 || !(w.pcs[w.n - 1] > entry && w.pcs[w.n - 1] <= entry + 12))
        fprintf(stderr, "unwind: rc %d, %d frames, %d in yfi_ctx_entry, last 0x%lx, entry 0x%lx\n", (int)rc, w.n,
                in_entry, (unsigned long)w.pcs[w.n - 1], (unsigned long)entry);
    CHECK(rc == _URC_END_OF_STACK);
    CHECK(in_entry == 1);
    CHECK(w.pcs[w.n - 1] > entry && w.pcs[w.n - 1] <= entry + 12);
    return w.n;
}

static void test_unwind_stops_at_entry(void)
{
    yf_sched *s = yf_sched_new(65536, 0);
    CHECK(s != NULL);
    yf_co *co = yf_co_create(s, unwind_body, NULL);
    CHECK(co != NULL);
    CHECK(yf_sched_run(s) == 1);
    intptr_t st;
    CHECK(yf_co_reap(co, &st) == 0 && st >= 2);
    CHECK(yf_sched_free(s) == 0);
}

int main(void)
{
    fill(ROOT_REGS, 0x1111111111111111ull);
    fill(CO_REGS, 0xa1a1a1a1a1a1a1a1ull);
    run_shared_ctx_tests();
    test_unwind_stops_at_entry();
    printf("test_ctx_aarch64: ok\n");
    return 0;
}
