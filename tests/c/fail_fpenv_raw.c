/* fail_fpenv_raw.c - expected to abort: under YF_SCHED_FPFAST a coroutine
 * changes MXCSR with a raw ldmxcsr (FPCR with a raw msr on AArch64) instead
 * of yf_co_fpenv_set, and a debug build of the runtime catches it at the
 * next switch.
 *
 * test-cflags: -DYF_DEBUG
 * expect-abort: changed the FP environment without yf_co_fpenv_set
 */
#include <stdint.h>
#include <stdio.h>

#include "yf.h"

static intptr_t raw_fp_write(void *arg)
{
    (void)arg;
    /* Round down, behind the runtime's back. */
#if defined(__aarch64__)
    uint64_t f;
    __asm__ volatile("mrs %0, fpcr" : "=r"(f));
    f = (f & ~0x00c00000ull) | 0x00800000ull;
    __asm__ volatile("msr fpcr, %0" : : "r"(f));
#else
    uint32_t m;
    __asm__ volatile("stmxcsr %0" : "=m"(m));
    m = (m & ~0x6000u) | 0x2000u;
    __asm__ volatile("ldmxcsr %0" : : "m"(m));
#endif
    yf_co_yield();
    return 0;
}

int main(void)
{
    yf_sched *s = yf_sched_new(65536, YF_SCHED_FPFAST);
    if (!s)
        return 2;
    if (!yf_co_create(s, raw_fp_write, NULL))
        return 2;
    yf_sched_run(s);
    /* Reached only when the runtime missed the violation. */
    fprintf(stderr, "fail_fpenv_raw: the raw FP control write went unnoticed\n");
    return 0;
}
