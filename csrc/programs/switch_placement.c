/* switch_placement.c - how a one-way context switch's speed depends on where
 * the two saved frames lie relative to each other modulo 4096 bytes.
 *
 * A ping-pong switch stores one context's registers (a 64-byte frame on its
 * stack) and at once loads the other's frame from the other stack. When the
 * two frames' addresses agree in their low 12 bits, the loads look, to the
 * CPU's memory-disambiguation logic that compares only those bits early, as
 * if they read what the stores just wrote ("4K aliasing"): they wait or are
 * replayed. This program measures it for Boost.Context's fcontext and for
 * yfcore's own bare switch (default and FP-fast variants): the main side
 * runs on this thread's stack as in the benchmarks; the coroutine's stack top
 * is placed so that (coroutine frame - main frame) mod 4096 equals each
 * distance asked for. Cells run interleaved, in a new random order every
 * round; one JSON line per cell with every round's ns per one-way switch.
 *
 * The second experiment moves code instead of stacks: NCODE copies of each
 * system's calling loop, the k-th shifted k bytes inside its own 4 KiB-aligned
 * function, the coroutine side and the stacks unchanged. The third repeats
 * the edits that once seemed to explain a slow Boost figure (a larger
 * malloc, a lower stack top), each edit a copy of the kernel of its own, and
 * reports where each copy's loop landed.
 *
 * usage: switch_placement stack BOOST_LIB N ROUNDS COPY D1 [D2 ...]
 *        switch_placement code  BOOST_LIB N ROUNDS
 *        switch_placement edits BOOST_LIB N ROUNDS
 *   BOOST_LIB  path or soname of libboost_context ("-" to leave Boost out)
 *   N          round trips per measurement; each cell is timed ROUNDS times
 *   COPY       which code copy (0..31) the stack experiment runs
 *   Dk         distances in bytes, taken modulo 4096 (negative allowed)
 * Every cell prints one JSON line; "loop_ra_low12" is the low 12 bits of the
 * return address of the call in the main side's timed loop.
 */
#define _GNU_SOURCE
#if !defined(__x86_64__)
#error "switch_placement.c shifts x86-64 code by single bytes (its padding is x86 code); it has no form for this architecture"
#endif

#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "yfi.h"
#include "lab/lab.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

#define STACK 65536
#define NCODE 32
#define STR_(x) #x
#define STR(x) STR_(x)
/* Both frames keep the resume address in their top slot (ctx_x86_64.S's
 * table; Boost's x86_64 SysV frame has the same layout). */
#define FRAME_RIP 56

static uintptr_t frame_rip(void *frame)
{
    return *(uintptr_t *)((char *)frame + FRAME_RIP);
}

/* Boost.Context's C-linkage entry points (types from lab.h), called through
 * pointers as the in-process kernels call them. */
static fctx_jump_fn f_jump;
static fctx_make_fn f_make;

/* What the last kernel call saw: the saved frames of the main side and of
 * the coroutine, and the resume address of the main side's timed loop. */
static uintptr_t main_frame, co_frame, loop_ra;

/* The coroutine side of every Boost kernel. Its second entry comes from the
 * main side's timed loop, whose saved frame holds the loop's return address. */
static __attribute__((noinline, aligned(4096))) void f_pingpong(ftransfer t)
{
    main_frame = (uintptr_t)t.ctx;
    t = f_jump(t.ctx, NULL);
    loop_ra = frame_rip(t.ctx);
    for (;;)
        t = f_jump(t.ctx, NULL);
}

static struct {
    void *main_sp, *co_sp;
    yfi_ctx_fn sw;
} raw;

static __attribute__((noinline, aligned(4096))) void raw_body(void *v)
{
    (void)v;
    for (;;)
        raw.sw(&raw.co_sp, raw.main_sp, NULL);
}

/* One copy of each kernel per code offset `pad`: the same C, shifted by pad
 * bytes of never-executed padding at the start of a 4 KiB-aligned function.
 * A loop of n round trips after one warm-up trip, as in csrc's kernels. */
#define BOOST_KERNEL(name, pad)                                                     \
    static __attribute__((noinline, aligned(4096))) double name(int64_t n, char *top) \
    {                                                                               \
        __asm__ volatile("jmp 1f\n.skip " STR(pad) ", 0xcc\n1:");                   \
        ftransfer t = f_jump(f_make(top, STACK, f_pingpong), NULL);                 \
        co_frame = (uintptr_t)t.ctx;                                                \
        double t0 = now();                                                          \
        for (int64_t i = 0; i < n; i++)                                             \
            t = f_jump(t.ctx, NULL);                                                \
        return now() - t0;                                                          \
    }

#define RAW_KERNEL(name, pad)                                                       \
    static __attribute__((noinline, aligned(4096))) double name(int64_t n, char *top) \
    {                                                                               \
        __asm__ volatile("jmp 1f\n.skip " STR(pad) ", 0xcc\n1:");                   \
        uint32_t m;                                                                 \
        uint16_t c;                                                                 \
        yfi_fpenv_read(&m, &c);                                                     \
        raw.co_sp = yfi_ctx_make(top, raw_body, m, c);                              \
        raw.sw(&raw.main_sp, raw.co_sp, NULL);                                      \
        double t0 = now();                                                          \
        for (int64_t i = 0; i < n; i++)                                             \
            raw.sw(&raw.main_sp, raw.co_sp, NULL);                                  \
        double t = now() - t0;                                                      \
        main_frame = (uintptr_t)raw.main_sp;                                        \
        co_frame = (uintptr_t)raw.co_sp;                                            \
        loop_ra = frame_rip(raw.main_sp);                                           \
        return t;                                                                   \
    }

#define COPIES(K, p)                                                                \
    K(p##_0, 0) K(p##_1, 1) K(p##_2, 2) K(p##_3, 3) K(p##_4, 4) K(p##_5, 5)           \
    K(p##_6, 6) K(p##_7, 7) K(p##_8, 8) K(p##_9, 9) K(p##_10, 10) K(p##_11, 11)       \
    K(p##_12, 12) K(p##_13, 13) K(p##_14, 14) K(p##_15, 15) K(p##_16, 16)             \
    K(p##_17, 17) K(p##_18, 18) K(p##_19, 19) K(p##_20, 20) K(p##_21, 21)             \
    K(p##_22, 22) K(p##_23, 23) K(p##_24, 24) K(p##_25, 25) K(p##_26, 26)             \
    K(p##_27, 27) K(p##_28, 28) K(p##_29, 29) K(p##_30, 30) K(p##_31, 31)
#define TABLE(p)                                                                    \
    {p##_0, p##_1, p##_2, p##_3, p##_4, p##_5, p##_6, p##_7, p##_8, p##_9, p##_10,    \
     p##_11, p##_12, p##_13, p##_14, p##_15, p##_16, p##_17, p##_18, p##_19, p##_20,  \
     p##_21, p##_22, p##_23, p##_24, p##_25, p##_26, p##_27, p##_28, p##_29, p##_30,  \
     p##_31}

/* The raw kernels read raw.sw, set before each call: one set of copies
 * serves both yfcore variants. */
COPIES(BOOST_KERNEL, boost)
COPIES(RAW_KERNEL, rawk)

typedef double (*kernel)(int64_t n, char *top);
static const kernel boost_copies[NCODE] = TABLE(boost);
static const kernel raw_copies[NCODE] = TABLE(rawk);

/* The _ret variants end with `ret` instead of an indirect `jmp`. */
enum { BOOST, YF_FULL, YF_NOFP, YF_FULL_RET, YF_NOFP_RET, NSYS };
static const char *sysname[NSYS] = {"boost_fcontext", "yf_raw", "yf_raw_fpfast", "yf_raw_ret", "yf_raw_fpfast_ret"};
static const int raw_variant[NSYS] = {-1, YF_CTX_FULL, YF_CTX_NOFP, YF_CTX_FULL_RET, YF_CTX_NOFP_RET};

/* One measurement of system `sys`, code copy `copy`, coroutine top `top`. */
static double measure(int sys, int copy, int64_t n, char *top)
{
    if (sys == BOOST)
        return boost_copies[copy](n, top);
    raw.sw = yfi_ctx_variants[raw_variant[sys]];
    return raw_copies[copy](n, top);
}

/* The edits: the Boost switch kernel as it was written in csrc (its stack
 * from malloc, the top at the chunk's end), each copy with one change to
 * the allocation size or to where the top goes. */
#define EDIT_KERNEL(name, extra, topoff)                                            \
    static __attribute__((noinline, aligned(4096))) double name(int64_t n, char *unused) \
    {                                                                               \
        (void)unused;                                                               \
        char *stk = malloc(STACK + (extra));                                        \
        if (!stk)                                                                   \
            return -1;                                                              \
        ftransfer t = f_jump(f_make(stk + STACK + (topoff), STACK, f_pingpong), NULL); \
        co_frame = (uintptr_t)t.ctx;                                                \
        double t0 = now();                                                          \
        for (int64_t i = 0; i < n; i++)                                             \
            t = f_jump(t.ctx, NULL);                                                \
        double el = now() - t0;                                                     \
        free(stk);                                                                  \
        return el;                                                                  \
    }
EDIT_KERNEL(edit_0, 0, 0)
EDIT_KERNEL(edit_1, 16, 16)
EDIT_KERNEL(edit_2, 48, 48)
EDIT_KERNEL(edit_3, 64, 64)
EDIT_KERNEL(edit_4, 4096, 4096)
EDIT_KERNEL(edit_5, 0, -64)
EDIT_KERNEL(edit_6, 0, -4096)
EDIT_KERNEL(edit_7, 64, 0)
#define NEDIT 8
static const kernel edits[NEDIT] = {edit_0, edit_1, edit_2, edit_3, edit_4, edit_5, edit_6, edit_7};
static const char *edit_name[NEDIT] = {
    "malloc(S), top at S", "malloc(S+16), top at S+16", "malloc(S+48), top at S+48",
    "malloc(S+64), top at S+64", "malloc(S+4096), top at S+4096", "malloc(S), top at S-64",
    "malloc(S), top at S-4096", "malloc(S+64), top at S"};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

struct cell {
    int sys, copy, edit;
    long dist;          /* wanted (frame distance mod 4096), or -1 */
    long seen;          /* measured distance of the last call */
    uintptr_t ra;       /* loop return address of the last call */
    double *ns;
};

static void print_cell(const char *exp, const struct cell *c, int rounds)
{
    printf("{\"experiment\": \"%s\", \"system\": \"%s\"", exp, c->edit >= 0 ? "boost_fcontext" : sysname[c->sys]);
    if (c->edit >= 0)
        printf(", \"edit\": \"%s\"", edit_name[c->edit]);
    else if (c->dist >= 0)
        printf(", \"distance\": %ld", c->dist);
    else
        printf(", \"code_offset\": %d", c->copy);
    if (c->dist >= 0)
        printf(", \"code_offset\": %d", c->copy);
    printf(", \"frame_distance\": %ld, \"loop_ra_low12\": %lu, \"ns\": [", c->seen,
           (unsigned long)(c->ra & 4095));
    for (int r = 0; r < rounds; r++)
        printf("%s%.4f", r ? ", " : "", c->ns[r]);
    qsort(c->ns, rounds, sizeof *c->ns, cmp_double);
    printf("], \"min\": %.4f, \"median\": %.4f}\n", c->ns[0], c->ns[rounds / 2]);
}

int main(int argc, char **argv)
{
    if (argc < 5 || (strcmp(argv[1], "stack") && strcmp(argv[1], "code") && strcmp(argv[1], "edits"))) {
        fprintf(stderr, "usage: %s stack|code|edits BOOST_LIB N ROUNDS [COPY D1 D2 ...]\n", argv[0]);
        return 2;
    }
    const char *exp = argv[1];
    int sys0 = BOOST;
    if (strcmp(argv[2], "-")) {
        void *h = dlopen(argv[2], RTLD_NOW | RTLD_LOCAL);
        f_jump = h ? (fctx_jump_fn)dlsym(h, "jump_fcontext") : NULL;
        f_make = h ? (fctx_make_fn)dlsym(h, "make_fcontext") : NULL;
        if (!f_jump || !f_make) {
            fprintf(stderr, "%s: no jump_fcontext/make_fcontext %s\n", argv[2], h ? "" : dlerror());
            return 2;
        }
    } else {
        sys0 = YF_FULL;
    }
    int64_t n = atoll(argv[3]);
    int rounds = atoi(argv[4]);
    if (n <= 0 || rounds <= 0) {
        fprintf(stderr, "N and ROUNDS must be positive\n");
        return 2;
    }
    if (!strcmp(exp, "edits") && sys0 != BOOST) {
        fprintf(stderr, "the edits experiment needs Boost\n");
        return 2;
    }
    /* One area in a mapping of its own: every placement is carved from its
     * middle, so only the low 12 bits change between stack cells. */
    char *area = mmap(NULL, 4 * STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (area == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    uintptr_t base = ((uintptr_t)area + 2 * STACK) & ~(uintptr_t)4095;

    /* Calibrate: the coroutine's saved frame lies a fixed distance below the
     * top it was given, and the main side's frame is the same in every call
     * from here (same caller, same stack depth). */
    uintptr_t below[NSYS], mainf[NSYS];
    for (int s = sys0; s < NSYS; s++) {
        measure(s, 0, 2, (char *)base);
        below[s] = base - co_frame;
        mainf[s] = main_frame;
    }

    int is_stack = !strcmp(exp, "stack");
    int copy = is_stack && argc > 5 ? atoi(argv[5]) : 0;
    int nd = is_stack ? argc - 6 : 0;
    if (is_stack && (nd <= 0 || copy < 0 || copy >= NCODE)) {
        fprintf(stderr, "stack needs COPY (0..%d) and at least one distance\n", NCODE - 1);
        return 2;
    }
    int ncell = is_stack ? (NSYS - sys0) * nd : !strcmp(exp, "code") ? (NSYS - sys0) * NCODE : NEDIT;
    struct cell *cells = calloc((size_t)ncell, sizeof *cells);
    double *ns = calloc((size_t)ncell * rounds, sizeof *ns);
    int *order = malloc((size_t)ncell * sizeof *order);
    if (!cells || !ns || !order)
        return 1;
    for (int c = 0; c < ncell; c++) {
        struct cell *x = &cells[c];
        x->ns = ns + (size_t)c * rounds;
        x->edit = !strcmp(exp, "edits") ? c : -1;
        x->sys = x->edit >= 0 ? BOOST : sys0 + c / (nd ? nd : NCODE);
        x->copy = !strcmp(exp, "code") ? c % NCODE : copy;
        x->dist = nd ? ((atol(argv[6 + c % nd]) % 4096) + 4096) % 4096 : -1;
    }
    srand(12345);
    for (int r = 0; r < rounds; r++) {
        for (int c = 0; c < ncell; c++)
            order[c] = c;
        for (int c = ncell - 1; c > 0; c--) {
            int j = rand() % (c + 1), tmp = order[c];
            order[c] = order[j];
            order[j] = tmp;
        }
        for (int k = 0; k < ncell; k++) {
            struct cell *x = &cells[order[k]];
            /* The stack cells want (co_frame - main) % 4096 == dist; the code
             * cells keep the coroutine top at a middle distance (2 KiB). */
            uintptr_t want = (mainf[x->sys] + (uintptr_t)(x->dist >= 0 ? x->dist : 2048) + below[x->sys]) & 4095;
            char *top = (char *)(base + want);
            double t = x->edit >= 0 ? edits[x->edit](n, NULL) : measure(x->sys, x->copy, n, top);
            if (t < 0) {
                perror("kernel");
                return 1;
            }
            x->ns[r] = t / (2.0 * n);
            x->seen = (long)((co_frame - main_frame) & 4095);
            x->ra = loop_ra;
        }
    }
    for (int c = 0; c < ncell; c++)
        print_cell(exp, &cells[c], rounds);
    munmap(area, 4 * STACK);
    return 0;
}
