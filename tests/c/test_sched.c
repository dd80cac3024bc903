/* test_sched.c - scheduler semantics: FIFO order, block/wake tokens, cancel
 * and exit hooks, run_once's passes, reap and ids, detach, locals, counts, nested resume, the
 * trace ring, the stack pool and high-water marks, FP rounding in FPFAST. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "yf.h"
#include "lab/lab.h"
#include "check.h"

static void check_counts(yf_sched *s, uint64_t live, uint64_t ready, uint64_t blocked, uint64_t done)
{
    yf_counts n;
    yf_sched_counts(s, &n);
    if (n.live != live || n.ready != ready || n.blocked != blocked || n.done != done)
        fprintf(stderr, "counts: live %llu ready %llu blocked %llu done %llu\n",
                (unsigned long long)n.live, (unsigned long long)n.ready,
                (unsigned long long)n.blocked, (unsigned long long)n.done);
    CHECK(n.live == live && n.ready == ready && n.blocked == blocked && n.done == done);
}

static yf_sched *new_sched(unsigned flags)
{
    yf_sched *s = yf_sched_new(65536, flags);
    CHECK(s != NULL);
    return s;
}

/* ---- FIFO order -------------------------------------------------------- */

static int trace_ids[64];
static int ntrace;

static intptr_t fifo_body(void *arg)
{
    int id = (int)(intptr_t)arg;
    /* Coroutine i yields i+1 times: the queue order must still hold. */
    for (int k = 0; k <= id; k++) {
        trace_ids[ntrace++] = id;
        CHECK(yf_co_yield() == 0);
    }
    trace_ids[ntrace++] = id;
    return id * 10;
}

static void test_fifo(void)
{
    yf_sched *s = new_sched(0);
    yf_co *co[3];
    for (int i = 0; i < 3; i++)
        CHECK((co[i] = yf_co_create(s, fifo_body, (void *)(intptr_t)i)) != NULL);
    check_counts(s, 3, 3, 0, 0);
    ntrace = 0;
    CHECK(yf_sched_run(s) == 2 + 3 + 4);
    static const int want[] = {0, 1, 2, 0, 1, 2, 1, 2, 2};
    CHECK(ntrace == 9);
    for (int i = 0; i < 9; i++)
        CHECK(trace_ids[i] == want[i]);
    check_counts(s, 3, 0, 0, 3);
    for (int i = 0; i < 3; i++) {
        intptr_t st;
        CHECK(yf_co_reap(co[i], &st) == 0 && st == i * 10);
    }
    check_counts(s, 0, 0, 0, 0);
    /* Nothing ready: run does nothing. */
    CHECK(yf_sched_run(s) == 0);
    CHECK(yf_sched_free(s) == 0);
}

/* One pass of run_once resumes those ready when it began, once each, in
 * FIFO order; one made ready during the pass waits for the next. */
static yf_sched *once_s;
static int once_log[16];
static int nonce;

static intptr_t once_body(void *arg)
{
    int id = (int)(intptr_t)arg;
    once_log[nonce++] = id;
    if (id == 0)
        CHECK(yf_co_create(once_s, once_body, (void *)(intptr_t)9) != NULL);
    CHECK_ERR(yf_sched_run_once(once_s), EBUSY);
    CHECK(yf_co_yield() == 0);
    once_log[nonce++] = id;
    return 0;
}

static void test_run_once(unsigned flags)
{
    once_s = new_sched(flags);
    nonce = 0;
    CHECK(yf_sched_run_once(once_s) == 0);
    for (int i = 0; i < 3; i++)
        CHECK(yf_co_create(once_s, once_body, (void *)(intptr_t)i) != NULL);
    CHECK(yf_sched_run_once(once_s) == 3);
    check_counts(once_s, 4, 4, 0, 0);
    CHECK(yf_sched_run_once(once_s) == 4);
    check_counts(once_s, 4, 1, 0, 3);
    CHECK(yf_sched_run_once(once_s) == 1);
    CHECK(yf_sched_run_once(once_s) == 0);
    static const int want[] = {0, 1, 2, 9, 0, 1, 2, 9};
    CHECK(nonce == 8);
    for (int i = 0; i < 8; i++)
        CHECK(once_log[i] == want[i]);
    CHECK(yf_sched_free(once_s) == 0);
}

/* ---- block and wake ------------------------------------------------------ */

static intptr_t block_body(void *arg)
{
    (void)arg;
    CHECK(yf_co_next_token() == 1);
    intptr_t a = yf_co_block();
    CHECK(yf_co_next_token() == 2);
    intptr_t b = yf_co_block();
    return a + b;
}

static void test_block_wake(void)
{
    yf_sched *s = new_sched(0);
    /* Outside a coroutine. */
    CHECK_ERR(yf_co_block(), EPERM);
    CHECK_ERR(yf_co_yield(), EPERM);
    CHECK(yf_co_next_token() == 0);
    yf_co *co = yf_co_create(s, block_body, NULL);
    CHECK(co != NULL);
    CHECK(yf_co_token(co) == 0);
    /* Not blocked yet: every wake is stale. */
    CHECK_ERR(yf_co_wake(co, 0, 1), ESTALE);
    CHECK_ERR(yf_co_wake(co, 1, 1), ESTALE);
    CHECK(yf_co_resume(co) == 0);
    CHECK(yf_co_state(co) == YF_BLOCKED);
    check_counts(s, 1, 0, 1, 0);
    CHECK(yf_co_token(co) == 1);
    CHECK_ERR(yf_co_resume(co), EBUSY);
    CHECK_ERR(yf_co_wake(co, 0, 1), ESTALE);
    CHECK_ERR(yf_co_wake(co, 2, 1), ESTALE);
    CHECK(yf_co_state(co) == YF_BLOCKED);
    CHECK(yf_co_wake(co, 1, 40) == 0);
    CHECK(yf_co_state(co) == YF_READY);
    check_counts(s, 1, 1, 0, 0);
    CHECK(yf_co_token(co) == 0);
    /* Duplicate wake-up. */
    CHECK_ERR(yf_co_wake(co, 1, 99), ESTALE);
    check_counts(s, 1, 1, 0, 0);
    CHECK(yf_sched_run(s) == 1);
    CHECK(yf_co_state(co) == YF_BLOCKED);
    CHECK(yf_co_token(co) == 2);
    /* The token of the earlier block. */
    CHECK_ERR(yf_co_wake(co, 1, 99), ESTALE);
    check_counts(s, 1, 0, 1, 0);
    CHECK(yf_co_wake(co, 2, 2) == 0);
    CHECK(yf_sched_run(s) == 1);
    CHECK(yf_co_state(co) == YF_DONE);
    CHECK_ERR(yf_co_wake(co, 2, 2), ESTALE);
    check_counts(s, 1, 0, 0, 1);
    intptr_t st;
    CHECK(yf_co_status(co, &st) == 0 && st == 42);
    CHECK(yf_co_reap(co, &st) == 0 && st == 42);
    check_counts(s, 0, 0, 0, 0);
    CHECK(yf_sched_free(s) == 0);
}

/* ---- cancel and exit hooks ------------------------------------------------- */

struct hook_log {
    yf_co *co[8];
    intptr_t status[8];
    int arg[8];
    yf_co *current[8];
    int n;
};
static struct hook_log hlog;

static void log_hook(yf_co *co, intptr_t status, void *arg)
{
    int i = hlog.n++;
    hlog.co[i] = co;
    hlog.status[i] = status;
    hlog.arg[i] = (int)(intptr_t)arg;
    hlog.current[i] = yf_co_current();
}

static intptr_t yield_once(void *arg)
{
    CHECK(yf_co_yield() == 0);
    return (intptr_t)arg;
}

static intptr_t return_arg(void *arg)
{
    return (intptr_t)arg;
}

static void test_cancel_and_hooks(void)
{
    yf_sched *s = new_sched(0);
    yf_co *co = yf_co_create(s, yield_once, (void *)5);
    CHECK(co != NULL);
    yf_exit_hook h[3];
    for (int i = 0; i < 3; i++) {
        h[i].fn = log_hook;
        h[i].arg = (void *)(intptr_t)(i + 1);
        CHECK(yf_co_on_exit(co, &h[i]) == 0);
    }
    memset(&hlog, 0, sizeof hlog);
    CHECK(yf_co_cancel(co, 99) == 0);
    /* Newest first, in the canceller's (root) context, with the status. */
    CHECK(hlog.n == 3);
    for (int i = 0; i < 3; i++) {
        CHECK(hlog.arg[i] == 3 - i);
        CHECK(hlog.co[i] == co && hlog.status[i] == 99 && hlog.current[i] == NULL);
    }
    CHECK(yf_co_state(co) == YF_DONE);
    check_counts(s, 1, 0, 0, 1);
    intptr_t st;
    CHECK(yf_co_status(co, &st) == 0 && st == 99);
    CHECK_ERR(yf_co_cancel(co, 1), EBUSY);
    CHECK_ERR(yf_co_resume(co), EBUSY);
    yf_exit_hook late = {.fn = log_hook};
    CHECK_ERR(yf_co_on_exit(co, &late), EBUSY);
    /* Not resumed by run. */
    CHECK(yf_sched_run(s) == 0);
    CHECK(hlog.n == 3);
    CHECK(yf_co_reap(co, &st) == 0 && st == 99);

    /* A started coroutine cannot be cancelled: ready after a yield... */
    co = yf_co_create(s, yield_once, (void *)5);
    CHECK(co != NULL);
    CHECK(yf_co_on_exit(co, &h[0]) == 0);
    CHECK(yf_co_on_exit(co, &h[1]) == 0);
    CHECK(yf_co_resume(co) == 0);
    CHECK(yf_co_state(co) == YF_READY);
    CHECK_ERR(yf_co_cancel(co, 1), EBUSY);
    CHECK(yf_co_state(co) == YF_READY);
    check_counts(s, 1, 1, 0, 0);
    /* ...and its hooks run in its own context when it returns. */
    memset(&hlog, 0, sizeof hlog);
    CHECK(yf_co_resume(co) == 0);
    CHECK(hlog.n == 2);
    CHECK(hlog.arg[0] == 2 && hlog.arg[1] == 1);
    CHECK(hlog.current[0] == co && hlog.current[1] == co);
    CHECK(hlog.status[0] == 5 && hlog.status[1] == 5);
    CHECK(yf_co_reap(co, &st) == 0 && st == 5);

    /* ...or blocked. */
    co = yf_co_create(s, block_body, NULL);
    CHECK(yf_co_resume(co) == 0);
    CHECK_ERR(yf_co_cancel(co, 1), EBUSY);
    CHECK(yf_co_state(co) == YF_BLOCKED);
    check_counts(s, 1, 0, 1, 0);
    CHECK(yf_sched_free(s) == 0);
}

/* ---- reap, ids, detach, locals ---------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static void test_reap_and_ids(void)
{
    yf_sched *s = new_sched(0);
    CHECK(yf_co_find(s, 0) == NULL);
    errno = 0;
    CHECK(yf_co_find(s, 1) == NULL && errno == ESRCH);
    yf_co *co = yf_co_create(s, yield_once, (void *)3);
    uint64_t id = yf_co_id(co);
    CHECK(id != 0 && yf_co_find(s, id) == co);
    intptr_t st = 12345;
    CHECK_ERR(yf_co_reap(co, &st), EBUSY); /* new */
    CHECK_ERR(yf_co_status(co, &st), EBUSY);
    CHECK(yf_co_resume(co) == 0);
    CHECK_ERR(yf_co_reap(co, &st), EBUSY); /* ready */
    CHECK(st == 12345);
    CHECK(yf_sched_run(s) == 1);
    CHECK(yf_co_reap(co, NULL) == 0);
    errno = 0;
    CHECK(yf_co_find(s, id) == NULL && errno == ESRCH);
    check_counts(s, 0, 0, 0, 0);

    /* Ids are never reused, whether the structure is reused or not. */
    enum { N = 3000 };
    uint64_t *ids = malloc(N * sizeof *ids);
    CHECK(ids != NULL);
    int k = 0;
    for (int round = 0; round < N / 3; round++) {
        yf_co *c[3];
        for (int i = 0; i < 3; i++) {
            CHECK((c[i] = yf_co_create(s, return_arg, (void *)(intptr_t)k)) != NULL);
            ids[k++] = yf_co_id(c[i]);
        }
        CHECK(yf_sched_run(s) == 3);
        /* Reap in an order that shuffles the free list. */
        for (int i = 0; i < 3; i++) {
            yf_co *r = c[(i + round) % 3];
            uint64_t rid = yf_co_id(r);
            CHECK(yf_co_find(s, rid) == r);
            CHECK(yf_co_reap(r, &st) == 0);
            CHECK(yf_co_find(s, rid) == NULL);
        }
    }
    qsort(ids, N, sizeof *ids, cmp_u64);
    for (int i = 0; i < N; i++) {
        CHECK(ids[i] != 0 && ids[i] != id);
        CHECK(i == 0 || ids[i] != ids[i - 1]);
        CHECK(yf_co_find(s, ids[i]) == NULL);
    }
    free(ids);
    yf_counts n;
    yf_sched_counts(s, &n);
    CHECK(n.created == N + 1 && n.live == 0);
    CHECK(yf_sched_free(s) == 0);
}

/* A new coroutine of s running fn(arg), its id in *id. */
static yf_co *create_id(yf_sched *s, yf_co_fn fn, intptr_t arg, uint64_t *id)
{
    yf_co *co = yf_co_create(s, fn, (void *)arg);
    CHECK(co != NULL);
    *id = yf_co_id(co);
    return co;
}

/* The coroutine `id` was reaped and nothing else is live. */
static void check_gone(yf_sched *s, uint64_t id)
{
    CHECK(yf_co_find(s, id) == NULL);
    check_counts(s, 0, 0, 0, 0);
}

static void test_detach(void)
{
    yf_sched *s = new_sched(0);
    /* Detached before it runs: gone when it returns, hooks still see the status. */
    uint64_t id;
    yf_co *co = create_id(s, yield_once, 8, &id);
    yf_exit_hook h = {.fn = log_hook, .arg = (void *)1};
    CHECK(yf_co_on_exit(co, &h) == 0);
    CHECK(yf_co_detach(co) == 0);
    memset(&hlog, 0, sizeof hlog);
    CHECK(yf_sched_run(s) == 2);
    CHECK(hlog.n == 1 && hlog.status[0] == 8);
    errno = 0;
    CHECK(yf_co_find(s, id) == NULL && errno == ESRCH);
    check_counts(s, 0, 0, 0, 0);
    /* Detached while suspended. */
    co = create_id(s, yield_once, 8, &id);
    CHECK(yf_co_resume(co) == 0);
    CHECK(yf_co_detach(co) == 0);
    check_counts(s, 1, 1, 0, 0);
    CHECK(yf_sched_run(s) == 1);
    check_gone(s, id);
    /* Detaching a finished one reaps it. */
    co = create_id(s, return_arg, 1, &id);
    CHECK(yf_sched_run(s) == 1);
    check_counts(s, 1, 0, 0, 1);
    CHECK(yf_co_detach(co) == 0);
    check_gone(s, id);
    /* Detached, then cancelled. */
    co = create_id(s, return_arg, 1, &id);
    CHECK(yf_co_detach(co) == 0);
    CHECK(yf_co_cancel(co, 3) == 0);
    check_gone(s, id);
    CHECK(yf_sched_run(s) == 0);
    CHECK(yf_sched_free(s) == 0);
}

static intptr_t locals_body(void *arg)
{
    yf_co *me = yf_co_current();
    CHECK(yf_co_local_get(me, 0) == arg);
    CHECK(yf_co_local_set(me, 7, (void *)77) == 0);
    return 0;
}

static void test_locals(void)
{
    yf_sched *s = new_sched(0);
    yf_co *co = yf_co_create(s, locals_body, (void *)11);
    for (unsigned i = 0; i < YF_CO_LOCALS; i++)
        CHECK(yf_co_local_get(co, i) == NULL);
    CHECK(yf_co_local_set(co, 0, (void *)11) == 0);
    for (unsigned i = 1; i < YF_CO_LOCALS - 1; i++)
        CHECK(yf_co_local_set(co, i, (void *)(uintptr_t)(100 + i)) == 0);
    CHECK_ERR(yf_co_local_set(co, YF_CO_LOCALS, (void *)1), EINVAL);
    CHECK_ERR(yf_co_local_set(co, (unsigned)-1, (void *)1), EINVAL);
    errno = 0;
    CHECK(yf_co_local_get(co, YF_CO_LOCALS) == NULL && errno == EINVAL);
    CHECK(yf_sched_run(s) == 1);
    CHECK(yf_co_local_get(co, 7) == (void *)77);
    CHECK(yf_co_local_get(co, 3) == (void *)103);
    CHECK(yf_co_reap(co, NULL) == 0);
    /* The reused structure starts with empty slots. */
    co = yf_co_create(s, return_arg, NULL);
    for (unsigned i = 0; i < YF_CO_LOCALS; i++)
        CHECK(yf_co_local_get(co, i) == NULL);
    CHECK(yf_sched_free(s) == 0);
}

/* ---- nested resume, current, calls refused inside a coroutine ---------------- */

static yf_co *na, *nb;
static yf_sched *ns, *other_s;
static yf_co *other_co;
static int nstep[16];
static int nsteps;

static intptr_t nested_b(void *arg)
{
    (void)arg;
    CHECK(yf_co_current() == nb);
    CHECK(yf_co_state(na) == YF_RUNNING);
    nstep[nsteps++] = 2;
    CHECK(yf_co_yield() == 0);
    /* Second time: resumed by the root's run, not by A. */
    CHECK(yf_co_current() == nb);
    nstep[nsteps++] = 5;
    return 0;
}

static intptr_t nested_a(void *arg)
{
    (void)arg;
    CHECK(yf_co_current() == na);
    CHECK(yf_sched_current() == ns);
    CHECK(yf_co_state(na) == YF_RUNNING);
    /* Calls that only the root may make. */
    CHECK_ERR(yf_sched_free(ns), EBUSY);
    CHECK_ERR(yf_sched_run(ns), EBUSY);
    CHECK_ERR(yf_co_resume(na), EBUSY);
    /* A coroutine of another scheduler. */
    CHECK_ERR(yf_co_resume(other_co), EINVAL);
    CHECK(yf_co_state(other_co) == YF_NEW);
    nstep[nsteps++] = 1;
    CHECK(yf_co_resume(nb) == 0);
    /* B's yield came back here, not to the root. */
    CHECK(yf_co_current() == na);
    CHECK(yf_co_state(nb) == YF_READY);
    nstep[nsteps++] = 3;
    CHECK(yf_co_yield() == 0);
    nstep[nsteps++] = 4;
    return 0;
}

static void test_nested(void)
{
    ns = new_sched(0);
    other_s = new_sched(0);
    other_co = yf_co_create(other_s, return_arg, NULL);
    CHECK(yf_co_current() == NULL && yf_sched_current() == NULL);
    na = yf_co_create(ns, nested_a, NULL);
    nb = yf_co_create(ns, nested_b, NULL);
    CHECK(yf_co_resume(na) == 0);
    CHECK(yf_co_current() == NULL && yf_sched_current() == NULL);
    CHECK(nsteps == 3 && nstep[0] == 1 && nstep[1] == 2 && nstep[2] == 3);
    /* Queue: B (yielded first), then A. */
    check_counts(ns, 2, 2, 0, 0);
    CHECK(yf_sched_run(ns) == 2);
    CHECK(nsteps == 5 && nstep[3] == 5 && nstep[4] == 4);
    check_counts(ns, 2, 0, 0, 2);
    /* The other scheduler is untouched and still runs from the root. */
    check_counts(other_s, 1, 1, 0, 0);
    CHECK(yf_sched_run(other_s) == 1);
    CHECK(yf_sched_free(ns) == 0);
    CHECK(yf_sched_free(other_s) == 0);
}

/* ---- trace ring ----------------------------------------------------------- */

static void test_trace(void)
{
    yf_sched *s = new_sched(0);
    yf_trace_rec r[16];
    CHECK(yf_sched_trace_read(s, r, 16) == 0);
    CHECK(yf_sched_trace(s, 16) == 0);
    yf_co *a = yf_co_create(s, yield_once, NULL);
    yf_co *b = yf_co_create(s, block_body, NULL);
    uint64_t ia = yf_co_id(a), ib = yf_co_id(b);
    CHECK(yf_sched_run(s) == 3); /* a yields, b blocks, a exits */
    CHECK(yf_co_wake(b, 1, 0) == 0);
    CHECK(yf_sched_run(s) == 1); /* b blocks again */
    struct { uint64_t from, to, reason; } want[] = {
        {0, ia, YF_REASON_RESUME}, {ia, 0, YF_REASON_YIELD},
        {0, ib, YF_REASON_RESUME}, {ib, 0, YF_REASON_BLOCK},
        {0, ia, YF_REASON_RESUME}, {ia, 0, YF_REASON_EXIT},
        {0, ib, YF_REASON_RESUME}, {ib, 0, YF_REASON_BLOCK},
    };
    size_t n = yf_sched_trace_read(s, r, 16);
    CHECK(n == 8);
    for (size_t i = 0; i < n; i++) {
        CHECK(r[i].from_id == want[i].from && r[i].to_id == want[i].to);
        CHECK(r[i].reason == want[i].reason);
        CHECK(r[i].t_ns != 0 && (i == 0 || r[i].t_ns >= r[i - 1].t_ns));
    }
    /* max below the count: the oldest ones. */
    CHECK(yf_sched_trace_read(s, r, 3) == 3);
    CHECK(r[0].to_id == ia && r[2].to_id == ib);

    /* Wraparound: a ring of 3 keeps the newest 3 of 8. */
    CHECK(yf_sched_trace(s, 3) == 0);
    CHECK(yf_sched_trace_read(s, r, 16) == 0);
    CHECK(yf_co_reap(a, NULL) == 0);
    a = yf_co_create(s, yield_once, NULL);
    ia = yf_co_id(a);
    CHECK(yf_co_wake(b, 2, 0) == 0);
    CHECK(yf_sched_run(s) == 3); /* b exits, a yields; then a exits */
    /* a was queued before b was woken: 0->a, a->0 yield, 0->b, b->0 exit,
     * 0->a, a->0 exit; the ring keeps the last three. */
    n = yf_sched_trace_read(s, r, 16);
    CHECK(n == 3);
    CHECK(r[0].from_id == ib && r[0].to_id == 0 && r[0].reason == YF_REASON_EXIT);
    CHECK(r[1].from_id == 0 && r[1].to_id == ia && r[1].reason == YF_REASON_RESUME);
    CHECK(r[2].from_id == ia && r[2].to_id == 0 && r[2].reason == YF_REASON_EXIT);
    /* Stopping frees the ring. */
    CHECK(yf_sched_trace(s, 0) == 0);
    CHECK(yf_sched_trace_read(s, r, 16) == 0);
    CHECK(yf_sched_free(s) == 0);
}

/* ---- stacks --------------------------------------------------------------- */

static void test_pool_reuse(void)
{
    yf_sched *s = new_sched(0);
    for (int i = 0; i < 1000; i++) {
        yf_co *co = yf_co_create(s, yield_once, (void *)(intptr_t)i);
        CHECK(co != NULL);
        CHECK(yf_co_stack_size(co) > 65536 - 4096 - 64 * 64 - 64);
        CHECK(yf_co_stack_size(co) < 65536 - 4096);
        CHECK(yf_sched_run(s) == 2);
        CHECK(yf_co_stack_size(co) == 0);
        intptr_t st;
        CHECK(yf_co_reap(co, &st) == 0 && st == i);
        yf_counts n;
        yf_sched_counts(s, &n);
        CHECK(n.stacks_mapped == 1 && n.stacks_pooled == 1 && n.arenas == 1);
    }
    CHECK(yf_sched_trim(s) > 0);
    CHECK(yf_sched_free(s) == 0);
}

static void test_hwm(void)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    /* The largest stays below the smallest usable stack: 64 KiB less the guard
     * page, the header and the largest cache colour (63 x 64 bytes). */
#if defined(__SANITIZE_ADDRESS__)
    /* Under ASan with detect_stack_use_after_return, a coroutine's first
     * frames go to a fake stack ASan sets up then, and that set-up, or a
     * frame it could not place there, runs on the coroutine's stack: up to a
     * page more than the body's own use, which made 100 and 5000 bytes read
     * the same mark. The sizes are three pages apart there. */
    static const size_t sizes[] = {100, 12000, 24000, 40000, 52000};
#else
    static const size_t sizes[] = {100, 5000, 20000, 40000, 52000};
#endif
    for (unsigned flags = 0; flags <= YF_SCHED_GUARD_MPROTECT; flags += YF_SCHED_GUARD_MPROTECT) {
        size_t prev = 0;
        for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
            /* A fresh scheduler each time: a pooled stack keeps its pages. */
            yf_sched *s = yf_sched_new(65536, flags);
            CHECK(s != NULL);
            yf_co *co = yf_co_create(s, yf_demo_use_stack, (void *)(intptr_t)sizes[i]);
            CHECK(co != NULL);
            size_t before = yf_co_stack_hwm(co);
            CHECK(before <= page);
            CHECK(yf_co_resume(co) == 0);
            size_t hwm = yf_co_stack_hwm(co);
            if (hwm < sizes[i] || hwm > sizes[i] + 2 * page || hwm % page > 64 * 64 + 64)
                fprintf(stderr, "bytes %zu: hwm %zu\n", sizes[i], hwm);
            CHECK(hwm >= sizes[i] && hwm <= sizes[i] + 2 * page);
            CHECK(hwm > prev);
            CHECK(hwm <= yf_co_stack_size(co));
            prev = hwm;
            CHECK(yf_sched_run(s) == 1);
            CHECK(yf_sched_free(s) == 0);
        }
    }
}

/* Malloc'ed stacks of every size: a finishing coroutine runs on its stack
 * until its last switch, so the stack must not be freed before (a 1 MiB block
 * is its own mapping, which free unmaps at once). Detached ones too. */
static void test_malloc_stacks(void)
{
    for (size_t size = YF_STACK_MIN; size <= ((size_t)1 << 20); size *= 4) {
        yf_sched *s = yf_sched_new(size, YF_SCHED_MALLOC_STACKS);
        CHECK(s != NULL);
        for (int i = 0; i < 8; i++) {
            yf_co *co = yf_co_create(s, yield_once, (void *)(intptr_t)i);
            CHECK(co != NULL);
            if (i & 1)
                CHECK(yf_co_detach(co) == 0);
            CHECK(yf_sched_run(s) == 2);
            intptr_t st;
            if (!(i & 1))
                CHECK(yf_co_reap(co, &st) == 0 && st == i);
        }
        /* Two finished in a row, then the scheduler goes with a stack pending. */
        yf_co *a = yf_co_create(s, yield_once, (void *)1), *b = yf_co_create(s, yield_once, (void *)2);
        CHECK(a != NULL && b != NULL);
        CHECK(yf_sched_run(s) == 4);
        CHECK(yf_sched_free(s) == 0);
    }
}

/* ---- counts step by step ----------------------------------------------------- */

static void test_counts(void)
{
    yf_sched *s = new_sched(0);
    check_counts(s, 0, 0, 0, 0);
    yf_co *y = yf_co_create(s, yield_once, NULL);
    check_counts(s, 1, 1, 0, 0);
    yf_co *b = yf_co_create(s, block_body, NULL);
    check_counts(s, 2, 2, 0, 0);
    yf_co *c = yf_co_create(s, return_arg, NULL);
    check_counts(s, 3, 3, 0, 0);
    CHECK(yf_co_cancel(c, 0) == 0);
    check_counts(s, 3, 2, 0, 1);
    CHECK(yf_co_resume(b) == 0);
    check_counts(s, 3, 1, 1, 1);
    CHECK(yf_co_resume(y) == 0);
    check_counts(s, 3, 1, 1, 1);
    CHECK(yf_co_resume(y) == 0);
    check_counts(s, 3, 0, 1, 2);
    CHECK(yf_co_reap(c, NULL) == 0);
    check_counts(s, 2, 0, 1, 1);
    CHECK(yf_co_wake(b, yf_co_token(b), 0) == 0);
    check_counts(s, 2, 1, 0, 1);
    CHECK(yf_sched_run(s) == 1);
    check_counts(s, 2, 0, 1, 1);
    yf_counts n;
    yf_sched_counts(s, &n);
    CHECK(n.created == 3);
    CHECK(n.switches == 2 * 4);
    CHECK(n.stacks_pooled == 2 && n.stacks_mapped == 3);
    CHECK(yf_co_reap(y, NULL) == 0);
    check_counts(s, 1, 0, 1, 0);
    /* Freeing with a blocked coroutine discards it. */
    CHECK(yf_sched_free(s) == 0);
}

/* ---- errno across switches ---------------------------------------------------- */

/* The "failer" sets errno as a failed call would, yields (as a hooked call
 * that waits does), and returns the errno it finds on resumption; the
 * "clobberer" runs in between and sets errno to 0. */
static intptr_t errno_failer(void *arg)
{
    (void)arg;
    errno = EAGAIN;
    yf_co_yield();
    return errno;
}

static intptr_t errno_clobberer(void *arg)
{
    (void)arg;
    errno = 0;
    return 0;
}

static intptr_t errno_seen(unsigned flags)
{
    yf_sched *s = new_sched(flags);
    yf_co *a = yf_co_create(s, errno_failer, NULL);
    yf_co *b = yf_co_create(s, errno_clobberer, NULL);
    CHECK(a && b);
    errno = ERANGE;
    CHECK(yf_sched_run(s) == 3);
    int root_errno = errno;
    intptr_t st = -1;
    CHECK(yf_co_reap(a, &st) == 0 && yf_co_reap(b, NULL) == 0);
    /* The root's own errno survives too when the runtime keeps it. */
    if (flags & YF_SCHED_KEEP_ERRNO)
        CHECK(root_errno == ERANGE);
    CHECK(yf_sched_free(s) == 0);
    return st;
}

static void test_keep_errno(void)
{
    CHECK(errno_seen(YF_SCHED_KEEP_ERRNO) == EAGAIN);
    CHECK(errno_seen(YF_SCHED_KEEP_ERRNO | YF_SCHED_FPFAST) == EAGAIN);
    /* Without it errno is the thread's: the clobberer's 0 is what A reads. */
    CHECK(errno_seen(0) == 0);
}

/* ---- bad arguments and FP rounding ------------------------------------------ */

static void test_bad_args(void)
{
    CHECK(yf_sched_new(0, 0) == NULL && errno == EINVAL);
    CHECK(yf_sched_new(YF_STACK_MIN / 2, 0) == NULL && errno == EINVAL);
    CHECK(yf_sched_new((size_t)YF_STACK_MAX * 2, 0) == NULL && errno == EINVAL);
    CHECK(yf_sched_new(65536 + 4096, 0) == NULL && errno == EINVAL);
    CHECK(yf_sched_new(65536, 0x100) == NULL && errno == EINVAL);
    CHECK(yf_sched_new(65536, YF_SCHED_NOGUARD | YF_SCHED_GUARD_MPROTECT) == NULL && errno == EINVAL);
    yf_sched *s = new_sched(YF_SCHED_FPFAST | YF_SCHED_NOGUARD);
    CHECK(yf_sched_flags(s) == (YF_SCHED_FPFAST | YF_SCHED_NOGUARD));
    CHECK(yf_sched_stack_size(s) == 65536);
    CHECK(yf_sched_guard_regions(s) == 0);
    errno = 0;
    CHECK(yf_co_create(s, NULL, NULL) == NULL && errno == EINVAL);
    check_counts(s, 0, 0, 0, 0);
    CHECK(yf_sched_free(s) == 0);
    s = new_sched(YF_SCHED_GUARD_MPROTECT);
    CHECK(yf_sched_guard_regions(s) == 0);
    CHECK(yf_sched_free(s) == 0);
    s = new_sched(0);
    CHECK(yf_sched_guard_regions(s) == yf_guard_regions_supported());
    CHECK(yf_sched_free(s) == 0);
}

/* The rounding-control field of the first FP environment word, and its
 * sticky status bits (none in FPCR: AArch64 keeps them in FPSR). */
#if defined(__aarch64__)
#define RC_MASK 0x00c00000u
#define RC_SHIFT 22
#define FP_STATUS 0u
#else
#define RC_MASK 0x6000u
#define RC_SHIFT 13
#define FP_STATUS 0x3fu
#endif

static void test_fp_round(unsigned flags)
{
    uint32_t m0, m;
    uint16_t c0, c;
    yf_fpenv_get(&m0, &c0);
    yf_sched *s = new_sched(flags);
    yf_co *co[4];
    for (int mode = 0; mode < 4; mode++)
        co[mode] = yf_co_create(s, yf_demo_fp_round, (void *)(intptr_t)mode);
    CHECK(yf_sched_run(s) == 8);
    for (int mode = 0; mode < 4; mode++) {
        intptr_t st;
        CHECK(yf_co_reap(co[mode], &st) == 0);
        CHECK(((uint32_t)st & RC_MASK) == (uint32_t)mode << RC_SHIFT);
        CHECK(((uint32_t)st & ~(RC_MASK | FP_STATUS)) == (m0 & ~(RC_MASK | FP_STATUS)));
    }
    yf_fpenv_get(&m, &c);
    CHECK((m & ~FP_STATUS) == (m0 & ~FP_STATUS) && c == c0);
    CHECK(yf_sched_free(s) == 0);
}

int main(void)
{
    test_fifo();
    test_run_once(0);
    test_run_once(YF_SCHED_FPFAST);
    test_block_wake();
    test_cancel_and_hooks();
    test_reap_and_ids();
    test_detach();
    test_locals();
    test_nested();
    test_trace();
    test_pool_reuse();
    test_hwm();
    test_malloc_stacks();
    test_counts();
    test_keep_errno();
    test_bad_args();
    test_fp_round(0);
    test_fp_round(YF_SCHED_FPFAST);
    printf("test_sched: ok\n");
    return 0;
}
