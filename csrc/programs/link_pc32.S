/* link_pc32.S - the 2016/08/10 link failure, one reference form per build.
 *
 * link_pc32_entry() calls link_target (a global function) and reads
 * link_counter (a global variable); the macros pick how each reference is
 * written, as notebook 04 builds this file into a shared library:
 *
 *   LINK_CALL=1  raw `call` with an R_X86_64_PC32 relocation: what gas
 *                emitted for a plain `call sym` until binutils 2.31 (2018)
 *                switched it to R_X86_64_PLT32 (the diary's 2016 assembler)
 *   LINK_CALL=2  plain `call link_target` (R_X86_64_PLT32 with today's gas)
 *   LINK_CALL=3  `call link_target@PLT`, the PIC spelling
 *   LINK_CALL=4  raw PC32 call to a file-local alias of link_target
 *   LINK_DATA=1  `movq link_counter(%rip)`: PC32 against a global variable
 *   LINK_DATA=2  through the GOT (`link_counter@GOTPCREL(%rip)`), the PIC way
 *   LINK_DATA=3  PC32 against a file-local alias of link_counter
 *   LINK_HIDDEN  both symbols get hidden visibility
 *
 * A PC32 displacement is fixed at link time, so it may only name a symbol
 * the linker knows cannot move: hidden, local, or in the same executable.
 * A default-visibility global in a shared object can be interposed by
 * another definition at load time, hence the linker's refusal.
 */

#ifndef LINK_CALL
#define LINK_CALL 2
#endif
#ifndef LINK_DATA
#define LINK_DATA 2
#endif

    .text
    .globl link_target
#ifdef LINK_HIDDEN
    .hidden link_target
#endif
    .type link_target, @function
    .p2align 4
link_target:
    .cfi_startproc
    movl    $42, %eax
    ret
    .cfi_endproc
    .size link_target, .-link_target
    /* Not .globl: a local symbol is bound at link time. */
    .set link_target_local, link_target

    .globl link_pc32_entry
    .type link_pc32_entry, @function
    .p2align 4
link_pc32_entry:
    .cfi_startproc
    subq    $8, %rsp
    .cfi_adjust_cfa_offset 8
#if LINK_CALL == 1
    /* e8 + rel32, the encoding of `call`, with the relocation the 2016 gas
     * emitted for it spelled out (.reloc keeps gas from resolving it here). */
    .byte   0xe8
    .reloc  ., R_X86_64_PC32, link_target - 4
    .long   0
#elif LINK_CALL == 2
    call    link_target
#elif LINK_CALL == 3
    call    link_target@PLT
#elif LINK_CALL == 4
    .byte   0xe8
    .long   link_target_local - . - 4
#else
#error "LINK_CALL must be 1..4"
#endif
#if LINK_DATA == 1
    addq    link_counter(%rip), %rax
#elif LINK_DATA == 2
    movq    link_counter@GOTPCREL(%rip), %rdx
    addq    (%rdx), %rax
#elif LINK_DATA == 3
    addq    link_counter_local(%rip), %rax
#else
#error "LINK_DATA must be 1..3"
#endif
    addq    $8, %rsp
    .cfi_adjust_cfa_offset -8
    ret
    .cfi_endproc
    .size link_pc32_entry, .-link_pc32_entry

    .data
    .globl link_counter
#ifdef LINK_HIDDEN
    .hidden link_counter
#endif
    .type link_counter, @object
    .size link_counter, 8
    .p2align 3
link_counter:
    .quad   1000
    .set link_counter_local, link_counter

    .section .note.GNU-stack, "", @progbits
