/* bench_wheel.c - the timer churn workload on the wheel and on a binary heap
 * with indexed cancel over the same yf_timer nodes (notebook 05). */
#include <errno.h>
#include <stdlib.h>

#include "../yfi.h"
#include "lab.h"

/* Deadlines are uniform in [now+1, now+YF_CHURN_HORIZON]; time moves one tick
 * every YF_CHURN_TICK_STEPS steps (lab.h). Fixed so that runs compare. */

/* The baseline: a binary min-heap of timer pointers; each timer's `where`
 * is its heap index + 1, so cancel finds it in O(1) and repairs in O(log n). */
struct heap {
    yf_timer **a;
    size_t n;
};

struct churn {
    int kind;
    yf_wheel *wh;
    struct heap h;
    uint64_t now, rng, events;
    yf_timer *nodes;
    yf_timer **pend;            /* pending timers; a timer's payload is its index here */
    size_t npend;
    yf_timer *spare;            /* the node the next add uses */
};

static inline uint64_t rnd(struct churn *c)
{
    /* splitmix64 */
    uint64_t z = (c->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint64_t below(struct churn *c, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)rnd(c) * n) >> 64);
}

static inline void heap_set(struct heap *h, size_t i, yf_timer *t)
{
    h->a[i] = t;
    t->where = (uint32_t)(i + 1);
}

static void sift_up(struct heap *h, size_t i)
{
    yf_timer *t = h->a[i];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h->a[p]->deadline <= t->deadline)
            break;
        heap_set(h, i, h->a[p]);
        i = p;
    }
    heap_set(h, i, t);
}

static void sift_down(struct heap *h, size_t i)
{
    yf_timer *t = h->a[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && h->a[c + 1]->deadline < h->a[c]->deadline)
            c++;
        if (t->deadline <= h->a[c]->deadline)
            break;
        heap_set(h, i, h->a[c]);
        i = c;
    }
    heap_set(h, i, t);
}

static void heap_add(struct heap *h, yf_timer *t, uint64_t deadline)
{
    t->deadline = deadline;
    h->a[h->n] = t;
    sift_up(h, h->n++);
}

static void heap_remove(struct heap *h, yf_timer *t)
{
    size_t i = t->where - 1;
    yf_timer *last = h->a[--h->n];
    t->where = 0;
    if (last == t)
        return;
    heap_set(h, i, last);
    if (i > 0 && h->a[(i - 1) / 2]->deadline > last->deadline)
        sift_up(h, i);
    else
        sift_down(h, i);
}

static void arm(struct churn *c, yf_timer *t)
{
    uint64_t d = c->now + 1 + below(c, YF_CHURN_HORIZON);
    if (c->kind == YF_CHURN_WHEEL)
        yf_wheel_add(c->wh, t, d);
    else
        heap_add(&c->h, t, d);
    c->events++;
}

/* Expiry re-arms the timer from its own callback, as a periodic timer does. */
static void rearm(yf_timer *t, void *arg)
{
    arm(arg, t);
}

static void advance(struct churn *c)
{
    c->now++;
    if (c->kind == YF_CHURN_WHEEL) {
        yf_wheel_advance(c->wh, c->now);
        return;
    }
    struct heap *h = &c->h;
    while (h->n && h->a[0]->deadline <= c->now) {
        yf_timer *t = h->a[0];
        heap_remove(h, t);
        t->fn(t, t->arg);
    }
}

/* One step of the workload; step s of the run (warm-up included) decides
 * the ticks. */
static inline void churn_step(struct churn *c, int64_t s)
{
    yf_timer *t = c->spare;
    t->payload = c->npend;
    c->pend[c->npend++] = t;
    arm(c, t);
    size_t r = (size_t)below(c, c->npend);
    yf_timer *v = c->pend[r];
    if (c->kind == YF_CHURN_WHEEL)
        yf_wheel_cancel(c->wh, v);
    else
        heap_remove(&c->h, v);
    c->events++;
    c->pend[r] = c->pend[--c->npend];
    c->pend[r]->payload = r;
    c->spare = v;
    if (s % YF_CHURN_TICK_STEPS == YF_CHURN_TICK_STEPS - 1)
        advance(c);
}

/* The warm-up: the same steps, out of callgrind's count. The initial
 * timers' deadlines are uniform over the horizon, which the steady state's
 * are not (cancels and re-arms reshape them), so counts taken before one
 * horizon has passed describe a transient. */
__attribute__((noinline)) static void churn_warm(struct churn *c, int64_t steps)
{
    for (int64_t s = 0; s < steps; s++)
        churn_step(c, s);
}

/* The measured loop, kept out of line so that callgrind can count it alone
 * (--toggle-collect=churn_steps*, see csrc/programs/wheel_churn.c). */
__attribute__((noinline)) static void churn_steps(struct churn *c, int64_t first, int64_t steps)
{
    for (int64_t s = first; s < first + steps; s++)
        churn_step(c, s);
}

double yf_bench_wheel_churn(int kind, const unsigned *bits, unsigned nlevels, size_t pending,
                            int64_t warm, int64_t steps, uint64_t seed, uint64_t *events)
{
    if ((kind != YF_CHURN_WHEEL && kind != YF_CHURN_HEAP) || pending < 1 || pending > ((size_t)1 << 30)
        || warm < 0 || steps < 0 || !events) {
        errno = EINVAL;
        return -1;
    }
    struct churn c = {.kind = kind, .rng = seed};
    if (kind == YF_CHURN_WHEEL && !(c.wh = yf_wheel_new(bits, nlevels, 0)))
        return -1;
    c.nodes = calloc(pending + 1, sizeof *c.nodes);
    c.pend = malloc((pending + 1) * sizeof *c.pend);
    c.h.a = kind == YF_CHURN_HEAP ? malloc((pending + 1) * sizeof *c.h.a) : NULL;
    if (!c.nodes || !c.pend || (kind == YF_CHURN_HEAP && !c.h.a)) {
        free(c.nodes);
        free(c.pend);
        free(c.h.a);
        yf_wheel_free(c.wh);
        errno = ENOMEM;
        return -1;
    }
    for (size_t i = 0; i <= pending; i++) {
        c.nodes[i].fn = rearm;
        c.nodes[i].arg = &c;
    }
    for (size_t i = 0; i < pending; i++) {
        c.nodes[i].payload = i;
        c.pend[c.npend++] = &c.nodes[i];
        arm(&c, &c.nodes[i]);
    }
    c.spare = &c.nodes[pending];
    churn_warm(&c, warm);
    c.events = 0;

    uint64_t t0 = yfi_now_ns();
    churn_steps(&c, warm, steps);
    double ns = (double)(yfi_now_ns() - t0);

    *events = c.events;
    yf_wheel_free(c.wh);
    free(c.nodes);
    free(c.pend);
    free(c.h.a);
    return ns;
}

/* ---- lateness of the event loop's timers ------------------------------------- */

struct sleeper {
    unsigned sleeps, max_ms, busy_us;
    uint64_t rng;
    int64_t *out;
    size_t *n, max;
};

static intptr_t sleeper_body(void *arg)
{
    struct sleeper *sl = arg;
    struct churn rng = {.rng = sl->rng};
    for (unsigned i = 0; i < sl->sleeps; i++) {
        int64_t ms = 1 + (int64_t)below(&rng, sl->max_ms);
        uint64_t t0 = yfi_now_ns();
        if (yf_sleep_ms(ms) != 0)
            return -1;
        uint64_t t1 = yfi_now_ns();
        if (*sl->n < sl->max)
            sl->out[(*sl->n)++] = (int64_t)(t1 - t0) - ms * 1000000;
        while (yfi_now_ns() - t1 < (uint64_t)sl->busy_us * 1000u)
            ;
    }
    return 0;
}

int64_t yf_bench_loop_lateness(unsigned ncos, unsigned sleeps, unsigned max_ms, unsigned busy_us,
                               uint64_t seed, int64_t *out, size_t max)
{
    if (ncos < 1 || ncos > 100000 || max_ms < 1 || (max && !out)) {
        errno = EINVAL;
        return -1;
    }
    struct sleeper *sl = calloc(ncos, sizeof *sl);
    yf_sched *s = sl ? yf_sched_new(65536, 0) : NULL;
    yf_loop *lp = s ? yf_loop_new(s) : NULL;
    int64_t rc = -1;
    size_t n = 0;
    if (!lp)
        goto out;
    for (unsigned i = 0; i < ncos; i++) {
        sl[i] = (struct sleeper){.sleeps = sleeps, .max_ms = max_ms, .busy_us = busy_us,
                                 .rng = seed + i * 0x9e3779b97f4a7c15ull, .out = out, .n = &n, .max = max};
        yf_co *co = yf_co_create(s, sleeper_body, &sl[i]);
        if (!co || yf_co_detach(co) != 0)
            goto out;
    }
    if (yf_loop_run(lp) >= 0)
        rc = (int64_t)n;
out:;
    int e = errno;
    if (lp)
        yf_loop_free(lp);
    if (s)
        yf_sched_free(s);
    free(sl);
    errno = e;
    return rc;
}
