"""Build and run the small C programs in csrc/programs/ as subprocesses."""
import hashlib
import json
import os
import re
import shlex
import signal
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

from .. import _sources
from .paths import root

__all__ = ["CompileError", "runtime_sources", "lab_sources", "compile_program", "run_program", "describe_exit",
           "json_lines", "syscalls_per_op"]

DEFAULT_CFLAGS = _sources.PROGRAM_CFLAGS


class CompileError(RuntimeError):
    """The compiler or linker failed; `stderr` holds its messages verbatim."""

    def __init__(self, cmd: list[str], returncode: int, stderr: str):
        self.cmd = cmd
        self.returncode = returncode
        self.stderr = stderr
        super().__init__(f"{shlex.join(cmd)} exited {returncode}\n{stderr}")


def _csrc() -> Path:
    return root() / "csrc"


def runtime_sources(arch: str | None = None) -> list[Path]:
    """The runtime's sources (csrc/*.c and csrc/ctx_<arch>.S, default this machine's), as libyf.so has them."""
    return _sources.runtime(root(), arch)


def lab_sources(arch: str | None = None) -> list[Path]:
    """The lab's sources (csrc/lab/), which the Python module and the C tests add to the runtime."""
    return _sources.lab(root(), arch)


def _source(name: str | os.PathLike) -> Path:
    path = Path(name)
    if not path.is_absolute():
        path = _csrc() / "programs" / f"{name}.c"
    if not path.is_file():
        raise FileNotFoundError(f"no C program {name!r} (looked for {path})")
    return path


def _fingerprint(cc: list[str], sources: list[Path], cflags, ldflags) -> str:
    # Headers are hashed too, so an edit to yf.h rebuilds every program, and
    # so are those beside the main source (tests/c/check.h, ctx_tests.h).
    near = sorted(sources[0].parent.glob("*.h"))
    headers = sorted({*_sources.headers(root()), *_csrc().glob("programs/*.h"), *near})
    h = hashlib.sha256()
    for part in (*cc, "\0", *cflags, "\0", *ldflags, "\0"):
        h.update(part.encode() + b"\0")
    for path in (*sources, *headers):
        h.update(str(path).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:12]


def compile_program(
    name: str | os.PathLike,
    *,
    extra_sources: Iterable[str | os.PathLike] = (),
    cflags: Iterable[str] = (),
    ldflags: Iterable[str] = (),
    out_dir: str | os.PathLike | None = None,
    with_runtime: bool = False,
    with_lab: bool = False,
    arch: str | None = None,
    cc: Iterable[str] | None = None,
) -> Path:
    """Compile csrc/programs/<name>.c (or an absolute path to a .c file) with cc.

    `cflags` come after the defaults (-std=gnu11 -O2 -g) so they can override them;
    `ldflags` come after the sources. `with_runtime` links runtime_sources()
    and -ldl in, as libyf.so has them; `with_lab` adds lab_sources() (the
    demo bodies and benchmark kernels) as the cffi module does. `arch` takes
    that architecture's context switch instead of this machine's, for a cross
    compiler given as `cc` (default: $CC, else cc). The output lands in `out_dir` (default
    <root>/build/programs/) named <name>-<hash of compiler, flags and source
    contents>, with ".so" when linking -shared; an up-to-date output is reused.
    Raises CompileError carrying the command, exit code and compiler messages.
    """
    cc = list(cc) if cc is not None else shlex.split(os.environ.get("CC", "cc"))
    main = _source(name)
    sources = [main, *(Path(s).resolve() for s in extra_sources)]
    if with_runtime or with_lab:
        sources += runtime_sources(arch)
    if with_lab:
        sources += lab_sources(arch)
    cflags, ldflags = [*DEFAULT_CFLAGS, *cflags], list(ldflags)
    if with_runtime or with_lab:
        # dladdr and dlsym (names of code addresses, the Boost loader).
        ldflags += [f"-l{lib}" for lib in _sources.RUNTIME_LIBS]
    out = Path(out_dir) if out_dir is not None else root() / "build" / "programs"
    out.mkdir(parents=True, exist_ok=True)
    suffix = ".so" if "-shared" in cflags + ldflags else ""
    target = out / f"{main.stem}-{_fingerprint(cc, sources, cflags, ldflags)}{suffix}"
    if target.exists():
        return target
    # Link to a temporary name and rename, so a concurrent or interrupted
    # build never leaves a half-written program under the cached name.
    fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{target.name}.")
    os.close(fd)
    includes = [f"-I{d}" for d in _sources.include_dirs(root())]
    cmd = [*cc, *cflags, *includes, "-o", tmp, *map(str, sources), *ldflags]
    try:
        cp = subprocess.run(cmd, capture_output=True, text=True)
        if cp.returncode != 0:
            raise CompileError(cmd, cp.returncode, cp.stderr)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def run_program(
    path: str | os.PathLike,
    *args,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess:
    """Run a program and capture stdout and stderr as text; a non-zero exit is not an error.

    `env` adds to (or overrides) the current environment, e.g. {"LD_PRELOAD": ...}.
    Raises TimeoutError, naming the program, after killing it when it outlives `timeout` seconds.
    """
    cmd = [str(path), *map(str, args)]
    full_env = {**os.environ, **env} if env else None
    try:
        return subprocess.run(
            cmd, capture_output=True, text=True, errors="replace", env=full_env, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        raise TimeoutError(f"{Path(path).name} did not finish within {timeout} s and was killed") from None


def describe_exit(cp: subprocess.CompletedProcess) -> str:
    """How a program ended: "exit 0", "exit 3" or "killed by SIGSEGV"."""
    if cp.returncode >= 0:
        return f"exit {cp.returncode}"
    try:
        return f"killed by {signal.Signals(-cp.returncode).name}"
    except ValueError:
        return f"killed by signal {-cp.returncode}"


def json_lines(stdout: str) -> list[dict]:
    """The JSON objects a program printed, one per line (other lines skipped):
    the experiment programs report that way."""
    out = []
    for line in stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def syscalls_per_op(call: str, n: int, trace: str = "all") -> float:
    """System calls per operation of a runtime kernel, counted by strace -c:
    `call` is a Python expression over `lib` and `n` (e.g.
    "lib.yf_bench_stack_pool(n, 65536)") run in a fresh interpreter with n
    and with 5n operations; the difference over 4n removes what the
    interpreter and one-time setup cost. `trace` is strace's -e trace= set
    ("all", "%memory", "rt_sigprocmask", ...). RuntimeError without strace."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    return (_count_syscalls(call, 5 * n, trace) - _count_syscalls(call, n, trace)) / (4 * n)


_PROBE = """
import sys
from yfcore.labkernels import lib
n = int(sys.argv[2])
sys.exit(0 if eval(sys.argv[1]) >= 0 else 1)
"""


def _count_syscalls(call: str, n: int, trace: str) -> int:
    import shutil
    import sys

    strace = shutil.which("strace")
    if not strace:
        raise RuntimeError("strace not found (apt-get install strace)")
    with tempfile.NamedTemporaryFile("r", suffix=".strace") as out:
        cp = subprocess.run([strace, "-f", "-c", "-e", f"trace={trace}", "-o", out.name, sys.executable, "-c",
                             _PROBE, call, str(n)], capture_output=True, text=True, timeout=300)
        if cp.returncode != 0:
            raise RuntimeError(f"strace of {call} failed ({cp.returncode}): {cp.stderr[-400:]}")
        text = out.read()
    m = re.search(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?total\s*$", text, re.M)
    if not m:
        raise RuntimeError(f"no total in strace -c output: {text[-400:]!r}")
    return int(m.group(1))
