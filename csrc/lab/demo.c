/* demo.c - built-in coroutine bodies that Python can start (Python code never
 * runs inside a coroutine, so the bodies are C). */
#include <string.h>

#include "../yfi.h"
#include "lab.h"

intptr_t yf_demo_yield_n(void *arg)
{
    intptr_t n = (intptr_t)arg;
    for (intptr_t i = 0; i < n; i++)
        yf_co_yield();
    return n;
}

/* Touches `bytes` of stack below this frame in one array: a VLA keeps the
 * size a run-time value, and -fstack-clash-protection makes the compiler
 * probe it page by page, so an oversized one hits the guard page instead of
 * jumping past it. */
static __attribute__((noinline)) intptr_t touch(size_t bytes, int yield)
{
    volatile unsigned char buf[bytes ? bytes : 1];
    for (size_t i = 0; i < bytes; i++)
        buf[i] = (unsigned char)i;
    if (yield)
        yf_co_yield();
    intptr_t sum = 0;
    for (size_t i = 0; i < bytes; i += 64)
        sum += buf[i];
    return sum;
}

intptr_t yf_demo_use_stack(void *arg)
{
    return touch((size_t)(intptr_t)arg, 1);
}

intptr_t yf_demo_overflow(void *arg)
{
    return touch((size_t)(intptr_t)arg, 0);
}

intptr_t yf_demo_block_once(void *arg)
{
    (void)arg;
    return yf_co_block();
}

intptr_t yf_demo_fp_round(void *arg)
{
    unsigned mode = (unsigned)(intptr_t)arg & 3u;
    uint32_t m;
    uint16_t c;
    yf_fpenv_get(&m, &c);
#if defined(__aarch64__)
    /* FPCR.RMode is bits 22-23 (0 nearest, 1 up, 2 down, 3 toward zero);
     * there is no second control word. */
    m = (m & ~0x00c00000u) | (mode << 22);
#else
    /* MXCSR rounding control is bits 13-14; the x87 control word's is 10-11. */
    m = (m & ~0x6000u) | (mode << 13);
    c = (uint16_t)((c & ~0x0c00u) | (mode << 10));
#endif
    if (yf_co_fpenv_set(m, c) != 0)
        return -1;
    yf_co_yield();
    yf_fpenv_get(&m, &c);
    return (intptr_t)m;
}
