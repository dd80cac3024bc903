"""Notebook 01, context switching: the like-for-like switch and coroutine-life
benchmarks against their anchors (in process and in a standalone program),
code-placement experiments, the switch-variant ablation, switches seen from
Python, the diary's CPU-share model and the saved-frame table.

Every competitor is measured in the same process run, interleaved and
repeated (see bench.interleaved). Every C kernel runs n iterations per call
and returns elapsed nanoseconds, so a round costs one cffi call per
competitor.
"""
import asyncio
import concurrent.futures
import contextlib
import os
import platform
import subprocess
import time

from .bench import STACK, interleaved, sizes as _sizes
from .provenance import provenance
from .stats import _num, ratio as lab_ratio, ratio_samples as lab_ratio_samples, summaries, summary

__all__ = [
    "STACK", "SWITCH_ROWS", "CREATE_ROWS", "fair", "StandaloneKernels", "module_cflags",
    "agreement", "agreement_table", "placement_experiment", "placement_series", "placement_spread",
    "mxcsr_fields", "switch", "create", "ablation", "fp_costs", "python_switches", "cpu_share", "checked_ns", "flat",
    "skipped", "switch_bars", "create_bars", "frame_table", "switch_evidence", "life_evidence",
    "cpu_share_evidence", "syscall_share",
]


def _lib():
    from ..labkernels import lib
    return lib


def checked_ns(ns: float, what: str) -> float:
    """A kernel's elapsed ns, or OSError from errno when it returned -1."""
    if ns < 0:
        from ..labkernels import ffi
        raise OSError(ffi.errno, f"{what}: {os.strerror(ffi.errno)}")
    return ns


def _per_switch(kernel, n: int, *args):
    """A competitor: one call of a switch kernel, in ns per one-way switch."""
    return lambda: checked_ns(kernel(n, *args), kernel.__name__) / (2 * n)


def _boost():
    from ..labkernels import boost_context_path
    return boost_context_path()


BOOST_SKIPPED = "libboost_context not found (apt-get install libboost-context-dev)"

# The like-for-like rows of `bench switch` and `bench create`: name -> (the
# kernel's system number, iterations key of bench.SIZES["switch"]). Every row runs on a
# stack of STACK bytes with yfi_slot_top's top; "pool" rows take it warm from
# the runtime's guarded pool, the others from malloc/free per life.
SWITCH_ROWS = {
    "yf": ("YF_FAIR_SW_YF", "switch"),                  # through the scheduler
    "yf_fpfast": ("YF_FAIR_SW_YF_FPFAST", "switch"),
    "yf_raw": ("YF_FAIR_SW_RAW", "switch"),             # the bare switch, no scheduler
    "yf_raw_fpfast": ("YF_FAIR_SW_RAW_FPFAST", "switch"),
    "ucontext": ("YF_FAIR_SW_UCONTEXT", "switch_slow"),
    "boost_fcontext": ("YF_FAIR_SW_BOOST", "switch"),
}
CREATE_ROWS = {
    "yf": ("YF_FAIR_LIFE_YF", "create"),                # pooled guarded stacks
    "yf_fpfast": ("YF_FAIR_LIFE_YF_FPFAST", "create"),
    "yf_malloc": ("YF_FAIR_LIFE_YF_MALLOC", "create"),  # the scheduler on malloc'ed stacks
    "ucontext": ("YF_FAIR_LIFE_UCONTEXT", "create_slow"),
    "ucontext_pool": ("YF_FAIR_LIFE_UCONTEXT_POOL", "create_slow"),
    "boost_fcontext": ("YF_FAIR_LIFE_BOOST", "create"),
    "boost_fcontext_pool": ("YF_FAIR_LIFE_BOOST_POOL", "create"),
}


def _in_process(kind: str, system: int, placement: int, n: int) -> float:
    """One call of a like-for-like kernel in this process: its nanoseconds."""
    lib = _lib()
    kernel = lib.yf_bench_fair_switch if kind == "switch" else lib.yf_bench_fair_create
    return checked_ns(kernel(system, placement, n, STACK), kernel.__name__)


def _per_unit(kind: str, ns: float, n: int) -> float:
    """A kernel's ns for n iterations as ns per one-way switch, or lives per second."""
    return ns / (2 * n) if kind == "switch" else n / (ns / 1e9)


def module_cflags() -> list[str]:
    """The compiler flags the C of the cffi module was built with: Python's own
    CFLAGS and CCSHARED (setuptools puts them first), then the module's, as
    yf_build_info() reports them."""
    import shlex
    import sysconfig

    from ..labkernels import ffi
    info = ffi.string(_lib().yf_build_info()).decode()
    own = info.split(" cflags=", 1)[1] if " cflags=" in info else ""
    return [*shlex.split(sysconfig.get_config_var("CFLAGS") or ""),
            *shlex.split(sysconfig.get_config_var("CCSHARED") or ""), *shlex.split(own)]


class StandaloneKernels:
    """The like-for-like kernels in a process of their own:
    csrc/programs/fair_baselines.c, the same C compiled with the module's
    flags into a program (toolchain helper), run as a subprocess that
    serves one kernel call per request. Calling it runs one kernel there
    and returns its nanoseconds; close() (or the with block) ends it."""

    def __init__(self):
        from .toolchain import compile_program

        prog = compile_program("fair_baselines", with_lab=True, cflags=module_cflags())
        self._proc = subprocess.Popen([str(prog), _boost() or "-"], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def __call__(self, kind: str, system: int, placement: int, n: int) -> float:
        p = self._proc
        try:
            p.stdin.write(f"{kind} {system} {placement} {n} {STACK}\n")
            p.stdin.flush()
            line = p.stdout.readline()
        except (BrokenPipeError, ValueError):
            line = ""
        if not line:
            from .toolchain import describe_exit

            p.kill()
            _, err = p.communicate()
            raise RuntimeError(f"fair_baselines ended ({describe_exit(p)}): {err.strip()}")
        if line.startswith("error "):
            e = int(line.split()[1])
            raise OSError(e, f"fair_baselines {kind} system {system}: {os.strerror(e)}")
        return float(line)

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.stdin.close()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        for f in (self._proc.stdout, self._proc.stderr):
            f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def fair(kind: str, quick: bool | None = None, progress: bool = False, rounds: int | None = None,
         calibration_rounds: int = 3, standalone: bool = False) -> dict:
    """The like-for-like contest of `kind` ("switch" or "create"), in the `yfcore bench` shape.

    The switch of every system ends in an indirect jump whose prediction
    depends on where the calling code lies (notebook 01), so each kernel
    exists in YF_BENCH_PLACEMENTS copies that differ only in their code
    placement. First every (system, placement) runs `calibration_rounds`
    interleaved rounds of a quarter size and each system keeps its fastest
    placement by its best round (load only slows a round down, so the best
    round is the least disturbed; the same rule for all); then the systems run
    interleaved `rounds` at their placement. Each row records its "placement"
    and every placement's best calibration round ("by_placement"), so the
    spread is visible.

    With `standalone`, every kernel also runs in a program of its own
    (StandaloneKernels), its calls interleaved with this process's in the
    same rounds by the same procedure; its rows come under "standalone", and
    agreement() compares the two sides.
    """
    lib = _lib()
    rows, metric, best_is_low = ((SWITCH_ROWS, "ns_per_switch", True) if kind == "switch"
                                 else (CREATE_ROWS, "per_second", False))
    n = _sizes("switch", quick)
    have_boost = bool(_boost())
    systems = {name: (getattr(lib, const), n[size]) for name, (const, size) in rows.items()
               if have_boost or not name.startswith("boost")}
    nplace = lib.YF_BENCH_PLACEMENTS
    with (StandaloneKernels() if standalone else contextlib.nullcontext()) as remote:
        sides = {"": _in_process, **({"standalone": remote} if standalone else {})}

        def call(side, s, p, k):
            return lambda: _per_unit(kind, sides[side](kind, s, p, k), k)

        # A system's two sides are neighbours in the order, so the rotation
        # of interleaved() runs them back to back in almost every round.
        calib = interleaved({(side, name, p): call(side, s, p, max(1, k // 4))
                             for name, (s, k) in systems.items() for p in range(nplace) for side in sides},
                            rounds=calibration_rounds)
        pick = min if best_is_low else max
        by_place = {(side, name): [pick(calib[(side, name, p)]) for p in range(nplace)]
                    for side in sides for name in systems}
        best = {key: v.index(pick(v)) for key, v in by_place.items()}
        samples = interleaved({(side, name): call(side, s, best[(side, name)], k)
                               for name, (s, k) in systems.items() for side in sides},
                              rounds=rounds, progress=progress)

    def side_rows(side):
        out = {name: {metric: summary(samples[(side, name)]), "samples": samples[(side, name)],
                      "placement": best[(side, name)], "by_placement": by_place[(side, name)]}
               for name in systems}
        return out | {name: {"skipped": BOOST_SKIPPED} for name in rows if name not in systems}

    out = side_rows("")
    if standalone:
        out["standalone"] = side_rows("standalone")
    out["provenance"] = provenance(quick=quick)
    return out


def agreement(result: dict) -> dict[str, float]:
    """{system: the Python process's figure / the standalone program's} for the
    systems both sides of a fair(..., standalone=True) result measured, the
    median of the ratios round by round (the two sides ran back to back in
    each round); 1.0 = the same figure."""
    a, b = flat(result), flat(result["standalone"])
    return {name: lab_ratio(a[name]["samples"], b[name]["samples"])["median"] for name in a if name in b}


def agreement_table(result: dict, unit: str) -> str:
    """The medians of both sides of a fair(..., standalone=True) result with
    their ratio, one line per system."""
    a, b = flat(result), flat(result["standalone"])
    lines = [f"{'system':20s} {'this process':>16s} {'standalone':>16s}  ratio"]
    for name, r in agreement(result).items():
        lines.append(f"{name:20s} {_num(a[name]['median']):>11s} {unit:4s} {_num(b[name]['median']):>11s} {unit:4s}"
                     f"  {r:.2f}")
    return "\n".join(lines)


def placement_experiment(experiment: str, n: int = 20000, rounds: int = 9, copy: int = 0,
                         distances=()) -> list[dict]:
    """Runs csrc/programs/switch_placement.c in a subprocess: "stack" (the two saved
    frames `distances` bytes apart modulo 4096, at code copy `copy`), "code" (the
    calling loop shifted 0..31 bytes) or "edits" (the malloc-size and stack-top edits
    of the Boost kernel). One dict per cell as the program prints it (see its header)."""
    from .toolchain import compile_program, describe_exit, json_lines, run_program

    if experiment not in ("stack", "code", "edits"):
        raise ValueError(f"experiment must be 'stack', 'code' or 'edits', got {experiment!r}")
    boost = _boost()
    if experiment == "edits" and not boost:
        raise RuntimeError(f"the edits experiment needs Boost: {BOOST_SKIPPED}")
    prog = compile_program("switch_placement", with_lab=True)
    extra = [copy, *distances] if experiment == "stack" else []
    cp = run_program(prog, experiment, boost or "-", n, rounds, *extra, timeout=900)
    if cp.returncode != 0:
        raise RuntimeError(f"switch_placement {experiment}: {describe_exit(cp)}: {cp.stderr.strip()}")
    return json_lines(cp.stdout)


def placement_series(cells: list[dict], key: str) -> tuple[list, dict[str, list[dict]]]:
    """(x, {system: [summary of each cell's rounds]}) of placement_experiment() cells,
    x being each cell's `key` ("distance" or "code_offset"), for lab.lines()."""
    xs = sorted({c[key] for c in cells})
    series: dict[str, list[dict]] = {}
    for c in sorted(cells, key=lambda c: c[key]):
        series.setdefault(c["system"], []).append(summary(c["ns"]))
    return xs, series


def placement_spread(cells: list[dict], key: str) -> dict[str, dict]:
    """Per system: the cell whose best round was fastest and the one whose best
    round was slowest ({"fastest": (x, ns), "slowest": (x, ns), "ratio": slow / fast})."""
    out = {}
    for system in dict.fromkeys(c["system"] for c in cells):
        mine = [(c[key], min(c["ns"])) for c in cells if c["system"] == system]
        fast, slow = min(mine, key=lambda t: t[1]), max(mine, key=lambda t: t[1])
        out[system] = {"fastest": fast, "slowest": slow, "ratio": slow[1] / fast[1]}
    return out


MXCSR_FLAGS = ["IE", "DE", "ZE", "OE", "UE", "PE"]


def mxcsr_fields(mxcsr: int) -> dict:
    """MXCSR split into its control bits (masks, rounding, DAZ/FTZ: bits 6-15) and
    its sticky status flags (bits 0-5, named: IE invalid, DE denormal, ZE divide
    by zero, OE overflow, UE underflow, PE precision)."""
    return {"control": mxcsr & 0xFFC0, "status": mxcsr & 0x3F,
            "flags": [name for i, name in enumerate(MXCSR_FLAGS) if mxcsr >> i & 1]}


def switch(quick: bool | None = None, progress: bool = False, rounds: int | None = None,
           standalone: bool = False) -> dict:
    """One-way switch (resume + yield round trip / 2) in ns, like for like: yfcore
    through its scheduler (default and FP-fast mode) and bare (yf_raw*), glibc
    ucontext, Boost fcontext; 64 KiB stacks with the same top, each system at
    its fastest of the same code placements; `standalone` adds the same
    kernels run by a program of their own (see fair())."""
    return fair("switch", quick, progress, rounds, standalone=standalone)


def create(quick: bool | None = None, progress: bool = False, rounds: int | None = None,
           standalone: bool = False) -> dict:
    """Coroutine lives per second: create + 3 x (resume, yield) + exit (+ reap),
    like for like: yfcore, ucontext and Boost fcontext each with pooled stacks
    (yf, ucontext_pool, boost_fcontext_pool) and with malloc'ed stacks
    (yf_malloc, ucontext, boost_fcontext); `standalone` as in switch(); see fair()."""
    return fair("create", quick, progress, rounds, standalone=standalone)


def ablation(depths=(0, 8), quick: bool | None = None, rounds: int | None = None, progress: bool = False) -> dict:
    """ns per one-way raw switch for each switch variant (labkernels.CTX_VARIANTS) at each call
    depth the coroutine side yields from, plus the scheduler's modes; keys "variant @ depth"."""
    from ..labkernels import CTX_VARIANTS

    lib = _lib()
    n = _sizes("switch", quick)["switch"]
    comp = {f"{name} @ {d}": _per_switch(lib.yf_bench_ctx, n, v, d)
            for name, v in CTX_VARIANTS.items() for d in depths}
    comp["scheduler, default @ 0"] = _per_switch(lib.yf_bench_switch_yf, n, 0, STACK, 0)
    comp["scheduler, trace on @ 0"] = _per_switch(lib.yf_bench_switch_yf, n, 0, STACK, 4096)
    comp["scheduler, FP-fast @ 0"] = _per_switch(lib.yf_bench_switch_yf, n, lib.YF_SCHED_FPFAST, STACK, 0)
    return summaries(interleaved(comp, rounds=rounds, progress=progress))


def fp_costs(quick: bool | None = None, rounds: int | None = None, progress: bool = False) -> dict:
    """ns per instruction of the reads and writes of the FP control state a
    switch makes (stmxcsr, ldmxcsr, fnstcw, fldcw; MRS and MSR of FPCR on
    AArch64), each timed as 8 back-to-back copies per loop iteration with
    the empty loop's time taken off, in interleaved rounds."""
    lib = _lib()
    n = _sizes("switch", quick)["switch"]
    x86 = platform.machine() == "x86_64"
    insns = {"stmxcsr (read MXCSR)": lib.YF_FPI_STMXCSR, "ldmxcsr (write MXCSR)": lib.YF_FPI_LDMXCSR,
             "fnstcw (read x87 CW)": lib.YF_FPI_FNSTCW, "fldcw (write x87 CW)": lib.YF_FPI_FLDCW} if x86 else \
        {"mrs fpcr (read FPCR)": lib.YF_FPI_STMXCSR, "msr fpcr (write FPCR)": lib.YF_FPI_LDMXCSR}

    def per_insn(which):
        def run():
            t = checked_ns(lib.yf_bench_fp_insn(n, which), "yf_bench_fp_insn")
            empty = checked_ns(lib.yf_bench_fp_insn(n, lib.YF_FPI_NONE), "yf_bench_fp_insn")
            return max(t - empty, 0.0) / (8 * n)
        return run
    return summaries(interleaved({name: per_insn(w) for name, w in insns.items()}, rounds=rounds,
                                 progress=progress))


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
    n = _sizes("switch", quick)["python"]
    nc = _sizes("switch", quick)["switch"]
    comp = {
        "yfcore (C kernel)": lambda: checked_ns(lib.yf_bench_switch_yf(nc, 0, STACK, 0), "yf") / (2 * nc),
        "generator": lambda: _gen_round(n),
        "greenlet": lambda: _greenlet_round(n),
        "asyncio sleep(0)": lambda: _asyncio_round(n // 4),
        "one cffi call": lambda: _cffi_round(n),
    }
    return summaries(interleaved(comp, rounds=rounds, progress=progress))


def flat(result: dict) -> dict[str, dict]:
    """{system: summary with its "samples"} of a switch() or create() result,
    leaving out provenance and skipped systems."""
    out = {}
    for name, v in result.items():
        if name in ("provenance", "standalone") or not isinstance(v, dict) or "skipped" in v:
            continue
        metric = next(k for k in v if k != "samples")
        out[name] = v[metric] | {"samples": v["samples"]}
    return out


def skipped(result: dict) -> str:
    """One line per system a benchmark skipped, with the reason (or "")."""
    return "\n".join(f"{name}: skipped, {v['skipped']}" for name, v in result.items()
                     if name not in ("provenance", "standalone") and isinstance(v, dict) and "skipped" in v)


def _pair(result: dict, a: str, b: str) -> float:
    d = flat(result)
    return lab_ratio(d[a]["samples"], d[b]["samples"])["median"]


def switch_bars(result: dict) -> list[tuple[str, float, str]]:
    """The project's speed bars on a switch() result: (bar, measured, wanted).
    Boost bars are left out when Boost was not measured."""
    rows = [("default switch: ucontext / yf", _pair(result, "ucontext", "yf"), ">= 40"),
            ("bare switch: ucontext / yf_raw", _pair(result, "ucontext", "yf_raw"), ">= 40")]
    if "skipped" not in result.get("boost_fcontext", {"skipped": ""}):
        rows += [("default switch: yf / boost_fcontext", _pair(result, "yf", "boost_fcontext"), "<= 1"),
                 ("bare switch: yf_raw / boost_fcontext", _pair(result, "yf_raw", "boost_fcontext"), "<= 1"),
                 ("FP-fast switch: yf_fpfast / boost_fcontext", _pair(result, "yf_fpfast", "boost_fcontext"),
                  "<= 0.6"),
                 ("bare FP-fast: yf_raw_fpfast / boost_fcontext",
                  _pair(result, "yf_raw_fpfast", "boost_fcontext"), "<= 0.5")]
    return rows


def create_bars(result: dict) -> list[tuple[str, float, str]]:
    """The project's speed bars on a create() result: (bar, measured, wanted)."""
    rows = [("create+3+exit: yf / ucontext", _pair(result, "yf", "ucontext"), ">= 40")]
    if "skipped" not in result.get("boost_fcontext", {"skipped": ""}):
        # Lives per second, like for like: yf's pooled stacks against Boost
        # with malloc'ed ones and with the same pool (the default mode).
        rows += [("create+3+exit: yf / boost_fcontext (malloc)", _pair(result, "yf", "boost_fcontext"), ">= 1.1"),
                 ("create+3+exit: yf / boost_fcontext_pool", _pair(result, "yf", "boost_fcontext_pool"), ">= 1")]
    return rows


def cpu_share(lives_per_second: float, requests_per_second: float = 50_000) -> float:
    """The diary's model (2016/01/19): one coroutine life per request, so the
    runtime's CPU share is requests/s divided by lives/s, in percent."""
    return 100.0 * requests_per_second / lives_per_second




def _addr_name(addr: int) -> str:
    from ..labkernels import ffi, lib

    buf = ffi.new("char[128]")
    return ffi.string(buf).decode() if lib.yf_addr_name(addr, buf, 128) == 0 else ""


def frame_table(frame: dict) -> str:
    """The saved frame of a suspended coroutine as the table in ctx_x86_64.S,
    with this process's values (Coroutine.saved_frame()); addresses that lie
    in an exported function are named (dladdr)."""
    from ..runtime import FRAME_SLOTS

    lines = [f"saved stack pointer 0x{frame['sp']:x}", "offset  slot    value"]
    for name, off, _ in FRAME_SLOTS:
        v = frame[name]
        text = f"0x{v:04x}" if name in ("mxcsr", "x87cw") else f"0x{v:016x}"
        lines.append(f"{off:>6}  {name:<6}  {text}  {'' if name in ('mxcsr', 'x87cw') else _addr_name(v)}".rstrip())
    return "\n".join(lines)


# ---- evidence for the verdicts (named after the rules' variables) ---------------

def switch_evidence(result: dict) -> dict:
    """Evidence of switch-vs-ucontext from a switch() result."""
    sw = flat(result)
    return {"speedup": lab_ratio_samples(sw["ucontext"]["samples"], sw["yf"]["samples"]),
            "yf_ns": sw["yf"], "ucontext_ns": sw["ucontext"]}


def life_evidence(result: dict) -> dict:
    """Evidence of create-run-exit-vs-ucontext from a create() result."""
    cr = flat(result)
    return {"life_ratio": lab_ratio_samples(cr["yf"]["samples"], cr["ucontext"]["samples"]),
            "yf_lives": cr["yf"], "ucontext_lives": cr["ucontext"]}


def switch_syscalls(n: int = 20_000) -> dict:
    """System calls (strace -c, all of them) per one-way switch and per
    coroutine life, glibc ucontext against yfcore's scheduler: the cost the
    diary's 10.43% paid for ("syscalls for signal handling")."""
    from .toolchain import syscalls_per_op

    return {"ucontext_syscalls": syscalls_per_op(f"lib.yf_bench_switch_ucontext(n, {STACK})", n) / 2,
            "yf_syscalls": syscalls_per_op(f"lib.yf_bench_switch_yf(n, 0, {STACK}, 0)", n) / 2,
            "ucontext_life_syscalls": syscalls_per_op(f"lib.yf_bench_create_ucontext(n, {STACK})", n // 4),
            "yf_life_syscalls": syscalls_per_op(f"lib.yf_bench_create_yf(n, 0, {STACK})", n // 4)}


def syscall_share(result: dict, rounds: int | None = None, n: int = 200_000) -> dict:
    """What one rt_sigprocmask system call costs here (the one swapcontext
    makes on every switch), timed by a C loop over `rounds` rounds, and its
    share of ucontext's one-way switch in a switch() result:
    {"sigprocmask_ns": summary with "samples", "ucontext_ns", "share"}."""
    from .bench import default_rounds

    lib = _lib()
    xs = [checked_ns(lib.yf_bench_sigprocmask(n), "yf_bench_sigprocmask") / n
          for _ in range(rounds or default_rounds())]
    uc = flat(result)["ucontext"]["median"]
    call = summary(xs) | {"samples": xs}
    return {"sigprocmask_ns": call, "ucontext_ns": uc, "share": call["median"] / uc}


def cpu_share_evidence(result: dict, calls: dict | None = None) -> dict:
    """Evidence of cpu-share from a create() result (the diary's CPU-share
    model per round) and switch_syscalls() (measured here when not given)."""
    cr = flat(result)
    calls = switch_syscalls() if calls is None else calls
    return {"share": [cpu_share(x) for x in cr["yf"]["samples"]],
            "ucontext_share": [cpu_share(x) for x in cr["ucontext"]["samples"]], **calls}
