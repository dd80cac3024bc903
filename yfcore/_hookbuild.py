"""Build the hook library (csrc/hook/) and a runtime shared library; stdlib only.

setup.py loads this file by path (the package's dependencies may not be
importable while it builds), and yfcore.lab.hooks calls it on demand.

One build directory holds, for one variant:

  libyf.so      the runtime (csrc/*.c and the context switch, not the lab), nothing interposed;
                programs that call the yf_* API link against it
  libyfhook.so  the hooks only, with DT_NEEDED libyf.so and RUNPATH $ORIGIN:
                LD_PRELOAD it into such a program, or link it (-lyfhook -lyf)
  libyfhook.a   the hook objects and the runtime objects, for static linking
  obj/          the same objects one by one
  yfhook.h      the hooks' header (counters, real functions, knobs)
  STAMP         the fingerprint of sources, flags and compiler

The hooks are separate from the runtime so that a preloaded libyfhook.so and
a program linked against libyf.so share the one runtime, with one
thread-local "current coroutine", instead of each carrying a copy.
"""
import hashlib
import importlib.util
import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

VARIANTS = {
    # The shipped hooks.
    "default": (),
    # Hooks that log every failure and force EAGAIN on the first receive
    # after each send (to make the diary's 2016/04/26 run repeatable): with
    # errno set after the log line (right) or before it (the 2016 order).
    "log-late": ("-DYF_HOOK_LOG", "-DYF_HOOK_FORCE_EAGAIN"),
    "log-early": ("-DYF_HOOK_LOG", "-DYF_HOOK_ERRNO_EARLY", "-DYF_HOOK_FORCE_EAGAIN"),
}


def _load_sources():
    # setup.py loads this file by path, before the package can be imported.
    try:
        from . import _sources
        return _sources
    except ImportError:
        path = Path(__file__).resolve().with_name("_sources.py")
        spec = importlib.util.spec_from_file_location("_yf_sources", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod


_src = _load_sources()
CFLAGS = _src.LIBRARY_CFLAGS
HOOK_CFLAGS = _src.HOOK_CFLAGS


class HookBuildError(RuntimeError):
    """A compiler or linker step failed; `stderr` holds its messages verbatim."""

    def __init__(self, cmd: list[str], returncode: int, stderr: str):
        self.cmd, self.returncode, self.stderr = cmd, returncode, stderr
        super().__init__(f"{shlex.join(cmd)} exited {returncode}\n{stderr}")


def default_root() -> Path:
    return Path(__file__).resolve().parent.parent


def _cc() -> list[str]:
    return shlex.split(os.environ.get("CC", "cc"))


def sources(root: Path | None = None) -> dict[str, list[Path]]:
    """{"runtime": csrc/*.c + csrc/ctx_<arch>.S, "hook": csrc/hook/*.c, "headers": ...} (see _sources.py)."""
    try:
        runtime = _src.runtime(root)
    except _src.UnsupportedArchitecture as e:
        raise HookBuildError(["cc"], 1, str(e)) from None
    return {"runtime": runtime, "hook": _src.hook(root), "headers": _src.headers(root)}


def fingerprint(variant: str = "default", root: Path | None = None) -> str:
    """Hash of compiler, flags, variant and every source and header."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    h = hashlib.sha256()
    for part in (*_cc(), *CFLAGS, *HOOK_CFLAGS, variant, *VARIANTS[variant]):
        h.update(part.encode() + b"\0")
    for group in sources(root).values():
        for path in group:
            h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:12]


def artifacts(out_dir: Path) -> dict[str, Path]:
    """Where build() puts each product inside out_dir."""
    out_dir = Path(out_dir)
    return {
        "dir": out_dir,
        "runtime_so": out_dir / "libyf.so",
        "hook_so": out_dir / "libyfhook.so",
        "archive": out_dir / "libyfhook.a",
        "include": out_dir,
        "stamp": out_dir / "STAMP",
    }


def is_current(out_dir: Path, variant: str = "default", root: Path | None = None) -> bool:
    """True when out_dir holds a complete build of the current sources."""
    a = artifacts(out_dir)
    try:
        stamp = a["stamp"].read_text().strip()
    except OSError:
        return False
    return stamp == fingerprint(variant, root) and all(
        a[k].is_file() for k in ("runtime_so", "hook_so", "archive"))


def _run(cmd: list[str]) -> None:
    cp = subprocess.run(cmd, capture_output=True, text=True)
    if cp.returncode != 0:
        raise HookBuildError(cmd, cp.returncode, cp.stderr)


def build(out_dir: str | os.PathLike, variant: str = "default", root: Path | None = None) -> dict[str, Path]:
    """Build everything into out_dir (reused when its STAMP matches); returns artifacts().

    The work happens in a temporary sibling directory renamed into place, so
    a concurrent or interrupted build never leaves a half-built library
    behind a valid STAMP. Raises HookBuildError with the compiler's messages.
    """
    out_dir = Path(out_dir)
    fp = fingerprint(variant, root)
    if is_current(out_dir, variant, root):
        return artifacts(out_dir)
    src = sources(root)
    csrc = (root or default_root()) / "csrc"
    cc = _cc()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    tmp.chmod(0o755)
    try:
        obj = tmp / "obj"
        obj.mkdir()
        cflags = [*CFLAGS, *(f"-I{d}" for d in _src.include_dirs(root)), f"-I{csrc / 'hook'}"]
        runtime_objs = []
        for s in src["runtime"]:
            o = obj / (s.stem + ".o")
            _run([*cc, *cflags, '-DYF_CFLAGS="' + " ".join(CFLAGS) + '"', "-c", str(s), "-o", str(o)])
            runtime_objs.append(o)
        hook_objs = []
        for s in src["hook"]:
            o = obj / f"hook_{s.stem}.o"
            _run([*cc, *cflags, *HOOK_CFLAGS, *VARIANTS[variant], "-c", str(s), "-o", str(o)])
            hook_objs.append(o)
        _run([*cc, "-shared", "-Wl,-soname,libyf.so", "-o", str(tmp / "libyf.so"),
              *map(str, runtime_objs), *(f"-l{lib}" for lib in _src.RUNTIME_LIBS)])
        _run([*cc, "-shared", "-Wl,-soname,libyfhook.so", "-o", str(tmp / "libyfhook.so"),
              *map(str, hook_objs), f"-L{tmp}", "-lyf", "-Wl,-rpath,$ORIGIN", *(f"-l{lib}" for lib in _src.HOOK_LIBS)])
        _run(["ar", "rcs", str(tmp / "libyfhook.a"), *map(str, hook_objs), *map(str, runtime_objs)])
        shutil.copy2(csrc / "hook" / "yfhook.h", tmp / "yfhook.h")
        (tmp / "STAMP").write_text(fp + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir, ignore_errors=True)
        try:
            os.replace(tmp, out_dir)
        except OSError:
            # Another process finished the same build first.
            if not is_current(out_dir, variant, root):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return artifacts(out_dir)
