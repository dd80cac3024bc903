"""Notebook 03, errno and hooks: build the hook library (csrc/hook/), link
programs against it three ways, the errno and libmemcached experiments and
the `yfcore bench hooks` benchmark. Everything hooked runs in a subprocess."""
import os
import shutil
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

from .. import _hookbuild
from .paths import root
from .toolchain import compile_program, json_lines, run_program

__all__ = [
    "HOOK_VARIANTS", "MODES", "build", "link_flags", "compile_hooked", "run_hooked", "json_lines", "clobber_evidence", "errno_switch_evidence", "nonintrusive_evidence"]

# The hook library builds (_hookbuild.VARIANTS): the shipped one and the
# deliberately broken ones the experiments need.
HOOK_VARIANTS = tuple(_hookbuild.VARIANTS)
# How a program gets the hooks: the hook and runtime objects linked into it,
# linked against libyfhook.so (and libyf.so), or linked against libyf.so only
# with libyfhook.so preloaded at run time. "runtime" links libyf.so alone:
# the same program with nothing interposed, the control.
MODES = ("static", "dynamic", "preload", "runtime")


def build(variant: str = "default") -> dict[str, Path]:
    """Build (or reuse) the hook library `variant`; returns the paths.

    Keys: "hook_so" (libyfhook.so, to LD_PRELOAD or link), "runtime_so"
    (libyf.so), "archive" (libyfhook.a: hook + runtime objects), "objects"
    (the hook objects, then the runtime objects, for static linking), "hook_objects",
    "include" (the directory holding yfhook.h), "dir", "fingerprint".
    The default variant comes from yfcore/hooklib/ when `pip install -e .`
    or `make build` made it from the current sources; otherwise everything
    is built into <root>/build/hooklib/<variant>-<fingerprint>/.
    Raises ValueError for an unknown variant, _hookbuild.HookBuildError
    with the compiler's messages when a step fails.
    """
    if variant not in _hookbuild.VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(HOOK_VARIANTS)}, got {variant!r}")
    fp = _hookbuild.fingerprint(variant, root())
    shipped = Path(__file__).resolve().parent.parent / "hooklib"
    if variant == "default" and _hookbuild.is_current(shipped, variant, root()):
        out = _hookbuild.artifacts(shipped)
    else:
        out = _hookbuild.build(root() / "build" / "hooklib" / f"{variant}-{fp}", variant, root())
    obj = out["dir"] / "obj"
    hook_objs = sorted(obj.glob("hook*.o"))
    runtime_objs = sorted(p for p in obj.glob("*.o") if p not in hook_objs)
    return {**out, "objects": hook_objs + runtime_objs, "hook_objects": hook_objs, "fingerprint": fp}


def link_flags(mode: str, variant: str = "default") -> tuple[list[str], list[str], dict[str, str]]:
    """(cflags, ldflags, env) for a program using the runtime API with the hooks brought in by `mode`."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    b = build(variant)
    d = str(b["dir"])
    # The fingerprint in the flags makes toolchain's cache rebuild a program
    # whenever the library it embeds or links changes.
    cflags = [f"-I{b['include']}", f"-DYF_HOOK_BUILD=\"{b['fingerprint']}\""]
    env: dict[str, str] = {}
    if mode == "static":
        ldflags = [*map(str, b["objects"]), "-Wl,--export-dynamic", "-ldl", "-lpthread"]
    elif mode == "dynamic":
        ldflags = [f"-L{d}", "-lyfhook", "-lyf", f"-Wl,-rpath,{d}", "-Wl,--no-as-needed", "-ldl", "-lpthread"]
    else:
        ldflags = [f"-L{d}", "-lyf", f"-Wl,-rpath,{d}", "-ldl", "-lpthread"]
        if mode == "preload":
            env = {"LD_PRELOAD": str(b["hook_so"])}
    return cflags, ldflags, env


def compile_hooked(name: str | os.PathLike, mode: str = "preload", variant: str = "default",
                   ldflags: tuple[str, ...] = ()) -> tuple[Path, dict[str, str]]:
    """Compile csrc/programs/<name>.c (or a path to a .c file) for `mode`; returns (program, env to run it with)."""
    cflags, lflags, env = link_flags(mode, variant)
    prog = compile_program(name, cflags=cflags, ldflags=[*ldflags, *lflags],
                           out_dir=root() / "build" / "programs" / f"{mode}-{variant}")
    return prog, env


def run_hooked(prog: Path, env: dict[str, str], *args, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a compiled program with its environment (LD_PRELOAD for "preload")."""
    return run_program(prog, *args, env=env or None, timeout=timeout)


# ---- libmemcached and memcached -------------------------------------------------

MEMCACHED = "/usr/bin/memcached"
LIBMEMCACHED_HEADER = "/usr/include/libmemcached/memcached.h"


def memcached_missing() -> str:
    """Why the libmemcached experiments cannot run here ("" when they can)."""
    missing = []
    server = shutil.which("memcached") or (MEMCACHED if os.path.exists(MEMCACHED) else None)
    if not server:
        missing.append("the memcached server (apt-get install memcached)")
    if not os.path.exists(LIBMEMCACHED_HEADER):
        missing.append("the libmemcached client (apt-get install libmemcached-dev)")
    return "; ".join(missing)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def memcached_server(threads: int = 2, connections: int = 2048):
    """A memcached on 127.0.0.1 at a free port, stopped on exit; yields the port.

    Raises RuntimeError (with the reason and what to install) when it cannot run.
    """
    missing = memcached_missing()
    if missing:
        raise RuntimeError(f"memcached experiments need {missing}")
    server = shutil.which("memcached") or MEMCACHED
    # memcached refuses to run as root unless told which user to become.
    user = ["-u", "root"] if os.geteuid() == 0 else []
    for _ in range(5):
        port = free_port()
        proc = subprocess.Popen(
            [server, "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-t", str(threads),
             "-c", str(connections), "-m", "64", *user],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.02)
        if proc.poll() is None:
            break
    else:
        raise RuntimeError(f"memcached did not start: {proc.stderr.read()}")
    try:
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def mc_client(variant: str = "default") -> Path:
    """csrc/programs/mc_client.c linked against libyf.so and libmemcached (hooks come by LD_PRELOAD)."""
    prog, _ = compile_hooked("mc_client", "runtime", variant, ldflags=("-lmemcached",))
    return prog


def mc_run(port: int, mode: str, workers: int, ops: int, variant: str = "default",
           binary: bool = False, hooked: bool | None = None, timeout: float = 300) -> dict:
    """One mc_client run: mode "coro" (hooks preloaded) or "threads" (no hooks
    unless `hooked`); returns its JSON plus "exit" ("exit 0", "killed by SIGABRT")."""
    from .toolchain import describe_exit

    if mode not in ("coro", "threads"):
        raise ValueError(f"mode must be 'coro' or 'threads', got {mode!r}")
    if workers < 1 or ops < 1:
        raise ValueError(f"workers and ops must be >= 1, got {workers} and {ops}")
    prog = mc_client(variant)
    hooked = mode == "coro" if hooked is None else hooked
    env = {"LD_PRELOAD": str(build(variant)["hook_so"])} if hooked else None
    args = [port, mode, workers, ops] + (["binary"] if binary else [])
    cp = run_program(prog, *args, env=env, timeout=timeout)
    lines = json_lines(cp.stdout)
    out = lines[-1] if lines else {"mode": mode, "workers": workers, "ops": workers * ops}
    out["exit"] = describe_exit(cp)
    if cp.returncode != 0:
        out["stderr"] = cp.stderr.strip().splitlines()[-3:]
    return out


# ---- notebook 03: errno ------------------------------------------------------------

def _check_count(name: str, value: int, low: int = 1) -> int:
    if not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return value


def errno_clobber(workers: int = 8, ops: int = 400, rounds: int = 3, binary: bool = False) -> dict:
    """The diary's 2016/04/26 run: libmemcached in `workers` coroutines under
    the logging hook builds, errno set after the log line ("log-late") and
    before it ("log-early"), both forcing EAGAIN on the first recv after each
    send. Rounds alternate the order. Returns {variant: [run dicts]}."""
    _check_count("workers", workers)
    _check_count("ops", ops, 2)
    _check_count("rounds", rounds)
    out: dict[str, list[dict]] = {"log-late": [], "log-early": []}
    with memcached_server() as port:
        for r in range(rounds):
            order = ("log-late", "log-early") if r % 2 == 0 else ("log-early", "log-late")
            for v in order:
                out[v].append(mc_run(port, "coro", workers, ops, variant=v, binary=binary))
    return out


ERRNO_MODES = ("yield", "sleep", "hooked-sleep")


def errno_switch(coroutines: int = 8, rounds: int = 100) -> list[dict]:
    """errno_switch.c in every mode, without and with YF_SCHED_KEEP_ERRNO
    (hooks linked in, so "hooked-sleep" goes through them)."""
    _check_count("coroutines", coroutines, 2)
    _check_count("rounds", rounds)
    prog, env = compile_hooked("errno_switch", "static")
    rows = []
    for mode in ERRNO_MODES:
        for keep in (0, 1):
            cp = run_hooked(prog, env, mode, keep, coroutines, rounds)
            lines = json_lines(cp.stdout)
            if cp.returncode != 0 or not lines:
                raise RuntimeError(f"errno_switch {mode} {keep} failed: {cp.stderr.strip()}")
            rows.append(lines[-1])
    return rows


def keep_errno_cost(n: int | None = None, rounds: int | None = None, progress: bool = False) -> dict:
    """ns per one-way switch through the scheduler without and with
    YF_SCHED_KEEP_ERRNO (yf_bench_switch_yf), interleaved, in this process."""
    from ..labkernels import lib
    from .bench import interleaved, quick

    n = n if n is not None else (200_000 if quick() else 2_000_000)
    _check_count("n", n)

    def per_switch(flags):
        def f():
            ns = lib.yf_bench_switch_yf(n, flags, 65536, 0)
            if ns < 0:
                raise OSError(f"yf_bench_switch_yf failed (flags {flags})")
            return ns / (2 * n)
        return f

    return interleaved({"default": per_switch(0), "keep errno": per_switch(lib.YF_SCHED_KEEP_ERRNO)},
                       rounds=rounds, progress=progress)


def cffi_errno() -> dict:
    """Where cffi keeps errno: a failing runtime call from Python (yf_co_yield
    outside a coroutine: EPERM), then Python work that makes failing C calls of
    its own (ENOENT), then ffi.errno. cffi saved errno when the call returned,
    per thread, so the Python layer in between cannot clobber it."""
    from ..labkernels import ffi, lib

    ffi.errno = 0
    rc = lib.yf_co_yield()
    for _ in range(3):
        try:
            os.stat("/nonexistent/yfcore")
        except FileNotFoundError:
            pass
    return {"rc": rc, "ffi_errno": ffi.errno, "expected": __import__("errno").EPERM,
            "python_noise_errno": __import__("errno").ENOENT}


# ---- nonintrusive client and the bench ---------------------------------------------------

def _mc_competitor(port: int, mode: str, k: int, per: int, where: str = ""):
    """A competitor for bench.interleaved: one mc_client run of `k` workers
    (`mode` "threads" or "coro") making `per` calls each against `port`,
    returning its ops/s; RuntimeError when the run failed or a reply was
    wrong."""
    def f():
        r = mc_run(port, mode, k, per)
        if r["exit"] != "exit 0" or r.get("failures") or r.get("wrong"):
            raise RuntimeError(f"mc_client {mode} {k}{where}: {r}")
        return r["ops_per_s"]
    return f


def nonintrusive(counts=(1, 8, 64, 512), ops: int = 2000, rounds: int = 3, progress: bool = False) -> dict:
    """ops/s of libmemcached: one blocking thread ("sequential"), then for each
    count k: k coroutines in one thread (hooks preloaded) and k threads.
    Every competitor runs once per round, interleaved; each client makes
    `ops` calls in total split over its workers (at least 2 each).
    Returns {name: [ops/s per round]}."""
    from .bench import interleaved

    _check_count("ops", ops, 2)
    counts = [_check_count("count", int(k)) for k in counts]
    with memcached_server() as port:
        def run(mode, k):
            return _mc_competitor(port, mode, k, max(2, ops // k))
        comp = {"sequential": run("threads", 1)}
        for k in counts:
            comp[f"coroutines {k}"] = run("coro", k)
            comp[f"threads {k}"] = run("threads", k)
        return interleaved(comp, rounds=rounds, warmup=0, progress=progress)


@contextmanager
def delay_proxy(upstream: int, delay_ms: int):
    """csrc/programs/delay_proxy.c in front of 127.0.0.1:`upstream`: every
    request waits `delay_ms` (at most one 1 ms wheel tick more) in the proxy's
    event loop before it reaches the server. Yields the proxy's port; the
    proxy is killed on exit."""
    from .toolchain import compile_program

    _check_count("upstream", upstream)
    if not isinstance(delay_ms, int) or not 0 <= delay_ms <= 10_000:
        raise ValueError(f"delay_ms must be an int in 0..10000, got {delay_ms!r}")
    prog = compile_program("delay_proxy", with_runtime=True)
    proc = subprocess.Popen([str(prog), str(upstream), str(delay_ms)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        if not line.startswith("{"):
            proc.kill()
            raise RuntimeError(f"delay_proxy did not start: {proc.stderr.read().strip()}")
        yield json_lines(line)[0]["port"]
    finally:
        proc.kill()
        proc.wait()


def overlapped_waits(delay_ms: int = 1, coroutines: int = 64, ops: int = 64, rounds: int = 7,
                     progress: bool = False) -> dict:
    """libmemcached behind delay_proxy (every request held `delay_ms`):
    one blocking client ("sequential") against `coroutines` coroutines of one
    thread (hooks preloaded), each client making the same `ops` calls on its
    own connection, interleaved over `rounds`. With the waits overlapped the
    coroutines make up to `coroutines` times as many calls per second; run
    one after the other they make about as many as the sequential client.
    Returns {"sequential": [ops/s], "coroutines": [ops/s], "ratio": [per round],
    "rtt_ms": [the sequential client's ms per call], "delay_ms", "coroutine_count", "ops"}."""
    from .bench import interleaved

    _check_count("coroutines", coroutines, 2)
    _check_count("ops", ops, 2)
    _check_count("rounds", rounds)
    with memcached_server() as port, delay_proxy(port, delay_ms) as pport:
        def run(mode, k):
            return _mc_competitor(pport, mode, k, ops, " behind the delay proxy")
        s = interleaved({"sequential": run("threads", 1), "coroutines": run("coro", coroutines)},
                        rounds=rounds, warmup=1, progress=progress)
    return {**s, "ratio": [c / q for c, q in zip(s["coroutines"], s["sequential"])],
            "rtt_ms": [1e3 / q for q in s["sequential"]],
            "delay_ms": delay_ms, "coroutine_count": coroutines, "ops": ops}


def roundtrip(n: int = 50_000, rounds: int = 7) -> dict[str, list[float]]:
    """hook_bench.c under LD_PRELOAD: ns per send+recv round trip, raw libc
    and hooked, interleaved inside the program; {"raw": [...], "hooked": [...]}."""
    _check_count("n", n)
    _check_count("rounds", rounds)
    prog, env = compile_hooked("hook_bench", "preload")
    cp = run_hooked(prog, env, n, rounds)
    lines = json_lines(cp.stdout)
    if cp.returncode != 0 or not lines:
        raise RuntimeError(f"hook_bench failed: {cp.stderr.strip()}")
    return lines[-1]


def bench(quick: bool | None = None, progress: bool = False, rounds: int | None = None) -> dict:
    """`yfcore bench hooks`: round trip raw vs hooked (ns) and libmemcached
    ops/s sequential, 64 coroutines, 64 threads."""
    from .bench import default_rounds, sizes
    from .bench import quick as quick_env
    from .provenance import provenance
    from .stats import summary

    quick = quick_env() if quick is None else quick
    rounds = rounds or (5 if quick else default_rounds())
    n = sizes("hooks", quick)
    rt = roundtrip(n["roundtrip"], rounds)
    out = {name: {"ns_per_roundtrip": summary(rt[name]), "samples": rt[name]} for name in ("raw", "hooked")}
    missing = memcached_missing()
    if missing:
        out["memcached"] = {"skipped": f"needs {missing}"}
    else:
        mc = nonintrusive(counts=(64,), ops=n["mc_ops"], rounds=rounds, progress=progress)
        out["memcached"] = {
            "sequential_ops_per_s": summary(mc["sequential"]),
            "coroutines_64_ops_per_s": summary(mc["coroutines 64"]),
            "threads_64_ops_per_s": summary(mc["threads 64"]),
            "samples": mc,
        }
    out["provenance"] = provenance(quick=quick)
    return out


# ---- evidence for the verdicts (named after the rules' variables) ---------------

def clobber_evidence(clob: dict | None) -> dict:
    """Evidence of errno-clobber from errno_clobber(); None when libmemcached is missing."""
    if clob is None:
        return {"skipped": f"needs {memcached_missing()}"}
    return {"early_failures": sum(r["failures"] for r in clob["log-early"]),
            "early_calls": sum(r["ops"] for r in clob["log-early"]),
            "fixed_failures": sum(r["failures"] for r in clob["log-late"]),
            "fixed_wrong": sum(r["wrong"] for r in clob["log-late"])}


def errno_switch_evidence(rows: list[dict]) -> dict:
    """Evidence of errno-across-switch from errno_switch()."""
    kept = {r["mode"]: r["wrong"] for r in rows if r["keep"] == 1}
    unkept = {r["mode"]: r["wrong"] for r in rows if r["keep"] == 0}
    return {"kept_wrong": kept["yield"] + kept["sleep"], "unkept_wrong": unkept["yield"] + unkept["sleep"],
            "hooked_wrong": unkept["hooked-sleep"] + kept["hooked-sleep"], "checks": 2 * rows[0]["checks"]}


def nonintrusive_evidence(delayed: dict | None, mc: dict | None = None) -> dict:
    """Evidence of nonintrusive-client from overlapped_waits() (the rule's
    figures) and nonintrusive() (the same clients without the delay, for the
    detail); None when libmemcached is missing."""
    from .stats import ratio_samples

    if delayed is None or mc is None:
        return {"skipped": f"needs {memcached_missing()}"}
    return {"speedup": delayed["ratio"], "coroutines_ops": delayed["coroutines"],
            "sequential_ops": delayed["sequential"], "rtt_ms": delayed["rtt_ms"], "delay_ms": delayed["delay_ms"],
            "direct_speedup": ratio_samples(mc["coroutines 64"], mc["sequential"]),
            "direct_coroutines_ops": mc["coroutines 64"], "direct_sequential_ops": mc["sequential"],
            "threads_ops": mc["threads 64"]}
