/* test_guard.c - the guard-hit reporter, each case in a forked child whose
 * death and stderr the parent checks: 200 overflows of random depth, frame
 * size, stack size, guard kind and target (recursion, one big probed frame,
 * a frame that jumps into a neighbour's guard) are each reported once with
 * the overflowing coroutine's id; faults that are not overflows (a SIGSEGV
 * sent with kill, wild accesses from the root or from a shallow coroutine,
 * a NULL read) kill without a report; a previous handler that recovers keeps
 * working, the reporter with it, and is chained to after a report too; a coroutine resumed on a thread that
 * never made a scheduler is reported; 3,000 threads that each make a
 * scheduler leave no alternate signal stacks behind.
 * test-cflags: -fstack-clash-protection --param=stack-clash-protection-guard-size=12 -pthread
 *
 * The guard is one 4 KiB page, so the bodies are built with GCC told so: by
 * default its aarch64 stack-clash probes assume a 64 KiB guard and let a
 * frame under 64 KiB step over a 4 KiB one (x86-64's default is 4 KiB).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "yf.h"
#include "check.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next_rand(void)
{
    return xorshift64(&rng);
}

/* ---- running a case in a child ------------------------------------------------ */

struct outcome {
    int sig;                    /* the signal that killed it, 0 if it exited */
    int code;                   /* exit code when it exited */
    int reports;                /* "yfcore: coroutine N overflowed" lines */
    uint64_t reported_id;       /* N of the last one */
    char err[2048];
};

static void run_child(void (*fn)(void *), void *arg, struct outcome *o)
{
    int p[2];
    CHECK(pipe(p) == 0);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        dup2(p[1], 2);
        close(p[1]);
        fn(arg);
        _exit(0);
    }
    close(p[1]);
    size_t n = 0;
    ssize_t r;
    while ((r = read(p[0], o->err + n, sizeof o->err - 1 - n)) > 0)
        n += (size_t)r;
    o->err[n] = 0;
    close(p[0]);
    int st;
    CHECK(waitpid(pid, &st, 0) == pid);
    o->sig = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
    o->code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    o->reports = 0;
    const char *s = o->err;
    while ((s = strstr(s, "yfcore: coroutine ")) != NULL) {
        unsigned long long id;
        if (sscanf(s, "yfcore: coroutine %llu overflowed", &id) == 1) {
            o->reports++;
            o->reported_id = id;
        }
        s++;
    }
}

static void fail_case(const char *what, int i, const struct outcome *o)
{
    fprintf(stderr, "case %s #%d: signal %d, exit %d, %d reports (id %" PRIu64 "); stderr:\n%s\n", what, i,
            o->sig, o->code, o->reports, o->reported_id, o->err);
    exit(1);
}

/* ---- overflows ------------------------------------------------------------------ */

struct ovf {
    size_t stack;
    unsigned flags;
    int ncos;                   /* coroutines made before the target's run */
    int target;                 /* index of the one that overflows (>= 1) */
    int how;                    /* 0 recursion, 1 one big probed frame, 2 into the neighbour's guard */
    size_t frame;               /* recursion frame or big frame bytes */
    uint64_t guard_off;         /* how = 2: offset into the neighbour's guard page */
};

static uint64_t neighbour_guard;
static volatile unsigned char sink;

/* Recurses until the stack runs out (the limit only keeps the compiler
 * from calling it infinite). */
static __attribute__((noinline)) int recurse(size_t frame, int depth)
{
    volatile unsigned char buf[frame];
    buf[0] = (unsigned char)depth;
    buf[frame - 1] = (unsigned char)depth;
    if (depth == INT32_MAX)
        return 0;
    return recurse(frame, depth + 1) + buf[0] + buf[frame - 1];
}

static __attribute__((noinline)) int big_frame(size_t n)
{
    volatile unsigned char buf[n];
    buf[0] = 1;
    return buf[0];
}

/* What a large frame built without stack-clash probes does: the stack
 * pointer jumps far below the guard and the first write lands wherever it
 * lands, here in the guard of the slot below. */
static __attribute__((noinline, noreturn)) void jump_into(uint64_t addr)
{
#if defined(__x86_64__)
    __asm__ volatile("mov %0, %%rsp\n\tmovb $1, (%%rsp)" : : "r"(addr) : "memory");
#elif defined(__aarch64__)
    __asm__ volatile("mov sp, %0\n\tstrb wzr, [sp]" : : "r"(addr) : "memory");
#else
    *(volatile char *)addr = 1;
#endif
    __builtin_unreachable();
}

static intptr_t idle_body(void *arg)
{
    (void)arg;
    volatile unsigned char buf[256];
    buf[0] = 1;
    yf_co_yield();
    return buf[0];
}

static intptr_t overflow_body(void *arg)
{
    const struct ovf *c = arg;
    if (c->how == 0)
        return recurse(c->frame, 0);
    if (c->how == 1)
        return big_frame(c->frame);
    jump_into(neighbour_guard + c->guard_off);
}

static uint64_t guard_of(yf_co *co)
{
    uint64_t lay[4];
    CHECK(yf_co_stack_layout(co, lay) == 0);
    return lay[0];
}

static void overflow_child(void *arg)
{
    const struct ovf *c = arg;
    yf_sched *s = yf_sched_new(c->stack, c->flags);
    CHECK(s);
    yf_co *cos[8];
    for (int i = 0; i < c->ncos; i++) {
        cos[i] = yf_co_create(s, i == c->target ? overflow_body : idle_body, (void *)c);
        CHECK(cos[i]);
    }
    /* Slots are carved upward: the one made just before is right below. */
    neighbour_guard = guard_of(cos[c->target - 1]);
    /* Printed here, on the main stack: a print inside the body would take
     * stack (about 13 KiB of a 16 KiB stack on x86-64, 15 KiB on aarch64)
     * from the overflow it is there to test. */
    fprintf(stderr, "expect %" PRIu64 "\n", yf_co_id(cos[c->target]));
    yf_sched_run(s);
    fprintf(stderr, "survived the overflow\n");
    _exit(3);
}

static void test_random_overflows(int runs)
{
    static const size_t stacks[] = {16384, 32768, 65536, 131072};
    for (int i = 0; i < runs; i++) {
        struct ovf c = {0};
        c.stack = stacks[next_rand() % 4];
        c.flags = next_rand() % 2 ? YF_SCHED_GUARD_MPROTECT : 0;
        c.ncos = 2 + (int)(next_rand() % 6);
        c.target = 1 + (int)(next_rand() % (uint64_t)(c.ncos - 1));
        c.how = (int)(next_rand() % 3);
        if (c.how == 0)
            c.frame = 16 + next_rand() % 6000;
        else
            c.frame = c.stack + next_rand() % (3 * c.stack);
        c.guard_off = next_rand() % 4096;
        struct outcome o;
        run_child(overflow_child, &c, &o);
        unsigned long long want;
        const char *e = strstr(o.err, "expect ");
        if (!e || sscanf(e, "expect %llu", &want) != 1)
            fail_case("overflow (no id printed)", i, &o);
        if (o.sig != SIGSEGV || o.reports != 1 || o.reported_id != want)
            fail_case(c.how == 0 ? "overflow by recursion" : c.how == 1 ? "overflow by one big frame"
                                                                       : "overflow into the neighbour's guard",
                      i, &o);
    }
}

/* ---- faults that are not overflows ------------------------------------------- */

static volatile uint64_t wild_target;

static intptr_t kill_body(void *arg)
{
    (void)arg;
    kill(getpid(), SIGSEGV);
    /* The first kill used to be swallowed: the process went on. */
    fprintf(stderr, "survived a sent SIGSEGV\n");
    _exit(3);
}

static intptr_t wild_body(void *arg)
{
    (void)arg;
    sink = *(volatile unsigned char *)wild_target;
    fprintf(stderr, "survived a wild read\n");
    _exit(3);
}

static void not_overflow_child(void *arg)
{
    int kind = (int)(intptr_t)arg;
    yf_sched *s = yf_sched_new(65536, next_rand() % 2 ? YF_SCHED_GUARD_MPROTECT : 0);
    CHECK(s);
    yf_co *a = yf_co_create(s, idle_body, NULL), *b = yf_co_create(s, idle_body, NULL);
    CHECK(a && b);
    CHECK(yf_co_resume(a) == 0 && yf_co_resume(b) == 0);
    switch (kind) {
    case 0:     /* sent from a coroutine */
        CHECK(yf_co_resume(yf_co_create(s, kill_body, NULL)) == 0);
        break;
    case 1:     /* sent to the root */
        kill(getpid(), SIGSEGV);
        break;
    case 2:     /* a wild read from the root into a slot's guard (below a header) */
        sink = *(volatile unsigned char *)(guard_of(b) + next_rand() % 4096);
        break;
    case 3:     /* a wild read from a shallow coroutine into another's guard */
        wild_target = guard_of(a) + next_rand() % 4096;
        CHECK(yf_co_resume(yf_co_create(s, wild_body, NULL)) == 0);
        break;
    default:    /* a NULL read */
        sink = *(volatile unsigned char *)(uintptr_t)(next_rand() % 64);
        break;
    }
    fprintf(stderr, "survived\n");
    _exit(3);
}

static void test_not_overflows(int runs)
{
    for (int i = 0; i < runs; i++) {
        int kind = i % 5;
        struct outcome o;
        run_child(not_overflow_child, (void *)(intptr_t)kind, &o);
        if (o.sig != SIGSEGV || o.reports != 0)
            fail_case(kind < 2 ? "sent SIGSEGV" : "wild access", kind, &o);
    }
}

/* ---- a previous handler that recovers -------------------------------------------- */

static sigjmp_buf recover;
static volatile int recovered;

static void recovering(int sig, siginfo_t *si, void *uctx)
{
    (void)sig, (void)si, (void)uctx;
    recovered++;
    siglongjmp(recover, 1);
}

static void recover_child(void *arg)
{
    (void)arg;
    struct sigaction sa = {0};
    sa.sa_sigaction = recovering;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGSEGV, &sa, NULL) == 0);
    yf_sched *s = yf_sched_new(65536, 0);
    CHECK(s);
    /* Foreign faults and a sent SIGSEGV go to it, twice each... */
    for (int i = 0; i < 2; i++) {
        if (sigsetjmp(recover, 1) == 0)
            sink = *(volatile unsigned char *)(uintptr_t)(8 + next_rand() % 8);
        if (sigsetjmp(recover, 1) == 0)
            kill(getpid(), SIGSEGV);
    }
    CHECK(recovered == 4);
    /* ...and the reporter is still there for an overflow, after which the
     * handler is chained to as well: it recovers once more (exit 5). */
    struct ovf c = {.stack = 65536, .ncos = 2, .target = 1, .how = 0, .frame = 512};
    yf_co *a = yf_co_create(s, idle_body, NULL), *b = yf_co_create(s, overflow_body, &c);
    CHECK(a && b);
    if (sigsetjmp(recover, 1) == 0)
        yf_sched_run(s);
    else
        _exit(recovered == 5 ? 5 : 4);
    _exit(3);
}

/* ---- threads ---------------------------------------------------------------------- */

static yf_co *far_co;

static void *resume_there(void *arg)
{
    (void)arg;
    yf_co_resume(far_co);
    return NULL;
}

static void thread_child(void *arg)
{
    (void)arg;
    yf_sched *s = yf_sched_new(65536, 0);
    CHECK(s);
    static struct ovf c = {.stack = 65536, .ncos = 1, .target = 0, .how = 1, .frame = 200000};
    far_co = yf_co_create(s, overflow_body, &c);
    CHECK(far_co);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, resume_there, NULL) == 0);
    pthread_join(t, NULL);
    _exit(3);
}

static void *make_sched(void *arg)
{
    (void)arg;
    yf_sched *s = yf_sched_new(16384, 0);
    CHECK(s);
    CHECK(yf_sched_free(s) == 0);
    return NULL;
}

static long vm_size_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    CHECK(f);
    char line[256];
    long kib = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmSize: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

static void *no_sched(void *arg)
{
    return arg;
}

/* The address space 3000 threads running `fn` one after the other add, in KiB. */
static long growth_of_threads(void *(*fn)(void *))
{
    long before = vm_size_kib();
    for (int i = 0; i < 3000; i++) {
        pthread_t t;
        CHECK(pthread_create(&t, NULL, fn, NULL) == 0);
        CHECK(pthread_join(t, NULL) == 0);
    }
    return vm_size_kib() - before;
}

static void threads_child(void *arg)
{
    (void)arg;
    /* One malloc arena: a thread that mallocs may otherwise reserve a new
     * 64 MiB arena (when it does depends on timing), which is glibc's, not
     * a leak. (Under ASan malloc is ASan's, without arenas, and mallopt
     * says 0.) */
    (void)mallopt(M_ARENA_MAX, 1);
    for (int i = 0; i < 50; i++) {     /* warm glibc's thread-stack cache */
        pthread_t t;
        CHECK(pthread_create(&t, NULL, i % 2 ? make_sched : no_sched, NULL) == 0);
        CHECK(pthread_join(t, NULL) == 0);
    }
    /* Against the same threads without a scheduler, measured just before:
     * natively they add nothing, under qemu-user about 280 KiB each (the
     * emulator's own per-thread memory), which is not the runtime's. */
    long control = growth_of_threads(no_sched);
    long grown = growth_of_threads(make_sched) - control;
    /* A leaked 64 KiB alternate stack each would be 192,000 KiB. */
    if (grown > 16384) {
        fprintf(stderr, "3000 threads that made a scheduler grew the address space by %ld KiB more than "
                        "3000 that did not (%ld KiB)\n", grown, control);
        _exit(4);
    }
    _exit(0);
}

int main(void)
{
    struct outcome o;
    test_random_overflows(200);
    test_not_overflows(40);
    run_child(recover_child, NULL, &o);
    if (o.sig != 0 || o.code != 5 || o.reports != 1 || o.reported_id != 2)
        fail_case("previous handler that recovers", 0, &o);
    run_child(thread_child, NULL, &o);
    if (o.sig != SIGSEGV || o.reports != 1 || o.reported_id != 1)
        fail_case("resumed on another thread", 0, &o);
    run_child(threads_child, NULL, &o);
    if (o.sig != 0 || o.code != 0)
        fail_case("3000 threads", 0, &o);
    printf("test_guard: ok\n");
    return 0;
}
