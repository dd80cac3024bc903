"""Provenance of a measurement: this machine, this build, this checkout."""
import datetime
import functools
import os
import platform
import subprocess

from .paths import env_flag, root

__all__ = ["provenance"]


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


def _git() -> str:
    try:
        where = root()
    except RuntimeError:
        return "unknown"
    return _first_line(["git", "describe", "--always", "--dirty"], cwd=where)


def provenance(quick: bool | None = None) -> dict:
    """Describe where and how a result was measured.

    Keys: cpu, cores, kernel, compiler, cflags, python, yfcore, git, date
    (UTC, ISO-8601 to the second) and quick (defaults to $YF_QUICK).
    """
    return {
        "cpu": _cpu(),
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "compiler": _compiler(),
        "cflags": _cflags(),
        "python": platform.python_version(),
        "yfcore": _version(),
        "git": _git(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "quick": env_flag("YF_QUICK") if quick is None else bool(quick),
    }
