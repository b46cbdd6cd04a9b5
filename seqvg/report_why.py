"""The report's why pages (seqvg.why's numbers): the carry path (carry gate
or sigma_max(W) x phi', and the per-step gain) and the spectrum (step
Jacobian norms, or the init gradient ratio against --recurrent-gain).

    seqvg report runs/lstm runs/rnn -o reports/why.pdf
"""

from __future__ import annotations

import numpy as np

from seqvg.config import is_custom_cell
from seqvg.report_findings import CARRY_GATE
from seqvg.report_view import PAGE, STYLES, View, caption, view
from seqvg.rundir import Run

#: Smallest positive float32 (subnormal): a stored norm below it is an exact 0.
FLOAT32_TINY = 1.4e-45


def recurrent_gain_figure(points: list[dict], length: int, title: str, fig=None):
    """The init gradient ratio g_0/g_{T-1} against --recurrent-gain G.

    Args:
        points: one dict per probe: ``series`` (the curve it belongs to),
            ``gain`` (G), ``ratio`` (g_0/g_{T-1}; 0 or None when g_0
            underflowed) and ``seed``.
        length: T, for the linear reference G^(T-1).
        title: the figure's title.
        fig: draw into this (empty) figure instead of a new one.

    Returns:
        A matplotlib Figure (page size).
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    if fig is None:
        fig = plt.figure(figsize=PAGE)
    fig.set_layout_engine("constrained")
    ax = fig.subplots()
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    gains = sorted({p["gain"] for p in points})
    dense = np.geomspace(min(gains + [0.5]), max(gains + [2.0]), 200)
    reference = dense ** (length - 1)
    floor = FLOAT32_TINY / 10
    ax.plot(dense, np.where(reference >= floor, reference, np.nan), color="0.15", ls="--", lw=1.2,
            label=f"linear RNN, W = G x orthogonal: exactly G^(T-1), T = {length}")
    series = list(dict.fromkeys(p["series"] for p in points))
    finite = [p["ratio"] for p in points if p["ratio"]]
    top = max(finite + [max(gains) ** (length - 1), 10.0]) * 10
    any_zero = any_over = False
    for k, name in enumerate(series):
        style = {"color": colors[k % len(colors)], "marker": "os^vD<>"[k % 7]}
        med = []
        for g in gains:
            # None: the forward pass or the gradient overflowed (inf/NaN);
            # 0: g_0 underflowed float32. Both are drawn at the axis' edge.
            values = [p["ratio"] for p in points if p["series"] == name and p["gain"] == g]
            if not values:
                continue
            any_zero |= any(v == 0 for v in values)
            any_over |= any(v is None for v in values)
            shown = np.asarray([top / 3 if v is None else max(v, floor) for v in values], dtype=np.float64)
            ax.plot([g] * len(values), shown, linestyle="none", ms=3.5, alpha=0.5, **style)
            m = float(np.median(shown))
            med.append((g, m if floor < m < top / 3 else np.nan))  # no line to an edge marker
        if med:
            ax.plot(*zip(*med), lw=1.8, ms=6, label=f"{name} (line: median of seeds, dots: seeds)", **style)
    ax.axvline(1.0, color="0.4", lw=1)
    ax.axhline(1.0, color="0.6", lw=0.8)
    ax.annotate("vanishing guaranteed:\nmax|phi'| sigma_max(W) = G < 1", (0.99, 0.03), xycoords=("data", "axes fraction"),
                ha="right", va="bottom", fontsize=9, color="0.25")
    ax.annotate("exploding possible:\nG > 1", (1.01, 0.97), xycoords=("data", "axes fraction"), ha="left",
                va="top", fontsize=9, color="0.25")
    if any_zero:
        ax.axhline(floor, color="0.7", lw=0.6)
        ax.annotate("below float32's range (g_0 stored as exact 0)", (0.01, floor), xycoords=("axes fraction", "data"),
                    fontsize=8, va="bottom", color="0.35")
    if any_over:
        ax.axhline(top / 3, color="0.7", lw=0.6)
        ax.annotate("overflow (inf or NaN in the forward pass or the gradient)", (0.01, top / 3),
                    xycoords=("axes fraction", "data"), fontsize=8, va="top", color="0.35")
    ax.set_xscale("log")
    ax.set_yscale("log")
    # Ticks at the grid's values, thinned where they would touch on a log axis.
    ticks = [g for i, g in enumerate(gains) if i == 0 or np.log(g / gains[i - 1]) > 0.07 or g == 1.0]
    ticks = [g for i, g in enumerate(ticks) if i + 1 == len(ticks) or g == 1.0 or np.log(ticks[i + 1] / g) > 0.07]
    ax.set_xticks(ticks, [f"{g:g}" for g in ticks])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_ylim(floor / 10 if any_zero else min(finite + [1.0]) / 10, top)
    ax.set(xlabel="recurrent gain G (--recurrent-gain; sigma_max(W) = G at init)",
           ylabel="g_0 / g_{T-1} = ||dL/dh_0|| / ||dL/dh_{T-1}|| at init (log)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(0, 0.93))
    fig.suptitle("Spectrum: one step back multiplies the gradient by diag(phi'(a_t)) W^T, of norm at most G",
                 fontsize=13, weight="bold")
    fig.get_layout_engine().set(rect=(0, 0.04, 1, 0.96))
    fig.text(0.01, 0.01, "What to look for: where each curve crosses ratio 1 (the boundary between vanishing and "
             "exploding); tanh stays below the linear line because phi' < 1 away from 0.", fontsize=9)
    return fig


#: Runs drawn on the carry-path page (one row each; the first seed of each group).
WHY_ROWS = 4


def _why_runs(v: View) -> list[int]:
    """Indices of the runs the why pages draw: the first seed of each group, at most WHY_ROWS."""
    return [idx[0] for _, idx in v.groups][:WHY_ROWS]


def _carry_panel(ax, r: Run, color) -> None:
    """Left panel of a run's row: its carry gate (gated) or phi' and sigma_max(W) (vanilla)."""
    cell = r.cfg.get("cell")
    steps = r.probes["steps"]
    gate = CARRY_GATE.get(cell)
    if gate and f"gate_{gate[0]}" in r.probes:
        g = r.probes[f"gate_{gate[0]}"][:, 0].astype(np.float64)  # (K, 4, T), bottom layer
        t = np.arange(g.shape[-1])
        for row, dash, when in ((0, "--", "init"), (-1, "-", f"step {int(steps[-1])}")):
            if row == -1 and g.shape[0] == 1:
                continue
            ax.fill_between(t, g[row, 1], g[row, 3], color=color, alpha=0.12 if row else 0.07, linewidth=0)
            ax.plot(t, g[row, 0], dash, color=color, lw=1.6 if row else 1.0,
                    label=f"{when}: mean {np.mean(g[row, 0]):.3f}")
        ax.set(ylim=(0, 1.02), ylabel=gate[1], xlabel="timestep t")
        ax.legend(fontsize=7, loc="lower right", title="band: 10th-90th percentile", title_fontsize=7)
    elif "sigma_w" in r.probes:
        sw = r.probes["sigma_w"][:, 0].astype(np.float64)
        ax.plot(steps, sw, "-", color=color, lw=1.6, label="sigma_max(W)")
        if "gate_dphi" in r.probes:
            dphi = r.probes["gate_dphi"][:, 0, 0].astype(np.float64).mean(axis=1)
            ax.plot(steps, dphi, "--", color=color, lw=1.2, label="mean phi'(a_t)")
            ax.plot(steps, sw * dphi, ":", color="0.2", lw=1.2, label="sigma_max(W) x mean phi'")
        ax.axhline(1.0, color="0.6", lw=0.8)
        ax.set(xlabel="training step", ylabel="per-step factor")
        ax.legend(fontsize=7, loc="best")
    else:
        # A custom cell's gates are its own: the probe sees only its states.
        why = ("a custom cell: seqvg does not know its gates;\nits per-step gain (right) and its\n"
               "step-Jacobian norm (Spectrum page) are measured" if is_custom_cell(r.cfg.get("cell", ""))
               else "no gate statistics in this run's probes.npz\n(recorded since seqvg.why)")
        ax.text(0.5, 0.5, why, ha="center", va="center", fontsize=8, color="0.4", transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])


def _gain_panel(ax, r: Run, color) -> None:
    """Right panel: per-step gain g_t = ||dL/ds_{t-1}|| / ||dL/ds_t|| at init and end."""
    from seqvg.why import geometric_mean, step_gain

    steps = r.probes["steps"]
    states = [("h", color, "h")] + ([("c", "0.35", "c")] if "c" in r.probes else [])
    for key, col, name in states:
        for row, dash, when in ((0, "--", "init"), (-1, "-", "end")):
            if row == -1 and steps.shape[0] == 1:
                continue
            g = step_gain(r.probes[key][row][0])
            t = np.arange(1, g.shape[0] + 1)
            shown = np.where(np.isfinite(g) & (g > 0), g, np.nan)
            gm = geometric_mean(g)
            ax.plot(t, shown, dash, color=col, lw=1.3 if row else 0.8,
                    label=f"{name} {when}: geo. mean {gm:.3g}" if gm is not None else f"{name} {when}")
    ax.axhline(1.0, color="0.5", lw=0.8)
    ax.set_yscale("log")
    # A short label: the definition (in the title) ran taller than a panel of a four-row page, into the next.
    ax.set(xlabel="timestep t", ylabel="gain g_t (log)")
    ax.legend(fontsize=7, loc="best")


def carry_page(fig, runs: list[Run]) -> None:
    """Why: the carry path. Per run, what multiplies the gradient at each step back."""
    v = view(runs)
    rows = _why_runs(v)
    axes = fig.subplots(len(rows), 2, squeeze=False)
    for (left, right), i in zip(axes, rows):
        r = v.runs[i]
        _carry_panel(left, r, v.colors[i])
        _gain_panel(right, r, v.colors[i])
        cell = r.cfg.get("cell")
        what = {"lstm": "forget gate f (c_t = f c_t-1 + i g)",
                "gru": "keep gate z (Keras: h_t = z h_t-1 + (1-z) h~_t)"}.get(
            cell, "its own gates" if is_custom_cell(cell or "") else
            "what bounds one step: sigma_max(W) and phi', over training")
        left.set_title(f"{v.labels[i].label}: {what}", fontsize=9)
        right.set_title(f"{v.labels[i].label}: per-step gain g_t = ||dL/ds_(t-1)|| / ||dL/ds_t||", fontsize=9)
        for ax in (left, right):
            ax.grid(alpha=0.3)
    more = len(v.groups) - len(rows)
    fig.suptitle("Why: the carry path (dashed = untrained, solid = end of training)"
                 + (f"\nfirst {len(rows)} of {len(v.groups)} groups, first seed of each" if more else ""),
                 fontsize=14, weight="bold")
    # A two-line title (first N of M groups) needs room above the first row's panel titles.
    fig.subplots_adjust(left=0.07, right=0.98, top=0.86 if more else 0.9, bottom=0.1, hspace=0.55, wspace=0.22)
    caption(fig, "a carry gate near 1 passes the gradient on almost unchanged (gain near 1 at every step); "
             "a vanilla RNN's gain is at most sigma_max(W) x max phi', and below 1 it compounds over T steps.")


def spectrum_page(fig, runs: list[Run]) -> None:
    """Spectrum: sigma_max(W) of vanilla cells and step-Jacobian norms over training."""
    v = view(runs)
    left, right = fig.subplots(1, 2)
    for i, r in enumerate(v.runs):
        if v.grouped and v.seed_index[i]:
            continue
        steps = r.probes["steps"]
        st = {"color": v.colors[i], "linestyle": STYLES[v.seed_index[i] % len(STYLES)]}
        if "sigma_w" in r.probes:
            left.plot(steps, r.probes["sigma_w"][:, 0], marker="o", ms=3, label=v.labels[i].label, **st)
        if "jac_sigma" in r.probes:
            jac = r.probes["jac_sigma"][:, 0].astype(np.float64)  # (K, J)
            right.plot(steps, jac.mean(axis=1), marker="o", ms=3, label=v.labels[i].label, **st)
            right.fill_between(steps, jac.min(axis=1), jac.max(axis=1), color=v.colors[i], alpha=0.1, linewidth=0)
    for ax in (left, right):
        ax.axhline(1.0, color="0.5", lw=0.8)
        ax.grid(alpha=0.3)
        ax.set_xlabel("training step")
        if ax.lines[1:]:
            ax.legend(fontsize=7, loc="best")
    if not any("sigma_w" in r.probes for r in v.runs):
        left.text(0.5, 0.5, "no vanilla cell among these runs", ha="center", va="center", color="0.4",
                  transform=left.transAxes)
    left.set(title="sigma_max(W) of each vanilla cell's recurrent matrix", ylabel="sigma_max(W)")
    right.set(title="step Jacobian ||ds_t/ds_{t-1}||_2, bottom layer\n(line: mean over 5 timesteps, band: min to max)",
              ylabel="spectral norm (mean over samples)")
    fig.suptitle("Spectrum: the norm of one step back, over training", fontsize=14, weight="bold")
    fig.subplots_adjust(left=0.07, right=0.98, top=0.86, bottom=0.12, wspace=0.22)
    caption(fig, "a step norm below 1 shrinks the gradient at every step back (vanishing), above 1 it can grow; "
             "gated cells hold it near 1 through their carry gate, a vanilla RNN through sigma_max(W).")


def gain_page(fig, runs: list[Run]) -> None:
    """Spectrum for runs that differ in --recurrent-gain: the init ratio g_0/g_{T-1} against G."""
    v = view(runs)
    lengths = sorted({int(r.probes["h"].shape[-1]) for r in runs})
    points = []
    for r, lab in zip(v.runs, v.labels):
        words = [w for w in lab.series.split() if not w.startswith("G=")] or [r.cfg["cell"]]
        h0 = r.probes["h"][0][0].astype(np.float64)
        ratio = float(h0[0] / h0[-1]) if np.isfinite(h0[[0, -1]]).all() and h0[-1] > 0 else None
        series = " ".join(words) + (f" T={h0.shape[0]}" if len(lengths) > 1 else "")
        points.append({"series": series, "gain": float(r.cfg.get("recurrent_gain", 1.0)), "ratio": ratio,
                       "seed": r.cfg.get("seed")})
    recurrent_gain_figure(points, lengths[-1], f"{len(runs)} runs at init (step 0)", fig=fig)


def why_pages(runs: list[Run]) -> list[tuple[str, object]]:
    """The why pages for these runs: the carry path, and the spectrum when any run
    recorded step-Jacobian norms."""
    from functools import partial

    out = [("Why: the carry path", partial(carry_page, runs=runs))]
    if len({r.cfg.get("recurrent_gain", 1.0) for r in runs}) > 1:
        out.append(("Spectrum", partial(gain_page, runs=runs)))
    elif any("jac_sigma" in r.probes for r in runs):
        out.append(("Spectrum", partial(spectrum_page, runs=runs)))
    return out
