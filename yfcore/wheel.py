"""TimerWheel: the C hierarchical timer wheel (csrc/wheel.c) for Python.

The timers live in C memory this wrapper owns: one anonymous mapping of
`capacity` yf_timer records, reserved once (pages are touched only as slots
are used) so their addresses never move while the wheel links them. The
mapping is released only after the wheel is freed, and the wheel is freed
before anything else, so C never sees a timer Python has let go of.

A handle is an int: wheel tag (11 bits) | generation (24 bits) | slot
(28 bits). A slot's generation changes when its timer is cancelled or
expires, so a stale handle, a handle of another wheel or a made-up number
raises LookupError instead of reaching C.

Python keeps one int64 per slot, the slot's handle while its timer is
pending and the bitwise complement of the handle it hands out next while
it is free (never negative vs. never), so checking a batch of handles is
one gather and one compare. The C record's payload holds the handle, so an
expiry names its handle with no lookup; the caller's payloads stay here.
"""
import errno
import mmap
import os
import threading
from collections import deque, namedtuple

import numpy as np

from ._handle import Owned, checker, error, flag, guarded, held, int_array, integer, reader
from ._yfcore import ffi, lib

__all__ = ["TimerWheel", "KeyedTimerWheel", "Expired", "Ran", "DEFAULT_BITS"]

# 4 levels of 256 slots: 2^32 ticks (49.7 days at 1 ms) inside the wheel, one
# cascade for most of the churn workload's 10 s deadlines; notebook 05's
# ablation measures it against tokio's 6 x 64 and the diary's 2-level shape.
DEFAULT_BITS = (8, 8, 8, 8)
DEFAULT_CAPACITY = 1 << 22

MAX_LEVELS, MAX_BITS, MAX_TOTAL_BITS = lib.YF_WHEEL_LEVELS_MAX, lib.YF_WHEEL_BITS_MAX, lib.YF_WHEEL_BITS_TOTAL_MAX
MAX_TIME = 2**63 - 1

_SLOT_BITS, _GEN_BITS, _TAG_BITS = 28, 24, 11
_SLOT_MASK = (1 << _SLOT_BITS) - 1
_GEN_MASK = (1 << _GEN_BITS) - 1
_GEN_ONE = 1 << _SLOT_BITS
_GEN_FIELD = _GEN_MASK << _SLOT_BITS
MAX_CAPACITY = 1 << _SLOT_BITS
_TIMER_SIZE = ffi.sizeof("yf_timer")

# Tags 1..2047: no two open wheels share one, so a handle of one open wheel
# never matches a timer of another. A closed wheel's tag goes to the back of
# the queue, to be reused as late as possible.
_free_tags = deque(range(1, 1 << _TAG_BITS))
_tags_lock = threading.Lock()


def _take_tag() -> int:
    with _tags_lock:
        if not _free_tags:
            raise RuntimeError(f"at most {(1 << _TAG_BITS) - 1} TimerWheels may be open at once "
                               "(each tags its handles); close some first")
        return _free_tags.popleft()


def _give_tag(tag: int) -> None:
    with _tags_lock:
        _free_tags.append(tag)


Expired = namedtuple("Expired", "handle deadline payload")

_CANCELLED, _EXPIRED = 2, 3
_FATE = {_CANCELLED: "was cancelled", _EXPIRED: "has expired"}


def _int(name: str, value, lo: int = 0, hi: int = MAX_TIME) -> int:
    return integer(name, value, lo, hi)


def _array(name: str, values, lo: int = 0, hi: int = MAX_TIME) -> np.ndarray:
    return int_array(name, values, lo, hi)


def _u64(a: np.ndarray) -> np.ndarray:
    """A validated non-negative integer array as contiguous uint64 for C (an
    int64 array is its own uint64 view)."""
    if a.dtype == np.int64 and a.flags.c_contiguous:
        return a.view(np.uint64)
    return np.ascontiguousarray(a, np.uint64)


class _Wheel(Owned):
    """What both wheels share: the shape, the C wheel, the mapping of timer
    records it links (never moved, released only after the wheel is freed)
    and the read-only inspection."""

    _what = "timer wheel"
    _shared = True

    def _setup(self, bits, now, n: int, name: str):
        """Check bits and now, reserve n timer records (n is `name`'s value)
        and make the C wheel; returns its pointer (not yet _open'ed)."""
        if isinstance(bits, (str, bytes)):
            raise TypeError(f"bits must be a sequence of ints, got {type(bits).__name__}")
        try:
            bits = tuple(bits)
        except TypeError:
            raise TypeError(f"bits must be a sequence of ints, got {type(bits).__name__}") from None
        if not 1 <= len(bits) <= MAX_LEVELS:
            raise ValueError(f"bits must name 1 to {MAX_LEVELS} levels, got {len(bits)}")
        for i, b in enumerate(bits):
            _int(f"bits[{i}]", b, 1, MAX_BITS)
        if sum(bits) > MAX_TOTAL_BITS:
            raise ValueError(f"bits must add up to at most {MAX_TOTAL_BITS}, got {sum(bits)}")
        now = _int("now", now)
        self._bits = tuple(int(b) for b in bits)
        try:
            self._map = mmap.mmap(-1, n * _TIMER_SIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        except OSError as e:
            raise MemoryError(f"{name}={n}: cannot reserve {n * _TIMER_SIZE} bytes "
                              f"for its timers ({os.strerror(e.errno)})") from None
        self._timers = ffi.from_buffer("yf_timer[]", self._map)
        self._out_h = None
        wh = lib.yf_wheel_new(ffi.new("unsigned[]", list(self._bits)), len(self._bits), now)
        if wh == ffi.NULL:
            e = ffi.errno
            self._release_memory()
            raise error("yf_wheel_new", e)
        return wh

    def _release_memory(self):
        ffi.release(self._timers)
        self._timers = None
        self._map.close()

    def _destroy(self, wh) -> None:
        """Free the wheel, then the timers' memory."""
        lib.yf_wheel_free(wh)
        self._release_memory()

    @guarded
    def __len__(self) -> int:
        return lib.yf_wheel_count(self._h)

    now = reader(lib.yf_wheel_now, "The wheel's current tick.")
    bits = held("_bits", "Slots per level as powers of two, level 0 first.")

    @guarded
    def next_deadline(self) -> int | None:
        """A lower bound of the earliest pending deadline (exact for the next
        few level-0 ticks), or None when nothing is pending."""
        n = lib.yf_wheel_next(self._h)
        return None if n == 2**64 - 1 else int(n)

    check = checker("yf_wheel_check", lib.yf_wheel_check)

    @guarded
    def occupancy(self) -> np.ndarray:
        """Timers per slot: an array of shape (levels, 2**max(bits)), zero-padded."""
        width = max(self._bits)
        out = np.zeros(len(self._bits) << width, np.uint32)
        n = lib.yf_wheel_occupancy(self._h, ffi.from_buffer("uint32_t[]", out), width)
        if n == 0:
            e = ffi.errno
            raise error("yf_wheel_occupancy", e)
        return out.reshape(len(self._bits), 1 << width)

    def _out_buffers(self, size: int) -> None:
        """advance_collect's output arrays (payloads, and deadlines below
        2**63), with their cffi views made once."""
        self._out_h = np.empty(size, np.int64)
        self._out_d = np.empty(size, np.int64)
        self._out_hc = ffi.from_buffer("uint64_t[]", self._out_h)
        self._out_dc = ffi.from_buffer("uint64_t[]", self._out_d)

    def _collect(self, now) -> tuple:
        """Advance to `now` (checked here); (payloads, deadlines) of the
        expired timers as int64 arrays, in advance order."""
        now = _int("now", now)
        wh = self._h
        if self._out_h is None:
            self._out_buffers(1024)
        parts_h, parts_d = [], []
        while True:
            n = lib.yf_wheel_advance_collect(wh, now, self._out_hc, self._out_dc, len(self._out_h))
            if n < 0:
                raise self._refuse_back(ffi.errno, now, "yf_wheel_advance_collect")
            parts_h.append(self._out_h[:n].copy())
            parts_d.append(self._out_d[:n].copy())
            if n < len(self._out_h):
                break
            # Full: the wheel stopped early; take more next time round.
            self._out_buffers(2 * len(self._out_h))
        if len(parts_h) == 1:
            return parts_h[0], parts_d[0]
        return np.concatenate(parts_h), np.concatenate(parts_d)

    def _refuse_back(self, e: int, now: int, what: str):
        if e == errno.EINVAL:
            return ValueError(f"now must not go back: the wheel is at {lib.yf_wheel_now(self._h)}, got {now}")
        return error(what, e)


class TimerWheel(_Wheel):
    """A hierarchical timer wheel of integer ticks.

    bits: slots per level as powers of two (level 0 first), 1-8 levels of
    1-10 bits, 40 bits at most in all; deadlines beyond the last level go
    to coarser levels the wheel adds above it and cascade down. now: the
    starting tick. capacity: how many timers may be pending at once (memory
    is reserved, and touched only as used).

    add(deadline, payload) arms a timer and returns its handle; cancel(handle)
    disarms it; advance(now) returns the timers that expired, in deadline
    order (ties in arming order; a deadline already past when armed is due
    at the next advance). add_many, cancel_many and advance_many do the same
    on numpy arrays in one C call each.

    Any thread may use a wheel; a lock serialises the calls (yfcore._handle).
    """

    def __init__(self, bits=DEFAULT_BITS, now: int = 0, capacity: int = DEFAULT_CAPACITY):
        self._fresh()
        capacity = _int("capacity", capacity, 1, MAX_CAPACITY)
        self._capacity = capacity
        wh = self._setup(bits, now, capacity, "capacity")
        try:
            self._tag = _take_tag()
        except RuntimeError:
            lib.yf_wheel_free(wh)
            self._release_memory()
            raise
        # Per slot, Python's own records: handle (see the module docstring;
        # -1 past _high), how its last timer ended, the caller's payload.
        self._hand = np.full(1024, -1, np.int64)
        self._fate = np.zeros(1024, np.int8)
        self._payload = np.zeros(1024, np.int64)
        self._high = 0                          # slots ever handed out
        self._free = np.zeros(1024, np.uint32)  # a stack of reusable slots
        self._nfree = 0
        self._tag_bits = self._tag << (_GEN_BITS + _SLOT_BITS)
        self._open(wh)

    # ---- lifetime ------------------------------------------------------------------

    def _destroy(self, wh) -> None:
        """Free the wheel, then the timers' memory, then the tag."""
        super()._destroy(wh)
        _give_tag(self._tag)

    # ---- slots and handles ---------------------------------------------------------

    def _grow(self, need: int) -> None:
        size = len(self._hand)
        if need <= size:
            return
        new = max(need, 2 * size)
        for name, fill in (("_hand", -1), ("_fate", 0), ("_payload", 0), ("_free", 0)):
            old = getattr(self, name)
            a = np.full(new, fill, old.dtype)
            a[: len(old)] = old
            setattr(self, name, a)

    def _take(self, n: int) -> np.ndarray:
        """n free slots (uint32, reused ones first); MemoryError past capacity."""
        if n <= self._nfree:
            self._nfree -= n
            return self._free[self._nfree:self._nfree + n][::-1].copy()
        reuse = self._nfree
        fresh = n - reuse
        if self._high + fresh > self._capacity:
            raise MemoryError(
                f"the timer wheel holds at most capacity={self._capacity} timers; "
                f"{len(self) } pending, {n} more asked")
        self._grow(self._high + fresh)
        slots = np.empty(n, np.uint32)
        slots[:reuse] = self._free[:reuse][::-1]
        self._nfree = 0
        slots[reuse:] = np.arange(self._high, self._high + fresh, dtype=np.uint32)
        # A fresh slot's first handle has generation 0.
        self._hand[self._high:self._high + fresh] = ~(self._tag_bits | slots[reuse:].astype(np.int64))
        self._high += fresh
        return slots

    def _give_back(self, handles: np.ndarray, slots: np.ndarray, fate: int) -> None:
        """Free the slots of these (validated, just released) handles: each
        slot's next handle is its generation plus one, wrapping in its field."""
        nxt = (handles & ~_GEN_FIELD) | ((handles + _GEN_ONE) & _GEN_FIELD)
        self._hand[slots] = ~nxt
        self._fate[slots] = fate
        self._free[self._nfree:self._nfree + len(slots)] = slots
        self._nfree += len(slots)

    def _slots_of(self, name: str, handles: np.ndarray) -> tuple:
        """(int64 handles, their slots) of pending handles; LookupError names
        the first bad one.
        A slot's record equals a handle only while that very handle is
        pending (tag, generation and slot all match), and no record past
        _high is a valid handle, so clipping out-of-range slots is safe."""
        h = handles.astype(np.int64, copy=False)
        slot = h & _SLOT_MASK
        ok = np.take(self._hand, slot, mode="clip") == h
        if not ok.all():
            i = int(np.argmin(ok))
            raise LookupError(f"{name}: {self._why(int(h[i]))}")
        return h, slot

    def _why(self, handle: int) -> str:
        tag = handle >> (_GEN_BITS + _SLOT_BITS)
        gen = (handle >> _SLOT_BITS) & _GEN_MASK
        slot = handle & _SLOT_MASK
        if tag != self._tag or slot >= self._high:
            return f"handle {handle} was not issued by this wheel"
        rec = int(self._hand[slot])
        # The slot's generation now: its pending timer's, or the next one's.
        if ((max(rec, ~rec) >> _SLOT_BITS) & _GEN_MASK) == (gen + 1) & _GEN_MASK:
            return f"handle {handle} {_FATE[int(self._fate[slot])]}"
        return f"handle {handle} is stale (its timer was released and the slot reused)"

    # ---- one timer at a time -------------------------------------------------------

    @guarded
    def add(self, deadline: int, payload: int = 0) -> int:
        """Arm a timer for tick `deadline` (at or before now: due at the next
        advance) carrying the int `payload`; return its handle."""
        deadline = _int("deadline", deadline)
        payload = _int("payload", payload, -(2**63), 2**63 - 1)
        wh = self._h
        slot = int(self._take(1)[0])
        handle = ~int(self._hand[slot])
        t = self._timers + slot
        t.payload = handle
        if lib.yf_wheel_add(wh, t, deadline) != 0:
            e = ffi.errno
            self._free[self._nfree] = slot
            self._nfree += 1
            raise error("yf_wheel_add", e)
        self._hand[slot] = handle
        self._payload[slot] = payload
        return handle

    @guarded
    def cancel(self, handle: int) -> int:
        """Disarm a pending timer and return its payload. LookupError for a
        handle that was cancelled, has expired, or is not this wheel's."""
        handle = _int("handle", handle, 0, 2**63 - 1)
        wh = self._h
        h, slots = self._slots_of("handle", np.array([handle], np.int64))
        if lib.yf_wheel_cancel(wh, self._timers + int(slots[0])) != 0:
            e = ffi.errno
            raise error("yf_wheel_cancel", e)
        payload = int(self._payload[slots[0]])
        self._give_back(h, slots, _CANCELLED)
        return payload

    @guarded
    def advance(self, now: int) -> list:
        """Move time to `now` and return the expired timers as Expired(handle,
        deadline, payload) tuples, in deadline order."""
        h, d, p = self.advance_many(now)
        return [Expired(*x) for x in zip(h.tolist(), d.tolist(), p.tolist())]

    # ---- batches -------------------------------------------------------------------

    @guarded
    def add_many(self, deadlines, payloads=None) -> np.ndarray:
        """Arm one timer per deadline (payloads: same length, default 0) in one
        C call; return their handles (int64)."""
        d = _array("deadlines", deadlines)
        if payloads is None:
            p = 0
        else:
            p = _array("payloads", payloads, -(2**63), 2**63 - 1)
            if len(p) != len(d):
                raise ValueError(f"payloads has {len(p)} entries, deadlines {len(d)}")
        wh = self._h
        slots = self._take(len(d))
        handles = ~self._hand[slots]
        dl = _u64(d)
        n = lib.yf_wheel_add_many(wh, self._timers, ffi.from_buffer("uint32_t[]", slots),
                                  ffi.from_buffer("uint64_t[]", dl), ffi.from_buffer("uint64_t[]", handles),
                                  len(d), ffi.NULL)
        if n != len(d):
            # Free slots are never pending: reaching this is a wrapper bug.
            raise RuntimeError(f"yf_wheel_add_many armed {n} of {len(d)} timers")
        self._hand[slots] = handles
        self._payload[slots] = p
        return handles

    @guarded
    def cancel_many(self, handles) -> np.ndarray:
        """Disarm every handle in one C call and return their payloads; all or
        nothing: LookupError (nothing cancelled) when any handle is not
        pending or appears twice."""
        h = _array("handles", handles, 0, 2**63 - 1)
        wh = self._h
        h, slots = self._slots_of("handles", h)
        if len(slots) > 1:
            ordered = np.sort(slots)
            if (ordered[1:] == ordered[:-1]).any():
                raise LookupError("handles: the same handle appears more than once")
        idx = slots.astype(np.uint32)
        n = lib.yf_wheel_cancel_many(wh, self._timers, ffi.from_buffer("uint32_t[]", idx), len(idx), ffi.NULL)
        if n != len(idx):
            raise RuntimeError(f"yf_wheel_cancel_many disarmed {n} of {len(idx)} timers")
        payloads = self._payload[slots]
        self._give_back(h, slots, _CANCELLED)
        return payloads

    @guarded
    def advance_many(self, now: int):
        """Move time to `now`; return (handles, deadlines, payloads) of the
        expired timers as int64 arrays, in the order of advance()."""
        handles, deadlines = self._collect(now)
        slots = handles & _SLOT_MASK
        payloads = self._payload[slots]
        self._give_back(handles, slots, _EXPIRED)
        return handles, deadlines, payloads

    @guarded
    def advance_rearm(self, now: int, delays):
        """Move time towards `now`, re-arming each expired timer: the k-th one
        is armed again at the tick it fired plus delays[k] and keeps its
        handle. Returns (handles, deadlines, payloads) of the re-armed timers
        (deadlines: the ones that fired) as int64 arrays, in the order of
        advance(). When more timers expire than `delays` has entries, the call
        stops after len(delays) of them; the rest stay due, `now` property
        then reads less than `now`, and the next call goes on."""
        now = _int("now", now)
        dl = _array("delays", delays)
        wh = self._h
        k = len(dl)
        if self._out_h is None or len(self._out_h) < k:
            self._out_buffers(max(1024, k))
        dl = _u64(dl)
        n = lib.yf_wheel_advance_rearm(wh, now, ffi.from_buffer("uint64_t[]", dl), self._out_hc, self._out_dc, k)
        if n < 0:
            raise self._refuse_back(ffi.errno, now, "yf_wheel_advance_rearm")
        handles = self._out_h[:n].copy()
        deadlines = self._out_d[:n].copy()
        return handles, deadlines, self._payload[handles & _SLOT_MASK]

    capacity = held("_capacity", "How many timers may be pending at once.")

    @guarded
    def pending(self, handle: int) -> bool:
        """True while the handle's timer is armed."""
        handle = _int("handle", handle, 0, 2**63 - 1)
        try:
            self._slots_of("handle", np.array([handle]))
        except LookupError:
            return False
        return True

    def __repr__(self) -> str:
        if self._h is None:
            return "TimerWheel(closed)"
        return f"TimerWheel(bits={self._bits}, now={self.now}, pending={len(self)})"


Ran = namedtuple("Ran", "fired rearmed keys deadlines")
Ran.__doc__ = """What KeyedTimerWheel.run did: fired, the expiries of each tick
(int64, one per tick run); rearmed, how many expiries were armed again (the
first `rearmed` of them, in order); keys and deadlines, the expiries in
order as int64 arrays (None when run with collect=False)."""

# What stopped a yf_wheel_run call: the array its stop_index indexes.
_STOPPED_IN = {lib.YF_WHEEL_STOP_ADD: "add_keys", lib.YF_WHEEL_STOP_CANCEL: "cancel_keys"}


def _refused(rc: int, what: str, err: int, exc, msg: str) -> None:
    """After a C call returning rc: exc(msg) when it failed with errno err,
    the errno's exception for any other failure."""
    if rc != 0:
        e = ffi.errno
        raise exc(msg) if e == err else error(what, e)


class KeyedTimerWheel(_Wheel):
    """A timer wheel whose timers are named by the caller's keys 0..keys-1
    (at most one pending timer per key), built for driving many ticks of
    timer work from numpy in one C call.

    keys: how many keys (memory for that many timers is reserved, touched
    only as used); bits and now as for TimerWheel.

    add(key, deadline), cancel(key), pending(key) and advance(now) work one
    timer at a time; run(times, ...) runs whole ticks of adds, cancels and
    expiries (optionally re-armed) in one call. Expiries come out in deadline
    order, ties in arming order, exactly as TimerWheel's do.

    Any thread may use the wheel; a lock serialises the calls.
    """

    def __init__(self, keys: int, bits=DEFAULT_BITS, now: int = 0):
        self._fresh()
        keys = _int("keys", keys, 1, MAX_CAPACITY)
        self._nkeys = keys
        wh = self._setup(bits, now, keys, "keys")
        self._batch = ffi.new("yf_wheel_batch *")
        self._open(wh)

    keys = held("_nkeys", "How many keys (0..keys-1) name timers.")

    def _timer(self, key):
        return self._timers + _int("key", key, 0, self._nkeys - 1)

    @guarded
    def add(self, key: int, deadline: int) -> None:
        """Arm key's timer for tick `deadline` (at or before now: due at the
        next advance). ValueError when the key is already pending."""
        t = self._timer(key)
        deadline = _int("deadline", deadline)
        t.payload = int(key)
        _refused(lib.yf_wheel_add(self._h, t, deadline), "yf_wheel_add", errno.EBUSY,
                 ValueError, f"key {key} is already pending (cancel it first)")

    @guarded
    def cancel(self, key: int) -> None:
        """Disarm key's pending timer; LookupError when it is not pending."""
        _refused(lib.yf_wheel_cancel(self._h, self._timer(key)), "yf_wheel_cancel", errno.ENOENT,
                 LookupError, f"key {key} is not pending")

    @guarded
    def pending(self, key: int) -> bool:
        """True while key's timer is armed."""
        return bool(lib.yf_wheel_pending(self._h, self._timer(key)))

    @guarded
    def advance(self, now: int):
        """Move time to `now`; return (keys, deadlines) of the expired timers
        as int64 arrays, in deadline order (ties in arming order)."""
        return self._collect(now)

    def _per_tick(self, name: str, values, counts, nticks: int, lo: int, hi: int, like=None):
        """One per-tick argument as (flat validated array, per-tick end
        offsets as uint64): a (ticks, k) array, or a 1-D array split by
        counts (one per tick). `like`: the keys' (flat, ends) it must match."""
        cname = name.split("_")[0] + "_counts"
        if values is None:
            if counts is not None:
                raise ValueError(f"{name} is missing but its counts were given")
            return np.zeros(0, np.int64), np.zeros(nticks, np.uint64)
        a = np.asarray(values) if not isinstance(values, np.ndarray) else values
        if a.ndim == 2:
            if counts is not None:
                raise ValueError(f"{name} is 2-D (one row per tick): leave its counts out")
            if a.shape[0] != nticks:
                raise ValueError(f"{name} has {a.shape[0]} rows, times has {nticks} ticks")
            flat = int_array(name, a.reshape(-1), lo, hi)
            ends = np.arange(1, nticks + 1, dtype=np.uint64) * np.uint64(a.shape[1])
        elif a.ndim == 1 and like is not None:
            flat = int_array(name, a, lo, hi)
            ends = like[1]
        elif a.ndim == 1:
            if counts is None:
                raise ValueError(f"{cname} is needed when {name} is 1-D (or pass {name} as one row per tick)")
            c = int_array(cname, counts, 0, 2**62)
            if len(c) != nticks:
                raise ValueError(f"{cname} has {len(c)} entries, times has {nticks} ticks")
            ends = np.cumsum(c, dtype=np.uint64)
            flat = int_array(name, a, lo, hi)
            if (int(ends[-1]) if nticks else 0) != len(flat):
                raise ValueError(f"{cname} add up to {int(ends[-1]) if nticks else 0}, {name} has {len(flat)}")
        else:
            raise ValueError(f"{name} must be a 1-D or a 2-D (one row per tick) array, got {a.ndim} dimensions")
        if like is not None and (len(flat) != len(like[0]) or a.ndim != like[2]):
            raise ValueError(f"{name} must have the shape of add_keys")
        return flat, ends

    @guarded
    def run(self, times, add_keys=None, add_deadlines=None, cancel_keys=None, delays=None, *,
            add_counts=None, cancel_counts=None, collect: bool = True) -> Ran:
        """Run len(times) ticks in one C call and return a Ran.

        Tick i arms the keys add_keys[i] for add_deadlines[i] (in order),
        disarms cancel_keys[i] (in order), then moves time to times[i]
        (non-decreasing, not before `now`), firing what is due. When
        `delays` is given, the k-th expiry of the whole call is armed again
        at the tick it fired plus delays[k] (same key); expiries past
        len(delays) just expire. collect=False leaves the expiries out of
        the result (its keys and deadlines are None; fired and rearmed are
        still counted).

        Per-tick arrays are 2-D, one row per tick (the same number every
        tick), or 1-D with add_counts / cancel_counts saying how many
        entries each tick takes. Every array is checked before anything
        runs (TypeError for a non-integer dtype, ValueError naming the array
        for a bad shape, a key outside 0..keys-1, a negative deadline or
        delay, times going back). Whether a key is pending is checked as the
        call reaches it: arming a pending key (ValueError) or cancelling a
        key that is not pending (LookupError) stops the call at that entry,
        with every tick before it done, that tick's earlier entries applied
        and nothing after; the exception's `done` says how many ticks ran
        and its `result` (a Ran) what they did."""
        t = int_array("times", times, 0, MAX_TIME)
        nt = len(t)
        now = lib.yf_wheel_now(self._h)
        if nt and int(t[0]) < now:
            raise ValueError(f"times must not go back: the wheel is at {now}, times[0] is {int(t[0])}")
        if nt > 1:
            back = t[1:] < t[:-1]
            if back.any():
                i = int(np.argmax(back)) + 1
                raise ValueError(f"times must not go back: times[{i}] is {int(t[i])} after {int(t[i - 1])}")
        collect = flag("collect", collect)
        ak, aend = self._per_tick("add_keys", add_keys, add_counts, nt, 0, self._nkeys - 1)
        if (add_keys is None) != (add_deadlines is None):
            raise ValueError("add_keys and add_deadlines go together: give both or neither")
        ad, _ = self._per_tick("add_deadlines", add_deadlines, None, nt, 0, MAX_TIME,
                               like=(ak, aend, np.ndim(add_keys)))
        ck, cend = self._per_tick("cancel_keys", cancel_keys, cancel_counts, nt, 0, self._nkeys - 1)
        dl = np.zeros(0, np.int64) if delays is None else _array("delays", delays)
        # An upper bound of the expiries: every timer pending at some point
        # of the call expires at most once per arming.
        out_max = len(self) + len(ak) + len(dl)
        keys = np.empty(out_max if collect else 0, np.int64)
        dead = np.empty(len(keys), np.int64)
        fired = np.empty(nt, np.int64)
        # The C call checks every entry again: another thread may change
        # these arrays while it runs (cffi lets go of the GIL), and no
        # such change may reach memory the wheel does not own.
        arrays = [_u64(t), aend, _u64(ak), _u64(ad), cend, _u64(ck), _u64(dl), keys, dead, fired]
        bufs = [ffi.from_buffer("uint64_t[]", a) if len(a) else ffi.NULL for a in arrays]
        b = self._batch
        (b.times, b.add_end, b.add_keys, b.add_deadlines, b.cancel_end, b.cancel_keys, b.delays,
         b.out_keys, b.out_deadlines, b.fired) = bufs
        b.nticks, b.nadds, b.ncancels, b.ndelays, b.out_max = nt, len(ak), len(ck), len(dl), len(keys)
        n = lib.yf_wheel_run(self._h, self._timers, self._nkeys, b)
        e = ffi.errno
        done, nout = b.ticks_done, b.nout
        res = Ran(fired[:done].copy(), b.nrearmed, keys[:nout].copy() if collect else None,
                  dead[:nout].copy() if collect else None)
        if n >= 0:
            return res
        raise self._stopped(b, e, res, ak if b.stop == lib.YF_WHEEL_STOP_ADD else ck,
                            aend if b.stop == lib.YF_WHEEL_STOP_ADD else cend, np.ndim(add_keys)
                            if b.stop == lib.YF_WHEEL_STOP_ADD else np.ndim(cancel_keys))

    def _stopped(self, b, e: int, res: Ran, flat, ends, ndim: int) -> Exception:
        """The exception for a yf_wheel_run that stopped early."""
        name = _STOPPED_IN.get(b.stop)
        if name is None:
            # Entries are checked before the call: only a wrapper bug, or
            # another thread changing the arrays meanwhile, gets here.
            exc = RuntimeError(f"yf_wheel_run stopped at tick {b.stop_index} ({os.strerror(e)}); "
                               "were the arrays changed during the call?")
        else:
            j = b.stop_index
            tick = int(np.searchsorted(ends, j, side="right"))
            start = int(ends[tick - 1]) if tick else 0
            where = f"{name}[{tick}, {j - start}]" if ndim == 2 else f"{name}[{j}] (tick {tick})"
            key = int(flat[j])
            if e == errno.EBUSY:
                exc = ValueError(f"{where}: key {key} is already pending")
            elif e == errno.ENOENT:
                exc = LookupError(f"{where}: key {key} is not pending")
            else:
                exc = ValueError(f"{where}: key {key} is not below keys={self._nkeys} "
                                 "(was the array changed during the call?)")
        exc.done, exc.result = b.ticks_done, res
        return exc

    def __repr__(self) -> str:
        if self._h is None:
            return "KeyedTimerWheel(closed)"
        return f"KeyedTimerWheel(keys={self._nkeys}, bits={self._bits}, now={self.now}, pending={len(self)})"
