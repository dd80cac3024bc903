/* yf.h - the public contract of the yfcore C runtime (also the cffi cdef source). */
#ifndef YF_H
#define YF_H

#include <stddef.h>
#include <stdint.h>

/* Everything between the CDEF markers is fed to cffi's cdef: plain
 * declarations, and #define YF_* constants whose values cffi takes from the
 * compiler (other preprocessor lines are dropped). Every limit and layout a
 * caller needs is here, so that no wrapper restates it. */
/* CDEF BEGIN */

/* ======================================================================
 * Scheduler: one per thread; owns coroutines, their stacks and the pool.
 * ====================================================================== */

typedef struct yf_sched yf_sched;
typedef struct yf_co yf_co;

/* A coroutine body; its return value is the coroutine's exit status. */
typedef intptr_t (*yf_co_fn)(void *arg);

enum {
    YF_SCHED_FPFAST = 1,        /* switches skip the FP control state; coroutines
                                   change it only through yf_co_fpenv_set */
    YF_SCHED_GUARD_MPROTECT = 2,/* guard pages by mprotect even where the kernel
                                   has MADV_GUARD_INSTALL guard regions */
    YF_SCHED_NOGUARD = 4,       /* no guard page at all (the experiments' control) */
    YF_SCHED_KEEP_ERRNO = 8,    /* each coroutine keeps its own errno across
                                   switches (errno is per thread, not per stack) */
    YF_SCHED_MALLOC_STACKS = 16 /* stacks from malloc and free per coroutine, no
                                   pool and no guard page (the benchmarks' control;
                                   high-water marks read 0) */
};

enum {
    YF_STACK_MIN = 16384,       /* stack sizes are powers of two in [MIN, MAX] */
    YF_STACK_MAX = 268435456,
    YF_CO_LOCALS = 8,           /* coroutine-local slots per coroutine */
    YF_CO_MAX = 16777215        /* live (unreaped) coroutines per scheduler */
};

/* Coroutine states, as yf_co_state reports them. */
enum {
    YF_NEW = 0,                 /* created, never run (can be cancelled) */
    YF_READY = 1,               /* in the ready queue */
    YF_RUNNING = 2,             /* on the CPU, or suspended inside a resume it made */
    YF_BLOCKED = 3,             /* in yf_co_block, waiting for yf_co_wake */
    YF_DONE = 4                 /* returned or cancelled; status kept until reaped */
};

/* Why a switch happened (trace records). */
enum {
    YF_REASON_RESUME = 1, YF_REASON_YIELD = 2, YF_REASON_BLOCK = 3,
    YF_REASON_EXIT = 4
};

typedef struct yf_counts {
    uint64_t live;              /* created and not yet reaped (zombies included) */
    uint64_t ready;
    uint64_t blocked;
    uint64_t done;              /* finished, waiting to be reaped */
    uint64_t created;           /* since the scheduler was made */
    uint64_t switches;
    uint64_t stacks_pooled;     /* free stacks kept for reuse */
    uint64_t stacks_mapped;     /* stack slots ever carved from arenas */
    uint64_t arenas;
} yf_counts;

typedef struct yf_trace_rec {
    uint64_t t_ns;              /* CLOCK_MONOTONIC */
    uint64_t from_id;           /* 0 is the scheduler's root context */
    uint64_t to_id;
    uint64_t reason;            /* YF_REASON_* */
} yf_trace_rec;

/* An exit callback; caller-owned, linked into the coroutine (intrusive). */
typedef struct yf_exit_hook {
    struct yf_exit_hook *next;
    void (*fn)(yf_co *co, intptr_t status, void *arg);
    void *arg;
} yf_exit_hook;

/* Makes a scheduler whose coroutines get stack_size-byte stacks (a power of
 * two in [YF_STACK_MIN, YF_STACK_MAX], guard page included). EINVAL for a bad
 * size or flags, ENOMEM. Installs the guard-hit reporter (SIGSEGV; again if
 * another handler took it since, which it then chains to) and, for the
 * calling thread, an alternate signal stack freed when the thread ends (any
 * thread's first resume makes one too). The reporter names a coroutine only
 * for a real fault in a guard reached through the stack pointer of the
 * coroutine running there; sent signals and other faults go to the previous
 * handler or the default action. */
yf_sched *yf_sched_new(size_t stack_size, unsigned flags);
/* Frees the scheduler, every coroutine (unfinished ones are discarded without
 * running their exit hooks) and every stack mapping. EBUSY when called from
 * inside one of its coroutines. */
int yf_sched_free(yf_sched *s);
/* Resumes ready coroutines in FIFO order until none is ready; returns the
 * number of resumes. EBUSY when called from inside a coroutine. */
int64_t yf_sched_run(yf_sched *s);
/* One pass: resumes each coroutine that was ready when called, once, in
 * FIFO order; those made ready meanwhile wait for the next pass (an event
 * loop polls between passes, so a coroutine that only yields cannot starve
 * fd waiters). Returns the number of resumes; EBUSY inside a coroutine. */
int64_t yf_sched_run_once(yf_sched *s);
/* Fills *out. Never fails. `ready` and `switches` are derived from the
 * coroutines of s running on the calling thread: exact on the thread that
 * runs s, and from another thread off by the depth of s's chain there. */
void yf_sched_counts(const yf_sched *s, yf_counts *out);
/* Stack size and flags the scheduler was made with. */
size_t yf_sched_stack_size(const yf_sched *s);
/* Bytes of stack every coroutine of s can use at least: the slot less its
 * guard page, its header and the deepest cache colour, plus one colour step
 * (64 bytes) to spare. */
size_t yf_sched_usable_stack(const yf_sched *s);
unsigned yf_sched_flags(const yf_sched *s);
/* 1 when the scheduler's guards are MADV_GUARD_INSTALL guard regions, 0 when
 * they are mprotect(PROT_NONE) pages. */
int yf_sched_guard_regions(const yf_sched *s);
/* Starts recording switches in a ring of capacity records (0 stops and frees
 * the ring). ENOMEM. */
int yf_sched_trace(yf_sched *s, size_t capacity);
/* Copies up to max records, oldest first, into out; returns how many. The
 * ring keeps the newest capacity records. */
size_t yf_sched_trace_read(const yf_sched *s, yf_trace_rec *out, size_t max);
/* Unmaps the physical pages of pooled (free) stacks; returns bytes released. */
size_t yf_sched_trim(yf_sched *s);

/* ======================================================================
 * Coroutines
 * ====================================================================== */

/* Creates a coroutine in state YF_NEW, queued as ready. Takes a pooled stack
 * when one is free (no system call). EAGAIN past YF_CO_MAX, ENOMEM when no
 * stack can be mapped (vm.max_map_count included). */
yf_co *yf_co_create(yf_sched *s, yf_co_fn fn, void *arg);
/* Switches into co (YF_NEW or YF_READY) until it yields, blocks or ends.
 * Returns 0; EINVAL for a coroutine of another scheduler, EBUSY when co is
 * running, blocked, or done. */
int yf_co_resume(yf_co *co);
/* From inside a coroutine: requeue as ready and switch back to the resumer.
 * EPERM outside a coroutine. */
int yf_co_yield(void);
/* From inside a coroutine: block until yf_co_wake with the current token;
 * returns the value given to wake. Sets errno to EPERM and returns -1 outside
 * a coroutine. */
intptr_t yf_co_block(void);
/* The token the current coroutine's next yf_co_block will carry; 0 outside a
 * coroutine. */
uint64_t yf_co_next_token(void);
/* The token of co's current block, 0 unless co is blocked. */
uint64_t yf_co_token(const yf_co *co);
/* Makes a blocked co ready, passing value to its yf_co_block. ESTALE when co
 * is not blocked or the token is not the one of its current block (a stale or
 * duplicate wake-up). */
int yf_co_wake(yf_co *co, uint64_t token, intptr_t value);
/* Finishes a coroutine that never ran with status `status` (exit hooks run).
 * EBUSY when it has started. */
int yf_co_cancel(yf_co *co, intptr_t status);
/* Releases a finished coroutine, storing its status in *status (may be NULL).
 * EBUSY unless it is done. The handle is invalid afterwards. */
int yf_co_reap(yf_co *co, intptr_t *status);
/* Reap automatically when it finishes (status only seen by exit hooks). */
int yf_co_detach(yf_co *co);
/* Adds an exit hook, run (newest first) in the coroutine's context when it
 * returns, or in the canceller's on cancel. EBUSY when co is done. */
int yf_co_on_exit(yf_co *co, yf_exit_hook *hook);

/* The coroutine with this id, or NULL with ESRCH (never issued, or reaped:
 * ids are never reused). */
yf_co *yf_co_find(const yf_sched *s, uint64_t id);
/* The running coroutine, or NULL in the root context. */
yf_co *yf_co_current(void);
/* The scheduler running on this thread, or NULL. */
yf_sched *yf_sched_current(void);
uint64_t yf_co_id(const yf_co *co);
int yf_co_state(const yf_co *co);
/* Exit status of a done coroutine; EBUSY otherwise. */
int yf_co_status(const yf_co *co, intptr_t *status);
/* Coroutine-local slots; EINVAL for idx >= YF_CO_LOCALS. */
int yf_co_local_set(yf_co *co, unsigned idx, void *value);
void *yf_co_local_get(const yf_co *co, unsigned idx);

/* Stack of a coroutine: usable bytes, and the high-water mark (bytes ever
 * touched, page-granular, counted with mincore from the top down). */
size_t yf_co_stack_size(const yf_co *co);
size_t yf_co_stack_hwm(const yf_co *co);

/* For teaching and debugging: the addresses of co's stack slot: out[0] slot
 * base (= guard page), out[1] end of the guard, out[2] top of the usable
 * stack, out[3] end of the slot. EINVAL once co is done (no stack). */
int yf_co_stack_layout(const yf_co *co, uint64_t out[4]);
/* The 8 words of the frame a suspended (started, not running) coroutine left
 * on its stack (see ctx_x86_64.S: all of it; on AArch64 the first 8 of 22,
 * FPCR, padding and x19-x24, see ctx_aarch64.S) and its saved stack pointer
 * in *sp. EINVAL unless co is suspended with a frame. */
int yf_co_saved_frame(const yf_co *co, uint64_t *sp, uint64_t out[8]);

/* One slot of that frame: what it holds, its byte offset from the saved
 * stack pointer and its size in bytes. */
typedef struct yf_frame_slot {
    const char *name;
    uint32_t offset;
    uint32_t size;
} yf_frame_slot;
/* The frame's slots on this architecture, lowest address first, ended by an
 * entry whose name is NULL. Never fails. */
const yf_frame_slot *yf_frame_slots(void);

/* Writes "symbol+0xoff" for a code address into buf (dladdr: exported
 * symbols only); ENOENT when no symbol covers it. */
int yf_addr_name(uint64_t addr, char *buf, size_t len);

/* FP environment under YF_SCHED_FPFAST: the only sanctioned way to change
 * the rounding/exception-mask state (MXCSR and the x87 control word) inside a
 * coroutine; switches to and from it then carry the FP state. The root
 * context may change its own environment freely. Outside the fast mode it
 * simply loads the values. A new coroutine starts with the environment the
 * scheduler was made with (default mode) or the root's current one (FPFAST).
 * On AArch64 `mxcsr` carries FPCR (rounding mode, flush-to-zero, ...) and
 * x87cw is 0 (get reports 0). EINVAL for reserved MXCSR or FPCR bits, or a
 * non-zero x87cw on AArch64. */
int yf_co_fpenv_set(uint32_t mxcsr, uint16_t x87cw);
void yf_fpenv_get(uint32_t *mxcsr, uint16_t *x87cw);

/* ======================================================================
 * Timer wheel (wheel.c): hierarchical, intrusive (timers are caller-owned;
 * the wheel never allocates per timer). Time is in ticks; the event loop's
 * tick is 1 ms.
 * ====================================================================== */

typedef struct yf_wheel yf_wheel;

typedef struct yf_timer {
    struct yf_timer *next, *prev;   /* wheel-owned while pending */
    yf_wheel *owner;                /* the wheel it is pending in, or NULL */
    uint64_t deadline;              /* absolute tick */
    void (*fn)(struct yf_timer *t, void *arg);  /* NULL: collected, see advance_collect */
    void *arg;
    uint64_t payload;               /* caller's value (batch API: returned on expiry) */
    uint32_t where;                 /* wheel-owned position; 0 when not pending */
    uint32_t spare;
} yf_timer;

enum {
    YF_WHEEL_LEVELS_MAX = 8,        /* levels of one wheel */
    YF_WHEEL_BITS_MAX = 10,         /* log2 of the slots of one level */
    YF_WHEEL_BITS_TOTAL_MAX = 40    /* the bits of all levels together */
};

/* A wheel of nlevels levels; level i has 2^bits[i] slots, each as wide as
 * one whole turn of the level below (level 0 slots are one tick). Deadlines
 * beyond the top level go to levels of 64 slots the wheel adds above it (up
 * to 2^64 ticks) and cascade down like the others. EINVAL unless 1 <= nlevels
 * <= YF_WHEEL_LEVELS_MAX, 1 <= bits[i] <= YF_WHEEL_BITS_MAX and the sum of
 * bits <= YF_WHEEL_BITS_TOTAL_MAX; ENOMEM. A timer must
 * start zeroed (owner NULL); it belongs to the wheel only while pending. */
yf_wheel *yf_wheel_new(const unsigned *bits, unsigned nlevels, uint64_t now);
/* Frees the wheel; pending timers are unlinked (owner NULL), never touched again. */
void yf_wheel_free(yf_wheel *wh);
/* Arms t for `deadline` (a deadline <= now is due: it fires at the next
 * advance, before every later deadline, ties in arming order). EBUSY when t
 * is already pending (in any wheel), EINVAL for NULL. O(1). */
int yf_wheel_add(yf_wheel *wh, yf_timer *t, uint64_t deadline);
/* Disarms a pending t. ENOENT when t is not pending, EINVAL when it is
 * pending in another wheel. O(1). */
int yf_wheel_cancel(yf_wheel *wh, yf_timer *t);
/* Moves the wheel's time to now and fires every timer with deadline <= now
 * in deadline order (ties in arming order): fn(t, arg) is called with t
 * already disarmed and the wheel's time at t's deadline, and may add or
 * cancel any timer, t included (one it arms for a deadline <= that time is
 * due at the next advance). A timer with fn NULL just expires. Returns the
 * number fired; -1 with EINVAL when now is before the wheel's time, EBUSY
 * from inside a callback. yf_wheel_free must not be called from a callback. */
int64_t yf_wheel_advance(yf_wheel *wh, uint64_t now);
/* A lower bound of the earliest pending deadline, exact when that timer is
 * on level 0 (UINT64_MAX when none is pending). O(levels) via occupancy bitmaps. */
uint64_t yf_wheel_next(const yf_wheel *wh);
uint64_t yf_wheel_now(const yf_wheel *wh);
size_t yf_wheel_count(const yf_wheel *wh);
/* Verifies every invariant (links, positions, bitmaps, counts, levels);
 * 0, or -1 with a description of the first violation in msg. */
int yf_wheel_check(const yf_wheel *wh, char *msg, size_t len);
/* Level occupancy for pictures: out[level * 2^maxbits + slot] = timers in
 * that slot, for level < nlevels; returns nlevels. */
unsigned yf_wheel_occupancy(const yf_wheel *wh, uint32_t *out, size_t maxbits);

/* Batch forms over a caller-owned array of timers (the Python wrapper's):
 * each returns how many succeeded; entries that fail (already pending for
 * add, not pending in this wheel for cancel) are counted in *failed (may be
 * NULL) and skipped. idx entries must index `timers`: they are not checked.
 * EINVAL for NULL arrays. */
int64_t yf_wheel_add_many(yf_wheel *wh, yf_timer *timers, const uint32_t *idx,
                          const uint64_t *deadlines, const uint64_t *payloads, size_t n, size_t *failed);
int64_t yf_wheel_cancel_many(yf_wheel *wh, yf_timer *timers, const uint32_t *idx, size_t n, size_t *failed);
/* advance, with timers whose fn is NULL collected: their payloads and
 * deadlines are written to the arrays, in deadline order, at most max. When
 * max is reached the call stops early: the rest of that tick stays due and
 * the wheel's time stays at that tick (yf_wheel_now < now), so the next call
 * with the same now goes on where this one stopped. Returns the number
 * written; -1 with EINVAL when now is before the wheel's time, EBUSY. */
int64_t yf_wheel_advance_collect(yf_wheel *wh, uint64_t now, uint64_t *payloads, uint64_t *deadlines, size_t max);
/* advance_collect that re-arms: the k-th collected timer is armed again at
 * the tick it fired plus delays[k] (a delay of 0 makes it due at the next
 * advance) and stays pending, its payload and old deadline written as
 * advance_collect writes them; at most max, delays has max entries. Returns
 * the number re-armed; -1 with EINVAL (NULL arrays, now before the wheel's
 * time), EBUSY. */
int64_t yf_wheel_advance_rearm(yf_wheel *wh, uint64_t now, const uint64_t *delays, uint64_t *payloads,
                               uint64_t *deadlines, size_t max);
/* 1 when t is pending in wh, else 0 (NULLs included). */
int yf_wheel_pending(const yf_wheel *wh, const yf_timer *t);

/* Many ticks of keyed work in one call (yf_wheel_run). Key k names
 * timers[k] (fn NULL), whose payload becomes k when the call arms it. Tick
 * i arms add_keys[j] for add_deadlines[j], j in [add_end[i-1], add_end[i])
 * (add_end[-1] = 0), in order; then disarms cancel_keys[j], j in
 * [cancel_end[i-1], cancel_end[i]), in order; then advances to times[i],
 * the k-th expiry of the whole call (k < ndelays) armed again at the tick
 * it fired + delays[k], later ones just expiring. Expiries are written to
 * out_keys/out_deadlines (at most out_max; both NULL: counted only) in
 * advance's order, and fired[i] (may be NULL) counts tick i's. */
typedef struct yf_wheel_batch {
    size_t nticks;
    const uint64_t *times;
    const uint64_t *add_end, *add_keys, *add_deadlines;
    size_t nadds;
    const uint64_t *cancel_end, *cancel_keys;
    size_t ncancels;
    const uint64_t *delays;
    size_t ndelays;
    uint64_t *out_keys, *out_deadlines;
    size_t out_max;
    uint64_t *fired;
    /* Written by the call: ticks completed, expiries written (or counted),
     * re-arms made, and what stopped it (YF_WHEEL_STOP_*) at which entry. */
    size_t ticks_done, nout, nrearmed;
    int stop;
    size_t stop_index;
} yf_wheel_batch;

enum {
    YF_WHEEL_STOP_NONE = 0,         /* every tick ran */
    YF_WHEEL_STOP_CALL = 1,         /* refused before any work (EINVAL: NULLs; EBUSY: from a callback) */
    YF_WHEEL_STOP_TICK = 2,         /* tick stop_index: times[] goes back or add_end/cancel_end out of order (EINVAL) */
    YF_WHEEL_STOP_ADD = 3,          /* add_keys[stop_index]: beyond nkeys (EINVAL) or already pending (EBUSY) */
    YF_WHEEL_STOP_CANCEL = 4,       /* cancel_keys[stop_index]: beyond nkeys (EINVAL) or not pending here (ENOENT) */
    YF_WHEEL_STOP_OUT = 5           /* tick stop_index: out_max reached inside it (ENOBUFS) */
};

/* Runs b's ticks (above); an entry that fails stops the call there with
 * everything before it done and nothing after it (b->ticks_done ticks
 * complete, the failing tick's earlier entries applied, its advance not
 * made). Returns b->nout; -1 with errno as b->stop says. */
int64_t yf_wheel_run(yf_wheel *wh, yf_timer *timers, size_t nkeys, yf_wheel_batch *b);

/* ======================================================================
 * Socket buffer (sbuf.c): a ring of fixed-size chunks with head, cursor
 * and tail positions; positions are byte offsets from the head (0).
 * ====================================================================== */

typedef struct yf_sbuf yf_sbuf;

typedef struct yf_iovec {           /* layout of struct iovec */
    void *base;
    size_t len;
} yf_iovec;

typedef struct yf_sbuf_stats {
    uint64_t size;                  /* bytes held (tail - head) */
    uint64_t capacity;              /* bytes in allocated chunks */
    uint64_t chunks;
    uint64_t high_water;            /* largest capacity ever */
    uint64_t bytes_in;              /* ever written or committed */
    uint64_t bytes_out;             /* ever consumed */
    uint64_t copied;                /* bytes memcpy'd by the buffer itself */
    uint64_t chunk_allocs, chunk_frees;
} yf_sbuf_stats;

enum { YF_SEEK_SET = 0, YF_SEEK_CUR = 1, YF_SEEK_END = 2 };

enum {
    YF_SBUF_CHUNK_MIN = 64,         /* chunk sizes are powers of two in [MIN, MAX] */
    YF_SBUF_CHUNK_MAX = 1048576
};
/* The largest byte count one call (write, read, reserve, recv, max_size,
 * max_len) takes: beyond it a request is a bug, not a size. */
#define YF_SBUF_REQ_MAX ((size_t)1 << 56)

/* chunk_size: a power of two in [YF_SBUF_CHUNK_MIN, YF_SBUF_CHUNK_MAX];
 * max_size: the most bytes it may hold (0: no limit). EINVAL, ENOMEM. */
yf_sbuf *yf_sbuf_new(size_t chunk_size, size_t max_size);
void yf_sbuf_free(yf_sbuf *sb);
/* Appends n bytes at the tail, all or nothing: ENOBUFS past max_size (nothing
 * stored is lost), ENOMEM. Returns n or -1. */
int64_t yf_sbuf_write(yf_sbuf *sb, const void *p, size_t n);
/* Copies up to n bytes from the cursor and advances it; returns the count. */
int64_t yf_sbuf_read(yf_sbuf *sb, void *p, size_t n);
/* Points *p at n bytes at the cursor without moving it: zero-copy (returns 0)
 * when they lie in one chunk; otherwise copies them into scratch (at least n
 * bytes) and returns n copied. ERANGE when fewer than n bytes follow the cursor,
 * EINVAL when a copy is needed and scratch is NULL. */
int64_t yf_sbuf_peek(yf_sbuf *sb, size_t n, const void **p, void *scratch);
/* Fills up to max iovecs with the bytes from the cursor to the tail (at most
 * n bytes); returns the iovec count. For writev. */
int yf_sbuf_peekv(const yf_sbuf *sb, yf_iovec *iov, int max, size_t n);
/* Moves the cursor: whence YF_SEEK_*; EINVAL before the head or past the tail. */
int64_t yf_sbuf_seek(yf_sbuf *sb, int64_t off, int whence);
int64_t yf_sbuf_tell(const yf_sbuf *sb);
size_t yf_sbuf_size(const yf_sbuf *sb);
/* Drops everything after position `size` (the cursor moves back if beyond);
 * EINVAL when size > yf_sbuf_size. */
int yf_sbuf_truncate(yf_sbuf *sb, size_t size);
/* Drops the bytes before the cursor: the head moves to the cursor, freed
 * chunks go back (policy in sbuf.c). Returns bytes dropped. */
size_t yf_sbuf_consume(yf_sbuf *sb);
/* Makes room for n bytes at the tail without copying: fills up to max
 * iovecs covering exactly n bytes (allocating chunks as needed), returns the
 * iovec count. ENOBUFS past max_size, ENOMEM (what the call allocated is
 * given back), EINVAL when max is too small. */
int yf_sbuf_reserve(yf_sbuf *sb, size_t n, yf_iovec *iov, int max);
/* Declares the first n reserved bytes written; EINVAL beyond the reservation. */
int yf_sbuf_commit(yf_sbuf *sb, size_t n);
/* readv from fd into up to `max` reserved bytes / writev from the cursor to
 * fd, then consume what was sent. Return bytes moved, 0 at EOF (recv), or -1
 * with errno from readv/writev: EINTR is returned, not retried (the caller
 * runs its signal handlers, then calls again; nothing is lost); a closed
 * reader gives EPIPE and never SIGPIPE (sockets: MSG_NOSIGNAL; pipes: the
 * signal is blocked and taken back). ENOMEM/ENOBUFS leave the buffer as it was. */
int64_t yf_sbuf_recv(yf_sbuf *sb, int fd, size_t max);
int64_t yf_sbuf_send(yf_sbuf *sb, int fd);
void yf_sbuf_stats_get(const yf_sbuf *sb, yf_sbuf_stats *out);
/* Invariants (positions, chunk ring, counters); 0 or -1 with msg. */
int yf_sbuf_check(const yf_sbuf *sb, char *msg, size_t len);
/* For pictures: info = {ring capacity, ring slot of chunk 0, head offset in
 * chunk 0, chunk size, bytes reserved, chunks}; the addresses of up to max
 * chunks in ring order from chunk 0 go to addr. Returns how many. */
size_t yf_sbuf_layout(const yf_sbuf *sb, uint64_t info[6], uint64_t *addr, size_t max);
/* Batch consumer of length-prefixed messages (4-byte little-endian length,
 * then the payload): parses up to n whole messages from the cursor, hands
 * each payload out with peek (zero-copy unless it straddles chunks), adds
 * len + first byte + last byte to *sum and len to *bytes, then consumes.
 * Stops early when no whole message is buffered, or before a length over
 * max_len when messages precede it. Returns messages parsed; EMSGSIZE
 * when the first length at the cursor is over max_len (nothing consumed, the
 * cursor stays on it), EINVAL, ENOMEM. */
int64_t yf_sbuf_take_msgs(yf_sbuf *sb, int64_t n, size_t max_len, uint64_t *sum, uint64_t *bytes);
/* Batch access to the same messages for a consumer that takes many at once
 * (numpy): first consumes what lies before the cursor, then takes up to max
 * whole messages from it whose payloads lie in one chunk. *base points at
 * the first payload, off[i] and len[i] locate payload i from *base, *span is
 * the bytes from *base to the end of the last one, and the cursor moves past
 * them. A first payload across chunks is copied alone into the buffer's
 * scratch (counted in copied) and returned as a batch of one. The memory
 * stays valid until the next call, consume, truncate or free. Returns the
 * count (0: no whole message buffered); EMSGSIZE for a length over max_len
 * when it is the first (else the messages before it are returned), EINVAL
 * (max_len over 2^32 - 1), ENOMEM. */
int64_t yf_sbuf_frames(yf_sbuf *sb, int64_t max, size_t max_len, const void **base, uint32_t *off,
                       uint32_t *len, size_t *span);

/* ======================================================================
 * Event loop (loop.c, io.c): epoll; coroutines wait for fds and time.
 * ====================================================================== */

typedef struct yf_loop yf_loop;

typedef struct yf_loop_counts {
    uint64_t iterations;            /* epoll waits (epoll_pwait2, or epoll_wait) */
    uint64_t events;                /* fd readiness events delivered */
    uint64_t timers_fired;
    uint64_t wakeups;               /* coroutines made ready by the loop */
    uint64_t waiting_fds;           /* coroutines waiting on an fd now */
    uint64_t sleeping;              /* coroutines waiting on time only now */
    uint64_t resumes;               /* coroutine resumes made by yf_loop_run, ever */
} yf_loop_counts;

enum { YF_READ = 1, YF_WRITE = 4 }; /* EPOLLIN, EPOLLOUT */
/* The longest timeout (ms) the loop's waits and I/O calls take: 10^12 ms,
 * about 31 years. */
#define YF_TIMEOUT_MAX_MS 1000000000000ll

/* An event loop driving scheduler s, with its own timer wheel of 1 ms ticks.
 * EINVAL, EEXIST when s already has a loop, ENOMEM, or epoll_create1's or
 * yf_wheel_new's errno. */
yf_loop *yf_loop_new(yf_sched *s);
/* EBUSY while running or while coroutines wait on it (woken ones included
 * until they have run). */
int yf_loop_free(yf_loop *lp);
/* Runs ready coroutines, then waits for fds and timers, until no coroutine
 * is live (or only done ones remain) or yf_loop_stop. Returns the number of
 * resumes; -1 with EBUSY from inside a coroutine or while running, EDEADLK
 * when unfinished coroutines remain but none waits on this loop (nothing
 * could wake them), EINTR when a signal interrupted the wait (the loop is
 * intact: run again). A timer never fires before its deadline; with nothing
 * ready the loop sleeps in epoll_wait until the next timer. */
int64_t yf_loop_run(yf_loop *lp);
/* Makes the running loop return after the current iteration; called while
 * it is not running, the next run does one iteration (ready coroutines, a
 * poll that does not block, the coroutines it made ready) and returns. */
void yf_loop_stop(yf_loop *lp);
/* Functions the loop calls around each wait that may sleep (a timeout
 * other than 0): before(arg) just before it, after(arg) just after, errno
 * kept (the Python-body module releases the GIL there). Both NULL, or
 * either, clears them. Never fails. */
void yf_loop_set_idle(yf_loop *lp, void (*before)(void *), void (*after)(void *), void *arg);
/* The loop's cached CLOCK_MONOTONIC time in ns, refreshed once per iteration. */
uint64_t yf_loop_now(const yf_loop *lp);
void yf_loop_counts_get(const yf_loop *lp, yf_loop_counts *out);
/* The loop running the current coroutine, or NULL. */
yf_loop *yf_loop_current(void);

/* From inside a coroutine run by a loop: wait until fd is ready for
 * `events` (YF_READ|YF_WRITE) or timeout_ms passes (< 0: forever). Returns
 * the ready events (an error or hang-up counts as ready; regular files are
 * always ready), 0 on timeout, or the value of a yf_co_wake from outside
 * the loop; -1 with EPERM outside a loop's coroutine, EBADF, EINVAL for bad
 * events or timeout_ms > YF_TIMEOUT_MAX_MS, EEXIST when another coroutine waits on the
 * same fd and direction. EBADF also when fd is closed during the wait: at
 * once through yf_loop_drop_fd, else found by the loop before it sleeps
 * (within about 200 ms; a reused number counts as closed). */
int yf_wait_fd(int fd, unsigned events, int64_t timeout_ms);
/* For a caller about to close fd (or that has): the coroutines waiting on
 * it wake at once, their waits failing with EBADF, and the loop forgets the
 * fd. Returns the waits failed; EBADF for fd < 0, EINVAL for NULL. */
int yf_loop_drop_fd(yf_loop *lp, int fd);
/* Sleeps at least ms milliseconds (0 yields once to the loop, which polls
 * fds before resuming it). EPERM outside a loop's coroutine, EINVAL for
 * ms < 0 or > YF_TIMEOUT_MAX_MS. */
int yf_sleep_ms(int64_t ms);
/* Exactly n bytes or an error: EOF before n gives -1 with ECONNRESET,
 * timeout (for the whole call; < 0: none) ETIMEDOUT, and the bytes moved
 * before an error are lost to the caller. Sockets are driven with
 * MSG_DONTWAIT (and MSG_NOSIGNAL: EPIPE, no SIGPIPE; pipes likewise); other fds must be
 * non-blocking. EINTR is retried: these calls never sleep in the kernel
 * (the wait is the loop's, and its epoll wait returns EINTR from
 * yf_loop_run, with this call's coroutine intact). Returns n (the iovecs' total). */
int64_t yf_recvn(int fd, void *buf, size_t n, int64_t timeout_ms);
int64_t yf_sendn(int fd, const void *buf, size_t n, int64_t timeout_ms);
int64_t yf_writevn(int fd, const yf_iovec *iov, int cnt, int64_t timeout_ms);

/* ======================================================================
 * Build and machine facts
 * ====================================================================== */

/* Compiler flags and arch the runtime was built with. */
const char *yf_build_info(void);
/* 1 when this kernel accepts MADV_GUARD_INSTALL (Linux 6.13+), else 0. */
int yf_guard_regions_supported(void);

/* CDEF END */

#endif
