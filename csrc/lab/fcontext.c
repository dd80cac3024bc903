/* fcontext.c - the Boost.Context fcontext baseline: its library loaded at run
 * time with dlopen (so that neither the runtime nor the build needs Boost), and
 * the switch and coroutine-life kernels over it, shaped like bench.c's. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "../yfi.h"
#include "lab.h"

static char errbuf[512];

const char *yf_bench_error(void)
{
    return errbuf;
}

/* ---- Boost.Context fcontext (C linkage symbols of libboost_context) ----------------- */

static fctx_jump_fn f_jump;
static fctx_make_fn f_make;

int yf_bench_fcontext_load(const char *path)
{
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(errbuf, sizeof errbuf, "%s", dlerror());
        return -1;
    }
    f_jump = (fctx_jump_fn)dlsym(h, "jump_fcontext");
    f_make = (fctx_make_fn)dlsym(h, "make_fcontext");
    if (!f_jump || !f_make) {
        snprintf(errbuf, sizeof errbuf, "%s has no jump_fcontext/make_fcontext", path);
        f_jump = NULL;
        f_make = NULL;
        return -1;
    }
    return 0;
}

int yfi_bench_fcontext_fns(void **jump, void **make)
{
    if (!f_jump)
        return -1;
    *jump = (void *)f_jump;
    *make = (void *)f_make;
    return 0;
}

static void f_pingpong(ftransfer t)
{
    for (;;)
        t = f_jump(t.ctx, NULL);
}

static int f_loaded(void)
{
    if (f_jump)
        return 1;
    snprintf(errbuf, sizeof errbuf, "fcontext not loaded");
    errno = ENOENT;
    return 0;
}

double yf_bench_switch_fcontext(int64_t n, size_t stack_size)
{
    if (!f_loaded())
        return -1;
    char *stk = malloc(stack_size);
    if (!stk) {
        errno = ENOMEM;
        return -1;
    }
    ftransfer t = f_jump(f_make(stk + stack_size, stack_size, f_pingpong), NULL);
    uint64_t t0 = yfi_now_ns();
    for (int64_t i = 0; i < n; i++)
        t = f_jump(t.ctx, NULL);
    double el = (double)(yfi_now_ns() - t0);
    free(stk);
    return el;
}

static void f_three(ftransfer t)
{
    for (int i = 0; i < 3; i++)
        t = f_jump(t.ctx, NULL);
    /* The fourth switch out ends the life; nobody jumps back here. */
    f_jump(t.ctx, NULL);
}

double yf_bench_create_fcontext(int64_t n, size_t stack_size)
{
    if (!f_loaded())
        return -1;
    uint64_t t0 = yfi_now_ns();
    for (int64_t i = 0; i < n; i++) {
        char *stk = malloc(stack_size);
        if (!stk) {
            errno = ENOMEM;
            return -1;
        }
        ftransfer t = f_jump(f_make(stk + stack_size, stack_size, f_three), NULL);
        for (int k = 0; k < 3; k++)
            t = f_jump(t.ctx, NULL);
        free(stk);
    }
    return (double)(yfi_now_ns() - t0);
}

