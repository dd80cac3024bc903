"""The benchmark harness: run sizes, interleaved and repeated measurement of
competitors within one process run, the `yfcore bench` registry and its
speed bars (the project's own targets, kept out of the notebooks)."""
import importlib
import sys
from collections.abc import Callable

from .paths import env_flag
from .stats import summary

__all__ = ["STACK", "SIZES", "BENCHMARKS", "quick", "default_rounds", "sizes", "interleaved", "measure",
           "run_benchmark", "check_bars"]

# The diary's coroutines had 64 KiB stacks; every competitor gets the same.
STACK = 65536

# Iterations (or messages, steps) per measured call, (full, quick), per
# benchmark family: fast kernels run more, slow ones (ucontext, mmap,
# callgrind) less. The one table of run sizes.
SIZES = {
    "switch": {"switch": (1_000_000, 100_000), "switch_slow": (100_000, 10_000),
               "create": (200_000, 20_000), "create_slow": (20_000, 2_000),
               "python": (200_000, 20_000), "stack": (200_000, 20_000), "stack_mmap": (20_000, 2_000)},
    # callgrind counts the C wall-time runs' own steps: at 1M pending timers
    # 1M steps are 15,625 ticks, past the 10,000-tick horizon (the steady
    # state where the initial deadlines are gone); quick mode's are a transient.
    # The ablation compares shapes with one another on a shorter count.
    "wheel": {"c": (1_000_000, 200_000), "py": (100_000, 20_000), "valgrind": (1_000_000, 200_000),
              "valgrind_ablation": (100_000, 20_000)},
    "sbuf": {"messages": (200_000, 40_000), "sweep_messages": (100_000, 20_000),
             "steady_steps": (400, 200), "burst_steps": (120, 60)},
    "hooks": {"roundtrip": (100_000, 20_000), "mc_ops": (20_000, 4_000)},
}


def quick() -> bool:
    """True when $YF_QUICK asks for small sizes ("1", "true" or "yes")."""
    return env_flag("YF_QUICK")


def default_rounds() -> int:
    """Measured rounds per competitor: 7, or 5 in quick mode."""
    return 5 if quick() else 7


def sizes(family: str, quick: bool | None = None) -> dict[str, int]:
    """Run sizes of one benchmark family of SIZES ("switch", "wheel", "sbuf",
    "hooks"), full or quick (default: $YF_QUICK)."""
    if family not in SIZES:
        raise ValueError(f"family must be one of {', '.join(SIZES)}, got {family!r}")
    q = env_flag("YF_QUICK") if quick is None else quick
    return {k: v[1] if q else v[0] for k, v in SIZES[family].items()}


def interleaved(
    competitors: dict[str, Callable[[], float]],
    rounds: int | None = None,
    warmup: int = 1,
    progress: bool = False,
) -> dict[str, list[float]]:
    """Call every competitor once per round and collect what each returns.

    Rounds are numbered from 0, warm-up rounds first; round r calls the
    competitors in their given order rotated to start at index r % k, so none
    always runs first (and so none always inherits a cold or warm cache). The
    `warmup` first rounds are run and discarded. `rounds` defaults to
    default_rounds(). With `progress`, a tqdm bar is drawn on stderr.
    """
    if not competitors:
        raise ValueError("interleaved() needs at least one competitor")
    rounds = default_rounds() if rounds is None else rounds
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    names = list(competitors)
    k = len(names)
    samples: dict[str, list[float]] = {name: [] for name in names}
    from tqdm import tqdm

    with tqdm(total=warmup + rounds, desc="rounds", file=sys.stderr, disable=not progress, leave=False) as bar:
        for r in range(warmup + rounds):
            start = r % k
            for name in names[start:] + names[:start]:
                value = float(competitors[name]())
                if r >= warmup:
                    samples[name].append(value)
            bar.update(1)
    return samples


def measure(
    competitors: dict[str, Callable[[], float]],
    rounds: int | None = None,
    warmup: int = 1,
    progress: bool = False,
) -> dict[str, dict]:
    """Like interleaved(), but return each competitor's summary (median, min, max, n)."""
    return {name: summary(xs) for name, xs in interleaved(competitors, rounds, warmup, progress).items()}


# `yfcore bench NAME`: the module and function that measure, and the function
# that reads the project's speed bars off the result; modules are imported
# only when run (they load the C module, and some build C programs).
BENCHMARKS = {
    "switch": ("context_switch", "switch", "switch_bars"),
    "create": ("context_switch", "create", "create_bars"),
    "wheel": ("timer_wheel", "bench", "speed_bars"),
    "wheel-far": ("timer_wheel", "far", None),
    "sbuf": ("socket_buffer", "stream", "speed_bars"),
    "hooks": ("errno_hooks", "bench", None),
    "echo": ("python_coroutines", "echo_bench", None),
    "pyswitch": ("python_coroutines", "pyswitch", "pyswitch_bars"),
}


def check_bars(rows) -> list[dict]:
    """Speed bars (label, measured, wanted) with wanted ">= x", "<= x" or
    "> x" -> [{"bar", "value", "wanted", "met"}]."""
    out = []
    for label, value, wanted in rows:
        op, bound = wanted.split()
        bound = float(bound)
        met = {">=": value >= bound, "<=": value <= bound, ">": value > bound, "<": value < bound}[op]
        out.append({"bar": label, "value": float(value), "wanted": wanted, "met": bool(met)})
    return out


def run_benchmark(name: str, quick: bool | None = None, progress: bool = False,
                  rounds: int | None = None, **options) -> dict:
    """Run benchmark `name` of BENCHMARKS (`options` go to its function, e.g.
    standalone=True for switch and create); its result gains "speed_bars",
    the project's targets checked on this run (a list, see check_bars())."""
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; available: {', '.join(sorted(BENCHMARKS))}")
    module, func, bars = BENCHMARKS[name]
    mod = importlib.import_module(f".{module}", __package__)
    result = getattr(mod, func)(quick, progress, rounds, **options)
    if bars:
        result["speed_bars"] = check_bars(getattr(mod, bars)(result))
    return result
