"""Multi-page PDF report (and PNG figures) from run directories alone.

    seqvg report runs/demo/* -o reports/demo.pdf --png reports/demo-png

Pages: title, learning curves (with the task's baselines), gradient flow at
init and end, gradient flow over training (heatmaps on one shared colour
scale), the weight graph, and a summary table with a diagnosis per run.
The same inputs give a byte-identical PDF: the creation date is fixed and
taken from the runs themselves.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from seqvg.config import RunConfig, default_chrono
from seqvg.diagnose import diagnose
from seqvg.probe import decay_summary
from seqvg.rundir import Run, load_run
from seqvg.tasks import get_task

PAGE = (11.0, 8.5)  # US letter landscape, inches
GUIDE = """How to read this report
  Learning curves: validation loss against training step; the dotted line is the trivial baseline (a model with
      no memory), a star marks the step a run met the task's solved criterion.
  Gradient flow: ||dL/dh_t|| for every timestep t, measured through the recurrence in one backward pass. A line that
      falls to the left means the gradient vanishes before it reaches early inputs: those inputs cannot be learned.
  Gradient flow over training: the same curve at every probe, as colour; one colour scale for all runs.
  Weight graph: how much each layer's weights move between logged rows; a layer whose line is flat and low
      has stopped learning (the seeds' "weight graph" symptom). Summary: the figures and a diagnosis per run."""
STYLES = ["-", "--", "-.", ":"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
#: Where exact zeros (float32 underflow) are drawn on a log axis, relative to
#: the smallest positive value on the page.
FLOOR_FACTOR = 0.1


def remedies(cfg: dict) -> list[str]:
    """The options of a run that differ from its cell's defaults."""
    out = []
    if cfg.get("layers", 1) > 1:
        out.append(f"{cfg['layers']} layers")
    if cfg["cell"] == "rnn" and cfg.get("activation") not in (None, "tanh"):
        out.append(cfg["activation"])
    default_init = "identity" if cfg["cell"] == "irnn" else "orthogonal"
    if cfg.get("recurrent_init") not in (None, default_init):
        out.append(f"{cfg['recurrent_init']} init")
    if cfg.get("forget_bias") is not None:
        out.append(f"forget bias {cfg['forget_bias']:g}")
    elif gate_init(cfg) == "keras":
        out.append("keras gates")
    if cfg.get("chrono") is not None and cfg["chrono"] != default_chrono(RunConfig(**_fields(cfg))):
        out.append(f"chrono {cfg['chrono']}")
    if cfg.get("layer_norm"):
        out.append("layer norm")
    if cfg.get("batch_norm"):
        out.append("batch norm")
    if cfg.get("residual"):
        out.append("residual")
    if cfg.get("clip"):
        out.append(f"clip {cfg['clip']:g}")
    return out


def _fields(cfg: dict) -> dict:
    return {k: cfg[k] for k in ("task", "length") if k in cfg}


def gate_init(cfg: dict) -> str | None:
    """A run's gate initialisation: "chrono", "keras" or None (vanilla cell).

    Runs written before ``gate_init`` existed used Keras's biases unless
    they set --chrono.
    """
    if cfg["cell"] not in ("lstm", "gru"):
        return None
    return cfg.get("gate_init") or ("chrono" if cfg.get("chrono") is not None else "keras")


def gate_init_text(cfg: dict) -> str:
    """The gate initialisation as the title page shows it."""
    kind = gate_init(cfg)
    if kind is None:
        return "-"
    if kind == "chrono":
        return f"chrono {cfg.get('chrono')}"
    return "keras" + (f", forget bias {cfg['forget_bias']:g}" if cfg.get("forget_bias") is not None else "")


def run_label(run: Run) -> str:
    """Short legend label: cell, its remedies, seed."""
    return " ".join([run.cfg["cell"], *remedies(run.cfg), f"s{run.cfg['seed']}"])


def _style(i: int, n: int = 10) -> dict:
    """Colour and line style of run ``i`` of ``n``: distinct colours for up to
    20 runs (tab20 past the default cycle's 10), line styles for greyscale."""
    import matplotlib.pyplot as plt

    if n > 10:
        colors = [plt.get_cmap("tab20")(k) for k in range(20)]
    else:
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return {"color": colors[i % len(colors)], "linestyle": STYLES[i % len(STYLES)]}


def _floor(arrays: list[np.ndarray]) -> float:
    positive = [a[(a > 0) & np.isfinite(a)] for a in arrays]
    positive = [p for p in positive if p.size]
    if not positive:
        return 1e-45
    return float(min(p.min() for p in positive)) * FLOOR_FACTOR


def _plot_norms(ax, g: np.ndarray, floor: float, label: str | None, style: dict, width: float) -> None:
    """A gradient curve on a log axis; exact zeros drawn at ``floor`` as x."""
    t = np.arange(g.shape[0])
    shown = np.where(g > 0, g, np.nan)
    ax.plot(t, shown, label=label, linewidth=width, **style)
    zero = g == 0
    if zero.any():
        ax.plot(t[zero], np.full(zero.sum(), floor), "x", color=style["color"], markersize=4)


def _title_page(fig, runs: list[Run]) -> None:
    cfgs = [r.cfg for r in runs]
    tasks = sorted({f"{c['task']} T={c['length']}" for c in cfgs})
    created = max((r.config.get("created") or "") for r in runs) or "unknown"
    fig.text(0.05, 0.93, "seqvg report: gradient flow in recurrent networks", fontsize=18, weight="bold")
    fig.text(0.05, 0.885, f"task: {', '.join(tasks)}    runs: {len(runs)}    cells: "
             f"{', '.join(sorted({c['cell'] for c in cfgs}))}", fontsize=11)
    v = runs[0].config.get("versions", {})
    fig.text(0.05, 0.855, "versions: " + ", ".join(f"{k} {v[k]}" for k in sorted(v))
             + f"    device: {runs[0].config.get('device', '?')}    newest run: {created}", fontsize=8.5)
    cols = ["run", "cell", "units", "layers", "optimizer", "lr", "batch", "steps", "clip", "gate init", "remedies",
            "status"]
    rows = []
    for r in runs:
        c = r.cfg
        rows.append([r.name[:28], c["cell"], c["units"], c["layers"], c["optimizer"], f"{c['lr']:g}",
                     c["batch_size"], r.summary.get("steps_done", "?"), f"{c['clip']:g}" if c["clip"] else "off",
                     gate_init_text(c), ", ".join(remedies(c)) or "-",
                     r.summary["status"]])
    ax = fig.add_axes([0.05, 0.45, 0.9, 0.36])
    ax.axis("off")
    shown = rows[:12]
    table = ax.table(cellText=shown, colLabels=cols, loc="upper left", cellLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.auto_set_column_width(list(range(len(cols))))
    if len(rows) > len(shown):
        ax.text(0, 0, f"... and {len(rows) - len(shown)} more runs", fontsize=8, transform=ax.transAxes)
    fig.text(0.05, 0.40, GUIDE, fontsize=9, va="top", linespacing=1.5)
    fig.text(0.05, 0.03, "Commands: " + "; ".join(sorted({str(r.config.get('command')) for r in runs}))[:180],
             fontsize=7, color="0.3")


def _curves_page(fig, runs: list[Run]) -> None:
    ax_loss, ax_metric = fig.subplots(1, 2)
    task = get_task(runs[0].cfg["task"])
    lengths = sorted({r.cfg["length"] for r in runs})
    for i, r in enumerate(runs):
        st = _style(i, len(runs))
        steps = np.array([row["step"] for row in r.metrics])
        val = np.array([row["val_loss"] for row in r.metrics])
        vm = np.array([row["val_metric"] for row in r.metrics])
        ok = np.isfinite(val)
        ax_loss.plot(steps[ok], val[ok], label=run_label(r), **st, linewidth=1.6)
        ax_metric.plot(steps[ok], vm[ok], label=run_label(r), **st, linewidth=1.6)
        solved = r.summary.get("solved_at_step")
        if solved is not None:
            k = int(np.nonzero(steps == solved)[0][0]) if (steps == solved).any() else -1
            for ax, ys in ((ax_loss, val), (ax_metric, vm)):
                ax.plot([solved], [ys[k]], marker="*", markersize=13, color=st["color"], markeredgecolor="k",
                        linestyle="none")
    for length in lengths:
        base = task.baseline(length)
        ax_loss.axhline(base, color="0.25", linestyle=(0, (1, 1)), linewidth=1.2)
        ax_loss.annotate(f"trivial baseline {base:.3g}", (0.01, base), xycoords=("axes fraction", "data"),
                         va="bottom", fontsize=8, color="0.25")
        plateau = task.partial_plateau(length)
        if plateau is not None:
            ax_loss.axhline(plateau, color="0.45", linestyle=(0, (4, 2, 1, 2)), linewidth=1)
            ax_loss.annotate("1/12: only the near marker", (0.01, plateau), xycoords=("axes fraction", "data"),
                             va="bottom", fontsize=8, color="0.45")
    if task.name == "adding":
        ax_metric.axhline(task.threshold, color="green", linestyle=(0, (2, 2)), linewidth=1)
        ax_metric.annotate(f"solved: val MSE < {task.threshold:g}", (0.99, task.threshold),
                           xycoords=("axes fraction", "data"), ha="right", va="bottom", fontsize=8, color="green")
        ax_metric.set_yscale("log")
    else:
        ax_metric.axhline(task.threshold, color="green", linestyle=(0, (2, 2)), linewidth=1)
        ax_metric.set_ylim(-0.02, 1.02)
    ax_loss.set_yscale("log")
    ax_loss.set(xlabel="training step", ylabel="validation loss (log)", title="Validation loss")
    ax_metric.set(xlabel="training step", ylabel=f"validation {task.metric_name}",
                  title=f"Validation {task.metric_name}  (star = solved)")
    for ax in (ax_loss, ax_metric):
        ax.grid(True, which="major", alpha=0.3)
    _legend(fig, ax_loss, len(runs))
    fig.suptitle("Learning curves", fontsize=14, weight="bold")


def _legend(fig, ax, n: int) -> None:
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(4, max(1, n)), fontsize=8, frameon=False)
    fig.subplots_adjust(bottom=0.12 + 0.03 * ((n - 1) // 4), top=0.88, wspace=0.25)


def _gradient_page(fig, runs: list[Run]) -> None:
    has_c = any("c" in r.probes for r in runs)
    axes = fig.subplots(1, 2 if has_c else 1, squeeze=False)[0]
    curves = [("h", axes[0], "hidden state  ||dL/dh_t||")]
    if has_c:
        curves.append(("c", axes[1], "LSTM cell state  ||dL/dc_t||"))
    for key, ax, title in curves:
        arrays = [r.probes[key][i][0] for r in runs if key in r.probes for i in (0, -1)]
        floor = _floor(arrays)
        any_zero = False
        for i, r in enumerate(runs):
            if key not in r.probes:
                continue
            st = _style(i, len(runs))
            init, final = r.probes[key][0][0], r.probes[key][-1][0]
            any_zero |= bool((init == 0).any() or (final == 0).any())
            _plot_norms(ax, init, floor, f"{run_label(r)} init", {**st, "linestyle": "--"}, 1.0)
            if r.probes[key].shape[0] > 1:
                _plot_norms(ax, final, floor, f"{run_label(r)} step {int(r.probes['steps'][-1])}",
                            {**st, "linestyle": "-"}, 1.8)
        ax.set_yscale("log")
        if any_zero:
            ax.axhline(floor, color="0.5", linewidth=0.6)
            ax.annotate("x = underflow to 0", (0.99, floor), xycoords=("axes fraction", "data"), ha="right",
                        va="bottom", fontsize=8, color="0.3")
        ax.set(xlabel="timestep t (the loss is read at the end)", ylabel="gradient norm (log)", title=title)
        ax.grid(True, which="major", alpha=0.3)
    _legend(fig, axes[0], 2 * len(runs))
    fig.suptitle("Gradient flow back through time: dashed = untrained, solid = end of training",
                 fontsize=13, weight="bold")


def _heatmap_page(fig, runs: list[Run]) -> None:
    import matplotlib as mpl

    logs = []
    for r in runs:
        h = r.probes["h"][:, 0, :].astype(np.float64)
        with np.errstate(divide="ignore"):
            logs.append(np.where(h > 0, np.log10(np.where(h > 0, h, 1.0)), np.nan))
    finite = np.concatenate([g[np.isfinite(g)] for g in logs]) if logs else np.array([0.0])
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (-1.0, 0.0)
    n = len(runs)
    cols = min(3, n)
    rows = math.ceil(n / cols)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    cmap = mpl.colormaps["viridis"].with_extremes(bad="magenta")
    image = None
    for ax, r, g in zip(axes, runs, logs):
        steps = r.probes["steps"]
        length = g.shape[1]
        image = ax.imshow(np.ma.masked_invalid(g), aspect="auto", origin="lower", cmap=cmap, vmin=vmin,
                          vmax=vmax, interpolation="nearest", extent=(-0.5, length - 0.5, -0.5, len(steps) - 0.5))
        ticks = np.unique(np.linspace(0, len(steps) - 1, min(6, len(steps))).round().astype(int))
        ax.set_yticks(ticks, [str(int(steps[t])) for t in ticks], fontsize=7)
        ax.set_title(run_label(r), fontsize=9)
        ax.set_xlabel("timestep t", fontsize=8)
        ax.set_ylabel("training step", fontsize=8)
    for ax in axes[n:]:
        ax.axis("off")
    if image is not None:
        bar = fig.colorbar(image, ax=list(axes[:n]), shrink=0.85)
        bar.set_label("log10 ||dL/dh_t||  (magenta = underflow to 0)")
    fig.suptitle("Gradient flow over training (one colour scale for all runs)", fontsize=13, weight="bold")


def _weights_page(fig, runs: list[Run]) -> None:
    ax_w, ax_g = fig.subplots(1, 2)
    marker_runs = len(runs) > 1
    for i, r in enumerate(runs):
        st = _style(i, len(runs))
        steps = np.array([row["step"] for row in r.metrics])
        layer_cols = [c for c in r.columns if c.startswith("weight_change/")]
        for j, col in enumerate(layer_cols):
            v = np.array([row[col] for row in r.metrics])
            ok = np.isfinite(v) & (v > 0)
            label = f"{run_label(r)}: {col.split('/', 1)[1]}"
            ax_w.plot(steps[ok], v[ok], label=label, color=st["color"], linestyle=STYLES[j % len(STYLES)],
                      marker=MARKERS[i % len(MARKERS)] if marker_runs else None, markersize=3, linewidth=1.2)
        g = np.array([row["grad_norm"] for row in r.metrics])
        ok = np.isfinite(g) & (g > 0)
        ax_g.plot(steps[ok], g[ok], label=run_label(r), linewidth=1.4, **st)
    ax_w.set_yscale("log")
    ax_g.set_yscale("log")
    ax_w.set(xlabel="training step", ylabel="relative weight change per logged row (log)",
             title="Weight graph: ||W_now - W_prev|| / ||W_prev|| per layer")
    ax_g.set(xlabel="training step", ylabel="global gradient norm (log)",
             title="Global gradient norm (mean per row, before clipping)")
    for ax in (ax_w, ax_g):
        ax.grid(True, which="major", alpha=0.3)
    ax_w.legend(fontsize=7, loc="upper right", ncol=1 if len(runs) < 4 else 2)
    ax_g.legend(fontsize=7, loc="upper right")
    fig.suptitle("Weight graph: flat, low lines for a layer = it stopped learning", fontsize=13, weight="bold")
    fig.subplots_adjust(wspace=0.25)


def summary_columns(metric_name: str) -> list[str]:
    """Column names of ``summary_rows``."""
    return ["run", "status", "solved?", "solved at", f"val {metric_name}", "decay init", "horizon init",
            "decay end", "horizon end"]


def summary_rows(runs: list[Run]) -> list[list[str]]:
    """The summary table: one row per run."""

    def f(v, fmt="{:.3g}"):
        return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else fmt.format(v)

    rows = []
    for r in runs:
        s = r.summary
        init = decay_summary(r.probes["h"][0][0])
        end = decay_summary(r.probes["h"][-1][0])
        final = s.get("final") or {}
        rows.append([
            run_label(r), s["status"], "yes" if s.get("solved") else "no", f(s.get("solved_at_step"), "{}"),
            f(final.get("val_metric"), "{:.4g}"), f(init["rate_per_100"], "{:+.2f}"), f(init["horizon"], "{}"),
            f(end["rate_per_100"], "{:+.2f}"), f(end["horizon"], "{}"),
        ])
    return rows


def _summary_page(fig, runs: list[Run]) -> None:
    task = get_task(runs[0].cfg["task"])
    cols = summary_columns(task.metric_name)
    ax = fig.add_axes([0.04, 0.55, 0.92, 0.36])
    ax.axis("off")
    table = ax.table(cellText=summary_rows(runs)[:14], colLabels=cols, loc="upper center", cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(8.5)
    table.auto_set_column_width(list(range(len(cols))))
    table.scale(1, 1.3)
    fig.text(0.04, 0.935, "decay: decades per 100 steps back in time (negative = vanishing); "
             "horizon: steps back until ||dL/dh_t|| < 1e-3 of the last step's", fontsize=8.5, color="0.3")
    lines = []
    for r in runs[:8]:
        lines.append(f"{run_label(r)}:")
        lines += [f"   - {v.text}" for v in diagnose(r)]
    if len(runs) > 8:
        lines.append(f"... {len(runs) - 8} more runs: see seqvg diagnose RUN_DIR")
    fig.text(0.04, 0.52, "Diagnosis", fontsize=12, weight="bold")
    fig.text(0.04, 0.50, "\n".join(lines), fontsize=7.5 if len(lines) < 30 else 6, va="top", family="monospace",
             wrap=True)
    fig.suptitle("Summary", fontsize=14, weight="bold")


PAGES = [
    ("Title", _title_page),
    ("Learning curves", _curves_page),
    ("Gradient flow", _gradient_page),
    ("Gradient flow over training", _heatmap_page),
    ("Weight graph", _weights_page),
    ("Summary", _summary_page),
]


def make_report(run_dirs: list, out: str | Path, png_dir: str | Path | None = None) -> list:
    """Writes the PDF (and optionally one PNG per page); returns the figures' titles.

    Raises:
        RunDirError: a run directory is missing or corrupt (names the file).
    """
    return write_report([load_run(Path(p)) for p in run_dirs], out, png_dir)


def write_report(runs: list[Run], out: str | Path, png_dir: str | Path | None = None,
                 extra_figures: list | None = None) -> list:
    """``make_report`` for runs already loaded with ``load_run``.

    ``extra_figures``: (title, matplotlib Figure) pages appended at the end.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    from seqvg.rundir import atomic_write_bytes

    out = Path(out)
    if png_dir is not None:
        Path(png_dir).mkdir(parents=True, exist_ok=True)
    import io

    buf = io.BytesIO()
    titles = []
    # A fixed date keeps the PDF byte-identical for the same inputs.
    metadata = {"Title": "seqvg report", "Creator": "seqvg", "Producer": "seqvg", "CreationDate": None}
    with plt.rc_context({"font.size": 9, "axes.titlesize": 10, "svg.hashsalt": "seqvg"}), \
            PdfPages(buf, metadata=metadata) as pdf:
        for i, (title, draw) in enumerate(PAGES, start=1):
            fig = plt.figure(figsize=PAGE)
            draw(fig, runs)
            titles.append(title)
            pdf.savefig(fig)
            if png_dir is not None:
                fig.savefig(Path(png_dir) / f"{i:02d}-{title.lower().replace(' ', '-')}.png", dpi=100,
                            metadata={"Software": None})
            plt.close(fig)
        for title, fig in extra_figures or []:
            titles.append(title)
            pdf.savefig(fig)
            plt.close(fig)
    atomic_write_bytes(out, buf.getvalue())
    return titles
