"""Benchmarks of the runtime against its anchors, each competitor measured in
the same process run, interleaved and repeated (see bench.interleaved).

Every C kernel runs n iterations per call and returns elapsed nanoseconds, so
a round costs one cffi call per competitor. `yfcore bench NAME` runs the
functions in BENCHMARKS.
"""
import asyncio
import concurrent.futures
import os
import time

from .bench import interleaved, quick as _quick_env
from .provenance import provenance
from .stats import ratio as lab_ratio, summary

__all__ = [
    "BENCHMARKS", "STACK", "VARIANTS", "sizes", "switch", "create", "ablation",
    "python_switches", "stack_costs", "cpu_share", "flat", "skipped", "speed_bars", "frame_table",
]

# The diary's coroutines had 64 KiB stacks; every competitor gets the same.
STACK = 65536

VARIANTS = {
    "full (default)": 0, "full, ret": 1, "full, x87 CW always": 2,
    "full, MXCSR compared": 3, "no FP state": 4, "no FP state, ret": 5,
}


def _lib():
    from .._yfcore import lib
    return lib


def sizes(quick: bool | None = None) -> dict:
    """Iterations per call for each kernel: fast ones run more, ucontext less; quick mode /10."""
    q = _quick_env() if quick is None else quick
    d = 10 if q else 1
    return {"switch": 1_000_000 // d, "switch_slow": 100_000 // d,
            "create": 200_000 // d, "create_slow": 20_000 // d,
            "python": 200_000 // d, "stack": 200_000 // d, "stack_mmap": 20_000 // d}


def _checked(ns: float, what: str) -> float:
    if ns < 0:
        from .._yfcore import ffi
        raise OSError(ffi.errno, f"{what}: {os.strerror(ffi.errno)}")
    return ns


def _per_switch(kernel, n: int, *args):
    """A competitor: one call of a switch kernel, in ns per one-way switch."""
    return lambda: _checked(kernel(n, *args), kernel.__name__) / (2 * n)


def _per_second(kernel, n: int, *args):
    """A competitor: one call of a coroutine-life kernel, in lives per second."""
    return lambda: n / (_checked(kernel(n, *args), kernel.__name__) / 1e9)


def _summaries(samples: dict[str, list[float]]) -> dict[str, dict]:
    return {name: summary(xs) | {"samples": xs} for name, xs in samples.items()}


def _contest(comp: dict, boost, metric: str, quick, rounds, progress) -> dict:
    """Runs comp plus Boost's competitor when its library loads; the result in
    the `yfcore bench` shape, a skipped Boost saying why."""
    if _boost():
        comp["boost_fcontext"] = boost
    samples = interleaved(comp, rounds=rounds, progress=progress)
    out = {name: {metric: summary(xs), "samples": xs} for name, xs in samples.items()}
    if "boost_fcontext" not in out:
        out["boost_fcontext"] = {"skipped": "libboost_context not found (apt-get install libboost-context-dev)"}
    out["provenance"] = provenance(quick=quick)
    return out


def _boost():
    from ..runtime import boost_context_path
    return boost_context_path()


def switch(quick: bool | None = None, progress: bool = False, rounds: int | None = None) -> dict:
    """One-way switch (resume + yield round trip / 2) in ns: yfcore through its
    scheduler (default and FP-fast mode) and bare (yf_raw*), glibc ucontext,
    Boost fcontext."""
    lib = _lib()
    n = sizes(quick)
    fast, slow = n["switch"], n["switch_slow"]
    comp = {
        "yf": _per_switch(lib.yf_bench_switch_yf, fast, 0, STACK, 0),
        "yf_fpfast": _per_switch(lib.yf_bench_switch_yf, fast, lib.YF_SCHED_FPFAST, STACK, 0),
        # The bare switch between two contexts, without the scheduler: what
        # Boost's and ucontext's figures are, and what the scheduler adds.
        "yf_raw": _per_switch(lib.yf_bench_ctx, fast, lib.YF_CTX_FULL, 0),
        "yf_raw_fpfast": _per_switch(lib.yf_bench_ctx, fast, lib.YF_CTX_NOFP, 0),
        "ucontext": _per_switch(lib.yf_bench_switch_ucontext, slow, STACK),
    }
    boost = _per_switch(lib.yf_bench_switch_fcontext, fast, STACK)
    return _contest(comp, boost, "ns_per_switch", quick, rounds, progress)


def create(quick: bool | None = None, progress: bool = False, rounds: int | None = None) -> dict:
    """Coroutine lives per second: create + 3 x (resume, yield) + exit (+ reap).
    yfcore with pooled guarded stacks through its scheduler; ucontext and Boost
    fcontext with malloc'ed stacks."""
    lib = _lib()
    n = sizes(quick)
    fast, slow = n["create"], n["create_slow"]
    comp = {
        "yf": _per_second(lib.yf_bench_create_yf, fast, 0, STACK),
        "yf_fpfast": _per_second(lib.yf_bench_create_yf, fast, lib.YF_SCHED_FPFAST, STACK),
        "ucontext": _per_second(lib.yf_bench_create_ucontext, slow, STACK),
    }
    boost = _per_second(lib.yf_bench_create_fcontext, fast, STACK)
    return _contest(comp, boost, "per_second", quick, rounds, progress)


def ablation(depths=(0, 8), quick: bool | None = None, rounds: int | None = None, progress: bool = False) -> dict:
    """ns per one-way raw switch for each variant of ctx_x86_64.S at each call depth
    the coroutine side yields from, plus the scheduler's modes; keys "variant @ depth"."""
    lib = _lib()
    n = sizes(quick)["switch"]
    comp = {f"{name} @ {d}": _per_switch(lib.yf_bench_ctx, n, v, d)
            for name, v in VARIANTS.items() for d in depths}
    comp["scheduler, default @ 0"] = _per_switch(lib.yf_bench_switch_yf, n, 0, STACK, 0)
    comp["scheduler, trace on @ 0"] = _per_switch(lib.yf_bench_switch_yf, n, 0, STACK, 4096)
    comp["scheduler, FP-fast @ 0"] = _per_switch(lib.yf_bench_switch_yf, n, lib.YF_SCHED_FPFAST, STACK, 0)
    return _summaries(interleaved(comp, rounds=rounds, progress=progress))


def _gen_round(n: int) -> float:
    def gen():
        while True:
            yield
    g = gen()
    next(g)
    t = time.perf_counter_ns()
    for _ in range(n):
        next(g)
    return (time.perf_counter_ns() - t) / (2 * n)


def _greenlet_round(n: int) -> float:
    import greenlet

    main = greenlet.getcurrent()

    def body():
        while True:
            main.switch()
    g = greenlet.greenlet(body)
    g.switch()
    t = time.perf_counter_ns()
    for _ in range(n):
        g.switch()
    el = time.perf_counter_ns() - t
    g.throw(greenlet.GreenletExit)
    return el / (2 * n)


def _asyncio_round(n: int) -> float:
    async def spin():
        t = time.perf_counter_ns()
        for _ in range(n):
            await asyncio.sleep(0)
        return time.perf_counter_ns() - t
    # A thread of its own: inside Jupyter this thread already runs a loop.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, spin()).result() / (2 * n)


def _cffi_round(n: int) -> float:
    nop = _lib().yf_bench_nop
    t = time.perf_counter_ns()
    for _ in range(n):
        nop()
    return (time.perf_counter_ns() - t) / n


def python_switches(quick: bool | None = None, rounds: int | None = None, progress: bool = False) -> dict:
    """ns per one-way switch seen from Python: generators, greenlet, asyncio
    (one sleep(0) = a task suspension and resumption by the event loop), and
    the cost of one empty cffi call, next to yfcore's switch measured in C."""
    lib = _lib()
    n = sizes(quick)["python"]
    nc = sizes(quick)["switch"]
    comp = {
        "yfcore (C kernel)": lambda: _checked(lib.yf_bench_switch_yf(nc, 0, STACK, 0), "yf") / (2 * nc),
        "generator": lambda: _gen_round(n),
        "greenlet": lambda: _greenlet_round(n),
        "asyncio sleep(0)": lambda: _asyncio_round(n // 4),
        "one cffi call": lambda: _cffi_round(n),
    }
    return _summaries(interleaved(comp, rounds=rounds, progress=progress))


def stack_costs(quick: bool | None = None, rounds: int | None = None, progress: bool = False) -> dict:
    """ns to get, touch and give back one stack: mmap + guard + munmap (mprotect
    and, where the kernel has them, guard regions), the runtime's pool, malloc."""
    from ..runtime import guard_regions_supported

    lib = _lib()
    n = sizes(quick)
    ns, nm = n["stack"], n["stack_mmap"]
    comp = {
        "mmap + mprotect guard": lambda: _checked(lib.yf_bench_stack_mmap(nm, STACK, 0), "mmap") / nm,
        "pool (guarded, warm)": lambda: _checked(lib.yf_bench_stack_pool(ns, STACK), "pool") / ns,
        "malloc (no guard)": lambda: _checked(lib.yf_bench_stack_malloc(ns, STACK), "malloc") / ns,
    }
    if guard_regions_supported():
        comp["mmap + guard region"] = lambda: _checked(lib.yf_bench_stack_mmap(nm, STACK, 1), "mmap") / nm
    return _summaries(interleaved(comp, rounds=rounds, progress=progress))


def flat(result: dict) -> dict[str, dict]:
    """{system: summary with its "samples"} of a switch() or create() result,
    leaving out provenance and skipped systems."""
    out = {}
    for name, v in result.items():
        if name == "provenance" or "skipped" in v:
            continue
        metric = next(k for k in v if k != "samples")
        out[name] = v[metric] | {"samples": v["samples"]}
    return out


def skipped(result: dict) -> str:
    """One line per system a benchmark skipped, with the reason (or "")."""
    return "\n".join(f"{name}: skipped, {v['skipped']}" for name, v in result.items()
                     if name != "provenance" and "skipped" in v)


def speed_bars(switch_result: dict, create_result: dict) -> list[tuple[str, float, str, bool]]:
    """The speed bars of issue #2, checked on this run's medians: (bar, measured,
    wanted, met). Boost bars are left out when Boost was not measured."""
    sw, cr = flat(switch_result), flat(create_result)

    def ratio(d, a, b):
        return lab_ratio(d[a]["samples"], d[b]["samples"])["median"]

    rows = [("default switch: ucontext / yf", ratio(sw, "ucontext", "yf"), ">= 40"),
            ("  bare switch: ucontext / yf_raw", ratio(sw, "ucontext", "yf_raw"), ">= 40"),
            ("create+3+exit: yf / ucontext", ratio(cr, "yf", "ucontext"), ">= 40")]
    if "boost_fcontext" in sw:
        rows += [("default switch: yf / boost_fcontext", ratio(sw, "yf", "boost_fcontext"), "<= 1"),
                 ("  bare switch: yf_raw / boost_fcontext", ratio(sw, "yf_raw", "boost_fcontext"), "<= 1"),
                 ("FP-fast switch: yf_fpfast / boost_fcontext", ratio(sw, "yf_fpfast", "boost_fcontext"),
                  "<= 0.5"),
                 ("  bare: yf_raw_fpfast / boost_fcontext", ratio(sw, "yf_raw_fpfast", "boost_fcontext"),
                  "<= 0.5"),
                 ("create+3+exit: yf / boost_fcontext", ratio(cr, "yf", "boost_fcontext"), ">= 1"),
                 ("create+3+exit: yf_fpfast / boost_fcontext", ratio(cr, "yf_fpfast", "boost_fcontext"),
                  ">= 1.5")]
    out = []
    for name, value, want in rows:
        bound = float(want.split()[1])
        out.append((name, value, want, value >= bound if want.startswith(">=") else value <= bound))
    return out


def cpu_share(lives_per_second: float, requests_per_second: float = 50_000) -> float:
    """The diary's model (2016/01/19): one coroutine life per request, so the
    runtime's CPU share is requests/s divided by lives/s, in percent."""
    return 100.0 * requests_per_second / lives_per_second


def _lazy(module: str, func: str):
    """A BENCHMARKS entry that imports its module only when run (they import
    the C module, and some build C programs)."""
    def run(quick=None, progress=False, rounds=None):
        import importlib

        return getattr(importlib.import_module(module, __package__), func)(quick, progress, rounds)
    run.__name__ = func
    return run


BENCHMARKS = {
    "switch": switch,
    "create": create,
    "wheel": _lazy(".wheels", "bench"),
    "sbuf": _lazy(".sbufs", "stream"),
    "hooks": _lazy(".hooks", "bench"),
}


FRAME_SLOTS = [("mxcsr", 0), ("x87cw", 4), ("r12", 8), ("r13", 16), ("r14", 24), ("r15", 32),
               ("rbx", 40), ("rbp", 48), ("rip", 56)]


def _addr_name(addr: int) -> str:
    from .._yfcore import ffi, lib

    buf = ffi.new("char[128]")
    return ffi.string(buf).decode() if lib.yf_addr_name(addr, buf, 128) == 0 else ""


def frame_table(frame: dict) -> str:
    """The saved frame of a suspended coroutine as the table in ctx_x86_64.S,
    with this process's values (Coroutine.saved_frame()); addresses that lie
    in an exported function are named (dladdr)."""
    lines = [f"saved stack pointer 0x{frame['sp']:x}", "offset  slot    value"]
    for name, off in FRAME_SLOTS:
        v = frame[name]
        text = f"0x{v:04x}" if name in ("mxcsr", "x87cw") else f"0x{v:016x}"
        lines.append(f"{off:>6}  {name:<6}  {text}  {'' if name in ('mxcsr', 'x87cw') else _addr_name(v)}".rstrip())
    return "\n".join(lines)
