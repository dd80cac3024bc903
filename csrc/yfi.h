/* yfi.h - internals shared between the runtime's C files (not installed). */
#ifndef YFI_H
#define YFI_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "yf.h"
#include "yfi_build.h"

#define YFI_FUNC __attribute__((visibility("hidden")))
#define YF_LIKELY(x) __builtin_expect(!!(x), 1)
#define YF_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* Checks that survive NDEBUG: report file, line and expression, then abort. */
#define YF_ASSERT(e) ((e) ? (void)0 : yfi_assert_fail(#e, __FILE__, __LINE__))
YFI_FUNC __attribute__((noreturn)) void yfi_assert_fail(const char *e, const char *file, int line);

/* The runtime's two ways of failing: errno = err, then -1 or NULL. */
static inline int yfi_fail(int err)
{
    errno = err;
    return -1;
}

static inline void *yfi_fail_null(int err)
{
    errno = err;
    return NULL;
}

/* CLOCK_MONOTONIC in ns: the one clock of the runtime, the lab and the hooks
 * (the loop's cached time, trace records, timeouts, benchmark intervals). */
static inline uint64_t yfi_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- valgrind builds --------------------------------------------------- */

/* Valgrind's client requests, when its header is installed: a few no-op
 * instructions outside valgrind, and only where a stack is carved or unmapped
 * (stack.c), never on a switch. Under memcheck, a stack pointer that moves
 * between two registered stacks is a switch, not a 64 KiB frame pop. */
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define YFI_VALGRIND 1
#endif
#endif

/* ---- context switch (ctx_<arch>.S) -------------------------------------- */

/* The frame a switch leaves on the stack it leaves; the offsets are the
 * table at the top of ctx_<arch>.S and are checked in co.c. The FP
 * environment travels as two numbers everywhere (yf.h's yf_co_fpenv_set):
 * on x86-64 MXCSR and the x87 control word; on AArch64 FPCR's low 32 bits
 * and 0, since it has one FP control register. */
#if defined(__x86_64__)
#define YFI_ARCH "x86_64"
struct yfi_frame {
    uint32_t mxcsr;
    uint16_t x87cw;
    uint16_t pad;
    uint64_t r12, r13, r14, r15, rbx, rbp;
    uint64_t rip;
};
/* MXCSR's low six bits are sticky exception flags, not control state; the
 * other reserved bits make ldmxcsr raise #GP. */
#define YFI_FPENV_STATUS 0x3fu
#define YFI_FPENV_VALID 0xffffu
#define YFI_HAS_X87 1
#define YFI_FPENV_FMT "MXCSR 0x%x, x87 CW 0x%x"
#elif defined(__aarch64__)
#define YFI_ARCH "aarch64"
struct yfi_frame {
    uint64_t fpcr;
    uint64_t pad;
    uint64_t x19, x20, x21, x22, x23, x24, x25, x26, x27, x28;
    uint64_t x29, x30;
    uint64_t d8, d9, d10, d11, d12, d13, d14, d15;
};
/* FPCR holds no status (the flags live in FPSR). Writable fields: FIZ, AH,
 * NEP (bits 0-2, FEAT_AFP), the trap enables (8-12, 15), Len (16-18), FZ16
 * (19), Stride (20-21), RMode (22-23), FZ (24), DN (25), AHP (26); the rest
 * is RES0. */
#define YFI_FPENV_STATUS 0u
#define YFI_FPENV_VALID 0x07ff9f07u
#define YFI_HAS_X87 0
#define YFI_FPENV_FMT "FPCR 0x%x (second word 0x%x)"
#else
#error "yfcore: no context switch for this architecture; supported: x86_64 (csrc/ctx_x86_64.S), aarch64 (csrc/ctx_aarch64.S)"
#endif

/* The runtime's two switches (ctx_x86_64.S); the variants the benchmarks
 * compare are in lab/. */
YFI_FUNC void *yfi_ctx_full(void **save, void *load, void *value);
YFI_FUNC void *yfi_ctx_nofp(void **save, void *load, void *value);
YFI_FUNC void yfi_ctx_entry(void);
/* The same code as yfi_ctx_full and yfi_ctx_nofp, for callers that end in a
 * tail call and return the transfer value (always 0 there) as an int. */
YFI_FUNC int yfi_ctx_full_int(void **save, void *load, void *value);
YFI_FUNC int yfi_ctx_nofp_int(void **save, void *load, void *value);
#if defined(__x86_64__)
/* The run loops' resumes (co.c's run_resume; ctx_x86_64.S says what each
 * does with the FP control state). */
YFI_FUNC uint64_t yfi_run_first(struct yf_co *co, uint64_t fpword);
YFI_FUNC uint64_t yfi_run_known(struct yf_co *co, uint64_t fpword);
YFI_FUNC uint64_t yfi_run_live(struct yf_co *co, uint64_t fpword);
#endif
/* The one-way switches out of a finished coroutine: `load` is resumed as by
 * yfi_ctx_full and yfi_ctx_nofp, `save` is ignored and nothing of the
 * current context is kept. */
YFI_FUNC __attribute__((noreturn)) void yfi_ctx_full_exit(void **save, void *load, void *value);
YFI_FUNC __attribute__((noreturn)) void yfi_ctx_nofp_exit(void **save, void *load, void *value);

/* Lays a fresh frame below `top` (16-byte aligned) so that switching to the
 * returned stack pointer calls entry(value) with an ABI-aligned stack and
 * the FP environment (mxcsr, x87cw) (see struct yfi_frame for AArch64). */
YFI_FUNC void *yfi_ctx_make(void *top, void (*entry)(void *), uint32_t mxcsr, uint16_t x87cw);

#if defined(__x86_64__)
static inline void yfi_fpenv_read(uint32_t *mxcsr, uint16_t *x87cw)
{
    __asm__ volatile("stmxcsr %0" : "=m"(*mxcsr));
    __asm__ volatile("fnstcw %0" : "=m"(*x87cw));
}

static inline void yfi_fpenv_write(uint32_t mxcsr, uint16_t x87cw)
{
    __asm__ volatile("ldmxcsr %0" : : "m"(mxcsr));
    __asm__ volatile("fldcw %0" : : "m"(x87cw));
}
#elif defined(__aarch64__)
static inline void yfi_fpenv_read(uint32_t *fpcr, uint16_t *none)
{
    uint64_t v;
    __asm__ volatile("mrs %0, fpcr" : "=r"(v));
    *fpcr = (uint32_t)v;
    *none = 0;
}

static inline void yfi_fpenv_write(uint32_t fpcr, uint16_t none)
{
    (void)none;
    /* Writing FPCR can cost far more than reading it (see ctx_aarch64.S). */
    uint64_t v;
    __asm__ volatile("mrs %0, fpcr" : "=r"(v));
    if (v != fpcr)
        __asm__ volatile("msr fpcr, %0" : : "r"((uint64_t)fpcr));
}
#endif

/* ---- stacks (stack.c) ---------------------------------------------------- */

/* Each stack is one slot of `size` bytes, aligned to `size`, carved from an
 * arena. The lowest page of the slot is the guard; the top 64 bytes hold a
 * header: the slot's size, a magic word and the id of the coroutine made on
 * it. The runtime writes it and never reads it (the SIGSEGV handler names
 * the owner from yf_co_current()); it marks each slot's top and owner for
 * whoever reads a core dump. */
struct yfi_slot_header {
    uint64_t owner_id;
    uint64_t size;
    uint64_t magic;
    uint64_t pad[5];
};

#define YFI_SLOT_MAGIC 0x79666b5f736c6f74ull

/* The header of the slot at `slot` of `size` bytes: its top 64 bytes. */
static inline struct yfi_slot_header *yfi_slot_header(uintptr_t slot, size_t size)
{
    return (struct yfi_slot_header *)(slot + size) - 1;
}

enum { YFI_GUARD_NONE = 0, YFI_GUARD_MPROTECT = 1, YFI_GUARD_REGIONS = 2 };

struct yfi_arena;

struct yfi_pool {
    size_t size;               /* slot size, a power of two */
    size_t page;
    int guard;                 /* YFI_GUARD_* */
    struct yfi_arena *arenas;  /* newest first */
    size_t next_arena_slots;
    void **free;               /* LIFO of free slot bases: warm stacks first */
    size_t nfree, capfree;
    uint64_t carved, narenas;
    /* yfi_slot_top's colour: (slot >> shift) & colour_mask, the slot's index
     * modulo the number of colours (both powers of two); a division there
     * cost ~20 cycles per coroutine created. */
    unsigned shift;
    size_t colour_mask;
};

/* size is a power of two (the arenas' alignment and the colours rely on it). */
YFI_FUNC int yfi_pool_init(struct yfi_pool *p, size_t size, int guard);
YFI_FUNC void yfi_pool_destroy(struct yfi_pool *p);
/* The out-of-line halves of get and put: carve a new slot (guard installed
 * then; NULL with ENOMEM), and grow the free list to keep one. */
YFI_FUNC void *yfi_pool_carve(struct yfi_pool *p);
YFI_FUNC void yfi_pool_put_grow(struct yfi_pool *p, void *slot);

/* A slot base, from the pool when one is free, else carved. NULL with
 * ENOMEM. Inline: a pooled get or put is two loads and a store, and a call
 * around it cost more than that in every coroutine's life. */
static inline void *yfi_pool_get(struct yfi_pool *p)
{
    if (YF_LIKELY(p->nfree))
        return p->free[--p->nfree];
    return yfi_pool_carve(p);
}

static inline void yfi_pool_put(struct yfi_pool *p, void *slot)
{
    if (YF_LIKELY(p->nfree < p->capfree)) {
        p->free[p->nfree++] = slot;
        return;
    }
    yfi_pool_put_grow(p, slot);
}

YFI_FUNC size_t yfi_pool_trim(struct yfi_pool *p);

/* Stack tops step down this many bytes per colour. */
#define YFI_COLOUR_STEP 64

/* Top of the usable stack of a slot: below the header, lowered by a cache
 * colour (the slot's index modulo the pool's colours) so that stacks of
 * neighbouring slots do not alias in L1 sets. */
static inline void *yfi_slot_top(const struct yfi_pool *p, void *slot)
{
    size_t colour = ((uintptr_t)slot >> p->shift) & p->colour_mask;
    char *top = (char *)yfi_slot_header((uintptr_t)slot, p->size) - colour * YFI_COLOUR_STEP;
    return (void *)((uintptr_t)top & ~(uintptr_t)15);
}
YFI_FUNC size_t yfi_slot_hwm(const struct yfi_pool *p, void *slot);
/* The usable stack every slot of the pool has at least (yf_sched_usable_stack). */
YFI_FUNC size_t yfi_pool_usable(const struct yfi_pool *p);
YFI_FUNC int yfi_guard_install(void *addr, size_t len, int guard);
/* Installs the process-wide SIGSEGV reporter (again if another handler took
 * SIGSEGV since; that one is chained to) and this thread's alternate signal
 * stack. -1 with errno from mmap/sigaltstack/sigaction. */
YFI_FUNC int yfi_guard_reporter_install(void);
/* This thread's alternate signal stack, made once per thread and unmapped
 * when the thread ends (a stack the thread already had is kept). Called by a
 * resume while the thread's flag says it has none (every resume from the
 * root context until it succeeds), so a coroutine resumed on a thread
 * that never made a scheduler still gets its overflow reported. */
YFI_FUNC int yfi_altstack_install(void);

/* The runtime's per-thread state, one block so that resume reaches both
 * fields through one GOT load (initial-exec: the module is loaded by dlopen,
 * and the general-dynamic model would call __tls_get_addr on every switch;
 * glibc keeps surplus static TLS for exactly this). */
struct yfi_thread {
    struct yf_co *cur;          /* the running coroutine; NULL in the root context */
    int altstack_ready;         /* yfi_altstack_install succeeded on this thread */
    /* x86-64: the root is in a run loop (co.c's run_resume), so that a
     * coroutine the root resumed may yield to it leaving its FP control
     * state in the CPU. */
    int in_run;
};
YFI_FUNC extern __thread struct yfi_thread yfi_thr __attribute__((tls_model("initial-exec")));

/* ---- I/O (io.c) ------------------------------------------------------------ */

struct iovec;
/* writev that never raises SIGPIPE: sendmsg with MSG_NOSIGNAL on sockets;
 * on other fds (pipes) SIGPIPE is blocked around the writev and one it
 * raised is taken back. A closed reader gives -1 with EPIPE. Never retries
 * EINTR (that is the caller's to see). */
YFI_FUNC long yfi_writev_nosigpipe(int fd, struct iovec *iov, int cnt);

#endif
