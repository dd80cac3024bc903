"""Summaries of repeated measurements: median [min..max], pairwise ratios."""
import statistics
from collections.abc import Iterable, Sequence

__all__ = ["summary", "summaries", "fmt", "quantity", "ratio", "ratio_samples", "table"]


def summary(values: Iterable[float]) -> dict:
    """Return {"median", "min", "max", "n"} of `values` (floats; n an int).

    Raises ValueError when `values` is empty.
    """
    xs = [float(v) for v in values]
    if not xs:
        raise ValueError("summary() needs at least one value")
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


def summaries(samples: dict[str, list[float]]) -> dict[str, dict]:
    """{name: summary(xs) with its "samples"} of interleaved() output."""
    return {name: summary(xs) | {"samples": list(xs)} for name, xs in samples.items()}


def _num(x: float) -> str:
    # Three significant digits, trailing zeros kept ("5.00"), no exponent
    # above 1000 where a reader wants "12345", not "1.23e+04".
    if abs(x) >= 1000:
        return f"{x:.0f}"
    return f"{x:#.3g}".rstrip(".")


def fmt(s: dict, unit: str, scale: float = 1) -> str:
    """Format a summary as "5.04 ns [4.98..5.30]", each figure multiplied by `scale`."""
    med, lo, hi = (s[k] * scale for k in ("median", "min", "max"))
    sep = " " if unit else ""
    return f"{_num(med)}{sep}{unit} [{_num(lo)}..{_num(hi)}]"


def quantity(x, unit: str) -> str:
    """Format one figure with its unit, "3.2 ns"; a non-number (a seed figure like "~5") as is."""
    if isinstance(x, (int, float)):
        # Whole numbers in full (4294963200 bytes, not 4.29496e+09), the rest
        # to six significant digits.
        text = str(int(x)) if float(x).is_integer() and abs(x) < 1e18 else f"{x:.6g}"
    else:
        text = str(x)
    return f"{text} {unit}" if unit else text


def ratio(a_samples: Sequence[float], b_samples: Sequence[float]) -> dict:
    """Summary of a[i] / b[i]: ratios taken pair by pair from the same rounds.

    Raises ValueError when the sample lists differ in length or are empty.
    """
    if len(a_samples) != len(b_samples):
        raise ValueError(
            f"ratio() needs samples from the same rounds: got {len(a_samples)} and {len(b_samples)}"
        )
    return summary(a / b for a, b in zip(a_samples, b_samples))


def ratio_samples(a_samples: Sequence[float], b_samples: Sequence[float]) -> list[float]:
    """The per-round ratios a[i] / b[i] behind ratio(), for answer(samples=...)."""
    if len(a_samples) != len(b_samples) or not a_samples:
        raise ValueError(
            f"ratio_samples() needs samples from the same rounds: got {len(a_samples)} and {len(b_samples)}"
        )
    return [a / b for a, b in zip(a_samples, b_samples)]


def table(summaries: dict[str, dict], unit: str, scale: float = 1, baseline: str | None = None) -> str:
    """A text table, one competitor a line: median [min..max], and the ratio of
    medians to `baseline` when given (pair by pair when both carry samples)."""
    width = max(len(k) for k in summaries)
    lines = []
    for name, s in summaries.items():
        line = f"{name:<{width}}  {fmt(s, unit, scale)}"
        if baseline is not None and name != baseline:
            b = summaries[baseline]
            if s.get("samples") and b.get("samples") and len(s["samples"]) == len(b["samples"]):
                r = ratio(s["samples"], b["samples"])["median"]
            else:
                r = s["median"] / b["median"]
            line += f"  ({_num(r)}x {baseline})"
        lines.append(line)
    return "\n".join(lines)
