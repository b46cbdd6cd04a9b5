"""How a report draws runs: their order, names and colours, seeds grouped
into a median and band, and the drawing helpers every page shares (legend,
caption, table, log-axis gradient curves).

    seqvg report runs/demo -o reports/demo.pdf

Pages (seqvg.report_*) draw through ``view(runs)``, so every page orders,
names and colours the same runs alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from seqvg.labels import RunLabel, axis_name, run_labels, sort_order
from seqvg.rundir import Run

PAGE = (11.0, 8.5)  # US letter landscape, inches
STYLES = ["-", "--", "-.", ":"]
#: Where exact zeros (float32 underflow) are drawn on a log axis, relative to
#: the smallest positive value on the page.
FLOOR_FACTOR = 0.1
#: More runs than this on one page: the seeds of each group are drawn as
#: their median with a band (min to max), every run on the appendix pages.
HANDFUL = 6
#: Panels per appendix page (one per run).
APPENDIX_PANELS = 12
#: Sequential colour maps for a category x number study (one per category).
FAMILIES = ["Blues", "Oranges", "Greens", "Reds", "Purples", "Greys"]
#: Line widths of a group's seeds on pages where line style already has a
#: meaning (dashed = untrained): the seeds differ by thinness.
SEED_WIDTHS = [1.8, 1.1, 0.7, 0.45]
#: Height of the figure (fraction) kept free at the foot of a page for its caption.
CAPTION_ROOM = 0.05


@dataclass
class View:
    """Runs as a report draws them: ordered, named, coloured, grouped over seeds.

    Attributes:
        runs: the runs in report order (length, cell, other options, seed).
        labels: their RunLabels (``labels[i].label`` names ``runs[i]``).
        colors: one colour per run; a group's seeds share it.
        seed_index: each run's rank among its group's seeds (0, 1, ...).
        groups: (group name, indices of its runs) in report order.
        grouped: whether seeds are summarised (more than HANDFUL runs and
            some group has several seeds).
        colour_key: one line saying what the colours mean.
    """

    runs: list
    labels: list
    colors: list
    seed_index: list
    groups: list
    grouped: bool
    colour_key: str


def view(runs: list[Run]) -> View:
    """Orders, names and colours runs for the report's pages."""
    named = run_labels([r.cfg for r in runs], [r.name for r in runs])
    order = sort_order(named)
    runs = [runs[i] for i in order]
    named = [named[i] for i in order]
    members: dict[str, list[int]] = {}
    for i, lab in enumerate(named):
        members.setdefault(lab.group, []).append(i)
    seed_index = [members[lab.group].index(i) for i, lab in enumerate(named)]
    grouped = len(runs) > HANDFUL and any(len(v) > 1 for v in members.values())
    colors, key = _colours(named)
    return View(runs, named, colors, seed_index, list(members.items()), grouped, key)


def _colours(named: list[RunLabel]) -> tuple[list, str]:
    """Colours that carry meaning: one hue per category, light to dark along a
    varied number (length, units, ...), sequential when only a number varies."""
    import matplotlib as mpl

    series = list(dict.fromkeys(lab.series for lab in named))
    values = sorted(set(lab.numeric for lab in named))
    axes = named[0].axes if named else ()
    what = " and ".join(axis_name(a) for a in axes)

    def rank(lab: RunLabel) -> float:
        return values.index(lab.numeric) / max(1, len(values) - 1)

    if axes and len(series) == 1:
        cmap = mpl.colormaps["viridis"]
        return [cmap(0.85 * rank(lab)) for lab in named], f"colour: {what}, dark = small, light = large"
    if axes and len(series) <= len(FAMILIES):
        return ([mpl.colormaps[FAMILIES[series.index(lab.series)]](0.45 + 0.5 * rank(lab)) for lab in named],
                f"colour: one hue per {'/'.join(series)}; light = small {what}, dark = large")
    # Categories only (or too many for a hue each): one colour per group.
    groups = list(dict.fromkeys(lab.group for lab in named))
    if len(groups) <= 10:
        return [mpl.colormaps["tab10"](groups.index(lab.group)) for lab in named], ""
    # tab20's strong colours first, then their light partners.
    tab20 = mpl.colormaps["tab20"]
    order = list(range(0, 20, 2)) + list(range(1, 20, 2))
    return [tab20(order[groups.index(lab.group) % 20]) for lab in named], ""


def subview(v: View, idx: list[int]) -> View:
    """The part of a view that holds the runs ``idx`` (one group)."""
    groups = [(name, [idx.index(i) for i in members]) for name, members in v.groups if set(members) <= set(idx)]
    return View([v.runs[i] for i in idx], [v.labels[i] for i in idx], [v.colors[i] for i in idx],
                [v.seed_index[i] for i in idx], groups, v.grouped, v.colour_key)


def run_handles(v: View, seeds_by: str = "style") -> tuple[list, list]:
    """Legend entries, one per run (or per group when seeds are summarised)."""
    from matplotlib.lines import Line2D

    handles, labels = [], []
    if v.grouped:
        for name, idx in v.groups:
            handles.append(Line2D([], [], color=v.colors[idx[0]], linewidth=2.2))
            labels.append(name)
        return handles, labels
    for i, lab in enumerate(v.labels):
        k = v.seed_index[i]
        style = ({"linestyle": STYLES[k % len(STYLES)], "linewidth": 1.6} if seeds_by == "style"
                 else {"linestyle": "-", "linewidth": SEED_WIDTHS[k % len(SEED_WIDTHS)]})
        handles.append(Line2D([], [], color=v.colors[i], **style))
        labels.append(lab.label)
    return handles, labels


def _median_band(series: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, ...]:
    """x, median, min and max over curves sampled at possibly different x
    (a seed that stopped early counts only where it ran)."""
    xs = np.unique(np.concatenate([np.asarray(x) for x, _ in series]))
    table = np.full((len(series), len(xs)), np.nan)
    for k, (x, y) in enumerate(series):
        table[k, np.searchsorted(xs, x)] = y
    present = np.isfinite(table).any(axis=0)
    med, lo, hi = (np.full(len(xs), np.nan) for _ in range(3))
    med[present] = np.nanmedian(table[:, present], axis=0)
    lo[present] = np.nanmin(table[:, present], axis=0)
    hi[present] = np.nanmax(table[:, present], axis=0)
    return xs, med, lo, hi


def band_alpha(v: View) -> float:
    """Bands of many groups overlap: fainter the more there are."""
    return 0.18 if len(v.groups) <= 4 else 0.07


def _lone(ok: np.ndarray) -> dict:
    """A marker for a series of one finite point, which a line alone does not draw
    (a run of --steps 20 logs its weight change and gradient norm once; a run
    that diverged before its second evaluation)."""
    return {"marker": "o", "markersize": 4} if int(np.count_nonzero(ok)) == 1 else {}


def draw_runs(ax, v: View, xy, width: float = 1.6, linestyle: str | None = None, log: bool = False,
               suffix: str = "", band: bool = True) -> None:
    """Draws ``xy(run) -> (x, y) or None`` for every run, or per group the
    median over its seeds with a band from the lowest to the highest."""

    def clean(x, y):
        x, y = np.asarray(x), np.asarray(y, dtype=np.float64)
        bad = ~np.isfinite(y) | ((y <= 0) if log else False)
        return x, np.where(bad, np.nan, y)

    if not v.grouped:
        for i, (r, lab) in enumerate(zip(v.runs, v.labels)):
            got = xy(r)
            if got is None:
                continue
            x, y = clean(*got)
            ok = np.isfinite(y)
            ax.plot(x[ok], y[ok], color=v.colors[i], linewidth=width, label=lab.label + suffix,
                    linestyle=linestyle or STYLES[v.seed_index[i] % len(STYLES)], **_lone(ok))
        return
    for name, idx in v.groups:
        got = [clean(*s) for s in (xy(v.runs[i]) for i in idx) if s is not None]
        if not got:
            continue
        xs, med, lo, hi = _median_band(got)
        ok = np.isfinite(med)
        color = v.colors[idx[0]]
        ax.plot(xs[ok], med[ok], color=color, linewidth=width, linestyle=linestyle or "-", label=name + suffix,
                **_lone(ok))
        if band and len(got) > 1:
            ax.fill_between(xs[ok], lo[ok], hi[ok], color=color, alpha=band_alpha(v), linewidth=0)


def metric_series(r: Run, col: str) -> tuple[np.ndarray, np.ndarray]:
    return (np.array([row["step"] for row in r.metrics]),
            np.array([row.get(col, math.nan) for row in r.metrics], dtype=np.float64))


def solved_point(r: Run, col: str) -> tuple[int, float] | None:
    solved = r.summary.get("solved_at_step")
    if solved is None:
        return None
    steps, ys = metric_series(r, col)
    k = int(np.nonzero(steps == solved)[0][0]) if (steps == solved).any() else -1
    return solved, float(ys[k])


def log_floor(arrays: list[np.ndarray]) -> float:
    positive = [a[(a > 0) & np.isfinite(a)] for a in arrays]
    positive = [p for p in positive if p.size]
    if not positive:
        return 1e-45
    return float(min(p.min() for p in positive)) * FLOOR_FACTOR


def plot_norms(ax, g: np.ndarray, floor: float, label: str | None, style: dict, width: float) -> None:
    """A gradient curve on a log axis; exact zeros drawn at ``floor`` as x."""
    t = np.arange(g.shape[0])
    shown = np.where(g > 0, g, np.nan)
    ax.plot(t, shown, label=label, linewidth=width, **style)
    zero = g == 0
    if zero.any():
        ax.plot(t[zero], np.full(zero.sum(), floor), "x", color=style["color"], markersize=4)


def draw_table(fig, top: float, cols: list[str], rows: list[list], fontsize: float = 8, left: float = 0.05,
           width: float = 0.9, scale: float = 1.25) -> float:
    """A table whose top edge is at figure height ``top``; returns its bottom edge."""
    ax = fig.add_axes([left, 0.0, width, top])
    ax.axis("off")
    table = ax.table(cellText=rows, colLabels=cols, loc="upper left", cellLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(fontsize)
    table.auto_set_column_width(list(range(len(cols))))
    table.scale(1, scale)
    for (r, _), cell in table.get_celld().items():
        if r == 0:
            cell.set_text_props(weight="bold")
            cell.set_facecolor("0.92")
    while True:  # long labels: a smaller font rather than a table off the page
        fig.draw_without_rendering()
        box = table.get_window_extent(fig.canvas.get_renderer()).transformed(fig.transFigure.inverted())
        if box.x1 <= 0.99 or fontsize <= 5.5:
            return float(box.y0)
        fontsize -= 0.5
        table.set_fontsize(fontsize)


def bottom_legend(fig, handles: list, labels: list, note: str = "") -> None:
    """The page's legend under its axes, in report order, room made for it."""
    ncol = min(6, max(1, len(labels)))
    rows = math.ceil(len(labels) / ncol)
    # CAPTION_ROOM: the page's caption sits under the legend.
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, CAPTION_ROOM + (0.02 if note else 0.0)))
    if note:
        fig.text(0.5, CAPTION_ROOM + 0.01, note, ha="center", fontsize=8, color="0.3")
    fig.subplots_adjust(bottom=CAPTION_ROOM + 0.11 + 0.028 * rows + (0.02 if note else 0), top=0.88, wspace=0.25)


def seeds_note(v: View) -> str:
    parts = [v.colour_key] if v.colour_key else []
    if v.grouped:
        parts.append("line = median over seeds, band = lowest to highest seed (every run: appendix)")
    elif any(k > 0 for k in v.seed_index):
        parts.append("a group's seeds share its colour: s0 solid, s1 dashed, s2 dash-dot")
    return ";  ".join(parts)


def headroom(ax, fraction: float) -> None:
    """Raises the top of ``ax``'s y range by ``fraction`` of its span (of its
    decades on a log axis): a band above every plotted value for the crosses
    of diverged runs (``diverged_cross``)."""
    low, high = ax.get_ylim()
    ax.set_ylim(low, high * (high / low) ** fraction if ax.get_yscale() == "log" else high + fraction * (high - low))


def diverged_cross(ax, x, color, *, y: float = 0.95, size: float = 9, count: int | None = None,
                   offset: tuple[int, int] = (7, -3)) -> None:
    """A cross at data ``x`` and axes fraction ``y`` for diverged runs (a
    NaN/Inf loss has no outcome to plot), with "N diverged" beside it where
    ``count`` is given."""
    ax.plot([x], [y], marker="X", markersize=size, color=color, markeredgecolor="k", linestyle="none",
            transform=ax.get_xaxis_transform(), clip_on=False)
    if count is not None:
        ax.annotate(f"{count} diverged", (x, y), xycoords=("data", "axes fraction"), xytext=offset,
                    textcoords="offset points", fontsize=7, color="0.25")


def caption(fig, text: str) -> None:
    """The page's one-sentence caption at its foot, wrapped to the page width."""
    import textwrap

    fig.text(0.01, 0.008, textwrap.fill("What to look for: " + text, 150), fontsize=9, color="0.15", va="bottom")
