/* test_wheel.c - the timer wheel from C: callbacks that add and cancel
 * themselves and others, order, errors, and a random walk checked against
 * a brute-force model after every step. Checks survive NDEBUG. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "yf.h"
#include "check.h"

static void wheel_ok(const yf_wheel *wh)
{
    char msg[256];
    if (yf_wheel_check(wh, msg, sizeof msg) != 0) {
        fprintf(stderr, "yf_wheel_check: %s\n", msg);
        exit(1);
    }
}

/* ---- callbacks ---------------------------------------------------------------- */

struct log {
    yf_wheel *wh;
    uint64_t fired[64];         /* payloads in firing order */
    uint64_t at[64];            /* wheel time at each firing */
    int n;
    yf_timer *victim;           /* cancelled by the "killer" callback */
    int rearms;                 /* how often the periodic timer re-adds itself */
};

static void record(yf_timer *t, void *arg)
{
    struct log *lg = arg;
    CHECK(t->owner == NULL && t->where == 0);      /* disarmed before the call */
    lg->at[lg->n] = yf_wheel_now(lg->wh);
    lg->fired[lg->n++] = t->payload;
    wheel_ok(lg->wh);
}

static void periodic(yf_timer *t, void *arg)
{
    struct log *lg = arg;
    record(t, arg);
    if (lg->rearms-- > 0) {
        CHECK(yf_wheel_add(lg->wh, t, t->deadline + 10) == 0);
        CHECK(yf_wheel_add(lg->wh, t, t->deadline + 20) == -1 && errno == EBUSY);
    }
}

static void killer(yf_timer *t, void *arg)
{
    struct log *lg = arg;
    record(t, arg);
    CHECK(yf_wheel_cancel(lg->wh, lg->victim) == 0);
    CHECK(yf_wheel_cancel(lg->wh, lg->victim) == -1 && errno == ENOENT);
}

static void self_cancel(yf_timer *t, void *arg)
{
    struct log *lg = arg;
    record(t, arg);
    /* Already disarmed: cancelling itself says so. */
    CHECK(yf_wheel_cancel(lg->wh, t) == -1 && errno == ENOENT);
    /* Re-arm for now: due, so it fires in the next advance, not this one. */
    if (t->payload == 50) {
        t->payload = 51;
        CHECK(yf_wheel_add(lg->wh, t, yf_wheel_now(lg->wh)) == 0);
        CHECK(yf_wheel_add(lg->wh, t, 0) == -1 && errno == EBUSY);
        CHECK(yf_wheel_cancel(lg->wh, t) == 0);
        CHECK(yf_wheel_add(lg->wh, t, 0) == 0);
    }
    /* No advance from inside a callback. */
    CHECK(yf_wheel_advance(lg->wh, yf_wheel_now(lg->wh) + 1) == -1 && errno == EBUSY);
}

static void test_callbacks(void)
{
    unsigned bits[] = {2, 2, 2};
    struct log lg = {0};
    yf_wheel *wh = yf_wheel_new(bits, 3, 0);
    CHECK(wh);
    lg.wh = wh;
    yf_timer p = {.fn = periodic, .arg = &lg, .payload = 1};
    yf_timer k = {.fn = killer, .arg = &lg, .payload = 2};
    yf_timer v = {.fn = record, .arg = &lg, .payload = 3};
    yf_timer s = {.fn = self_cancel, .arg = &lg, .payload = 50};
    lg.victim = &v;
    lg.rearms = 2;
    CHECK(yf_wheel_add(wh, &p, 5) == 0);          /* fires at 5, 15, 25 */
    CHECK(yf_wheel_add(wh, &k, 7) == 0);          /* cancels v before it fires */
    CHECK(yf_wheel_add(wh, &v, 7) == 0);          /* same tick as k, after it */
    CHECK(yf_wheel_add(wh, &s, 100) == 0);        /* beyond 2^6 ticks: on a far level */
    wheel_ok(wh);
    CHECK(yf_wheel_advance(wh, 99) == 4);         /* p x3, k */
    CHECK(lg.n == 4);
    uint64_t want[] = {1, 2, 1, 1};
    uint64_t when[] = {5, 7, 15, 25};
    for (int i = 0; i < 4; i++)
        CHECK(lg.fired[i] == want[i] && lg.at[i] == when[i]);
    CHECK(v.owner == NULL && yf_wheel_count(wh) == 1);
    CHECK(yf_wheel_advance(wh, 100) == 1);        /* s at exactly 100, re-armed as due */
    CHECK(lg.fired[4] == 50 && lg.at[4] == 100);
    CHECK(yf_wheel_count(wh) == 1 && yf_wheel_next(wh) == 0);
    CHECK(yf_wheel_advance(wh, 100) == 1);        /* the due re-arm */
    CHECK(lg.fired[5] == 51);
    CHECK(yf_wheel_count(wh) == 0 && yf_wheel_next(wh) == UINT64_MAX);
    wheel_ok(wh);
    yf_wheel_free(wh);
}

/* A callback that arms a batch of others, one of them for its own tick (due
 * next advance) and one for the next tick (fires in the same advance). */
struct family {
    yf_wheel *wh;
    yf_timer kids[3];
    int order[8], n;
};

static void kid(yf_timer *t, void *arg)
{
    struct family *f = arg;
    f->order[f->n++] = (int)t->payload;
}

static void parent(yf_timer *t, void *arg)
{
    struct family *f = arg;
    f->order[f->n++] = (int)t->payload;
    uint64_t now = yf_wheel_now(f->wh);
    CHECK(yf_wheel_add(f->wh, &f->kids[0], now) == 0);
    CHECK(yf_wheel_add(f->wh, &f->kids[1], now + 1) == 0);
    CHECK(yf_wheel_add(f->wh, &f->kids[2], now + 1000) == 0);
    CHECK(yf_wheel_cancel(f->wh, &f->kids[2]) == 0);
    wheel_ok(f->wh);
}

static void test_parent_arms_children(void)
{
    unsigned bits[] = {3, 3};
    struct family f = {0};
    f.wh = yf_wheel_new(bits, 2, 0);
    CHECK(f.wh);
    for (int i = 0; i < 3; i++)
        f.kids[i] = (yf_timer){.fn = kid, .arg = &f, .payload = (uint64_t)(10 + i)};
    yf_timer p = {.fn = parent, .arg = &f, .payload = 1};
    CHECK(yf_wheel_add(f.wh, &p, 63) == 0);
    CHECK(yf_wheel_advance(f.wh, 70) == 2);        /* parent at 63, kid 11 at 64 */
    CHECK(f.n == 2 && f.order[0] == 1 && f.order[1] == 11);
    CHECK(yf_wheel_advance(f.wh, 70) == 1);        /* kid 10, armed for "now" */
    CHECK(f.order[2] == 10 && yf_wheel_count(f.wh) == 0);
    yf_wheel_free(f.wh);
}

static void test_errors(void)
{
    unsigned ok[] = {8, 8, 8, 8}, zero[] = {0}, big[] = {11}, many[] = {10, 10, 10, 10, 10};
    CHECK(!yf_wheel_new(zero, 1, 0) && errno == EINVAL);
    CHECK(!yf_wheel_new(big, 1, 0) && errno == EINVAL);
    CHECK(!yf_wheel_new(many, 5, 0) && errno == EINVAL);
    CHECK(!yf_wheel_new(ok, 0, 0) && errno == EINVAL);
    CHECK(!yf_wheel_new(ok, 9, 0) && errno == EINVAL);
    CHECK(!yf_wheel_new(NULL, 1, 0) && errno == EINVAL);
    yf_wheel *a = yf_wheel_new(ok, 4, 1000), *b = yf_wheel_new(ok, 4, 0);
    CHECK(a && b);
    yf_timer t = {0};
    CHECK(yf_wheel_cancel(a, &t) == -1 && errno == ENOENT);
    CHECK(yf_wheel_add(a, &t, 2000) == 0);
    CHECK(yf_wheel_add(b, &t, 5) == -1 && errno == EBUSY);
    CHECK(yf_wheel_cancel(b, &t) == -1 && errno == EINVAL);
    CHECK(yf_wheel_advance(a, 999) == -1 && errno == EINVAL);
    CHECK(yf_wheel_add(NULL, &t, 1) == -1 && errno == EINVAL);
    char msg[64];
    CHECK(yf_wheel_check(NULL, msg, sizeof msg) == -1 && strstr(msg, "NULL"));
    /* Freeing with a pending timer unlinks it. */
    yf_wheel_free(a);
    CHECK(t.owner == NULL && t.where == 0 && t.next == NULL);
    CHECK(yf_wheel_add(b, &t, 5) == 0);
    yf_wheel_free(b);
    yf_wheel_free(NULL);
}

/* A corrupted link is reported, not walked forever. */
static void test_check_reports(void)
{
    unsigned bits[] = {4};
    yf_wheel *wh = yf_wheel_new(bits, 1, 0);
    yf_timer t[3] = {{0}};
    for (int i = 0; i < 3; i++)
        CHECK(yf_wheel_add(wh, &t[i], 5) == 0);
    char msg[256];
    t[2].next = &t[0];                              /* a cycle */
    CHECK(yf_wheel_check(wh, msg, sizeof msg) == -1 && strstr(msg, "level 0 slot 5"));
    t[2].next = NULL;
    t[1].deadline = 6;                              /* filed in the wrong slot */
    CHECK(yf_wheel_check(wh, msg, sizeof msg) == -1 && strstr(msg, "belongs in slot 6"));
    t[1].deadline = 5;
    wheel_ok(wh);
    yf_wheel_free(wh);
}

/* ---- random walk against a brute-force model ------------------------------------ */

#define N 512

static uint64_t rng = 88172645463325252ull;
static uint64_t next_rand(void)
{
    return xorshift64(&rng);
}

struct walk {
    yf_wheel *wh;
    yf_timer t[N];
    uint64_t eff[N], seq[N], counter;
    int pending[N];
    uint64_t got[N];
    int ngot;
};

static void collect(yf_timer *t, void *arg)
{
    struct walk *w = arg;
    w->got[w->ngot++] = t->payload;
    /* A third of the expiries re-arm themselves, the model with them. */
    if (next_rand() % 3 == 0) {
        uint64_t now = yf_wheel_now(w->wh), d = now + next_rand() % 300;
        CHECK(yf_wheel_add(w->wh, t, d) == 0);
        w->eff[t->payload] = d;
        w->seq[t->payload] = w->counter++;
        w->pending[t->payload] = 2;             /* re-armed during this advance */
    }
}

/* far: deadlines and advances up to 2^60 ticks ahead, so timers live on
 * the far levels above the caller's and cascade down through all of them. */
static void test_random_walk(const unsigned *bits, unsigned nlevels, int far)
{
    static struct walk w;
    memset(&w, 0, sizeof w);
    w.wh = yf_wheel_new(bits, nlevels, 0);
    CHECK(w.wh);
    for (int i = 0; i < N; i++)
        w.t[i] = (yf_timer){.fn = collect, .arg = &w, .payload = (uint64_t)i};
    /* Under qemu-user (tests/test_cross.py) the walk is a tenth as long: the
     * full check after every step costs minutes there, and what the second
     * architecture adds is the switch, not the wheel's arithmetic. */
    int steps = getenv("YF_TEST_QEMU_USER") ? 2000 : 20000;
    for (int step = 0; step < steps; step++) {
        int i = (int)(next_rand() % N);
        uint64_t now = yf_wheel_now(w.wh);
        switch (next_rand() % 4) {
        case 0:
        case 1:
            if (!w.pending[i]) {
                uint64_t d = now + next_rand() % (1ull << (next_rand() % (far ? 60 : 14))) - 2;
                if (d > now + (1ull << (far ? 60 : 14)))
                    d = now;
                CHECK(yf_wheel_add(w.wh, &w.t[i], d) == 0);
                w.eff[i] = d;
                w.seq[i] = w.counter++;
                w.pending[i] = 1;
            }
            break;
        case 2:
            CHECK(yf_wheel_cancel(w.wh, &w.t[i]) == (w.pending[i] ? 0 : -1));
            w.pending[i] = 0;
            break;
        default: {
            uint64_t to = now + next_rand() % 700;
            if (far && next_rand() % 4 == 0)
                to = now + next_rand() % (1ull << (next_rand() % 60));
            /* Expected: pending with eff <= to, by (eff, seq). Selection sort. */
            int want[N], nw = 0;
            for (int j = 0; j < N; j++)
                if (w.pending[j] && w.eff[j] <= to)
                    want[nw++] = j;
            for (int a = 0; a < nw; a++)
                for (int b = a + 1; b < nw; b++)
                    if (w.eff[want[b]] < w.eff[want[a]] ||
                        (w.eff[want[b]] == w.eff[want[a]] && w.seq[want[b]] < w.seq[want[a]])) {
                        int x = want[a];
                        want[a] = want[b];
                        want[b] = x;
                    }
            for (int a = 0; a < nw; a++)
                w.pending[want[a]] = 0;
            w.ngot = 0;
            int64_t fired = yf_wheel_advance(w.wh, to);
            /* Re-arms fired in the same advance come after the planned ones
             * only when due later; compare the planned prefix in order. */
            CHECK(fired == w.ngot && w.ngot >= nw);
            int k = 0;
            for (int a = 0; a < w.ngot && k < nw; a++) {
                if ((int)w.got[a] == want[k])
                    k++;
            }
            CHECK(k == nw);
            for (int j = 0; j < N; j++)
                if (w.pending[j] == 2)
                    w.pending[j] = w.t[j].owner ? 1 : 0;
            break;
        }
        }
        wheel_ok(w.wh);
        size_t count = 0;
        for (int j = 0; j < N; j++)
            count += w.pending[j] != 0;
        CHECK(count == yf_wheel_count(w.wh));
    }
    yf_wheel_free(w.wh);
}

/* ---- batch forms ------------------------------------------------------------------ */

static void test_batch(void)
{
    unsigned bits[] = {6, 6};
    yf_wheel *wh = yf_wheel_new(bits, 2, 0);
    static yf_timer t[100];
    uint32_t idx[100];
    uint64_t d[100], p[100], outp[100], outd[100];
    for (int i = 0; i < 100; i++) {
        idx[i] = (uint32_t)i;
        d[i] = (uint64_t)(1000 - 7 * i);
        p[i] = (uint64_t)i + 1000;
    }
    size_t failed = 99;
    CHECK(yf_wheel_add_many(wh, t, idx, d, p, 100, &failed) == 100 && failed == 0);
    CHECK(yf_wheel_add_many(wh, t, idx, d, p, 3, &failed) == 0 && failed == 3);
    CHECK(yf_wheel_cancel_many(wh, t, idx, 10, &failed) == 10 && failed == 0);
    CHECK(yf_wheel_cancel_many(wh, t, idx, 10, &failed) == 0 && failed == 10);
    wheel_ok(wh);
    /* 90 due by 1000, collected 25 at a time in deadline order. */
    int total = 0;
    uint64_t last = 0;
    for (;;) {
        int64_t n = yf_wheel_advance_collect(wh, 1000, outp, outd, 25);
        CHECK(n >= 0);
        wheel_ok(wh);
        for (int i = 0; i < n; i++) {
            CHECK(outd[i] >= last && outp[i] == 1000 + (1000 - outd[i]) / 7);
            last = outd[i];
        }
        total += (int)n;
        if (n < 25)
            break;
        CHECK(yf_wheel_now(wh) <= 1000);
    }
    CHECK(total == 90 && yf_wheel_count(wh) == 0 && yf_wheel_now(wh) == 1000);
    yf_wheel_free(wh);
}

/* Due timers (deadline at or before now) come out in deadline order, ties
 * in arming order, before the wheel's own; the promise of yf_wheel_advance. */
static void test_due_in_deadline_order(void)
{
    unsigned bits[] = {8, 8, 8, 8};
    yf_wheel *wh = yf_wheel_new(bits, 4, 100);
    CHECK(wh);
    uint64_t d[] = {50, 10, 100, 101, 10, 0, 99};
    yf_timer t[7] = {{0}};
    for (int i = 0; i < 7; i++)
        CHECK(yf_wheel_add(wh, &t[i], d[i]) == 0);
    wheel_ok(wh);
    CHECK(yf_wheel_next(wh) == 0);
    uint64_t p[8], dl[8];
    for (int i = 0; i < 7; i++)
        t[i].payload = (uint64_t)i;
    CHECK(yf_wheel_advance_collect(wh, 101, p, dl, 8) == 7);
    uint64_t want[] = {5, 1, 4, 0, 6, 2, 3};
    for (int i = 0; i < 7; i++)
        CHECK(p[i] == want[i] && dl[i] == d[want[i]]);
    wheel_ok(wh);
    yf_wheel_free(wh);
}

/* Many timers far beyond the caller's levels (a 2^8-tick wheel, deadlines
 * up to 2^50 ticks away): every one comes out exactly at its deadline, in
 * (deadline, arming) order. Before the far levels these waited in one list
 * scanned once per turn, and this took minutes. */
static void test_far_timers(void)
{
    enum { M = 100000 };
    unsigned bits[] = {4, 4};
    yf_wheel *wh = yf_wheel_new(bits, 2, 7);
    CHECK(wh);
    static yf_timer t[M];
    static uint64_t p[M], dl[M];
    memset(t, 0, sizeof t);
    for (int i = 0; i < M; i++) {
        t[i].payload = (uint64_t)i;
        /* Every 16th shares its deadline with the one before. */
        uint64_t d = i % 16 ? t[i - 1].deadline : 7 + 1 + next_rand() % (1ull << (8 + next_rand() % 43));
        CHECK(yf_wheel_add(wh, &t[i], d) == 0);
    }
    wheel_ok(wh);
    size_t total = 0;
    uint64_t last_d = 0, last_p = 0;
    while (total < M) {
        int64_t n = yf_wheel_advance_collect(wh, UINT64_MAX - 1, p, dl, M);
        CHECK(n > 0);
        for (int64_t i = 0; i < n; i++) {
            CHECK(dl[i] == t[p[i]].deadline);
            CHECK(total == 0 || dl[i] > last_d || (dl[i] == last_d && p[i] > last_p));
            last_d = dl[i];
            last_p = p[i];
            total++;
        }
    }
    CHECK(yf_wheel_count(wh) == 0 && yf_wheel_now(wh) == UINT64_MAX - 1);
    wheel_ok(wh);
    /* The very last ticks of the clock. */
    CHECK(yf_wheel_add(wh, &t[0], UINT64_MAX) == 0);
    wheel_ok(wh);
    CHECK(yf_wheel_advance(wh, UINT64_MAX) == 1 && yf_wheel_count(wh) == 0);
    yf_wheel_free(wh);
}

int main(void)
{
    test_callbacks();
    test_parent_arms_children();
    test_errors();
    test_check_reports();
    unsigned shapes[][4] = {{2, 3, 2, 0}, {8, 8, 8, 8}, {1, 0, 0, 0}, {4, 4, 0, 0}};
    unsigned nl[] = {3, 4, 1, 2};
    for (int i = 0; i < 4; i++)
        test_random_walk(shapes[i], nl[i], 0);
    for (int i = 0; i < 4; i++)
        test_random_walk(shapes[i], nl[i], 1);
    test_due_in_deadline_order();
    test_far_timers();
    test_batch();
    printf("test_wheel: ok\n");
    return 0;
}
