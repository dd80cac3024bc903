"""Which sources and flags make the runtime, the lab and the hook library; stdlib only.

The one place that says so. It is imported by the cffi builder (_build.py),
the hook-library builder (_hookbuild.py), the toolchain helper of the lab
(lab/toolchain.py) and the C tests (tests/test_c.py); the two builders load
it by path, because they run while the package cannot be imported yet.

  runtime  csrc/*.c and this machine's context switch: libyf.so, and the
           core of the Python module; yf.h is its contract
  lab      csrc/lab/*.c and the switch variants the benchmarks time: in the
           Python module and the C tests, never in libyf.so or libyfhook;
           lab/lab.h is its contract
  hook     csrc/hook/*.c: libyfhook.so, linked against libyf.so
  py       csrc/py/*.c: the extension yfcore._yfpy (Python functions as
           coroutine bodies), a CPython C-API module built against this
           interpreter's headers; it reaches the runtime in the cffi module
           through a table of function addresses, never by linking it
"""
import platform
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The context switch per architecture (platform.machine()): the runtime's
# file, and the lab's file of the extra variants lab.h's YF_CTX_* number.
# Another architecture is added here and in csrc/ (ctx_<arch>.S).
ARCH_SOURCES = {
    "x86_64": {"runtime": "ctx_x86_64.S", "lab": "lab/ctx_variants_x86_64.S"},
    "aarch64": {"runtime": "ctx_aarch64.S", "lab": "lab/ctx_variants_aarch64.S"},
}

# Warnings that are errors everywhere: a call to an undeclared function would
# otherwise compile and truncate its return value to int.
WARNINGS = ("-Wall", "-Wextra", "-Wno-unused-parameter", "-Werror=implicit-function-declaration")
# Every object of the runtime, the lab and the hooks; this order is also what
# yf_build_info() reports for the Python module.
COMMON_CFLAGS = ("-std=gnu11", "-fstack-clash-protection", "-fno-semantic-interposition", *WARNINGS)
RELEASE_CFLAGS = ("-O2",)
DEBUG_CFLAGS = ("-O1", "-g", "-DYF_DEBUG")
# The shared libraries of _hookbuild.py: position-independent, with symbols.
LIBRARY_CFLAGS = ("-std=gnu11", "-O2", "-g", "-fPIC", "-fno-semantic-interposition",
                  "-fstack-clash-protection", *WARNINGS)
# _FORTIFY_SOURCE would turn recv, read, poll ... into inline wrappers around
# the __*_chk functions, which cannot then be defined.
HOOK_CFLAGS = ("-U_FORTIFY_SOURCE",)
# Stand-alone programs (experiments, C tests): later flags may override these.
PROGRAM_CFLAGS = ("-std=gnu11", "-O2", "-g", "-Werror=implicit-function-declaration")
# The C tests add these (the runtime is built with stack-clash protection).
TEST_CFLAGS = ("-O2", "-fstack-clash-protection")
# What linking the runtime needs (dladdr, dlsym) and the hooks besides.
RUNTIME_LIBS = ("dl",)
HOOK_LIBS = ("dl", "pthread")


class UnsupportedArchitecture(RuntimeError):
    """No context switch is written for this machine."""


def machine() -> str:
    return platform.machine()


def arch_sources(arch: str | None = None) -> dict[str, str]:
    """{"runtime": ..., "lab": ...} for `arch` (default: this machine), relative to csrc/."""
    arch = arch or machine()
    if arch not in ARCH_SOURCES:
        raise UnsupportedArchitecture(
            f"yfcore: no context switch for architecture {arch!r}; supported: "
            f"{', '.join(sorted(ARCH_SOURCES))} (add csrc/ctx_<arch>.S and ARCH_SOURCES in yfcore/_sources.py)")
    return ARCH_SOURCES[arch]


def csrc(root: Path | None = None) -> Path:
    return (root or ROOT) / "csrc"


def runtime(root: Path | None = None, arch: str | None = None) -> list[Path]:
    """The runtime: csrc/*.c and the context switch of `arch` (default: this machine)."""
    c = csrc(root)
    return [*sorted(c.glob("*.c")), c / arch_sources(arch)["runtime"]]


def lab(root: Path | None = None, arch: str | None = None) -> list[Path]:
    """The lab: csrc/lab/*.c and the extra switch variants of `arch` (default: this machine)."""
    c = csrc(root)
    return [*sorted((c / "lab").glob("*.c")), c / arch_sources(arch)["lab"]]


def hook(root: Path | None = None) -> list[Path]:
    """The hook library: csrc/hook/*.c."""
    return sorted((csrc(root) / "hook").glob("*.c"))


def py(root: Path | None = None) -> list[Path]:
    """The Python-body extension yfcore._yfpy: csrc/py/*.c."""
    return sorted((csrc(root) / "py").glob("*.c"))


# The Python-body extension: the runtime's flags (it includes yf.h).
PY_CFLAGS = (*COMMON_CFLAGS, *RELEASE_CFLAGS)


def headers(root: Path | None = None) -> list[Path]:
    """Every header and assembly include of the runtime, the lab and the hooks."""
    c = csrc(root)
    return sorted([*c.glob("*.h"), *c.glob("*.inc"), *(c / "lab").glob("*.h"), *(c / "hook").glob("*.h")])


def include_dirs(root: Path | None = None) -> list[Path]:
    """-I directories of the runtime and the lab (lab files include "lab/lab.h")."""
    return [csrc(root)]


def relative(paths: list[Path], root: Path | None = None) -> list[str]:
    """paths as strings relative to the project root (what setuptools wants)."""
    return [str(p.relative_to(root or ROOT)) for p in paths]
