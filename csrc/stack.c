/* stack.c - coroutine stacks: size-aligned slots in mmap'ed arenas, guard
 * pages, a LIFO pool, high-water marks, and the guard-hit reporter. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include "yfi.h"
#ifdef YFI_ASAN
#include <sanitizer/asan_interface.h>
#endif

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102 /* Linux 6.13, include/uapi/asm-generic/mman-common.h */
#endif

struct yfi_arena {
    struct yfi_arena *next;
    char *base;
    size_t nslots, carved;
    int reg;                   /* index in the signal handler's registry, or -1 */
#ifdef YFI_VALGRIND
    unsigned *vg;              /* valgrind's id of each carved slot's stack, or NULL */
#endif
};

/* Arenas grow geometrically up to this many bytes, so a million 16 KiB
 * stacks need a few hundred arenas, not a million mappings. */
#define ARENA_MAX_BYTES ((size_t)64 << 20)
#define ARENA_FIRST_SLOTS 16

/* The registry the SIGSEGV handler scans. It is append-only with atomic
 * publication, so the handler never sees a half-written entry; freeing an
 * arena clears its base first. */
#define REG_MAX 65536
static struct {
    _Atomic uintptr_t base;
    uintptr_t len;
    size_t slot;
    size_t page;
    int guard;
} reg[REG_MAX];
static _Atomic int reg_used;

static int reg_add(char *base, size_t len, size_t slot, size_t page, int guard)
{
    int i = atomic_fetch_add(&reg_used, 1);
    if (i >= REG_MAX) {
        atomic_fetch_sub(&reg_used, 1);
        /* Reuse a cleared entry; the handler only misses reports, never faults. */
        for (i = 0; i < REG_MAX; i++) {
            uintptr_t zero = 0;
            if (atomic_compare_exchange_strong(&reg[i].base, &zero, (uintptr_t)1))
                break;
        }
        if (i == REG_MAX)
            return -1;
    }
    reg[i].len = len;
    reg[i].slot = slot;
    reg[i].page = page;
    reg[i].guard = guard;
    atomic_store(&reg[i].base, (uintptr_t)base);
    return i;
}

int yfi_guard_install(void *addr, size_t len, int guard)
{
    if (guard == YFI_GUARD_REGIONS)
        return madvise(addr, len, MADV_GUARD_INSTALL);
    if (guard == YFI_GUARD_MPROTECT)
        return mprotect(addr, len, PROT_NONE);
    return 0;
}

int yf_guard_regions_supported(void)
{
    static _Atomic int known = -1;
    int k = atomic_load(&known);
    if (k >= 0)
        return k;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    int saved = errno;
    void *p = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    k = 0;
    if (p != MAP_FAILED) {
        /* A successful madvise is not proof: qemu-user answers 0 to advice
         * it does not know and installs nothing, which left every stack
         * unguarded there. A real guard region makes the kernel's own read
         * of the page fail with EFAULT: write(2) of its first byte into a
         * pipe fails so, where an unguarded page gives its byte. (Not a
         * path argument: valgrind reads a path itself to check it, and dies
         * of the fault; a buffer it checks in its shadow memory only.) */
        int fds[2];
        if (madvise(p, page, MADV_GUARD_INSTALL) == 0 && pipe2(fds, O_CLOEXEC) == 0) {
            k = write(fds[1], p, 1) == -1 && errno == EFAULT;
            close(fds[0]);
            close(fds[1]);
        }
        munmap(p, 2 * page);
    }
    errno = saved;
    atomic_store(&known, k);
    return k;
}

/* A slot's colour is its index modulo the number of colours: 1 per KiB of
 * slot up to 64 (a power of two, as the slot size is). */
static size_t ncolours(size_t size)
{
    size_t n = size / 16 / YFI_COLOUR_STEP;
    return n > 64 ? 64 : n;
}

int yfi_pool_init(struct yfi_pool *p, size_t size, int guard)
{
    memset(p, 0, sizeof *p);
    p->size = size;
    p->page = (size_t)sysconf(_SC_PAGESIZE);
    p->guard = guard;
    p->next_arena_slots = ARENA_FIRST_SLOTS;
    p->shift = (unsigned)__builtin_ctzll((unsigned long long)size);
    p->colour_mask = ncolours(size) - 1;
    return 0;
}

static struct yfi_arena *arena_new(struct yfi_pool *p)
{
    size_t n = p->next_arena_slots;
    size_t len = n * p->size;
    struct yfi_arena *a = malloc(sizeof *a);
    if (!a)
        return NULL;
    /* Over-map by one slot and trim, so the arena starts on a multiple of the
     * slot size; trimming leaves a single mapping. */
    char *raw = mmap(NULL, len + p->size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (raw == MAP_FAILED) {
        free(a);
        errno = ENOMEM;
        return NULL;
    }
    uintptr_t aligned = ((uintptr_t)raw + p->size - 1) & ~(uintptr_t)(p->size - 1);
    size_t head = aligned - (uintptr_t)raw, tail = p->size - head;
    if (head)
        munmap(raw, head);
    if (tail)
        munmap((char *)aligned + len, tail);
    a->base = (char *)aligned;
    /* A huge page would make one touched stack byte cost 2 MiB of memory and
     * hide the per-stack high-water marks. */
    madvise(a->base, len, MADV_NOHUGEPAGE);
    a->nslots = n;
    a->carved = 0;
#ifdef YFI_VALGRIND
    /* Only under valgrind: elsewhere the registration is a no-op. */
    a->vg = RUNNING_ON_VALGRIND ? calloc(n, sizeof *a->vg) : NULL;
#endif
    a->reg = reg_add(a->base, len, p->size, p->page, p->guard);
    a->next = p->arenas;
    p->arenas = a;
    p->narenas++;
    if (len * 2 <= ARENA_MAX_BYTES)
        p->next_arena_slots = n * 2;
    else if (p->size <= ARENA_MAX_BYTES)
        p->next_arena_slots = ARENA_MAX_BYTES / p->size;
    return a;
}

void *yfi_pool_carve(struct yfi_pool *p)
{
    struct yfi_arena *a = p->arenas;
    if (!a || a->carved == a->nslots) {
        a = arena_new(p);
        if (!a)
            return NULL;
    }
    char *slot = a->base + a->carved * p->size;
    if (yfi_guard_install(slot, p->page, p->guard) != 0) {
        /* mprotect fails with ENOMEM at vm.max_map_count. */
        errno = ENOMEM;
        return NULL;
    }
#ifdef YFI_VALGRIND
    if (a->vg)
        a->vg[a->carved] = VALGRIND_STACK_REGISTER(slot + p->page, slot + p->size);
#endif
    a->carved++;
    p->carved++;
    struct yfi_slot_header *h = yfi_slot_header((uintptr_t)slot, p->size);
    h->size = p->size;
    h->magic = YFI_SLOT_MAGIC;
    return slot;
}

void yfi_pool_put_grow(struct yfi_pool *p, void *slot)
{
    if (p->nfree == p->capfree) {
        size_t cap = p->capfree ? 2 * p->capfree : 64;
        void **f = realloc(p->free, cap * sizeof *f);
        if (!f) {
            /* Keeping the slot mapped but unpooled loses no correctness;
             * it is unmapped with its arena. */
            return;
        }
        p->free = f;
        p->capfree = cap;
    }
    p->free[p->nfree++] = slot;
}

size_t yfi_pool_trim(struct yfi_pool *p)
{
    size_t released = 0;
    for (size_t i = 0; i < p->nfree; i++) {
        char *slot = p->free[i];
        /* Keep the guard page (MADV_DONTNEED on it is harmless but pointless)
         * and re-write the header the handler reads. */
        size_t len = p->size - p->page;
        if (madvise(slot + p->page, len, MADV_DONTNEED) == 0)
            released += len;
        struct yfi_slot_header *h = yfi_slot_header((uintptr_t)slot, p->size);
        h->size = p->size;
        h->magic = YFI_SLOT_MAGIC;
        h->owner_id = 0;
    }
    return released;
}

void yfi_pool_destroy(struct yfi_pool *p)
{
    struct yfi_arena *a = p->arenas;
    while (a) {
        struct yfi_arena *next = a->next;
        if (a->reg >= 0)
            atomic_store(&reg[a->reg].base, (uintptr_t)0);
#ifdef YFI_VALGRIND
        if (a->vg) {
            for (size_t i = 0; i < a->carved; i++)
                VALGRIND_STACK_DEREGISTER(a->vg[i]);
            free(a->vg);
        }
#endif
#ifdef YFI_ASAN
        /* Frames a coroutine left on its stack (one that never finished, or
         * the switch out of one that did) keep their redzones poisoned in
         * ASan's shadow, which outlives the mapping: whatever the next mmap
         * puts at these addresses (a Python arena) would read as a stack. */
        ASAN_UNPOISON_MEMORY_REGION(a->base, a->nslots * p->size);
#endif
        munmap(a->base, a->nslots * p->size);
        free(a);
        a = next;
    }
    free(p->free);
    memset(p, 0, sizeof *p);
}

size_t yfi_pool_usable(const struct yfi_pool *p)
{
    return p->size - p->page - sizeof(struct yfi_slot_header) - ncolours(p->size) * YFI_COLOUR_STEP;
}

size_t yfi_slot_hwm(const struct yfi_pool *p, void *slot)
{
    char *low = (char *)slot + p->page;
    char *top = yfi_slot_top(p, slot);
    size_t npages = (p->size - p->page) / p->page;
    unsigned char *vec = malloc(npages);
    if (!vec)
        return 0;
    size_t hwm = 0;
    if (mincore(low, npages * p->page, vec) == 0) {
        for (size_t i = 0; i < npages; i++) {
            if (vec[i] & 1) {
                char *page_start = low + i * p->page;
                hwm = page_start < top ? (size_t)(top - page_start) : 0;
                break;
            }
        }
    }
    free(vec);
    return hwm;
}

/* ---- guard-hit reporter ---------------------------------------------------- */

/* What a SIGSEGV is reported as an overflow of coroutine C: a real fault
 * (si_code SEGV_MAPERR or SEGV_ACCERR; a SIGSEGV sent with kill or tgkill
 * has si_code <= 0), in a guard page of a guarded arena, raised while C runs
 * on this thread, with the faulting stack pointer at or below the top of C's
 * guard plus a red zone (C's frames have run off its usable stack) and the
 * address no lower than the stack pointer minus the red zone (an access
 * through the stack pointer, not a wild pointer far away). The address may
 * lie in a neighbour's guard (a big frame without stack-clash probes can
 * jump C's own); it is still C's overflow. Everything else goes to the
 * handler that was there before ours, as if we were not installed. */
#define RED_ZONE 128

static struct sigaction old_segv;
static _Atomic uintptr_t last_report;
static __thread uintptr_t chain_frame;
static pthread_mutex_t install_lock = PTHREAD_MUTEX_INITIALIZER;

/* The alternate signal stack this runtime made for the thread (NULL when the
 * thread had one already, or has none yet); freed by the key's destructor
 * when the thread ends. */
#define ALTSTACK_BYTES (64 * 1024)
static pthread_key_t altstack_key;
static pthread_once_t altstack_once = PTHREAD_ONCE_INIT;
static int altstack_key_ok;
__thread struct yfi_thread yfi_thr;

static size_t fmt_u64(char *out, uint64_t v, int base)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = "0123456789abcdef"[v % (uint64_t)base];
        v /= (uint64_t)base;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

static size_t put(char *out, const char *s)
{
    size_t n = strlen(s);
    memcpy(out, s, n);
    return n;
}

static uintptr_t fault_sp(const void *uctx)
{
    const ucontext_t *uc = uctx;
#if defined(__x86_64__)
    return (uintptr_t)uc->uc_mcontext.gregs[REG_RSP];
#elif defined(__aarch64__)
    return (uintptr_t)uc->uc_mcontext.sp;
#else
    (void)uc;
    return 0;
#endif
}

/* Whether addr lies in the guard page of a slot of a guarded arena. */
static int in_a_guard(uintptr_t addr)
{
    int n = atomic_load(&reg_used);
    if (n > REG_MAX)
        n = REG_MAX;
    for (int i = 0; i < n; i++) {
        uintptr_t base = atomic_load(&reg[i].base);
        if (base <= 1 || addr < base || addr >= base + reg[i].len || reg[i].guard == YFI_GUARD_NONE)
            continue;
        uintptr_t slot = base + ((addr - base) & ~(uintptr_t)(reg[i].slot - 1));
        return addr < slot + reg[i].page;
    }
    return 0;
}

/* Hands the signal to the disposition that was there before ours. A
 * function is called as the kernel would have (it may recover, e.g. by
 * siglongjmp or by fixing the context, and we stay installed for the next
 * fault); the default action kills: for a fault by returning into the
 * faulting instruction, for a sent signal by re-raising it, which the kernel
 * delivers when this handler returns. An ignored sent signal stays ignored
 * (a fault cannot be ignored: the kernel would kill anyway). */
static void chain(int sig, siginfo_t *si, void *uctx, int fault)
{
    struct sigaction old = old_segv;
    /* A previous handler that hands the signal back to its own previous
     * one, which is us (faulthandler enabled after us, and a scheduler made
     * after that took SIGSEGV back), re-enters us on this alternate stack,
     * deeper than this frame by at least a signal frame: that is a cycle,
     * and it ends in the default action. A handler that left by siglongjmp
     * leaves chain_frame behind, but the next signal starts at the top of
     * the alternate stack again, at this very depth, so it is no cycle. */
    uintptr_t here = (uintptr_t)__builtin_frame_address(0);
    int cycle = chain_frame && here + 256 < chain_frame;
    uintptr_t outer = chain_frame;
    if (!cycle && (old.sa_flags & SA_SIGINFO) && old.sa_sigaction) {
        chain_frame = here;
        old.sa_sigaction(sig, si, uctx);
        chain_frame = outer;
        return;
    }
    if (!cycle && !(old.sa_flags & SA_SIGINFO) && old.sa_handler != SIG_DFL && old.sa_handler != SIG_IGN &&
        old.sa_handler) {
        chain_frame = here;
        old.sa_handler(sig);
        chain_frame = outer;
        return;
    }
    if (!cycle && !fault && !(old.sa_flags & SA_SIGINFO) && old.sa_handler == SIG_IGN)
        return;
    signal(SIGSEGV, SIG_DFL);
    if (!fault)
        raise(SIGSEGV);
}

/* Async-signal-safe: atomics, arithmetic, TLS reads, memcpy, write(2),
 * signal(2) and raise(3). */
static void on_segv(int sig, siginfo_t *si, void *uctx)
{
    int saved = errno;
    int fault = si->si_code == SEGV_MAPERR || si->si_code == SEGV_ACCERR;
    uintptr_t addr = (uintptr_t)si->si_addr, sp = fault_sp(uctx);
    yf_co *co = fault ? yf_co_current() : NULL;
    uint64_t lay[4];
    if (co && sp && yf_co_stack_layout(co, lay) == 0 && sp <= lay[1] + RED_ZONE && addr < lay[1] &&
        addr + RED_ZONE >= sp && in_a_guard(addr)) {
        char line[256];
        size_t k = put(line, "yfcore: coroutine ");
        k += fmt_u64(line + k, yf_co_id(co), 10);
        k += put(line + k, " overflowed its ");
        k += fmt_u64(line + k, lay[3] - lay[0], 10);
        k += put(line + k, "-byte stack (fault at 0x");
        k += fmt_u64(line + k, addr, 16);
        k += put(line + k, ", guard page 0x");
        k += fmt_u64(line + k, lay[0], 16);
        k += put(line + k, ")\n");
        /* Then whatever was there before (Python's faulthandler prints the
         * Python stack; a handler may recover by siglongjmp). One that just
         * returns (Python's own C handler does) brings us back here for the
         * same address at once: an overflow is not cured by returning, so
         * that time the default action dies by the very fault (returning
         * re-executes the faulting instruction) instead of looping. */
        if (atomic_exchange(&last_report, addr) != addr) {
            ssize_t w = write(2, line, k);
            (void)w;
            chain(sig, si, uctx, fault);
        } else {
            signal(SIGSEGV, SIG_DFL);
        }
        errno = saved;
        return;
    }
    chain(sig, si, uctx, fault);
    errno = saved;
}

/* Thread exit: the alternate stack goes with the thread (3,000 threads that
 * each made a scheduler kept 200 MiB of them before). It is disabled first,
 * so no signal runs on unmapped memory. */
static void altstack_free(void *mem)
{
    stack_t ss = {.ss_flags = SS_DISABLE};
    stack_t cur;
    if (sigaltstack(NULL, &cur) == 0 && cur.ss_sp == mem)
        sigaltstack(&ss, NULL);
    munmap(mem, ALTSTACK_BYTES);
}

static void altstack_key_make(void)
{
    altstack_key_ok = pthread_key_create(&altstack_key, altstack_free) == 0;
}

int yfi_altstack_install(void)
{
    if (yfi_thr.altstack_ready)
        return 0;
    stack_t ss;
    if (sigaltstack(NULL, &ss) == 0 && (ss.ss_flags & SS_DISABLE)) {
        /* The handler must not run on the stack that just overflowed. */
        pthread_once(&altstack_once, altstack_key_make);
        if (!altstack_key_ok) {
            errno = EAGAIN;
            return -1;
        }
        void *mem = mmap(NULL, ALTSTACK_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (mem == MAP_FAILED)
            return -1;
        ss.ss_sp = mem;
        ss.ss_size = ALTSTACK_BYTES;
        ss.ss_flags = 0;
        if (sigaltstack(&ss, NULL) != 0 || pthread_setspecific(altstack_key, mem) != 0) {
            int e = errno;
            stack_t off = {.ss_flags = SS_DISABLE};
            sigaltstack(&off, NULL);
            munmap(mem, ALTSTACK_BYTES);
            errno = e;
            return -1;
        }
    }
    yfi_thr.altstack_ready = 1;
    return 0;
}

int yfi_guard_reporter_install(void)
{
    if (yfi_altstack_install() != 0)
        return -1;
    /* Installed once, and again whenever someone else has taken SIGSEGV
     * since (their handler becomes the one we chain to). */
    pthread_mutex_lock(&install_lock);
    struct sigaction cur;
    int rc = sigaction(SIGSEGV, NULL, &cur);
    if (rc == 0 && !((cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == on_segv)) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_segv;
        /* SA_NODEFER: a handler we chain to that raises SIGSEGV again
         * (faulthandler does) re-enters us at once, where chain() sees the
         * cycle, instead of after we return, where it would look new. */
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
        sigemptyset(&sa.sa_mask);
        /* old_segv is written before ours goes live, so the handler never
         * reads a half-written one. */
        old_segv = cur;
        rc = sigaction(SIGSEGV, &sa, NULL);
    }
    pthread_mutex_unlock(&install_lock);
    return rc;
}
