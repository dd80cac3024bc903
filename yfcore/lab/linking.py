"""Linking experiments (notebook 04): PC32 relocations, link builds and their
call costs, hooks that dlopen and static archives leave out, calls libc makes
inside itself."""
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .bench import default_rounds, interleaved
from .paths import root
from .stats import summary
from .toolchain import CompileError, compile_program, describe_exit, run_program, runtime_sources

__all__ = [
    "PC32_VARIANTS",
    "mask_paths",
    "relocations",
    "pc32_build",
    "runtime_shared",
    "LINK_BUILDS",
    "build_link",
    "hook_sources",
    "call_sites",
    "link_cost",
    "dlopen_counts",
    "ARCHIVE_FIXES",
    "archive_pull",
    "hook_intra_libc", "pc32_evidence", "link_cost_evidence", "intra_libc_evidence", "dlopen_evidence", "archive_evidence"]

# How link_pc32.S writes its two references (see the header of that file).
PC32_VARIANTS = {
    "bad: movq sym(%rip) to a global": ("-DLINK_CALL=2", "-DLINK_DATA=1"),
    "2016 call: R_X86_64_PC32 to a global": ("-DLINK_CALL=1", "-DLINK_DATA=2"),
    "today's call: plain call sym (PLT32)": ("-DLINK_CALL=2", "-DLINK_DATA=2"),
    "fix: hidden visibility": ("-DLINK_CALL=1", "-DLINK_DATA=1", "-DLINK_HIDDEN"),
    "fix: @PLT and @GOTPCREL": ("-DLINK_CALL=3", "-DLINK_DATA=2"),
    "fix: local aliases": ("-DLINK_CALL=4", "-DLINK_DATA=3"),
}

_PROGRAMS = Path("csrc") / "programs"


def _programs() -> Path:
    return root() / _PROGRAMS


def _out() -> Path:
    out = root() / "build" / "programs"
    out.mkdir(parents=True, exist_ok=True)
    return out


_TMP_OBJ = re.compile(r"(?<![\w.-])/(?:[^\s:'`]+/)*(cc\w{6})\.o\b")
_PATH = re.compile(r"(?<![\w.-])/(?:[^\s:'`]+/)+([^\s:'`/]+)")


def mask_paths(text: str) -> str:
    """Linker messages with paths cut to file names and gcc's temporary objects
    (/tmp/ccXXXXXX.o, a new name every run) shown as <tmp>.o, so they compare
    equal across runs and machines."""
    text = _TMP_OBJ.sub("<tmp>.o", text)
    return _PATH.sub(r"\1", text)


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    cp = subprocess.run(cmd, capture_output=True, text=True)
    if cp.returncode != 0:
        raise CompileError(cmd, cp.returncode, cp.stderr)
    return cp


def relocations(flags, source: str = "link_pc32.S") -> list[str]:
    """The relocations of `source` (in csrc/programs) assembled with `flags`,
    as "TYPE symbol" lines from readelf, for the .text section only."""
    with tempfile.TemporaryDirectory() as tmp:
        obj = Path(tmp) / "x.o"
        _run(["cc", "-c", *flags, "-fPIC", "-o", str(obj), str(_programs() / source)])
        text = _run(["readelf", "-rW", str(obj)]).stdout
    out, in_text = [], False
    for line in text.splitlines():
        if line.startswith("Relocation section"):
            in_text = "'.rela.text'" in line
            continue
        parts = line.split()
        if in_text and len(parts) >= 5 and parts[2].startswith("R_X86_64"):
            out.append(f"{parts[2]} {parts[4]}")
    return out


def _call_target(so: Path) -> str:
    # The instruction link_pc32_entry starts with after its stack adjustment:
    # which symbol (or PLT stub) the call went to once linked.
    text = _run(["objdump", "-d", "--no-show-raw-insn", str(so)]).stdout
    m = re.search(r"<link_pc32_entry>:\n(?:.*\n)*?\s+\w+:\s+call\s+\w+\s+<([^>]+)>", text)
    return m.group(1) if m else "?"


def pc32_build(variant: str) -> dict:
    """Build link_pc32.S into a shared library the way `variant` (a key of
    PC32_VARIANTS) writes its references, then a program against it.

    Returns {"variant", "flags", "relocations", "linked", "message"} and, when
    it linked, "call_target" (where the call in link_pc32_entry went: the
    function itself when bound at link time, "link_target@plt" when through
    the PLT), "exit" and "entry" (42 + 1000 when it ran right). "message" is
    the linker's stderr, paths masked (mask_paths), "" when silent.
    """
    if variant not in PC32_VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(map(repr, PC32_VARIANTS))}, not {variant!r}")
    flags = PC32_VARIANTS[variant]
    out = {"variant": variant, "flags": " ".join(flags), "relocations": relocations(flags)}
    try:
        so = compile_program(_programs() / "link_pc32.S", cflags=("-fPIC", *flags), ldflags=("-shared",))
    except CompileError as e:
        return out | {"linked": False, "message": mask_paths(e.stderr).strip()}
    out |= {"linked": True, "message": "", "call_target": _call_target(so)}
    exe = compile_program("link_pc32_main", extra_sources=[so], ldflags=[f"-Wl,-rpath,{so.parent}"])
    cp = run_program(exe)
    out["exit"] = describe_exit(cp)
    out["entry"] = json.loads(cp.stdout)["entry"] if cp.returncode == 0 else None
    return out


# Each link build: how the runtime is built (None: into the executable) and
# how link_main.c, with or without link_drive.c, is compiled against it.
LINK_BUILDS = {
    "static": "runtime objects linked into the executable: direct calls",
    "plt": "runtime in a shared library, the executable calls through PLT stubs",
    "noplt": "the same library; the executable built -fno-plt calls through the GOT",
    "hidden": "the timed loops inside the runtime's shared library, built -fvisibility=hidden",
}


def hook_sources() -> list[Path]:
    """The hook layer's C sources (csrc/hook/*.c), [] while it does not exist."""
    return sorted((root() / "csrc" / "hook").glob("*.c"))


def _hook_flags() -> tuple[tuple[str, ...], tuple[str, ...]]:
    # (cflags, ldflags) that build link_drive.c's hooked loop and link the hooks in.
    if not hook_sources():
        return (), ()
    return ("-DLINK_HOOKS", f"-I{root() / 'csrc' / 'hook'}"), ("-lpthread",)


def _runtime_so(cflags=()) -> Path:
    # compile_program names its output after the first source; the runtime
    # has no main, so its first file stands in. The hooks come along, as in
    # a libyfhook.so that carries the runtime.
    hc, hl = _hook_flags()
    first, *rest = runtime_sources()
    return compile_program(
        first, extra_sources=[*rest, *hook_sources()], cflags=("-fPIC", *hc, *cflags),
        ldflags=("-shared", "-ldl", *hl),
    )


def _build(kind: str) -> tuple[Path, Path]:
    # (the executable, the file holding link_drive.c's code)
    drive = _programs() / "link_drive.c"
    hc, hl = _hook_flags()
    if kind == "static":
        exe = compile_program(
            "link_main", extra_sources=[drive, *hook_sources()], cflags=hc, ldflags=hl, with_runtime=True
        )
        return exe, exe
    if kind in ("plt", "noplt"):
        so = _runtime_so()
        cflags = (*hc, "-fno-plt") if kind == "noplt" else hc
        exe = compile_program(
            "link_main", extra_sources=[drive, so], cflags=cflags, ldflags=[f"-Wl,-rpath,{so.parent}"]
        )
        return exe, exe
    if kind == "hidden":
        so = compile_program(
            drive, extra_sources=[*runtime_sources(), *hook_sources()],
            cflags=("-fPIC", "-fvisibility=hidden", "-DYFI_ASM_HIDDEN", *hc), ldflags=("-shared", "-ldl", *hl),
        )
        exe = compile_program("link_main", extra_sources=[so], cflags=hc, ldflags=[f"-Wl,-rpath,{so.parent}"])
        return exe, so
    raise ValueError(f"kind must be one of {', '.join(map(repr, LINK_BUILDS))}, not {kind!r}")


def build_link(kind: str) -> Path:
    """Build link_main for one of LINK_BUILDS and return the executable.
    Raises CompileError when a build fails."""
    return _build(kind)[0]


_HEX = re.compile(r"\b(?:0x)?[0-9a-f]{3,16}\b")


def call_sites(kind: str, callee: str = "yf_co_current") -> list[str]:
    """The instructions by which link_drive_call reaches `callee` in build
    `kind`, as objdump prints them with addresses and offsets cut, e.g.
    "call <yf_co_current@plt>" or "call *(%rip) # <yf_co_current@Base>"."""
    image = _build(kind)[1]
    text = _run(["objdump", "-d", "--no-show-raw-insn", str(image)]).stdout
    m = re.search(r"<link_drive_call>:\n(.*?)\n\n", text, re.S)
    if not m:
        raise RuntimeError(f"no link_drive_call in {image.name}")
    out = []
    for line in m.group(1).splitlines():
        ins = line.split(":", 1)[-1].strip()
        if ins.startswith("call") and callee in ins:
            out.append(re.sub(r"\s+", " ", _HEX.sub("", ins)).replace("+>", ">"))
    return out


def _dynamic_tags(path: Path) -> str:
    return _run(["readelf", "-dW", str(path)]).stdout


def runtime_shared(n: int = 1000) -> dict:
    """Our runtime, ctx_x86_64.S included, as a shared library: does it link,
    is its text free of load-time relocations (no TEXTREL), and does a
    program driving n switches through it run them all?

    Returns {"linked", "message", "textrel", "ctx_relocations" (of the
    context-switch object, "TYPE symbol"), "ctx_exported" (the symbols those
    relocations name that the library exports, i.e. that another object
    could interpose and that would need a PLT slot or a text relocation;
    none is the point), "exit", "finished", "n"}.
    """
    ctx = [p for p in runtime_sources() if p.suffix == ".S"]
    ctx_rel = [r for p in ctx for r in relocations((), source=os.path.relpath(p, _programs()))]
    try:
        so = _runtime_so()
        exe = build_link("plt")
    except CompileError as e:
        return {"linked": False, "message": mask_paths(e.stderr).strip(), "ctx_relocations": ctx_rel}
    cp = run_program(exe, n, 10)
    res = json.loads(cp.stdout) if cp.returncode == 0 else {}
    exported = {line.split()[-1].split("@")[0] for line in _run(["readelf", "--dyn-syms", "-W", str(so)]).stdout.splitlines()
                if len(line.split()) >= 8 and line.split()[6] != "UND"}
    return {
        "linked": True,
        "message": "",
        "textrel": "TEXTREL" in _dynamic_tags(so),
        "ctx_relocations": ctx_rel,
        "ctx_exported": sorted({r.split()[1] for r in ctx_rel} & exported),
        "exit": describe_exit(cp),
        "finished": res.get("finished", -1),
        "n": n,
    }


def link_cost(
    n_switch: int = 200_000,
    n_call: int = 2_000_000,
    n_hooked: int = 20_000,
    rounds: int | None = None,
    kinds=tuple(LINK_BUILDS),
    progress: bool = False,
) -> dict:
    """Time a resume+yield round trip, one exported call and, when the hook
    layer exists (hook_sources()), close(-1) through the hooks ("hooked_ns")
    and straight to libc ("real_ns") in each link build; each figure of a run
    is the best of link_main's three passes, the round trip's also the best
    over the copies of its loop (link_drive.h: each build's linker puts the
    code elsewhere, and a switch's time depends on where; csrc/lab/placement.h). Each round runs every
    build's program once, in rotated order (lab.interleaved), so the builds
    share the machine's moods.

    Returns {kind: {metric: summary with its "samples"}}.
    """
    for k in kinds:
        if k not in LINK_BUILDS:
            raise ValueError(f"kinds: {k!r} is not one of {', '.join(LINK_BUILDS)}")
    if n_switch < 1 or n_call < 1 or n_hooked < 1:
        raise ValueError(f"n_switch, n_call and n_hooked must be >= 1, got {n_switch}, {n_call}, {n_hooked}")
    exes = {k: build_link(k) for k in kinds}
    runs: dict[str, list[dict]] = {k: [] for k in kinds}

    def runner(kind):
        def run():
            cp = run_program(exes[kind], n_switch, n_call, n_hooked)
            if cp.returncode != 0:
                raise RuntimeError(f"link_main ({kind}): {describe_exit(cp)}; stderr: {cp.stderr.strip()!r}")
            runs[kind].append(json.loads(cp.stdout))
            return runs[kind][-1]["switch_ns"]

        return run

    warmup = 1
    interleaved({k: runner(k) for k in kinds}, rounds=rounds or default_rounds(), warmup=warmup, progress=progress)
    out = {}
    for k in kinds:
        kept = runs[k][warmup:]
        out[k] = {}
        for metric in ("switch_ns", "call_ns", "hooked_ns", "real_ns"):
            if metric not in kept[0]:
                continue
            xs = [r[metric] for r in kept]
            out[k][metric] = summary(xs) | {"samples": xs}
    return out


def _hook_so() -> Path:
    return compile_program("link_count_getpid", cflags=("-fPIC",), ldflags=("-shared", "-ldl"))


def _other_so() -> Path:
    return compile_program("link_other", cflags=("-fPIC",), ldflags=("-shared",))


def dlopen_counts(n: int = 1000) -> dict:
    """Which of n getpid calls each does a counting getpid hook see, by how
    its library was loaded: "LD_PRELOAD", "dlopen RTLD_GLOBAL", "dlopen
    RTLD_LOCAL" and "Python ctypes.CDLL" (RTLD_LOCAL, as Python loads
    extension modules) with calls from os.getpid.

    Returns {mode: {"program", "other_library", "hook_module"}} (calls
    counted from the program itself, from another shared library, from the
    hook's own module; for Python, "program" counts the interpreter's).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    hook, other = _hook_so(), _other_so()
    exe = compile_program(
        "link_dlopen", extra_sources=[other], ldflags=[f"-Wl,-rpath,{other.parent}", "-ldl"]
    )
    modes = {"LD_PRELOAD": ("preload", {"LD_PRELOAD": str(hook)}),
             "dlopen RTLD_GLOBAL": ("global", None),
             "dlopen RTLD_LOCAL": ("local", None)}
    out = {}
    for name, (mode, env) in modes.items():
        cp = run_program(exe, mode, hook, n, env=env)
        if cp.returncode != 0:
            raise RuntimeError(f"link_dlopen {mode}: {describe_exit(cp)}; stderr: {cp.stderr.strip()!r}")
        r = json.loads(cp.stdout)
        out[name] = {k: r[k] for k in ("program", "other_library", "hook_module")}
    code = (
        "import ctypes, os, sys\n"
        "lib = ctypes.CDLL(sys.argv[1])\n"
        "n = int(sys.argv[2])\n"
        "c = ctypes.c_int64.in_dll(lib, 'link_getpid_calls')\n"
        "base = c.value\n"
        "for _ in range(n): os.getpid()\n"
        "prog = c.value - base\n"
        "lib.link_self_getpid.argtypes = [ctypes.c_int64]\n"
        "lib.link_self_getpid(n)\n"
        "print(prog, c.value - base - prog)\n"
    )
    cp = run_program(sys.executable, "-c", code, hook, n)
    if cp.returncode != 0:
        raise RuntimeError(f"python ctypes: {describe_exit(cp)}; stderr: {cp.stderr.strip()!r}")
    prog, own = map(int, cp.stdout.split())
    out["Python ctypes.CDLL"] = {"program": prog, "other_library": None, "hook_module": own}
    return out


ARCHIVE_FIXES = {
    "archive as is": (),
    "-Wl,--whole-archive": ("-Wl,--whole-archive", "{archive}", "-Wl,--no-whole-archive"),
    "-Wl,-u,getpid": ("-Wl,-u,getpid",),
    "anchor symbol referenced": (),
}


def _archive() -> Path:
    # One object in a .a, named after a hash of its source so an edit rebuilds it.
    src = _programs() / "link_count_getpid.c"
    digest = hashlib.sha256(src.read_bytes()).hexdigest()[:12]
    lib = _out() / f"liblinkhook-{digest}.a"
    if lib.exists():
        return lib
    with tempfile.TemporaryDirectory(dir=_out()) as tmp:
        obj = Path(tmp) / "link_count_getpid.o"
        _run(["cc", "-std=gnu11", "-O2", "-c", "-o", str(obj), str(src)])
        staged = Path(tmp) / lib.name
        _run(["ar", "rcs", str(staged), str(obj)])
        shutil.move(staged, lib)
    return lib


def _defines(path: Path, symbol: str) -> bool:
    text = _run(["nm", str(path)]).stdout
    return any(line.split()[-2:] == ["T", symbol] for line in text.splitlines() if line.strip())


def archive_pull(n: int = 100) -> dict:
    """Link link_pull_main against link_other.so and a static archive holding
    the counting getpid hook, as is and with each of ARCHIVE_FIXES.

    Returns {fix: {"nm_getpid" (the program defines getpid), "hook_linked",
    "hook_calls" (-1 when the counter is not in the program), "n"}}.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    lib, other = _archive(), _other_so()
    out = {}
    for fix, extra in ARCHIVE_FIXES.items():
        cflags = ("-DLINK_ANCHOR",) if fix == "anchor symbol referenced" else ()
        ldflags = ["-rdynamic", f"-Wl,-rpath,{other.parent}",
                   *(a.format(archive=lib) for a in extra), "-ldl"]
        exe = compile_program("link_pull_main", extra_sources=[other, lib], cflags=cflags, ldflags=ldflags)
        cp = run_program(exe, n)
        if cp.returncode != 0:
            raise RuntimeError(f"link_pull_main ({fix}): {describe_exit(cp)}; stderr: {cp.stderr.strip()!r}")
        r = json.loads(cp.stdout)
        out[fix] = {"nm_getpid": _defines(exe, "getpid"), "hook_linked": bool(r["hook_linked"]),
                    "hook_calls": r["hook_calls"], "n": n}
    return out


_STRACE_LINE = re.compile(r"^(?P<pid>\d+)\s+(?P<name>\w+)\(")


def _strace(exe: Path, mode: str, inject: tuple[str, ...] = ()) -> tuple[dict, list[tuple[int, str]]]:
    # Runs link_gai under strace -f; returns its JSON and the (tid, syscall)
    # network calls strace saw, in order.
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "strace.txt"
        cmd = ["strace", "-f", "-qq", "-o", str(log), "-e", "trace=%network", *inject, str(exe), mode]
        cp = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if cp.returncode != 0:
            raise RuntimeError(f"strace link_gai {mode}: {describe_exit(cp)}; stderr: {cp.stderr.strip()!r}")
        calls = []
        for line in log.read_text().splitlines():
            m = _STRACE_LINE.match(line)
            if m:
                calls.append((int(m["pid"]), m["name"]))
    return json.loads(cp.stdout), calls


def hook_intra_libc(delay_ms: int = 50) -> dict:
    """getaddrinfo of 127.0.0.1 (AI_ADDRCONFIG: libc asks the kernel over
    netlink; no name server is contacted) in link_gai.c, linked with the hooks
    and run under strace.

    "plain": one lookup from plain code; "strace_calls" lists the network
    system calls strace saw, "inner_hooked" how many entries the hooks of
    those calls counted meanwhile, "gai_hooked" entries into getaddrinfo's
    own hook, "other_hooked" {name: count} of any other hook entered (the
    runtime's and the hooks' own calls).
    "loop": inside an event loop, with strace delaying every recvmsg by
    `delay_ms` ms (a slow lookup, made on purpose): "ticks_hooked" and
    "ticks_real" count how often a second coroutine ran during the hooked
    lookup and during libc's own; "worker_calls" and "main_calls" how many of
    the network calls ran on another thread than the coroutines' and on
    theirs. Returns {"skipped": reason} when strace or the hooks are missing.
    """
    if delay_ms < 1:
        raise ValueError(f"delay_ms must be >= 1, got {delay_ms}")
    if shutil.which("strace") is None:
        return {"skipped": "strace is not installed"}
    if not hook_sources():
        return {"skipped": "the hook layer (csrc/hook/) is not built yet"}
    hc, hl = _hook_flags()
    exe = compile_program("link_gai", extra_sources=hook_sources(), cflags=hc, ldflags=hl, with_runtime=True)
    plain, calls = _strace(exe, "plain")
    inject = ("-e", f"inject=recvmsg:delay_enter={delay_ms * 1000}")
    loop, lcalls = _strace(exe, "loop", inject)
    main_tid = loop["pid"]
    seen = {name for _, name in calls}

    def split(r):
        # Hooks of the calls strace saw inside getaddrinfo, and the rest (the
        # runtime's and the hooks' own calls, e.g. on the lookup's eventfd).
        inner = r.pop("inner")
        return r | {"inner_hooked": sum(v for k, v in inner.items() if k in seen),
                    "other_hooked": {k: v for k, v in inner.items() if k not in seen}}

    return {
        "plain": split(plain) | {"strace_calls": [name for _, name in calls]},
        "loop": split(loop) | {
            "delay_ms": delay_ms,
            "main_calls": sum(1 for tid, _ in lcalls if tid == main_tid),
            "worker_calls": sum(1 for tid, _ in lcalls if tid != main_tid),
        },
    }


# ---- evidence for the verdicts (named after the rules' variables) ---------------

_PC32_MESSAGE = "relocation R_X86_64_PC32 against symbol"


def pc32_evidence(pc32: dict, rt: dict) -> dict:
    """Evidence of pc32-relocation from {variant: pc32_build(variant)} and runtime_shared()."""
    call, data = pc32["2016 call: R_X86_64_PC32 to a global"], pc32["bad: movq sym(%rip) to a global"]
    fixes = [v for v in pc32 if v.startswith("fix:")]
    runs = bool(rt["linked"] and not rt["textrel"] and rt["finished"] == rt["n"])
    return {"call_fails": int(not call["linked"] and _PC32_MESSAGE in call["message"]),
            "data_fails": int(not data["linked"] and _PC32_MESSAGE in data["message"]),
            "fixes_run": sum(bool(pc32[v]["linked"] and pc32[v]["entry"] == 1042) for v in fixes),
            "fixes": len(fixes), "runtime_runs": int(runs),
            "call_outcome": "linked" if call["linked"] else "refused",
            "data_outcome": "linked" if data["linked"] else "refused",
            "runtime_outcome": "links and runs" if runs else "FAILS"}


def link_cost_evidence(cost: dict) -> dict:
    """Evidence of link-cost from link_cost(): round trips per round over the static build's."""
    from .stats import ratio_samples

    static = cost["static"]["switch_ns"]["samples"]
    hooked = ("close(-1) through the hooks " + ", ".join(f"{k} {cost[k]['hooked_ns']['median']:.0f} ns" for k in cost)
              if "hooked_ns" in cost["static"] else "the hooked call was not measured (no hook layer)")
    return {"plt_ratio": ratio_samples(cost["plt"]["switch_ns"]["samples"], static),
            "noplt_ratio": ratio_samples(cost["noplt"]["switch_ns"]["samples"], static),
            "static_call_ns": cost["static"]["call_ns"], "plt_call_ns": cost["plt"]["call_ns"], "hooked": hooked}


def intra_libc_evidence(gai: dict) -> dict:
    """Evidence of hook-intra-libc from hook_intra_libc()."""
    if "skipped" in gai:
        return {"skipped": gai["skipped"]}
    plain, loop = gai["plain"], gai["loop"]
    return {"inner_hooked": plain["inner_hooked"], "strace_calls": len(plain["strace_calls"]),
            "cooperative": int(loop["ticks_hooked"] > 0 and loop["ticks_real"] == 0),
            "hooked_ran": "yes" if loop["ticks_hooked"] > 0 else "no",
            "real_ran": "as expected" if loop["ticks_real"] == 0 else "it DID"}


def dlopen_evidence(dl: dict, n_calls: int) -> dict:
    """Evidence of dlopen-no-interpose from dlopen_counts(n_calls)."""
    def both(mode):
        return dl[mode]["program"] + dl[mode]["other_library"]
    return {"local_calls": both("dlopen RTLD_LOCAL"), "global_calls": both("dlopen RTLD_GLOBAL"),
            "python_calls": dl["Python ctypes.CDLL"]["program"], "preload_calls": both("LD_PRELOAD"),
            "expected": 2 * n_calls, "n_calls": n_calls}


def archive_evidence(pull: dict, n_calls: int) -> dict:
    """Evidence of static-archive-pull from archive_pull(n_calls)."""
    as_is = pull["archive as is"]
    fixed = [f for f in pull if f != "archive as is"]
    return {"linked_as_is": int(as_is["nm_getpid"]),
            "fixes_hooked": sum(pull[f]["hook_calls"] == n_calls for f in fixed), "fixes": len(fixed),
            "nm_says": "shows" if as_is["nm_getpid"] else "lacks", "as_is_calls": max(as_is["hook_calls"], 0),
            "n_calls": n_calls, "fix_calls": ", ".join(f"{f}: {pull[f]['hook_calls']}" for f in fixed)}
