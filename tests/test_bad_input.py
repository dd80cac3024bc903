"""The bad-input table: every public entry point of the wrappers against each
class of bad input (types, limits, closed, copied, pickled, foreign thread,
stale view, re-initialised, signal during a call). Each case asserts the
exact exception type, then that the object it hit still works and still
holds its data. What used to crash the interpreter runs in a subprocess."""
import copy
import errno
import gc
import os
import pickle
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from yfcore._handle import borrow
from yfcore.loop import Loop
from yfcore.runtime import Scheduler
from yfcore.sbuf import SockBuf
from yfcore.wheel import TimerWheel

MS = 1_000_000


class World:
    """One object of each class, each holding data, and a check that the
    data is still there and the object still works."""

    def __init__(self):
        self.s = Scheduler()
        self.co = self.s.spawn("block_once")
        self.s.run()
        self.ls = Scheduler()
        self.lp = Loop(self.ls)
        self.task = self.lp.spawn("sleep", 1)
        self.w = TimerWheel(now=0, capacity=64)
        self.h = self.w.add(10, 77)
        self.b = SockBuf(64)
        self.b.write(b"hello, world: " * 10)
        self.pair = socket.socketpair()

    def verify(self):
        assert self.co.state == "blocked"
        self.co.wake(self.co.token, 5)
        assert self.s.run() == 1 and self.co.reap() == 5
        self.lp.run()
        assert self.task.result() >= 1 * MS
        assert self.w.pending(self.h) and len(self.w) == 1
        self.w.check()
        assert [(e.handle, e.payload) for e in self.w.advance(10)] == [(self.h, 77)]
        self.b.check()
        assert self.b.read() == b"hello, world: " * 10

    def close(self):
        for o in (self.lp, self.ls, self.s, self.w, self.b, *self.pair):
            o.close()


@pytest.fixture
def world():
    w = World()
    yield w
    w.close()


def _case(exc, target, call):
    return pytest.param(exc, target, call, id=f"{target}-{call.__name__ if hasattr(call, '__name__') else call}")


# ---- types and limits: (exception, object, call) --------------------------------

T, V, L = TypeError, ValueError, LookupError
ARGS = [
    # Scheduler(...)
    (T, "s", lambda w: Scheduler("64k")), (T, "s", lambda w: Scheduler(True)),
    (T, "s", lambda w: Scheduler(65536.0)), (V, "s", lambda w: Scheduler(12345)),
    (V, "s", lambda w: Scheduler(2**40)), (T, "s", lambda w: Scheduler(fpfast="no")),
    (T, "s", lambda w: Scheduler(fpfast=1)), (T, "s", lambda w: Scheduler(guard=["auto"])),
    (V, "s", lambda w: Scheduler(guard="bogus")),
    # Scheduler methods
    (T, "s", lambda w: w.s.spawn(["yield_n"])), (V, "s", lambda w: w.s.spawn("nope")),
    (T, "s", lambda w: w.s.spawn("yield_n", True)), (T, "s", lambda w: w.s.spawn("yield_n", 1.5)),
    (V, "s", lambda w: w.s.spawn("yield_n", -1)), (V, "s", lambda w: w.s.spawn("yield_n", 2**62)),
    (V, "s", lambda w: w.s.spawn("use_stack", 2**30)),
    (V, "s", lambda w: w.s.trace(True)), (V, "s", lambda w: w.s.trace(-1)),
    (V, "s", lambda w: w.s.trace(2**40)), (V, "s", lambda w: w.s.trace("8")),
    (L, "s", lambda w: w.s.find(True)), (L, "s", lambda w: w.s.find("1")),
    (L, "s", lambda w: w.s.find(-1)), (L, "s", lambda w: w.s.find(2**64)),
    (L, "s", lambda w: w.s.find(None)),
    # Coroutine methods
    (V, "s", lambda w: w.co.wake(True)), (V, "s", lambda w: w.co.wake(-1)),
    (V, "s", lambda w: w.co.wake(w.co.token + 1)), (V, "s", lambda w: w.co.wake(w.co.token, 2**63)),
    (V, "s", lambda w: w.co.wake(w.co.token, False)),
    (V, "s", lambda w: w.co.cancel(True)), (RuntimeError, "s", lambda w: w.co.cancel()),
    (RuntimeError, "s", lambda w: w.co.resume()), (RuntimeError, "s", lambda w: w.co.reap()),
    (RuntimeError, "s", lambda w: w.co.status),
    # Loop(...) and its methods
    (T, "lp", lambda w: Loop(object())), (V, "lp", lambda w: Loop(w.ls)),
    (T, "lp", lambda w: w.lp.spawn(["sleep"], 1)), (V, "lp", lambda w: w.lp.spawn("nope", 1)),
    (T, "lp", lambda w: w.lp.spawn("sleep")), (T, "lp", lambda w: w.lp.spawn("sleep", True)),
    (V, "lp", lambda w: w.lp.spawn("sleep", -1)), (V, "lp", lambda w: w.lp.spawn("sleep", 10**13)),
    (T, "lp", lambda w: w.lp.spawn("echo", "3")), (V, "lp", lambda w: w.lp.spawn("echo", -1)),
    (V, "lp", lambda w: w.lp.spawn("echo", _regular_file(w))),
    (V, "lp", lambda w: w.lp.spawn("wait", w.pair[0], ["r"], 10)),
    (V, "lp", lambda w: w.lp.spawn("wait", w.pair[0], True, 10)),
    (T, "lp", lambda w: w.lp.spawn("wait", w.pair[0], "r", 1.5)),
    (V, "lp", lambda w: w.lp.spawn("wait", w.pair[0], "r", 2**34)),
    (V, "lp", lambda w: w.lp.spawn("client", w.pair[0], 1, 0)),
    (V, "lp", lambda w: w.lp.spawn("client", w.pair[0], -1, 10)),
    # TimerWheel(...)
    (T, "w", lambda w: TimerWheel("88")), (T, "w", lambda w: TimerWheel(8)),
    (V, "w", lambda w: TimerWheel(())), (V, "w", lambda w: TimerWheel((11,))),
    (T, "w", lambda w: TimerWheel((True, 8))), (V, "w", lambda w: TimerWheel((10,) * 5)),
    (V, "w", lambda w: TimerWheel(now=-1)), (T, "w", lambda w: TimerWheel(now=True)),
    (V, "w", lambda w: TimerWheel(capacity=0)), (V, "w", lambda w: TimerWheel(capacity=2**40)),
    (T, "w", lambda w: TimerWheel(capacity=1.0)),
    # TimerWheel methods
    (T, "w", lambda w: w.w.add(True)), (T, "w", lambda w: w.w.add("5")), (V, "w", lambda w: w.w.add(-1)),
    (V, "w", lambda w: w.w.add(2**63)), (V, "w", lambda w: w.w.add(5, 2**63)),
    (T, "w", lambda w: w.w.add(5, True)),
    (T, "w", lambda w: w.w.add_many([1.5, 2.5])), (T, "w", lambda w: w.w.add_many([True, False])),
    (T, "w", lambda w: w.w.add_many(["a"])), (V, "w", lambda w: w.w.add_many([[1, 2]])),
    (V, "w", lambda w: w.w.add_many([-1])), (V, "w", lambda w: w.w.add_many([1, 2], [1])),
    (V, "w", lambda w: w.w.add_many(np.array([-1], ">i8"))),
    (MemoryError, "w", lambda w: w.w.add_many(np.ones(100, np.int64))),
    (T, "w", lambda w: w.w.cancel(True)), (L, "w", lambda w: w.w.cancel(w.h + 1)),
    (L, "w", lambda w: w.w.cancel(12345)), (V, "w", lambda w: w.w.cancel(-1)),
    (L, "w", lambda w: w.w.cancel_many([w.h, w.h])), (L, "w", lambda w: w.w.cancel_many([w.h, 1])),
    (T, "w", lambda w: w.w.cancel_many([1.0])),
    (T, "w", lambda w: w.w.advance(True)), (V, "w", lambda w: w.w.advance(-1)),
    (T, "w", lambda w: w.w.advance_many(None)), (T, "w", lambda w: w.w.pending(True)),
    (T, "w", lambda w: w.w.pending("x")),
    # SockBuf(...)
    (T, "b", lambda w: SockBuf(True)), (T, "b", lambda w: SockBuf("64")), (V, "b", lambda w: SockBuf(100)),
    (V, "b", lambda w: SockBuf(32)), (V, "b", lambda w: SockBuf(64, -1)), (T, "b", lambda w: SockBuf(64, 1.0)),
    # SockBuf methods
    (T, "b", lambda w: w.b.write("text")), (T, "b", lambda w: w.b.write(5)), (T, "b", lambda w: w.b.write([1])),
    (T, "b", lambda w: w.b.read(True)), (V, "b", lambda w: w.b.read(-2)), (T, "b", lambda w: w.b.read("1")),
    (V, "b", lambda w: w.b.peek(10**6)), (T, "b", lambda w: w.b.peek(None)), (T, "b", lambda w: w.b.peekv(1.0)),
    (V, "b", lambda w: w.b.seek(-1)), (V, "b", lambda w: w.b.seek(0, 3)), (T, "b", lambda w: w.b.seek(0, True)),
    (V, "b", lambda w: w.b.truncate(10**6)), (T, "b", lambda w: w.b.truncate("1")),
    (V, "b", lambda w: w.b.reserve(2**63)), (T, "b", lambda w: w.b.reserve(True)),
    (V, "b", lambda w: w.b.commit(1)), (T, "b", lambda w: w.b.commit(None)),
    (T, "b", lambda w: w.b.recv_from("sock")), (V, "b", lambda w: w.b.recv_from(-1)),
    (V, "b", lambda w: w.b.recv_from(w.pair[1], 0)), (T, "b", lambda w: w.b.send_to(["fd"])),
    (T, "b", lambda w: w.b.take_messages(True)), (V, "b", lambda w: w.b.take_messages(-1)),
]


def _regular_file(w):
    f = open(os.devnull, "rb")
    w.pair = (*w.pair, f)
    return f


@pytest.mark.parametrize("exc,target,call", [_case(*a) for a in ARGS])
def test_bad_arguments(world, exc, target, call):
    with pytest.raises(Exception) as e:
        call(world)
    assert type(e.value) is exc, repr(e.value)
    world.verify()


# numpy integer scalars are ints everywhere; numpy bools are not.
def test_numpy_integers_accepted_everywhere(world):
    i = np.int64
    with Scheduler(i(65536)) as s:
        co = s.spawn("yield_n", np.uint8(2))
        s.trace(np.int32(4))
        s.run()
        assert s.find(np.int64(co.id)).reap() == 2
    h = world.w.add(np.int64(20), np.int32(-3))
    assert world.w.cancel(np.uint64(h)) == -3
    hs = world.w.add_many(np.array([30], ">u4"))
    assert world.w.cancel_many(hs).tolist() == [0]
    world.b.seek(np.int8(2))
    assert bytes(world.b.peek(np.int16(3))) == b"llo"
    world.b.seek(0)
    assert world.lp.spawn("sleep", np.int64(0)).state == "new"
    world.lp.run()
    world.verify()


@pytest.mark.parametrize("bad", [np.bool_(True), True])
def test_numpy_bools_refused_as_ints(world, bad):
    for call in (lambda: world.w.add(bad), lambda: world.b.read(bad), lambda: world.s.spawn("yield_n", bad)):
        with pytest.raises(TypeError):
            call()
    world.verify()


# ---- closed ---------------------------------------------------------------------

CLOSED = {
    "s": ["spawn('yield_n')", "run()", "counts()", "trim()", "trace(4)", "trace_records()", "find(1)",
          "stack_size", "guard", "fpfast"],
    "co": ["state", "resume()", "reap()", "wake(1)", "cancel()", "status", "stack_hwm", "token",
           "stack_layout()", "saved_frame()"],
    "lp": ["run()", "stop()", "counts()", "now", "spawn('sleep', 1)"],
    "w": ["add(1)", "cancel(1)", "advance(1)", "add_many([1])", "cancel_many([1])", "advance_many(1)",
          "pending(1)", "next_deadline()", "check()", "occupancy()", "now", "__len__()"],
    "b": ["write(b'x')", "read()", "peek(1)", "peekv()", "seek(0)", "tell()", "truncate(0)", "consume()",
          "reserve(1)", "commit(0)", "recv_from(0)", "send_to(1)", "take_messages(1)", "stats()", "check()",
          "layout()", "__len__()"],
}


@pytest.mark.parametrize("target,expr", [(t, e) for t, es in CLOSED.items() for e in es])
def test_closed_objects_raise_value_error(target, expr):
    s = Scheduler()
    objs = {"s": s, "co": s.spawn("yield_n", 1), "lp": Loop(Scheduler()), "w": TimerWheel(capacity=8),
            "b": SockBuf(64)}
    for o in objs.values():
        o.close() if hasattr(o, "close") else None
    s.close()
    with pytest.raises(Exception) as e:
        eval(f"o.{expr}", {"o": objs[target]})
    assert type(e.value) is ValueError and "closed" in str(e.value), repr(e.value)
    objs[target].close() if hasattr(objs[target], "close") else None     # still idempotent


# ---- copied, deep-copied, pickled, re-initialised --------------------------------

COPIERS = {"copy": copy.copy, "deepcopy": copy.deepcopy, "pickle": pickle.dumps,
           "pickle-0": lambda o: pickle.dumps(o, 0)}


@pytest.mark.parametrize("how", COPIERS)
@pytest.mark.parametrize("target", ["s", "co", "lp", "task", "w", "b"])
def test_copies_and_pickles_refused(world, target, how):
    with pytest.raises(Exception) as e:
        COPIERS[how](getattr(world, target))
    assert type(e.value) is TypeError and "cannot be" in str(e.value), repr(e.value)
    world.verify()


@pytest.mark.parametrize("target", ["s", "lp", "w", "b"])
def test_init_again_on_a_live_object_refused(world, target):
    o = getattr(world, target)
    args = (world.ls,) if target == "lp" else ()
    with pytest.raises(Exception) as e:
        o.__init__(*args)
    assert type(e.value) is RuntimeError, repr(e.value)
    world.verify()


def test_init_again_on_a_closed_object_makes_a_fresh_one():
    b = SockBuf(64)
    b.close()
    b.__init__(128)
    assert b.write(b"ab") == 2 and b.chunk_size == 128
    b.close()


# ---- foreign threads ------------------------------------------------------------

FOREIGN = {
    "s": ["run()", "spawn('yield_n')", "counts()", "close()", "trace(2)", "find(1)"],
    "co": ["state", "wake(co.token, 1)", "resume()", "reap()"],
    "lp": ["run()", "spawn('sleep', 1)", "counts()", "stop()", "close()"],
    "task": ["result()", "state"],
}


def _in_thread(fn):
    out = {}

    def body():
        try:
            out["value"] = fn()
        except BaseException as e:     # noqa: BLE001 - handed back to the test
            out["error"] = e
    t = threading.Thread(target=body, name="intruder")
    t.start()
    t.join(10)
    assert not t.is_alive()
    return out


@pytest.mark.parametrize("target,expr", [(t, e) for t, es in FOREIGN.items() for e in es])
def test_owner_thread_objects_refuse_other_threads(world, target, expr):
    o = getattr(world, target)
    out = _in_thread(lambda: eval(f"o.{expr}", {"o": o, "co": world.co}))
    e = out.get("error")
    assert type(e) is RuntimeError, repr(out)
    assert "MainThread" in str(e) and "intruder" in str(e)
    world.verify()


def test_a_scheduler_made_in_a_thread_is_owned_by_it():
    out = _in_thread(lambda: Scheduler())
    s = out["value"]
    with pytest.raises(RuntimeError, match="intruder"):
        s.run()
    with pytest.raises(RuntimeError, match="intruder"):
        s.close()
    del s
    gc.collect()            # freed by the collector on this thread: nobody else can use it


def test_wheel_shared_by_threads_stays_consistent():
    w = TimerWheel(capacity=1 << 16)
    stop = time.monotonic() + 1.0
    errors = []

    def churn(seed):
        rng = np.random.default_rng(seed)
        try:
            while time.monotonic() < stop:
                # Far deadlines: the advancing thread never expires them.
                hs = w.add_many(rng.integers(10**9, 2 * 10**9, 64))
                w.cancel_many(hs[:32])
                w.cancel_many(hs[32:])
                if seed == 0:
                    w.advance_many(w.now + 3)
        except Exception as e:          # noqa: BLE001
            errors.append(e)
    ts = [threading.Thread(target=churn, args=(i,)) for i in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert errors == []
    w.check()
    assert len(w) == 0 and w.now > 0
    w.add_many(np.arange(10) + 10**9)
    assert len(w.advance_many(3 * 10**9)[0]) == 10
    assert len(w) == 0
    w.close()


def test_sockbuf_shared_by_threads_loses_nothing():
    b = SockBuf(64)
    msg = bytes(range(256)) * 4

    def writer():
        for _ in range(300):
            b.write(msg)
    ts = [threading.Thread(target=writer) for _ in range(3)]
    for t in ts:
        t.start()
    got = 0
    while any(t.is_alive() for t in ts) or len(b):
        b.seek(0, 2)
        got += b.consume()
    for t in ts:
        t.join()
    got += b.consume()
    assert got == 3 * 300 * len(msg)
    b.check()
    b.close()


def test_sockbuf_close_waits_for_a_blocked_recv_in_another_thread():
    a, c = socket.socketpair()
    b = SockBuf(64)
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("n", b.recv_from(c, 100)))
    t.start()
    time.sleep(0.05)
    closer = threading.Thread(target=b.close)
    closer.start()
    time.sleep(0.05)
    assert not b.closed and closer.is_alive()       # close waits; nothing freed under the read
    a.sendall(b"abc")
    t.join(5)
    closer.join(5)
    assert out["n"] == 3 and b.closed
    a.close()
    c.close()


# ---- stale views ------------------------------------------------------------------

ENDS = {
    "write": lambda b: b.write(b"abcd"), "commit": lambda b: b.commit(2), "reserve": lambda b: b.reserve(4),
    "truncate": lambda b: b.truncate(len(b)), "close": lambda b: b.close(),
}


@pytest.mark.parametrize("end", ENDS)
def test_a_stale_reserve_view_raises_instead_of_writing(end):
    b = SockBuf(64)
    b.write(b"0123")
    v = b.reserve(4)[0]
    # Known bytes while the view is valid: a reserved region is uninitialised
    # memory, and an "X" left there by an earlier buffer would look like a
    # stale write once "commit" makes it readable.
    v[:] = b"abcd"
    ENDS[end](b)
    with pytest.raises(Exception) as e:
        v[:] = b"XXXX"
    assert type(e.value) is ValueError, repr(e.value)
    if not b.closed:
        b.seek(0)
        assert b"X" not in b.read()
        b.check()
        b.close()


def test_a_stale_reserve_view_after_recv_from():
    a, c = socket.socketpair()
    b = SockBuf(64)
    v = b.reserve(8)[0]
    a.sendall(b"data")
    assert b.recv_from(c) == 4
    with pytest.raises(ValueError):
        v[:4] = b"XXXX"
    assert b.read() == b"data"
    b.close()
    a.close()
    c.close()


@pytest.mark.parametrize("end", ENDS)
def test_a_live_slice_of_a_reserve_view_blocks_the_change(end):
    b = SockBuf(64)
    b.write(b"0123")
    part = b.reserve(4)[0][1:3]
    with pytest.raises(Exception) as e:
        ENDS[end](b)
    assert type(e.value) is BufferError, repr(e.value)
    del part
    b.reserve(0)
    assert b.read() == b"0123" and not b.closed
    b.close()


# ---- calls in progress and signals --------------------------------------------------

@pytest.mark.parametrize("target", ["s", "lp", "w", "b"])
def test_close_during_a_call_in_progress_refused(world, target):
    o = getattr(world, target)
    with borrow(o):
        with pytest.raises(Exception) as e:
            o.close()
        assert type(e.value) is RuntimeError, repr(e.value)
    world.verify()


def test_closing_the_scheduler_closes_its_loop_first(world):
    t = world.lp.spawn("sleep", 300)
    world.lp.stop()
    world.lp.run()
    assert t.state == "blocked"
    with pytest.raises(OSError):            # a coroutine sleeps on the loop: nothing is freed
        world.ls.close()
    assert not world.ls.closed and not world.lp.closed
    world.verify()
    assert t.result() >= 300 * MS
    world.ls.close()
    assert world.lp.closed
    with pytest.raises(ValueError, match="scheduler is closed"):
        world.lp.run()


def test_a_new_loop_can_attach_after_one_is_closed(world):
    world.verify()
    world.lp.close()
    lp2 = Loop(world.ls)
    t = lp2.spawn("sleep", 0)
    lp2.run()
    assert t.result() >= 0
    lp2.close()


def test_a_dropped_loop_with_waiters_stays_with_its_scheduler():
    s = Scheduler()
    lp = Loop(s)
    t = lp.spawn("sleep", 50)
    lp.stop()
    lp.run()
    del lp, t
    gc.collect()
    with pytest.raises(OSError):        # the sleeper still waits on the loop
        s.close()
    assert s.loop.run() == 1
    s.close()
    assert s.loop is None


def test_signal_handler_closing_the_loop_during_run(world):
    def handler(signum, frame):
        world.lp.close()
    old = signal.signal(signal.SIGALRM, handler)
    try:
        t = world.lp.spawn("sleep", 200)
        signal.setitimer(signal.ITIMER_REAL, 0.02)
        with pytest.raises(RuntimeError, match="during a call"):
            world.lp.run()
        assert t.state == "blocked" and not world.lp.closed
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    world.lp.run()
    assert t.result() >= 200 * MS
    world.verify()


def test_loop_keeps_the_socket_of_a_task_alive():
    with Scheduler() as s, Loop(s) as lp:
        a, b = socket.socketpair()
        a.setblocking(False)
        fd = a.fileno()
        ref = lp.spawn("echo", a)
        del a
        gc.collect()
        assert os.fstat(fd)             # not closed by the collector: the loop holds it
        b.sendall(b"ping")
        b.shutdown(socket.SHUT_WR)
        lp.run()
        assert b.recv(10) == b"ping" and ref.result() == 4
        b.close()


def test_drop_fd_fails_the_waits_on_it_with_ebadf(world):
    a, b = world.pair
    t = world.lp.spawn("wait", a, "r", None)
    world.lp.stop()
    world.lp.run()
    assert t.state == "blocked"
    with pytest.raises(TypeError):
        world.lp.drop_fd("a")
    assert world.lp.drop_fd(a) == 1
    world.lp.run()
    with pytest.raises(OSError) as e:
        t.result()
    assert e.value.errno == errno.EBADF
    world.verify()


def test_take_messages_keeps_the_count_before_a_corrupt_length():
    b = SockBuf(64)
    for m in (b"ab", b"cde"):
        b.write(len(m).to_bytes(4, "little") + m)
    b.write((5000).to_bytes(4, "little"))
    assert b.take_messages(10, max_len=100)[:2] == (2, 5)
    with pytest.raises(ValueError, match="max_len"):
        b.take_messages(10, max_len=100)
    assert len(b) == 4 and b.tell() == 0
    b.close()


def test_trace_records_sized_by_the_ring():
    with Scheduler() as s:
        s.trace(4)
        for _ in range(20):
            s.spawn("yield_n", 3)
        s.run()
        assert len(s.trace_records()) == 4


def test_pending_on_a_closed_wheel_raises(world):
    world.w.close()
    with pytest.raises(ValueError, match="closed"):
        world.w.pending(world.h)


def test_handles_of_open_wheels_never_match_each_other():
    # Open and close more wheels than there are tags, keeping one open: its
    # handles stay foreign to every later wheel.
    keep = TimerWheel(capacity=4)
    h = keep.add(5)
    for _ in range(2100):
        w = TimerWheel(capacity=4)
        w.add(5)
        assert not w.pending(h)
        with pytest.raises(LookupError):
            w.cancel(h)
        w.close()
    assert keep.pending(h)
    keep.close()


# ---- what used to crash: each reproducer in its own interpreter -------------------

CRASHERS = {
    "copy-then-free-both": """
        import copy
        from yfcore import Scheduler, TimerWheel, Loop
        for make in (Scheduler, TimerWheel, lambda: Loop(Scheduler())):
            o = make()
            try:
                copy.copy(o)
            except TypeError:
                pass
            del o
    """,
    # attempt(fn) runs fn in another thread and returns the RuntimeErrors it raised.
    "two-threads-run-one-scheduler": """
        from yfcore import Scheduler
        s = Scheduler()
        for _ in range(200):
            s.spawn("yield_n", 50)
        errs = attempt(s.run, s.run)
        assert len(errs) == 1, errs
        assert s.counts()["done"] == 200
        s.close()
    """,
    "close-from-another-thread-while-running": """
        from yfcore import Scheduler
        s = Scheduler()
        for _ in range(2000):
            s.spawn("yield_n", 200)
        errs = attempt(s.close, s.run)
        assert len(errs) == 1 and not s.closed
        s.close()
    """,
    "stale-reserve-view": """
        from yfcore import SockBuf
        b = SockBuf()
        v = b.reserve(4)[0]
        b.write(b"abcd")
        try:
            v[:] = b"XXXX"
        except ValueError:
            pass
        assert b.read() == b"abcd"
    """,
}


_ATTEMPT = """
import threading
def attempt(other, mine):
    errs = []
    def body():
        try:
            other()
        except RuntimeError as e:
            errs.append(e)
    t = threading.Thread(target=body)
    t.start()
    mine()
    t.join()
    return errs
"""


@pytest.mark.parametrize("name", CRASHERS)
def test_former_crashers_in_a_subprocess(name):
    r = subprocess.run([sys.executable, "-c", _ATTEMPT + textwrap.dedent(CRASHERS[name])], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
