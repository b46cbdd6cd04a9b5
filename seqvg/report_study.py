"""The report's pages for many runs: the study page (outcome and decay rate
against what varies, every seed a point) and the appendix (every run on
its own).

    seqvg report runs/sweep -o reports/sweep.pdf
"""

from __future__ import annotations

import math

import numpy as np

from seqvg.decay import decay_summary
from seqvg.labels import axis_name
from seqvg.report_view import (
    APPENDIX_PANELS,
    CAPTION_ROOM,
    View,
    bottom_legend,
    caption,
    diverged_cross,
    headroom,
    log_floor,
    metric_series,
    plot_norms,
    solved_point,
    view,
)
from seqvg.rundir import Run
from seqvg.tasks import get_task


def study_page(fig, runs: list[Run]) -> None:
    """Outcome and decay rate against the varied option(s), every seed a point."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import NullLocator

    v = view(runs)
    task = get_task(v.runs[0].cfg["task"], v.runs[0].cfg.get("task_args"))
    lab0 = v.labels[0]
    numeric_x = bool(lab0.axes)
    lines = list(dict.fromkeys((lab.series, lab.numeric[1:]) for lab in v.labels))
    if numeric_x:
        xvalues = sorted({lab.numeric[0] for lab in v.labels})
    else:
        xvalues = list(dict.fromkeys(lab.series for lab in v.labels))
    ax_out, ax_rate = fig.subplots(1, 2)
    logx = numeric_x and min(xvalues) > 0 and max(xvalues) / min(xvalues) >= 4

    most_seeds = max(len(idx) for _, idx in v.groups)
    slots = (len(lines) if numeric_x else 1) * most_seeds
    if numeric_x and len(xvalues) > 1:
        gap = min(b / a for a, b in zip(xvalues, xvalues[1:])) if logx else _spacing(xvalues)
    else:
        gap = 10.0 if logx else 1.0

    def x_of(i: int) -> float:
        """The run's x, moved a little so that seeds and series do not overlap."""
        lab = v.labels[i]
        base = lab.numeric[0] if numeric_x else xvalues.index(lab.series)
        slot = (lines.index((lab.series, lab.numeric[1:])) if numeric_x else 0) * most_seeds + v.seed_index[i]
        frac = (slot - (slots - 1) / 2) / max(1, slots) * 0.4
        return base * gap ** frac if logx else base + frac * gap

    def final_metric(r):
        if r.cfg["task"] != task.name:  # another task's metric: not on this axis
            return None
        if r.summary.get("status") == "diverged":  # drawn as a cross at the top, not as its last (huge) value
            return None
        val = (r.summary.get("final") or {}).get("val_metric")
        return val if val is not None and math.isfinite(val) else None

    def rates(r, row):
        h = r.probes["h"]
        if row == -1 and h.shape[0] == 1:
            return None
        return decay_summary(h[row][0])["rate_per_100"]

    for series, rest in lines:
        idx = [i for i, lab in enumerate(v.labels) if (lab.series, lab.numeric[1:]) == (series, rest)]
        # One line: the points carry the colours, the median is neutral.
        color = v.colors[idx[-1]] if len(lines) > 1 else "0.3"
        name = " ".join([series] + [f"{axis_name(a)}={x}" for a, x in zip(lab0.axes[1:], rest)]).strip()
        for ax, get, dash, filled in ((ax_out, final_metric, "-", True),
                                      (ax_rate, lambda r: rates(r, 0), "--", False),
                                      (ax_rate, lambda r: rates(r, -1), "-", True)):
            xs_med, ys_med = [], []
            for x in xvalues:
                at = [i for i in idx if (v.labels[i].numeric[0] if numeric_x else v.labels[i].series) == x]
                ys = [get(v.runs[i]) for i in at]
                for i, y in zip(at, ys):
                    if y is None:
                        continue
                    star = ax is ax_out and v.runs[i].summary.get("solved")
                    ax.plot([x_of(i)], [y], marker="*" if star else "o", markersize=11 if star else 5,
                            color=v.colors[i], markerfacecolor=v.colors[i] if filled else "white",
                            markeredgecolor="k" if star else v.colors[i], linestyle="none")
                ys = [y for y in ys if y is not None]
                if ys:
                    xs_med.append(x if numeric_x else xvalues.index(x))
                    ys_med.append(float(np.median(ys)))
            if len(xs_med) > 1:
                ax.plot(xs_med, ys_med, color=color, linestyle=dash, linewidth=1.4,
                        label=name if ax is ax_out else None)
    ax_out.axhline(task.threshold, color="green", linestyle=(0, (2, 2)), linewidth=1)
    ax_out.annotate(f"solved: {task.metric_name} {'>=' if task.higher_is_better else '<'} {task.threshold:g}",
                    (0.99, task.threshold), xycoords=("axes fraction", "data"), ha="right", va="bottom",
                    fontsize=8, color="green")
    if task.name == "adding":
        ax_out.set_yscale("log")
        for base in sorted({task.baseline(r.cfg["length"]) for r in v.runs if r.cfg["task"] == task.name}):
            ax_out.axhline(base, color="0.25", linestyle=(0, (1, 1)), linewidth=1.2)
            ax_out.annotate(f"trivial baseline {base:.3g}", (0.01, base), xycoords=("axes fraction", "data"),
                            va="bottom", fontsize=8, color="0.25")
    else:
        ax_out.set_ylim(-0.02, 1.02)
    if task.name == "adding":  # the solved line and its label inside the axes, whatever the data's range
        low, high = ax_out.get_ylim()
        ax_out.set_ylim(min(low, task.threshold / 1.5), high)
    # A diverged run's loss became NaN or Inf: it has no outcome to plot, and
    # its last finite loss (1e26 and more) would squash every other point.
    diverged = [i for i, r in enumerate(v.runs) if r.summary.get("status") == "diverged" and r.cfg["task"] == task.name]
    if diverged:  # a band at the top for the crosses, above every plotted value
        headroom(ax_out, 0.12)
    for i in diverged:
        diverged_cross(ax_out, x_of(i), v.colors[i], y=0.96)
    ax_rate.axhline(0, color="0.5", linewidth=0.8)
    xlabel = axis_name(lab0.axes[0]) if numeric_x else ""
    for ax in (ax_out, ax_rate):
        ax.grid(True, which="major", alpha=0.3)
        if numeric_x:
            if logx:
                ax.set_xscale("log")
            ax.set_xticks(xvalues, [f"{x:g}" for x in xvalues])
            ax.xaxis.set_minor_locator(NullLocator())  # y keeps its minor labels
            ax.set_xlabel(xlabel)
        else:
            ax.set_xticks(range(len(xvalues)), xvalues, rotation=30 if len(xvalues) > 4 else 0,
                          ha="right" if len(xvalues) > 4 else "center")
            ax.set_xlim(-0.6, len(xvalues) - 0.4)
    ax_out.set(ylabel=f"final validation {task.metric_name}" + (" (log)" if task.name == "adding" else ""),
               title="Outcome: every seed a point, line = median over seeds"
               + (f"\n({task.name} runs only; the others' outcome is in the Summary)"
                  if len({r.cfg["task"] for r in v.runs}) > 1 else ""))
    ax_rate.set(ylabel="decay rate, decades per 100 steps back (negative = vanishing)",
                title="Gradient decay rate of ||dL/dh_t||: at init and at the end")
    handles, labels = [], []
    if len(lines) > 1 and numeric_x:
        handles, labels = ax_out.get_legend_handles_labels()
    handles += [Line2D([], [], marker="*", markersize=11, color="0.6", markeredgecolor="k", linestyle="none"),
                Line2D([], [], marker="o", color="0.4", linestyle="none"),
                Line2D([], [], marker="o", color="0.4", markerfacecolor="white", linestyle="--"),
                Line2D([], [], marker="o", color="0.4", linestyle="-")]
    labels += ["solved", "not solved", "decay at init (open, dashed median)", "decay at the end (filled, solid)"]
    if diverged:
        handles.append(Line2D([], [], marker="X", markersize=9, color="0.6", markeredgecolor="k", linestyle="none"))
        labels.append("diverged (NaN/Inf loss)")
    bottom_legend(fig, handles, labels, v.colour_key)
    varied = f"against {xlabel}" if xlabel else "for each cell and variant"
    fig.suptitle(f"Study: outcome and gradient decay {varied}", fontsize=14, weight="bold")
    at_end = all(r.probes["h"].shape[0] > 1 for r in v.runs)
    rate = [(rates(r, -1 if at_end else 0), lab.group) for r, lab in zip(v.runs, v.labels)]
    rate = sorted((x, name) for x, name in rate if x is not None)
    spread = (f"; decay {'at the end' if at_end else 'at init'} from {rate[0][0]:+.2f} ({rate[0][1]}) to "
              f"{rate[-1][0]:+.2f} ({rate[-1][1]}) decades per 100 steps" if len(rate) > 1 else "")
    caption(fig, "whether the runs that solve (stars, left) are those whose gradient decays least (right)" + spread
             + ".")


def _spacing(values: list) -> float:
    """The smallest gap between sorted x values (for spreading seeds apart)."""
    gaps = np.diff(sorted(values))
    return float(gaps.min()) if gaps.size else 1.0


def appendix_page(fig, runs: list[Run], v: View, kind: str) -> None:
    """One small panel per run: its learning curve or its gradient curves."""
    n = len(runs)
    cols = 4
    # A full page's grid on every page: the last page's one run was a single panel the page's whole height.
    rows = max(1, math.ceil(min(len(v.runs), APPENDIX_PANELS) / cols))
    # One y scale per page, so that runs compare at a glance.
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False, sharey=True)).ravel()
    for ax, r in zip(axes, runs):
        i = v.runs.index(r)
        color = v.colors[i]
        if kind == "curves":
            steps, val = metric_series(r, "val_loss")
            ok = np.isfinite(val) & (val > 0)
            ax.plot(steps[ok], val[ok], color=color, linewidth=1.4)
            point = solved_point(r, "val_loss")
            if point is not None:
                ax.plot([point[0]], [point[1]], marker="*", markersize=11, color=color, markeredgecolor="k")
            # Each run's own baseline: a page of runs may mix a task's parameters (symbols=2 and 3).
            ax.axhline(get_task(r.cfg["task"], r.cfg.get("task_args")).baseline(r.cfg["length"]), color="0.25",
                       linestyle=(0, (1, 1)), linewidth=1)
            ax.set_yscale("log")
            ax.set_xlabel("training step", fontsize=7)
        else:
            h = r.probes["h"]
            floor = log_floor([h[0][0], h[-1][0]])
            plot_norms(ax, h[0][0], floor, None, {"color": color, "linestyle": "--"}, 1.0)
            if h.shape[0] > 1:
                plot_norms(ax, h[-1][0], floor, None, {"color": color, "linestyle": "-"}, 1.6)
            ax.set_yscale("log")
            ax.set_xlabel("timestep t", fontsize=7)
        ax.set_title(f"{v.labels[i].label}  ({r.summary['status']}"
                     + (f", solved at {r.summary['solved_at_step']})" if r.summary.get("solved") else ")"),
                     fontsize=8)
        ax.tick_params(labelsize=7, which="both")
        ax.grid(True, which="major", alpha=0.3)
    for ax in axes[n:]:
        ax.axis("off")
    what = ("validation loss (log); dotted = trivial baseline, star = solved" if kind == "curves"
            else "||dL/dh_t|| (log); dashed = untrained, solid = end of training")
    fig.suptitle(f"Appendix: every run, {'learning curve' if kind == 'curves' else 'gradient flow'}",
                 fontsize=13, weight="bold")
    fig.text(0.5, 0.93, what, ha="center", fontsize=9, color="0.3")
    fig.subplots_adjust(hspace=0.55, wspace=0.3, top=0.88, bottom=0.07 + CAPTION_ROOM)
    caption(fig, "every run on its own, one y scale per page: a seed far from its group's median on the main "
             "pages shows here.")
