"""`make sanitize`: the runtime under ASan+UBSan, TSan and memcheck, and a short fuzz run.

Steps (all by default; `--only STEP[,STEP]` picks some):

  c-asan     every tests/c/*.c program, release and debug builds, with
             ASan+UBSan (gcc); the runtime announces each switch to ASan
             (co.c), so fake stacks and stack bounds follow the coroutines
  c-tsan     the programs that use threads (the hook suite's DNS workers and
             its plain-thread checks) and the switch/scheduler tests with TSan
  memcheck   every tests/c/test_*.c under valgrind memcheck (the runtime
             registers each coroutine stack with valgrind)
  py-asan    the Python tests of the runtime against an ASan+UBSan build of
             the cffi module, made in build/sanitize/ (the in-place module is
             left alone) and put first on PYTHONPATH, libasan preloaded
  fuzz       each tests/fuzz/fuzz_*.py for --fuzz-seconds against an
             ASan+UBSan build made with clang and libFuzzer's coverage

Prints one line per check and ends with "N passed, N failed"; exits 1 when
anything failed. A step whose tool is missing (valgrind, clang, atheris)
fails with what to install (apt-get install valgrind clang; .venv/bin/pip install atheris).
"""
import argparse
import functools
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "sanitize"
FUZZ_DIR = ROOT / "tests" / "fuzz"
STEPS = ("c-asan", "c-tsan", "memcheck", "py-asan", "fuzz")

# The Python tests that drive the runtime in-process.
PY_TESTS = ("tests/test_runtime.py", "tests/test_wheel.py", "tests/test_sbuf.py", "tests/test_loop.py",
            "tests/test_pybody.py")
# What ASan itself changes, so the test measures ASan: its quarantine keeps
# freed memory resident by design (make test runs this one).
PY_ASAN_DESELECT = {"tests/test_pybody.py::test_no_leak_over_100000_spawns":
                    "resident memory grows by ASan's quarantine of freed blocks"}

ASAN = ("-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer")
TSAN = ("-fsanitize=thread",)
ASAN_OPTIONS = "allocator_may_return_null=1:detect_stack_use_after_return=1:strict_string_checks=1:check_initialization_order=1"
# allocator_may_return_null: the runtime and its tests handle a failed allocation (MemoryError, ENOMEM).
UBSAN_OPTIONS = "halt_on_error=1:print_stacktrace=1"
TSAN_OPTIONS = "halt_on_error=1"
# Under memcheck the leak check is on: the C tests free what they make.
VALGRIND = ("valgrind", "-q", "--error-exitcode=99", "--leak-check=full", "--errors-for-leak-kinds=definite")
SANITIZER_REPORTS = ("ERROR: AddressSanitizer", "runtime error:", "WARNING: ThreadSanitizer",
                     "ERROR: LeakSanitizer", "AddressSanitizer: CHECK failed")

# TSan defers a signal handler to its next interception point, and it does
# not intercept epoll_pwait2, the loop's wait: test_loop's EINTR check then
# reads the handler's count too early. Nothing in test_loop uses threads.
TSAN_SKIP = {"test_loop": "TSan defers signal handlers past epoll_pwait2 (not intercepted); no threads",
             "test_guard": "faults and signal handlers, which TSan defers; no threads",
             "test_sbuf": "an RLIMIT_AS test, which TSan's shadow mappings exhaust; no threads"}
# test_guard's faults are the runtime's reporter's to handle, not ASan's,
# and the reads that make them are no errors for memcheck to count.
ASAN_EXTRA = {"test_guard": ":handle_segv=0"}
VALGRIND_EXTRA = {"test_guard": ("--suppressions=" + str(ROOT / "tests" / "c" / "test_guard.supp"),)}


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class Results:
    def __init__(self):
        self.passed, self.failed = [], []

    def add(self, name: str, ok: bool, detail: str = "") -> bool:
        (self.passed if ok else self.failed).append(name)
        print(f"{'PASS' if ok else 'FAIL'} {name}" + (f"\n{detail.rstrip()}" if detail and not ok else ""),
              flush=True)
        return ok


def _describe(rc: int) -> str:
    if rc >= 0:
        return f"exit {rc}"
    try:
        return f"killed by {signal.Signals(-rc).name}"
    except ValueError:
        return f"killed by signal {-rc}"


def _run(cmd, env=None, timeout=600, cwd=None) -> subprocess.CompletedProcess:
    full = {**os.environ, **(env or {})}
    try:
        return subprocess.run(list(map(str, cmd)), capture_output=True, text=True, errors="replace",
                              env=full, timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired as e:
        return subprocess.CompletedProcess(e.cmd, -signal.SIGKILL, e.stdout or "", f"timed out after {timeout} s")


def _clean(cp) -> tuple[bool, str]:
    """A run is clean when it exits 0 and no sanitizer reported anything."""
    reported = [r for r in SANITIZER_REPORTS if r in cp.stderr]
    # A report's first lines say what and where; a deep stack would push
    # them out of the tail, so the excerpt starts just before the first.
    first = min(cp.stderr.find(r) for r in reported) if reported else len(cp.stderr)
    err = cp.stderr[max(0, first - 2000):first + 6000] if reported else cp.stderr[-8000:]
    out = f"{_describe(cp.returncode)}\n--- stdout ---\n{cp.stdout[-4000:]}\n--- stderr ---\n{err}"
    return cp.returncode == 0 and not reported, out


@functools.cache
def _c_tests():
    """tests/test_c.py, whose PROGRAMS are this machine's C tests (an "arch:" marker
    keeps a program to its architecture) and whose _marker reads a marker."""
    return _load("test_c", ROOT / "tests" / "test_c.py")


def _marker(path: Path, name: str):
    return _c_tests()._marker(path, name)


def _programs(prefix: str = "") -> list[Path]:
    return [p for p in _c_tests().PROGRAMS if p.name.startswith(prefix)]


def _compile_c(path: Path, flags: tuple[str, ...], out: Path, extra_sources=(), ldflags=()) -> Path:
    """As tests/test_c.py builds a C test (runtime and lab, _sources.TEST_CFLAGS), plus `flags`."""
    from yfcore import _sources
    from yfcore.lab import toolchain
    own = tuple((_marker(path, "test-cflags") or "").split())
    return toolchain.compile_program(path, with_lab=True, extra_sources=extra_sources,
                                     cflags=(*_sources.TEST_CFLAGS, *flags, *own),
                                     ldflags=(*flags, *ldflags, "-lm"), out_dir=out)


def _parallel(res: Results, jobs) -> None:
    """Run (name, job) pairs on as many threads as there are cores; each job
    returns (ok, detail) or None (skipped). Results are reported in order."""
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        futures = [(name, pool.submit(job)) for name, job in jobs]
        for name, fut in futures:
            out = fut.result()
            if out is not None:
                res.add(name, *out)


def _compiled(name: str, build, run):
    """A job: build() a program (a CompileError fails it), then run(program) -> (ok, detail)."""
    from yfcore.lab import toolchain

    def job():
        try:
            prog = build()
        except toolchain.CompileError as e:
            return False, f"compile failed:\n{e.stderr[-4000:]}"
        return run(prog)
    return name, job


# ---- C programs --------------------------------------------------------------

# The hook suite's checks that compare elapsed times or count a 5 ms ticker
# against a nap: a sanitizer slows every call several times, so on a busy
# machine they can miss their margins without anything being wrong. Under a
# sanitizer they are printed, not judged; every other check, any sanitizer
# report and any crash still fail the run.
HOOK_TIMING_CHECKS = {"outside-coroutine", "tcp4-echo", "tcp6-echo", "unix-echo", "rcvtimeo", "connect-timeout",
                      "udp", "poll-select", "sleep", "nonblock-wish", "fd-reuse"}


def _hook_suite_clean(cp) -> tuple[bool, str]:
    from yfcore.lab import toolchain
    rows = toolchain.json_lines(cp.stdout)
    failed = [r for r in rows if not r.get("ok")]
    judged = [r for r in failed if r.get("check") not in HOOK_TIMING_CHECKS]
    for r in failed:
        if r not in judged:
            print(f"  note: timing check {r['check']} missed its margin under the sanitizer: {r.get('detail')}")
    ok, detail = _clean(cp)
    reported = [r for r in SANITIZER_REPORTS if r in cp.stderr]
    ran = {r.get("check") for r in rows}
    complete = "coroutine-fd-in-thread" in ran and "dns-workers" in ran
    ok = (cp.returncode == 0 or (cp.returncode == 1 and failed and not judged)) and not reported and complete
    return ok, detail

def step_c_asan(res: Results):
    env = {"ASAN_OPTIONS": ASAN_OPTIONS, "UBSAN_OPTIONS": UBSAN_OPTIONS}
    jobs = []
    for path in _programs():
        for build, flags in (("release", ("-DNDEBUG",)), ("debug", ("-DYF_DEBUG",))):
            def run(prog, path=path):
                cp = _run([prog], {**env, "ASAN_OPTIONS": ASAN_OPTIONS + ASAN_EXTRA.get(path.stem, "")},
                          timeout=300)
                if path.name.startswith("fail_"):
                    message = _marker(path, "expect-abort") or "?"
                    return (cp.returncode == -signal.SIGABRT and message in cp.stderr,
                            f"expected SIGABRT with {message!r}\n{_clean(cp)[1]}")
                return _clean(cp)
            jobs.append(_compiled(f"c-asan {path.stem} {build}",
                                  lambda path=path, flags=flags: _compile_c(path, (*ASAN, *flags), BUILD / "c-asan"),
                                  run))
    # The hook suite: every hooked call, its DNS workers, plain threads.
    jobs.append(_compiled("c-asan hook_suite", lambda: _hook_suite(ASAN, BUILD / "c-asan"),
                          lambda prog: _hook_suite_clean(_run([prog], env, timeout=300))))
    _parallel(res, jobs)


def _hook_suite(flags, out: Path) -> Path:
    # Linked in statically, as the "static" mode of tests/test_hooks.py.
    from yfcore import _sources
    return _compile_c(ROOT / "tests" / "programs" / "hook_suite.c",
                      (*flags, *_sources.HOOK_CFLAGS, f"-I{_sources.csrc() / 'hook'}", '-DYF_HOOK_BUILD="sanitize"'),
                      out, extra_sources=_sources.hook(),
                      ldflags=("-Wl,--export-dynamic", *(f"-l{lib}" for lib in _sources.HOOK_LIBS)))


def step_c_tsan(res: Results):
    env = {"TSAN_OPTIONS": TSAN_OPTIONS}
    run = lambda prog: _clean(_run([prog], env, timeout=300))  # noqa: E731
    jobs = [_compiled("c-tsan hook_suite", lambda: _hook_suite(TSAN, BUILD / "c-tsan"),
                      lambda prog: _hook_suite_clean(_run([prog], env, timeout=300)))]
    for path in _programs("test_"):
        if path.stem in TSAN_SKIP:
            print(f"SKIP c-tsan {path.stem}: {TSAN_SKIP[path.stem]}")
            continue
        jobs.append(_compiled(f"c-tsan {path.stem}",
                              lambda path=path: _compile_c(path, (*TSAN, "-DNDEBUG"), BUILD / "c-tsan"), run))
    _parallel(res, jobs)


def step_memcheck(res: Results):
    if not shutil.which("valgrind"):
        res.add("memcheck", False, "valgrind is not installed (apt-get install valgrind)")
        return
    _parallel(res, [_compiled(f"memcheck {path.stem}",
                              lambda path=path: _compile_c(path, ("-DNDEBUG",), BUILD / "memcheck"),
                              lambda prog, path=path: _clean(_run([*VALGRIND, *VALGRIND_EXTRA.get(path.stem, ()), prog],
                                                                      timeout=900)))
                    for path in _programs("test_")])


# ---- the cffi module -----------------------------------------------------------

def build_module(kind: str) -> Path:
    """Build the cffi module with sanitizers into build/sanitize/<kind>/ and lay the
    package around it there (symlinks to the sources); returns the directory to
    put first on PYTHONPATH. kind: "py-asan" (gcc) or "py-fuzz" (clang, libFuzzer
    coverage). The compile runs in a subprocess with CC set for the kind."""
    out = BUILD / kind
    cmd = [sys.executable, __file__, "--build-module", kind]
    env = {"CC": "gcc" if kind == "py-asan" else "clang"}
    cp = _run(cmd, env, timeout=900)
    if cp.returncode != 0:
        raise RuntimeError(f"building the {kind} module failed:\n{cp.stdout[-3000:]}\n{cp.stderr[-6000:]}")
    return out


def _extension(cc: list[str], cflags: list[str], sources, obj: Path, prefix: str, target: Path,
               ldflags=()) -> None:
    """One object per source (named prefix-NN-stem.o in obj), then `target`
    linked -shared from them; exits with the compiler's messages on failure."""
    objects = []
    for i, src in enumerate(sources):
        o = obj / f"{prefix}-{i:02d}-{Path(src).stem}.o"
        cmd = [*cc, "-fPIC", f"-I{sysconfig.get_paths()['include']}", *cflags, "-c", str(src), "-o", str(o)]
        cp = subprocess.run(cmd, capture_output=True, text=True)
        if cp.returncode != 0:
            sys.exit(f"{' '.join(cmd)}\n{cp.stderr}")
        objects.append(str(o))
    cmd = [*cc, "-shared", "-o", str(target) + ".tmp", *objects, *ldflags]
    cp = subprocess.run(cmd, capture_output=True, text=True)
    if cp.returncode != 0:
        sys.exit(f"{' '.join(cmd)}\n{cp.stderr}")
    os.replace(str(target) + ".tmp", target)


def _build_module_here(kind: str) -> None:
    """Compile what yfcore/_build.py would (its cdef, and the sources and flags
    _sources.py names, as _build.py passes them to cffi) with the sanitizers
    added, straight with $CC: one object per source, then -shared; and
    yfcore._yfpy the same way (Python bodies switch stacks and swap the
    interpreter's thread state, so they are built with the sanitizers too)."""
    from yfcore import _sources

    flags = list(ASAN) + (["-fsanitize=fuzzer-no-link"] if kind == "py-fuzz" else [])
    builder = _load("_yf_build_sanitize", ROOT / "yfcore" / "_build.py")
    ffi = builder.ffibuilder
    module, _, _, kwds = ffi._assigned_source
    out = BUILD / kind
    obj = out / "obj"
    pkg = out / module.split(".")[0]
    obj.mkdir(parents=True, exist_ok=True)
    pkg.mkdir(parents=True, exist_ok=True)
    wrapper = obj / "_yfcore.c"
    ffi.emit_c_code(str(wrapper))
    cc = os.environ.get("CC", "cc").split()
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    cflags = [*(f"-I{(ROOT / d).resolve()}" for d in kwds.get("include_dirs", [])),
              *(f"-D{k}" if v is None else f"-D{k}={v}" for k, v in kwds.get("define_macros", [])),
              *kwds.get("extra_compile_args", []), *flags]
    _extension(cc, cflags, [wrapper, *((ROOT / s).resolve() for s in kwds.get("sources", []))], obj, "cffi",
               pkg / (module.split(".")[-1] + suffix),
               [*kwds.get("extra_link_args", []), *flags, *(f"-l{lib}" for lib in kwds.get("libraries", []))])
    _extension(cc, [*(f"-I{d}" for d in _sources.include_dirs(ROOT)), *_sources.PY_CFLAGS, *flags],
               _sources.py(ROOT), obj, "py", pkg / ("_yfpy" + suffix), flags)
    # The rest of the package: links to the source tree, so the lab still
    # finds the repository root (it resolves links) and its hook library.
    for entry in (ROOT / "yfcore").iterdir():
        if entry.name.startswith(("_yfcore", "_yfpy")) or entry.name == "__pycache__":
            continue
        link = pkg / entry.name
        if link.is_symlink() or link.is_file():
            link.unlink()
        elif link.is_dir():
            shutil.rmtree(link)
        link.symlink_to(entry)


def _preload(cc: str, lib: str) -> str:
    cp = _run([cc, f"-print-file-name={lib}"], timeout=60)
    path = cp.stdout.strip()
    if cp.returncode != 0 or not os.path.isabs(path):
        raise RuntimeError(f"{cc} does not know {lib}")
    return path


def _module_env(kind: str, pythonpath: Path, preload: str) -> dict[str, str]:
    return {
        "PYTHONPATH": os.pathsep.join([str(pythonpath), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "LD_PRELOAD": preload,
        # The interpreter does not free everything at exit.
        "ASAN_OPTIONS": "detect_leaks=0:" + ASAN_OPTIONS,
        "UBSAN_OPTIONS": UBSAN_OPTIONS,
    }


def _check_module(res: Results, kind: str, env) -> bool:
    # -P: the current directory must not come first, or the in-place build would.
    cp = _run([sys.executable, "-P", "-c", "import yfcore._yfcore as m; print(m.__file__)"], env, cwd=ROOT)
    where = cp.stdout.strip()
    ok = cp.returncode == 0 and where.startswith(str(BUILD / kind))
    return res.add(f"{kind} module loads from build/sanitize/{kind}", ok, f"{where}\n{cp.stderr[-3000:]}")


def step_py_asan(res: Results):
    try:
        path = build_module("py-asan")
        # libstdc++ beside libasan: greenlet (a benchmark's competitor) is
        # C++, and ASan's __cxa_throw interceptor must find the real one at
        # start-up or the first exception greenlet throws aborts.
        preload = f'{_preload("gcc", "libasan.so")} {_preload("gcc", "libstdc++.so")}'
    except RuntimeError as e:
        res.add("py-asan build", False, str(e))
        return
    env = {**_module_env("py-asan", path, preload), "YF_QUICK": "1"}
    # The runtime's guard reporter owns SIGSEGV (the guard-hit tests check
    # its report, as test_guard does); any other fault still kills its test.
    env["ASAN_OPTIONS"] += ":handle_segv=0"
    if not _check_module(res, "py-asan", env):
        return
    deselect = []
    for test, why in PY_ASAN_DESELECT.items():
        print(f"  not under ASan: {test}: {why}")
        deselect += ["--deselect", test]
    cp = _run([sys.executable, "-P", "-m", "pytest", "-q", "-x", "--capture=sys", "-p", "no:cacheprovider", *deselect,
               *PY_TESTS], env, timeout=1800, cwd=ROOT)
    tail = "\n".join(cp.stdout.splitlines()[-3:])
    print(f"  pytest under ASan: {tail.splitlines()[-1] if tail else '(no output)'}")
    res.add("py-asan pytest " + " ".join(Path(t).stem for t in PY_TESTS), *_clean(cp))


# ---- fuzzing ------------------------------------------------------------------------

def fuzz_env() -> tuple[dict[str, str], Path]:
    """(environment, module dir) for running a fuzz target against the clang build."""
    try:
        import atheris
    except ImportError:
        raise RuntimeError("atheris is not installed (pip install atheris; it needs clang)") from None
    path = build_module("py-fuzz")
    preload = Path(atheris.path()) / "asan_with_fuzzer.so"
    if not preload.is_file():
        raise RuntimeError(f"atheris has no {preload.name} in {preload.parent}")
    return _module_env("py-fuzz", path, str(preload)), path


def run_fuzz(res: Results, seconds: float, jobs_dir: Path | None = None) -> None:
    try:
        env, _ = fuzz_env()
    except RuntimeError as e:
        res.add("fuzz build", False, str(e))
        return
    if not _check_module(res, "py-fuzz", env):
        return
    targets = sorted(FUZZ_DIR.glob("fuzz_*.py"))
    each = max(5, int(seconds / max(1, len(targets))))
    for target in targets:
        corpus = FUZZ_DIR / "corpus" / target.stem
        fresh = (jobs_dir or BUILD / "fuzz") / target.stem
        fresh.mkdir(parents=True, exist_ok=True)
        artifacts = (jobs_dir or BUILD / "fuzz") / f"{target.stem}-crashes"
        artifacts.mkdir(parents=True, exist_ok=True)
        # New inputs go to `fresh` (the first directory); the committed corpus
        # seeds the run and is only read.
        cmd = [sys.executable, "-P", target, f"-max_total_time={each}", "-timeout=10", "-rss_limit_mb=4096",
               f"-artifact_prefix={artifacts}/", "-print_final_stats=1", fresh, corpus]
        t0 = time.monotonic()
        cp = _run(cmd, env, timeout=each + 300, cwd=ROOT)
        stats = [ln for ln in cp.stderr.splitlines() if ln.startswith(("stat::number_of_executed_units",
                                                                        "stat::new_units_added", "#"))]
        done = next((ln for ln in reversed(stats) if ln.startswith("#") and "DONE" in ln), "")
        print(f"  {target.stem}: {time.monotonic() - t0:.0f} s; {done.strip()}")
        for ln in stats:
            if ln.startswith("stat::"):
                print(f"    {ln}")
        res.add(f"fuzz {target.stem} {each} s", *_clean(cp))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(STEPS), help=f"comma-separated steps of {', '.join(STEPS)}")
    ap.add_argument("--fuzz-seconds", type=float, default=float(os.environ.get("YF_FUZZ_SECONDS", 60)),
                    help="total fuzzing time, split over the targets (default 60, or $YF_FUZZ_SECONDS)")
    ap.add_argument("--build-module", choices=("py-asan", "py-fuzz"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.build_module:
        _build_module_here(args.build_module)
        return 0
    steps = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        ap.error(f"unknown step {', '.join(unknown)}; steps: {', '.join(STEPS)}")
    res = Results()
    t0 = time.monotonic()
    for step in steps:
        ts = time.monotonic()
        print(f"== {step}", flush=True)
        if step == "fuzz":
            run_fuzz(res, args.fuzz_seconds)
        else:
            {"c-asan": step_c_asan, "c-tsan": step_c_tsan, "memcheck": step_memcheck,
             "py-asan": step_py_asan}[step](res)
        print(f"== {step}: {time.monotonic() - ts:.0f} s", flush=True)
    print(f"sanitize: {time.monotonic() - t0:.0f} s")
    for name in res.failed:
        print(f"failed: {name}")
    print(f"{len(res.passed)} passed, {len(res.failed)} failed")
    return 1 if res.failed else 0


if __name__ == "__main__":
    sys.exit(main())
