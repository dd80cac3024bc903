"""Python functions as coroutine bodies (yfcore._yfpy, csrc/py/pybody.c).

Anything that can crash the interpreter (the guard page) runs in a subprocess.
"""
import contextlib
import contextvars
import gc
import os
import socket
import subprocess
import sys
import textwrap
import threading
import traceback

import pytest

import yfcore
from yfcore import CoroutineExit, PyCoroutine, Scheduler
from yfcore import _yfpy
from yfcore.loop import Loop

pytestmark = pytest.mark.skipif(not _yfpy.supported(), reason="Python bodies need CPython 3.11")


@pytest.fixture
def sched():
    s = Scheduler(yfcore.PY_STACK_SIZE)
    yield s
    s.close()


def test_bodies_interleave_and_return(sched):
    log = []

    def body(name, n, *, tail=""):
        for i in range(n):
            log.append((name, i))
            yfcore.yield_()
        return name + tail

    a = sched.spawn(body, "a", 3, tail="!")
    b = sched.spawn(body, "b", 2)
    assert isinstance(a, PyCoroutine) and a.state == "new"
    assert sched.run() == 7  # a: 4 resumes, b: 3
    assert log == [("a", 0), ("b", 0), ("a", 1), ("b", 1), ("a", 2)]
    assert (a.result(), b.result()) == ("a!", "b")
    assert a.state == b.state == "done" and a.done
    assert sched.counts()["live"] == 0


def test_c_and_python_bodies_share_a_scheduler(sched):
    order = []

    def body():
        order.append("py0")
        yfcore.yield_()
        order.append("py1")
        return 5

    c = sched.spawn("yield_n", 3)
    p = sched.spawn(body)
    c2 = sched.spawn("block_once")
    sched.run()
    assert c.state == "done" and c.reap() == 3 and p.result() == 5 and order == ["py0", "py1"]
    c2.wake(c2.token, 9)
    sched.run()
    assert c2.reap() == 9


def test_an_exception_ends_only_its_body_with_its_traceback(sched):
    def bad():
        yfcore.yield_()
        raise ValueError("boom")

    def good(n):
        for _ in range(n):
            yfcore.yield_()
        return n

    x, y = sched.spawn(bad), sched.spawn(good, 4)
    sched.run()
    assert y.result() == 4 and x.status == 1 and y.status == 0
    with pytest.raises(ValueError, match="boom") as info:
        x.result()
    names = [f.name for f in traceback.extract_tb(info.value.__traceback__)]
    assert names[-1] == "bad"
    # BaseException too: it ends the body, never the C runtime or the caller.
    z = sched.spawn(lambda: sys.exit(3))
    sched.run()
    with pytest.raises(SystemExit):
        z.result()
    with pytest.raises(RuntimeError, match="has not finished"):
        sched.spawn(good, 1).result()


def test_block_returns_the_wake_value(sched):
    def waiter():
        return yfcore.block() + 1

    w = sched.spawn(waiter)
    with pytest.raises(ValueError, match="not blocked"):
        w.wake(1)
    sched.run()
    assert w.state == "blocked" and w.frame.f_code.co_name == "waiter"
    w.wake(41)
    with pytest.raises(ValueError, match="not blocked"):
        w.wake(2)
    sched.run()
    assert w.result() == 42


def test_current_is_the_one_handle(sched):
    seen = []
    co = sched.spawn(lambda: seen.append(yfcore.current()))
    assert yfcore.current() is None
    sched.run()
    assert seen == [co] and seen[0] is co


def test_find_gives_back_the_handle(sched):
    co = sched.spawn(yfcore.block)
    sched.run()
    assert sched.find(co.id) is co
    co.wake(None)
    sched.run()


def test_suspended_frame_can_be_inspected(sched):
    def teacher(x):
        y = x * 2
        yfcore.yield_()
        return y

    co = sched.spawn(teacher, 21)
    assert co.frame is None  # not started: no frame yet
    co.resume()
    f = co.frame
    assert f.f_code.co_name == "teacher" and f.f_locals["y"] == 42 and f.f_back is None
    sched.run()
    assert co.frame is None and co.result() == 42


def test_close_unwinds_suspended_bodies(sched):
    log = []

    @contextlib.contextmanager
    def cm(name):
        try:
            yield
        finally:
            log.append("with " + name)

    def body(name, how):
        try:
            with cm(name):
                how()
        finally:
            log.append("finally " + name)

    a = sched.spawn(body, "a", yfcore.yield_)
    b = sched.spawn(body, "b", yfcore.block)
    n = sched.spawn(body, "n", yfcore.yield_)  # never started: cancelled
    a.resume()
    b.resume()
    sched.close()
    assert sorted(log) == ["finally a", "finally b", "with a", "with b"]
    for co in (a, b, n):
        with pytest.raises(CoroutineExit):
            co.result()


def test_dropping_the_last_handle_of_a_blocked_body_unwinds_it(sched):
    log = []

    def body():
        try:
            yfcore.block()
        finally:
            log.append("unwound")

    co = sched.spawn(body)
    sched.run()
    assert log == []
    del co
    gc.collect()
    assert log == ["unwound"] and sched.counts()["live"] == 0
    # A ready body whose handle went still runs to its end.
    sched.spawn(lambda: log.append("ran"))
    sched.run()
    assert log[-1] == "ran"


def test_a_blocked_body_nobody_holds_is_unwound_even_in_a_cycle(sched):
    log = []

    def body(box):
        # A body's own frames are references the collector cannot see:
        # the argument goes, so the cycle below is the handle's alone.
        del box
        try:
            yfcore.block()
        finally:
            log.append("unwound")

    sched.spawn(body, None)            # handle dropped at once
    sched.run()
    assert log == ["unwound"]
    box = []
    box.append(sched.spawn(body, box))  # the handle and its argument in a cycle
    del box
    sched.run()
    assert log == ["unwound"]
    gc.collect()
    assert log == ["unwound", "unwound"] and sched.counts()["live"] == 0


def test_handles_cannot_be_made_copied_or_pickled(sched):
    import copy
    import pickle

    with pytest.raises(TypeError):
        _yfpy.Body()
    with pytest.raises(TypeError):
        PyCoroutine()
    co = sched.spawn(print)
    for how in (copy.copy, copy.deepcopy, pickle.dumps):
        with pytest.raises(TypeError):
            how(co)
    sched.run()


def test_a_body_that_refuses_to_die_keeps_the_scheduler_open():
    s = Scheduler(yfcore.PY_STACK_SIZE)
    refusals = []

    def stubborn():
        while len(refusals) < 5:
            try:
                yfcore.yield_()
            except CoroutineExit:
                refusals.append(1)
        return "gave up"

    co = s.spawn(stubborn)
    co.resume()
    with pytest.raises(RuntimeError, match="did not end"):
        s.close()
    assert not s.closed and len(refusals) == 3
    s.close()
    assert s.closed and co.result() == "gave up"


def test_close_from_inside_a_body_is_refused(sched):
    co = sched.spawn(sched.close)
    sched.run()
    with pytest.raises(RuntimeError, match="during a call in progress"):
        co.result()


def test_exception_state_is_per_body(sched):
    def body():
        try:
            raise KeyError("k")
        except KeyError:
            yfcore.yield_()
            return repr(sys.exc_info()[1])

    def other():
        assert sys.exc_info() == (None, None, None)
        return "clean"

    try:
        raise IndexError("root")
    except IndexError:
        a, b = sched.spawn(body), sched.spawn(other)
        sched.run()
        assert repr(sys.exc_info()[1]) == "IndexError('root')"
    assert a.result() == "KeyError('k')" and b.result() == "clean"


def test_contextvars_are_per_body(sched):
    v = contextvars.ContextVar("v", default=0)

    def body(x):
        before = v.get()
        v.set(x)
        yfcore.yield_()
        return before, v.get()

    v.set(5)
    a, b = sched.spawn(body, 1), sched.spawn(body, 2)
    sched.run()
    assert a.result() == (5, 1) and b.result() == (5, 2) and v.get() == 5


def test_foreign_thread_is_refused(sched):
    co = sched.spawn(yfcore.block)
    sched.run()
    errors = []

    def other():
        for call in (yfcore.yield_, yfcore.block, lambda: sched.spawn(print), lambda: co.wake(1),
                     co.resume, lambda: co.frame):
            try:
                call()
            except RuntimeError as e:
                errors.append(str(e))

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert len(errors) == 6
    assert "outside a Python coroutine" in errors[0] and "belongs to thread" in errors[2]
    co.wake(0)
    sched.run()


def test_other_threads_see_a_consistent_thread_state(sched):
    # Another thread walks every thread's frames as fast as it can while the
    # bodies switch: a frame chain of a stack that is not running, seen
    # between two switches, would crash here.
    stop = threading.Event()
    walks = []

    def walker():
        n = 0
        while not stop.is_set():
            for f in sys._current_frames().values():
                traceback.extract_stack(f)
            n += 1
        walks.append(n)

    def worker(k):
        def deeper(i):
            yfcore.yield_()
            return i

        for i in range(3000):
            deeper(i)
        return k

    t = threading.Thread(target=walker)
    t.start()
    try:
        cos = [sched.spawn(worker, k) for k in range(4)]
        sched.run()
    finally:
        stop.set()
        t.join()
    assert [c.result() for c in cos] == [0, 1, 2, 3] and walks[0] > 0


def test_deep_recursion_is_a_recursion_error(sched):
    class R:
        def __repr__(self):
            return repr(R())

    class G:
        def __getattr__(self, k):
            return getattr(G(), k)

    def pure():
        return pure()

    for fn in (pure, lambda: repr(R()), lambda: G().x):
        co = sched.spawn(fn)
        sched.run()
        with pytest.raises(RecursionError):
            co.result()
    co = sched.spawn(lambda: None)
    assert 100 <= co.recursion_limit <= sys.getrecursionlimit()
    sched.run()


def test_small_stacks_are_refused_for_python_bodies():
    with Scheduler(65536) as s:
        with pytest.raises(ValueError, match="PY_STACK_SIZE"):
            s.spawn(print)
        s.spawn("yield_n", 1)  # C bodies are fine
        s.run()


def test_tracing_and_profiling_see_the_bodies(sched):
    calls = []

    def tracer(frame, event, arg):
        if event == "call":
            calls.append(frame.f_code.co_name)

    def inner():
        return 1

    def traced():
        inner()
        yfcore.yield_()
        inner()
        return 2

    co = sched.spawn(traced)
    sys.settrace(tracer)
    try:
        sched.run()
    finally:
        sys.settrace(None)
    assert co.result() == 2 and calls.count("traced") == 1 and calls.count("inner") == 2

    prof = []
    co = sched.spawn(traced)
    sys.setprofile(lambda f, e, a: prof.append((e, f.f_code.co_name)) if e == "call" else None)
    try:
        sched.run()
    finally:
        sys.setprofile(None)
    assert ("call", "traced") in prof and prof.count(("call", "inner")) == 2

    import cProfile
    import pstats

    p = cProfile.Profile()
    sched.spawn(traced)
    p.enable()
    sched.run()
    p.disable()
    stats = pstats.Stats(p).stats
    assert sum(v[1] for k, v in stats.items() if k[2] == "inner") == 2


def test_nested_resume_from_a_body(sched):
    def child():
        yfcore.yield_()
        return "child"

    def parent():
        c = sched.spawn(child)
        c.resume()
        mid = c.state
        c.resume()
        return mid, c.result(), yfcore.current().id

    p = sched.spawn(parent)
    sched.run()
    assert p.result() == ("ready", "child", p.id)


def test_sleep_and_fd_waits_on_a_loop(sched):
    lp = Loop(sched)
    order = []
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)

    def sleeper(ms):
        yfcore.sleep(ms)
        order.append(ms)

    def reader():
        ready = yfcore.wait_fd(a, 1, 2000)
        return ready, a.recv(10)

    def writer():
        yfcore.sleep(5)
        b.send(b"hi")

    def timeout():
        return yfcore.wait_fd(b.fileno(), 1, 10)

    sched.spawn(sleeper, 20)
    sched.spawn(sleeper, 1)
    r = sched.spawn(reader)
    sched.spawn(writer)
    t = sched.spawn(timeout)
    lp.run()
    assert order == [1, 20] and r.result() == (1, b"hi") and t.result() == 0
    with pytest.raises(RuntimeError, match="needs a body run by a Loop"):
        s2 = Scheduler(yfcore.PY_STACK_SIZE)
        co = s2.spawn(yfcore.sleep, 1)
        s2.run()
        co.result()
    s2.close()
    # A body sleeping on the loop is unwound by close.
    log = []

    def long_sleep():
        try:
            yfcore.sleep(60000)
        finally:
            log.append("woke")

    sched.spawn(long_sleep)
    lp.stop()
    lp.run()
    sched.close()
    assert log == ["woke"]
    a.close()
    b.close()


def _rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def test_no_leak_over_100000_spawns(sched):
    # greenlet's leak checks, for yfcore: the objects the collector tracks
    # and the resident memory stay flat over 100,000 lives (spawn, three
    # yields, exit), after a warm-up that fills the pools.
    def life(x):
        yfcore.yield_()
        yfcore.yield_()
        yfcore.yield_()
        return x

    def batch(n):
        for _ in range(n // 1000):
            handles = [sched.spawn(life, i) for i in range(1000)]
            sched.run()
            assert handles[-1].result() == 999
            del handles

    batch(10000)
    gc.collect()
    objects, rss = len(gc.get_objects()), _rss_kib()
    batch(100000)
    gc.collect()
    assert len(gc.get_objects()) - objects < 100
    assert _rss_kib() - rss < 4096
    c = sched.counts()
    assert c["live"] == 0 and c["created"] == 110000 + 0 and c["stacks_mapped"] <= 1024 + 64
    assert _yfpy.live(sched._addr) == []


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120)


def test_guard_hit_in_a_body_is_reported_with_its_id():
    # list.sort with a key takes 1.7 KB of C stack per level, more than the
    # recursion cap assumes: the guard page stops it and the reporter names
    # the coroutine.
    r = _run("""
        import sys, yfcore
        s = yfcore.Scheduler(yfcore.PY_STACK_SIZE)
        def down():
            return sorted([0], key=lambda x: down())
        co = s.spawn(down)
        print("id", co.id, flush=True)
        s.run()
    """)
    assert r.returncode == -11, r.stderr
    co_id = int(r.stdout.split()[1])
    assert f"coroutine {co_id} overflowed its {262144}-byte stack" in r.stderr


def test_pyswitch_benchmark_shape():
    # The shape `yfcore bench pyswitch --json` prints; timings are the
    # benchmark's business, not a test's.
    from yfcore.lab.bench import run_benchmark

    r = run_benchmark("pyswitch", quick=True, rounds=1)
    for system in ("yf_py", "greenlet", "generator", "asyncio"):
        for metric in ("ns_per_switch", "lives_per_s"):
            s = r[system][metric]
            assert 0 < s["min"] <= s["median"] <= s["max"] and len(s["samples"]) == 1
    assert "provenance" in r and [b["bar"] for b in r["speed_bars"]] == [
        "Python switch: yf_py / greenlet", "Python lives/s: yf_py / greenlet"]


def test_suspended_look_and_saved_fields():
    from yfcore.lab import python_coroutines as pyco

    look = pyco.suspended_look(3)
    assert look["function"] == "_teaching_body" and look["locals"]["i"] == 1 and look["result"] == 3
    assert look["layout"]["guard_end"] < look["saved_sp"] < look["layout"]["top"]
    assert _yfpy.state_ns(1000) > 0
    with pytest.raises(ValueError):
        _yfpy.state_ns(0)
    names = [f[0] for f in pyco.saved_state()]
    assert {"cframe", "current_frame", "depth", "chunk", "exc_info", "context"} <= set(names)


def _other_pythons() -> list[str]:
    import glob
    import shutil

    found = {shutil.which(f"python3.{m}") for m in (10, 12, 13, 14)}
    found |= set(glob.glob(os.path.expanduser("~/.pyenv/versions/3.1[0234].*/bin/python")))
    # One interpreter per version, and only those that run (not launcher shims).
    by_version = {}
    for p in sorted(filter(None, found)):
        r = subprocess.run([p, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True)
        if r.returncode == 0 and "(3, 11)" not in r.stdout:
            by_version.setdefault(r.stdout, p)
    return sorted(by_version.values())


@pytest.mark.parametrize("python", _other_pythons() or [None])
def test_other_versions_build_and_refuse_python_bodies(python, tmp_path):
    # pybody.c compiles on the other CPython versions too (their state is
    # never touched), and spawn refuses with a clear error there.
    if python is None:
        pytest.skip("no CPython other than 3.11 installed here")
    from yfcore import _sources

    info = subprocess.run([python, "-c", "import sysconfig as s; print(s.get_paths()['include']); "
                           "print(s.get_config_var('EXT_SUFFIX'))"], capture_output=True, text=True, check=True)
    include, suffix = info.stdout.split()
    out = tmp_path / f"_yfpy{suffix}"
    subprocess.run(["cc", "-shared", "-fPIC", *_sources.PY_CFLAGS, "-Werror", *[f"-I{d}" for d in
                    _sources.include_dirs()], f"-I{include}", *map(str, _sources.py()), "-o", str(out)],
                   check=True, capture_output=True, text=True)
    r = subprocess.run([python, "-c", "import _yfpy\nassert not _yfpy.supported()\n"
                        "try:\n    _yfpy.spawn(_yfpy.Body, 1, None, print, (), None)\nexcept RuntimeError as e:\n    print(e)"],
                       cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "Python bodies need CPython 3.11" in r.stdout and "C bodies" in r.stdout


def test_other_threads_run_while_the_loop_sleeps(sched):
    import time

    lp = Loop(sched)
    main = threading.get_ident()
    ticks, seen = [], set()
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(1)
            f = sys._current_frames().get(main)
            seen.update(fs.name for fs in traceback.extract_stack(f))
            time.sleep(0.005)

    t = threading.Thread(target=ticker)
    t.start()
    try:
        while not ticks:
            time.sleep(0.001)
        before = len(ticks)
        sched.spawn(yfcore.sleep, 300)
        lp.run()
        during = len(ticks) - before
    finally:
        stop.set()
        t.join()
    # About 60 ticks of 5 ms in 300 ms; with the GIL held through the
    # epoll wait there would be none (the ticker waits for the GIL).
    assert during >= 10
    # What the ticker saw of this thread meanwhile is the frame that called
    # Loop.run (the root's state is installed before the GIL goes).
    assert "test_other_threads_run_while_the_loop_sleeps" in seen


def test_ctrl_c_ends_the_run(sched):
    # A SIGINT lands in whichever body runs; the run ends with
    # KeyboardInterrupt instead of going on without that body.
    import signal

    log = []

    def spinner(k):
        try:
            while True:
                yfcore.yield_()
        finally:
            log.append(k)

    def trigger():
        yfcore.yield_()
        signal.raise_signal(signal.SIGINT)
        while True:
            yfcore.yield_()

    cos = [sched.spawn(spinner, k) for k in range(3)]
    t = sched.spawn(trigger)
    with pytest.raises(KeyboardInterrupt):
        sched.run()
    assert sorted(log) == [0, 1, 2] and all(c.done for c in cos + [t])
    with pytest.raises(KeyboardInterrupt):
        t.result()
    # The scheduler goes on working.
    assert sched.spawn(lambda: 7).resume() is None and sched.counts()["live"] == 0


def test_generators_and_asyncio_inside_bodies(sched):
    # A generator's frame joins the body's frame chain while it runs, so a
    # yield_() inside it suspends the whole body; asyncio runs its own loop
    # on the body's stack.
    import asyncio

    def gen():
        for i in range(3):
            yfcore.yield_()
            yield i

    def other():
        for _ in range(5):
            yfcore.yield_()
        return "other"

    async def coro():
        await asyncio.sleep(0)
        return 5

    a, b = sched.spawn(lambda: list(gen())), sched.spawn(other)
    c = sched.spawn(asyncio.run, coro())
    sched.run()
    assert (a.result(), b.result(), c.result()) == ([0, 1, 2], "other", 5)


def test_echo_servers_answer_the_c_client():
    # Each server in its own process, driven by csrc/programs/echo_load.c,
    # which exits 1 when an echo differs from what it sent.
    from yfcore.lab import python_coroutines as pyco

    res = pyco.echo(conns=4, requests=50, rounds=1)
    assert set(res) == {"yfcore", "asyncio", "gevent"}
    for kind, r in res.items():
        if "skipped" in r:
            assert kind == "gevent"
            continue
        assert r["per_second"]["n"] == 1 and r["per_second"]["median"] > 0, kind
        assert 0 < r["p50_us"]["median"] <= r["p99_us"]["median"], kind
