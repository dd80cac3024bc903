"""What the C runtime's robustness fixes look like from Python, each in a
subprocess (crashes and signals must not touch the test process): signals
interrupt blocking calls, a closed peer gives EPIPE and no SIGPIPE death, a
failed huge reserve gives its memory back, a wait on a closed fd ends with
EBADF, and the guard reporter tells faults from sent signals and survives a
Python handler installed before or after it."""
import signal
import subprocess
import sys
import textwrap

import pytest

REPORT = "overflowed its"


def run(code: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout)


def test_sigint_interrupts_recv_from_within_100ms():
    cp = run("""
        import os, signal, socket, threading, time
        from yfcore import SockBuf
        a, b = socket.socketpair()
        sent = []
        def later():
            time.sleep(0.3)
            sent.append(time.monotonic())
            os.kill(os.getpid(), signal.SIGINT)
        threading.Thread(target=later, daemon=True).start()
        try:
            SockBuf().recv_from(a)
        except KeyboardInterrupt:
            print("interrupted after", time.monotonic() - sent[0])
    """)
    assert cp.returncode == 0, cp.stderr
    assert "interrupted after" in cp.stdout, cp.stdout + cp.stderr
    assert float(cp.stdout.split()[-1]) < 0.1


def test_a_handler_that_does_not_raise_lets_recv_from_go_on():
    cp = run("""
        import signal, socket, threading, time
        from yfcore import SockBuf
        a, b = socket.socketpair()
        seen = []
        signal.signal(signal.SIGALRM, lambda *_: seen.append(1))
        signal.setitimer(signal.ITIMER_REAL, 0.05, 0.05)
        threading.Timer(0.4, lambda: b.send(b"late")).start()
        sb = SockBuf()
        n = sb.recv_from(a)
        signal.setitimer(signal.ITIMER_REAL, 0)
        print(n, sb.read(), len(seen) >= 2)
    """)
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.split() == ["4", "b'late'", "True"]


@pytest.mark.parametrize("kind", ["socket", "pipe"])
def test_send_to_a_closed_peer_with_sigpipe_at_default_raises(kind):
    cp = run(f"""
        import os, signal, socket
        from yfcore import SockBuf
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        if {kind!r} == "socket":
            a, b = socket.socketpair(); b.close(); fd = a
        else:
            r, fd = os.pipe(); os.close(r)
        sb = SockBuf()
        sb.write(b"hello")
        try:
            sb.send_to(fd)
        except BrokenPipeError:
            print("EPIPE", len(sb))
    """)
    assert cp.returncode == 0, (cp.returncode, cp.stderr)
    assert cp.stdout.split() == ["EPIPE", "5"]


def test_failed_huge_reserve_gives_back_its_chunks():
    cp = run("""
        import resource
        from yfcore import SockBuf
        sb = SockBuf(chunk_size=1 << 20)
        sb.write(b"kept")
        before = sb.stats()
        with open("/proc/self/statm") as f:
            vm = int(f.read().split()[0]) * resource.getpagesize()
        resource.setrlimit(resource.RLIMIT_AS, (vm + (512 << 20), resource.RLIM_INFINITY))
        try:
            sb.reserve(2**34)
        except MemoryError:
            after = sb.stats()
            print(after["chunk_allocs"] > before["chunk_allocs"], after["capacity"] == before["capacity"],
                  after["chunks"] == before["chunks"], sb.read())
    """)
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.split() == ["True", "True", "True", "b'kept'"]


def test_closing_a_socket_a_task_waits_on_ends_the_wait():
    cp = run("""
        import socket, threading, time
        from yfcore import Loop, Scheduler
        s = Scheduler(); lp = Loop(s)
        a, b = socket.socketpair()
        t = lp.spawn("wait", a.fileno(), 1, 60_000)   # without the fix: 60 s, past the timeout
        threading.Timer(0.05, a.close).start()
        t0 = time.monotonic()
        lp.run()
        try:
            t.result()
        except OSError as e:
            print("errno", e.errno, time.monotonic() - t0 < 5)
    """, timeout=30)
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.split() == ["errno", "9", "True"]


def test_sigsegv_sent_with_kill_is_not_swallowed():
    cp = run("""
        import os, signal
        from yfcore import Scheduler
        s = Scheduler()
        os.kill(os.getpid(), signal.SIGSEGV)
        print("survived")
    """)
    assert cp.returncode == -signal.SIGSEGV, (cp.returncode, cp.stdout, cp.stderr)
    assert "survived" not in cp.stdout and REPORT not in cp.stderr


@pytest.mark.parametrize("when", ["before", "after"])
def test_overflow_reported_with_faulthandler_installed(when):
    """faulthandler enabled before the scheduler is chained to after the report
    (it adds the Python traceback); enabled after one, it is chained to by the
    next scheduler, which takes SIGSEGV back."""
    cp = run(f"""
        import faulthandler
        from yfcore import Scheduler
        from yfcore._yfcore import ffi, lib
        if {when!r} == "before":
            faulthandler.enable()
        s = Scheduler(stack_size=65536)
        if {when!r} == "after":
            faulthandler.enable()
            s = Scheduler(stack_size=65536)
        # Python offers no overflowing body (it must not crash): the C demo, directly.
        co = lib.yf_co_create(s._h, lib.yf_demo_overflow, ffi.cast("void *", 1 << 20))
        print("id", lib.yf_co_id(co), flush=True)
        lib.yf_co_resume(co)
    """)
    assert cp.returncode == -signal.SIGSEGV, (cp.returncode, cp.stderr)
    coid = cp.stdout.split()[1]
    assert cp.stderr.count(f"yfcore: coroutine {coid} {REPORT}") == 1, cp.stderr
    assert "Fatal Python error: Segmentation fault" in cp.stderr, cp.stderr


def test_a_python_fault_handler_that_recovers_keeps_the_reporter():
    """A foreign fault handed to the handler that was there before; it
    recovers (here: a SIGSEGV sent to the process, caught by a Python
    handler), and the next overflow is still reported."""
    cp = run("""
        import os, signal
        from yfcore import Scheduler
        from yfcore._yfcore import ffi, lib
        caught = []
        signal.signal(signal.SIGSEGV, lambda *_: caught.append(1))
        s = Scheduler(stack_size=65536)
        os.kill(os.getpid(), signal.SIGSEGV)
        os.kill(os.getpid(), signal.SIGSEGV)
        print("caught", len(caught), flush=True)
        co = lib.yf_co_create(s._h, lib.yf_demo_overflow, ffi.cast("void *", 1 << 20))
        print("id", lib.yf_co_id(co), flush=True)
        lib.yf_co_resume(co)
    """)
    assert "caught 2" in cp.stdout, (cp.stdout, cp.stderr)
    coid = cp.stdout.split()[-1]
    assert f"yfcore: coroutine {coid} {REPORT}" in cp.stderr, cp.stderr
    assert cp.returncode != 0
