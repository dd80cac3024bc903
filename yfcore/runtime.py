"""Thin Pythonic wrappers over the C coroutine runtime (yfcore._yfcore).

Python never runs inside a coroutine: bodies are C functions (the built-in
demo bodies below), and Python drives the scheduler from the root context.
Coroutines are held by id, never by pointer, so a stale handle raises
LookupError instead of touching freed memory.
"""
import ctypes.util
import errno as _errno
import functools
import os

import numpy as np

from ._yfcore import ffi, lib

__all__ = [
    "Scheduler", "Coroutine", "DEMOS", "STATES", "TRACE_DTYPE",
    "build_info", "guard_regions_supported", "boost_context_path", "info",
]

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

TRACE_DTYPE = np.dtype([("t_ns", "<u8"), ("from_id", "<u8"), ("to_id", "<u8"), ("reason", "<u8")])

# Bytes kept free below a use_stack body's array for its own frames and the
# calls it makes (yield, the switch): asking for more would overflow.
_STACK_MARGIN = 2048


def _oserror(what: str) -> OSError:
    e = ffi.errno
    return OSError(e, f"{what}: {os.strerror(e)}")


class Scheduler:
    """A scheduler of C-bodied coroutines with pooled, guarded stacks.

    stack_size: bytes per stack (guard page included), a power of two between
    16 KiB and 256 MiB. fpfast: switches skip the FP control state (coroutines
    may change it only through the runtime). guard: "auto" (guard regions where
    the kernel has them, else mprotect), "mprotect", or "none".
    """

    def __init__(self, stack_size: int = 65536, *, fpfast: bool = False, guard: str = "auto"):
        if not isinstance(stack_size, int) or isinstance(stack_size, bool):
            raise TypeError(f"stack_size must be an int, got {type(stack_size).__name__}")
        lo, hi = lib.YF_STACK_MIN, lib.YF_STACK_MAX
        if not lo <= stack_size <= hi or stack_size & (stack_size - 1):
            raise ValueError(f"stack_size must be a power of two between {lo} and {hi}, got {stack_size}")
        guards = {"auto": 0, "mprotect": lib.YF_SCHED_GUARD_MPROTECT, "none": lib.YF_SCHED_NOGUARD}
        if guard not in guards:
            raise ValueError(f"guard must be one of {sorted(guards)}, got {guard!r}")
        flags = guards[guard] | (lib.YF_SCHED_FPFAST if fpfast else 0)
        s = lib.yf_sched_new(stack_size, flags)
        if s == ffi.NULL:
            raise _oserror("yf_sched_new")
        self._s = s

    def _ptr(self):
        if self._s is None:
            raise ValueError("the scheduler is closed")
        return self._s

    def close(self) -> None:
        """Free every coroutine and stack. Idempotent."""
        if self._s is not None:
            if lib.yf_sched_free(self._s) != 0:
                raise _oserror("yf_sched_free")
            self._s = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        if getattr(self, "_s", None) is not None:
            self.close()

    def spawn(self, body: str, arg: int = 0) -> "Coroutine":
        """Create a coroutine running the built-in C body `body` (see DEMOS) with integer `arg`."""
        s = self._ptr()
        if body not in DEMOS:
            raise ValueError(f"unknown body {body!r}; built-in bodies: {', '.join(DEMOS)}")
        if not isinstance(arg, int) or isinstance(arg, bool):
            raise TypeError(f"arg must be an int, got {type(arg).__name__}")
        if not 0 <= arg < 2**62:
            raise ValueError(f"arg must be between 0 and 2**62, got {arg}")
        if body == "use_stack" and arg > self.usable_stack - _STACK_MARGIN:
            raise ValueError(
                f"use_stack({arg}) would overflow a {self.usable_stack}-byte stack "
                f"(at most {self.usable_stack - _STACK_MARGIN}); overflows run in a subprocess: "
                "yfcore.lab.guards.overflow()"
            )
        co = lib.yf_co_create(s, DEMOS[body][0], ffi.cast("void *", arg))
        if co == ffi.NULL:
            if ffi.errno == _errno.ENOMEM:
                raise MemoryError("no stack could be mapped for a new coroutine (see vm.max_map_count)")
            raise _oserror("yf_co_create")
        return Coroutine(self, lib.yf_co_id(co))

    def run(self) -> int:
        """Resume ready coroutines until none is ready; return the number of resumes."""
        n = lib.yf_sched_run(self._ptr())
        if n < 0:
            raise _oserror("yf_sched_run")
        return n

    def find(self, co_id: int) -> "Coroutine":
        """The live coroutine with this id; LookupError when it never existed or was reaped."""
        Coroutine(self, co_id)._ptr()
        return Coroutine(self, co_id)

    @property
    def stack_size(self) -> int:
        return lib.yf_sched_stack_size(self._ptr())

    @property
    def usable_stack(self) -> int:
        """Bytes a coroutine can use at least: the slot less guard page, header and cache colour."""
        return self.stack_size - os.sysconf("SC_PAGE_SIZE") - 64 - min(64, self.stack_size // 1024) * 64

    @property
    def fpfast(self) -> bool:
        return bool(lib.yf_sched_flags(self._ptr()) & lib.YF_SCHED_FPFAST)

    @property
    def guard(self) -> str:
        """"regions" (MADV_GUARD_INSTALL), "mprotect" or "none"."""
        s = self._ptr()
        if lib.yf_sched_flags(s) & lib.YF_SCHED_NOGUARD:
            return "none"
        return "regions" if lib.yf_sched_guard_regions(s) else "mprotect"

    def counts(self) -> dict:
        """live, ready, blocked, done, created, switches, stacks_pooled, stacks_mapped, arenas."""
        c = ffi.new("yf_counts *")
        lib.yf_sched_counts(self._ptr(), c)
        return {k: getattr(c, k) for k in ("live", "ready", "blocked", "done", "created",
                                           "switches", "stacks_pooled", "stacks_mapped", "arenas")}

    def trace(self, capacity: int) -> None:
        """Record the last `capacity` switches (0 stops recording)."""
        if not isinstance(capacity, int) or capacity < 0 or capacity > 2**28:
            raise ValueError(f"capacity must be an int between 0 and 2**28, got {capacity!r}")
        if lib.yf_sched_trace(self._ptr(), capacity) != 0:
            raise MemoryError(f"cannot allocate a trace ring of {capacity} records")

    def trace_records(self) -> np.ndarray:
        """The recorded switches, oldest first, as a structured array (TRACE_DTYPE)."""
        s = self._ptr()
        counts = self.counts()
        buf = np.zeros(min(counts["switches"], 2**28), dtype=TRACE_DTYPE)
        n = lib.yf_sched_trace_read(s, ffi.cast("yf_trace_rec *", ffi.from_buffer(buf)), len(buf))
        return buf[:n].copy()

    def trim(self) -> int:
        """Give the physical pages of pooled stacks back to the kernel; return bytes released."""
        return lib.yf_sched_trim(self._ptr())


class Coroutine:
    """A handle on one coroutine, by id; every call looks it up again."""

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
        return f"<Coroutine {self.id} {state}>"

    def _ptr(self):
        if not isinstance(self.id, int) or not 0 < self.id < 2**64:
            raise LookupError(f"no coroutine with id {self.id!r}")
        co = lib.yf_co_find(self.sched._ptr(), self.id)
        if co == ffi.NULL:
            raise LookupError(f"coroutine {self.id} does not exist (never created, or reaped)")
        return co

    @property
    def state(self) -> str:
        return STATES[lib.yf_co_state(self._ptr())]

    def resume(self) -> None:
        """Run the coroutine until it yields, blocks or ends."""
        co = self._ptr()
        if lib.yf_co_resume(co) != 0:
            raise RuntimeError(f"cannot resume coroutine {self.id}: it is {self.state}")

    @property
    def token(self) -> int:
        """The token of the current block (0 unless blocked)."""
        return lib.yf_co_token(self._ptr())

    def wake(self, token: int, value: int = 0) -> None:
        """Wake a blocked coroutine; ValueError for a stale or duplicate token."""
        co = self._ptr()
        if not isinstance(token, int) or not 0 <= token < 2**64:
            raise ValueError(f"token must be an unsigned 64-bit int, got {token!r}")
        if not isinstance(value, int) or not -(2**63) <= value < 2**63:
            raise ValueError(f"value must be a signed 64-bit int, got {value!r}")
        if lib.yf_co_wake(co, token, value) != 0:
            raise ValueError(f"stale wake-up of coroutine {self.id}: token {token} is not its current block's "
                             f"({lib.yf_co_token(co)}, state {self.state})")

    def cancel(self, status: int = -1) -> None:
        """Finish a coroutine that has not started; RuntimeError once it has."""
        co = self._ptr()
        if not isinstance(status, int) or isinstance(status, bool) or not -(2**63) <= status < 2**63:
            raise ValueError(f"status must be a signed 64-bit int, got {status!r}")
        if lib.yf_co_cancel(co, status) != 0:
            raise RuntimeError(f"cannot cancel coroutine {self.id}: it has started ({self.state})")

    @property
    def status(self) -> int:
        """Exit status of a finished coroutine; RuntimeError before it finishes."""
        out = ffi.new("intptr_t *")
        if lib.yf_co_status(self._ptr(), out) != 0:
            raise RuntimeError(f"coroutine {self.id} has not finished ({self.state})")
        return out[0]

    def reap(self) -> int:
        """Release a finished coroutine and return its status; the id is dead afterwards."""
        out = ffi.new("intptr_t *")
        if lib.yf_co_reap(self._ptr(), out) != 0:
            raise RuntimeError(f"coroutine {self.id} has not finished ({self.state})")
        return out[0]

    @property
    def stack_size(self) -> int:
        """Usable bytes of its stack (0 once finished: the stack is back in the pool)."""
        return lib.yf_co_stack_size(self._ptr())

    def stack_layout(self) -> dict:
        """Addresses of its stack slot: slot (= guard page), guard_end, top, slot_end."""
        out = ffi.new("uint64_t[4]")
        if lib.yf_co_stack_layout(self._ptr(), out) != 0:
            raise RuntimeError(f"coroutine {self.id} has no stack ({self.state})")
        return dict(zip(("slot", "guard_end", "top", "slot_end"), out))

    def saved_frame(self) -> dict:
        """The frame its last switch left on its stack, slot by slot (see ctx_x86_64.S), with "sp"."""
        sp = ffi.new("uint64_t *")
        out = ffi.new("uint64_t[8]")
        if lib.yf_co_saved_frame(self._ptr(), sp, out) != 0:
            raise RuntimeError(f"coroutine {self.id} has no saved frame ({self.state})")
        words = list(out)
        frame = {"sp": sp[0], "mxcsr": words[0] & 0xFFFFFFFF, "x87cw": (words[0] >> 32) & 0xFFFF}
        frame.update(zip(("r12", "r13", "r14", "r15", "rbx", "rbp", "rip"), words[1:]))
        return frame

    @property
    def stack_hwm(self) -> int:
        """Bytes of its stack ever touched (page-granular high-water mark)."""
        return lib.yf_co_stack_hwm(self._ptr())


def build_info() -> str:
    """Architecture, debug flag and compiler flags the runtime was built with."""
    return ffi.string(lib.yf_build_info()).decode()


def guard_regions_supported() -> bool:
    """True when this kernel has MADV_GUARD_INSTALL guard regions (Linux 6.13+)."""
    return bool(lib.yf_guard_regions_supported())


@functools.lru_cache(maxsize=None)
def boost_context_path() -> str | None:
    """The Boost.Context shared library the benchmarks load, or None when absent."""
    name = ctypes.util.find_library("boost_context")
    if name and lib.yf_bench_fcontext_load(name.encode()) == 0:
        return name
    return None


def info() -> dict:
    """Facts about this build and kernel, as `yfcore info` prints them."""
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
