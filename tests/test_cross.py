"""The C tests on the second architecture: tests/c/*.c cross-compiled for aarch64 and run under qemu-user.

Each program is built as test_c.py builds it (runtime and lab, release and
debug, the `test-cflags:` line, fail_*.c expected to abort with their message)
but with Debian's cross compiler and the aarch64 context switch, and is run by
qemu-aarch64 with the cross C library. A program whose `arch:` line names
another architecture is left out (test_ctx.c is the x86-64 psABI test;
test_ctx_aarch64.c mirrors it for AAPCS64). When the cross compiler, its C
library or qemu is missing, the tests say SKIPPED and name the package; on an
aarch64 host test_c.py runs the same programs natively instead.

qemu-user translates the guest's system calls onto this kernel, which can
differ from a real aarch64 kernel. The programs see YF_TEST_QEMU_USER=1 and
leave out only what cannot work under it, each printing a `SKIPPED:` line with
the reason; the test asserts that those lines are exactly the known ones, so
nothing else goes quiet. test_wheel.c's random walk also runs a tenth of its
steps there (its full per-step check costs minutes under emulation).
"""
import os
import platform
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from yfcore import _sources
from yfcore.lab import toolchain

TESTS = Path(__file__).resolve().parent
C_DIR = TESTS / "c"
ARCH = "aarch64"
TRIPLE = "aarch64-linux-gnu"
SYSROOT = Path("/usr") / TRIPLE
CC = f"{TRIPLE}-gcc"
QEMU = f"qemu-{ARCH}"
PACKAGES = "gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user"
BUILDS = {"release": ("-DNDEBUG",), "debug": ("-DYF_DEBUG",)}

# What a program may leave out under qemu-user, and why (its SKIPPED: lines).
QEMU_SKIPS = {
    "test_sbuf.c": {
        "test_reserve_enomem_gives_back: qemu-user accepts setrlimit(RLIMIT_AS) and applies nothing "
        "(the limit would bind the emulator itself), so the 1 GiB reserve never runs out",
    },
    "test_loop.c": {
        "test_without_epoll_pwait2: qemu-user refuses PR_SET_SECCOMP (EINVAL): a filter would "
        "bind the emulator's own host system calls, not the guest's",
    },
}


# Programs that do not yet hold on aarch64 for reasons of their own, not of
# qemu: said as SKIPPED, with what was measured.


def _marker(path: Path, name: str) -> str | None:
    m = re.search(rf"^\s*\*?\s*{name}:\s*(.+?)\s*$", path.read_text(), re.M)
    return m.group(1) if m else None


PROGRAMS = [p for p in sorted(C_DIR.glob("*.c")) if _marker(p, "arch") in (None, ARCH)]


def _missing() -> str | None:
    """Why the cross tests cannot run here, or None."""
    if platform.machine() == ARCH:
        return f"this host is {ARCH}: tests/test_c.py runs the C tests natively"
    if shutil.which(CC) is None:
        return f"{CC} not found (install {PACKAGES})"
    if not (SYSROOT / "lib" / "ld-linux-aarch64.so.1").exists() or not (SYSROOT / "include" / "stdio.h").exists():
        return f"no aarch64 C library under {SYSROOT} (install libc6-dev-arm64-cross)"
    if shutil.which(QEMU) is None:
        return f"{QEMU} not found (install qemu-user)"
    return None


@pytest.fixture(scope="module")
def cross():
    why = _missing()
    if why:
        pytest.skip(f"aarch64 C tests: {why}")


def _build(path: Path, extra: tuple[str, ...]) -> Path:
    own = tuple((_marker(path, "test-cflags") or "").split())
    return toolchain.compile_program(path, with_lab=True, arch=ARCH, cc=(CC,),
                                     cflags=(*_sources.TEST_CFLAGS, *extra, *own),
                                     ldflags=("-lm",))


# qemu-user runs each guest thread on a host thread whose malloc may reserve
# a new 64 MiB arena of the emulator's own glibc when threads contend (on a
# loaded machine): address space test_guard.c's thread check would count.
QEMU_ENV = {"MALLOC_ARENA_MAX": "1"}


def _run(exe: Path, *args: str, qemu: tuple[str, ...] = (), timeout: float = 300) -> subprocess.CompletedProcess:
    cmd = [QEMU, *qemu, "-L", str(SYSROOT), str(exe), *args]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=timeout,
                              env={**os.environ, "YF_TEST_QEMU_USER": "1", **QEMU_ENV})
    except subprocess.TimeoutExpired:
        raise TimeoutError(f"{exe.name} under {QEMU} did not finish within {timeout} s") from None


def _report(path: Path, cp) -> str:
    return f"{path.name} ({ARCH}, qemu): {toolchain.describe_exit(cp)}\n--- stdout ---\n{cp.stdout}\n--- stderr ---\n{cp.stderr}"


def test_the_programs_include_the_aarch64_switch_test():
    names = {p.name for p in PROGRAMS}
    assert "test_ctx_aarch64.c" in names and "test_ctx.c" not in names
    assert any(n.startswith("fail_") for n in names)


@pytest.mark.parametrize("build", sorted(BUILDS))
@pytest.mark.parametrize("path", [p for p in PROGRAMS if not p.name.startswith("fail_")], ids=lambda p: p.stem)
def test_program_exits_0_under_qemu(cross, path, build):
    cp = _run(_build(path, BUILDS[build]))
    assert cp.returncode == 0, _report(path, cp)
    skipped = {line.split("SKIPPED:", 1)[1].strip() for line in cp.stdout.splitlines() if "SKIPPED:" in line}
    assert skipped == QEMU_SKIPS.get(path.name, set()), _report(path, cp)


@pytest.mark.parametrize("path", [p for p in PROGRAMS if p.name.startswith("fail_")], ids=lambda p: p.stem)
def test_program_aborts_with_message_under_qemu(cross, path):
    message = _marker(path, "expect-abort")
    assert message, f"{path.name} has no `expect-abort:` line naming the message it must die with"
    cp = _run(_build(path, ()))
    assert cp.returncode == -signal.SIGABRT, _report(path, cp)
    assert message in cp.stderr, _report(path, cp)


def test_everything_pip_builds_cross_compiles_without_warnings(cross, tmp_path):
    """What an install on aarch64 compiles, with the project's flags: the runtime and
    the lab (the cffi module less its Python glue, whose headers are not here for
    aarch64) and the hook library linked against libyf.so."""
    csrc = _sources.csrc()
    inc = [f"-I{d}" for d in _sources.include_dirs()]
    module = [str(p) for p in (*_sources.runtime(arch=ARCH), *_sources.lab(arch=ARCH))]
    libyf = tmp_path / "libyf.so"
    steps = [
        [CC, *_sources.COMMON_CFLAGS, *_sources.RELEASE_CFLAGS, "-fPIC", "-shared", *inc, "-o",
         str(tmp_path / "module.so"), *module, *(f"-l{x}" for x in _sources.RUNTIME_LIBS)],
        [CC, *_sources.LIBRARY_CFLAGS, "-shared", *inc, "-o", str(libyf),
         *map(str, _sources.runtime(arch=ARCH)), *(f"-l{x}" for x in _sources.RUNTIME_LIBS)],
        [CC, *_sources.LIBRARY_CFLAGS, *_sources.HOOK_CFLAGS, "-shared", *inc, f"-I{csrc / 'hook'}", "-o",
         str(tmp_path / "libyfhook.so"), *map(str, _sources.hook()), f"-L{tmp_path}", "-lyf",
         *(f"-l{x}" for x in _sources.HOOK_LIBS)],
    ]
    for cmd in steps:
        cp = subprocess.run(cmd, capture_output=True, text=True)
        assert cp.returncode == 0 and "warning:" not in cp.stderr, f"{' '.join(cmd)}\n{cp.stderr}"


# ---- BTI: every switch entry point is a landing pad ---------------------------

def _bti_program(ctx: Path, tmp_path: Path) -> Path:
    exe = tmp_path / f"bti-{ctx.stem}"
    csrc = _sources.csrc()
    cmd = [CC, "-std=gnu11", "-O2", "-ffreestanding", "-nostdlib", "-static", "-fno-stack-protector",
           "-mbranch-protection=standard", f"-I{csrc}", "-o", str(exe), str(TESTS / "cross" / "bti_aarch64.c"),
           str(ctx), str(csrc / "lab" / "ctx_variants_aarch64.S")]
    cp = subprocess.run(cmd, capture_output=True, text=True)
    assert cp.returncode == 0, f"{' '.join(cmd)}\n{cp.stderr}"
    return exe


def _has_bti_property(exe: Path) -> bool:
    cp = subprocess.run([f"{TRIPLE}-readelf", "-n", str(exe)], capture_output=True, text=True, check=True)
    return re.search(r"AArch64 feature:.*\bBTI\b", cp.stdout) is not None


def test_switches_are_bti_landing_pads(cross, tmp_path):
    """The freestanding program calls every switch through a pointer with BTI enforced.

    The control build assembles a copy of the switch whose landing pads are
    nops: it must die by SIGILL, or this qemu does not enforce BTI and the
    check proves nothing.
    """
    csrc = _sources.csrc()
    exe = _bti_program(csrc / "ctx_aarch64.S", tmp_path)
    # The linker ANDs the property over the inputs: present only if every
    # object, ctx_aarch64.S's and the lab's variants included, carries it.
    assert _has_bti_property(exe)
    cp = _run(exe, qemu=("-cpu", "max"), timeout=60)
    assert cp.returncode == 0, _report(exe, cp)

    inc = (csrc / "ctx_aarch64.inc").read_text()
    assert "#define BTI_C hint 34" in inc
    padless = tmp_path / "padless"
    padless.mkdir()
    (padless / "ctx_aarch64.inc").write_text(inc.replace("#define BTI_C hint 34", "#define BTI_C nop"))
    (padless / "lab").mkdir()
    for name in ("ctx_aarch64.S", "lab/ctx_variants_aarch64.S"):
        (padless / name).write_text((csrc / name).read_text())
    exe = tmp_path / "bti-padless"
    cmd = [CC, "-std=gnu11", "-O2", "-ffreestanding", "-nostdlib", "-static", "-fno-stack-protector",
           "-mbranch-protection=standard", f"-I{padless}", f"-I{csrc}", "-o", str(exe),
           str(TESTS / "cross" / "bti_aarch64.c"), str(padless / "ctx_aarch64.S"),
           str(padless / "lab" / "ctx_variants_aarch64.S")]
    subprocess.run(cmd, capture_output=True, text=True, check=True)
    control = _run(exe, qemu=("-cpu", "max"), timeout=60)
    if control.returncode != -signal.SIGILL:
        pytest.skip(f"{QEMU} does not enforce BTI here (the pad-less control ended with "
                    f"{toolchain.describe_exit(control)}, not SIGILL)")


def test_unsupported_architecture_stops_the_build(tmp_path):
    """The C side refuses an architecture without a switch with a clear message.

    yfi.h is preprocessed with this machine's architecture macro undefined;
    the C library's headers cannot be read that way, so empty stand-ins
    replace every system header yfi.h includes.
    """
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    for name in re.findall(r"^#include <([^>]+)>", (_sources.csrc() / "yfi.h").read_text(), re.M):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    macro = {"x86_64": "__x86_64__", "aarch64": "__aarch64__"}[platform.machine()]
    cp = subprocess.run([cc, f"-U{macro}", "-nostdinc", f"-isystem{tmp_path}", f"-I{_sources.csrc()}",
                         "-E", "-x", "c", "-"],
                        input='#include "yfi.h"\n', capture_output=True, text=True)
    assert cp.returncode != 0
    assert "no context switch for this architecture" in cp.stderr
    with pytest.raises(_sources.UnsupportedArchitecture, match="riscv64"):
        _sources.arch_sources("riscv64")


# ---- stack guards under qemu-user ------------------------------------------------

@pytest.mark.parametrize("mode", ["guard", "guard-mprotect"])
def test_guard_hit_kills_and_names_the_coroutine_under_qemu(cross, mode):
    """csrc/programs/stack_overflow.c: coroutine B overflows into A's slot and the guard stops it.

    qemu-user accepts MADV_GUARD_INSTALL and installs nothing; the runtime's
    probe must see that and fall back to mprotect, or "guard" runs unguarded.
    """
    exe = toolchain.compile_program("stack_overflow", with_runtime=True, arch=ARCH, cc=(CC,),
                                    cflags=_sources.TEST_CFLAGS)
    cp = _run(exe, mode, timeout=60)
    assert cp.returncode == -signal.SIGSEGV, _report(exe, cp)
    printed = [o for o in toolchain.json_lines(cp.stdout) if o.get("event") == "overflowing"]
    assert printed, _report(exe, cp)
    m = re.search(r"yfcore: coroutine (\d+) overflowed its (\d+)-byte stack", cp.stderr)
    assert m, _report(exe, cp)
    assert int(m[1]) == printed[-1]["id"] and int(m[2]) == 65536


def test_no_guard_corrupts_the_neighbour_under_qemu(cross):
    """The control: without a guard the same overflow goes unnoticed and changes A's stack."""
    exe = toolchain.compile_program("stack_overflow", with_runtime=True, arch=ARCH, cc=(CC,),
                                    cflags=_sources.TEST_CFLAGS)
    cp = _run(exe, "noguard", timeout=60)
    assert cp.returncode == 0, _report(exe, cp)
    r = toolchain.json_lines(cp.stdout)[-1]
    assert r["exit"] == "normal" and r["adjacent"] is True and r["victim_bytes_changed"] > 0


# ---- pointer authentication: callers that sign their return addresses ---------------

PAC_PROGRAMS = ["test_ctx_aarch64.c", "test_sched.c", "test_loop.c"]
PACIASP = bytes.fromhex("3f2303d5")  # paciasp, little-endian


def _pac_build(path: Path, ctx_dir: Path | None = None) -> Path:
    """`path` with the runtime and lab built with -mbranch-protection=standard
    (return addresses signed with sp as the modifier); `ctx_dir` swaps in the
    switch files found there."""
    extra = ()
    if ctx_dir is not None:
        extra = (ctx_dir / "ctx_aarch64.S", ctx_dir / "lab" / "ctx_variants_aarch64.S")
        srcs = [p for p in (*_sources.runtime(arch=ARCH), *_sources.lab(arch=ARCH)) if p.suffix == ".c"]
        return toolchain.compile_program(path, extra_sources=(*srcs, *extra), cc=(CC,),
                                         cflags=(*_sources.TEST_CFLAGS, "-DNDEBUG", "-mbranch-protection=standard"),
                                         ldflags=("-ldl", "-lm"))
    return toolchain.compile_program(path, with_lab=True, arch=ARCH, cc=(CC,),
                                     cflags=(*_sources.TEST_CFLAGS, "-DNDEBUG", "-mbranch-protection=standard"),
                                     ldflags=("-lm",))


@pytest.mark.parametrize("name", PAC_PROGRAMS, ids=lambda n: n[:-2])
def test_signed_return_addresses_survive_switches(cross, name):
    """The switch saves and restores x30 raw; callers built with pac-ret sign and
    check their own return addresses around it (qemu -cpu max authenticates)."""
    path = C_DIR / name
    exe = _pac_build(path)
    assert PACIASP in exe.read_bytes(), "the build did not sign return addresses"
    cp = _run(exe, qemu=("-cpu", "max"))
    assert cp.returncode == 0, _report(path, cp)


def test_a_switch_that_signed_lr_would_break(cross, tmp_path):
    """The control for the test above: a copy of the switch that signs x30 on entry
    and authenticates it before returning, with sp as the modifier, authenticates the
    other context's return address against the wrong stack and dies; were it to pass,
    this qemu would not be checking signatures and the test above would prove nothing."""
    csrc = _sources.csrc()
    inc = (csrc / "ctx_aarch64.inc").read_text()
    entry, leave = "    sub     sp, sp, #176\n", "    mov     x0, x2\n"
    assert inc.count(entry) == 1 and inc.count(leave) == 1
    (tmp_path / "lab").mkdir()
    (tmp_path / "ctx_aarch64.inc").write_text(
        inc.replace(entry, "    paciasp\n" + entry).replace(leave, leave + "    autiasp\n"))
    for name in ("ctx_aarch64.S", "lab/ctx_variants_aarch64.S"):
        (tmp_path / name).write_text((csrc / name).read_text())
    path = C_DIR / "test_ctx_aarch64.c"
    cp = _run(_pac_build(path, tmp_path), qemu=("-cpu", "max"), timeout=60)
    if cp.returncode == 0:
        pytest.skip(f"{QEMU} does not authenticate return addresses here: the signing control passed")
    assert cp.returncode in (-signal.SIGSEGV, -signal.SIGILL, -signal.SIGBUS), _report(path, cp)
