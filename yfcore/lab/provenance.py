"""Provenance of a measurement: this machine, this build, this checkout."""
import datetime
import functools
import os
import platform
import subprocess

from .paths import env_flag, root

__all__ = ["provenance", "git_state", "DirtyTreeError"]


class DirtyTreeError(RuntimeError):
    """The checkout has uncommitted changes, so its results cannot name the code that made them."""


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _first_line(cmd: list[str], cwd=None) -> str:
    try:
        cp = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    lines = cp.stdout.strip().splitlines()
    return lines[0] if cp.returncode == 0 and lines else "unknown"


@functools.cache
def _compiler() -> str:
    return _first_line([os.environ.get("CC", "cc"), "--version"])


def _cflags() -> str:
    # build_info() belongs to the runtime wrapper; whatever goes wrong there
    # (module not built, older wrapper) must not stop a measurement.
    try:
        from yfcore import runtime

        info = runtime.build_info()
    except Exception:
        return "unknown"
    if isinstance(info, dict):
        return str(info.get("cflags", "unknown"))
    return str(info)


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("yfcore")
    except metadata.PackageNotFoundError:
        import yfcore

        return yfcore.__version__


def git_state() -> dict:
    """{"commit": full hash or "unknown", "dirty": uncommitted changes to tracked files}."""
    try:
        where = root()
    except RuntimeError:
        return {"commit": "unknown", "dirty": False}
    commit = _first_line(["git", "rev-parse", "HEAD"], cwd=where)
    try:
        cp = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                            text=True, cwd=where, timeout=30)
        dirty = cp.returncode != 0 or bool(cp.stdout.strip())
    except (OSError, subprocess.TimeoutExpired):
        dirty = True
    return {"commit": commit, "dirty": dirty}


def _git() -> tuple[str, bool]:
    # A reference run pins the commit it started from ($YF_GIT_COMMIT, set by
    # report.run): its own writes to notebooks/ and data/reference/ must not
    # make later notebooks of the same run look dirty.
    pinned = os.environ.get("YF_GIT_COMMIT")
    if pinned:
        return pinned, pinned.endswith("-dirty")
    st = git_state()
    return st["commit"] + ("-dirty" if st["dirty"] else ""), st["dirty"]


def provenance(quick: bool | None = None) -> dict:
    """Describe where and how a result was measured.

    Keys: cpu, cores, kernel, compiler, cflags, python, yfcore, git (the
    commit, "-dirty" appended when tracked files had uncommitted changes),
    dirty, date (UTC, ISO-8601 to the second) and quick (defaults to
    $YF_QUICK).
    """
    git, dirty = _git()
    return {
        "cpu": _cpu(),
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "compiler": _compiler(),
        "cflags": _cflags(),
        "python": platform.python_version(),
        "yfcore": _version(),
        "git": git,
        "dirty": dirty,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "quick": env_flag("YF_QUICK") if quick is None else bool(quick),
    }
