/* pybody.c - Python functions as coroutine bodies: the extension module
 * yfcore._yfpy, the one path by which C calls into Python from a coroutine.
 *
 * Why a C-API extension and not the cffi module: cffi releases the GIL
 * around every C call. A switch made from Python through cffi would then
 * run with the GIL released while the thread state still describes the
 * context being left, and another thread taking the GIL meanwhile could read
 * (sys._current_frames, a trace of all threads) a frame chain that lives on
 * a stack that is not running. Here every entry point is an ordinary
 * METH_NOARGS/METH_O built-in: the GIL is held from the moment the caller's
 * interpreter state is saved until the state of the context switched to is
 * installed, so no other thread ever sees a half-swapped thread state.
 *
 * Why a pointer table: the runtime lives in the cffi module (yfcore._yfcore),
 * loaded RTLD_LOCAL like every extension, so its symbols cannot be linked
 * against. yfcore.runtime passes the addresses of the runtime functions
 * this file uses (ffi.addressof) to bind() once at import: one runtime, one
 * copy of its thread-local state, whichever module calls it.
 *
 * What a switch saves (CPython 3.11; other versions build the module but
 * spawn refuses): see struct pystate. Each context saves its own state on
 * its own C stack just before it switches out and installs it again just
 * after it is switched back to, so a switch between two Python bodies costs
 * one save and one restore on each side, and C bodies never touch the
 * thread state at all (zero cost for them: the runtime's switch has no hook).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "yf.h"

#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000
#define YFPY_SUPPORTED 1
#else
#define YFPY_SUPPORTED 0
#endif

/* ---- the runtime, through the pointer table ----------------------------- */

static struct {
    yf_co *(*co_create)(yf_sched *, yf_co_fn, void *);
    int (*co_resume)(yf_co *);
    int (*co_yield)(void);
    intptr_t (*co_block)(void);
    int (*co_wake)(yf_co *, uint64_t, intptr_t);
    uint64_t (*co_token)(const yf_co *);
    yf_co *(*co_current)(void);
    uint64_t (*co_id)(const yf_co *);
    int (*co_state)(const yf_co *);
    int (*co_cancel)(yf_co *, intptr_t);
    int (*co_detach)(yf_co *);
    int64_t (*sched_run)(yf_sched *);
    size_t (*sched_usable_stack)(const yf_sched *);
    int (*sleep_ms)(int64_t);
    int (*wait_fd)(int, unsigned, int64_t);
    int64_t (*loop_run)(yf_loop *);
    void (*loop_set_idle)(yf_loop *, void (*)(void *), void (*)(void *), void *);
} rt;

static const struct {
    const char *name;
    size_t off;
} rt_names[] = {
    {"yf_co_create", offsetof(__typeof__(rt), co_create)},
    {"yf_co_resume", offsetof(__typeof__(rt), co_resume)},
    {"yf_co_yield", offsetof(__typeof__(rt), co_yield)},
    {"yf_co_block", offsetof(__typeof__(rt), co_block)},
    {"yf_co_wake", offsetof(__typeof__(rt), co_wake)},
    {"yf_co_token", offsetof(__typeof__(rt), co_token)},
    {"yf_co_current", offsetof(__typeof__(rt), co_current)},
    {"yf_co_id", offsetof(__typeof__(rt), co_id)},
    {"yf_co_state", offsetof(__typeof__(rt), co_state)},
    {"yf_co_cancel", offsetof(__typeof__(rt), co_cancel)},
    {"yf_co_detach", offsetof(__typeof__(rt), co_detach)},
    {"yf_sched_run", offsetof(__typeof__(rt), sched_run)},
    {"yf_sched_usable_stack", offsetof(__typeof__(rt), sched_usable_stack)},
    {"yf_sleep_ms", offsetof(__typeof__(rt), sleep_ms)},
    {"yf_wait_fd", offsetof(__typeof__(rt), wait_fd)},
    {"yf_loop_run", offsetof(__typeof__(rt), loop_run)},
    {"yf_loop_set_idle", offsetof(__typeof__(rt), loop_set_idle)},
};
static int rt_bound;

static PyObject *CoroutineExit;

/* ---- what one context keeps of the thread state ------------------------- */

#if YFPY_SUPPORTED
typedef _PyCFrame yfpy_cframe;
typedef _PyStackChunk yfpy_chunk;

/* CPython 3.11 keeps per thread, for the code running now: the chain of C
 * frames of the eval loop (cframe, on the C stack that runs it; its
 * use_tracing byte is recomputed on restore, so a trace or profile function
 * set in one context applies to the whole thread, as sys.settrace says),
 * through it the current interpreter frame (whose chain lives in the data
 * stack), the recursion depth (kept as a depth so that a new limit set in
 * any context applies to all), the re-entry guard of trace functions, the
 * data-stack chunks the interpreter frames are allocated in, the stack of
 * exceptions being handled (exc_info, and the bottom item exc_state that the
 * thread state itself holds), the contextvars context, and the nesting of
 * the trashcan that defers deep deallocations. The exception being raised
 * (curexc_*) is always empty at a switch: a switch is a call that has not
 * failed. */
struct pystate {
    _PyCFrame *cframe;
    struct _PyInterpreterFrame *current_frame;
    int depth;
    int tracing;
    _PyStackChunk *chunk;
    PyObject **top, **limit;
    _PyErr_StackItem *exc_info;
    _PyErr_StackItem exc_state;
    PyObject *context;          /* owned while saved */
    int trash_delete_nesting;
};

/* The fields copied as they are, thread state's name and this record's:
 * one list for both directions. */
#define STATE_PLAIN(X)                                                                             \
    X(cframe, cframe) X(tracing, tracing) X(datastack_chunk, chunk) X(datastack_top, top)          \
    X(datastack_limit, limit) X(exc_info, exc_info) X(exc_state, exc_state) X(context, context)   \
    X(trash_delete_nesting, trash_delete_nesting)
#define SAVE_FIELD(ts, rec) s->rec = t->ts;
#define RESTORE_FIELD(ts, rec) t->ts = s->rec;

static inline void state_save(PyThreadState *t, struct pystate *s)
{
    STATE_PLAIN(SAVE_FIELD)
    s->current_frame = t->cframe->current_frame;
    s->depth = t->recursion_limit - t->recursion_remaining;
}

/* limit: the interpreter's recursion limit now (a context that saved its
 * depth under another limit gets the same depth under the new one, as
 * sys.setrecursionlimit does for threads). */
static inline void state_restore(PyThreadState *t, const struct pystate *s, int limit)
{
    STATE_PLAIN(RESTORE_FIELD)
    t->cframe->current_frame = s->current_frame;
    t->recursion_limit = limit;
    t->recursion_remaining = limit - s->depth;
    t->cframe->use_tracing =
        (t->tracing == 0 && (t->c_tracefunc != NULL || t->c_profilefunc != NULL)) ? 255 : 0;
    t->context_ver++;
}

/* The state a new body starts with: its own bottom C frame (whose chain
 * ends at the thread's root cframe, not in the resumer's stack), no frame,
 * its data stack from the root chunk, no exception being handled, its
 * context (owned), and `depth` levels deep. */
static void state_fresh(PyThreadState *t, struct pystate *s, _PyCFrame *cframe, _PyStackChunk *root,
                        PyObject *context, int depth)
{
    cframe->use_tracing = 0;
    cframe->current_frame = NULL;
    cframe->previous = &t->root_cframe;
    memset(s, 0, sizeof *s);
    s->cframe = cframe;
    s->depth = depth;
    s->chunk = root;
    s->top = &root->data[1];
    s->limit = (PyObject **)((char *)root + root->size);
    s->exc_info = &t->exc_state;
    s->context = context;
}

/* After a body's last frame: what is left of its state goes, and the thread
 * state points at nothing of its stack. The resumer installs its own state
 * on arrival; until then nothing runs Python (the GIL is held). Returns the
 * root chunk. */
static _PyStackChunk *state_finish(PyThreadState *t, _PyStackChunk *root)
{
    Py_CLEAR(t->context);
    Py_CLEAR(t->exc_state.exc_value);
    /* Only the root chunk is left: CPython frees a deeper one when its last
     * frame goes; anything else is freed as CPython allocates it. */
    _PyStackChunk *c = t->datastack_chunk;
    while (c && c != root) {
        _PyStackChunk *prev = c->previous;
        PyObjectArenaAllocator a;
        PyObject_GetArenaAllocator(&a);
        a.free(a.ctx, c, c->size);
        c = prev;
    }
    t->datastack_chunk = NULL;
    t->datastack_top = NULL;
    t->datastack_limit = NULL;
    t->cframe = &t->root_cframe;
    return root;
}

/* A new reference to the frame object of the frame a suspended context
 * stopped in, or NULL. PyThreadState_GetFrame makes the frame object of the
 * thread's current frame, so the suspended one is made current for that
 * call; the collector stays off so that no finaliser runs meanwhile. */
static PyObject *state_frame_object(const struct pystate *s)
{
    if (!s->current_frame)
        return NULL;
    PyThreadState *t = PyThreadState_Get();
    struct _PyInterpreterFrame *keep = t->cframe->current_frame;
    int gc = PyGC_Disable();
    t->cframe->current_frame = s->current_frame;
    PyFrameObject *f = PyThreadState_GetFrame(t);
    t->cframe->current_frame = keep;
    if (gc)
        PyGC_Enable();
    return (PyObject *)f;
}
#else
/* Other versions: no Python body can exist (spawn refuses), so the switches
 * of C bodies need nothing saved. */
struct pystate {
    int unused;
};
typedef struct {
    int unused;
} yfpy_cframe;
typedef struct yfpy_chunk {
    struct yfpy_chunk *previous;
    size_t size, top;
    PyObject *data[1];
} yfpy_chunk;
static inline void state_save(PyThreadState *t, struct pystate *s)
{
}
static inline void state_restore(PyThreadState *t, const struct pystate *s, int limit)
{
}
static void state_fresh(PyThreadState *t, struct pystate *s, yfpy_cframe *cframe, yfpy_chunk *root,
                        PyObject *context, int depth)
{
    Py_FatalError("yfcore: a Python body on an unsupported CPython");
}
static yfpy_chunk *state_finish(PyThreadState *t, yfpy_chunk *root)
{
    return root;
}
static PyObject *state_frame_object(const struct pystate *s)
{
    return NULL;
}
#endif

/* ---- data-stack chunks ---------------------------------------------------- */

/* A body's interpreter frames go in its own data stack, whose first (root)
 * chunk CPython never frees (it leaves data[0] unused so that no frame
 * starts there). The root chunks of finished bodies are kept here for the
 * next body: without the pool each spawn cost an mmap and a munmap. Only
 * touched with the GIL held. */
#define CHUNK_SIZE (16 * 1024)
#define CHUNK_POOL 64
static yfpy_chunk *chunk_pool[CHUNK_POOL];
static int chunk_npool;

static yfpy_chunk *chunk_get(void)
{
    if (chunk_npool)
        return chunk_pool[--chunk_npool];
    yfpy_chunk *c = PyMem_RawMalloc(CHUNK_SIZE);
    if (!c)
        return NULL;
    c->previous = NULL;
    c->size = CHUNK_SIZE;
    c->top = 0;
    return c;
}

static void chunk_put(yfpy_chunk *c)
{
    if (chunk_npool < CHUNK_POOL) {
        c->previous = NULL;
        c->top = 0;
        chunk_pool[chunk_npool++] = c;
    } else {
        PyMem_RawFree(c);
    }
}

/* ---- the record of one Python body -------------------------------------- */

enum { B_NEW = 0, B_RUNNING = 1, B_SUSPENDED = 2, B_DONE = 3 };

typedef struct body {
    PyObject_HEAD
    yf_co *co;                  /* NULL once done */
    yf_sched *sched;
    uint64_t id;
    PyObject *fn, *args, *kwargs;
    PyObject *context;          /* the contextvars context it starts in */
    PyObject *result;           /* return value, or the exception that ended it */
    PyObject *wake_value;       /* what the next block() returns */
    PyObject *owner;            /* the Python Scheduler */
    unsigned long thread;       /* the owner thread's ident: only it may switch */
    int state;                  /* B_* */
    int failed;
    int kill;                   /* unwinding: raise CoroutineExit at each resume */
    char in_loop;               /* waiting on the loop (sleep or fd), which will wake it */
    int limit_cap;              /* recursion levels its stack holds */
    uint64_t switches;          /* times it was switched in */
    struct pystate *saved;      /* its state while suspended (on its own stack) */
    PyObject *weakrefs;
    struct body *next, *prev;   /* live bodies (spawned, not done), all schedulers */
    struct body *next_weak;     /* blocked bodies whose reference is still to drop */
    char weak;                  /* blocked in block(): the coroutine holds no reference */
} Body;

static PyTypeObject BodyType;

/* Sentinel of the list of live bodies, for Scheduler.close() and find()
 * (changed with the GIL held). */
static Body live = {.next = &live, .prev = &live};

static void live_add(Body *b)
{
    b->next = &live;
    b->prev = live.prev;
    live.prev->next = b;
    live.prev = b;
}

static void live_del(Body *b)
{
    if (b->next) {
        b->prev->next = b->next;
        b->next->prev = b->prev;
        b->next = b->prev = NULL;
    }
}

/* A body blocked in block() can be woken only through a reference to it, so
 * while it is blocked the coroutine gives its own reference up: when the
 * last other one goes, the body is unwound (body_finalize). The reference is
 * given up by the next context that runs Python (the blocked body cannot
 * drop it while it still runs), from this list. */
static Body *weak_pending;

static void drop_weak_pending(void)
{
    while (weak_pending) {
        Body *b = weak_pending;
        weak_pending = b->next_weak;
        b->next_weak = NULL;
        if (b->state == B_SUSPENDED && !b->weak && b->co && rt.co_state(b->co) == YF_BLOCKED && !b->in_loop) {
            b->weak = 1;
            Py_DECREF(b);
        }
    }
}

/* The coroutine takes its reference back (a wake, an unwind). */
static void unweak(Body *b)
{
    if (b->weak) {
        b->weak = 0;
        Py_INCREF(b);
    }
}

/* The body running on this thread, NULL in the root context and in C bodies. */
static __thread Body *cur_body;

/* Bytes of C stack one level of Python recursion may take in 3.11, where a
 * Python-to-Python call takes none (frames live in the data stack) but a
 * level through C takes a C frame chain: measured on x86-64 (tests/
 * test_pybody.py's probe prints the table): repr 170, reduce 185, str 240,
 * == 260, map 315, isinstance 315, exec 345, call 380, __init__ 395,
 * format 610, __getattr__ 735 bytes per level. A body's recursion limit is
 * capped at what its stack holds at this rate, so deep recursion of those
 * shapes ends in RecursionError before the guard page. list.sort with a key
 * (1.7 KB per level: its merge state lives on the C stack) can still reach
 * the guard, which then reports the coroutine (tested in a subprocess). */
#define BYTES_PER_LEVEL 800
/* Kept free for the trampoline and the first call's frames. */
#define STACK_RESERVE (16 * 1024)
/* CPython lets a RecursionError being handled go 50 levels deeper. */
#define HEADROOM 50
/* The fewest levels a body's stack must hold to be spawned at all. */
#define MIN_LEVELS 100

static int body_limit(const Body *b)
{
    int lim = Py_GetRecursionLimit();
    return b->limit_cap < lim ? b->limit_cap : lim;
}

static void set_errno_error(const char *what)
{
    int e = errno;
    if (e == ENOMEM)
        PyErr_Format(PyExc_MemoryError, "%s: %s", what, strerror(e));
    else
        PyErr_Format(PyExc_OSError, "%s: %s (errno %d)", what, strerror(e), e);
}

/* The object references of a body: what it runs with first (dropped when
 * it ends), then what outlives its end. */
static const size_t body_refs[] = {
    offsetof(Body, fn), offsetof(Body, args), offsetof(Body, kwargs), offsetof(Body, context),
    offsetof(Body, wake_value), offsetof(Body, result), offsetof(Body, owner),
};
#define BODY_REFS_RUN 5
#define BODY_REFS_ALL (sizeof body_refs / sizeof body_refs[0])

static inline PyObject **body_ref(Body *b, size_t i)
{
    return (PyObject **)((char *)b + body_refs[i]);
}

static void body_clear_refs(Body *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        Py_CLEAR(*body_ref(b, i));
}

/* A body's end: its outcome is kept, the coroutine's reference goes. */
static void body_end(Body *b, PyObject *result, int failed)
{
    b->result = result;
    b->failed = failed;
    b->state = B_DONE;
    b->co = NULL;
    live_del(b);
    body_clear_refs(b, BODY_REFS_RUN);
    Py_DECREF(b);
}

/* The one switch of this module: every context that switches (the root
 * resuming a coroutine or running the ready queue or the loop, a body
 * resuming another, yielding, blocking or waiting on the loop) saves its
 * interpreter state here, on its own stack, makes the runtime call, and
 * installs its state again when control comes back to it. */
enum { SW_RESUME, SW_RUN, SW_LOOP_RUN, SW_YIELD, SW_BLOCK, SW_SLEEP, SW_WAIT_FD };

struct sw {
    int op;
    void *target;               /* the coroutine, scheduler or loop */
    int fd;
    unsigned events;
    int64_t ms;
};

/* While a loop run by the root sleeps in epoll, the GIL is released so that
 * other threads run; the root's own state is installed first, so what they
 * may read of this thread (sys._current_frames) is the frame that called
 * Loop.run, not a suspended body's. */
struct idle {
    PyThreadState *t;
    const struct pystate *root;
    PyThreadState *released;
};

static void idle_before(void *arg)
{
    struct idle *i = arg;
    state_restore(i->t, i->root, Py_GetRecursionLimit());
    i->released = PyEval_SaveThread();
}

static void idle_after(void *arg)
{
    struct idle *i = arg;
    PyEval_RestoreThread(i->released);
}

static int64_t do_switch(const struct sw *a)
{
    PyThreadState *t = PyThreadState_Get();
    Body *me = cur_body;
    struct pystate mine;
    state_save(t, &mine);
    if (me) {
        me->saved = &mine;
        me->state = B_SUSPENDED;
        me->in_loop = a->op == SW_SLEEP || a->op == SW_WAIT_FD;
    }
    if (me && a->op == SW_BLOCK) {
        me->next_weak = weak_pending;
        weak_pending = me;
    }
    int64_t r = 0;
    switch (a->op) {
    case SW_RESUME: r = rt.co_resume(a->target); break;
    case SW_RUN: r = rt.sched_run(a->target); break;
    case SW_LOOP_RUN: {
        struct idle i = {t, &mine, NULL};
        rt.loop_set_idle(a->target, idle_before, idle_after, &i);
        r = rt.loop_run(a->target);
        int e = errno;
        rt.loop_set_idle(a->target, NULL, NULL, NULL);
        errno = e;
        break;
    }
    case SW_YIELD: r = rt.co_yield(); break;
    case SW_BLOCK: r = rt.co_block(); break;
    case SW_SLEEP: r = rt.sleep_ms(a->ms); break;
    case SW_WAIT_FD: r = rt.wait_fd(a->fd, a->events, a->ms); break;
    }
    int e = errno;
    if (me) {
        me->saved = NULL;
        me->state = B_RUNNING;
        me->in_loop = 0;
        me->switches++;
    }
    cur_body = me;
    /* The interpreter's limit as it is now: another context may have set it. */
    state_restore(t, &mine, Py_GetRecursionLimit());
    if (weak_pending)
        drop_weak_pending();
    errno = e;
    return r;
}

/* Ctrl-C lands in whichever body runs: that body ends with KeyboardInterrupt,
 * the scheduler's other bodies are unwound as they next switch (CoroutineExit,
 * as on close), and the root's run() then raises KeyboardInterrupt, so an
 * interrupted run ends instead of carrying on without the body it hit. */
static yf_sched *interrupted;

static void interrupt(yf_sched *s)
{
    for (Body *o = live.next; o != &live; o = o->next)
        if (o->sched == s)
            o->kill = 1;
    interrupted = s;
}

/* First function of every Python body, on its own stack, with the GIL held
 * (every resume of a scheduler with Python bodies is made through this
 * module). Its exception never leaves it: it ends the body. */
static intptr_t trampoline(void *arg)
{
    Body *b = arg;
    if (!PyGILState_Check())
        Py_FatalError("yfcore: a Python body was resumed without the GIL (through the cffi module); "
                      "schedulers with Python bodies resume only through yfcore._yfpy");
    PyThreadState *t = PyThreadState_Get();
    yfpy_chunk *root = chunk_get();
    if (!root) {
        body_end(b, PyObject_CallFunction(PyExc_MemoryError, "s", "no data stack for a Python body"), 1);
        PyErr_Clear();
        return 1;
    }
    /* The cap on its recursion is a starting depth: 3.11 raises a thread's
     * lowered recursion_limit back to the interpreter's at the first check
     * (_Py_CheckRecursiveCall), so a lower limit would not hold; a depth does. */
    int lim = Py_GetRecursionLimit();
    yfpy_cframe cframe;
    struct pystate fresh;
    state_fresh(t, &fresh, &cframe, root, b->context, lim > b->limit_cap ? lim - b->limit_cap : 0);
    b->context = NULL;
    b->state = B_RUNNING;
    b->switches++;
    cur_body = b;
    state_restore(t, &fresh, lim);
    if (weak_pending)
        drop_weak_pending();

    PyObject *r = NULL, *value = NULL;
    if (b->kill)
        PyErr_SetString(CoroutineExit, "unwound before it started");
    else
        r = PyObject_Call(b->fn, b->args, b->kwargs);
    if (!r) {
        PyObject *type, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyErr_NormalizeException(&type, &value, &tb);
        if (tb && value)
            PyException_SetTraceback(value, tb);
        Py_XDECREF(type);
        Py_XDECREF(tb);
    }
    /* What it held goes while its state is still installed: a finaliser
     * run by these decrefs runs as part of the body. */
    if (value && PyErr_GivenExceptionMatches(value, PyExc_KeyboardInterrupt))
        interrupt(b->sched);
    cur_body = NULL;
    body_end(b, r ? r : value, r == NULL);
    if (PyErr_Occurred())
        PyErr_WriteUnraisable(NULL);
    chunk_put(state_finish(t, root));
    return 0;
}

/* ---- module functions ------------------------------------------------------ */

static int check_bound(void)
{
    if (!rt_bound) {
        PyErr_SetString(PyExc_RuntimeError, "yfcore._yfpy is not bound to the runtime (import yfcore.runtime)");
        return -1;
    }
    return 0;
}

static void *addr_arg(PyObject *o, const char *what)
{
    void *p = PyLong_AsVoidPtr(o);
    if (!p && !PyErr_Occurred())
        PyErr_Format(PyExc_ValueError, "%s is NULL", what);
    return p;
}

/* bind({name: address}): the runtime functions this module calls. */
static PyObject *py_bind(PyObject *m, PyObject *table)
{
    if (!PyDict_Check(table)) {
        PyErr_SetString(PyExc_TypeError, "bind() wants a dict of name -> address");
        return NULL;
    }
    for (size_t i = 0; i < sizeof rt_names / sizeof rt_names[0]; i++) {
        PyObject *v = PyDict_GetItemString(table, rt_names[i].name);
        if (!v) {
            PyErr_Format(PyExc_KeyError, "bind(): no address for %s", rt_names[i].name);
            return NULL;
        }
        void *p = addr_arg(v, rt_names[i].name);
        if (!p)
            return NULL;
        memcpy((char *)&rt + rt_names[i].off, &p, sizeof p);
    }
    rt_bound = 1;
    Py_RETURN_NONE;
}

/* spawn(type, sched_address, owner, fn, args, kwargs) -> a `type` (Body or
 * a subclass): the record of the body is also its handle. */
static PyObject *py_spawn(PyObject *m, PyObject *const *argv, Py_ssize_t n)
{
    if (n != 6) {
        PyErr_SetString(PyExc_TypeError, "spawn(type, sched, owner, fn, args, kwargs)");
        return NULL;
    }
    PyTypeObject *type = (PyTypeObject *)argv[0];
    PyObject *const *a = argv + 1;
    if (!PyType_Check(argv[0]) || !PyType_IsSubtype(type, &BodyType)) {
        PyErr_SetString(PyExc_TypeError, "spawn(): type must be a subclass of yfcore._yfpy.Body");
        return NULL;
    }
    if (!YFPY_SUPPORTED) {
        PyErr_Format(PyExc_RuntimeError,
                     "Python bodies need CPython 3.11 (their switches save and restore its per-thread "
                     "interpreter state, whose layout changes between versions); this is %s. "
                     "C bodies (a str naming a built-in body) work on every version",
                     Py_GetVersion());
        return NULL;
    }
    if (check_bound())
        return NULL;
    yf_sched *s = addr_arg(a[0], "sched");
    if (!s)
        return NULL;
    if (!PyCallable_Check(a[2])) {
        PyErr_Format(PyExc_TypeError, "fn must be callable, got %.100s", Py_TYPE(a[2])->tp_name);
        return NULL;
    }
    if (!PyTuple_Check(a[3]) || (a[4] != Py_None && !PyDict_Check(a[4]))) {
        PyErr_SetString(PyExc_TypeError, "spawn(): args must be a tuple and kwargs a dict or None");
        return NULL;
    }
    size_t usable = rt.sched_usable_stack(s);
    long levels = usable > STACK_RESERVE ? (long)((usable - STACK_RESERVE) / BYTES_PER_LEVEL) - HEADROOM : 0;
    if (levels < MIN_LEVELS) {
        PyErr_Format(PyExc_ValueError,
                     "the scheduler's stacks (%zu usable bytes) hold %ld levels of Python recursion, fewer "
                     "than %d: make it with stack_size=yfcore.PY_STACK_SIZE (262144) or more for Python bodies",
                     usable, levels < 0 ? 0 : levels, MIN_LEVELS);
        return NULL;
    }
    /* tp_alloc zeroes the record and tracks it for the collector. */
    Body *b = (Body *)type->tp_alloc(type, 0);
    if (!b)
        return NULL;
    b->thread = PyThread_get_thread_ident();
    b->sched = s;
    b->fn = Py_NewRef(a[2]);
    b->args = Py_NewRef(a[3]);
    b->kwargs = a[4] == Py_None ? NULL : Py_NewRef(a[4]);
    b->owner = Py_NewRef(a[1]);
    b->state = B_NEW;
    b->limit_cap = (int)levels;
    b->context = PyContext_CopyCurrent();
    if (!b->context) {
        Py_DECREF(b);
        return NULL;
    }
    yf_co *co = rt.co_create(s, trampoline, b);
    if (!co) {
        if (errno == ENOMEM)
            PyErr_SetString(PyExc_MemoryError, "no stack could be mapped for a new coroutine (see vm.max_map_count)");
        else
            set_errno_error("yf_co_create");
        Py_DECREF(b);
        return NULL;
    }
    /* Reaped by the runtime when it ends; the record keeps its outcome. */
    rt.co_detach(co);
    b->co = co;
    b->id = rt.co_id(co);
    live_add(b);
    Py_INCREF(b);               /* the coroutine's reference, until it ends */
    return (PyObject *)b;
}

static Body *running_body(const char *what)
{
    if (!rt_bound || !cur_body || rt.co_current() == NULL) {
        PyErr_Format(PyExc_RuntimeError, "yfcore.%s() called outside a Python coroutine body "
                     "(or from a thread other than the one running it)", what);
        return NULL;
    }
    return cur_body;
}

/* A body's switch out and back (yield, block, loop waits): NULL with
 * CoroutineExit set when it is being unwound, else the runtime's result in
 * *r (-1 with errno set: an OSError, or RuntimeError for EPERM: no loop). */
static int body_switch(const char *what, struct sw *a, int64_t *r)
{
    Body *b = running_body(what);
    if (!b)
        return -1;
    *r = do_switch(a);
    if (b->kill) {
        PyErr_SetString(CoroutineExit, "unwound: its scheduler is closing or its last handle was dropped");
        return -1;
    }
    if (*r < 0 && (a->op == SW_SLEEP || a->op == SW_WAIT_FD)) {
        if (errno == EPERM)
            PyErr_Format(PyExc_RuntimeError, "yfcore.%s() needs a body run by a Loop (Loop.run())", what);
        else
            PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    return 0;
}

static PyObject *py_yield(PyObject *m, PyObject *unused)
{
    struct sw a = {.op = SW_YIELD};
    int64_t r;
    if (body_switch("yield_", &a, &r))
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *py_block(PyObject *m, PyObject *unused)
{
    struct sw a = {.op = SW_BLOCK};
    int64_t r;
    int rc = body_switch("block", &a, &r);
    if (rc && !cur_body)
        return NULL;            /* not in a body: nothing was switched */
    PyObject *v = cur_body->wake_value;
    cur_body->wake_value = NULL;
    if (rc) {
        Py_XDECREF(v);
        return NULL;
    }
    return v ? v : Py_NewRef(Py_None);
}

static PyObject *py_sleep(PyObject *m, PyObject *arg)
{
    struct sw a = {.op = SW_SLEEP, .ms = PyLong_AsLongLong(arg)};
    int64_t r;
    if ((a.ms == -1 && PyErr_Occurred()) || body_switch("sleep", &a, &r))
        return NULL;
    Py_RETURN_NONE;
}

/* wait_fd(fd, events, timeout_ms) -> ready events (0 on timeout). */
static PyObject *py_wait_fd(PyObject *m, PyObject *const *args, Py_ssize_t n)
{
    if (n != 3) {
        PyErr_SetString(PyExc_TypeError, "wait_fd(fd, events, timeout_ms)");
        return NULL;
    }
    struct sw a = {.op = SW_WAIT_FD, .fd = (int)PyLong_AsLong(args[0]),
                   .events = (unsigned)PyLong_AsLong(args[1]), .ms = PyLong_AsLongLong(args[2])};
    int64_t r;
    if (PyErr_Occurred() || body_switch("wait_fd", &a, &r))
        return NULL;
    return PyLong_FromLongLong(r);
}

/* current() -> the running Body, or None in the root context or a C body. */
static PyObject *py_current(PyObject *m, PyObject *unused)
{
    if (rt_bound && cur_body && rt.co_current())
        return Py_NewRef((PyObject *)cur_body);
    Py_RETURN_NONE;
}

/* The root's calls: resume(co), run(sched), loop_run(loop), by address, with
 * the GIL held throughout. resume may also be called from a body (a nested
 * resume); run and loop_run only from the root context. */
static PyObject *root_call(PyObject *arg, int op, const char *what)
{
    if (check_bound())
        return NULL;
    struct sw a = {.op = op, .target = addr_arg(arg, what)};
    if (!a.target)
        return NULL;
    if (op != SW_RESUME && (cur_body || rt.co_current())) {
        PyErr_Format(PyExc_RuntimeError, "%s.run() from inside a coroutine: it is already running "
                     "(yield_() to let the others run)", op == SW_RUN ? "Scheduler" : "Loop");
        return NULL;
    }
    int64_t r = do_switch(&a);
    if (interrupted && !cur_body && !rt.co_current()) {
        interrupted = NULL;
        PyErr_SetString(PyExc_KeyboardInterrupt, "a coroutine body was interrupted; the scheduler's other "
                        "bodies were unwound as they next switched");
        return NULL;
    }
    if (r < 0 && op == SW_LOOP_RUN)
        return PyLong_FromLongLong(-(int64_t)errno);    /* the wrapper retries EINTR */
    if (r < 0)
        return set_errno_error(op == SW_RUN ? "yf_sched_run" : "yf_co_resume"), NULL;
    return op == SW_RESUME ? Py_NewRef(Py_None) : PyLong_FromLongLong(r);
}

static PyObject *py_resume(PyObject *m, PyObject *arg)
{
    return root_call(arg, SW_RESUME, "co");
}

static PyObject *py_run(PyObject *m, PyObject *arg)
{
    return root_call(arg, SW_RUN, "sched");
}

/* loop_run(loop_address): yf_loop_run with the GIL held (it resumes Python
 * bodies; other threads wait while the loop sleeps in epoll). Returns the
 * resumes, or minus the runtime's errno. */
static PyObject *py_loop_run(PyObject *m, PyObject *arg)
{
    return root_call(arg, SW_LOOP_RUN, "loop");
}

/* live(sched_address) -> the bodies of that scheduler not yet done, oldest first. */
static PyObject *py_live(PyObject *m, PyObject *arg)
{
    void *s = addr_arg(arg, "sched");
    if (!s)
        return NULL;
    PyObject *out = PyList_New(0);
    for (Body *b = live.next; out && b != &live; b = b->next)
        if ((void *)b->sched == s && PyList_Append(out, (PyObject *)b) < 0)
            Py_CLEAR(out);
    return out;
}

static PyObject *py_supported(PyObject *m, PyObject *unused)
{
    return PyBool_FromLong(YFPY_SUPPORTED);
}

static PyObject *py_pool(PyObject *m, PyObject *unused)
{
    return PyLong_FromLong(chunk_npool);
}

/* state_ns(n): ns per save + restore of this thread's interpreter state,
 * timed over n pairs in C (the part of a Python body's switch that is
 * neither the call nor the register swap). */
static PyObject *py_state_ns(PyObject *m, PyObject *arg)
{
    long long n = PyLong_AsLongLong(arg);
    if (n <= 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "state_ns(n) wants n > 0");
        return NULL;
    }
    PyThreadState *t = PyThreadState_Get();
    struct pystate s;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long long i = 0; i < n; i++) {
        state_save(t, &s);
        /* The compiler must not fold the pairs away. */
        __asm__ volatile("" : : "r"(&s) : "memory");
        state_restore(t, &s, Py_GetRecursionLimit());
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ns = (double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec);
    return PyFloat_FromDouble(ns / (double)n);
}

/* The fields a switch saves, for teaching: name -> size in bytes. */
static PyObject *py_saved_fields(PyObject *m, PyObject *unused)
{
#if YFPY_SUPPORTED
#define FIELD(f) {#f, sizeof(((struct pystate *)0)->f), offsetof(struct pystate, f)}
    static const struct {
        const char *name;
        size_t size, off;
    } f[] = {FIELD(cframe), FIELD(current_frame), FIELD(depth), FIELD(tracing), FIELD(chunk), FIELD(top),
             FIELD(limit), FIELD(exc_info), FIELD(exc_state), FIELD(context), FIELD(trash_delete_nesting)};
    PyObject *out = PyList_New(0);
    for (size_t i = 0; out && i < sizeof f / sizeof f[0]; i++) {
        PyObject *t = Py_BuildValue("(snn)", f[i].name, (Py_ssize_t)f[i].off, (Py_ssize_t)f[i].size);
        if (!t || PyList_Append(out, t) < 0) {
            Py_XDECREF(t);
            Py_CLEAR(out);
            break;
        }
        Py_DECREF(t);
    }
    return out;
#else
    return PyList_New(0);
#endif
}

/* ---- Body methods ---------------------------------------------------------- */

/* Only the owner thread switches a body: elsewhere RuntimeError, with the
 * scheduler's own message when it has one (_foreign_message). */
static int owner_thread(Body *b)
{
    if (PyThread_get_thread_ident() == b->thread)
        return 0;
    PyObject *msg = b->owner ? PyObject_CallMethod(b->owner, "_foreign_message", NULL) : NULL;
    if (msg) {
        PyErr_SetObject(PyExc_RuntimeError, msg);
        Py_DECREF(msg);
    } else {
        PyErr_Clear();
        PyErr_SetString(PyExc_RuntimeError, "this coroutine belongs to another thread");
    }
    return -1;
}

static const char *state_names[] = {"new", "running", "suspended", "done"};

static PyObject *body_get_state(Body *b, void *c)
{
    return PyUnicode_FromString(state_names[b->state]);
}

static PyObject *body_get_recursion_limit(Body *b, void *c)
{
    return PyLong_FromLong(body_limit(b));
}

static PyObject *body_get_blocked(Body *b, void *c)
{
    return PyBool_FromLong(b->co && b->state == B_SUSPENDED && rt.co_state(b->co) == YF_BLOCKED);
}

static PyObject *body_get_cstate(Body *b, void *c)
{
    return PyLong_FromLong(b->co ? rt.co_state(b->co) : YF_DONE);
}

static PyObject *body_get_co(Body *b, void *c)
{
    if (!b->co)
        Py_RETURN_NONE;
    return PyLong_FromVoidPtr(b->co);
}

/* outcome() -> (failed, value): the return value or the exception. */
static PyObject *body_outcome(Body *b, PyObject *unused)
{
    if (b->state != B_DONE) {
        PyErr_Format(PyExc_RuntimeError, "coroutine %llu has not finished (%s)", (unsigned long long)b->id,
                     state_names[b->state]);
        return NULL;
    }
    return Py_BuildValue("(OO)", b->failed ? Py_True : Py_False, b->result ? b->result : Py_None);
}

/* The frame a suspended body stopped in (None unless suspended). */
static PyObject *body_frame(Body *b, PyObject *unused)
{
    if (owner_thread(b))
        return NULL;
    PyObject *f = b->state == B_SUSPENDED && b->saved ? state_frame_object(b->saved) : NULL;
    return f ? f : Py_NewRef(Py_None);
}

static int resume_checked(Body *b)
{
    struct sw a = {.op = SW_RESUME, .target = b->co};
    if (do_switch(&a) != 0) {
        set_errno_error("yf_co_resume");
        return -1;
    }
    return 0;
}

/* resume(): run it until it yields, blocks or ends (GIL held throughout). */
static PyObject *body_resume(Body *b, PyObject *unused)
{
    if (owner_thread(b))
        return NULL;
    int st = b->co ? rt.co_state(b->co) : YF_DONE;
    if (st != YF_NEW && st != YF_READY) {
        static const char *names[] = {"new", "ready", "running", "blocked", "done"};
        PyErr_Format(PyExc_RuntimeError, "cannot resume coroutine %llu: it is %s", (unsigned long long)b->id,
                     names[st]);
        return NULL;
    }
    if (resume_checked(b))
        return NULL;
    Py_RETURN_NONE;
}

/* wake(value): a blocked body (not in a loop wait) becomes ready; block() returns value. */
static PyObject *body_wake(Body *b, PyObject *value)
{
    if (owner_thread(b))
        return NULL;
    if (b->state != B_SUSPENDED || !b->co || rt.co_state(b->co) != YF_BLOCKED || b->in_loop) {
        PyErr_Format(PyExc_ValueError, "coroutine %llu is not blocked in yfcore.block() (it is %s)",
                     (unsigned long long)b->id, b->in_loop ? "waiting on the loop" : state_names[b->state]);
        return NULL;
    }
    if (rt.co_wake(b->co, rt.co_token(b->co), 0) != 0)
        return set_errno_error("yf_co_wake"), NULL;
    unweak(b);
    Py_XSETREF(b->wake_value, Py_NewRef(value));
    Py_RETURN_NONE;
}

/* unwind(): raise CoroutineExit in it at its suspension point and run it
 * until it ends (at most `tries` resumes: a body that catches the exit and
 * suspends again gets it again). A body that never started is cancelled.
 * Returns True when it ended. */
/* unwind(tries): raise CoroutineExit in it at its suspension point and run
 * it until it ends (at most `tries` resumes: a body that catches the exit
 * and suspends again gets it again). A body that never started is
 * cancelled. 1 when it ended, 0 when not, -1 with an exception. */
static int unwind(Body *b, long tries)
{
    if (owner_thread(b))
        return -1;
    if (b->state == B_DONE)
        return 1;
    if (b->state == B_RUNNING || b == cur_body) {
        PyErr_SetString(PyExc_RuntimeError, "a coroutine cannot unwind itself while running");
        return -1;
    }
    if (b->state == B_NEW) {
        if (rt.co_cancel(b->co, 0) != 0) {
            set_errno_error("yf_co_cancel");
            return -1;
        }
        body_end(b, PyObject_CallFunction(CoroutineExit, "s", "cancelled before it started"), 1);
        return 1;
    }
    b->kill = 1;
    Py_INCREF(b);
    int rc = 0;
    for (long i = 0; i < tries && b->state != B_DONE; i++) {
        /* A loop wait is woken like a block (the loop supports a wake from
         * outside it: its wait record is unlinked by the waiter). */
        if (rt.co_state(b->co) == YF_BLOCKED) {
            if (rt.co_wake(b->co, rt.co_token(b->co), 0) != 0)
                break;
            unweak(b);
        }
        if (resume_checked(b)) {
            rc = -1;
            break;
        }
    }
    if (rc == 0)
        rc = b->state == B_DONE;
    Py_DECREF(b);
    return rc;
}

static PyObject *body_unwind(Body *b, PyObject *arg)
{
    long tries = PyLong_AsLong(arg);
    if (tries == -1 && PyErr_Occurred())
        return NULL;
    int rc = unwind(b, tries);
    return rc < 0 ? NULL : PyBool_FromLong(rc);
}

/* Resumes of a body that catches CoroutineExit and suspends again, before
 * an unwind gives up (also yfcore.runtime's, exported as UNWIND_TRIES). */
#define UNWIND_TRIES 3

static int body_traverse(Body *b, visitproc visit, void *arg)
{
    for (size_t i = 0; i < BODY_REFS_ALL; i++)
        Py_VISIT(*body_ref(b, i));
    return 0;
}

static int body_clear(Body *b)
{
    /* A live coroutine holds its own reference, so the collector can only
     * clear a body that is done or never was. */
    if (b->state != B_DONE && b->co)
        return 0;
    body_clear_refs(b, BODY_REFS_ALL);
    return 0;
}

/* The last reference went. A body blocked in block() (its coroutine holds
 * no reference then) is unwound here on the owner thread: the coroutine
 * takes its reference back, CoroutineExit is raised at its block() and it
 * runs to its end, which drops that reference again. Elsewhere (a collector
 * on another thread) or if it will not end, the coroutine keeps the
 * reference: the body lives on, and its scheduler's close unwinds it. */
static void body_finalize(Body *b)
{
    if (!b->weak || b->state != B_SUSPENDED)
        return;
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    unweak(b);
    if (PyThread_get_thread_ident() == b->thread && unwind(b, UNWIND_TRIES) < 0)
        PyErr_WriteUnraisable((PyObject *)b);
    PyErr_Restore(type, value, tb);
}

static void body_dealloc(Body *b)
{
    if (PyObject_CallFinalizerFromDealloc((PyObject *)b) < 0)
        return;                 /* resurrected: its coroutine holds it again */
    PyObject_GC_UnTrack(b);
    if (b->weakrefs)
        PyObject_ClearWeakRefs((PyObject *)b);
    b->state = B_DONE;
    b->co = NULL;
    body_clear(b);
    /* A subclass's instance: subtype_dealloc, which called this, drops
     * the reference to its type. */
    Py_TYPE(b)->tp_free(b);
}

static PyObject *body_repr(Body *b)
{
    return PyUnicode_FromFormat("<yfcore body %llu %s>", (unsigned long long)b->id, state_names[b->state]);
}

static PyGetSetDef body_getset[] = {
    {"state", (getter)body_get_state, NULL, "new, running, suspended or done", NULL},
    {"recursion_limit", (getter)body_get_recursion_limit, NULL, "the recursion limit it runs with", NULL},
    {"blocked", (getter)body_get_blocked, NULL, "suspended in block() or a loop wait", NULL},
    {"cstate", (getter)body_get_cstate, NULL, "the runtime's state (YF_NEW .. YF_DONE)", NULL},
    {"co", (getter)body_get_co, NULL, "address of the C coroutine, or None once done", NULL},
    {NULL},
};

static PyMemberDef body_members[] = {
    {"id", T_ULONGLONG, offsetof(Body, id), READONLY, "the coroutine's id"},
    {"owner", T_OBJECT, offsetof(Body, owner), READONLY, "what spawn was given as its owner"},
    {"switches", T_ULONGLONG, offsetof(Body, switches), READONLY, "times it was switched in"},
    {"in_loop", T_BOOL, offsetof(Body, in_loop), READONLY, "waiting on the loop (sleep or fd)"},
    {NULL},
};

static PyMethodDef body_methods[] = {
    {"outcome", (PyCFunction)body_outcome, METH_NOARGS, "(failed, value) of a finished body"},
    {"frame", (PyCFunction)body_frame, METH_NOARGS, "the frame a suspended body stopped in"},
    {"resume", (PyCFunction)body_resume, METH_NOARGS, "run it until it yields, blocks or ends"},
    {"wake", (PyCFunction)body_wake, METH_O, "make a blocked body ready; block() returns the value"},
    {"unwind", (PyCFunction)body_unwind, METH_O, "raise CoroutineExit in it and run it to its end"},
    {NULL},
};

static PyTypeObject BodyType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "yfcore._yfpy.Body",
    .tp_basicsize = sizeof(Body),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .tp_finalize = (destructor)body_finalize,
    .tp_doc = "The record of one Python coroutine body (see yfcore.runtime.PyCoroutine).",
    .tp_dealloc = (destructor)body_dealloc,
    .tp_traverse = (traverseproc)body_traverse,
    .tp_clear = (inquiry)body_clear,
    .tp_repr = (reprfunc)body_repr,
    .tp_weaklistoffset = offsetof(Body, weakrefs),
    .tp_getset = body_getset,
    .tp_members = body_members,
    .tp_methods = body_methods,
};

static PyMethodDef methods[] = {
    /* set-up, from yfcore.runtime */
    {"bind", py_bind, METH_O, "bind({name: address}) the runtime functions"},
    {"spawn", (PyCFunction)(void (*)(void))py_spawn, METH_FASTCALL, "spawn(sched, owner, fn, args, kwargs)"},
    /* inside a body */
    {"yield_", py_yield, METH_NOARGS, "from a body: let the others run, come back later"},
    {"block", py_block, METH_NOARGS, "from a body: wait for wake(value); returns value"},
    {"sleep", py_sleep, METH_O, "from a body on a loop: sleep ms"},
    {"wait_fd", (PyCFunction)(void (*)(void))py_wait_fd, METH_FASTCALL, "from a body on a loop: wait_fd(fd, events, ms)"},
    {"current", py_current, METH_NOARGS, "the running Body, or None"},
    /* the root's calls, with the GIL held */
    {"resume", py_resume, METH_O, "resume(co_address)"},
    {"run", py_run, METH_O, "run(sched_address): yf_sched_run"},
    {"loop_run", py_loop_run, METH_O, "loop_run(loop_address): yf_loop_run"},
    /* looking in */
    {"live", py_live, METH_O, "live(sched_address): its bodies not yet done"},
    {"supported", py_supported, METH_NOARGS, "True on the CPython versions Python bodies support"},
    {"pooled_chunks", py_pool, METH_NOARGS, "data-stack chunks kept for the next body"},
    {"saved_fields", py_saved_fields, METH_NOARGS, "[(name, offset, size)] of what a switch saves"},
    {"state_ns", py_state_ns, METH_O, "state_ns(n): ns per save + restore of the interpreter state"},
    {NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "yfcore._yfpy",
    .m_doc = "Python functions as coroutine bodies on the yfcore runtime (see csrc/py/pybody.c).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__yfpy(void)
{
    if (PyType_Ready(&BodyType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    CoroutineExit = PyErr_NewExceptionWithDoc(
        "yfcore.CoroutineExit",
        "Raised inside a Python coroutine body at its suspension point to unwind it (its scheduler "
        "closes, or its last handle was dropped while it was blocked); a BaseException, like GeneratorExit.",
        PyExc_BaseException, NULL);
    if (!CoroutineExit || PyModule_AddObjectRef(m, "CoroutineExit", CoroutineExit) < 0 ||
        PyModule_AddObjectRef(m, "Body", (PyObject *)&BodyType) < 0 ||
        PyModule_AddIntConstant(m, "BYTES_PER_LEVEL", BYTES_PER_LEVEL) < 0 ||
        PyModule_AddIntConstant(m, "STACK_RESERVE", STACK_RESERVE) < 0 ||
        PyModule_AddIntConstant(m, "UNWIND_TRIES", UNWIND_TRIES) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
