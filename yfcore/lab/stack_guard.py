"""Notebook 02, stack guards: build the guard programs, run them, parse what
they say; what a stack costs with and without a guard."""
import mmap
import re
import signal

from .bench import STACK, interleaved, sizes
from .context_switch import checked_ns
from .stats import summaries
from .toolchain import compile_program, describe_exit, json_lines, run_program

__all__ = [
    "REPORT_RE",
    "sign_bug",
    "sign_bug_arithmetic",
    "overflow",
    "scale",
    "regions_supported",
    "stack_costs", "sign_bug_evidence", "overflow_evidence", "guard_cost_evidence", "guard_scale_evidence"]

# The runtime's guard-hit report; the text after the fault address may change.
REPORT_RE = re.compile(
    r"^yfcore: coroutine (?P<id>\d+) overflowed its (?P<size>\d+)-byte stack "
    r"\(fault at (?P<addr>0x[0-9a-fA-F]+)",
    re.MULTILINE,
)

_RUNTIME_PROGRAMS = {"stack_overflow", "guard_scale"}


def _cflags(stack_clash: bool) -> tuple[str, ...]:
    # The runtime is built with -fstack-clash-protection; the programs match
    # it unless the experiment is precisely about leaving it out.
    return ("-O2", "-fstack-clash-protection" if stack_clash else "-fno-stack-clash-protection")


def _build(name: str, stack_clash: bool = True):
    return compile_program(name, cflags=_cflags(stack_clash), with_lab=name in _RUNTIME_PROGRAMS)


def _last_json(cp, what: str) -> dict:
    objs = json_lines(cp.stdout)
    if not objs:
        raise RuntimeError(f"{what}: no JSON on stdout ({describe_exit(cp)}); stderr: {cp.stderr.strip()!r}")
    return objs[-1]


def sign_bug() -> dict:
    """Run csrc/programs/guard_sign_bug.c, the 2015/07/09 bug re-created, and return its report.

    Keys: pagesize, minus_pagesize_u32 and buggy_offset (2**32 - pagesize: the
    guard lands ~4 GiB above the stack base), buggy_target_mapped (false: the
    program keeps that range unmapped), buggy_rc / buggy_errno (-1, "ENOMEM"),
    fixed_offset (-pagesize), fixed_rc / fixed_errno (0, ""), fixed_child and
    buggy_child (what happened to a forked child writing one byte below the
    stack base: "SIGSEGV" with the fixed guard, "exit:0" with the buggy one),
    and the raw addresses (*_stack_base, *_guard), which change every run.
    """
    cp = run_program(_build("guard_sign_bug"))
    if cp.returncode != 0:
        raise RuntimeError(f"guard_sign_bug: {describe_exit(cp)}; stderr: {cp.stderr.strip()!r}")
    return _last_json(cp, "guard_sign_bug")


def sign_bug_arithmetic(pagesize: int = 4096) -> dict:
    """The sign bug's arithmetic in plain Python, with C's unsigned 32-bit rules spelled out.

    `-pagesize` on a uint32_t wraps modulo 2**32; adding it to a 64-bit
    pointer zero-extends it, so the "guard" moves up by 2**32 - pagesize
    bytes. Casting to int32_t first gives the intended -pagesize.
    """
    minus_u32 = (-pagesize) % 2**32
    as_int32 = pagesize - 2**32 if pagesize >= 2**31 else pagesize
    return {
        "pagesize": pagesize,
        "minus_pagesize_u32": minus_u32,
        "minus_pagesize_u32_hex": f"0x{minus_u32:08x}",
        "buggy_offset": minus_u32,
        "buggy_offset_gib": minus_u32 / 2**30,
        "fixed_offset": -as_int32,
    }


def overflow(
    mode: str,
    stack_size: int = 65536,
    overflow_bytes: int | None = None,
    *,
    touch: str = "all",
    stack_clash: bool = True,
) -> dict:
    """Run csrc/programs/stack_overflow.c: coroutine B overflows its stack into A's slot below.

    `mode` is "guard" (the runtime's default guard), "guard-mprotect" or
    "noguard" (the control). `overflow_bytes` defaults to stack_size + 8192,
    the program's own default (its header comment says why). `touch` is "all" (memset the whole frame) or "low" (write
    only its lowest KiB); `stack_clash=False` builds without
    -fstack-clash-protection.

    When the program survives, returns its JSON: mode, guard ("regions",
    "mprotect" or "none"), touch, a_id, b_id, adjacent (B's slot right above
    A's), victim_bytes_changed (of A's 1024-byte array), slot_bytes_changed
    (anywhere in A's slot above its guard), exit "normal"; victim_top_gap and
    reach_below_b_slot depend on the slots' cache colours, and the *_addr
    fields on ASLR.
    When it dies by a signal, returns {"mode", "signal", "exit", "report_line",
    "named_id", "printed_id", "fault_addr", "fault_in_b_guard"}: report_line is
    the runtime's guard report ("" if none), named_id the coroutine it names,
    printed_id the id B printed before overflowing. Raises RuntimeError on any
    other exit.
    """
    if mode not in ("guard", "guard-mprotect", "noguard"):
        raise ValueError(f"mode must be 'guard', 'guard-mprotect' or 'noguard', not {mode!r}")
    if touch not in ("all", "low"):
        raise ValueError(f"touch must be 'all' or 'low', not {touch!r}")
    args = [mode, stack_size, overflow_bytes if overflow_bytes is not None else stack_size + 8192, touch]
    cp = run_program(_build("stack_overflow", stack_clash), *args)
    if cp.returncode == 0:
        return _last_json(cp, "stack_overflow")
    if cp.returncode > 0:
        raise RuntimeError(f"stack_overflow {mode}: {describe_exit(cp)}; stderr: {cp.stderr.strip()!r}")
    events = [o for o in json_lines(cp.stdout) if o.get("event") == "overflowing"]
    printed = events[-1] if events else {}
    m = REPORT_RE.search(cp.stderr)
    fault = int(m["addr"], 16) if m else None
    in_guard = None
    if fault is not None and "b_slot" in printed:
        # The guard is the lowest page of B's slot.
        b_slot = int(printed["b_slot"], 16)
        in_guard = b_slot <= fault < b_slot + mmap.PAGESIZE
    try:
        signame = signal.Signals(-cp.returncode).name
    except ValueError:
        signame = f"signal {-cp.returncode}"
    return {
        "mode": mode,
        "signal": signame,
        "exit": describe_exit(cp),
        "report_line": cp.stderr[m.start():].splitlines()[0] if m else "",
        "named_id": int(m["id"]) if m else None,
        "named_stack_size": int(m["size"]) if m else None,
        "printed_id": printed.get("id"),
        "fault_addr": m["addr"] if m else None,
        "fault_in_b_guard": in_guard,
    }


def scale(mode: str, count: int, stack_size: int = 16384, *, timeout: float = 600) -> dict:
    """Run csrc/programs/guard_scale.c: create `count` live coroutines until done or the first failure.

    `mode` is "mprotect", "regions" (MADV_GUARD_INSTALL), "noguard" or
    "malloc" (plain malloc'ed stacks, no runtime: the memory baseline).
    Returns the program's JSON: created, errno ("" or e.g. "ENOMEM"),
    max_map_count, maps_before/maps_after/maps_per_stack, rss_before/
    rss_after/rss_per_co (bytes), seconds, us_per_co, free_seconds, arenas.
    For "regions" on a kernel without guard regions: {"mode": "regions",
    "supported": False, ...}.
    """
    if mode not in ("mprotect", "regions", "noguard", "malloc"):
        raise ValueError(f"mode must be 'mprotect', 'regions', 'noguard' or 'malloc', not {mode!r}")
    if count < 0:
        raise ValueError(f"count must be >= 0, not {count}")
    cp = run_program(_build("guard_scale"), mode, count, stack_size, timeout=timeout)
    if cp.returncode == 3 and mode == "regions":
        return _last_json(cp, "guard_scale")
    if cp.returncode != 0:
        raise RuntimeError(f"guard_scale {mode}: {describe_exit(cp)}; stderr: {cp.stderr.strip()!r}")
    return _last_json(cp, "guard_scale")


def regions_supported() -> bool:
    """True when the runtime's default guards on this kernel are MADV_GUARD_INSTALL guard regions."""
    return bool(scale("regions", 0)["supported"])


def stack_costs(quick: bool | None = None, rounds: int | None = None, progress: bool = False) -> dict:
    """ns to get, touch and give back one stack: mmap + guard + munmap (mprotect
    and, where the kernel has them, guard regions), the runtime's pool, malloc."""
    from ..labkernels import lib
    from ..runtime import guard_regions_supported

    n = sizes("switch", quick)
    ns, nm = n["stack"], n["stack_mmap"]
    comp = {
        "mmap + mprotect guard": lambda: checked_ns(lib.yf_bench_stack_mmap(nm, STACK, 0), "mmap") / nm,
        "pool (guarded, warm)": lambda: checked_ns(lib.yf_bench_stack_pool(ns, STACK), "pool") / ns,
        "malloc (no guard)": lambda: checked_ns(lib.yf_bench_stack_malloc(ns, STACK), "malloc") / ns,
    }
    if guard_regions_supported():
        comp["mmap + guard region"] = lambda: checked_ns(lib.yf_bench_stack_mmap(nm, STACK, 1), "mmap") / nm
    return summaries(interleaved(comp, rounds=rounds, progress=progress))


# ---- evidence for the verdicts (named after the rules' variables) ---------------

def sign_bug_evidence(sb: dict) -> dict:
    """Evidence of guard-sign-bug from sign_bug()."""
    return {"buggy_offset": sb["buggy_offset"], "buggy_rc": sb["buggy_rc"], "fixed_rc": sb["fixed_rc"],
            "buggy_write_ok": int(sb["buggy_child"] == "exit:0"),
            "fixed_write_faults": int(sb["fixed_child"] == "SIGSEGV"),
            "buggy_errno": str(sb["buggy_errno"]), "buggy_child": sb["buggy_child"], "fixed_child": sb["fixed_child"]}


def overflow_evidence(hit: dict, silent: dict) -> dict:
    """Evidence of guard-catches-overflow from overflow("guard") and overflow("noguard")."""
    caught = hit["signal"] == "SIGSEGV" and hit["named_id"] == hit["printed_id"] and bool(hit["fault_in_b_guard"])
    return {"caught": int(caught), "corrupted_bytes": silent["victim_bytes_changed"],
            "guarded_exit": hit["exit"], "named_id": hit["named_id"], "unguarded_exit": silent["exit"],
            "victim_bytes": silent["victim_bytes"]}


def guard_cost_evidence(cap: dict, costs: dict, calls: dict) -> dict:
    """Evidence of guard-cost from scale("mprotect", ...), stack_costs() and stack_syscalls()."""
    from .stats import ratio_samples

    capped = cap["errno"] == "ENOMEM" and abs(cap["created"] - cap["max_map_count"] / 2) < 0.01 * cap["max_map_count"]
    return {"maps_per_stack": cap["maps_per_stack"], "capped": int(capped),
            "pool_speedup": ratio_samples(costs["mmap + mprotect guard"]["samples"],
                                          costs["pool (guarded, warm)"]["samples"]),
            "created": cap["created"], "max_map_count": cap["max_map_count"],
            "pool_syscalls": calls["pool"], "mmap_syscalls": calls["mmap"]}


def guard_scale_evidence(big: dict, base: dict, requested: int) -> dict:
    """Evidence of guard-scale from scale("regions", n) and scale("malloc", n)."""
    return {"created": big.get("created", 0), "requested": requested,
            "maps_per_stack": big.get("maps_per_stack", float("inf")),
            "regions": "supported" if big.get("supported") else "NOT supported by this kernel",
            "maps_after": big.get("maps_after", -1), "rss_per_co": big.get("rss_per_co", float("nan")),
            "malloc_rss_per_co": base.get("rss_per_co", float("nan"))}


def stack_syscalls(n: int = 2000) -> dict:
    """Memory system calls (mmap, munmap, mprotect, madvise, ...) per stack
    for one coroutine life's stack: the runtime's warm pool and a fresh mmap
    + mprotect guard + munmap. {"pool": per stack, "mmap": per stack}."""
    from .toolchain import syscalls_per_op

    return {"pool": syscalls_per_op("lib.yf_bench_stack_pool(n, 65536)", n, "%memory"),
            "mmap": syscalls_per_op("lib.yf_bench_stack_mmap(n, 65536, 0)", n, "%memory")}
