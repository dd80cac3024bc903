/* placement.h - copies of one timed function that differ only in where
 * their code lies.
 *
 * On the machine this suite was built on (AMD Zen 4) a switch's time doubles
 * or triples with nothing but the position of the calling loop's code
 * (csrc/programs/switch_placement.c measures it; notebook 01 shows it): each
 * switch ends in an indirect jump whose prediction depends on the addresses
 * of the branches before it. A figure from one build is therefore partly a
 * draw of where the linker put the loop. A timed function defined through
 * YF_PLACED and YF_PAD exists in copies, the same C shifted by 0, 2, 4, ...
 * bytes of never-executed padding inside a 64-byte-aligned function; a
 * benchmark that times every copy and keeps the fastest gives every
 * competitor, and every build, the same rule. */
#ifndef YF_LAB_PLACEMENT_H
#define YF_LAB_PLACEMENT_H

#define YF_STR_(x) #x
#define YF_STR(x) YF_STR_(x)
#define YF_PLACED __attribute__((noinline, aligned(64)))
#if defined(__aarch64__)
/* A64 instructions are 4 bytes and 4-aligned: there the copies shift by
 * 2n bytes (0, 4, ... 28) of zero words, each an undefined instruction. */
#define YF_PAD(n) __asm__ volatile("b 1f\n.if " YF_STR(n) "\n.skip 2*" YF_STR(n) ", 0\n.endif\n1:")
#else
#define YF_PAD(n) __asm__ volatile("jmp 1f\n.if " YF_STR(n) "\n.skip " YF_STR(n) ", 0xcc\n.endif\n1:")
#endif

/* X(P) once per placement, P the padding; YF_PLACEMENT_TABLE(f) the array
 * initializer {f_0, f_2, ...} in placement order. 8 copies: the count
 * YF_BENCH_PLACEMENTS of lab.h. */
#define YF_EACH_PLACEMENT(X) X(0) X(2) X(4) X(6) X(8) X(10) X(12) X(14)
#define YF_PLACEMENT_TABLE(f) {f##_0, f##_2, f##_4, f##_6, f##_8, f##_10, f##_12, f##_14}
#define YF_NPLACEMENTS 8

#endif
