"""The event loop from Python: sleeps and fd waits never end early, echo
pairs over socketpairs and TCP loopback in one loop, stop, EDEADLK, signals,
and bad input raising clean exceptions."""
import errno
import signal
import socket
import time

import pytest

from yfcore.loop import EVENTS, LOOP_DEMOS, TIMEOUT_MAX_MS, Loop
from yfcore.runtime import Scheduler

MS = 1_000_000


@pytest.fixture
def lp():
    with Scheduler() as s:
        with Loop(s) as lp:
            yield lp


def _pair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    return a, b


@pytest.fixture
def pair():
    a, b = _pair()
    with a, b:
        yield a, b


def _waits(lp, *waits):
    """A "wait" body per (fd, events, timeout_ms), then one run of the loop; the tasks."""
    tasks = [lp.spawn("wait", *w) for w in waits]
    lp.run()
    return tasks


def _tcp_pair(listener):
    c = socket.create_connection(listener.getsockname())
    s, _ = listener.accept()
    for sock in (c, s):
        sock.setblocking(False)
        # Without it Nagle holds each echo's tail back for a delayed ACK.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s, c


def test_sleeps_never_end_early(lp):
    wanted = [0, 1, 3, 7, 20, 35]
    tasks = [lp.spawn("sleep", ms) for ms in wanted]
    t0 = time.monotonic_ns()
    assert lp.run() == 2 * len(wanted)
    assert time.monotonic_ns() - t0 >= max(wanted) * MS
    for ms, t in zip(wanted, tasks):
        assert t.result() >= ms * MS, f"sleep({ms}) ended early"
    c = lp.counts()
    assert c["timers_fired"] == len(wanted) and c["wakeups"] == len(wanted)
    assert c["sleeping"] == 0 and c["waiting_fds"] == 0
    # The loop sleeps in epoll_wait until the next timer; a spinning loop
    # would count thousands of iterations over 35 ms.
    assert c["iterations"] <= 3 * len(wanted)
    assert lp.now > 0


def test_wait_times_out_never_early_and_sees_ready_fds(lp, pair):
    a, b = pair
    idle, writable = _waits(lp, (a, "r", 25), (a, "w", 5000))
    events, ns = idle.result()
    assert events == 0 and ns >= 25 * MS
    events, ns = writable.result()
    assert events == EVENTS["w"]
    b.send(b"x")
    ready, both = _waits(lp, (a.fileno(), EVENTS["r"], 0), (b, "rw", None))
    assert ready.result()[0] == EVENTS["r"]
    assert both.result()[0] == EVENTS["w"]


def test_same_fd_and_direction_twice_is_eexist(lp, pair):
    a, _ = pair
    first, second = _waits(lp, (a, "r", 20), (a, "r", 20))
    assert first.result()[0] == 0
    with pytest.raises(OSError) as e:
        second.result()
    assert e.value.errno == errno.EEXIST


def test_echo_pairs_over_socketpairs_and_tcp_in_one_loop(lp):
    n_pairs, n_msgs = 24, 30
    socks, tasks = [], []
    with socket.create_server(("127.0.0.1", 0), backlog=n_pairs) as listener:
        for i in range(2 * n_pairs):
            srv, cli = _pair() if i < n_pairs else _tcp_pair(listener)
            socks += [srv, cli]
            size = 1 + (i * 997) % 12000
            tasks.append((size, lp.spawn("echo", srv), lp.spawn("client", cli, n_msgs, size)))
    try:
        assert lp.run() > 4 * n_pairs
        for size, echo, client in tasks:
            assert client.result() == n_msgs
            assert echo.result() == n_msgs * size
        assert lp.counts()["events"] > 0
    finally:
        for sock in socks:
            sock.close()


def test_client_sees_a_peer_that_closes(lp):
    a, b = _pair()
    with a:
        b.close()
        t = lp.spawn("client", a, 3, 100)
        lp.run()
        with pytest.raises(OSError) as e:
            t.result()
        assert e.value.errno in (errno.EPIPE, errno.ECONNRESET)


def test_stop_from_a_coroutine_then_resume(lp):
    slow = lp.spawn("sleep", 300)
    stopper = lp.spawn("stop", 10)
    t0 = time.monotonic_ns()
    lp.run()
    assert 10 * MS <= time.monotonic_ns() - t0 < 250 * MS
    assert stopper.result() == 0
    assert slow.state == "blocked" and lp.counts()["sleeping"] == 1
    with pytest.raises(OSError) as e:
        lp.close()
    assert e.value.errno == errno.EBUSY
    lp.run()
    assert slow.result() >= 300 * MS


def test_stop_before_run_does_one_iteration(lp):
    t = lp.spawn("sleep", 200)
    lp.stop()
    t0 = time.monotonic_ns()
    assert lp.run() == 1
    assert time.monotonic_ns() - t0 < 150 * MS
    assert lp.counts()["iterations"] == 1
    assert t.state == "blocked"
    lp.run()
    assert t.result() >= 200 * MS


def test_coroutines_blocked_outside_the_loop_are_a_deadlock(lp):
    co = lp.sched.spawn("block_once")
    with pytest.raises(OSError) as e:
        lp.run()
    assert e.value.errno == errno.EDEADLK
    co.wake(co.token, 5)
    assert lp.run() == 1
    assert co.reap() == 5


def test_a_signal_handler_runs_and_its_exception_ends_run(lp):
    class Interrupted(Exception):
        pass

    def handler(signum, frame):
        raise Interrupted

    old = signal.signal(signal.SIGALRM, handler)
    try:
        t = lp.spawn("sleep", 150)
        signal.setitimer(signal.ITIMER_REAL, 0.02)
        with pytest.raises(Interrupted):
            lp.run()
        assert t.state == "blocked"
        lp.run()
        assert t.result() >= 150 * MS
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_a_signal_whose_handler_returns_does_not_end_run(lp):
    seen = []
    old = signal.signal(signal.SIGALRM, lambda *a: seen.append(1))
    try:
        t = lp.spawn("sleep", 100)
        signal.setitimer(signal.ITIMER_REAL, 0.02)
        lp.run()
        assert seen == [1]
        assert t.result() >= 100 * MS
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_bad_input_raises_clean_exceptions(lp, tmp_path):
    a, b = _pair()
    closed, other = _pair()
    closed_fd = closed.fileno()
    closed.close()
    other.close()
    with a, b:
        with pytest.raises(ValueError, match="fd"):
            lp.spawn("wait", -1, "r", 10)
        with pytest.raises(OSError) as e:
            lp.spawn("wait", closed_fd, "r", 10)
        assert e.value.errno == errno.EBADF
        with pytest.raises(ValueError, match="fd"):
            lp.spawn("wait", 2**40, "r", 10)
        with pytest.raises(TypeError, match="fd"):
            lp.spawn("wait", "3", "r", 10)
        for bad in (-1, -10**9, 2**34, TIMEOUT_MAX_MS * 10):
            with pytest.raises(ValueError, match="timeout_ms"):
                lp.spawn("wait", a, "r", bad)
        for bad in (1.5, True, "10"):
            with pytest.raises(TypeError, match="timeout_ms"):
                lp.spawn("wait", a, "r", bad)
        for bad in ("x", 2, 0, True, None):
            with pytest.raises(ValueError, match="events"):
                lp.spawn("wait", a, bad, 10)
        for bad in (-1, TIMEOUT_MAX_MS + 1):
            with pytest.raises(ValueError, match="ms"):
                lp.spawn("sleep", bad)
        with pytest.raises(ValueError, match="size"):
            lp.spawn("client", a, 1, 0)
        with pytest.raises(ValueError, match="size"):
            lp.spawn("client", a, 1, 16385)
        with pytest.raises(ValueError, match="n must"):
            lp.spawn("client", a, -1, 10)
        f = tmp_path / "file"
        f.write_bytes(b"")
        with open(f, "rb") as fh:
            with pytest.raises(ValueError, match="not a socket"):
                lp.spawn("echo", fh)
            # A regular file is always ready, as poll(2) reports it.
            t = lp.spawn("wait", fh, "rw", None)
            lp.run()
            assert t.result()[0] == EVENTS["rw"]
        with pytest.raises(ValueError, match="unknown loop body"):
            lp.spawn("nope", 1)
        with pytest.raises(TypeError, match="takes 3"):
            lp.spawn("client", a)
    assert lp.counts()["waiting_fds"] == 0
    assert sorted(LOOP_DEMOS) == ["client", "echo", "sleep", "stop", "wait"]


def test_fd_closed_while_a_wait_body_is_queued_fails_cleanly(lp):
    a, b = _pair()
    t = lp.spawn("wait", a, "r", 10)
    a.close()
    b.close()
    lp.run()
    with pytest.raises(OSError) as e:
        t.result()
    assert e.value.errno == errno.EBADF


def test_one_loop_per_scheduler_and_closed_scheduler():
    s = Scheduler()
    lp = Loop(s)
    with pytest.raises(ValueError, match="already has a loop"):
        Loop(s)
    with pytest.raises(TypeError):
        Loop(object())
    s.close()
    with pytest.raises(ValueError, match="scheduler is closed"):
        lp.run()
    with pytest.raises(ValueError, match="scheduler is closed"):
        lp.spawn("sleep", 1)
    lp.close()
    lp.close()
    with pytest.raises(ValueError, match="loop is closed"):
        lp.run()
    # Freeing the loop frees its place: the scheduler may have a new one.
    with Scheduler() as s2:
        Loop(s2).close()
        Loop(s2).close()


def test_plain_scheduler_run_does_not_give_loop_bodies_a_loop(lp):
    t = lp.spawn("sleep", 1)
    assert lp.sched.run() == 1
    with pytest.raises(OSError) as e:
        t.result()
    assert e.value.errno == errno.EPERM
