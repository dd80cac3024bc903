"""The event loop over a Scheduler: C-bodied coroutines wait for fds and time.

Python drives the loop from the root context (it never runs inside a
coroutine), starts the built-in loop bodies of csrc/loopdemo.c with validated
arguments, and reads their results. Timers never fire early: a deadline is
rounded up to the loop's next 1 ms tick.
"""
import errno as _errno
import os
import stat

from ._yfcore import ffi, lib
from .runtime import Coroutine, Scheduler

__all__ = ["Loop", "Task", "LOOP_DEMOS", "EVENTS", "TIMEOUT_MAX_MS"]

EVENTS = {"r": lib.YF_READ, "w": lib.YF_WRITE, "rw": lib.YF_READ | lib.YF_WRITE}
_EVENT_NAMES = {v: k for k, v in EVENTS.items()}

# yf_wait_fd and yf_sleep_ms refuse longer timeouts (EINVAL); the wait
# body's packed argument has 34 bits for the timeout.
TIMEOUT_MAX_MS = 10**12
_WAIT_TIMEOUT_MAX_MS = 2**34 - 2
_FD_MAX = 2**24 - 1
_MSG_MAX = 16384
_COUNT_MAX = 2**24 - 1

LOOP_DEMOS = {
    "sleep": "sleep(ms): yf_sleep_ms; result: ns measured asleep",
    "echo": "echo(sock): echoes until EOF, then shuts down its writing side; result: bytes echoed",
    "client": "client(sock, n, size): n messages of size bytes, each echo checked, then EOF; result: n",
    "wait": "wait(fd, events, timeout_ms): yf_wait_fd; result: (events, ns waited), events 0 on timeout",
    "stop": "stop(ms): sleeps ms, then stops the loop; result: 0",
}

_COUNT_FIELDS = ("iterations", "events", "timers_fired", "wakeups", "waiting_fds", "sleeping", "resumes")


def _int(name: str, value, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def _timeout(name: str, value, hi: int) -> int:
    """None (forever) or ms in [0, hi]; returned as -1 for forever."""
    if value is None:
        return -1
    return _int(name, value, 0, hi)


def _fd(value, *, socket: bool = False) -> int:
    """An open fd (an int or an object with fileno()), checked with fstat."""
    fd = value.fileno() if hasattr(value, "fileno") else value
    if not isinstance(fd, int) or isinstance(fd, bool):
        raise TypeError(f"fd must be an int or have fileno(), got {type(value).__name__}")
    if not 0 <= fd <= _FD_MAX:
        raise ValueError(f"fd must be between 0 and {_FD_MAX}, got {fd}")
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
    if isinstance(value, bool) or value not in _EVENT_NAMES:
        raise ValueError(f"events must be one of {sorted(EVENTS)} or {sorted(_EVENT_NAMES)}, got {value!r}")
    return value


class Task:
    """A loop body's coroutine and how to read its result."""

    __slots__ = ("coroutine", "body", "_decode", "_keep")

    def __init__(self, coroutine: Coroutine, body: str, decode, keep):
        self.coroutine = coroutine
        self.body = body
        self._decode = decode
        self._keep = keep          # the socket objects whose fds the body uses

    def __repr__(self):
        return f"<Task {self.body} {self.coroutine!r}>"

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
        self._keep = None
        if status < 0:
            e = -status
            raise OSError(e, f"{self.body} body: {os.strerror(e)}")
        return self._decode(status)


class Loop:
    """The epoll event loop of a Scheduler (one loop per scheduler).

    run() resumes the scheduler's ready coroutines, then sleeps in epoll_wait
    until an fd is ready or a timer is due, until no coroutine is left
    unfinished or stop() is called.
    """

    def __init__(self, sched: Scheduler):
        if not isinstance(sched, Scheduler):
            raise TypeError(f"sched must be a yfcore.runtime.Scheduler, got {type(sched).__name__}")
        lp = lib.yf_loop_new(sched._ptr())
        if lp == ffi.NULL:
            if ffi.errno == _errno.EEXIST:
                raise ValueError("this scheduler already has a loop (one loop per scheduler)")
            if ffi.errno == _errno.ENOMEM:
                raise MemoryError("cannot allocate an event loop")
            e = ffi.errno
            raise OSError(e, f"yf_loop_new: {os.strerror(e)}")
        self.sched = sched
        self._lp = lp

    def _ptr(self):
        if self._lp is None:
            raise ValueError("the loop is closed")
        # The loop and its waiting coroutines live in the scheduler: using
        # the loop after the scheduler is freed would touch freed memory.
        if self.sched._s is None:
            raise ValueError("the loop's scheduler is closed")
        return self._lp

    def close(self) -> None:
        """Free the loop. OSError(EBUSY) while coroutines wait on it. Idempotent."""
        if self._lp is not None:
            if lib.yf_loop_free(self._lp) != 0:
                e = ffi.errno
                raise OSError(e, f"yf_loop_free: {os.strerror(e)}"
                              + (" (coroutines still wait on the loop: run it to the end first)"
                                 if e == _errno.EBUSY else ""))
            self._lp = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        # A loop with waiters cannot be freed; it is left allocated (their
        # records point into it) rather than raising from a finalizer.
        if getattr(self, "_lp", None) is not None and lib.yf_loop_free(self._lp) == 0:
            self._lp = None

    def run(self) -> int:
        """Run until no coroutine is unfinished or stop(); return the number of resumes.

        OSError(EDEADLK) when unfinished coroutines remain but none waits on
        the loop (nothing could ever wake them). A signal interrupts the
        wait: its Python handler runs, and unless it raises, the loop goes on.
        """
        lp = self._ptr()
        before = self._counts().resumes
        while True:
            if lib.yf_loop_run(lp) >= 0:
                return self._counts().resumes - before
            e = ffi.errno
            if e != _errno.EINTR:
                msg = {_errno.EDEADLK: "unfinished coroutines remain but none waits on the loop"}.get(
                    e, os.strerror(e))
                raise OSError(e, f"yf_loop_run: {msg}")
            # Back in Python, pending signal handlers run before the next
            # bytecode: KeyboardInterrupt ends a run that would block forever.

    def stop(self) -> None:
        """Make the next run() do one non-blocking iteration and return."""
        lib.yf_loop_stop(self._ptr())

    @property
    def now(self) -> int:
        """The loop's cached CLOCK_MONOTONIC time in ns, refreshed once per iteration."""
        return lib.yf_loop_now(self._ptr())

    def _counts(self):
        c = ffi.new("yf_loop_counts *")
        lib.yf_loop_counts_get(self._ptr(), c)
        return c

    def counts(self) -> dict:
        """iterations, events, timers_fired, wakeups, waiting_fds, sleeping, resumes."""
        c = self._counts()
        return {k: getattr(c, k) for k in _COUNT_FIELDS}

    def spawn(self, body: str, *args) -> Task:
        """Start the built-in loop body `body` (see LOOP_DEMOS) with validated arguments."""
        if body not in LOOP_DEMOS:
            raise ValueError(f"unknown loop body {body!r}; built-in loop bodies: {', '.join(LOOP_DEMOS)}")
        self._ptr()
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
            fn, arg, decode, keep = lib.yf_demo_client, fd | n << 24 | size << 48, int, args[0]
        else:
            fd = _fd(args[0])
            events = _events(args[1])
            timeout = _timeout("timeout_ms", args[2], _WAIT_TIMEOUT_MAX_MS)
            fn, arg, keep = lib.yf_demo_wait, fd | events << 24 | (timeout + 1) << 28, args[0]

            def decode(status):
                return status & 0xF, status >> 4
        co = lib.yf_co_create(self.sched._ptr(), fn, ffi.cast("void *", arg))
        if co == ffi.NULL:
            if ffi.errno == _errno.ENOMEM:
                raise MemoryError("no stack could be mapped for a new coroutine (see vm.max_map_count)")
            e = ffi.errno
            raise OSError(e, f"yf_co_create: {os.strerror(e)}")
        return Task(Coroutine(self.sched, lib.yf_co_id(co)), body, decode, keep)
