/* ctx_variants_aarch64.S - the switch variants only the benchmarks time
 * (lab.h YF_CTX_*; the frame and the variants are described in
 * ../ctx_aarch64.S, which carries the two the runtime uses). full_ret,
 * mxcsr_cmp and nofp_ret are copies of full, full and nofp there: AArch64
 * has nothing for those x86-64 ablations to vary, and a copy keeps the
 * variant table the same on both architectures. */

#if !defined(__aarch64__)
#error "ctx_variants_aarch64.S is for AArch64 only"
#endif

    .text

#include "../ctx_aarch64.inc"

    SWITCH yfi_ctx_full_ret,    1
    SWITCH yfi_ctx_full_always, 2
    SWITCH yfi_ctx_mxcsr_cmp,   1
    SWITCH yfi_ctx_nofp_ret,    0

    .section .note.GNU-stack, "", %progbits

    GNU_PROPERTY_BTI
