"""What every wrapper of a C object shares: argument checks, errno to
exception, and the life cycle of an owned handle.

Ownership and threads
---------------------
Every wrapper that holds a C pointer (Scheduler, Loop, TimerWheel, SockBuf)
is an `Owned` object, and one of two kinds:

* **owner-thread** objects (Scheduler, and the Loop and Coroutine handles
  that live in it): the thread that made the object is its owner, and only
  that thread may call it. The C scheduler keeps per-thread state (the
  running scheduler and coroutine, the alternate signal stack), so a call
  from another thread raises RuntimeError naming the owner; nothing waits.
* **shared** objects (TimerWheel, SockBuf): plain data structures, so any
  thread may call them; a per-object lock serialises the calls (a second
  thread waits for the first call to return). A SockBuf blocked in
  recv_from holds its lock until the read returns: shut the socket down to
  end it.

For both kinds:

* nothing is freed under a running call: each call counts itself in and out
  (cffi releases the GIL around every C call, and a signal handler may run
  Python code between two C calls of one method), and close() during a call
  raises RuntimeError instead of freeing; close() from a thread that is not
  the owner raises RuntimeError (owner-thread objects) or waits for the
  running call (shared objects);
* close() is idempotent, the objects are context managers, and a forgotten
  object is freed when collected (from whatever thread collects it: nobody
  else can be using it then);
* calling __init__ again on a live object raises RuntimeError (it would
  otherwise leak the first C object);
* copy.copy, copy.deepcopy and pickle raise TypeError: a copy would share
  the C pointer, and the first of the two to be freed would leave the other
  pointing at freed memory.

Arguments
---------
`integer` accepts Python ints and numpy integer scalars and refuses bool
(True is not a size or an id); `flag` accepts only bool (a string such as
"no" is not silently true); `choice` wants a str from a fixed set;
`int_array` takes 1-D integer arrays of any byte order; `word` takes an
int of a C integer type where a wrong type and a wrong value are one
mistake (ValueError for both). Each error names the argument.

Reading C state
---------------
`reader` makes a property whose value one C call returns (checked and
counted like a method), `held` a property for a value fixed when the
object was made, `counters` a method returning a C record of counters as
a dict, and `checker` a method running a yf_*_check function: every
wrapper reads its C object the same way instead of restating the block.
"""
import errno as _errno
import functools
import operator
import os
import threading

import numpy as np

from ._yfcore import ffi

__all__ = ["integer", "word", "flag", "choice", "int_array", "fileno", "error", "Owned", "guarded", "borrow",
           "reader", "held", "counters", "checker"]

INT64_MIN, INT64_MAX, UINT64_MAX = -(2**63), 2**63 - 1, 2**64 - 1


# ---- arguments ---------------------------------------------------------------

def integer(name: str, value, lo: int, hi: int) -> int:
    """value as a Python int in [lo, hi]: TypeError unless an int or numpy
    integer (bool refused), ValueError outside the range."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    value = int(value)
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def word(name: str, value, lo: int, hi: int, what: str) -> int:
    """value as a Python int in [lo, hi] (numpy integers accepted, bool
    refused); anything else is a ValueError "name must be `what`, got value"."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
            or not lo <= value <= hi:
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return int(value)


def flag(name: str, value) -> bool:
    """A bool (or numpy bool): anything else is a TypeError, never silently true."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    return bool(value)


def choice(name: str, value, choices) -> str:
    """A str among choices: TypeError for another type, ValueError for another str."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, one of {sorted(choices)}, got {type(value).__name__}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return value


# np.iinfo is slow to build, and batches check bounds on every call.
_LIMITS = {np.dtype(t): np.iinfo(t) for t in np.typecodes["AllInteger"]}


def int_array(name: str, values, lo: int = 0, hi: int = INT64_MAX) -> np.ndarray:
    """A 1-D integer array with every entry in [lo, hi], in native byte order
    (other byte orders are converted). TypeError for non-integer dtypes (bool
    included), ValueError for other shapes and for entries out of range."""
    try:
        a = np.asarray(values)
    except (ValueError, TypeError) as e:
        raise TypeError(f"{name} must be a 1-D array of integers: {e}") from None
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got {a.ndim} dimensions")
    if a.size == 0:
        return a.astype(np.int64)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integers, got dtype {a.dtype}")
    if not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
    # Only the bounds the dtype can cross are checked: batches are hot.
    info = _LIMITS[a.dtype]
    low = info.min < lo and a.min() < lo
    if low or (info.max > hi and a.max() > hi):
        bad = a[(a < lo) | (a > hi)][0]
        raise ValueError(f"{name} must lie between {lo} and {hi}, got {bad}")
    return a


def fileno(name: str, value, hi: int = 2**31 - 1) -> int:
    """An fd from an int or an object with fileno() (its errors propagate)."""
    fd = value.fileno() if hasattr(value, "fileno") and not isinstance(value, (int, np.integer)) else value
    if isinstance(fd, (bool, np.bool_)) or not isinstance(fd, (int, np.integer)):
        raise TypeError(f"{name} must be an int or have fileno(), got {type(value).__name__}")
    return integer(name, fd, 0, hi)


# ---- errors ------------------------------------------------------------------

def error(what: str, err: int | None = None, detail: str | None = None) -> Exception:
    """The exception for a failed C call: MemoryError for ENOMEM, else
    OSError(errno) (whose constructor picks the subclass: BlockingIOError,
    InterruptedError, ...). err defaults to ffi.errno, so call this right
    after the failing call."""
    e = ffi.errno if err is None else err
    text = detail or os.strerror(e)
    if e == _errno.ENOMEM:
        return MemoryError(f"{what}: {text}")
    return OSError(e, f"{what}: {text}")


# ---- reading C state -----------------------------------------------------------

def reader(cfn, doc: str | None = None) -> property:
    """A read-only property of an Owned: cfn(its pointer), checked and
    counted like a method call."""
    def get(self):
        return cfn(self._h)
    get.__doc__ = doc
    return property(guarded(get))


def held(attr: str, doc: str | None = None) -> property:
    """A read-only property for a value the object fixed when it was made
    (kept in `attr`): no C call, readable after close()."""
    return property(operator.attrgetter(attr), doc=doc)


def counters(ctype: str, fill, names: tuple):
    """A method of an Owned returning {name: value} of the C record `ctype`
    (a pointer type) that fill(its pointer, record) fills in."""
    def get(self) -> dict:
        out = ffi.new(ctype)
        fill(self._h, out)
        return {k: getattr(out, k) for k in names}
    get.__doc__ = ", ".join(names) + "."
    return guarded(get)


def checker(name: str, check):
    """A method of an Owned verifying every invariant of its C object with
    check(pointer, msg, size), a yf_*_check: AssertionError naming the first
    violation, "name: ..."."""
    def verify(self) -> None:
        msg = ffi.new("char[256]")
        if check(self._h, msg, 256) != 0:
            raise AssertionError(f"{name}: {ffi.string(msg).decode()}")
    verify.__doc__ = f"Verify every invariant ({name}); AssertionError naming the first violation."
    return guarded(verify)


# ---- owned handles ------------------------------------------------------------

class Owned:
    """Base of every wrapper holding a C pointer (see the module docstring).

    A subclass sets _what (its name in messages), _shared (lock instead of
    owner thread), calls _open(ptr) at the end of __init__ (after
    _fresh() at its start), implements _destroy(ptr), and may implement
    _before_close() (raise to refuse a close). Its public methods are
    @guarded: inside them self._h is the live pointer.
    """

    _what = "object"
    _shared = False
    _h = None

    def _fresh(self) -> None:
        """First line of __init__: refuse re-initialising a live object."""
        if self._h is not None:
            raise RuntimeError(f"{type(self).__name__}.__init__ called again on a live {self._what}: "
                               "close() it first or make a new one (the first would leak)")
        self._calls = 0
        self._closed_why = None
        self._owner = threading.get_ident()
        self._owner_name = threading.current_thread().name
        self._lock = threading.RLock() if self._shared else None

    def _open(self, ptr) -> None:
        self._h = ptr

    # The owner-thread kind: checks only. The shared kind: the lock.
    def _enter(self):
        if self._shared:
            self._lock.acquire()
            if self._h is None:
                self._lock.release()
                raise ValueError(self._closed_message())
        else:
            if self._h is None:
                raise ValueError(self._closed_message())
            if threading.get_ident() != self._owner:
                raise RuntimeError(self._foreign_message())
        self._calls += 1
        return self._h

    def _leave(self) -> None:
        self._calls -= 1
        if self._shared:
            self._lock.release()

    def _closed_message(self) -> str:
        return self._closed_why or f"the {self._what} is closed"

    def _foreign_message(self) -> str:
        me = threading.current_thread().name
        alive = any(t.ident == self._owner for t in threading.enumerate())
        return (f"this {type(self).__name__} belongs to thread {self._owner_name!r} "
                f"(ident {self._owner}{'' if alive else ', ended'}), which made it; "
                f"it was called from thread {me!r}. "
                f"A {self._what} is used only from its owner thread.")

    @property
    def closed(self) -> bool:
        return self._h is None

    def close(self) -> None:
        """Free the C object. Idempotent. RuntimeError during a call in progress
        (or, for owner-thread objects, from another thread)."""
        if self._shared:
            self._lock.acquire()
        try:
            if self._h is None:
                return
            if not self._shared and threading.get_ident() != self._owner:
                raise RuntimeError(self._foreign_message())
            if self._calls:
                raise RuntimeError(f"close() of a {self._what} during a call in progress on it "
                                   "(from a signal handler or a callback?): nothing was freed")
            self._before_close()
            # _destroy raises when C refuses (EBUSY): the object stays open.
            self._destroy(self._h)
            self._h = None
        finally:
            if self._shared:
                self._lock.release()

    def _before_close(self) -> None:
        pass

    def _destroy(self, ptr) -> None:
        raise NotImplementedError

    def _finalize(self) -> None:
        """From __del__: free without raising (leave it allocated when that
        is not safe, as _before_close says)."""
        try:
            self._before_close()
            self._destroy(self._h)
        except Exception:
            return
        self._h = None

    def __del__(self):
        if getattr(self, "_h", None) is not None and not getattr(self, "_calls", 1):
            self._finalize()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # A copy would share the C pointer: the first one freed would leave the
    # other dangling (a double free, or a use after free).
    def _refuse_copy(self, how: str):
        raise TypeError(f"a {type(self).__name__} cannot be {how}: it owns a C {self._what} that a copy "
                        "would share (and free twice); make a new one instead")

    def __copy__(self):
        self._refuse_copy("copied")

    def __deepcopy__(self, memo):
        self._refuse_copy("deep-copied")

    def __reduce_ex__(self, protocol):
        self._refuse_copy("pickled")

    def __getstate__(self):
        self._refuse_copy("pickled")


def guarded(fn):
    """Wrap a method of an Owned (or of an object with _enter/_leave): the
    call is checked (open, thread or lock) and counted while it runs."""
    @functools.wraps(fn)
    def call(self, *args, **kwargs):
        self._enter()
        try:
            return fn(self, *args, **kwargs)
        finally:
            self._leave()
    return call


class borrow:
    """`with borrow(obj) as ptr:` the raw C pointer of an Owned object for a
    call into C made elsewhere in yfcore (the lab's kernels), checked and
    counted like a method call, so it cannot be freed meanwhile."""

    __slots__ = ("obj",)

    def __init__(self, obj: Owned):
        self.obj = obj

    def __enter__(self):
        return self.obj._enter()

    def __exit__(self, *exc):
        self.obj._leave()

