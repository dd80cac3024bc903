"""C tests: every tests/c/*.c is a main() program compiled against the runtime and run.

They are linked with the runtime and the lab (demo bodies, switch variants),
the sources and flags yfcore/_sources.py names. test_*.c and other programs
must exit 0 in a release build (-DNDEBUG: their checks do not use assert) and
a debug build (-DYF_DEBUG: the runtime's own contract checks on) and a
build with co.c's resume and yield as the public ones (-DYFI_NO_FAST_ASM). fail_*.c
programs are expected to abort: they must die by SIGABRT with the message
named by their `expect-abort:` line. A program's `test-cflags:` line adds
compiler flags; its `arch:` line, when present, names the one architecture it
is written for (the others leave it out; tests/test_cross.py runs the
programs for aarch64 under qemu-user).
"""
import re
import signal
from pathlib import Path

import pytest

from yfcore import _sources
from yfcore.lab import toolchain

C_DIR = Path(__file__).resolve().parent / "c"
BASE_CFLAGS = _sources.TEST_CFLAGS
# "c-paths": on x86-64 the public resume and yield are ctx_x86_64.S's fused
# fast paths; this build makes co.c's the public ones, so they run too.
BUILDS = {"release": ("-DNDEBUG",), "debug": ("-DYF_DEBUG",), "c-paths": ("-DNDEBUG", "-DYFI_NO_FAST_ASM")}


def _marker(path: Path, name: str) -> str | None:
    m = re.search(rf"^\s*\*?\s*{name}:\s*(.+?)\s*$", path.read_text(), re.M)
    return m.group(1) if m else None


PROGRAMS = [p for p in sorted(C_DIR.glob("*.c")) if _marker(p, "arch") in (None, _sources.machine())]


def _build(path: Path, extra: tuple[str, ...]) -> Path:
    own = tuple((_marker(path, "test-cflags") or "").split())
    return toolchain.compile_program(path, with_lab=True, cflags=(*BASE_CFLAGS, *extra, *own),
                                     ldflags=("-lm",))


def _report(path: Path, cp) -> str:
    return f"{path.name}: {toolchain.describe_exit(cp)}\n--- stdout ---\n{cp.stdout}\n--- stderr ---\n{cp.stderr}"


def test_the_glob_finds_both_kinds():
    names = {p.name for p in PROGRAMS}
    # The switch test is written per architecture (its `arch:` line).
    ctx = {"x86_64": "test_ctx.c", "aarch64": "test_ctx_aarch64.c"}[_sources.machine()]
    assert {ctx, "test_sched.c"} <= names
    assert any(n.startswith("fail_") for n in names)


@pytest.mark.parametrize("build", sorted(BUILDS))
@pytest.mark.parametrize("path", [p for p in PROGRAMS if not p.name.startswith("fail_")], ids=lambda p: p.stem)
def test_program_exits_0(path, build):
    cp = toolchain.run_program(_build(path, BUILDS[build]), timeout=120)
    assert cp.returncode == 0, _report(path, cp)


@pytest.mark.parametrize("path", [p for p in PROGRAMS if p.name.startswith("fail_")], ids=lambda p: p.stem)
def test_program_aborts_with_message(path):
    message = _marker(path, "expect-abort")
    assert message, f"{path.name} has no `expect-abort:` line naming the message it must die with"
    cp = toolchain.run_program(_build(path, ()), timeout=120)
    assert cp.returncode == -signal.SIGABRT, _report(path, cp)
    assert message in cp.stderr, _report(path, cp)
