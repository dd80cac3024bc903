"""Thin Pythonic wrappers over the C coroutine runtime (yfcore._yfcore).

A coroutine body is a built-in C function (named by a str, see DEMOS) or a
Python callable. A Python body runs on the coroutine's own guarded, pooled
stack; each switch into or out of it saves and restores CPython's
per-thread interpreter state, with the GIL held, in the C-API module
yfcore._yfpy (csrc/py/pybody.c), which is the only way C calls Python from
a coroutine. Inside a body: yield_(), block(), current(), and on a loop
sleep() and wait_fd(). C coroutines are held by id, never by pointer, so a
stale handle raises LookupError instead of touching freed memory; a Python
body's handle also holds its record (outcome, frame).

Python bodies need CPython 3.11 (spawn raises RuntimeError elsewhere; C
bodies work everywhere) and a stack of at least 64 KiB: PY_STACK_SIZE
(256 KiB) is the size to make their scheduler with. A body's recursion
limit is capped at what its stack holds (recursion_limit on its handle), so
deep recursion ends in RecursionError rather than on the guard page.
"""
import errno as _errno
import functools
import os
import threading

import numpy as np

from ._handle import (INT64_MAX, INT64_MIN, UINT64_MAX, Owned, choice, counters, error, flag, guarded, integer,
                      reader, word)
from ._yfcore import ffi, lib
from . import _yfpy

__all__ = [
    "Scheduler", "Coroutine", "PyCoroutine", "CoroutineExit", "DEMOS", "STATES", "TRACE_DTYPE",
    "PY_STACK_SIZE", "yield_", "block", "current", "sleep", "wait_fd",
    "build_info", "guard_regions_supported", "info",
]

# The runtime functions yfcore._yfpy calls, by address: it cannot link the
# cffi module (loaded RTLD_LOCAL), and must not call it through cffi (which
# releases the GIL around each call).
_yfpy.bind({name: int(ffi.cast("uintptr_t", ffi.addressof(lib, name))) for name in (
    "yf_co_create", "yf_co_resume", "yf_co_yield", "yf_co_block", "yf_co_wake", "yf_co_token",
    "yf_co_current", "yf_co_id", "yf_co_state", "yf_co_cancel", "yf_co_detach", "yf_sched_run",
    "yf_sched_usable_stack", "yf_sleep_ms", "yf_wait_fd", "yf_loop_run", "yf_loop_set_idle")})

CoroutineExit = _yfpy.CoroutineExit
# The stack size Python bodies are meant to run with: CPython's default
# recursion limit (1000) of C-heavy recursion fits in it with room to spare
# (see csrc/py/pybody.c, BYTES_PER_LEVEL).
PY_STACK_SIZE = 262144
# Times close() raises CoroutineExit into a body that catches it and
# suspends again before it gives up (and frees nothing).
_UNWIND_TRIES = _yfpy.UNWIND_TRIES

# Inside a Python body: C built-ins, called with the GIL held throughout.
yield_ = _yfpy.yield_
block = _yfpy.block


# The running Python coroutine's handle (a PyCoroutine), or None outside one.
current = _yfpy.current


def sleep(ms: int) -> None:
    """From a Python body run by a Loop: sleep at least ms milliseconds."""
    _yfpy.sleep(integer("ms", ms, 0, lib.YF_TIMEOUT_MAX_MS))


def wait_fd(fd, events: int = 1, timeout_ms: int = -1) -> int:
    """From a Python body run by a Loop: wait until fd (an int or an object
    with fileno()) is ready for events (yfcore.loop.READ | WRITE) or
    timeout_ms passes (< 0: forever); returns the ready events, 0 on timeout."""
    from ._handle import fileno
    if isinstance(events, bool) or not isinstance(events, int) or events not in (1, 4, 5):
        raise ValueError(f"events must be READ (1), WRITE (4) or both (5), got {events!r}")
    timeout_ms = integer("timeout_ms", timeout_ms, -1, lib.YF_TIMEOUT_MAX_MS)
    return _yfpy.wait_fd(fileno("fd", fd), events, timeout_ms)

STATES = {lib.YF_NEW: "new", lib.YF_READY: "ready", lib.YF_RUNNING: "running",
          lib.YF_BLOCKED: "blocked", lib.YF_DONE: "done"}
REASONS = {lib.YF_REASON_RESUME: "resume", lib.YF_REASON_YIELD: "yield",
           lib.YF_REASON_BLOCK: "block", lib.YF_REASON_EXIT: "exit"}

# Built-in C bodies: name -> (function, what its integer argument means).
DEMOS = {
    "yield_n": (lib.yf_demo_yield_n, "yields n times, returns n"),
    "use_stack": (lib.yf_demo_use_stack, "touches n bytes of stack, yields once"),
    "block_once": (lib.yf_demo_block_once, "blocks once, returns the wake value"),
    "fp_round": (lib.yf_demo_fp_round, "sets rounding mode n (0-3), yields, returns its MXCSR"),
}



def _frame_slots() -> tuple:
    table, out = lib.yf_frame_slots(), []
    while table[len(out)].name != ffi.NULL:
        slot = table[len(out)]
        out.append((ffi.string(slot.name).decode(), slot.offset, slot.size))
    return tuple(out)


# (name, byte offset, size) of each slot of a saved frame, as the C runtime lays it.
FRAME_SLOTS = _frame_slots()
TRACE_DTYPE = np.dtype([("t_ns", "<u8"), ("from_id", "<u8"), ("to_id", "<u8"), ("reason", "<u8")])

# Bytes kept free below a use_stack body's array for its own frames and the
# calls it makes (yield, the switch): asking for more would overflow.
_STACK_MARGIN = 2048
# The largest trace ring trace() accepts (records of 32 bytes: 8 GiB).
_TRACE_MAX = 2**28


class Scheduler(Owned):
    """A scheduler of coroutines (C or Python bodies) with pooled, guarded stacks.

    stack_size: bytes per stack (guard page included), a power of two between
    16 KiB and 256 MiB. fpfast: switches skip the FP control state (coroutines
    may change it only through the runtime). guard: "auto" (guard regions where
    the kernel has them, else mprotect), "mprotect", or "none".

    The thread that makes a scheduler owns it: it and its coroutines and loop
    are used from that thread only (RuntimeError elsewhere). See yfcore._handle.
    """

    _what = "scheduler"

    def __init__(self, stack_size: int = 65536, *, fpfast: bool = False, guard: str = "auto"):
        self._fresh()
        lo, hi = lib.YF_STACK_MIN, lib.YF_STACK_MAX
        if isinstance(stack_size, (bool, np.bool_)) or not isinstance(stack_size, (int, np.integer)):
            raise TypeError(f"stack_size must be an int, got {type(stack_size).__name__}")
        stack_size = int(stack_size)
        if not lo <= stack_size <= hi or stack_size & (stack_size - 1):
            raise ValueError(f"stack_size must be a power of two between {lo} and {hi}, got {stack_size}")
        guards = {"auto": 0, "mprotect": lib.YF_SCHED_GUARD_MPROTECT, "none": lib.YF_SCHED_NOGUARD}
        flags = guards[choice("guard", guard, guards)] | (lib.YF_SCHED_FPFAST if flag("fpfast", fpfast) else 0)
        s = lib.yf_sched_new(stack_size, flags)
        if s == ffi.NULL:
            raise error("yf_sched_new")
        self._loop = None       # the Loop attached to it, if any (held: see _attach_loop)
        self._trace_cap = 0     # records the trace ring holds at most
        self._py = False        # has had a Python body: every resume goes through _yfpy
        self._addr = int(ffi.cast("uintptr_t", s))
        self._open(s)

    def _before_close(self) -> None:
        # Python bodies are unwound first: CoroutineExit is raised in each at
        # its suspension point and it runs to its end (finally blocks, with
        # blocks), so no Python frame is left on a stack that is freed.
        if self._py:
            self._unwind_all()
        # The loop's wheel and fd table link records on coroutine stacks:
        # it goes first, while those stacks are still mapped.
        if self._loop is not None:
            self._loop._close_with_scheduler()
        self._loop = None

    def _destroy(self, s) -> None:
        if lib.yf_sched_free(s) != 0:
            raise error("yf_sched_free")

    def _attach_loop(self, lp) -> None:
        # Held, not weakly: a loop collected while coroutines wait on it
        # could not be freed, and would outlive this scheduler in C's
        # one-loop-per-scheduler registry. Loop.close() lets go of it.
        self._loop = lp

    @property
    def loop(self):
        """The open Loop attached to this scheduler, or None."""
        return self._loop

    def _detach_loop(self, lp) -> None:
        if self._loop is lp:
            self._loop = None

    def _unwind_all(self) -> None:
        # Also reached from __del__, on whatever thread collects: bodies run
        # only on the owner thread, so elsewhere the scheduler is left alone.
        if threading.get_ident() != self._owner:
            raise RuntimeError(self._foreign_message())
        if _yfpy.current() is not None or lib.yf_co_current() != ffi.NULL:
            raise RuntimeError("close() of a scheduler from inside a coroutine: nothing was freed")
        stuck = {}
        while True:
            live = [b for b in _yfpy.live(self._addr) if b.id not in stuck]
            if not live:
                break
            for b in live:
                if not _yfpy.Body.unwind(b, _UNWIND_TRIES):
                    stuck[b.id] = b
        if stuck:
            raise RuntimeError(
                f"coroutine(s) {sorted(stuck)} did not end when CoroutineExit was raised in them "
                f"{_UNWIND_TRIES} times (they catch it and suspend again): nothing was freed, the "
                "scheduler stays open")

    @guarded
    def spawn(self, body, *args, **kwargs) -> "Coroutine":
        """A new coroutine, ready to run: body is a Python callable, called
        as body(*args, **kwargs) on the coroutine's own stack (a
        PyCoroutine is returned), or a str naming a built-in C body (see
        DEMOS) with one integer argument `arg`."""
        if not isinstance(body, str):
            if not callable(body):
                raise TypeError(f"body must be a Python callable or a str naming a built-in C body "
                                f"({', '.join(DEMOS)}), got {type(body).__name__}")
            self._py = True
            return _yfpy.spawn(PyCoroutine, self._addr, self, body, args, kwargs or None)
        if len(args) + len(kwargs) > 1 or (kwargs and "arg" not in kwargs):
            raise TypeError("a built-in C body takes one integer argument: spawn(name, arg)")
        return self._spawn_c(body, kwargs["arg"] if kwargs else (args[0] if args else 0))

    def _spawn_c(self, body: str, arg: int) -> "Coroutine":
        if body not in DEMOS:
            raise ValueError(f"unknown body {body!r}; built-in bodies: {', '.join(DEMOS)}")
        if isinstance(arg, (bool, np.bool_)) or not isinstance(arg, (int, np.integer)):
            raise TypeError(f"arg must be an int, got {type(arg).__name__}")
        arg = int(arg)
        if not 0 <= arg < 2**62:
            raise ValueError(f"arg must be between 0 and 2**62, got {arg}")
        if body == "use_stack" and arg > self.usable_stack - _STACK_MARGIN:
            raise ValueError(
                f"use_stack({arg}) would overflow a {self.usable_stack}-byte stack "
                f"(at most {self.usable_stack - _STACK_MARGIN}); overflows run in a subprocess: "
                "yfcore.lab.stack_guard.overflow()"
            )
        co = lib.yf_co_create(self._h, DEMOS[body][0], ffi.cast("void *", arg))
        if co == ffi.NULL:
            if ffi.errno == _errno.ENOMEM:
                raise MemoryError("no stack could be mapped for a new coroutine (see vm.max_map_count)")
            raise error("yf_co_create")
        return Coroutine(self, lib.yf_co_id(co))

    @guarded
    def run(self) -> int:
        """Resume ready coroutines until none is ready; return the number of resumes."""
        if self._py:
            # With the GIL held throughout (Python bodies among them).
            return _yfpy.run(self._addr)
        n = lib.yf_sched_run(self._h)
        if n < 0:
            raise error("yf_sched_run")
        return n

    @guarded
    def find(self, co_id: int) -> "Coroutine":
        """The live coroutine with this id; LookupError when it never existed or was reaped."""
        if isinstance(co_id, np.integer) and not isinstance(co_id, np.bool_):
            co_id = int(co_id)
        Coroutine(self, co_id)._find()
        if self._py:
            body = next((b for b in _yfpy.live(self._addr) if b.id == co_id), None)
            if body is not None:
                return body
        return Coroutine(self, co_id)

    stack_size = reader(lib.yf_sched_stack_size, "Bytes per stack slot, guard page included.")
    usable_stack = reader(lib.yf_sched_usable_stack,
                          "Bytes a coroutine can use at least: the slot less guard page, header and cache colour.")

    @property
    @guarded
    def fpfast(self) -> bool:
        return bool(lib.yf_sched_flags(self._h) & lib.YF_SCHED_FPFAST)

    @property
    @guarded
    def guard(self) -> str:
        """"regions" (MADV_GUARD_INSTALL), "mprotect" or "none"."""
        if lib.yf_sched_flags(self._h) & lib.YF_SCHED_NOGUARD:
            return "none"
        return "regions" if lib.yf_sched_guard_regions(self._h) else "mprotect"

    counts = counters("yf_counts *", lib.yf_sched_counts,
                      ("live", "ready", "blocked", "done", "created", "switches", "stacks_pooled",
                       "stacks_mapped", "arenas"))

    @guarded
    def trace(self, capacity: int) -> None:
        """Record the last `capacity` switches (0 stops recording)."""
        capacity = word("capacity", capacity, 0, _TRACE_MAX, f"an int between 0 and {_TRACE_MAX}")
        if lib.yf_sched_trace(self._h, capacity) != 0:
            raise MemoryError(f"cannot allocate a trace ring of capacity={capacity} records")
        self._trace_cap = capacity

    @guarded
    def trace_records(self) -> np.ndarray:
        """The recorded switches, oldest first, as a structured array (TRACE_DTYPE)."""
        c = ffi.new("yf_counts *")
        lib.yf_sched_counts(self._h, c)
        # The ring holds at most its capacity, and never more than the switches made.
        buf = np.zeros(min(c.switches, self._trace_cap), dtype=TRACE_DTYPE)
        if len(buf) == 0:
            return buf
        n = lib.yf_sched_trace_read(self._h, ffi.cast("yf_trace_rec *", ffi.from_buffer(buf)), len(buf))
        return buf[:n].copy()

    @guarded
    def trim(self) -> int:
        """Give the physical pages of pooled stacks back to the kernel; return bytes released."""
        return lib.yf_sched_trim(self._h)


def _co_method(fn):
    """A Coroutine method: checked and counted as a call on its scheduler,
    with the coroutine's pointer looked up again as its first argument."""
    @functools.wraps(fn)
    def call(self, *args, **kwargs):
        sched = self.sched
        sched._enter()
        try:
            return fn(self, self._find(), *args, **kwargs)
        finally:
            sched._leave()
    return call


class Coroutine:
    """A handle on one coroutine, by id; every call looks it up again (on
    its scheduler's owner thread)."""

    __slots__ = ("sched", "id")

    def __init__(self, sched: Scheduler, co_id: int):
        self.sched = sched
        self.id = co_id

    def __repr__(self):
        try:
            state = self.state
        except LookupError:
            state = "reaped"
        except ValueError:
            state = "scheduler closed"
        except RuntimeError:
            state = "of another thread"
        return f"<Coroutine {self.id} {state}>"

    def __reduce_ex__(self, protocol):
        raise TypeError("a Coroutine cannot be pickled: it names a coroutine of a live C scheduler "
                        "in this process")

    def _find(self):
        """The C coroutine; the caller holds its scheduler (checked and counted)."""
        if not isinstance(self.id, int) or isinstance(self.id, bool) or not 0 < self.id < 2**64:
            raise LookupError(f"no coroutine with id {self.id!r}")
        co = lib.yf_co_find(self.sched._h, self.id)
        if co == ffi.NULL:
            raise LookupError(f"coroutine {self.id} does not exist (never created, or reaped)")
        return co

    @property
    @_co_method
    def state(self, co) -> str:
        return STATES[lib.yf_co_state(co)]

    @_co_method
    def resume(self, co) -> None:
        """Run the coroutine until it yields, blocks or ends."""
        if self.sched._py:
            # A scheduler with Python bodies resumes with the GIL held.
            state = lib.yf_co_state(co)
            if state > lib.YF_READY:
                raise RuntimeError(f"cannot resume coroutine {self.id}: it is {STATES[state]}")
            _yfpy.resume(int(ffi.cast("uintptr_t", co)))
            return
        if lib.yf_co_resume(co) != 0:
            raise RuntimeError(f"cannot resume coroutine {self.id}: it is {STATES[lib.yf_co_state(co)]}")

    @property
    @_co_method
    def token(self, co) -> int:
        """The token of the current block (0 unless blocked)."""
        return lib.yf_co_token(co)

    @_co_method
    def wake(self, co, token: int, value: int = 0) -> None:
        """Wake a blocked coroutine; ValueError for a stale or duplicate token."""
        token = word("token", token, 0, UINT64_MAX, "an unsigned 64-bit int")
        value = word("value", value, INT64_MIN, INT64_MAX, "a signed 64-bit int")
        if lib.yf_co_wake(co, token, value) != 0:
            raise ValueError(f"stale wake-up of coroutine {self.id}: token {token} is not its current block's "
                             f"({lib.yf_co_token(co)}, state {STATES[lib.yf_co_state(co)]})")

    @_co_method
    def cancel(self, co, status: int = -1) -> None:
        """Finish a coroutine that has not started; RuntimeError once it has."""
        status = word("status", status, INT64_MIN, INT64_MAX, "a signed 64-bit int")
        if lib.yf_co_cancel(co, status) != 0:
            raise RuntimeError(f"cannot cancel coroutine {self.id}: it has started ({STATES[lib.yf_co_state(co)]})")

    def _exit_status(self, co, get) -> int:
        """get(co, &status) of a finished coroutine (yf_co_status, yf_co_reap)."""
        out = ffi.new("intptr_t *")
        if get(co, out) != 0:
            raise RuntimeError(f"coroutine {self.id} has not finished ({STATES[lib.yf_co_state(co)]})")
        return out[0]

    @property
    @_co_method
    def status(self, co) -> int:
        """Exit status of a finished coroutine; RuntimeError before it finishes."""
        return self._exit_status(co, lib.yf_co_status)

    @_co_method
    def reap(self, co) -> int:
        """Release a finished coroutine and return its status; the id is dead afterwards."""
        return self._exit_status(co, lib.yf_co_reap)

    @property
    @_co_method
    def stack_size(self, co) -> int:
        """Usable bytes of its stack (0 once finished: the stack is back in the pool)."""
        return lib.yf_co_stack_size(co)

    @_co_method
    def stack_layout(self, co) -> dict:
        """Addresses of its stack slot: slot (= guard page), guard_end, top, slot_end."""
        out = ffi.new("uint64_t[4]")
        if lib.yf_co_stack_layout(co, out) != 0:
            raise RuntimeError(f"coroutine {self.id} has no stack ({STATES[lib.yf_co_state(co)]})")
        return dict(zip(("slot", "guard_end", "top", "slot_end"), out))

    @_co_method
    def saved_frame(self, co) -> dict:
        """The frame its last switch left on its stack, slot by slot (see ctx_x86_64.S), with "sp"."""
        sp = ffi.new("uint64_t *")
        out = ffi.new("uint64_t[8]")
        if lib.yf_co_saved_frame(co, sp, out) != 0:
            raise RuntimeError(f"coroutine {self.id} has no saved frame ({STATES[lib.yf_co_state(co)]})")
        raw = bytes(ffi.buffer(out))
        frame = {"sp": sp[0]}
        frame.update((name, int.from_bytes(raw[off:off + size], "little")) for name, off, size in FRAME_SLOTS)
        return frame

    @property
    @_co_method
    def stack_hwm(self, co) -> int:
        """Bytes of its stack ever touched (page-granular high-water mark)."""
        return lib.yf_co_stack_hwm(co)


class PyCoroutine(_yfpy.Body):
    """The handle of a coroutine whose body is a Python callable, and its
    record: the one object Scheduler.spawn, Scheduler.find and current() give.

    While the body is blocked in yfcore.block() only a handle can wake it:
    when the last reference to it goes, the body is unwound (CoroutineExit
    raised at its block(), its finally blocks run). result() works after
    the scheduler is closed. Used from the scheduler's owner thread only."""

    __slots__ = ()

    # In C (yfcore._yfpy.Body): resume(), wake(value=None), frame() as the
    # `frame` property below, id, switches, recursion_limit, in_loop, blocked.
    sched = property(lambda self: self.owner, doc="The Scheduler that runs it.")
    frame = property(_yfpy.Body.frame, doc=(
        "The Python frame it is suspended in (None unless suspended): inspect f_code, f_lineno, "
        "f_locals and f_back while it waits."))
    _find = Coroutine._find
    __repr__ = Coroutine.__repr__
    token = Coroutine.token
    stack_size = Coroutine.stack_size
    stack_layout = Coroutine.stack_layout
    saved_frame = Coroutine.saved_frame
    stack_hwm = Coroutine.stack_hwm

    def __reduce_ex__(self, protocol):
        raise TypeError("a PyCoroutine cannot be pickled: it is a Python body running on a C stack")

    @property
    def state(self) -> str:
        return STATES[self.cstate]

    @property
    def done(self) -> bool:
        return self.cstate == lib.YF_DONE

    def wake(self, value=None) -> None:
        """Make it ready again after yfcore.block(), which then returns value."""
        _yfpy.Body.wake(self, value)

    def result(self):
        """Its return value, or raise the exception that ended it; RuntimeError before it ends."""
        failed, value = self.outcome()
        if failed:
            raise value
        return value

    def cancel(self, status: int = -1) -> None:
        """Finish it before it starts (result() then raises CoroutineExit); RuntimeError once started."""
        if self.cstate != lib.YF_NEW:
            raise RuntimeError(f"cannot cancel coroutine {self.id}: it has started ({self.state})")
        _yfpy.Body.unwind(self, 1)

    def unwind(self) -> bool:
        """Raise CoroutineExit in it at its suspension point and run it to its
        end (finally blocks run); True when it ended."""
        return _yfpy.Body.unwind(self, _UNWIND_TRIES)

    @property
    def status(self) -> int:
        """1 when it ended with an exception, else 0; RuntimeError before it ends."""
        return int(self.outcome()[0])

    def reap(self) -> int:
        """The status; the runtime reaps a Python body's coroutine itself when it ends."""
        return self.status


def build_info() -> str:
    """Architecture, debug flag and compiler flags the runtime was built with."""
    return ffi.string(lib.yf_build_info()).decode()


def guard_regions_supported() -> bool:
    """True when this kernel has MADV_GUARD_INSTALL guard regions (Linux 6.13+)."""
    return bool(lib.yf_guard_regions_supported())


def info() -> dict:
    """Facts about this build and kernel, as `yfcore info` prints them."""
    from .labkernels import boost_context_path  # the baseline the benchmarks load

    boost = boost_context_path()
    try:
        with open("/proc/sys/vm/max_map_count") as f:
            max_map_count = int(f.read())
    except OSError:
        max_map_count = None
    return {
        "build": build_info(),
        "guards": ("MADV_GUARD_INSTALL guard regions (one mapping per arena)" if guard_regions_supported()
                   else "mprotect(PROT_NONE) fallback: two mappings per stack; this kernel lacks "
                        "MADV_GUARD_INSTALL (Linux 6.13+)"),
        "vm.max_map_count": max_map_count,
        "page_size": os.sysconf("SC_PAGE_SIZE"),
        "boost_context": boost or "absent (install libboost-context-dev to compare with fcontext)",
    }
