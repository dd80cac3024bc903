/* ctx_variants_x86_64.S - the switch variants only the benchmarks time
 * (lab.h YF_CTX_*; the frame and the variants are described in
 * ../ctx_x86_64.S, which carries the two the runtime uses). */

#if !defined(__x86_64__)
#error "ctx_variants_x86_64.S is for x86-64 only"
#endif

    .text

#include "../ctx_x86_64.inc"

    SWITCH yfi_ctx_full_ret,    1, 1, 1
    SWITCH yfi_ctx_full_always, 1, 2, 0
    SWITCH yfi_ctx_mxcsr_cmp,   1, 3, 0
    SWITCH yfi_ctx_nofp_ret,    0, 0, 1

    .section .note.GNU-stack, "", @progbits
