/* wheel.c - hierarchical timer wheel: caller-owned timers, O(1) add and
 * cancel, next deadline through occupancy bitmaps, expiry exact and in
 * deadline order.
 *
 * Why it is shaped like this.
 *
 * Varghese & Lauck (1987, "Hashed and hierarchical timing wheels") scheme 6
 * is the base: level i has 2^bits[i] slots, each as wide as one whole turn of
 * level i-1, so a few hundred slots cover 2^32 ticks and more. A timer is
 * filed on the level where its deadline first differs from the wheel's time,
 * found from the highest set bit of (deadline ^ now), as William Ahern's
 * timeout.c and tokio do. That choice gives the invariant everything below
 * leans on: on every level the occupied slots lie strictly after the slot
 * holding `now` (no slot ever holds timers of two turns), so the lowest set
 * bit of a level's occupancy bitmap is its earliest slot, and the lowest
 * occupied level holds the earliest timer. "Next deadline" is then one or
 * two count-trailing-zeros per level (timeout.c keeps one 64-bit map per
 * level; we keep up to 16 words per level and a summary word over them).
 *
 * The Linux wheel since 4.8 (64 slots per level, each level 8x coarser) does
 * not cascade: a timer on a coarse level fires at its slot's end, up to 1/8
 * of its delay late, and timers of one slot come out in no deadline order.
 * That suits networking timeouts that are mostly cancelled, but not the
 * contract here (never early, never late by the wheel's fault, deadline
 * order), so this wheel cascades like tokio's (6 x 64 slots, 1 ms): when
 * time enters a slot of level i > 0, its timers are refiled on lower levels.
 * A timer cascades at most once per level, so its whole life is O(levels).
 *
 * timeout.c's update gathers every passed slot into a todo list and
 * reschedules from there; we instead walk time from event to event (the
 * bitmaps give the next one in O(levels)), firing one level-0 slot per
 * event. That costs nothing extra when nothing is due, keeps expiries in
 * deadline order with ties in arming order (lists are FIFO and a cascade
 * keeps list order), and lets callbacks see the wheel's time at their own
 * deadline and add or cancel any timer, themselves included: a slot is
 * drained by popping its head, so a timer cancelled by an earlier callback
 * has simply left the list (the diary's runtime of 2012 iterated a list
 * that callbacks modified).
 *
 * Deadlines beyond the caller's top level go to levels the wheel adds above
 * it, 64 slots each, as many as reach 2^64 ticks (eleven at most), and
 * cascade down like every other timer. The diary's runtime, and this wheel
 * until it was measured, kept them in one unsorted list scanned once per
 * top-level turn: with deadlines spread over many turns every scan moved a
 * few timers and walked all of them, so advancing through n far timers cost
 * O(n^2) (200,000 of them: minutes). On the added levels a timer still
 * cascades at most once per level, and an empty level costs one summary
 * word per event. Deadlines at or before the wheel's time go to a due list
 * fired by the next advance, sorted there by deadline (stable, so ties keep
 * arming order) when an arming out of order left it unsorted. The caller's
 * shape is 1-8 levels of 2-1024 slots; the Python default and the ablation
 * in notebook 05 say which shapes pay.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "yfi.h"

#define MAXUSER YF_WHEEL_LEVELS_MAX /* levels the caller may ask for */
#define MAXBITS YF_WHEEL_BITS_MAX
#define MAXTOTAL YF_WHEEL_BITS_TOTAL_MAX
#define WORDS ((1u << MAXBITS) / 64)
/* The levels added above the caller's: 2^FAR_BITS slots each, up to 64 bits. */
#define FAR_BITS 6
#define MAXLEVELS (MAXUSER + (64 - 1 + FAR_BITS - 1) / FAR_BITS)

/* yf_timer.where: kind << 16 | slot, where kind 1..MAXLEVELS is level+1. */
#define KIND_DUE (MAXLEVELS + 2)
#define WHERE(kind, slot) (((uint32_t)(kind) << 16) | (uint32_t)(slot))

struct list {
    yf_timer *head, *tail;
};

struct level {
    unsigned shift, bits;       /* slots are 2^shift ticks wide; 2^bits of them */
    uint64_t mask;              /* 2^bits - 1 */
    uint64_t summary;           /* bit w: map[w] != 0 */
    uint64_t map[WORDS];        /* bit s: slot s is not empty */
    struct list *slots;
    /* 256 bytes a level: lv[i] is a shift from lv, not a multiply (placing a
     * timer computes it twice). A per-level timer count was dropped: only
     * the self-check read it, and the check still sums every list against
     * the wheel's count. */
} __attribute__((aligned(256)));

struct yf_wheel {
    uint64_t now;
    size_t count;               /* pending timers, every list included */
    unsigned nlevels;           /* the caller's levels, then the far ones: 64 bits in all */
    unsigned nuser, utotal;     /* the caller's levels and the sum of their bits */
    int firing;                 /* inside advance: callbacks may run */
    int due_unsorted;           /* an arming left the due list out of deadline order */
    uint64_t due_min;           /* a lower bound of the due list's deadlines */
    size_t ndue;
    struct list due;
    /* The due list's end as it was when an advance began: timers armed by
     * callbacks land after it and wait for the next advance. */
    yf_timer marker;
    /* advance_collect's output while it runs (arrays NULL: yf_wheel_run
     * counting only, out_max then SIZE_MAX). */
    uint64_t *out_payloads, *out_deadlines;
    size_t out_max, out_n;
    int collecting;
    /* Re-arm delays of advance_rearm and yf_wheel_run: the k-th collected
     * timer, k < rearm_max, is armed again at the tick it fired +
     * out_rearm[k]; rearm_n counts them. */
    const uint64_t *out_rearm;
    size_t rearm_max, rearm_n;
    unsigned char level_of_bit[64];
    struct level lv[MAXLEVELS];
};

/* ---- lists and bitmaps ------------------------------------------------------ */

static inline void push(struct list *l, yf_timer *t)
{
    t->next = NULL;
    t->prev = l->tail;
    if (l->tail)
        l->tail->next = t;
    else
        l->head = t;
    l->tail = t;
}

static void unlink_from(struct list *l, yf_timer *t)
{
    if (t->prev)
        t->prev->next = t->next;
    else
        l->head = t->next;
    if (t->next)
        t->next->prev = t->prev;
    else
        l->tail = t->prev;
    t->next = t->prev = NULL;
}

static inline void bit_set(struct level *L, unsigned s)
{
    L->map[s >> 6] |= 1ull << (s & 63);
    L->summary |= 1ull << (s >> 6);
}

static inline void bit_clear(struct level *L, unsigned s)
{
    L->map[s >> 6] &= ~(1ull << (s & 63));
    if (!L->map[s >> 6])
        L->summary &= ~(1ull << (s >> 6));
}

static inline unsigned first_slot(const struct level *L)
{
    unsigned w = (unsigned)__builtin_ctzll(L->summary);
    return w * 64 + (unsigned)__builtin_ctzll(L->map[w]);
}

/* The first tick of the turn of a level whose slots end at bit hi. */
static inline uint64_t turn_base(uint64_t now, unsigned hi)
{
    return hi >= 64 ? 0 : (now >> hi) << hi;
}

/* Files t (deadline >= now) on its level. A deadline equal to now lands in
 * the current level-0 slot: only cascades during an advance do that, right
 * before the slot is fired. Inlined into add and cascade, the two hot
 * callers (a call per placement was 3 of the ~55 instructions of an add). */
static inline __attribute__((always_inline)) void place(yf_wheel *wh, yf_timer *t)
{
    uint64_t x = t->deadline ^ wh->now;
    unsigned i = x ? wh->level_of_bit[63 - __builtin_clzll(x)] : 0;
    struct level *L = &wh->lv[i];
    unsigned s = (unsigned)((t->deadline >> L->shift) & L->mask);
    push(&L->slots[s], t);
    bit_set(L, s);
    t->where = WHERE(i + 1, s);
}

static void make_due(yf_wheel *wh, yf_timer *t)
{
    /* The advance's marker is no timer: compare with the last one before it. */
    const yf_timer *last = wh->due.tail == &wh->marker ? wh->marker.prev : wh->due.tail;
    if (last && last->deadline > t->deadline)
        wh->due_unsorted = 1;
    push(&wh->due, t);
    wh->ndue++;
    t->where = WHERE(KIND_DUE, 0);
    if (t->deadline < wh->due_min)
        wh->due_min = t->deadline;
}

/* Takes a pending t out of whatever list holds it; it stays owned. */
static void take(yf_wheel *wh, yf_timer *t)
{
    unsigned kind = t->where >> 16, s = t->where & 0xffff;
    if (kind == KIND_DUE) {
        unlink_from(&wh->due, t);
        if (--wh->ndue == 0)
            wh->due_min = UINT64_MAX;
    } else {
        struct level *L = &wh->lv[kind - 1];
        unlink_from(&L->slots[s], t);
        if (!L->slots[s].head)
            bit_clear(L, s);
    }
}

static void disarm(yf_wheel *wh, yf_timer *t)
{
    take(wh, t);
    wh->count--;
    t->owner = NULL;
    t->where = 0;
}

/* ---- public API ------------------------------------------------------------- */

yf_wheel *yf_wheel_new(const unsigned *bits, unsigned nlevels, uint64_t now)
{
    if (!bits || nlevels < 1 || nlevels > MAXUSER) {
        errno = EINVAL;
        return NULL;
    }
    unsigned total = 0;
    size_t nslots = 0;
    for (unsigned i = 0; i < nlevels; i++) {
        if (bits[i] < 1 || bits[i] > MAXBITS) {
            errno = EINVAL;
            return NULL;
        }
        total += bits[i];
        nslots += (size_t)1 << bits[i];
    }
    if (total > MAXTOTAL) {
        errno = EINVAL;
        return NULL;
    }
    /* The far levels: FAR_BITS each, the last one what is left of 64. */
    unsigned all[MAXLEVELS], nall = nlevels;
    memcpy(all, bits, nlevels * sizeof *bits);
    for (unsigned b = total; b < 64; b += all[nall++])
        all[nall] = 64 - b < FAR_BITS ? 64 - b : FAR_BITS;
    for (unsigned i = nlevels; i < nall; i++)
        nslots += (size_t)1 << all[i];
    bits = all;
    /* One block: the wheel, then every level's slot heads. */
    yf_wheel *wh = calloc(1, sizeof *wh + nslots * sizeof(struct list));
    if (!wh)
        return NULL;
    struct list *slots = (struct list *)(wh + 1);
    unsigned shift = 0;
    for (unsigned i = 0; i < nall; i++) {
        struct level *L = &wh->lv[i];
        L->shift = shift;
        L->bits = bits[i];
        L->mask = ((uint64_t)1 << bits[i]) - 1;
        L->slots = slots;
        slots += (size_t)1 << bits[i];
        for (unsigned b = shift; b < shift + bits[i]; b++)
            wh->level_of_bit[b] = (unsigned char)i;
        shift += bits[i];
    }
    wh->nlevels = nall;
    wh->nuser = nlevels;
    wh->utotal = total;
    wh->now = now;
    wh->due_min = UINT64_MAX;
    return wh;
}

static void release_list(yf_timer *t)
{
    while (t) {
        yf_timer *next = t->next;
        t->next = t->prev = NULL;
        t->owner = NULL;
        t->where = 0;
        t = next;
    }
}

void yf_wheel_free(yf_wheel *wh)
{
    if (!wh)
        return;
    for (unsigned i = 0; i < wh->nlevels; i++) {
        struct level *L = &wh->lv[i];
        for (size_t s = 0; s <= L->mask; s++)
            release_list(L->slots[s].head);
    }
    release_list(wh->due.head);
    free(wh);
}

/* Arms a timer that is not pending (checked by the callers). */
static inline __attribute__((always_inline)) void arm(yf_wheel *wh, yf_timer *t, uint64_t deadline)
{
    t->owner = wh;
    t->deadline = deadline;
    wh->count++;
    if (deadline <= wh->now)
        make_due(wh, t);
    else
        place(wh, t);
}

int yf_wheel_add(yf_wheel *wh, yf_timer *t, uint64_t deadline)
{
    if (!wh || !t)
        return yfi_fail(EINVAL);
    if (t->owner)
        return yfi_fail(EBUSY);
    arm(wh, t, deadline);
    return 0;
}

int yf_wheel_cancel(yf_wheel *wh, yf_timer *t)
{
    if (!wh || !t) {
        errno = EINVAL;
        return -1;
    }
    if (!t->owner) {
        errno = ENOENT;
        return -1;
    }
    if (t->owner != wh) {
        errno = EINVAL;
        return -1;
    }
    disarm(wh, t);
    return 0;
}

/* The tick of the next event after now (0: nothing pending beyond the due
 * list): the start of the earliest occupied slot of the lowest occupied
 * level. Every pending deadline is at or after it. */
static uint64_t next_event(const yf_wheel *wh)
{
    for (unsigned i = 0; i < wh->nlevels; i++) {
        const struct level *L = &wh->lv[i];
        if (L->summary)
            return turn_base(wh->now, L->shift + L->bits) | ((uint64_t)first_slot(L) << L->shift);
    }
    return 0;
}

/* Time enters tick e, the next event: refile the timers of every slot that
 * starts at e (from the top level down, so timers keep their arming order)
 * relative to the new now. */
static void cascade(yf_wheel *wh, uint64_t e)
{
    for (unsigned i = wh->nlevels - 1; i >= 1; i--) {
        struct level *L = &wh->lv[i];
        if (e & (((uint64_t)1 << L->shift) - 1))
            continue;
        unsigned s = (unsigned)((e >> L->shift) & L->mask);
        yf_timer *t = L->slots[s].head;
        if (!t)
            continue;
        L->slots[s].head = L->slots[s].tail = NULL;
        bit_clear(L, s);
        if (i == 1) {
            /* A level-1 slot that starts at e holds deadlines in
             * [e, e + 2^shift): all land on level 0, no level to look up. */
            struct level *L0 = &wh->lv[0];
            while (t) {
                yf_timer *next = t->next;
                unsigned s0 = (unsigned)(t->deadline & L0->mask);
                push(&L0->slots[s0], t);
                L0->map[s0 >> 6] |= 1ull << (s0 & 63);
                t->where = WHERE(1, s0);
                t = next;
            }
            /* The summary once for the whole slot, not once per timer. */
            for (unsigned w = 0; w <= (unsigned)(L0->mask >> 6); w++)
                if (L0->map[w])
                    L0->summary |= 1ull << w;
            continue;
        }
        while (t) {
            yf_timer *next = t->next;
            place(wh, t);
            t = next;
        }
    }
}

/* Hands a disarmed timer to its callback or to advance_collect's arrays.
 * Returns 0 when the collect arrays are full (t is then left as it was). */
static int deliver(yf_wheel *wh, yf_timer *t)
{
    if (t->fn) {
        disarm(wh, t);
        t->fn(t, t->arg);
        return 1;
    }
    if (wh->collecting) {
        if (wh->out_n == wh->out_max)
            return 0;
        if (wh->out_payloads) {
            wh->out_payloads[wh->out_n] = t->payload;
            wh->out_deadlines[wh->out_n] = t->deadline;
        }
        wh->out_n++;
    }
    disarm(wh, t);
    if (wh->collecting && wh->rearm_n < wh->rearm_max)
        arm(wh, t, wh->now + wh->out_rearm[wh->rearm_n++]);
    return 1;
}

/* Stable merge of two deadline-sorted chains (linked by next only). */
static yf_timer *merge(yf_timer *a, yf_timer *b)
{
    yf_timer head, *t = &head;
    while (a && b) {
        if (b->deadline < a->deadline) {
            t->next = b;
            b = b->next;
        } else {
            t->next = a;
            a = a->next;
        }
        t = t->next;
    }
    t->next = a ? a : b;
    return head.next;
}

/* Sorts the due list by deadline, ties in list (arming) order: a bottom-up
 * merge sort over runs of doubling length, O(n log n), no allocation. */
static void sort_due(yf_wheel *wh)
{
    yf_timer *list = wh->due.head;
    for (size_t width = 1;; width *= 2) {
        yf_timer *out = NULL, **tail = &out;
        size_t merges = 0;
        while (list) {
            yf_timer *a = list, *b = a;
            for (size_t k = 0; k < width && b; k++)
                b = b->next;
            /* Cut a (width long) and b (at most width long) off the rest. */
            yf_timer *rest = b, *p = a;
            for (size_t k = 1; k < width && p->next != b; k++)
                p = p->next;
            p->next = NULL;
            p = b;
            for (size_t k = 1; p && k < width; k++)
                p = p->next;
            if (p) {
                rest = p->next;
                p->next = NULL;
            } else {
                rest = NULL;
            }
            *tail = merge(a, b);
            while (*tail)
                tail = &(*tail)->next;
            merges++;
            list = rest;
        }
        list = out;
        if (merges <= 1)
            break;
    }
    yf_timer *prev = NULL;
    for (yf_timer *t = list; t; prev = t, t = t->next)
        t->prev = prev;
    wh->due.head = list;
    wh->due.tail = prev;
}

static int64_t run(yf_wheel *wh, uint64_t target)
{
    if (!wh) {
        errno = EINVAL;
        return -1;
    }
    if (wh->firing) {
        errno = EBUSY;
        return -1;
    }
    if (target < wh->now) {
        errno = EINVAL;
        return -1;
    }
    wh->firing = 1;
    int64_t fired = 0;
    int full = 0;

    /* Due timers first: their deadlines are at or before now. */
    if (wh->due_unsorted) {
        sort_due(wh);
        wh->due_unsorted = 0;
    }
    if (wh->due.head) {
        yf_timer *m = &wh->marker;
        push(&wh->due, m);
        yf_timer *t;
        while ((t = wh->due.head) != m) {
            if (!deliver(wh, t)) {
                full = 1;
                break;
            }
            fired++;
        }
        unlink_from(&wh->due, m);
    }

    while (!full) {
        uint64_t e = next_event(wh);
        if (e == 0 || e > target)
            break;
        if (wh->collecting && wh->out_n == wh->out_max) {
            /* Nothing of tick e delivered yet: stop just before it, which
             * keeps every invariant (e-1 precedes every occupied slot). */
            wh->now = e - 1;
            full = 1;
            break;
        }
        wh->now = e;
        cascade(wh, e);
        struct level *L0 = &wh->lv[0];
        unsigned s = (unsigned)(e & L0->mask);
        struct list *sl = &L0->slots[s];
        yf_timer *t;
        /* Pop the head each time round: a callback may cancel any timer
         * still in this slot, and that unlinks it like any other. */
        while ((t = sl->head) != NULL) {
            if (!t->fn && wh->collecting && wh->out_n == wh->out_max) {
                /* The rest of this tick waits on the due list, in order. */
                while ((t = sl->head) != NULL) {
                    take(wh, t);
                    make_due(wh, t);
                }
                full = 1;
                break;
            }
            sl->head = t->next;
            if (t->next) {
                t->next->prev = NULL;
                t->next = NULL;
            } else {
                sl->tail = NULL;
                bit_clear(L0, s);
            }
            wh->count--;
            t->owner = NULL;
            t->where = 0;
            if (t->fn) {
                t->fn(t, t->arg);
            } else if (wh->collecting) {
                if (wh->out_payloads) {
                    wh->out_payloads[wh->out_n] = t->payload;
                    wh->out_deadlines[wh->out_n] = t->deadline;
                }
                wh->out_n++;
                /* A re-arm lands on a later tick's slot (delay >= 1) or on
                 * the due list (delay 0), never in this slot again. */
                if (wh->rearm_n < wh->rearm_max)
                    arm(wh, t, e + wh->out_rearm[wh->rearm_n++]);
            }
            fired++;
        }
    }
    if (!full)
        wh->now = target;
    wh->firing = 0;
    return fired;
}

int64_t yf_wheel_advance(yf_wheel *wh, uint64_t now)
{
    return run(wh, now);
}

int64_t yf_wheel_advance_collect(yf_wheel *wh, uint64_t now, uint64_t *payloads, uint64_t *deadlines, size_t max)
{
    if (!wh || (max && (!payloads || !deadlines)))
        return yfi_fail(EINVAL);
    if (wh->firing)
        return yfi_fail(EBUSY);
    wh->out_payloads = payloads;
    wh->out_deadlines = deadlines;
    wh->out_max = max;
    wh->out_n = 0;
    wh->collecting = 1;
    int64_t r = run(wh, now);
    wh->collecting = 0;
    return r < 0 ? -1 : (int64_t)wh->out_n;
}

int64_t yf_wheel_advance_rearm(yf_wheel *wh, uint64_t now, const uint64_t *delays, uint64_t *payloads,
                               uint64_t *deadlines, size_t max)
{
    if (!wh || (max && !delays))
        return yfi_fail(EINVAL);
    /* Refused before touching the re-arm state an outer call may be using. */
    if (wh->firing)
        return yfi_fail(EBUSY);
    /* The periodic-timer case of the batch API in one pass: the Python
     * caller's advance_many + add_many of the same timers cost two calls,
     * two handle releases and a slot reuse per expiry. */
    wh->out_rearm = delays;
    wh->rearm_max = max;
    wh->rearm_n = 0;
    int64_t r = yf_wheel_advance_collect(wh, now, payloads, deadlines, max);
    wh->out_rearm = NULL;
    wh->rearm_max = 0;
    return r;
}

uint64_t yf_wheel_next(const yf_wheel *wh)
{
    if (!wh)
        return UINT64_MAX;
    if (wh->ndue)
        return wh->due_min;
    /* During a callback the level-0 slot being fired may still hold timers
     * due now: say so. */
    if (wh->firing && wh->lv[0].slots[wh->now & wh->lv[0].mask].head)
        return wh->now;
    uint64_t e = next_event(wh);
    return e ? e : UINT64_MAX;
}

uint64_t yf_wheel_now(const yf_wheel *wh)
{
    return wh ? wh->now : 0;
}

size_t yf_wheel_count(const yf_wheel *wh)
{
    return wh ? wh->count : 0;
}

/* ---- self-check --------------------------------------------------------------- */

#define FAIL(...)                                  \
    do {                                           \
        if (msg && len)                            \
            snprintf(msg, len, __VA_ARGS__);       \
        return -1;                                 \
    } while (0)

/* Walks one list: links, owner, where; returns its length or -1 (msg set). */
static long check_list(const yf_wheel *wh, const struct list *l, uint32_t where, const char *name,
                       char *msg, size_t len)
{
    long n = 0;
    const yf_timer *prev = NULL;
    for (const yf_timer *t = l->head; t; prev = t, t = t->next) {
        if ((size_t)n > wh->count)
            FAIL("%s: more timers linked than the wheel counts (%zu): a cycle?", name, wh->count);
        if (t->prev != prev)
            FAIL("%s: timer %ld's prev link is broken", name, n);
        if (t->owner != wh)
            FAIL("%s: timer %ld's owner is %p, not this wheel", name, n, (void *)t->owner);
        if (t->where != where)
            FAIL("%s: timer %ld's where is 0x%x, expected 0x%x", name, n, t->where, where);
        n++;
    }
    if (l->tail != prev)
        FAIL("%s: tail does not point at the last timer", name);
    return n;
}

int yf_wheel_check(const yf_wheel *wh, char *msg, size_t len)
{
    char name[64];
    if (!wh)
        FAIL("wheel is NULL");
    if (wh->nuser < 1 || wh->nuser > MAXUSER || wh->utotal > MAXTOTAL || wh->nlevels > MAXLEVELS ||
        wh->nlevels < wh->nuser)
        FAIL("bad shape: %u levels (%u the caller's), %u bits", wh->nlevels, wh->nuser, wh->utotal);
    size_t sum = 0;
    unsigned shift = 0;
    for (unsigned i = 0; i < wh->nlevels; i++) {
        const struct level *L = &wh->lv[i];
        if (L->shift != shift)
            FAIL("level %u: shift %u, expected %u", i, L->shift, shift);
        shift += L->bits;
        uint64_t cur = (wh->now >> L->shift) & L->mask;
        unsigned hi = L->shift + L->bits;
        size_t count = 0;
        for (unsigned w = 0; w < WORDS; w++) {
            if (((L->summary >> w) & 1) != (L->map[w] != 0))
                FAIL("level %u: summary bit %u is %d but map word %u is 0x%llx", i, w,
                     (int)((L->summary >> w) & 1), w, (unsigned long long)L->map[w]);
            if (w * 64 > L->mask && L->map[w])
                FAIL("level %u: map bits set beyond its %llu slots", i, (unsigned long long)L->mask + 1);
        }
        if (L->summary >> WORDS)
            FAIL("level %u: summary bits set beyond the map", i);
        for (uint64_t s = 0; s <= L->mask; s++) {
            const struct list *l = &L->slots[s];
            int bit = (int)((L->map[s >> 6] >> (s & 63)) & 1);
            /* Most slots are empty: skip the walk (and naming them). */
            if (!bit && !l->head && !l->tail)
                continue;
            snprintf(name, sizeof name, "level %u slot %llu", i, (unsigned long long)s);
            long n = check_list(wh, l, WHERE(i + 1, s), name, msg, len);
            if (n < 0)
                return -1;
            if (bit != (n > 0))
                FAIL("%s: occupancy bit is %d but the slot holds %ld timers", name, bit, n);
            for (const yf_timer *t = l->head; t; t = t->next) {
                uint64_t d = t->deadline;
                if (((d >> L->shift) & L->mask) != s)
                    FAIL("%s: deadline %llu belongs in slot %llu", name, (unsigned long long)d,
                         (unsigned long long)((d >> L->shift) & L->mask));
                if (hi < 64 && (d >> hi) != (wh->now >> hi))
                    FAIL("%s: deadline %llu is not in the same turn as now %llu", name,
                         (unsigned long long)d, (unsigned long long)wh->now);
                /* The slot being fired holds timers due exactly now. */
                int firing_now = wh->firing && i == 0 && s == cur && d == wh->now;
                if (s <= cur && !firing_now)
                    FAIL("%s: slot is not after now's slot %llu (deadline %llu, now %llu)", name,
                         (unsigned long long)cur, (unsigned long long)d, (unsigned long long)wh->now);
                uint64_t x = d ^ wh->now;
                unsigned want = x ? wh->level_of_bit[63 - __builtin_clzll(x)] : 0;
                if (want != i)
                    FAIL("%s: deadline %llu belongs on level %u (now %llu)", name, (unsigned long long)d,
                         want, (unsigned long long)wh->now);
            }
            count += (size_t)n;
        }
        sum += count;
    }
    /* The far levels continue the caller's up to exactly 64 bits: every
     * deadline has a level, so nothing waits outside the wheel. */
    if (wh->lv[wh->nuser].shift != wh->utotal && wh->nlevels > wh->nuser)
        FAIL("the far levels start at bit %u, the caller's levels end at %u", wh->lv[wh->nuser].shift,
             wh->utotal);
    for (unsigned i = wh->nuser; i < wh->nlevels; i++)
        if (wh->lv[i].bits > FAR_BITS || (i + 1 < wh->nlevels && wh->lv[i].bits != FAR_BITS))
            FAIL("far level %u has %u bits", i, wh->lv[i].bits);
    if (shift != 64)
        FAIL("the levels cover %u bits, not 64", shift);
    /* The due list may hold the advance's marker while callbacks run. */
    long d = 0;
    const yf_timer *prev = NULL, *last = NULL;
    for (const yf_timer *t = wh->due.head; t; prev = t, t = t->next) {
        if ((size_t)d > wh->count + 1)
            FAIL("due list: more timers linked than the wheel counts: a cycle?");
        if (t->prev != prev)
            FAIL("due list: timer %ld's prev link is broken", d);
        if (t == &wh->marker)
            continue;
        if (t->owner != wh || t->where != WHERE(KIND_DUE, 0))
            FAIL("due list: timer %ld has owner %p where 0x%x", d, (void *)t->owner, t->where);
        if (t->deadline > wh->now)
            FAIL("due list: deadline %llu is after now %llu", (unsigned long long)t->deadline,
                 (unsigned long long)wh->now);
        if (t->deadline < wh->due_min)
            FAIL("due list: deadline %llu is below the recorded minimum %llu", (unsigned long long)t->deadline,
                 (unsigned long long)wh->due_min);
        if (!wh->due_unsorted && last && last->deadline > t->deadline)
            FAIL("due list: deadline %llu follows %llu but the list is marked sorted",
                 (unsigned long long)t->deadline, (unsigned long long)last->deadline);
        last = t;
        d++;
    }
    if (wh->due.tail != prev)
        FAIL("due list: tail does not point at the last timer");
    if ((size_t)d != wh->ndue)
        FAIL("due list: holds %ld timers but counts %zu", d, wh->ndue);
    sum += (size_t)d;
    if (sum != wh->count)
        FAIL("lists hold %zu timers but the wheel counts %zu", sum, wh->count);
    return 0;
}

#undef FAIL

unsigned yf_wheel_occupancy(const yf_wheel *wh, uint32_t *out, size_t maxbits)
{
    if (!wh || !out || maxbits > MAXBITS) {
        errno = EINVAL;
        return 0;
    }
    for (unsigned i = 0; i < wh->nuser; i++)
        if (wh->lv[i].bits > maxbits) {
            errno = EINVAL;
            return 0;
        }
    size_t width = (size_t)1 << maxbits;
    memset(out, 0, wh->nuser * width * sizeof *out);
    for (unsigned i = 0; i < wh->nuser; i++) {
        const struct level *L = &wh->lv[i];
        for (uint64_t s = 0; s <= L->mask; s++) {
            uint32_t n = 0;
            for (const yf_timer *t = L->slots[s].head; t; t = t->next)
                n++;
            out[i * width + s] = n;
        }
    }
    return wh->nuser;
}

/* ---- batch forms -------------------------------------------------------------- */

int64_t yf_wheel_add_many(yf_wheel *wh, yf_timer *timers, const uint32_t *idx,
                          const uint64_t *deadlines, const uint64_t *payloads, size_t n, size_t *failed)
{
    if (!wh || (n && (!timers || !idx || !deadlines)))
        return yfi_fail(EINVAL);
    int64_t ok = 0;
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        yf_timer *t = &timers[idx[i]];
        if (t->owner) {
            bad++;
            continue;
        }
        if (payloads)
            t->payload = payloads[i];
        yf_wheel_add(wh, t, deadlines[i]);
        ok++;
    }
    if (failed)
        *failed = bad;
    return ok;
}

int64_t yf_wheel_cancel_many(yf_wheel *wh, yf_timer *timers, const uint32_t *idx, size_t n, size_t *failed)
{
    if (!wh || (n && (!timers || !idx)))
        return yfi_fail(EINVAL);
    int64_t ok = 0;
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        yf_timer *t = &timers[idx[i]];
        if (t->owner != wh) {
            bad++;
            continue;
        }
        disarm(wh, t);
        ok++;
    }
    if (failed)
        *failed = bad;
    return ok;
}

int yf_wheel_pending(const yf_wheel *wh, const yf_timer *t)
{
    return wh && t && t->owner == wh;
}

/* ---- many ticks in one call ----------------------------------------------------- */

/* Why a call runs whole ticks. A Python program that drove the churn
 * workload tick by tick through add_many, cancel_many and advance_rearm
 * paid four cffi crossings, the wrapper's handle bookkeeping and a dozen
 * small numpy calls for each tick's ~230 events: heapq was only ~6x slower
 * at 1M pending. Handing the wheel 256 ticks at once, the timers named by
 * caller keys (an index into the caller's timer array, so no handle is
 * minted or checked per timer), leaves Python one vectorised preparation
 * per call and C the whole loop. Measured on the loaded 2-vCPU VM (noisy
 * figures; `yfcore bench wheel` is the measurement): the C call is 83-87%
 * of churn_batch's time at 1M pending, Python's preparation ~6 us per tick
 * (~25 ns an event), and heapq / churn_batch came out near 30x in a quick
 * run. At 1M pending the C part is memory-bound: every add, cancel and
 * expiry touches a timer (64 bytes, one line) and a neighbour in 64 MB of
 * timers, so its cost is cache misses, not instructions; asking for the
 * lines of the next entries' timers ahead of time (below) cut churn_batch
 * by ~18% (417 -> 343 ns an event, six interleaved pairs on the loaded VM,
 * every pair faster). Prefetching the next timer of a slot being fired
 * gave nothing measurable and was left out of the shared advance path.
 *
 * Instructions (callgrind, --toggle-collect=yf_wheel_run, one dump per
 * call, the calls after 10,000 ticks of warm-up only: the steady state;
 * churn_batch's 256-tick calls, default shape): 73.5 an event at 1K
 * pending, 99.6 at 1M (104.8 before re-arms used the inlined arm()). The
 * growth (1.36x) is the workload's mix, not the structure: at 1K almost
 * every event is an add or a cancel (~73 instructions each, the tick's
 * fixed cost included), while at 1M half of them are expiries, each
 * re-armed (~124: the pop, the output, the re-arm and its share of the
 * cascades). The C kernel's callback-driven loop (csrc/lab/bench_wheel.c),
 * which the speed bar's 1.2x growth is measured on, spends more on each
 * add and cancel (its random generator, the callback: 98.5 at 1K, 117.3 at
 * 1M), so the same shift of mix grows it less (1.19x).
 *
 * A key's state is checked as the call reaches it, not before: whether a
 * key is pending at tick i depends on what expired before, which only
 * running the wheel tells. So an entry that is wrong (a key armed twice, a
 * key cancelled that is not pending, a key beyond the array) stops the
 * call right there, with everything before it done and nothing after it:
 * the wheel is consistent and the report says exactly where it stopped. */
/* How many entries ahead the add and cancel loops ask for the timers they
 * will touch. */
#define AHEAD 16


/* Asks for the line of keys[j]'s timer, and when links is set (that line
 * was asked for AHEAD/2 entries earlier), for its neighbours' lines, which
 * a cancel rewrites. Prefetches never fault, so stale links are harmless;
 * keys beyond nkeys are left for the loop to refuse. */
static inline void ask_timer(yf_timer *timers, size_t nkeys, const uint64_t *keys, size_t j, size_t end,
                             int links)
{
    if (j >= end || keys[j] >= nkeys)
        return;
    yf_timer *t = &timers[keys[j]];
    if (!links) {
        __builtin_prefetch(t, 1);
        return;
    }
    __builtin_prefetch(t->prev, 1);
    __builtin_prefetch(t->next, 1);
}

/* Asks for the tail an add for deadline d will be linked behind. */
static inline void ask_tail(const yf_wheel *wh, uint64_t d)
{
    if (d <= wh->now)
        return;
    uint64_t x = d ^ wh->now;
    const struct level *L = &wh->lv[wh->level_of_bit[63 - __builtin_clzll(x)]];
    __builtin_prefetch(L->slots[(d >> L->shift) & L->mask].tail, 1);
}

static void stop_at(yf_wheel_batch *b, int what, size_t index, int err, int *errp)
{
    b->stop = what;
    b->stop_index = index;
    *errp = err;
}

int64_t yf_wheel_run(yf_wheel *wh, yf_timer *timers, size_t nkeys, yf_wheel_batch *b)
{
    if (!b)
        return yfi_fail(EINVAL);
    b->ticks_done = b->nout = b->nrearmed = 0;
    b->stop = YF_WHEEL_STOP_CALL;
    b->stop_index = 0;
    if (!wh || (nkeys && !timers) || (b->nticks && (!b->times || !b->add_end || !b->cancel_end)) ||
        (b->nadds && (!b->add_keys || !b->add_deadlines)) || (b->ncancels && !b->cancel_keys) ||
        (b->ndelays && !b->delays) || (!b->out_keys != !b->out_deadlines))
        return yfi_fail(EINVAL);
    if (wh->firing)
        return yfi_fail(EBUSY);
    b->stop = YF_WHEEL_STOP_NONE;
    wh->out_payloads = b->out_keys;
    wh->out_deadlines = b->out_deadlines;
    wh->out_max = b->out_keys ? b->out_max : SIZE_MAX;
    wh->out_n = 0;
    wh->out_rearm = b->delays;
    wh->rearm_max = b->ndelays;
    wh->rearm_n = 0;
    int err = 0;
    size_t a = 0, c = 0;
    for (size_t i = 0; i < b->nticks && !err; i++) {
        uint64_t aend = b->add_end[i], cend = b->cancel_end[i];
        if (b->times[i] < wh->now || aend < a || aend > b->nadds || cend < c || cend > b->ncancels) {
            stop_at(b, YF_WHEEL_STOP_TICK, i, EINVAL, &err);
            break;
        }
        for (size_t j = 0; j < AHEAD; j++) {
            ask_timer(timers, nkeys, b->add_keys, a + j, aend, 0);
            ask_timer(timers, nkeys, b->cancel_keys, c + j, cend, 0);
        }
        for (; a < aend; a++) {
            ask_timer(timers, nkeys, b->add_keys, a + AHEAD, aend, 0);
            if (a + AHEAD / 2 < aend)
                ask_tail(wh, b->add_deadlines[a + AHEAD / 2]);
            uint64_t k = b->add_keys[a];
            if (k >= nkeys) {
                stop_at(b, YF_WHEEL_STOP_ADD, a, EINVAL, &err);
                break;
            }
            yf_timer *t = &timers[k];
            if (t->owner) {
                stop_at(b, YF_WHEEL_STOP_ADD, a, EBUSY, &err);
                break;
            }
            t->payload = k;
            arm(wh, t, b->add_deadlines[a]);
        }
        for (size_t j = c; !err && j < c + AHEAD / 2; j++)
            ask_timer(timers, nkeys, b->cancel_keys, j, cend, 1);
        for (; !err && c < cend; c++) {
            ask_timer(timers, nkeys, b->cancel_keys, c + AHEAD, cend, 0);
            ask_timer(timers, nkeys, b->cancel_keys, c + AHEAD / 2, cend, 1);
            uint64_t k = b->cancel_keys[c];
            if (k >= nkeys) {
                stop_at(b, YF_WHEEL_STOP_CANCEL, c, EINVAL, &err);
                break;
            }
            yf_timer *t = &timers[k];
            if (t->owner != wh) {
                stop_at(b, YF_WHEEL_STOP_CANCEL, c, ENOENT, &err);
                break;
            }
            disarm(wh, t);
        }
        if (err)
            break;
        wh->collecting = 1;
        int64_t fired = run(wh, b->times[i]);
        wh->collecting = 0;
        if (b->fired)
            b->fired[i] = (uint64_t)fired;
        if (wh->now != b->times[i]) {
            /* The output arrays filled up inside this tick: the wheel
             * stopped before the rest of its expiries, as advance_collect
             * does, and the tick counts as not done. */
            stop_at(b, YF_WHEEL_STOP_OUT, i, ENOBUFS, &err);
            break;
        }
        b->ticks_done = i + 1;
    }
    b->nout = wh->out_n;
    b->nrearmed = wh->rearm_n;
    wh->out_payloads = wh->out_deadlines = NULL;
    wh->out_rearm = NULL;
    wh->rearm_max = 0;
    if (err)
        return yfi_fail(err);
    return (int64_t)b->nout;
}
