"""The report's pages on training itself: learning curves against the
task's baselines, and the weight graph (how much each layer still moves).

    seqvg report runs/demo -o reports/demo.pdf
"""

from __future__ import annotations

import math
import re

import numpy as np
from matplotlib.ticker import MaxNLocator

from seqvg.report_text import each_group
from seqvg.report_view import (
    HANDFUL,
    STYLES,
    View,
    bottom_legend,
    caption,
    draw_runs,
    metric_series,
    run_handles,
    seeds_note,
    solved_point,
    subview,
    view,
)
from seqvg.rundir import Run
from seqvg.tasks import get_task


def curves_page(fig, runs: list[Run], title: str = "Learning curves") -> None:
    v = view(runs)
    ax_loss, ax_metric = fig.subplots(1, 2)
    task = get_task(v.runs[0].cfg["task"], v.runs[0].cfg.get("task_args"))
    draw_runs(ax_loss, v, lambda r: metric_series(r, "val_loss"))
    draw_runs(ax_metric, v, lambda r: metric_series(r, "val_metric"))
    for i, r in enumerate(v.runs):
        for ax, col in ((ax_loss, "val_loss"), (ax_metric, "val_metric")):
            point = solved_point(r, col)
            if point is not None:
                ax.plot([point[0]], [point[1]], marker="*", markersize=13, color=v.colors[i],
                        markeredgecolor="k", linestyle="none")
            if r.summary.get("status") == "diverged":
                # Its last finite value, marked: a run that diverged at once has a single point, no line to see.
                steps, ys = metric_series(r, col)
                ok = np.isfinite(ys) & (ys > 0)
                if ok.any():
                    ax.plot([steps[ok][-1]], [ys[ok][-1]], marker="X", markersize=10, color=v.colors[i],
                            markeredgecolor="k", linestyle="none")
    diverged = [lab.label for r, lab in zip(v.runs, v.labels) if r.summary.get("status") == "diverged"]
    _baselines(ax_loss, task, sorted({r.cfg["length"] for r in v.runs}))
    if task.name == "adding":
        ax_metric.axhline(task.threshold, color="green", linestyle=(0, (2, 2)), linewidth=1)
        ax_metric.annotate(f"solved: val MSE < {task.threshold:g}", (0.99, task.threshold),
                           xycoords=("axes fraction", "data"), ha="right", va="bottom", fontsize=8, color="green")
        ax_metric.set_yscale("log")
    else:
        ax_metric.axhline(task.threshold, color="green", linestyle=(0, (2, 2)), linewidth=1)
        ax_metric.annotate(f"solved: {task.criterion}", (0.99, task.threshold), xycoords=("axes fraction", "data"),
                           ha="right", va="bottom", fontsize=8, color="green")
        _metric_baselines(ax_metric, task, sorted({r.cfg["length"] for r in v.runs}))
        ax_metric.set_ylim(-0.02, 1.02)
    ax_loss.set_yscale("log")
    # The reference lines and their labels inside the axes, whatever the runs' range (a diverged
    # run's 1e27 left the solved line below the axes, its label over the tick labels).
    lengths = sorted({r.cfg["length"] for r in v.runs})
    lines = [task.baseline(t) for t in lengths] + [p for p in map(task.partial_plateau, lengths) if p is not None]
    low, high = ax_loss.get_ylim()
    ax_loss.set_ylim(min(low, min(lines) / 1.15), high)
    if task.name == "adding":
        low, high = ax_metric.get_ylim()
        ax_metric.set_ylim(min(low, task.threshold / 1.15), high)
    ax_loss.set(xlabel="training step", ylabel="validation loss (log)", title="Validation loss")
    ax_metric.set(xlabel="training step", ylabel=f"validation {task.metric_name}",
                  title=f"Validation {task.metric_name}  (star = solved)")
    for ax in (ax_loss, ax_metric):
        ax.grid(True, which="major", alpha=0.3)
        # Steps are whole: a run with one row (diverged at step 2) had ticks at -0.045 .. 0.045.
        lo, hi = ax.get_xlim()
        if hi - lo < 2:
            ax.set_xlim((lo + hi) / 2 - 1, (lo + hi) / 2 + 1)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))
    bottom_legend(fig, *run_handles(v), seeds_note(v))
    fig.suptitle(title, fontsize=14, weight="bold")
    solved = sorted((r.summary["solved_at_step"], lab.label) for r, lab in zip(v.runs, v.labels)
                    if r.summary.get("solved"))
    caption(fig, "a run learns the long-range dependency when its loss leaves the dotted trivial baseline (a model "
             f"with no memory); {len(solved)} of {len(runs)} runs met the solved criterion (star)"
             + (f", the first {solved[0][1]} at step {solved[0][0]}." if solved else ".")
             + (f" A cross: the last finite value of a run that diverged ({', '.join(diverged)})." if diverged else ""))


def _plateau_label(task, value: float) -> str:
    """A few words for the task's partial plateau on a curve's axis."""
    if task.name == "adding":
        return "1/12: only the near marker"
    if task.name == "temporal-order":
        return f"{value:.3g}: " + ("one of the two symbols" if task.params["symbols"] == 2 else "two of three symbols")
    if task.name == "recall":
        return f"{value:.3g}: the values, not which key"
    return f"plateau {value:.3g}"


def _metric_baselines(ax, task, lengths: list[int]) -> None:
    """The memoryless model's metric (and the partial plateau's) on the metric axis."""
    for base in sorted({round(task.baseline_metric(length), 12) for length in lengths}):
        ax.axhline(base, color="0.25", linestyle=(0, (1, 1)), linewidth=1.2)
        ax.annotate(f"trivial baseline {base:.3g}", (0.01, base), xycoords=("axes fraction", "data"),
                    va="bottom", fontsize=8, color="0.25")
    bases = {round(task.baseline_metric(length), 12) for length in lengths}
    plateaus = {round(p, 12) for p in (task.plateau_metric(length) for length in lengths) if p is not None}
    for plateau in sorted(plateaus - bases):
        ax.axhline(plateau, color="0.45", linestyle=(0, (4, 2, 1, 2)), linewidth=1)
        ax.annotate(_plateau_label(task, plateau), (0.01, plateau), xycoords=("axes fraction", "data"),
                    va="bottom", fontsize=8, color="0.45")


def _baselines(ax, task, lengths: list[int]) -> None:
    """The trivial baseline (and the adding task's 1/12 plateau), once per value."""
    bases: dict[float, list[int]] = {}
    for length in lengths:
        bases.setdefault(round(task.baseline(length), 12), []).append(length)
    for base, at in bases.items():
        where = f" (T={', '.join(map(str, at))})" if len(bases) > 1 else ""
        ax.axhline(base, color="0.25", linestyle=(0, (1, 1)), linewidth=1.2)
        ax.annotate(f"trivial baseline {base:.3g}{where}", (0.01, base), xycoords=("axes fraction", "data"),
                    va="bottom", fontsize=8, color="0.25")
    plateaus = {round(p, 12) for p in (task.partial_plateau(length) for length in lengths) if p is not None}
    plateaus -= set(bases)
    for plateau in sorted(plateaus):
        ax.axhline(plateau, color="0.45", linestyle=(0, (4, 2, 1, 2)), linewidth=1)
        ax.annotate(_plateau_label(task, plateau), (0.01, plateau), xycoords=("axes fraction", "data"),
                    va="bottom", fontsize=8, color="0.45")


def weights_page(fig, runs: list[Run]) -> None:
    from matplotlib.lines import Line2D

    v = view(runs)
    # Layers by position (recurrent layer 1, 2, ..., the head): Keras names
    # them by cell (rnn_1, lstm_1), which would give each cell its own style.
    layers = list(dict.fromkeys(k for r in v.runs for k in _layer_columns(r)))
    layers.sort(key=lambda k: (k == "head", not k.startswith("layer "), k))

    def draw_layers(ax, sub: View) -> None:
        for j, layer in enumerate(layers):
            draw_runs(ax, sub, lambda r, layer=layer: metric_series(r, _layer_columns(r)[layer]) if layer in _layer_columns(r)
                       else None, width=1.2, linestyle=STYLES[j % len(STYLES)], log=True, suffix=f": {layer}",
                       band=False)
        ax.set_yscale("log")
        ax.grid(True, which="major", alpha=0.3)

    grid = fig.add_gridspec(1, 2, wspace=0.25)
    ax_g = fig.add_subplot(grid[1])
    if len(v.groups) <= HANDFUL:
        ax_w = fig.add_subplot(grid[0])
        draw_layers(ax_w, v)
        ax_w.set(xlabel="training step", ylabel="relative weight change per logged row (log)",
                 title="Weight graph: ||W_now - W_prev|| / ||W_prev|| per layer")
    else:
        # Layers x runs on one axis is a tangle: one small panel per run (group).
        n = len(v.groups)
        cols = math.ceil(math.sqrt(n))
        cells = grid[0].subgridspec(math.ceil(n / cols), cols, hspace=0.5, wspace=0.12)
        first = None
        for k, (name, idx) in enumerate(v.groups):
            ax = fig.add_subplot(cells[k // cols, k % cols], sharex=first, sharey=first)
            first = first or ax
            draw_layers(ax, subview(v, idx))
            ax.set_title(name, fontsize=7.5, pad=2)
            ax.tick_params(labelsize=6.5, which="both")
            ax.label_outer()
        ax_w = first
        fig.text(0.31, 0.905, "Weight graph: ||W_now - W_prev|| / ||W_prev|| per layer, one panel per run, log",
                 ha="center", fontsize=10)
    # Bands of a dozen groups turn this secondary panel to mud: medians only.
    draw_runs(ax_g, v, lambda r: metric_series(r, "grad_norm"), width=1.4, log=True, band=len(v.groups) <= HANDFUL)
    ax_g.set_yscale("log")
    ax_g.set(xlabel="training step", ylabel="global gradient norm (log)",
             title="Global gradient norm (mean per row, before clipping)")
    ax_g.grid(True, which="major", alpha=0.3)
    handles = [Line2D([], [], color="0.2", linestyle=STYLES[j % len(STYLES)]) for j in range(len(layers))]
    ax_g.legend(handles, [f"left: {layer}" for layer in layers], fontsize=7, loc="upper right",
                title="line style", title_fontsize=7)
    if v.grouped:
        handles, labels = run_handles(v)
        note = seeds_note(v)
    else:
        # Here line style is the layer, so a run's seeds differ by colour only.
        handles, labels = run_handles(v, seeds_by="width")
        note = v.colour_key
    bottom_legend(fig, handles, labels, note)
    fig.suptitle("Weight graph: flat, low lines for a layer = it stopped learning", fontsize=13, weight="bold")

    def last_change(r: Run) -> float | None:
        col = _layer_columns(r).get("layer 1")
        values = metric_series(r, col)[1] if col else np.array([])
        values = values[np.isfinite(values)]
        return float(values[-1]) if values.size else None

    moved = each_group(v, last_change, "{:.2g}")
    caption(fig, "a layer whose line sinks and stays low has stopped learning; spikes in the global gradient norm "
             "(right) are exploding gradients" + (f"; layer 1's last relative change: {moved}." if moved else "."))


def _layer_columns(r: Run) -> dict[str, str]:
    """A run's weight_change columns by layer: "layer 1" for rnn_1 / lstm_1 / ...,
    other layers (head, batch_norm_1) by their own name."""
    out = {}
    for c in r.columns:
        if c.startswith("weight_change/"):
            name = c.split("/", 1)[1]
            # residual_K wraps recurrent layer K: the same weights.
            m = re.fullmatch(r"(?:rnn|irnn|lstm|gru|simple_rnn|residual)_(\d+)", name)
            out[f"layer {m.group(1)}" if m else name] = c
    return out
