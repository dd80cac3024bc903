"""Plots with one look across notebooks: summaries (median, with a min..max
bar), and the pictures drawn from live data (stack slots, the chunk ring,
the wheel's levels)."""
from .stats import _num

__all__ = ["bars", "hbars", "lines", "slots", "ring", "burst_timeline", "wheel_occupancy", "lateness", "sleep_pairs",
           "copies_sweep"]

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
    # Long or many names would overlap on a horizontal axis.
    if len(names) > 4 or max(map(len, names)) > 10:
        ax.tick_params(axis="x", labelrotation=30)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
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


def ring(lay: dict, title: str = "the chunk ring, live", ax=None):
    """Draw SockBuf.layout() as a ring of slots: data chunks, reserved
    space, spare chunks, empty slots; head, cursor and tail marked. Returns the Axes."""
    import math

    import matplotlib.pyplot as plt
    from matplotlib.patches import Wedge

    from .socket_buffer import chunk_state

    if ax is None:
        _, ax = plt.subplots(figsize=(5.2, 5.2), layout="constrained")
    cap, cs = lay["ring_cap"], lay["chunk_size"]
    colors = {"data": "C0", "reserved": "C2", "spare": "0.75", "empty": "white"}
    by_slot = {(lay["first"] + i) % cap: chunk_state(lay, i) for i in range(len(lay["addrs"]))}
    step = 360 / cap
    for s in range(cap):
        st = by_slot.get(s, "empty")
        ax.add_patch(Wedge((0, 0), 1.0, 90 - (s + 1) * step, 90 - s * step, width=0.35,
                           facecolor=colors[st], edgecolor="0.3", linewidth=0.8))
    for name, pos, r in (("head", 0, 1.12), ("cursor", lay["cursor"], 1.22), ("tail", lay["size"], 1.32)):
        absn = lay["head"] + pos
        chunk, off = divmod(absn, cs)
        ang = math.radians(90 - ((lay["first"] + chunk) % cap + off / cs) * step)
        ax.plot([0.65 * math.cos(ang), r * math.cos(ang)], [0.65 * math.sin(ang), r * math.sin(ang)], color="k",
                linewidth=1)
        ax.annotate(name, (r * math.cos(ang), r * math.sin(ang)), ha="center", va="center", fontsize=9)
    for st, c in colors.items():
        ax.scatter([], [], color=c, edgecolor="0.3", marker="s", label=st)
    ax.legend(loc="center", frameon=False, fontsize=9)
    ax.set_xlim(-1.5, 1.5)
    ax.set_ylim(-1.5, 1.5)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title)
    return ax


def burst_timeline(trace: dict, ax=None):
    """Bytes held (size) and chunk memory (capacity) per step of burst(), the burst shaded."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 3.6), layout="constrained")
    steps = range(len(trace["size"]))
    ax.plot(steps, [c / 1024 for c in trace["capacity"]], label="capacity (chunks held)", color="C1")
    ax.plot(steps, [s / 1024 for s in trace["size"]], label="size (bytes buffered)", color="C0")
    ax.axvspan(trace["burst_start"], trace["burst_end"], color="0.9", label="burst")
    ax.set_xlabel("step")
    ax.set_ylabel("KiB")
    ax.set_title(f"memory through a burst ({trace['chunk_size']}-byte chunks)")
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(frameon=False)
    return ax


def wheel_occupancy(occ, bits, now: int, title: str = "timers per slot"):
    """One row per level, one cell per slot, colour = timers in it (log
    scale); a line marks the slot holding `now` on each level."""
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.colors import LogNorm

    fig, axes = plt.subplots(len(bits), 1, figsize=(8, 0.9 * len(bits) + 0.8), layout="constrained",
                             squeeze=False)
    shift = 0
    vmax = max(1, int(occ.max()))
    for i, b in enumerate(bits):
        ax = axes[i][0]
        row = occ[i, : 1 << b].astype(float)
        im = ax.imshow(np.where(row > 0, row, np.nan)[None, :], aspect="auto", cmap="viridis",
                       norm=LogNorm(1, vmax), interpolation="nearest")
        ax.axvline((now >> shift) & ((1 << b) - 1), color="red", lw=1)
        ax.set_yticks([])
        ax.set_ylabel(f"level {i}\n{1 << shift} t/slot", rotation=0, ha="right", va="center", fontsize=8)
        shift += b
    axes[-1][0].set_xlabel("slot (red: now)")
    fig.colorbar(im, ax=[a[0] for a in axes], label="timers", shrink=0.8)
    fig.suptitle(title)
    return fig


def lateness(ms, title: str = "lateness of loop timers under load"):
    """Histogram of lateness (log count), with the zero line: nothing may lie left of it."""
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(6.4, 3.6), layout="constrained")
    lo = min(0.0, float(ms.min()))
    ax.hist(ms, bins=np.linspace(lo, float(ms.max()) + 1e-9, 60), color="C0")
    ax.axvline(0, color="red", lw=1, label="asked time (earlier = early)")
    ax.set_yscale("log")
    ax.set_xlabel("wake-up minus asked time (ms)")
    ax.set_ylabel("sleeps")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return fig


def sleep_pairs(pr: dict, title: str = "loop sleeps and clock_nanosleep, side by side"):
    """Two panels from sleep_pairs(): both sleeps' lateness (log count, one
    common set of bins), and the loop's excess over clock_nanosleep per pair
    with the one-tick line."""
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
    hi = float(max(pr["loop"].max(), pr["nanosleep"].max())) + 1e-9
    bins = np.linspace(min(0.0, float(pr["loop"].min())), hi, 50)
    a.hist(pr["nanosleep"], bins=bins, alpha=0.6, label="clock_nanosleep", color="C1")
    a.hist(pr["loop"], bins=bins, alpha=0.6, label="loop sleep (wheel)", color="C0")
    a.axvline(0, color="red", lw=1)
    a.set_yscale("log")
    a.set_xlabel("ms after the time asked")
    a.set_ylabel("sleeps")
    a.legend(fontsize=8, frameon=False)
    a.set_title("lateness, same lengths, same load")
    ex = pr["excess"]
    b.hist(ex, bins=np.linspace(float(ex.min()), float(ex.max()) + 1e-9, 50), color="C2")
    b.axvline(0, color="k", lw=1)
    b.axvline(1, color="red", lw=1, ls="--", label="one tick (1 ms)")
    b.axvline(float(np.median(ex)), color="C0", lw=1.5, label=f"median {np.median(ex):.2f} ms")
    b.set_yscale("log")
    b.set_xlabel("loop minus clock_nanosleep, per pair (ms)")
    b.legend(fontsize=8, frameon=False)
    b.set_title("what the loop adds")
    fig.suptitle(title)
    return fig


def copies_sweep(sweep: dict, ax=None):
    """Copies per byte delivered against chunk size (SockBuf) and buffer size
    (bytearray idiom), log-log, with the straddle prediction dashed."""
    from .socket_buffer import predicted_copies

    ax = _axes(ax)
    for system, label, mark in (("sockbuf", "SockBuf, by chunk size", "o-"),
                                ("bytearray", "bytearray idiom, by buffer size", "s-")):
        xs = sorted(sweep[system])
        ax.plot(xs, [sweep[system][x]["copied_per_byte"]["median"] for x in xs], mark, label=label)
    cs = sorted(sweep["sockbuf"])
    ax.plot(cs, [predicted_copies(c) for c in cs], "k--", label="predicted (L+3)/C straddles")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("chunk or buffer size (bytes)")
    ax.set_ylabel("bytes copied / byte delivered")
    ax.set_title("Copies inside the buffer against its memory granule")
    ax.legend(frameon=False, fontsize=9)
    return ax
