/* test_ctx.c - the context switch keeps what the psABI makes callee-saved:
 * %rbx, %rbp, %r12-%r15, the MXCSR control bits and the x87 control word, and
 * a fresh context starts on a 16-byte aligned stack. Raw switch variants and
 * the scheduler (default and YF_SCHED_FPFAST) are both checked;
 * test_ctx_aarch64.c mirrors it for AAPCS64.
 *
 * arch: x86_64
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fenv.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "yfi.h"
#include "lab/lab.h"
#include "check.h"

#define MXCSR_RC 0x6000u /* MXCSR rounding control, bits 13-14 */
#define X87_RC 0x0c00u   /* x87 control word rounding control, bits 10-11 */

/* call_with_regs(fn, in, out): loads in[0..5] into %rbx, %rbp, %r12-%r15,
 * calls fn(), then stores those six registers into out[0..5]. Written as a
 * whole function so that %rbp can be loaded freely, and so that the call is
 * made with the stack aligned and no red zone to trample. */
void call_with_regs(void (*fn)(void), const uint64_t in[6], uint64_t out[6]);
__asm__(
    "    .text\n"
    "    .type call_with_regs, @function\n"
    "call_with_regs:\n"
    "    pushq %rbx\n"
    "    pushq %rbp\n"
    "    pushq %r12\n"
    "    pushq %r13\n"
    "    pushq %r14\n"
    "    pushq %r15\n"
    "    pushq %rdx\n" /* out; 7 pushes + return address keep %rsp 16-aligned */
    "    movq 0(%rsi), %rbx\n"
    "    movq 8(%rsi), %rbp\n"
    "    movq 16(%rsi), %r12\n"
    "    movq 24(%rsi), %r13\n"
    "    movq 32(%rsi), %r14\n"
    "    movq 40(%rsi), %r15\n"
    "    callq *%rdi\n"
    "    movq (%rsp), %rax\n"
    "    movq %rbx, 0(%rax)\n"
    "    movq %rbp, 8(%rax)\n"
    "    movq %r12, 16(%rax)\n"
    "    movq %r13, 24(%rax)\n"
    "    movq %r14, 32(%rax)\n"
    "    movq %r15, 40(%rax)\n"
    "    addq $8, %rsp\n"
    "    popq %r15\n"
    "    popq %r14\n"
    "    popq %r13\n"
    "    popq %r12\n"
    "    popq %rbp\n"
    "    popq %rbx\n"
    "    ret\n"
    "    .size call_with_regs, .-call_with_regs\n");

/* rsp_at_call(): the caller's %rsp at its call instruction, which the psABI
 * wants 16-byte aligned. */
uintptr_t rsp_at_call(void);
__asm__(
    "    .text\n"
    "    .type rsp_at_call, @function\n"
    "rsp_at_call:\n"
    "    leaq 8(%rsp), %rax\n"
    "    ret\n"
    "    .size rsp_at_call, .-rsp_at_call\n");

static const uint64_t ROOT_REGS[6] = {
    0x1111111111111111ull, 0x2222222222222222ull, 0x3333333333333333ull,
    0x4444444444444444ull, 0x5555555555555555ull, 0x6666666666666666ull,
};
static const uint64_t CO_REGS[6] = {
    0xa1a1a1a1a1a1a1a1ull, 0xb2b2b2b2b2b2b2b2ull, 0xc3c3c3c3c3c3c3c3ull,
    0xd4d4d4d4d4d4d4d4ull, 0xe5e5e5e5e5e5e5e5ull, 0xf6f6f6f6f6f6f6f6ull,
};

static void check_regs(const uint64_t want[6], const uint64_t got[6])
{
    static const char *names[6] = {"rbx", "rbp", "r12", "r13", "r14", "r15"};
    for (int i = 0; i < 6; i++) {
        if (want[i] != got[i])
            fprintf(stderr, "%%%s: want 0x%llx, got 0x%llx\n", names[i],
                    (unsigned long long)want[i], (unsigned long long)got[i]);
        CHECK(want[i] == got[i]);
    }
}

static void fp_get(uint32_t *m, uint16_t *c)
{
    __asm__ volatile("stmxcsr %0" : "=m"(*m));
    __asm__ volatile("fnstcw %0" : "=m"(*c));
}

static void fp_set(uint32_t m, uint16_t c)
{
    __asm__ volatile("ldmxcsr %0" : : "m"(m));
    __asm__ volatile("fldcw %0" : : "m"(c));
}

/* Touches an aligned SSE slot with movaps (faults when misaligned) and checks
 * the alignment of its own calls. */
typedef double v2d __attribute__((vector_size(16)));
static __attribute__((noinline)) void check_alignment(void)
{
    CHECK(rsp_at_call() % 16 == 0);
    volatile v2d v = {1.0, 2.0};
    v2d w = v;
    __asm__ volatile("movaps %1, %0" : "=m"(v) : "x"(w + w));
    CHECK(v[0] == 2.0 && v[1] == 4.0);
    volatile long double ld = 3.0L;
    CHECK(((uintptr_t)&ld & 15) == 0 || __alignof__(long double) < 16);
    CHECK(ld * 2 == 6.0L);
}

/* ---- raw switch variants ------------------------------------------------ */

static yfi_ctx_fn sw;
static void *root_sp, *co_sp;
static int raw_keeps_fp;
static int raw_step;

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
    CHECK(rsp_at_call() % 16 == 0);
    check_alignment();
    /* The fresh frame's FP environment: the one yfi_ctx_make was given. */
    uint32_t m;
    uint16_t c;
    fp_get(&m, &c);
    if (raw_keeps_fp) {
        CHECK((m & MXCSR_RC) == (2u << 13));
        CHECK((c & X87_RC) == (1u << 10));
    }
    /* Registers: loaded here, switched out, checked when switched back in,
     * while the root side loads its own values. */
    uint64_t out[6];
    raw_step = 1;
    call_with_regs(raw_yield, CO_REGS, out);
    check_regs(CO_REGS, out);
    check_alignment();
    fp_get(&m, &c);
    if (raw_keeps_fp) {
        CHECK((m & MXCSR_RC) == (2u << 13));
        CHECK((c & X87_RC) == (1u << 10));
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
    uint32_t m0;
    uint16_t c0;
    fp_get(&m0, &c0);
    CHECK((m0 & MXCSR_RC) == 0 && (c0 & X87_RC) == 0);
    /* An odd top: yfi_ctx_make must align it itself. */
    unsigned vg_id = STACK_REGISTER(stack, stack + size);
    co_sp = yfi_ctx_make(stack + size - 7, raw_entry, (m0 & ~MXCSR_RC) | (2u << 13),
                         (uint16_t)((c0 & ~X87_RC) | (1u << 10)));
    void *v = sw(&root_sp, co_sp, (void *)0x1234);
    CHECK(v == NULL && raw_step == 1);
    uint32_t m;
    uint16_t c;
    fp_get(&m, &c);
    if (raw_keeps_fp)
        CHECK(m == m0 && c == c0);
    else
        fp_set(m0, c0);
    uint64_t out[6];
    call_with_regs(raw_resume, ROOT_REGS, out);
    check_regs(ROOT_REGS, out);
    CHECK(raw_step == 2);
    fp_get(&m, &c);
    if (raw_keeps_fp)
        CHECK(m == m0 && c == c0);
    else
        fp_set(m0, c0);
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
    uint64_t out[6];
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
    uint64_t out[6];
    for (int i = 0; i < 4; i++) {
        call_with_regs(sched_resume, ROOT_REGS, out);
        check_regs(ROOT_REGS, out);
    }
    intptr_t st;
    CHECK(yf_co_reap(g_co, &st) == 0 && st == 7);
    CHECK(yf_sched_free(s) == 0);
}

/* Default scheduler: a coroutine changes its rounding modes (fesetround for
 * both units, then raw ldmxcsr/fldcw with different modes per unit, FTZ/DAZ
 * and one unmasked-exception bit cleared too) and keeps them across yields;
 * the root never sees them. */
static intptr_t fp_body_default(void *arg)
{
    (void)arg;
    CHECK(fesetround(FE_UPWARD) == 0);
    CHECK(yf_co_yield() == 0);
    CHECK(fegetround() == FE_UPWARD);
    uint32_t m;
    uint16_t c;
    fp_get(&m, &c);
    CHECK((m & MXCSR_RC) == (2u << 13));
    CHECK((c & X87_RC) == (2u << 10));
    /* MXCSR: round down, FTZ (15), DAZ (6); x87: round toward zero, 53-bit precision. */
    uint32_t mine_m = (m & ~MXCSR_RC) | (1u << 13) | 0x8000u | 0x40u;
    uint16_t mine_c = (uint16_t)(((c & ~X87_RC) | (3u << 10)) & ~0x0100u);
    fp_set(mine_m, mine_c);
    /* What the units hold now is what must survive the yield. It is what was
     * set, except under valgrind, whose emulation keeps both rounding modes
     * but drops FTZ, DAZ and the x87 precision control. */
    uint32_t held_m;
    uint16_t held_c;
    fp_get(&held_m, &held_c);
    if (!ON_VALGRIND()) {
        CHECK((held_m & ~0x3fu) == (mine_m & ~0x3fu));
        CHECK(held_c == mine_c);
    }
    CHECK((held_m & MXCSR_RC) == (1u << 13));
    CHECK((held_c & X87_RC) == (3u << 10));
    CHECK(yf_co_yield() == 0);
    fp_get(&m, &c);
    CHECK((m & ~0x3fu) == (held_m & ~0x3fu));
    CHECK(c == held_c);
    return 0;
}

/* A second coroutine running between the yields must start from, and see,
 * the scheduler's environment, not its neighbour's. */
static intptr_t fp_body_plain(void *arg)
{
    (void)arg;
    for (int i = 0; i < 3; i++) {
        uint32_t m;
        uint16_t c;
        fp_get(&m, &c);
        CHECK((m & MXCSR_RC) == 0 && (c & X87_RC) == 0);
        CHECK((m & 0x8040u) == 0);
        CHECK(fegetround() == FE_TONEAREST);
        yf_co_yield();
    }
    return 0;
}

static void check_root_fp(uint32_t m0, uint16_t c0)
{
    uint32_t m;
    uint16_t c;
    fp_get(&m, &c);
    CHECK(fegetround() == FE_TONEAREST);
    CHECK((m & MXCSR_RC) == 0 && (c & X87_RC) == 0);
    CHECK((m & ~0x3fu) == (m0 & ~0x3fu) && c == c0);
}

static void test_fp_default(void)
{
    uint32_t m0;
    uint16_t c0;
    fp_get(&m0, &c0);
    yf_sched *s = yf_sched_new(65536, 0);
    CHECK(s != NULL);
    yf_co *a = yf_co_create(s, fp_body_default, NULL);
    yf_co *b = yf_co_create(s, fp_body_plain, NULL);
    CHECK(a && b);
    for (int i = 0; i < 4; i++) {
        if (yf_co_state(a) != YF_DONE) {
            CHECK(yf_co_resume(a) == 0);
            check_root_fp(m0, c0);
        }
        if (yf_co_state(b) != YF_DONE) {
            CHECK(yf_co_resume(b) == 0);
            check_root_fp(m0, c0);
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
    fp_get(&m, &c);
    uint32_t mine_m = (m & ~MXCSR_RC) | (2u << 13);
    uint16_t mine_c = (uint16_t)((c & ~X87_RC) | (2u << 10));
    CHECK(yf_co_fpenv_set(mine_m, mine_c) == 0);
    /* glibc's fegetround reads the x87 control word. */
    CHECK(fegetround() == FE_UPWARD);
    for (int i = 0; i < 3; i++) {
        CHECK(yf_co_yield() == 0);
        fp_get(&m, &c);
        CHECK((m & ~0x3fu) == (mine_m & ~0x3fu));
        CHECK(c == mine_c);
    }
    /* Reserved MXCSR bits are refused, and change nothing. */
    errno = 0;
    CHECK(yf_co_fpenv_set(0x10000u | mine_m, mine_c) == -1 && errno == EINVAL);
    fp_get(&m, &c);
    CHECK((m & ~0x3fu) == (mine_m & ~0x3fu) && c == mine_c);
    return 0;
}

static void test_fp_fast(void)
{
    uint32_t m0;
    uint16_t c0;
    fp_get(&m0, &c0);
    yf_sched *s = yf_sched_new(65536, YF_SCHED_FPFAST);
    CHECK(s != NULL);
    yf_co *a = yf_co_create(s, fp_body_fast, NULL);
    yf_co *b = yf_co_create(s, fp_body_plain, NULL);
    CHECK(a && b);
    CHECK(yf_sched_run(s) == 8);
    check_root_fp(m0, c0);
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
    static const unsigned rc[4] = {1, 3, 2, 1};
    for (int i = 0; i < 4; i++) {
        CHECK(fesetround(modes[i]) == 0);
        CHECK(yf_co_resume(a) == 0);
        CHECK(fegetround() == modes[i]);
        uint32_t m;
        uint16_t c;
        fp_get(&m, &c);
        CHECK((m & MXCSR_RC) == (rc[i] << 13) && (c & X87_RC) == (rc[i] << 10));
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
    uint32_t m0, m;
    uint16_t c0, c;
    fp_get(&m0, &c0);
    while (yf_co_state(inner_a) != YF_DONE) {
        CHECK(yf_co_resume(inner_a) == 0);
        fp_get(&m, &c);
        CHECK((m & ~0x3fu) == (m0 & ~0x3fu) && c == c0);
        CHECK(yf_co_yield() == 0);
        fp_get(&m, &c);
        CHECK((m & ~0x3fu) == (m0 & ~0x3fu) && c == c0);
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
        uint32_t m;
        uint16_t c;
        fp_get(&m, &c);
        CHECK((m & MXCSR_RC) == (1u << 13) && (c & X87_RC) == (1u << 10));
    }
    CHECK(yf_co_state(inner_a) == YF_DONE);
    CHECK(fesetround(FE_TONEAREST) == 0);
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
    printf("test_ctx: ok\n");
    return 0;
}
