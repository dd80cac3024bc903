/* test_ctx.c - the context switch keeps what the psABI makes callee-saved:
 * %rbx, %rbp, %r12-%r15, the MXCSR control bits and the x87 control word, and
 * a fresh context starts on a 16-byte aligned stack. Raw switch variants and
 * the scheduler (default and YF_SCHED_FPFAST) are both checked by
 * ctx_tests.h, which test_ctx_aarch64.c shares for AAPCS64; this file is the
 * x86-64 part.
 *
 * arch: x86_64
 */
#define _GNU_SOURCE
#define NREGS 6 /* %rbx, %rbp, %r12-%r15 */
#include "ctx_tests.h"

#define MXCSR_RC 0x6000u /* MXCSR rounding control, bits 13-14 */
#define X87_RC 0x0c00u   /* x87 control word rounding control, bits 10-11 */
#define MXCSR_FLAGS 0x3fu /* MXCSR's sticky exception flags, not control */

/* call_with_regs(fn, in, out): loads in[0..5] into %rbx, %rbp, %r12-%r15,
 * calls fn(), then stores those six registers into out[0..5]. Written as a
 * whole function so that %rbp can be loaded freely, and so that the call is
 * made with the stack aligned and no red zone to trample. */
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

/* sp_at_call(): the caller's %rsp at its call instruction. */
__asm__(
    "    .text\n"
    "    .type sp_at_call, @function\n"
    "sp_at_call:\n"
    "    leaq 8(%rsp), %rax\n"
    "    ret\n"
    "    .size sp_at_call, .-sp_at_call\n");

static uint64_t ROOT_REGS[NREGS] = {
    0x1111111111111111ull, 0x2222222222222222ull, 0x3333333333333333ull,
    0x4444444444444444ull, 0x5555555555555555ull, 0x6666666666666666ull,
};
static uint64_t CO_REGS[NREGS] = {
    0xa1a1a1a1a1a1a1a1ull, 0xb2b2b2b2b2b2b2b2ull, 0xc3c3c3c3c3c3c3c3ull,
    0xd4d4d4d4d4d4d4d4ull, 0xe5e5e5e5e5e5e5e5ull, 0xf6f6f6f6f6f6f6f6ull,
};

static const char *const REG_NAMES[NREGS] = {"%rbx", "%rbp", "%r12", "%r13", "%r14", "%r15"};

static fpenv fp_now(void)
{
    fpenv e;
    __asm__ volatile("stmxcsr %0" : "=m"(e.w));
    __asm__ volatile("fnstcw %0" : "=m"(e.x));
    return e;
}

static void fp_load(fpenv e)
{
    __asm__ volatile("ldmxcsr %0" : : "m"(e.w));
    __asm__ volatile("fldcw %0" : : "m"(e.x));
}

static int fp_equal(fpenv a, fpenv b)
{
    return a.w == b.w && a.x == b.x;
}

static void check_env(fpenv want)
{
    fpenv e = fp_now();
    CHECK((e.w & ~MXCSR_FLAGS) == (want.w & ~MXCSR_FLAGS));
    CHECK(e.x == want.x);
}

/* Both units encode the rounding modes alike, in FE_MODES order. */
static const unsigned RC_OF[4] = {0, 1, 2, 3};

static void check_rounding(int fe_mode)
{
    fpenv e = fp_now();
    unsigned rc = RC_OF[mode_index(fe_mode)];
    CHECK((e.w & MXCSR_RC) == (rc << 13));
    CHECK((e.x & X87_RC) == (rc << 10));
}

/* Besides the rounding modes, no FTZ (bit 15) or DAZ (bit 6). */
static void check_sched_env(void)
{
    fpenv e = fp_now();
    CHECK((e.w & MXCSR_RC) == 0 && (e.x & X87_RC) == 0);
    CHECK((e.w & 0x8040u) == 0);
}

/* Up in MXCSR, down in the x87 unit. */
static fpenv fp_raw_start(fpenv root)
{
    return (fpenv){(root.w & ~MXCSR_RC) | (2u << 13), (uint16_t)((root.x & ~X87_RC) | (1u << 10))};
}

/* Raw ldmxcsr/fldcw with different modes per unit, FTZ/DAZ and one
 * unmasked-exception bit cleared too. */
static void set_own_env_across_yield(void)
{
    fpenv e = fp_now();
    /* MXCSR: round down, FTZ (15), DAZ (6); x87: round toward zero, 53-bit precision. */
    fpenv mine = {(e.w & ~MXCSR_RC) | (1u << 13) | 0x8000u | 0x40u,
                  (uint16_t)(((e.x & ~X87_RC) | (3u << 10)) & ~0x0100u)};
    fp_load(mine);
    /* What the units hold now is what must survive the yield. It is what was
     * set, except under valgrind, whose emulation keeps both rounding modes
     * but drops FTZ, DAZ and the x87 precision control. */
    fpenv held = fp_now();
    if (!ON_VALGRIND()) {
        CHECK((held.w & ~MXCSR_FLAGS) == (mine.w & ~MXCSR_FLAGS));
        CHECK(held.x == mine.x);
    }
    CHECK((held.w & MXCSR_RC) == (1u << 13));
    CHECK((held.x & X87_RC) == (3u << 10));
    CHECK(yf_co_yield() == 0);
    check_env(held);
}

/* Up in both units (glibc's fegetround reads the x87 control word). */
static fpenv fp_fast_env(void)
{
    fpenv e = fp_now();
    return (fpenv){(e.w & ~MXCSR_RC) | (2u << 13), (uint16_t)((e.x & ~X87_RC) | (2u << 10))};
}

/* Reserved MXCSR bits. */
static void check_fpenv_set_refuses(fpenv mine)
{
    CHECK_ERR(yf_co_fpenv_set(0x10000u | mine.w, mine.x), EINVAL);
}

/* Touches an aligned SSE slot with movaps (faults when misaligned) and checks
 * the alignment of its own calls. */
typedef double v2d __attribute__((vector_size(16)));
static __attribute__((noinline)) void check_alignment(void)
{
    CHECK(sp_at_call() % 16 == 0);
    volatile v2d v = {1.0, 2.0};
    v2d w = v;
    __asm__ volatile("movaps %1, %0" : "=m"(v) : "x"(w + w));
    CHECK(v[0] == 2.0 && v[1] == 4.0);
    volatile long double ld = 3.0L;
    CHECK(((uintptr_t)&ld & 15) == 0 || __alignof__(long double) < 16);
    CHECK(ld * 2 == 6.0L);
}

int main(void)
{
    run_shared_ctx_tests();
    printf("test_ctx: ok\n");
    return 0;
}
