"""The event loop over a Scheduler: C-bodied coroutines wait for fds and time.

Python drives the loop from the root context (it never runs inside a
coroutine), starts the built-in loop bodies of csrc/loopdemo.c with validated
arguments, and reads their results. Timers never fire early: a deadline is
rounded up to the loop's next 1 ms tick.
"""
import errno as _errno
import os
import stat

import numpy as np

from ._handle import Owned, borrow, error, fileno, guarded, integer
from ._yfcore import ffi, lib
from . import _yfpy
from .runtime import Coroutine, Scheduler

__all__ = ["Loop", "Task", "LOOP_DEMOS", "EVENTS", "TIMEOUT_MAX_MS"]

EVENTS = {"r": lib.YF_READ, "w": lib.YF_WRITE, "rw": lib.YF_READ | lib.YF_WRITE}
_EVENT_NAMES = {v: k for k, v in EVENTS.items()}

# yf_wait_fd and yf_sleep_ms refuse longer timeouts (EINVAL). The loop
# bodies take one packed argument (lab.h YF_DEMO_*), kept below 2**62 like
# every body argument: the wait body has 34 bits for timeout + 1.
TIMEOUT_MAX_MS = lib.YF_TIMEOUT_MAX_MS
_WAIT_TIMEOUT_MAX_MS = 2**(62 - lib.YF_DEMO_WAIT_TIMEOUT_SHIFT) - 2
_FD_MAX = 2**lib.YF_DEMO_FD_BITS - 1
_MSG_MAX = lib.YF_DEMO_MSG_MAX
_COUNT_MAX = 2**(lib.YF_DEMO_CLIENT_SIZE_SHIFT - lib.YF_DEMO_CLIENT_N_SHIFT) - 1

LOOP_DEMOS = {
    "sleep": "sleep(ms): yf_sleep_ms; result: ns measured asleep",
    "echo": "echo(sock): echoes until EOF, then shuts down its writing side; result: bytes echoed",
    "client": "client(sock, n, size): n messages of size bytes, each echo checked, then EOF; result: n",
    "wait": "wait(fd, events, timeout_ms): yf_wait_fd; result: (events, ns waited), events 0 on timeout",
    "stop": "stop(ms): sleeps ms, then stops the loop; result: 0",
}

_COUNT_FIELDS = ("iterations", "events", "timers_fired", "wakeups", "waiting_fds", "sleeping", "resumes")


def _int(name: str, value, lo: int, hi: int) -> int:
    return integer(name, value, lo, hi)


def _timeout(name: str, value, hi: int) -> int:
    """None (forever) or ms in [0, hi]; returned as -1 for forever."""
    if value is None:
        return -1
    return _int(name, value, 0, hi)


def _fd(value, *, socket: bool = False) -> int:
    """An open fd (an int or an object with fileno()), checked with fstat."""
    fd = fileno("fd", value, _FD_MAX)
    try:
        mode = os.fstat(fd).st_mode
    except OSError as e:
        raise OSError(e.errno, f"fd {fd}: {os.strerror(e.errno)}") from None
    if socket and not stat.S_ISSOCK(mode):
        raise ValueError(f"fd {fd} is not a socket")
    return fd


def _events(value) -> int:
    if isinstance(value, str):
        if value not in EVENTS:
            raise ValueError(f"events must be one of {sorted(EVENTS)}, got {value!r}")
        return EVENTS[value]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
            or int(value) not in _EVENT_NAMES:
        raise ValueError(f"events must be one of {sorted(EVENTS)} or {sorted(_EVENT_NAMES)}, got {value!r}")
    return int(value)


class Task:
    """A loop body's coroutine and how to read its result."""

    __slots__ = ("coroutine", "body", "_decode", "_loop")

    def __init__(self, coroutine: Coroutine, body: str, decode, loop):
        self.coroutine = coroutine
        self.body = body
        self._decode = decode
        self._loop = loop

    def __repr__(self):
        return f"<Task {self.body} {self.coroutine!r}>"

    def __reduce_ex__(self, protocol):
        raise TypeError("a Task cannot be pickled: it names a coroutine of a live C scheduler in this process")

    @property
    def id(self) -> int:
        return self.coroutine.id

    @property
    def state(self) -> str:
        return self.coroutine.state

    def result(self):
        """Reap the finished coroutine and return its decoded result.

        OSError(errno) when the body failed; RuntimeError before it finishes;
        LookupError once reaped.
        """
        status = self.coroutine.reap()
        self._loop._keep.pop(self.coroutine.id, None)
        if status < 0:
            e = -status
            raise error(f"{self.body} body", e)
        return self._decode(status)


class Loop(Owned):
    """The epoll event loop of a Scheduler (one loop per scheduler).

    run() resumes the scheduler's ready coroutines, then sleeps in epoll_wait
    until an fd is ready or a timer is due, until no coroutine is left
    unfinished or stop() is called.

    The loop belongs to its scheduler's owner thread, and holds the objects
    (sockets) whose fds its coroutines use until those coroutines finish, so
    an fd is never closed and reused under a waiting coroutine by the garbage
    collector. Closing the scheduler closes its loop first.
    """

    _what = "loop"

    def __init__(self, sched: Scheduler):
        self._fresh()
        if not isinstance(sched, Scheduler):
            raise TypeError(f"sched must be a yfcore.runtime.Scheduler, got {type(sched).__name__}")
        with borrow(sched) as s:
            lp = lib.yf_loop_new(s)
        if lp == ffi.NULL:
            if ffi.errno == _errno.EEXIST:
                raise ValueError("this scheduler already has a loop (one loop per scheduler)")
            if ffi.errno == _errno.ENOMEM:
                raise MemoryError("cannot allocate an event loop")
            raise error("yf_loop_new")
        self.sched = sched
        self._owner, self._owner_name = sched._owner, sched._owner_name
        self._keep = {}          # coroutine id -> the object whose fd it uses
        self._open(lp)
        sched._attach_loop(self)

    # A call on the loop is also a call on its scheduler (thread, liveness).
    def _enter(self):
        if self._h is None:
            raise ValueError(self._closed_message())
        self.sched._enter()
        self._calls += 1
        return self._h

    def _leave(self):
        self._calls -= 1
        self.sched._leave()

    def _destroy(self, lp) -> None:
        if lib.yf_loop_free(lp) != 0:
            e = ffi.errno
            raise error("yf_loop_free", e, "coroutines still wait on the loop: run it to the end first"
                        if e == _errno.EBUSY else None)
        self._keep.clear()
        self.sched._detach_loop(self)

    def close(self) -> None:
        """Free the loop. OSError(EBUSY) while coroutines wait on it. Idempotent."""
        if self._h is None:
            self._closed_why = None
            return
        super().close()

    def _close_with_scheduler(self) -> None:
        """From Scheduler.close: free the loop first (OSError(EBUSY), and the
        scheduler stays open, while coroutines wait on it)."""
        if self._h is None:
            return
        if self._calls:
            raise RuntimeError("close() of a scheduler while its loop is running: nothing was freed")
        try:
            self._destroy(self._h)
        except OSError as e:
            raise OSError(e.errno, "cannot close the scheduler: coroutines wait on its loop "
                                   "(run the loop until they finish first)") from None
        self._h = None
        self._closed_why = "the loop's scheduler is closed"

    @guarded
    def run(self) -> int:
        """Run until no coroutine is unfinished or stop(); return the number of resumes.

        OSError(EDEADLK) when unfinished coroutines remain but none waits on
        the loop (nothing could ever wake them). A signal interrupts the
        wait: its Python handler runs, and unless it raises, the loop goes on.
        """
        lp = self._h
        try:
            before = self._counts().resumes
            while True:
                if self.sched._py:
                    # Python bodies among its coroutines: run with the GIL held.
                    n = _yfpy.loop_run(int(ffi.cast("uintptr_t", lp)))
                    e = -n
                else:
                    n = lib.yf_loop_run(lp)
                    e = ffi.errno if n < 0 else 0
                if n >= 0:
                    return self._counts().resumes - before
                if e != _errno.EINTR:
                    raise error("yf_loop_run", e, "unfinished coroutines remain but none waits on the loop"
                                if e == _errno.EDEADLK else None)
                # Back in Python, pending signal handlers run before the next
                # bytecode: KeyboardInterrupt ends a run that would block forever.
        finally:
            self._release_finished()

    def _release_finished(self) -> None:
        """Drop the objects of coroutines that have finished (or were reaped)."""
        s = self.sched._h
        for co_id in [i for i in self._keep
                      if (co := lib.yf_co_find(s, i)) == ffi.NULL or lib.yf_co_state(co) == lib.YF_DONE]:
            del self._keep[co_id]

    @guarded
    def drop_fd(self, fd) -> int:
        """Call before closing fd (an int or an object with fileno()): the
        coroutines waiting on it wake at once, their waits failing with
        EBADF, and the loop forgets it. Returns how many waits failed."""
        fd = fileno("fd", fd, _FD_MAX)
        n = lib.yf_loop_drop_fd(self._h, fd)
        if n < 0:
            raise error("yf_loop_drop_fd")
        return n

    @guarded
    def stop(self) -> None:
        """Make the next run() do one non-blocking iteration and return."""
        lib.yf_loop_stop(self._h)

    @property
    @guarded
    def now(self) -> int:
        """The loop's cached CLOCK_MONOTONIC time in ns, refreshed once per iteration."""
        return lib.yf_loop_now(self._h)

    def _counts(self):
        c = ffi.new("yf_loop_counts *")
        lib.yf_loop_counts_get(self._h, c)
        return c

    @guarded
    def counts(self) -> dict:
        """iterations, events, timers_fired, wakeups, waiting_fds, sleeping, resumes."""
        c = self._counts()
        return {k: getattr(c, k) for k in _COUNT_FIELDS}

    @guarded
    def spawn(self, body: str, *args) -> Task:
        """Start the built-in loop body `body` (see LOOP_DEMOS) with validated arguments."""
        if not isinstance(body, str):
            raise TypeError(f"body must be a str naming a loop body ({', '.join(LOOP_DEMOS)}), "
                            f"got {type(body).__name__}")
        if body not in LOOP_DEMOS:
            raise ValueError(f"unknown loop body {body!r}; built-in loop bodies: {', '.join(LOOP_DEMOS)}")
        nargs = {"sleep": 1, "echo": 1, "client": 3, "wait": 3, "stop": 1}[body]
        if len(args) != nargs:
            raise TypeError(f"{body} takes {nargs} argument(s): {LOOP_DEMOS[body]}")
        keep = None
        if body == "sleep":
            fn, arg, decode = lib.yf_demo_sleep, _int("ms", args[0], 0, TIMEOUT_MAX_MS), int
        elif body == "stop":
            fn, arg, decode = lib.yf_demo_loop_stop, _int("ms", args[0], 0, TIMEOUT_MAX_MS), int
        elif body == "echo":
            fn, arg, decode, keep = lib.yf_demo_echo, _fd(args[0], socket=True), int, args[0]
        elif body == "client":
            fd = _fd(args[0], socket=True)
            n = _int("n", args[1], 0, _COUNT_MAX)
            size = _int("size", args[2], 1, _MSG_MAX)
            arg = fd | n << lib.YF_DEMO_CLIENT_N_SHIFT | size << lib.YF_DEMO_CLIENT_SIZE_SHIFT
            fn, decode, keep = lib.yf_demo_client, int, args[0]
        else:
            fd = _fd(args[0])
            events = _events(args[1])
            timeout = _timeout("timeout_ms", args[2], _WAIT_TIMEOUT_MAX_MS)
            arg = fd | events << lib.YF_DEMO_WAIT_EVENTS_SHIFT | (timeout + 1) << lib.YF_DEMO_WAIT_TIMEOUT_SHIFT
            fn, keep = lib.yf_demo_wait, args[0]

            def decode(status):
                bits = lib.YF_DEMO_WAIT_EVENTS_BITS
                return status & ((1 << bits) - 1), status >> bits
        co = lib.yf_co_create(self.sched._h, fn, ffi.cast("void *", arg))
        if co == ffi.NULL:
            if ffi.errno == _errno.ENOMEM:
                raise MemoryError("no stack could be mapped for a new coroutine (see vm.max_map_count)")
            raise error("yf_co_create")
        co_id = lib.yf_co_id(co)
        if keep is not None and not isinstance(keep, (int, np.integer)):
            self._keep[co_id] = keep
        return Task(Coroutine(self.sched, co_id), body, decode, self)
