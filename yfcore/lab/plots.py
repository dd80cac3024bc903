"""Plots of summaries with one look across notebooks: median, with a min..max bar."""
from .stats import _num

__all__ = ["bars", "hbars", "lines", "slots"]

_FIGSIZE = (6.4, 3.6)


def _axes(ax):
    # pyplot is imported on first use; without a display matplotlib picks
    # the Agg backend itself, and inside Jupyter the inline one.
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=_FIGSIZE, layout="constrained")
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    return ax


def bars(summaries: dict[str, dict], unit: str, title: str, log: bool = False, ax=None):
    """One bar per competitor at its median, a min..max error bar, the median written on top.

    Returns the Axes.
    """
    ax = _axes(ax)
    names = list(summaries)
    med = [summaries[n]["median"] for n in names]
    err = [
        [m - summaries[n]["min"] for n, m in zip(names, med)],
        [summaries[n]["max"] - m for n, m in zip(names, med)],
    ]
    colors = [f"C{i}" for i in range(len(names))]
    container = ax.bar(names, med, yerr=err, capsize=4, color=colors, error_kw={"elinewidth": 1})
    ax.bar_label(container, labels=[_num(m) for m in med], padding=2, fontsize=9)
    if log:
        ax.set_yscale("log")
    ax.set_ylabel(unit)
    ax.set_title(title)
    return ax


def lines(
    x,
    series: dict[str, list[dict]],
    xlabel: str,
    unit: str,
    title: str,
    logx: bool = False,
    logy: bool = False,
    ax=None,
):
    """One line of medians per competitor over `x`, its min..max band shaded.

    Returns the Axes.
    """
    ax = _axes(ax)
    for i, (name, points) in enumerate(series.items()):
        if len(points) != len(x):
            raise ValueError(f"series {name!r} has {len(points)} points for {len(x)} x values")
        ax.plot(x, [p["median"] for p in points], marker="o", color=f"C{i}", label=name)
        ax.fill_between(
            x, [p["min"] for p in points], [p["max"] for p in points], color=f"C{i}", alpha=0.2, linewidth=0
        )
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(unit)
    ax.set_title(title)
    ax.legend(frameon=False)
    return ax


def slots(layouts: dict[str, dict], title: str = "stack slots", ax=None):
    """Draw stack slots side by side at their real addresses (Coroutine.stack_layout()):
    the guard page, the usable stack, and the header/colour gap above its top;
    a layout's optional "hwm" (Coroutine.stack_hwm) shades the touched part.

    Returns the Axes.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(_FIGSIZE[0] + 2, 0.9 + 0.5 * len(layouts)), layout="constrained")
    base = min(l["slot"] for l in layouts.values())
    kib = 1024
    for y, (name, l) in enumerate(layouts.items()):
        parts = [
            (l["slot"], l["guard_end"], "C3", "guard page"),
            (l["guard_end"], l["top"], "C0", "stack (grows down)"),
            (l["top"], l["slot_end"], "0.6", "colour gap + header"),
        ]
        if "hwm" in l:
            parts.insert(2, (l["top"] - l["hwm"], l["top"], "C9", "touched (high-water mark)"))
        for lo, hi, color, label in parts:
            ax.barh(y, (hi - lo) / kib, left=(lo - base) / kib, color=color, edgecolor="white",
                    label=label if y == 0 else None)
    ax.set_yticks(range(len(layouts)), [f"{name}\n0x{l['slot']:x}" for name, l in layouts.items()], fontsize=8)
    ax.set_xlabel(f"KiB from 0x{base:x}")
    ax.set_title(title)
    ax.legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.spines[["top", "right"]].set_visible(False)
    return ax


def hbars(summaries: dict[str, dict], unit: str, title: str, log: bool = False, ax=None):
    """bars() laid on their side, for many competitors with long names.

    Returns the Axes.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(_FIGSIZE[0], 0.8 + 0.32 * len(summaries)), layout="constrained")
    names = list(summaries)[::-1]
    med = [summaries[n]["median"] for n in names]
    err = [[m - summaries[n]["min"] for n, m in zip(names, med)],
           [summaries[n]["max"] - m for n, m in zip(names, med)]]
    container = ax.barh(names, med, xerr=err, capsize=3, color=[f"C{i % 10}" for i in range(len(names))],
                        error_kw={"elinewidth": 1})
    ax.bar_label(container, labels=[_num(m) for m in med], padding=3, fontsize=8)
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(unit)
    ax.set_title(title)
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    return ax
