"""Notebook 10, Python functions as coroutines: the switch and the life of a
Python body on yfcore's stacks against greenlet (which copies slices of one
C stack to the heap and back), generators and asyncio, all from Python.

Every competitor runs in the same process, interleaved and repeated
(bench.interleaved); a switch is one-way (from one Python coroutine to
another), a life is spawn + 3 x (yield, resume) + exit, driven from Python
one resume at a time for every system.
"""
import asyncio
import concurrent.futures
import inspect
import time

from .bench import interleaved, sizes as _sizes
from .context_switch import _asyncio_round, _gen_round, _greenlet_round
from .provenance import provenance
from .stats import ratio as lab_ratio, summary

__all__ = ["SYSTEMS", "pyswitch", "pyswitch_bars", "saved_state", "switch_parts", "evidence", "suspended_look",
           "echo", "echo_bench", "ECHO_SIZES"]

SYSTEMS = ("yf_py", "greenlet", "generator", "asyncio")


def _sched():
    import yfcore

    return yfcore.Scheduler(yfcore.PY_STACK_SIZE)


# ---- one-way switches (ns) ---------------------------------------------------

def _yf_switch(sched, n: int) -> float:
    import yfcore

    y = yfcore.yield_

    def pingpong():
        for _ in range(n):
            y()
    sched.spawn(pingpong)
    sched.spawn(pingpong)
    t = time.perf_counter_ns()
    sched.run()
    return (time.perf_counter_ns() - t) / (2 * n)


# greenlet (a greenlet and the main one), generators (a generator and its
# caller) and asyncio (a task and the loop, through sleep(0)): notebook 01's
# rounds, the same code.
_greenlet_switch, _gen_switch, _asyncio_switch = _greenlet_round, _gen_round, _asyncio_round


# ---- lives per second --------------------------------------------------------

def _rate(m: int, one_life) -> float:
    """Lives per second of m calls of one_life (each one whole life)."""
    t = time.perf_counter_ns()
    for _ in range(m):
        one_life()
    return m * 1e9 / (time.perf_counter_ns() - t)


def _stackful_lives(m: int, start, suspend) -> float:
    """Lives per second of a body that suspends three times, each life
    started by start(body) (which returns the resume call) and resumed four
    times from here: the same code for yfcore and greenlet."""
    def body():
        suspend()
        suspend()
        suspend()

    def life():
        resume = start(body)
        resume()
        resume()
        resume()
        resume()
    return _rate(m, life)


def _yf_lives(sched, m: int) -> float:
    import yfcore

    return _stackful_lives(m, lambda body: sched.spawn(body).resume, yfcore.yield_)


def _greenlet_lives(m: int) -> float:
    import greenlet

    return _stackful_lives(m, lambda body: greenlet.greenlet(body).switch, greenlet.getcurrent().switch)


def _gen_lives(m: int) -> float:
    def body():
        yield
        yield
        yield

    def life():
        for _ in body():
            pass
    return _rate(m, life)


def _in_thread(coro):
    # A thread of its own: inside Jupyter this thread already runs a loop.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _asyncio_lives(m: int) -> float:
    async def body():
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    async def lives():
        loop = asyncio.get_running_loop()
        t = time.perf_counter_ns()
        for _ in range(m):
            await loop.create_task(body())
        return time.perf_counter_ns() - t
    return m * 1e9 / _in_thread(lives())


def pyswitch(quick: bool | None = None, progress: bool = False, rounds: int | None = None) -> dict:
    """ns per one-way switch between two Python coroutines and lives per
    second (spawn + 3 x (yield, resume) + exit, from Python), for yfcore's
    Python bodies (yf_py), greenlet, generators and asyncio, interleaved in
    one process: {system: {"ns_per_switch": summary, "lives_per_s": summary},
    "provenance": ...}, each summary with its per-round "samples"."""
    n = _sizes("switch", quick)["python"]
    m = n // 4
    sched = _sched()
    comp = {
        ("yf_py", "ns_per_switch"): lambda: _yf_switch(sched, n),
        ("yf_py", "lives_per_s"): lambda: _yf_lives(sched, m),
        ("greenlet", "ns_per_switch"): lambda: _greenlet_switch(n),
        ("greenlet", "lives_per_s"): lambda: _greenlet_lives(m),
        ("generator", "ns_per_switch"): lambda: _gen_switch(n),
        ("generator", "lives_per_s"): lambda: _gen_lives(m),
        ("asyncio", "ns_per_switch"): lambda: _asyncio_switch(n // 4),
        ("asyncio", "lives_per_s"): lambda: _asyncio_lives(m // 4),
    }
    try:
        samples = interleaved({f"{s} {k}": f for (s, k), f in comp.items()}, rounds=rounds, progress=progress)
    finally:
        sched.close()
    out = {s: {} for s in SYSTEMS}
    for (s, k) in comp:
        xs = samples[f"{s} {k}"]
        out[s][k] = summary(xs) | {"samples": xs}
    out["provenance"] = provenance(quick=quick)
    return out


def _pair(result: dict, a: str, b: str, metric: str) -> float:
    return lab_ratio(result[a][metric]["samples"], result[b][metric]["samples"])["median"]


def pyswitch_bars(result: dict) -> list[tuple[str, float, str]]:
    """The project's speed bars on a pyswitch() result: (bar, measured, wanted)."""
    return [("Python switch: yf_py / greenlet", _pair(result, "yf_py", "greenlet", "ns_per_switch"), "<= 0.5"),
            ("Python lives/s: yf_py / greenlet", _pair(result, "yf_py", "greenlet", "lives_per_s"), ">= 3")]


def saved_state() -> list[tuple[str, int, int]]:
    """What each switch into or out of a Python body saves and restores of
    CPython's per-thread state, from the C module: (field, offset, bytes)."""
    from .. import _yfpy

    return _yfpy.saved_fields()


def switch_parts(quick: bool | None = None, rounds: int | None = None, progress: bool = False) -> dict:
    """Where the nanoseconds of a Python body's switch go, each measured on
    its own, interleaved: one empty built-in call from Python (the floor of
    calling yield_()), one empty cffi call (what a cffi-based switch would
    pay, GIL release included), one save and restore of the interpreter
    state (in C), yfcore's C switch through its scheduler (measured in C),
    and the whole yield_() switch between two bodies."""
    from ..labkernels import lib
    from .bench import STACK

    n = _sizes("switch", quick)["python"]
    nc = _sizes("switch", quick)["switch"]
    sched = _sched()

    def builtin_call() -> float:
        f = len
        x = ()
        t = time.perf_counter_ns()
        for _ in range(n):
            f(x)
        return (time.perf_counter_ns() - t) / n

    def cffi_call() -> float:
        nop = lib.yf_bench_nop
        t = time.perf_counter_ns()
        for _ in range(n):
            nop()
        return (time.perf_counter_ns() - t) / n

    from .. import _yfpy

    comp = {
        "empty built-in call": builtin_call,
        "empty cffi call": cffi_call,
        "state save + restore (in C)": lambda: _yfpy.state_ns(nc),
        "C switch (scheduler, in C)": lambda: lib.yf_bench_switch_yf(nc, 0, STACK, 0) / (2 * nc),
        "yield_() between two bodies": lambda: _yf_switch(sched, n),
    }
    try:
        samples = interleaved(comp, rounds=rounds, progress=progress)
    finally:
        sched.close()
    return {k: summary(v) | {"samples": v} for k, v in samples.items()}


def evidence(result: dict) -> dict:
    """Evidence of py-switch-vs-greenlet from a pyswitch() result."""
    from .stats import ratio_samples

    yf, gl = result["yf_py"], result["greenlet"]
    return {"switch_ratio": ratio_samples(yf["ns_per_switch"]["samples"], gl["ns_per_switch"]["samples"]),
            "life_ratio": ratio_samples(yf["lives_per_s"]["samples"], gl["lives_per_s"]["samples"]),
            "yf_ns": yf["ns_per_switch"], "greenlet_ns": gl["ns_per_switch"],
            "yf_lives": yf["lives_per_s"], "greenlet_lives": gl["lives_per_s"]}


def _teaching_body(n: int):
    """The body the notebook suspends and looks into."""
    import yfcore

    total = 0
    for i in range(n):
        total += i
        yfcore.yield_()
    return total


def suspended_look(n: int = 3) -> dict:
    """A Python body suspended in its second yield, seen from outside: its
    frame (function, line, locals, the frame above it), its stack slot's
    addresses and the C frame its switch left, then its result."""
    import yfcore

    with _sched() as sched:
        co = sched.spawn(_teaching_body, n)
        co.resume()
        co.resume()
        f = co.frame
        look = {"state": co.state, "function": f.f_code.co_name, "line": f.f_lineno - f.f_code.co_firstlineno,
                "locals": {k: v for k, v in f.f_locals.items() if not inspect.ismodule(v)}, "frame above": f.f_back,
                "recursion_limit": co.recursion_limit, "layout": co.stack_layout(),
                "saved_sp": co.saved_frame()["sp"], "switches": co.switches}
        sched.run()
        look["result"] = co.result()
        look["stack_size"] = sched.stack_size
    return look


# ---- interop: an echo server ---------------------------------------------------

# (connections, round trips per connection) of the notebook and the benchmark.
ECHO_SIZES = {"quick": (20, 500), "full": (50, 4000)}

def _echo_round(kind: str, client, conns: int, requests: int, size: int) -> dict:
    """One run of echo_load against a fresh server process of `kind`."""
    import subprocess
    import sys

    from .toolchain import describe_exit, json_lines, run_program

    server = subprocess.Popen([sys.executable, "-m", "yfcore.lab.echo_servers", kind],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline().strip()
        if not line.isdigit():
            server.kill()
            raise RuntimeError(f"the {kind} echo server did not start: {server.communicate()[1].strip()[-2000:]}")
        cp = run_program(client, line, conns, requests, size, timeout=300)
        if cp.returncode != 0:
            raise RuntimeError(f"echo_load against {kind}: {describe_exit(cp)}: {cp.stderr.strip()}")
        return json_lines(cp.stdout)[0]
    finally:
        if server.poll() is None:
            server.kill()
        server.wait()


def echo(conns: int = 50, requests: int = 2000, size: int = 64, rounds: int | None = None,
         progress: bool = False) -> dict:
    """Echo servers written as Python bodies on yfcore's loop, with asyncio
    streams and with gevent (yfcore.lab.echo_servers), each in a process of
    its own, driven by the same bounded C client (csrc/programs/echo_load.c:
    `conns` connections, `requests` round trips of `size` bytes each, one
    outstanding per connection) over loopback; rounds interleaved, a fresh
    server each time. {kind: {"per_second": summary with "samples",
    "p50_us", "p99_us": summaries}} ({"skipped": reason} for gevent when it
    is not installed)."""
    import importlib.util

    from .echo_servers import KINDS
    from .toolchain import compile_program

    client = compile_program("echo_load")
    kinds = [k for k in KINDS if k != "gevent" or importlib.util.find_spec("gevent")]
    runs = {k: [] for k in kinds}

    def runner(kind):
        def run():
            runs[kind].append(_echo_round(kind, client, conns, requests, size))
            return runs[kind][-1]["per_second"]
        return run

    interleaved({k: runner(k) for k in kinds}, rounds=rounds, warmup=1, progress=progress)
    out = {}
    for k in KINDS:
        if k not in kinds:
            out[k] = {"skipped": "gevent is not installed (pip install gevent)"}
            continue
        kept = runs[k][1:]
        out[k] = {m: summary([r[m] for r in kept]) | {"samples": [r[m] for r in kept]}
                  for m in ("per_second", "p50_us", "p99_us")}
    return out


def echo_bench(quick: bool | None = None, progress: bool = False, rounds: int | None = None) -> dict:
    """`yfcore bench echo`: echo() at the notebook's sizes, with provenance."""
    from .bench import quick as quick_mode

    q = quick_mode() if quick is None else quick
    out = echo(*ECHO_SIZES["quick" if q else "full"], rounds=rounds, progress=progress)
    out["provenance"] = provenance(quick=quick)
    return out
