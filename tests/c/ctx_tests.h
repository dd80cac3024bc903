/* ctx_tests.h - the context-switch checks both architectures share
 * (test_ctx.c for the x86-64 psABI, test_ctx_aarch64.c for AAPCS64): raw
 * switch variants and the scheduler (default and YF_SCHED_FPFAST) keep the
 * callee-saved registers and the FP control state, and every fresh context
 * starts on an aligned stack.
 *
 * What the file including it defines (NREGS before the #include, the rest
 * after it), the architecture's part of the rule:
 *   NREGS, ROOT_REGS, CO_REGS, REG_NAMES  the callee-saved registers
 *       call_with_regs loads and stores, the values each side puts in them
 *       and their names; call_with_regs and sp_at_call in assembly
 *   check_alignment()       aligned slots and calls inside a coroutine
 *   fp_now(), fp_load(e)    the FP control state as the registers hold it
 *   fp_equal(a, b)          every bit alike
 *   check_env(want)         the control state is want's (sticky exception
 *                           flags aside) and arithmetic follows it
 *   check_rounding(mode)    the units round as fesetround(mode) makes them,
 *                           with nothing else set (flush-to-zero ...)
 *   check_sched_env()       the scheduler's own state: nothing a neighbour set
 *   fp_raw_start(root)      the state a raw context is made with (another
 *                           rounding mode than root's)
 *   set_own_env_across_yield()  inside a coroutine: set another state with
 *                           raw register writes, yield, and find it again
 *   fp_fast_env()           a state a coroutine gives yf_co_fpenv_set, with
 *                           FE_UPWARD rounding
 *   check_fpenv_set_refuses(mine)  yf_co_fpenv_set refuses what the
 *                           architecture reserves, changing nothing
 */
#ifndef YF_TEST_CTX_TESTS_H
#define YF_TEST_CTX_TESTS_H

#include <errno.h>
#include <fenv.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "yfi.h"
#include "lab/lab.h"
#include "check.h"

/* The FP control state as yfi_ctx_make and yf_co_fpenv_set take it: MXCSR
 * and the x87 control word on x86-64, FPCR and 0 on aarch64. */
typedef struct {
    uint32_t w;
    uint16_t x;
} fpenv;

/* call_with_regs(fn, in, out): loads in[] into the callee-saved registers,
 * calls fn(), then stores those registers into out[]. */
void call_with_regs(void (*fn)(void), const uint64_t in[NREGS], uint64_t out[NREGS]);
/* sp_at_call(): the caller's stack pointer at its call, which both ABIs
 * want 16-byte aligned. */
uintptr_t sp_at_call(void);

static uint64_t ROOT_REGS[NREGS], CO_REGS[NREGS];
static const char *const REG_NAMES[NREGS];

static void check_alignment(void);
static fpenv fp_now(void);
static void fp_load(fpenv e);
static int fp_equal(fpenv a, fpenv b);
static void check_env(fpenv want);
static void check_rounding(int fe_mode);
static void check_sched_env(void);
static fpenv fp_raw_start(fpenv root);
static void set_own_env_across_yield(void);
static fpenv fp_fast_env(void);
static void check_fpenv_set_refuses(fpenv mine);

/* The four rounding modes, in the order the architectures' encoding
 * tables (indexed by mode_index) follow. */
static const int FE_MODES[4] = {FE_TONEAREST, FE_DOWNWARD, FE_UPWARD, FE_TOWARDZERO};

static int mode_index(int fe_mode)
{
    for (int i = 0; i < 4; i++)
        if (FE_MODES[i] == fe_mode)
            return i;
    CHECK(!"not a rounding mode");
    return 0;
}

static void check_regs(const uint64_t want[NREGS], const uint64_t got[NREGS])
{
    for (int i = 0; i < NREGS; i++) {
        if (want[i] != got[i])
            fprintf(stderr, "%s: want 0x%llx, got 0x%llx\n", REG_NAMES[i], (unsigned long long)want[i],
                    (unsigned long long)got[i]);
        CHECK(want[i] == got[i]);
    }
}

/* ---- raw switch variants ------------------------------------------------ */

static yfi_ctx_fn sw;
static void *root_sp, *co_sp;
static int raw_keeps_fp;
static int raw_step;
static fpenv raw_env;

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
    if (raw_keeps_fp)
        check_env(raw_env);
    /* Registers: loaded here, switched out, checked when switched back in,
     * while the root side loads its own values. */
    uint64_t out[NREGS];
    raw_step = 1;
    call_with_regs(raw_yield, CO_REGS, out);
    check_regs(CO_REGS, out);
    check_alignment();
    if (raw_keeps_fp)
        check_env(raw_env);
    raw_step = 2;
    sw(&co_sp, root_sp, (void *)0x5678);
    CHECK(0);
}

/* Back on the root side of a raw switch: a variant that keeps the FP state
 * gave the root's back; one that does not may leave the coroutine's. */
static void check_raw_root_fp(fpenv f0)
{
    if (raw_keeps_fp) {
        CHECK(fp_equal(fp_now(), f0));
        check_env(f0);
    } else {
        fp_load(f0);
    }
}

static void test_raw_variant(int variant)
{
    sw = yfi_ctx_variants[variant];
    raw_keeps_fp = variant != YF_CTX_NOFP && variant != YF_CTX_NOFP_RET;
    size_t size = 65536;
    char *stack = aligned_alloc(64, size);
    CHECK(stack != NULL);
    fpenv f0 = fp_now();
    check_rounding(FE_TONEAREST);
    /* Another rounding mode inside; an odd top: yfi_ctx_make must align it
     * itself. */
    raw_env = fp_raw_start(f0);
    raw_step = 0;
    unsigned vg_id = STACK_REGISTER(stack, stack + size);
    co_sp = yfi_ctx_make(stack + size - 7, raw_entry, raw_env.w, raw_env.x);
    void *v = sw(&root_sp, co_sp, (void *)0x1234);
    CHECK(v == NULL && raw_step == 1);
    check_raw_root_fp(f0);
    uint64_t out[NREGS];
    call_with_regs(raw_resume, ROOT_REGS, out);
    check_regs(ROOT_REGS, out);
    CHECK(raw_step == 2);
    check_raw_root_fp(f0);
    STACK_DEREGISTER(vg_id);
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

/* Default scheduler: a coroutine changes its rounding mode (fesetround,
 * then raw register writes with other modes and flags) and keeps it across
 * yields; the root never sees it. */
static intptr_t fp_body_default(void *arg)
{
    (void)arg;
    CHECK(fesetround(FE_UPWARD) == 0);
    CHECK(yf_co_yield() == 0);
    CHECK(fegetround() == FE_UPWARD);
    check_rounding(FE_UPWARD);
    set_own_env_across_yield();
    return 0;
}

/* A second coroutine running between the yields must start from, and see,
 * the scheduler's environment, not its neighbour's. */
static intptr_t fp_body_plain(void *arg)
{
    (void)arg;
    for (int i = 0; i < 3; i++) {
        check_sched_env();
        CHECK(fegetround() == FE_TONEAREST);
        yf_co_yield();
    }
    return 0;
}

static void check_root_fp(fpenv f0)
{
    CHECK(fegetround() == FE_TONEAREST);
    check_rounding(FE_TONEAREST);
    check_env(f0);
}

static void test_fp_default(void)
{
    fpenv f0 = fp_now();
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
    fpenv mine = fp_fast_env();
    CHECK(yf_co_fpenv_set(mine.w, mine.x) == 0);
    CHECK(fegetround() == FE_UPWARD);
    for (int i = 0; i < 3; i++) {
        CHECK(yf_co_yield() == 0);
        check_env(mine);
    }
    check_fpenv_set_refuses(mine);
    check_env(mine);
    return 0;
}

static void test_fp_fast(void)
{
    fpenv f0 = fp_now();
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
    /* A different mode before each resume, also after a has its own. */
    static const int modes[4] = {FE_DOWNWARD, FE_TOWARDZERO, FE_UPWARD, FE_DOWNWARD};
    for (int i = 0; i < 4; i++) {
        CHECK(fesetround(modes[i]) == 0);
        CHECK(yf_co_resume(a) == 0);
        CHECK(fegetround() == modes[i]);
        check_rounding(modes[i]);
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
    fpenv f0 = fp_now();
    while (yf_co_state(inner_a) != YF_DONE) {
        CHECK(yf_co_resume(inner_a) == 0);
        check_env(f0);
        CHECK(yf_co_yield() == 0);
        check_env(f0);
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
        check_rounding(FE_DOWNWARD);
    }
    CHECK(yf_co_state(inner_a) == YF_DONE);
    CHECK(fesetround(FE_TONEAREST) == 0);
    CHECK(yf_sched_free(s) == 0);
}

/* ---- the run loops ----------------------------------------------------------
 * yf_sched_run and yf_sched_run_once handle the FP control state apart from
 * the switches (co.c's struct run_fp, x86-64): the root's is read once per
 * run, and a coroutine that yields back to the loop leaves its own in the
 * CPU until the loop runs another one or returns. Every coroutine here
 * checks its own state after each switch, in every way a coroutine can
 * leave the loop and come back: alone and between neighbours, by yield,
 * block and exit, through a nested resume, and with the switch mode changed
 * (tracing on and off) while it runs. The root checks its own after each
 * run; it changes it between runs, and after making the scheduler. */

/* A yield, after which the rounding mode is still `mode`. */
static void yield_keeps(int mode)
{
    CHECK(yf_co_yield() == 0);
    check_rounding(mode);
}

/* Its own rounding mode across several yields (the loop resumes it alone
 * when the others are done), then raw writes to both units, then it ends
 * with yet another state. */
static intptr_t rl_own(void *arg)
{
    int mode = (int)(intptr_t)arg;
    CHECK(fesetround(mode) == 0);
    for (int i = 0; i < 6; i++)
        yield_keeps(mode);
    set_own_env_across_yield();
    CHECK(fesetround(FE_TOWARDZERO) == 0);
    return 0;
}

/* Outlives the others, so that the loop resumes it alone, and changes its
 * rounding mode before every yield. */
static intptr_t rl_alone(void *arg)
{
    (void)arg;
    for (int i = 0; i < 40; i++) {
        int mode = FE_MODES[i % 4];
        CHECK(fesetround(mode) == 0);
        yield_keeps(mode);
    }
    return 0;
}

static intptr_t rl_blocks(void *arg)
{
    (void)arg;
    CHECK(fesetround(FE_UPWARD) == 0);
    CHECK(yf_co_block() == 5);
    check_rounding(FE_UPWARD);
    yield_keeps(FE_UPWARD);
    return 0;
}

static intptr_t rl_waker(void *arg)
{
    yf_co *b = arg;
    CHECK(fesetround(FE_DOWNWARD) == 0);
    while (yf_co_state(b) != YF_BLOCKED)
        yield_keeps(FE_DOWNWARD);
    CHECK(yf_co_wake(b, yf_co_token(b), 5) == 0);
    yield_keeps(FE_DOWNWARD);
    return 0;
}

/* Resumes a coroutine of its own scheduler, which the loop resumes too. */
static intptr_t rl_inner(void *arg)
{
    (void)arg;
    CHECK(fesetround(FE_UPWARD) == 0);
    for (int i = 0; i < 3; i++)
        yield_keeps(FE_UPWARD);
    return 0;
}

static intptr_t rl_outer(void *arg)
{
    (void)arg;
    CHECK(fesetround(FE_TOWARDZERO) == 0);
    yf_co *in = yf_co_create(yf_sched_current(), rl_inner, NULL);
    CHECK(in != NULL);
    while (yf_co_state(in) != YF_DONE) {
        CHECK(yf_co_resume(in) == 0);
        check_rounding(FE_TOWARDZERO);
        yield_keeps(FE_TOWARDZERO);
    }
    intptr_t st;
    CHECK(yf_co_reap(in, &st) == 0 && st == 0);
    return 0;
}

/* Turns tracing (the slow switches) on and off while it runs, with another
 * rounding mode each time. */
static intptr_t rl_traces(void *arg)
{
    (void)arg;
    yf_sched *s = yf_sched_current();
    for (int i = 0; i < 6; i++) {
        int mode = FE_MODES[1 + i % 3];
        CHECK(fesetround(mode) == 0);
        CHECK(yf_sched_trace(s, i % 2 ? 0 : 16) == 0);
        yield_keeps(mode);
    }
    return 0;
}

static void check_root_mode(int mode)
{
    CHECK(fegetround() == mode);
    check_rounding(mode);
}

static void test_fp_run_loops(void)
{
    fpenv f0 = fp_now();
    yf_sched *s = yf_sched_new(65536, 0);
    CHECK(s != NULL);
    static const int root_modes[3] = {FE_TOWARDZERO, FE_DOWNWARD, FE_UPWARD};
    for (int once = 0; once < 2; once++) {
        yf_co *co[9];
        co[0] = yf_co_create(s, rl_own, (void *)(intptr_t)FE_UPWARD);
        co[1] = yf_co_create(s, fp_body_plain, NULL);
        co[2] = yf_co_create(s, rl_blocks, NULL);
        co[3] = yf_co_create(s, rl_waker, co[2]);
        co[4] = yf_co_create(s, rl_outer, NULL);
        co[5] = yf_co_create(s, rl_traces, NULL);
        co[6] = yf_co_create(s, rl_own, (void *)(intptr_t)FE_DOWNWARD);
        co[7] = yf_co_create(s, fp_body_plain, NULL);
        co[8] = yf_co_create(s, rl_alone, NULL);
        for (int i = 0; i < 9; i++)
            CHECK(co[i] != NULL);
        if (!once) {
            CHECK(fesetround(FE_TOWARDZERO) == 0);
            CHECK(yf_sched_run(s) > 0);
            check_root_mode(FE_TOWARDZERO);
        } else {
            for (int pass = 0; yf_sched_run_once(s) > 0; pass++) {
                check_root_mode(root_modes[pass % 3]);
                CHECK(fesetround(root_modes[(pass + 1) % 3]) == 0);
            }
        }
        for (int i = 0; i < 9; i++) {
            intptr_t st;
            CHECK(yf_co_reap(co[i], &st) == 0 && st == 0);
        }
        CHECK(fesetround(root_modes[0]) == 0);
    }
    CHECK(fesetround(FE_TONEAREST) == 0);
    check_env(f0);
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

/* Every check above, in order. */
static void run_shared_ctx_tests(void)
{
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
    test_fp_run_loops();
    test_sched_alignment();
}

#endif
