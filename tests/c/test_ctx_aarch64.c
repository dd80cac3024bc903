/* test_ctx_aarch64.c - the context switch keeps what AAPCS64 makes
 * callee-saved: x19-x29, sp, the low halves of v8-v15 (d8-d15) and FPCR's
 * control fields (rounding mode, flush-to-zero, default NaN), and a fresh
 * context starts on a 16-byte aligned stack, where unwinding stops at the
 * first-entry trampoline. Raw switch variants and the
 * scheduler (default and YF_SCHED_FPFAST) are both checked; this is
 * test_ctx.c's x86-64 psABI test, mirrored.
 *
 * arch: aarch64
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fenv.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unwind.h>

#include "yfi.h"
#include "lab/lab.h"
#include "check.h"

#define RMODE 0x00c00000u       /* FPCR.RMode, bits 22-23: 0 RN, 1 RP, 2 RM, 3 RZ */
#define RM_SHIFT 22
#define FZ (1u << 24)           /* flush-to-zero */
#define DN (1u << 25)           /* default NaN */

#define NX 11                   /* x19-x29 */
#define NREGS (NX + 8)          /* and d8-d15 */

/* call_with_regs(fn, in, out): loads in[0..10] into x19-x29 and in[11..18]
 * into d8-d15, calls fn(), then stores those registers into out[0..18].
 * Written as a whole function so that x29 can be loaded freely and the call
 * is made with sp 16-byte aligned; its own callers' x19-x30 and d8-d15 are
 * kept in a 176-byte frame. */
void call_with_regs(void (*fn)(void), const uint64_t in[NREGS], uint64_t out[NREGS]);
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

/* sp_at_call(): the caller's sp at its call, which AAPCS64 wants 16-byte
 * aligned (Linux also traps sp-relative accesses when it is not). */
uintptr_t sp_at_call(void);
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

static uint64_t ROOT_REGS[NREGS], CO_REGS[NREGS];

static void check_regs(const uint64_t want[NREGS], const uint64_t got[NREGS])
{
    static const char *names[NREGS] = {"x19", "x20", "x21", "x22", "x23", "x24", "x25",
                                       "x26", "x27", "x28", "x29", "d8",  "d9",  "d10",
                                       "d11", "d12", "d13", "d14", "d15"};
    for (int i = 0; i < NREGS; i++) {
        if (want[i] != got[i])
            fprintf(stderr, "%s: want 0x%llx, got 0x%llx\n", names[i], (unsigned long long)want[i],
                    (unsigned long long)got[i]);
        CHECK(want[i] == got[i]);
    }
}

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

/* ---- raw switch variants ------------------------------------------------ */

static yfi_ctx_fn sw;
static void *root_sp, *co_sp;
static int raw_keeps_fp;
static int raw_step;
static uint32_t raw_fpcr;

static void raw_yield(void)
{
    sw(&co_sp, root_sp, NULL);
}

static void raw_resume(void)
{
    sw(&root_sp, co_sp, NULL);
}

static void raw_entry(void *value)
{
    CHECK(value == (void *)0x1234);
    CHECK(sp_at_call() % 16 == 0);
    check_alignment();
    /* The fresh frame's FP environment: the one yfi_ctx_make was given. */
    if (raw_keeps_fp) {
        CHECK(fp_get() == raw_fpcr);
        check_fp_behaviour(raw_fpcr);
    }
    /* Registers: loaded here, switched out, checked when switched back in,
     * while the root side loads its own values. */
    uint64_t out[NREGS];
    raw_step = 1;
    call_with_regs(raw_yield, CO_REGS, out);
    check_regs(CO_REGS, out);
    check_alignment();
    if (raw_keeps_fp) {
        CHECK(fp_get() == raw_fpcr);
        check_fp_behaviour(raw_fpcr);
    }
    raw_step = 2;
    sw(&co_sp, root_sp, (void *)0x5678);
    CHECK(0);
}

static void test_raw_variant(int variant)
{
    sw = yfi_ctx_variants[variant];
    raw_keeps_fp = variant != YF_CTX_NOFP && variant != YF_CTX_NOFP_RET;
    size_t size = 65536;
    char *stack = aligned_alloc(64, size);
    CHECK(stack != NULL);
    uint32_t f0 = fp_get();
    CHECK((f0 & (RMODE | FZ)) == 0);
    /* Round toward -inf with flush-to-zero inside; an odd top: yfi_ctx_make
     * must align it itself. */
    raw_fpcr = (f0 & ~RMODE) | (2u << RM_SHIFT) | FZ;
    raw_step = 0;
    co_sp = yfi_ctx_make(stack + size - 7, raw_entry, raw_fpcr, 0);
    void *v = sw(&root_sp, co_sp, (void *)0x1234);
    CHECK(v == NULL && raw_step == 1);
    if (raw_keeps_fp) {
        CHECK(fp_get() == f0);
        check_fp_behaviour(f0);
    } else {
        fp_set(f0);
    }
    uint64_t out[NREGS];
    call_with_regs(raw_resume, ROOT_REGS, out);
    check_regs(ROOT_REGS, out);
    CHECK(raw_step == 2);
    if (raw_keeps_fp)
        CHECK(fp_get() == f0);
    else
        fp_set(f0);
    free(stack);
}

/* ---- through the scheduler ----------------------------------------------- */

static yf_co *g_co;

static void sched_yield(void)
{
    CHECK(yf_co_yield() == 0);
}

static void sched_resume(void)
{
    CHECK(yf_co_resume(g_co) == 0);
}

static intptr_t regs_body(void *arg)
{
    (void)arg;
    check_alignment();
    uint64_t out[NREGS];
    for (int i = 0; i < 3; i++) {
        call_with_regs(sched_yield, CO_REGS, out);
        check_regs(CO_REGS, out);
        check_alignment();
    }
    return 7;
}

static void test_sched_regs(unsigned flags)
{
    yf_sched *s = yf_sched_new(65536, flags);
    CHECK(s != NULL);
    g_co = yf_co_create(s, regs_body, NULL);
    CHECK(g_co != NULL);
    uint64_t out[NREGS];
    for (int i = 0; i < 4; i++) {
        call_with_regs(sched_resume, ROOT_REGS, out);
        check_regs(ROOT_REGS, out);
    }
    intptr_t st;
    CHECK(yf_co_reap(g_co, &st) == 0 && st == 7);
    CHECK(yf_sched_free(s) == 0);
}

/* Default scheduler: a coroutine changes its rounding mode (fesetround, then
 * a raw msr with another mode, flush-to-zero and default NaN) and keeps it
 * across yields; the root never sees it. */
static intptr_t fp_body_default(void *arg)
{
    (void)arg;
    CHECK(fesetround(FE_UPWARD) == 0);
    CHECK(yf_co_yield() == 0);
    CHECK(fegetround() == FE_UPWARD);
    uint32_t f = fp_get();
    CHECK((f & RMODE) == (1u << RM_SHIFT));
    check_fp_behaviour(f);
    uint32_t mine = (f & ~RMODE) | (3u << RM_SHIFT) | FZ | DN;
    fp_set(mine);
    CHECK(yf_co_yield() == 0);
    CHECK(fp_get() == mine);
    check_fp_behaviour(mine);
    return 0;
}

/* A second coroutine running between the yields must start from, and see,
 * the scheduler's environment, not its neighbour's. */
static intptr_t fp_body_plain(void *arg)
{
    (void)arg;
    for (int i = 0; i < 3; i++) {
        uint32_t f = fp_get();
        CHECK((f & (RMODE | FZ | DN)) == 0);
        CHECK(fegetround() == FE_TONEAREST);
        check_fp_behaviour(f);
        yf_co_yield();
    }
    return 0;
}

static void check_root_fp(uint32_t f0)
{
    uint32_t f = fp_get();
    CHECK(fegetround() == FE_TONEAREST);
    CHECK((f & (RMODE | FZ)) == 0);
    CHECK(f == f0);
}

static void test_fp_default(void)
{
    uint32_t f0 = fp_get();
    yf_sched *s = yf_sched_new(65536, 0);
    CHECK(s != NULL);
    yf_co *a = yf_co_create(s, fp_body_default, NULL);
    yf_co *b = yf_co_create(s, fp_body_plain, NULL);
    CHECK(a && b);
    for (int i = 0; i < 4; i++) {
        if (yf_co_state(a) != YF_DONE) {
            CHECK(yf_co_resume(a) == 0);
            check_root_fp(f0);
        }
        if (yf_co_state(b) != YF_DONE) {
            CHECK(yf_co_resume(b) == 0);
            check_root_fp(f0);
        }
    }
    CHECK(yf_co_state(a) == YF_DONE && yf_co_state(b) == YF_DONE);
    CHECK(yf_sched_free(s) == 0);
}

/* FPFAST: the same through yf_co_fpenv_set, the only sanctioned way there. */
static intptr_t fp_body_fast(void *arg)
{
    (void)arg;
    uint32_t m;
    uint16_t c;
    yf_fpenv_get(&m, &c);
    CHECK(m == fp_get() && c == 0);
    uint32_t mine = (m & ~RMODE) | (1u << RM_SHIFT) | FZ;
    CHECK(yf_co_fpenv_set(mine, 0) == 0);
    CHECK(fegetround() == FE_UPWARD);
    for (int i = 0; i < 3; i++) {
        CHECK(yf_co_yield() == 0);
        CHECK(fp_get() == mine);
        check_fp_behaviour(mine);
    }
    /* RES0 FPCR bits and a second word (there is no x87 here) are refused,
     * and change nothing. */
    errno = 0;
    CHECK(yf_co_fpenv_set(mine | (1u << 27), 0) == -1 && errno == EINVAL);
    errno = 0;
    CHECK(yf_co_fpenv_set(mine | (1u << 4), 0) == -1 && errno == EINVAL);
    errno = 0;
    CHECK(yf_co_fpenv_set(mine, 0x037f) == -1 && errno == EINVAL);
    CHECK(fp_get() == mine);
    return 0;
}

static void test_fp_fast(void)
{
    uint32_t f0 = fp_get();
    yf_sched *s = yf_sched_new(65536, YF_SCHED_FPFAST);
    CHECK(s != NULL);
    yf_co *a = yf_co_create(s, fp_body_fast, NULL);
    yf_co *b = yf_co_create(s, fp_body_plain, NULL);
    CHECK(a && b);
    CHECK(yf_sched_run(s) == 8);
    check_root_fp(f0);
    intptr_t st;
    CHECK(yf_co_reap(a, &st) == 0 && st == 0);
    CHECK(yf_co_reap(b, &st) == 0 && st == 0);
    CHECK(yf_sched_free(s) == 0);
}

/* The root is an ordinary caller of yf_co_resume: a rounding mode it set
 * after making the scheduler is callee-saved state and must survive a
 * resume, in both modes, also when the coroutine has its own environment. */
static void test_root_changes_after_new(unsigned flags)
{
    yf_sched *s = yf_sched_new(65536, flags);
    CHECK(s != NULL);
    yf_co *a = yf_co_create(s, fp_body_fast, NULL);
    CHECK(a != NULL);
    static const int modes[4] = {FE_DOWNWARD, FE_TOWARDZERO, FE_UPWARD, FE_DOWNWARD};
    static const unsigned rm[4] = {2, 3, 1, 2};
    for (int i = 0; i < 4; i++) {
        CHECK(fesetround(modes[i]) == 0);
        CHECK(yf_co_resume(a) == 0);
        CHECK(fegetround() == modes[i]);
        uint32_t f = fp_get();
        CHECK((f & RMODE) == (rm[i] << RM_SHIFT) && (f & FZ) == 0);
        check_fp_behaviour(f);
    }
    CHECK(yf_co_state(a) == YF_DONE);
    CHECK(fesetround(FE_TONEAREST) == 0);
    CHECK(yf_sched_free(s) == 0);
}

/* The same with a coroutine without its own environment in between: the
 * root resumes B, and B resumes A, which sets its own. */
static yf_co *inner_a;

static intptr_t fp_body_middle(void *arg)
{
    (void)arg;
    uint32_t f0 = fp_get();
    while (yf_co_state(inner_a) != YF_DONE) {
        CHECK(yf_co_resume(inner_a) == 0);
        CHECK(fp_get() == f0);
        CHECK(yf_co_yield() == 0);
        CHECK(fp_get() == f0);
    }
    return 0;
}

static void test_root_changes_nested(unsigned flags)
{
    yf_sched *s = yf_sched_new(65536, flags);
    CHECK(s != NULL);
    CHECK(fesetround(FE_DOWNWARD) == 0);
    inner_a = yf_co_create(s, fp_body_fast, NULL);
    yf_co *b = yf_co_create(s, fp_body_middle, NULL);
    CHECK(inner_a && b);
    while (yf_co_state(b) != YF_DONE) {
        CHECK(yf_co_resume(b) == 0);
        CHECK(fegetround() == FE_DOWNWARD);
        uint32_t f = fp_get();
        CHECK((f & RMODE) == (2u << RM_SHIFT) && (f & FZ) == 0);
    }
    CHECK(yf_co_state(inner_a) == YF_DONE);
    CHECK(fesetround(FE_TONEAREST) == 0);
    CHECK(yf_sched_free(s) == 0);
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

static intptr_t align_body(void *arg)
{
    (void)arg;
    check_alignment();
    yf_co_yield();
    check_alignment();
    return 0;
}

static void test_sched_alignment(void)
{
    /* Every slot colour: enough coroutines alive at once to use many slots. */
    yf_sched *s = yf_sched_new(65536, 0);
    CHECK(s != NULL);
    for (int i = 0; i < 100; i++)
        CHECK(yf_co_create(s, align_body, NULL) != NULL);
    CHECK(yf_sched_run(s) == 200);
    CHECK(yf_sched_free(s) == 0);
}

int main(void)
{
    fill(ROOT_REGS, 0x1111111111111111ull);
    fill(CO_REGS, 0xa1a1a1a1a1a1a1a1ull);
    for (int i = 0; i < NREGS; i++)
        CHECK(ROOT_REGS[i] != CO_REGS[i]);
    for (int v = 0; v < YF_CTX_NVARIANTS; v++)
        test_raw_variant(v);
    test_sched_regs(0);
    test_sched_regs(YF_SCHED_FPFAST);
    test_fp_default();
    test_fp_fast();
    test_root_changes_after_new(0);
    test_root_changes_after_new(YF_SCHED_FPFAST);
    test_root_changes_nested(0);
    test_root_changes_nested(YF_SCHED_FPFAST);
    test_sched_alignment();
    test_unwind_stops_at_entry();
    printf("test_ctx_aarch64: ok\n");
    return 0;
}
