/* bti_aarch64.c - every AArch64 switch entry point is a BTI landing pad.
 *
 * Freestanding (no C library, no start files): Debian's crt objects and
 * libgcc carry no BTI property, so a program linked with them has BTI off,
 * and forcing it on faults in their own indirect calls before main. Here
 * the only inputs are this file, built with -mbranch-protection=standard,
 * ctx_aarch64.S and lab/ctx_variants_aarch64.S; the linker ANDs their GNU
 * property notes, so the program has BTI on only when both switch files
 * carry the note, and then
 * every indirect call (`blr`) must land on a `bti c`. It calls each switch
 * variant through a pointer, into a fresh context whose frame it lays from
 * struct yfi_frame, and exits 0 when every round trip returned the value
 * the other side sent; a missing landing pad dies by SIGILL instead.
 */
#include <stdint.h>

#include "yfi.h"
#include "lab/lab.h"

/* lab/ctx_variants_aarch64.S; the runtime's two come from yfi.h. */
YFI_FUNC void *yfi_ctx_full_ret(void **save, void *load, void *value);
YFI_FUNC void *yfi_ctx_full_always(void **save, void *load, void *value);
YFI_FUNC void *yfi_ctx_mxcsr_cmp(void **save, void *load, void *value);
YFI_FUNC void *yfi_ctx_nofp_ret(void **save, void *load, void *value);

static void *main_sp, *co_sp;
static yfi_ctx_fn volatile cur;

/* The pointers are read through a volatile array, so each call is a blr. */
static yfi_ctx_fn volatile variants[] = {
    yfi_ctx_full, yfi_ctx_full_ret, yfi_ctx_full_always, yfi_ctx_mxcsr_cmp,
    yfi_ctx_nofp, yfi_ctx_nofp_ret,
};

static __attribute__((noreturn)) void sys_exit(long code)
{
    register long x0 __asm__("x0") = code;
    register long x8 __asm__("x8") = 94; /* exit_group */
    __asm__ volatile("svc #0" : : "r"(x0), "r"(x8) : "memory");
    __builtin_unreachable();
}

/* Entered by yfi_ctx_entry's blr; answers every switch with value + 1. */
static void entry(void *value)
{
    for (;;)
        value = cur(&co_sp, main_sp, (void *)((uintptr_t)value + 1));
}

static uint64_t stack[4096] __attribute__((aligned(16)));

__attribute__((noreturn)) void _start(void)
{
    struct yfi_frame *f = (struct yfi_frame *)((char *)stack + sizeof stack) - 1;
    uint64_t fpcr;
    __asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
    f->fpcr = fpcr;
    f->x19 = (uint64_t)(uintptr_t)entry;
    f->x29 = 0;
    f->x30 = (uint64_t)(uintptr_t)yfi_ctx_entry;
    co_sp = f;
    for (unsigned i = 0; i < sizeof variants / sizeof variants[0]; i++) {
        cur = variants[i];
        void *v = cur(&main_sp, co_sp, (void *)(uintptr_t)(100 * i));
        if (v != (void *)(uintptr_t)(100 * i + 1))
            sys_exit(10 + i);
    }
    sys_exit(0);
}
