"""Interleaved, repeated measurement of competitors within one process run."""
import sys
from collections.abc import Callable

from .paths import env_flag
from .stats import summary

__all__ = ["quick", "default_rounds", "interleaved", "measure"]


def quick() -> bool:
    """True when $YF_QUICK asks for small sizes ("1", "true" or "yes")."""
    return env_flag("YF_QUICK")


def default_rounds() -> int:
    """Measured rounds per competitor: 7, or 5 in quick mode."""
    return 5 if quick() else 7


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
