"""Timer wheel experiments (notebook 05): the churn workload in C, from Python
through the batch API and with heapq; instruction counts under callgrind;
the slot-shape ablation; lateness of the event loop's timers; pictures.

The churn workload, fixed so that runs compare: P timers pending; each step
adds one timer due uniformly in [now+1, now+10,000] ticks and cancels one
pending timer chosen uniformly; every 64 steps time advances one tick and
each expired timer is re-armed with a fresh deadline, so P stays constant.
An event is one add (re-arms included) or one cancel.
"""
import heapq
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

from ..labkernels import ffi, lib
from .bench import interleaved, quick as _quick_env, sizes as _sizes
from .provenance import provenance
from .stats import ratio, summary

__all__ = [
    "SHAPES", "PENDING", "HORIZON", "TICK_STEPS", "STEADY_WARM", "churn_c", "churn_heapq", "churn_batch",
    "instructions", "bench", "ablation", "lateness", "occupancy_snapshot", "FAR_SIZES", "far_once", "far",
    "speed_bars", "lateness_summary", "sleep_pairs", "pairs_evidence", "loop_demand", "queue_model",
    "histogram_peaks",
    "wheel_o1_evidence", "never_early_evidence"]

# The workload's constants live in csrc/lab/lab.h, shared with the C kernel.
HORIZON = lib.YF_CHURN_HORIZON
TICK_STEPS = lib.YF_CHURN_TICK_STEPS
PENDING = {"1k": 1_000, "1m": 1_000_000}
DEFAULT = (8, 8, 8, 8)

# The ablation's shapes, bits per level from level 0 up, 1-tick level-0 slots.
SHAPES = {
    "4 x 256 (default)": (8, 8, 8, 8),
    "6 x 64 (tokio)": (6, 6, 6, 6, 6, 6),
    "diary 2-level: 128 x 1 ms, 1024 x 128 ms": (7, 10),
    "8 x 16": (4, 4, 4, 4, 4, 4, 4, 4),
    "4 x 1024": (10, 10, 10, 10),
    "2 x 1024": (10, 10),
}
KINDS = {"wheel": lib.YF_CHURN_WHEEL, "heap": lib.YF_CHURN_HEAP}



def churn_c(kind: str, pending: int, steps: int, bits=DEFAULT, seed: int = 1, warm: int = 0) -> float:
    """ns per event of the C churn kernel: kind "wheel" (levels `bits`) or
    "heap" (binary heap with indexed cancel, same 64-byte nodes), after
    `warm` untimed steps."""
    ev = ffi.new("uint64_t *")
    ns = lib.yf_bench_wheel_churn(KINDS[kind], ffi.new("unsigned[]", list(bits)), len(bits), pending, warm,
                                  steps, seed, ev)
    if ns < 0:
        raise OSError(ffi.errno, f"yf_bench_wheel_churn: {os.strerror(ffi.errno)}")
    return ns / ev[0]


def churn_heapq(pending: int, steps: int, seed: int = 1) -> float:
    """ns per event of the workload on Python's heapq with lazy deletion: a
    cancelled entry is marked dead and dropped when it reaches the top."""
    rng = random.Random(seed)
    rand = rng.randrange
    # entry: [deadline, seq, alive, position in `live`]
    live = [[1 + rand(HORIZON), i, True, i] for i in range(pending)]
    heap = list(live)
    heapq.heapify(heap)
    seq, now, events = pending, 0, 0
    push, pop = heapq.heappush, heapq.heappop
    t0 = time.perf_counter_ns()
    for s in range(steps):
        e = [now + 1 + rand(HORIZON), seq, True, len(live)]
        seq += 1
        push(heap, e)
        live.append(e)
        r = rand(len(live))
        v = live[r]
        v[2] = False
        last = live.pop()
        if last is not v:
            live[r] = last
            last[3] = r
        events += 2
        if s % TICK_STEPS == TICK_STEPS - 1:
            now += 1
            while heap[0][0] <= now:
                e = pop(heap)
                if e[2]:
                    ne = [now + 1 + rand(HORIZON), seq, True, e[3]]
                    seq += 1
                    live[e[3]] = ne
                    push(heap, ne)
                    events += 1
    return (time.perf_counter_ns() - t0) / events


def churn_batch(pending: int, steps: int, seed: int = 1, bits=DEFAULT, chunk: int = 256) -> float:
    """ns per event of the workload driven from Python through
    KeyedTimerWheel.run: `chunk` ticks per C call, each tick's 64 adds,
    64 cancels and the re-arm delays of its expiries prepared beforehand
    with vectorised numpy (the preparation is timed too). The initial
    timers and the first tick are not timed.

    Timers are named by keys 0..pending+63. Each tick arms the 64 keys the
    tick before cancelled, so every key is pending when the tick's 64
    victims are drawn, uniformly and distinct, from all of them (the 64
    adds come before the 64 cancels, as in the per-tick batch calls this
    replaced); expiries are re-armed in C and stay pending, so no other
    bookkeeping is needed."""
    from ..wheel import KeyedTimerWheel

    rng = np.random.default_rng(seed)
    nkeys = pending + TICK_STEPS
    w = KeyedTimerWheel(nkeys, bits)
    try:
        w.run([0], add_keys=np.arange(pending)[None], add_deadlines=1 + rng.integers(0, HORIZON, (1, pending)))
        free = np.arange(pending, nkeys)[None]
        # Re-arm delays: what a call leaves unused goes to the next one, and
        # each call tops the pool up to twice the expiries it can expect.
        per_tick = 2 * pending // HORIZON + TICK_STEPS
        pool = np.zeros(0, np.int64)
        ticks = steps // TICK_STEPS + 1
        now, done, events, t0 = 0, 0, 0, 0
        while done < ticks:
            if done == 1:
                events, t0 = 0, time.perf_counter_ns()
            n = 1 if done == 0 else min(chunk, ticks - done)
            victims = np.sort(rng.integers(0, nkeys, (n, TICK_STEPS)), axis=1)
            dup = (victims[:, 1:] == victims[:, :-1]).any(axis=1)
            while dup.any():
                redo = np.sort(rng.integers(0, nkeys, (int(dup.sum()), TICK_STEPS)), axis=1)
                victims[dup] = redo
                dup[dup] = (redo[:, 1:] == redo[:, :-1]).any(axis=1)
            adds = np.concatenate([free, victims[:-1]])
            start = np.arange(now, now + n)
            deadlines = start[:, None] + 1 + rng.integers(0, HORIZON, (n, TICK_STEPS))
            want = n * per_tick
            if len(pool) < want:
                pool = np.concatenate([pool, 1 + rng.integers(0, HORIZON, want - len(pool))])
            r = w.run(start + 1, adds, deadlines, victims, pool)
            fired = int(r.fired.sum())
            if r.rearmed != fired:
                raise RuntimeError(f"churn_batch: {fired} expiries but {r.rearmed} delays drawn")
            pool = pool[r.rearmed:]
            free = victims[-1:]
            events += 2 * n * TICK_STEPS + r.rearmed
            now += n
            done += n
        el = time.perf_counter_ns() - t0
    finally:
        w.close()
    return el / events


# ---- instructions ---------------------------------------------------------------


def _program():
    from .toolchain import compile_program
    return compile_program("wheel_churn", with_lab=True, cflags=("-O2",))


# One horizon of steps: every initial deadline has passed and every pending
# timer was armed by the workload itself (the steady state).
STEADY_WARM = HORIZON * TICK_STEPS


def instructions(kind: str, pending: int, steps: int, bits=DEFAULT, seed: int = 1, warm: int = 0) -> float:
    """Instructions per event of the measured loop alone (callgrind,
    --toggle-collect on churn_steps), after `warm` steps outside the count:
    a count no cache or neighbour disturbs.
    Raises RuntimeError when valgrind is missing or fails."""
    vg = shutil.which("valgrind")
    if not vg:
        raise RuntimeError("valgrind not found (apt-get install valgrind)")
    prog = _program()
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "callgrind.out")
        cmd = [vg, "--tool=callgrind", f"--callgrind-out-file={out}", "--toggle-collect=churn_steps*",
               str(prog), str(KINDS[kind]), str(pending), str(steps), str(seed), ",".join(map(str, bits)), str(warm)]
        cp = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if cp.returncode != 0:
            raise RuntimeError(f"callgrind failed ({cp.returncode}): {cp.stderr[-500:]}")
        text = open(out).read()
    m = re.search(r"^totals:\s+(\d+)", text, re.M) or re.search(r"^summary:\s+(\d+)", text, re.M)
    ev = re.search(r"events (\d+)", cp.stdout)
    if not m or not ev:
        raise RuntimeError(f"no instruction total or event count in callgrind's output: {cp.stdout!r}")
    return int(m.group(1)) / int(ev.group(1))


# ---- the benchmark ----------------------------------------------------------------


def bench(quick: bool | None = None, progress: bool = False, rounds: int | None = None) -> dict:
    """`yfcore bench wheel`: the churn workload at 1K and 1M pending timers.
    yf (the C wheel, default shape) and c_heap (C binary heap, indexed
    cancel) in wall time and in callgrind instructions per event; yf_batch
    (KeyedTimerWheel.run from Python on numpy-prepared ticks) and heapq
    (lazy deletion) in wall time. Every wall-time competitor runs
    interleaved in the same rounds."""
    q = _quick_env() if quick is None else quick
    n = _sizes("wheel", q)
    comp = {}
    for tag, p in PENDING.items():
        comp[f"yf {tag}"] = lambda p=p: churn_c("wheel", p, n["c"])
        comp[f"c_heap {tag}"] = lambda p=p: churn_c("heap", p, n["c"])
        comp[f"heapq {tag}"] = lambda p=p: churn_heapq(p, n["py"])
    comp["yf_batch 1m"] = lambda: churn_batch(PENDING["1m"], n["py"])
    samples = interleaved(comp, rounds=rounds, progress=progress)
    out = {"yf": {}, "c_heap": {}, "yf_batch": {}, "heapq": {}}
    raw = {}
    for name, xs in samples.items():
        system, tag = name.split()
        out[system][f"ns_per_event_{tag}"] = summary(xs)
        raw[name] = xs
    for system in ("yf", "c_heap"):
        for tag, p in PENDING.items():
            # Deterministic counts: one run each is the measurement.
            out[system][f"instr_per_event_{tag}"] = summary(
                [instructions("wheel" if system == "yf" else "heap", p, n["valgrind"], warm=STEADY_WARM)])
    out["ratios"] = {
        "yf_1m_over_c_heap_1m": ratio(raw["yf 1m"], raw["c_heap 1m"]),
        "heapq_1m_over_yf_batch_1m": ratio(raw["heapq 1m"], raw["yf_batch 1m"]),
        "yf_1m_over_yf_1k": ratio(raw["yf 1m"], raw["yf 1k"]),
        "c_heap_1m_over_c_heap_1k": ratio(raw["c_heap 1m"], raw["c_heap 1k"]),
    }
    out["callgrind"] = {"steps": n["valgrind"], "warm_steps": STEADY_WARM}
    out["provenance"] = provenance(quick=q)
    return out


# Far-future timers: deadlines 2^33..2^40 ticks ahead, beyond the default
# shape's 2^32, so every one starts on the levels the wheel adds above the
# caller's and cascades down.
FAR_SIZES = {"12.5k": 12_500, "50k": 50_000, "200k": 200_000, "1m": 1_000_000}


def far_once(n: int, seed: int = 1, bits=DEFAULT) -> float:
    """ns per timer to advance a TimerWheel through n far-future timers
    (armed by add_many, not timed) with one advance_many past the last."""
    from ..wheel import TimerWheel

    d = np.random.default_rng(seed).integers(2**33, 2**40, n)
    w = TimerWheel(bits, capacity=n)
    try:
        w.add_many(d)
        t0 = time.perf_counter_ns()
        h, _, _ = w.advance_many(int(d.max()))
        t1 = time.perf_counter_ns()
        if len(h) != n:
            raise RuntimeError(f"far_once: {len(h)} of {n} timers expired")
    finally:
        w.close()
    return (t1 - t0) / n


def far(quick: bool | None = None, progress: bool = False, rounds: int | None = None) -> dict:
    """`yfcore bench wheel-far`: advancing through n far-future timers at
    several n (1M left out in quick mode), interleaved; linear total time
    shows as a flat cost per timer, the ratio of the largest n's over the
    smallest's near 1 (a quadratic scan would grow it by the size ratio)."""
    q = _quick_env() if quick is None else quick
    chosen = {k: v for k, v in FAR_SIZES.items() if not (q and v > 200_000)}
    comp = {f"yf_far {tag}": (lambda n=n: far_once(n)) for tag, n in chosen.items()}
    samples = interleaved(comp, rounds=rounds, progress=progress)
    out = {"yf_far": {f"ns_per_timer_{name.split()[1]}": summary(xs) for name, xs in samples.items()}}
    small, large = min(chosen, key=chosen.get), max(chosen, key=chosen.get)
    out["ratios"] = {f"yf_far_{large}_over_yf_far_{small}":
                     ratio(samples[f"yf_far {large}"], samples[f"yf_far {small}"])}
    out["provenance"] = provenance(quick=q)
    return out


def speed_bars(result: dict) -> list[tuple[str, float, str]]:
    """The project's speed bars on one bench() result: (bar, measured, wanted)."""
    yf, heap = result["yf"], result["c_heap"]
    growth_yf = yf["instr_per_event_1m"]["median"] / yf["instr_per_event_1k"]["median"]
    growth_heap = heap["instr_per_event_1m"]["median"] / heap["instr_per_event_1k"]["median"]
    return [
        ("yf instructions/event, 1M over 1K", growth_yf, "<= 1.2"),
        ("c_heap instructions/event 1M over 1K, less yf's", growth_heap - growth_yf, "> 0"),
        ("yf wall time at 1M over c_heap's", result["ratios"]["yf_1m_over_c_heap_1m"]["median"], "<= 1"),
        ("heapq wall time at 1M over yf_batch's", result["ratios"]["heapq_1m_over_yf_batch_1m"]["median"], ">= 20"),
    ]


def ablation(pending=(1_000, 1_000_000), quick: bool | None = None, rounds: int | None = None,
             progress: bool = False, instr_at=(1_000_000,)) -> dict:
    """Every shape of SHAPES and the C heap on the churn workload at each
    size: {(name, pending): {"ns": summary + samples, "instr": per event}},
    instructions counted (callgrind) at the sizes in `instr_at` only."""
    q = _quick_env() if quick is None else quick
    n = _sizes("wheel", q)
    comp = {}
    for p in pending:
        for name, bits in SHAPES.items():
            comp[(name, p)] = lambda b=bits, p=p: churn_c("wheel", p, n["c"], b)
        comp[("binary heap", p)] = lambda p=p: churn_c("heap", p, n["c"])
    samples = interleaved({f"{k[0]} @ {k[1]}": f for k, f in comp.items()}, rounds=rounds, progress=progress)
    out = {}
    for (name, p) in comp:
        xs = samples[f"{name} @ {p}"]
        row = {"ns": summary(xs) | {"samples": xs}}
        if p in instr_at:
            bits = SHAPES.get(name, DEFAULT)
            row["instr"] = instructions("heap" if name == "binary heap" else "wheel", p, n["valgrind_ablation"], bits)
        out[(name, p)] = row
    return out


# ---- lateness -------------------------------------------------------------------------


def lateness(ncos: int = 200, sleeps: int = 20, max_ms: int = 50, busy_us: int = 100, hogs: int = 2,
             seed: int = 1) -> np.ndarray:
    """Lateness in ms (wake-up time minus asked time) of yf_sleep_ms timers in
    the event loop under load: ncos coroutines sleep 1..max_ms ms `sleeps`
    times, each spinning busy_us us after waking (load inside the loop), while
    `hogs` busy processes compete for the CPUs (load outside). Negative values
    would be early wake-ups."""
    out = np.zeros(ncos * sleeps, np.int64)
    procs = _hogs(hogs)
    try:
        n = lib.yf_bench_loop_lateness(ncos, sleeps, max_ms, busy_us, seed, ffi.from_buffer("int64_t[]", out),
                                       len(out))
    finally:
        for p in procs:
            p.kill()
            p.wait()
    if n < 0:
        raise OSError(ffi.errno, f"yf_bench_loop_lateness: {os.strerror(ffi.errno)}")
    return out[:n] / 1e6


def _hogs(n: int) -> list:
    """n busy processes competing for the CPUs (killed by the caller)."""
    return [subprocess.Popen([sys.executable, "-c", "import time\nt=time.time()\nwhile time.time()-t<300: pass"])
            for _ in range(n)]


def sleep_pairs(pairs: int = 400, max_ms: int = 20, hogs: int = 2, seed: int = 1) -> dict:
    """csrc/programs/sleep_pairs.c with `hogs` busy processes beside it: one
    coroutine alternates a loop sleep (yf_sleep_ms, the wheel) and a plain
    clock_nanosleep of the same length, 1..max_ms ms, in one thread.
    Returns {"loop": ms late per pair, "nanosleep": ms late per pair,
    "excess": loop minus nanosleep per pair} as numpy arrays (negative = early)."""
    import json

    from .toolchain import compile_program, run_program

    for name, v, lo in (("pairs", pairs, 1), ("max_ms", max_ms, 1), ("hogs", hogs, 0)):
        if not isinstance(v, int) or v < lo:
            raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
    prog = compile_program("sleep_pairs", with_runtime=True)
    procs = _hogs(hogs)
    try:
        cp = run_program(prog, pairs, max_ms, seed, timeout=60 + pairs * max_ms * 2 / 1000)
    finally:
        for p in procs:
            p.kill()
            p.wait()
    if cp.returncode != 0:
        raise RuntimeError(f"sleep_pairs failed ({cp.returncode}): {cp.stderr.strip()}")
    d = json.loads(cp.stdout)
    loop, plain = np.array(d["loop"]) / 1e6, np.array(d["nanosleep"]) / 1e6
    return {"loop": loop, "nanosleep": plain, "excess": loop - plain}


def pairs_evidence(pr: dict) -> dict:
    """The numbers of wheel-never-early from sleep_pairs(): the earliest loop
    wake-up (ms after the time asked), the medians and 99th percentiles of
    both sleeps' lateness, and the loop's excess over clock_nanosleep: median
    and 90th percentile of the per-pair differences, in ms."""
    loop, plain, ex = pr["loop"], pr["nanosleep"], pr["excess"]
    return {"value": float(loop.min()), "n": int(len(loop)), "early": int((loop < 0).sum()),
            "plain_min": float(plain.min()),
            "loop_median": float(np.median(loop)), "plain_median": float(np.median(plain)),
            "loop_p99": float(np.percentile(loop, 99)), "plain_p99": float(np.percentile(plain, 99)),
            "excess_median": float(np.median(ex)), "excess_p90": float(np.percentile(ex, 90))}


def lateness_summary(ms: np.ndarray) -> dict:
    """sleeps, early (count below 0), min, median, p99, max of lateness in ms."""
    return {"sleeps": int(len(ms)), "early": int((ms < 0).sum()), "min": float(ms.min()),
            "median": float(np.median(ms)), "p99": float(np.percentile(ms, 99)), "max": float(ms.max())}


def loop_demand(ncos: int, busy_us: int, max_ms: int) -> float:
    """The CPU share lateness() asks of its loop's one thread: each of ncos
    coroutines spins busy_us after every sleep of 1..max_ms ms (mean
    (max_ms + 1) / 2). At 1 or more the loop cannot keep up with its own
    timers, whatever the wheel does, and lateness becomes a queue."""
    return ncos * busy_us / 1000 / ((max_ms + 1) / 2 + busy_us / 1000)


def queue_model(ncos: int, sleeps: int, max_ms: int, busy_us: int, share: float, seed: int = 1) -> np.ndarray:
    """The lateness (ms) lateness()'s workload would show if its loop's thread
    ran at a constant `share` of one CPU, from a discrete-event model of the
    same queue with no wheel, kernel or other process in it: ncos coroutines
    each sleep 1..max_ms ms (rounded up to the 1 ms tick) `sleeps` times; the
    due ones run one at a time in deadline order, each spinning busy_us of
    CPU, which takes busy_us / share of wall time."""
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1], got {share}")
    import heapq

    rng = np.random.default_rng(seed)
    spin = busy_us / 1000 / share
    due = [(float(ms), c, 0.0, float(ms), sleeps - 1) for c, ms in enumerate(rng.integers(1, max_ms + 1, ncos))]
    heapq.heapify(due)
    t, out = 0.0, []
    while due:
        at, c, asked, ms, left = heapq.heappop(due)
        t = max(t, at)
        out.append(t - asked - ms)
        t += spin
        if left:
            ms = float(rng.integers(1, max_ms + 1))
            heapq.heappush(due, (np.ceil(t + ms), c, t, ms, left - 1))
    return np.array(out)


def histogram_peaks(ms: np.ndarray, apart_ms: float = 10.0) -> list[float]:
    """The centres of the two highest 1 ms bins of a lateness histogram that
    lie at least apart_ms from each other (one when nothing else is that far)."""
    counts, edges = np.histogram(ms, bins=np.arange(np.floor(ms.min()), np.ceil(ms.max()) + 1))
    centres = (edges[:-1] + edges[1:]) / 2
    first = int(np.argmax(counts))
    far = np.abs(centres - centres[first]) >= apart_ms
    peaks = [float(centres[first])]
    if far.any():
        peaks.append(float(centres[far][np.argmax(counts[far])]))
    return sorted(peaks)


# ---- pictures -------------------------------------------------------------------------


def occupancy_snapshot(bits=DEFAULT, pending: int = 100_000, ticks: int = 3000, seed: int = 1):
    """A TimerWheel after the churn workload has run `ticks` ticks with
    `pending` timers (one batch per tick): its per-level slot occupancy and
    how many timers wait in each place."""
    from ..wheel import TimerWheel

    rng = np.random.default_rng(seed)
    w = TimerWheel(bits, capacity=pending + 1)
    w.add_many(1 + rng.integers(0, HORIZON, pending))
    for now in range(1, ticks + 1):
        _, _, keys = w.advance_many(now)
        if len(keys):
            w.add_many(now + 1 + rng.integers(0, HORIZON, len(keys)))
    occ = w.occupancy()
    info = {"now": w.now, "pending": len(w), "per level": occ.sum(axis=1).tolist(),
            "beyond the levels": len(w) - int(occ.sum())}
    w.close()
    return occ, info


# ---- evidence for the verdicts (named after the rules' variables) ---------------

def wheel_o1_evidence(res: dict) -> dict:
    """Evidence of wheel-o1 from bench(): instruction growth 1K -> 1M over the
    steps the wall-time runs make, and the wall-time growth beside it."""
    def growth(system):
        return res[system]["instr_per_event_1m"]["median"] / res[system]["instr_per_event_1k"]["median"]
    return {"wheel_growth": growth("yf"), "heap_growth": growth("c_heap"),
            "wall_1m_vs_heap": res["ratios"]["yf_1m_over_c_heap_1m"],
            "wheel_wall_growth": res["ratios"]["yf_1m_over_yf_1k"],
            "heap_wall_growth": res["ratios"]["c_heap_1m_over_c_heap_1k"],
            "steps": res["callgrind"]["steps"]}


def never_early_evidence(late, pairs: dict, pair_max_ms: int) -> dict:
    """Evidence of wheel-never-early from lateness() (ms late per sleep of
    the loaded loop) and sleep_pairs() (the loop against clock_nanosleep):
    the earliest wake-up over both, and the pairs' medians and excess."""
    pe = pairs_evidence(pairs)
    return {"earliest_ms": min(float(late.min()), pe["value"]), "n": int(len(late)) + pe["n"],
            "pairs": pe["n"], "pair_max_ms": pair_max_ms, "loop_median": pe["loop_median"],
            "plain_median": pe["plain_median"], "excess_median": pe["excess_median"],
            "excess_p90": pe["excess_p90"]}
