"""The report's gradient-flow pages: ||dL/dh_t|| over timesteps at init and
at the end of training, and as heatmaps over training on one colour scale.

    seqvg report runs/demo -o reports/demo.pdf
"""

from __future__ import annotations

import math

import numpy as np

from seqvg.decay import decay_summary
from seqvg.report_text import each_group, listed
from seqvg.report_view import (
    APPENDIX_PANELS,
    SEED_WIDTHS,
    band_alpha,
    bottom_legend,
    caption,
    log_floor,
    plot_norms,
    run_handles,
    seeds_note,
    view,
)
from seqvg.rundir import Run


def gradient_page(fig, runs: list[Run]) -> None:
    v = view(runs)
    has_c = any("c" in r.probes for r in v.runs)
    # A custom cell's further states (probes.npz state_NAME), one panel each.
    extra = sorted({k for r in v.runs for k in r.probes if k.startswith("state_")})
    axes = fig.subplots(1, 1 + has_c + len(extra), squeeze=False)[0]
    curves = [("h", axes[0], "hidden state  ||dL/dh_t||")]
    if has_c:
        curves.append(("c", axes[1], "LSTM cell state  ||dL/dc_t||"))
    for ax, key in zip(axes[1 + has_c:], extra):
        name = key[len("state_"):]
        curves.append((key, ax, f"state {name}  ||dL/d{name}_t||"))
    for key, ax, title in curves:
        arrays = [r.probes[key][i][0] for r in v.runs if key in r.probes for i in (0, -1)]
        floor = log_floor(arrays)
        any_zero = False
        if v.grouped:
            for name, idx in v.groups:
                members = [v.runs[i] for i in idx if key in v.runs[i].probes]
                if not members:
                    continue
                color = v.colors[idx[0]]
                for row, dash, width, when in ((0, "--", 1.0, "init"), (-1, "-", 1.8, "end")):
                    if row == -1 and all(r.probes[key].shape[0] == 1 for r in members):
                        continue
                    curves_k = [r.probes[key][row][0].astype(np.float64) for r in members]
                    if len({c.shape for c in curves_k}) > 1:
                        curves_k = curves_k[:1]
                    stack = np.stack(curves_k)
                    med = np.median(stack, axis=0)
                    any_zero |= bool((med == 0).any())
                    plot_norms(ax, med, floor, f"{name} {when}", {"color": color, "linestyle": dash}, width)
                    if len(curves_k) > 1:
                        t = np.arange(stack.shape[1])
                        ax.fill_between(t, np.maximum(stack.min(axis=0), floor), np.maximum(stack.max(axis=0), floor),
                                        color=color, alpha=band_alpha(v) if row else 0.05, linewidth=0)
        else:
            for i, (r, lab) in enumerate(zip(v.runs, v.labels)):
                if key not in r.probes:
                    continue
                width = SEED_WIDTHS[v.seed_index[i] % len(SEED_WIDTHS)]
                st = {"color": v.colors[i]}
                init, final = r.probes[key][0][0], r.probes[key][-1][0]
                any_zero |= bool((init == 0).any() or (final == 0).any())
                plot_norms(ax, init, floor, f"{lab.label} init", {**st, "linestyle": "--"}, 0.6 * width)
                if r.probes[key].shape[0] > 1:
                    plot_norms(ax, final, floor, f"{lab.label} step {int(r.probes['steps'][-1])}",
                                {**st, "linestyle": "-"}, width)
        ax.set_yscale("log")
        if any_zero:
            ax.axhline(floor, color="0.5", linewidth=0.6)
            ax.annotate("x = underflow to 0", (0.99, floor), xycoords=("axes fraction", "data"), ha="right",
                        va="bottom", fontsize=8, color="0.3")
        ax.set(xlabel="timestep t (the loss is read at the end)", ylabel="gradient norm (log)", title=title)
        ax.grid(True, which="major", alpha=0.3)
    from matplotlib.lines import Line2D

    handles, labels = run_handles(v, seeds_by="width")
    handles += [Line2D([], [], color="0.2", linestyle="--", linewidth=1.0),
                Line2D([], [], color="0.2", linestyle="-", linewidth=1.8)]
    labels += ["dashed: untrained (step 0)", "solid: end of training"]
    note = seeds_note(v).replace("s0 solid, s1 dashed, s2 dash-dot", "s0 thickest, later seeds thinner")
    bottom_legend(fig, handles, labels, note)
    fig.suptitle("Gradient flow back through time: dashed = untrained, solid = end of training",
                 fontsize=13, weight="bold")
    trained = any(r.probes["h"].shape[0] > 1 for r in v.runs)
    ratios = each_group(v, lambda r: decay_summary(r.probes["h"][-1][0])["ratio"], "{:.2g}")
    # A run whose probes overflowed has no curve at all: said, not left as a legend entry with nothing drawn.
    blank = [name for name, idx in v.groups
             if not any(np.isfinite(r.probes["h"]).any() for r in (v.runs[i] for i in idx))]
    caption(fig, "a curve that falls toward t = 0 means the early inputs get (almost) no gradient, so they cannot "
             f"be learned; g_0/g_(T-1) {'at the end' if trained else 'at init'}: {ratios or 'not measurable'}."
             + (f" No finite gradient to draw (NaN or Inf in every probe): {listed(blank)}." if blank else ""))


def _log_norms(r: Run) -> np.ndarray:
    h = r.probes["h"][:, 0, :].astype(np.float64)
    with np.errstate(divide="ignore"):
        return np.where(h > 0, np.log10(np.where(h > 0, h, 1.0)), np.nan)


def heatmap_page(fig, runs: list[Run], part: int | None = None) -> None:
    """One heatmap per run; with more runs than fit a page, one per group
    (median over seeds) and, as ``part`` 0, 1, ..., appendix pages per run."""
    import matplotlib as mpl
    from matplotlib.ticker import MaxNLocator

    v = view(runs)
    panels = []  # (title, run whose probe steps label the rows, log norms)
    if part is None and v.grouped and len(runs) > APPENDIX_PANELS:
        for name, idx in v.groups:
            members = [v.runs[i] for i in idx]
            same = all(np.array_equal(m.probes["steps"], members[0].probes["steps"])
                       and m.probes["h"].shape == members[0].probes["h"].shape for m in members)
            if same and len(members) > 1:
                with np.errstate(all="ignore"):
                    stack = np.stack([_log_norms(m) for m in members])
                    # Underflow in any seed stays visible (magenta) in the median.
                    g = np.where(np.isnan(stack).any(axis=0), np.nan, np.median(stack, axis=0))
                panels.append((f"{name} (median of {len(members)} seeds)", members[0], g))
            else:
                panels.append((f"{name} ({members[0].name})" if len(members) > 1 else name, members[0],
                               _log_norms(members[0])))
    else:
        chosen = slice(None) if part is None else slice(part * APPENDIX_PANELS, (part + 1) * APPENDIX_PANELS)
        panels = [(lab.label, r, _log_norms(r)) for r, lab in zip(v.runs[chosen], v.labels[chosen])]
    # One colour scale for every run, on every heatmap page.
    logs = [_log_norms(r) for r in v.runs]
    finite = np.concatenate([g[np.isfinite(g)] for g in logs]) if logs else np.array([0.0])
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (-1.0, 0.0)
    n = len(panels)
    # An appendix page lays out a full page's grid, so its last page's panels are no larger than the others.
    slots = n if part is None else max(n, min(len(v.runs), APPENDIX_PANELS))
    cols = min(slots, max(3, math.ceil(math.sqrt(slots))))
    rows = math.ceil(slots / cols)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False, gridspec_kw={"hspace": 0.6, "wspace": 0.35})
                         ).ravel()
    cmap = mpl.colormaps["viridis"].with_extremes(bad="magenta")
    image = None
    for ax, (title, r, g) in zip(axes, panels):
        steps = r.probes["steps"]
        length = g.shape[1]
        image = ax.imshow(np.ma.masked_invalid(g), aspect="auto", origin="lower", cmap=cmap, vmin=vmin,
                          vmax=vmax, interpolation="nearest", extent=(-0.5, length - 0.5, -0.5, len(steps) - 0.5))
        ticks = np.unique(np.linspace(0, len(steps) - 1, min(6, len(steps))).round().astype(int))
        ax.set_yticks(ticks, [str(int(steps[t])) for t in ticks], fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
        ax.set_xlabel("timestep t", fontsize=8)
        ax.set_ylabel("training step", fontsize=8)
    for ax in axes[n:]:
        ax.axis("off")
    if image is not None:
        bar = fig.colorbar(image, ax=list(axes), shrink=0.85)  # the whole grid's height, as on a full page
        bar.set_label("log10 ||dL/dh_t||  (magenta = underflow to 0)")
    title = "Gradient flow over training (one colour scale for all runs)"
    fig.suptitle(title if part is None else f"Appendix: every run, {title[0].lower()}{title[1:]}", fontsize=13,
                 weight="bold")

    def first_and_last(r: Run) -> str | None:
        g = _log_norms(r)
        left = g[:, 0] - g[:, -1]  # log10 g_0 / g_(T-1) per probe
        if g.shape[0] < 2 or not np.isfinite(left[[0, -1]]).all():
            return None
        return f"{left[0]:+.1f} -> {left[-1]:+.1f}"

    got = [(name, first_and_last(v.runs[idx[0]])) for name, idx in v.groups]
    change = listed([f"{name} {x}" for name, x in got if x is not None])
    caption(fig, "rows are probes during training (bottom = untrained), columns timesteps; a run that learns "
             "turns its left columns brighter as the gradient reaches further back"
             + (f"; log10 g_0/g_(T-1), first -> last probe: {change}." if change else "."))
