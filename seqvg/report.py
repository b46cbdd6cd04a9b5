"""Multi-page PDF report (and PNG figures) from run directories alone.

    seqvg report runs/demo/* -o reports/demo.pdf --png reports/demo-png

Pages, in the order of the story: the title page (the outcome per run or
group, three findings computed from the runs, the pages that follow, the
commands that made the runs); a study page when the runs differ by more
than their seed (outcome and gradient decay rate against what varies, every
seed a point); learning curves (with the task's baselines), gradient flow
at init and end, why it flows (carry gates, per-step gain, the spectrum;
seqvg.why), gradient flow over training (heatmaps on one shared colour
scale), the weight graph, and the summary table with each run's diagnosis
in words (on further pages when it does not fit). Every page ends with a
"What to look for" caption, with the runs' numbers where it states any.
Every run is named by the options that tell it apart from the others
("T=25 s0", "rnn clip=1 s0", see seqvg.labels) and drawn in a colour that
means something: one hue per cell or variant, light to dark along a varied
length or size. With more than a handful of runs the seeds of each group
are drawn as a median with a band, and appendix pages show every run on its
own.
The same runs give a byte-identical PDF, whatever their order on the command
line: the creation date is fixed and taken from the runs themselves.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seqvg.config import RunConfig, default_chrono
from seqvg.decay import decay_summary
from seqvg.diagnose import format_diagnosis
from seqvg.execpath import recorded
from seqvg.labels import RunLabel, axis_name, run_labels, sort_order
from seqvg.rundir import Run, load_run
from seqvg.tasks import get_task

PAGE = (11.0, 8.5)  # US letter landscape, inches
STYLES = ["-", "--", "-.", ":"]
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
    if cfg.get("recurrent_gain", 1.0) != 1.0:
        out.append(f"recurrent gain {cfg['recurrent_gain']:g}")
    if cfg.get("forget_bias") is not None:
        out.append(f"forget bias {cfg['forget_bias']:g}")
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


def _run_handles(v: View, seeds_by: str = "style") -> tuple[list, list]:
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


def _band_alpha(v: View) -> float:
    """Bands of many groups overlap: fainter the more there are."""
    return 0.18 if len(v.groups) <= 4 else 0.07


def _draw_runs(ax, v: View, xy, width: float = 1.6, linestyle: str | None = None, log: bool = False,
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
                    linestyle=linestyle or STYLES[v.seed_index[i] % len(STYLES)])
        return
    for name, idx in v.groups:
        got = [clean(*s) for s in (xy(v.runs[i]) for i in idx) if s is not None]
        if not got:
            continue
        xs, med, lo, hi = _median_band(got)
        ok = np.isfinite(med)
        color = v.colors[idx[0]]
        ax.plot(xs[ok], med[ok], color=color, linewidth=width, linestyle=linestyle or "-", label=name + suffix)
        if band and len(got) > 1:
            ax.fill_between(xs[ok], lo[ok], hi[ok], color=color, alpha=_band_alpha(v), linewidth=0)


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
    """What a reader needs first: the outcome per run, the findings in words,
    the pages that follow and the commands that made the runs."""
    import textwrap

    v = view(runs)
    cfgs = [r.cfg for r in v.runs]
    tasks = list(dict.fromkeys(f"{c['task']} T={c['length']}" for c in sorted(cfgs, key=lambda c: c["length"])))
    created = max((r.config.get("created") or "") for r in runs) or "unknown"
    fig.text(0.05, 0.95, "seqvg report: gradient flow in recurrent networks", fontsize=18, weight="bold", va="top")
    fig.text(0.05, 0.905, f"task: {', '.join(tasks)}    runs: {len(runs)}    cells: "
             f"{', '.join(dict.fromkeys(c['cell'] for c in cfgs))}", fontsize=11, va="top")
    fig.text(0.05, 0.878, "settings: " + common_settings(cfgs), fontsize=9, va="top")
    versions = runs[0].config.get("versions", {})
    fig.text(0.05, 0.857, "versions: " + ", ".join(f"{k} {versions[k]}" for k in sorted(versions))
             + f"    device: {runs[0].config.get('device', '?')}    newest run: {created}", fontsize=8, va="top",
             color="0.3")
    paths = dict.fromkeys(p.describe() for p in map(recorded, (r.config for r in runs)) if p is not None)
    if paths:
        fig.text(0.05, 0.842, "execution path: " + "; ".join(paths), fontsize=8, va="top", color="0.3")
    task = get_task(v.runs[0].cfg["task"])
    fig.text(0.05, 0.825, "Outcome", fontsize=12, weight="bold", va="top")
    rows = outcome_rows(runs)
    shown = rows[:TITLE_ROWS]
    what = "group" if v.grouped else "run"
    y = _table(fig, 0.795, outcome_columns(task.metric_name), shown, fontsize=8.5)
    note = ("decay: the gradient's decay rate, decades per 100 steps back (negative = vanishing), fitted to "
            "||dL/dh_t||" + ("; a group's numbers: medians over its seeds" if v.grouped else ""))
    if len(rows) > len(shown):
        more = len(rows) - len(shown)
        note = f"... and {more} more {what}{'s' if more > 1 else ''} (every run is in the Summary).  " + note
    fig.text(0.05, y - 0.012, note, fontsize=8, color="0.3", va="top")
    y -= 0.05
    fig.text(0.05, y, "Findings", fontsize=12, weight="bold", va="top")
    y -= 0.03
    for k, text in enumerate(findings(runs), start=1):
        wrapped = textwrap.fill(text, 138, initial_indent=f"{k}. ", subsequent_indent="    ")
        fig.text(0.05, y, wrapped, fontsize=10, va="top", linespacing=1.4)
        y -= 0.025 * (wrapped.count("\n") + 1) + 0.012
    titles = [title for title, _ in pages(runs)]
    listed = [(f"{n}. {title}", PAGE_GUIDE.get(_guide_key(title)))
              for n, title in enumerate(titles, start=1) if n > 1 and not title.startswith("Appendix")]
    appendix = sum(title.startswith("Appendix") for title in titles)
    if appendix:
        listed.append((f"{len(titles) - appendix + 1}-{len(titles)}. Appendix", "every run on its own"))
    commands = sorted({r.config.get("command") or train_command(r.cfg) for r in runs})
    lines = [c if len(c) <= 190 else c[:187] + "..." for c in commands[:3]]
    if len(commands) > 3:
        lines.append(f"... and {len(commands) - 3} more")
    fig.text(0.05, 0.06, "Commands that made these runs:\n" + "\n".join(lines), fontsize=7.5, color="0.3",
             va="bottom")
    # The list of pages fits between the findings and the commands: a line
    # per page, else the titles only, else (a long outcome table) not at all.
    floor = 0.06 + 0.0165 * (len(lines) + 1) + 0.01
    story = [name + (f": {what}" if what else "") for name, what in listed]
    if y - 0.04 - 0.0215 * len(story) < floor:
        story = textwrap.wrap("  |  ".join(name.replace(" ", "\u00a0") for name, _ in listed), 160)
    if y - 0.04 - 0.0215 * len(story) >= floor:
        fig.text(0.05, y - 0.01, "The pages that follow", fontsize=12, weight="bold", va="top")
        fig.text(0.05, y - 0.04, "\n".join(story), fontsize=9, va="top", linespacing=1.45)
    _caption(fig, "which runs solved the task (outcome) and how fast their gradient decays; the pages that follow "
             "show the gradient flow behind each outcome and why it flows (or does not).")


#: Outcome rows on the title page (the rest are in the Summary).
TITLE_ROWS = 8
#: One line per page for the title page's list of what follows.
PAGE_GUIDE = {
    "Study": "the outcome and the gradient's decay rate against what varies, every seed a point",
    "Learning curves": "validation loss and metric over training; dotted = trivial baseline (no memory), "
                       "star = solved",
    "Gradient flow": "||dL/dh_t|| at every timestep t, untrained and trained: a line falling to the left = "
                     "the gradient vanishes",
    "Why: the carry path": "what multiplies the gradient per step back: the carry gate (LSTM forget, GRU keep) "
                           "or sigma_max(W) and phi'",
    "Spectrum": "the norm of one step back (the step Jacobian), or the init gradient ratio against "
                "--recurrent-gain",
    "Gradient flow over training": "the gradient-flow curve at every probe, as colour, one scale for all runs",
    "Weight graph": "how much each layer's weights move; a flat, low line = the layer stopped learning",
    "Summary": "decay rates and horizons per run, the run directories, and the diagnosis in words",
    "Diagnosis": "per run: what went wrong (or right), why, and the commands to try next",
}


def _guide_key(title: str) -> str:
    """A page title without its part number ("Summary 2" -> "Summary")."""
    return re.sub(r" \d+$", "", title)


def _table(fig, top: float, cols: list[str], rows: list[list], fontsize: float = 8, left: float = 0.05,
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


def common_settings(cfgs: list[dict]) -> str:
    """The training settings as one line: a value when every run shares it,
    "varies" otherwise (the run labels say how)."""
    parts = []
    for key, name in (("units", "units"), ("layers", "layers"), ("optimizer", "optimizer"), ("lr", "lr"),
                      ("batch_size", "batch"), ("steps", "steps"), ("clip", "clip")):
        values = {c.get(key) for c in cfgs}
        if len(values) > 1:
            parts.append(f"{name} varies")
            continue
        value = values.pop()
        if key == "clip":
            parts.append(f"clip {value:g}" if value else "no clipping")
        elif key == "steps":
            parts.append(f"up to {value} steps")
        else:
            parts.append(f"{name} {value:g}" if isinstance(value, float) else f"{name} {value}")
    return ", ".join(parts)


def outcome_columns(metric_name: str) -> list[str]:
    """Column names of ``outcome_rows``."""
    return ["run", "cell", "remedies, gate init", "outcome", f"val {metric_name}", "val loss / trivial baseline",
            "decay at init", "decay at end"]


def _outcome(r: Run) -> str:
    s = r.summary
    if s.get("solved"):
        return f"solved at step {s['solved_at_step']}"
    if s["status"] == "diverged":
        return f"diverged at step {s.get('diverged_at_step', '?')}"
    if s["status"] == "completed":
        return f"not solved in {s.get('steps_done', '?')} steps"
    reached = max([s.get("steps_done") or 0] + [row["step"] for row in r.metrics])
    return f"{s['status']} at step {reached}"


def _number(value, fmt: str = "{:.3g}") -> str:
    return "-" if value is None or (isinstance(value, float) and not math.isfinite(value)) else fmt.format(value)


def outcome_rows(runs: list[Run], by_group: bool | None = None) -> list[list[str]]:
    """The title page's outcome table in report order: one row per run or,
    ``by_group`` (default: when the report summarises seeds), one per group
    with its seeds' medians and how many solved."""
    v = view(runs)
    by_group = v.grouped if by_group is None else by_group
    members = [(name, [v.runs[i] for i in idx]) for name, idx in v.groups] if by_group else \
        [(lab.label, [r]) for r, lab in zip(v.runs, v.labels)]
    rows = []
    for name, rs in members:
        c = rs[0].cfg
        gates = gate_init_text(c)
        finals = [r.summary.get("final") or {} for r in rs]
        metric = _median([f.get("val_metric") for f in finals])
        loss = _median([f.get("val_loss") for f in finals])
        init = _median([decay_summary(r.probes["h"][0][0])["rate_per_100"] for r in rs])
        end = _median([decay_summary(r.probes["h"][-1][0])["rate_per_100"] for r in rs if r.probes["h"].shape[0] > 1])
        if len(rs) == 1:
            outcome = _outcome(rs[0])
        else:
            at = [r.summary["solved_at_step"] for r in rs if r.summary.get("solved")]
            outcome = f"{len(at)}/{len(rs)} solved" + (f", median step {_median(at):.0f}" if at else "")
            name = f"{name} ({len(rs)} seeds)"
        rows.append([name, c["cell"], ", ".join(remedies(c) + ([f"gates: {gates}"] if gates != "-" else [])) or "-",
                     outcome, _number(metric, "{:.4g}"), f"{_number(loss)} / {get_task(c['task']).baseline(c['length']):.3g}",
                     _number(init, "{:+.2f}"), _number(end, "{:+.2f}")])
    return rows


#: Groups a finding names one by one; the rest are counted.
FINDING_NAMES = 4
#: An unsolved run whose final val loss is at least this fraction of the
#: trivial baseline has learned nothing long-range (diagnose's "flat" is
#: within 10% either side).
MEMORYLESS = 0.9


def _listed(phrases: list[str], limit: int = FINDING_NAMES) -> str:
    more = len(phrases) - limit
    return ", ".join(phrases[:limit]) + (f" and {more} more" if more > 0 else "")


def _median(values: list) -> float | None:
    values = [x for x in values if x is not None and math.isfinite(x)]
    return float(np.median(values)) if values else None


def _carry_factor(r: Run, row: int) -> tuple[str, float] | None:
    """What carries the gradient per step back at probe ``row``: the carry
    gate's 90th percentile over batch and units, averaged over timesteps
    (gated cells), or sigma_max(W) x mean phi' (vanilla), bottom layer."""
    p = r.probes
    gate = CARRY_GATE.get(r.cfg.get("cell"))
    if gate and f"gate_{gate[0]}" in p:
        # The 90th percentile (STATS index 3): the units that carry the state.
        return f"{gate[0]} gate p90", float(np.mean(p[f"gate_{gate[0]}"][row, 0, 3]))
    if "sigma_w" in p and "gate_dphi" in p:
        return "sigma_max(W) x mean phi'", float(p["sigma_w"][row, 0]) * float(np.mean(p["gate_dphi"][row, 0, 0]))
    return None


def _baseline(r: Run) -> float:
    """The trivial baseline loss of a run's task and length."""
    return get_task(r.cfg["task"]).baseline(r.cfg["length"])


def findings(runs: list[Run]) -> list[str]:
    """The report's three main findings in words, from the runs' numbers:
    the outcome, the gradient flow behind it, and what carries (or loses) the
    gradient at each step back."""
    from seqvg.why import geometric_mean, step_gain

    v = view(runs)
    task = get_task(v.runs[0].cfg["task"])
    criterion = f"val {task.metric_name} {'>=' if task.higher_is_better else '<'} {task.threshold:g}"
    lengths = sorted({r.cfg["length"] for r in v.runs})
    solved_runs = [r for r in v.runs if r.summary.get("solved")]
    won, lost, memoryless = [], [], 0
    for name, idx in v.groups:
        members = [v.runs[i] for i in idx]
        ok = [r.summary["solved_at_step"] for r in members if r.summary.get("solved")]
        if len(members) == 1 and ok:
            won.append(f"{name} at step {ok[0]}")
        elif ok:
            won.append(f"{name} {len(ok)}/{len(members)} seeds (median step {_median(ok):.0f})")
        left = [r for r in members if not r.summary.get("solved")]
        # Near or above the trivial baseline: the run learned nothing long-range.
        flat = [r for r in left if ((r.summary.get("final") or {}).get("val_loss") or math.inf)
                >= MEMORYLESS * _baseline(r)]
        memoryless += len(flat)
        if left:
            loss = _median([(r.summary.get("final") or {}).get("val_loss") for r in left])
            lost.append((loss is None or loss >= MEMORYLESS * _baseline(members[0]),
                         f"{name} {_number(loss)}" + (f" (median of {len(left)})" if len(left) > 1 else "")))
    bases = sorted({round(_baseline(r), 12) for r in v.runs})
    tasks = list(dict.fromkeys(r.cfg["task"] for r in v.runs))
    solved_what = (f"{task.name} at T={', '.join(map(str, lengths))} ({criterion})" if len(tasks) == 1 else
                   f"their task ({', '.join(tasks)})")
    first = (f"{len(solved_runs)} of {len(v.runs)} runs solved {solved_what}"
             + (f": {_listed(won)}." if won else "."))
    if lost:
        lost.sort(key=lambda item: not item[0])
        unsolved_n = len(v.runs) - len(solved_runs)
        base_text = f"the trivial baseline (val loss {', '.join(f'{b:.3g}' for b in bases)}: a model with no memory)"
        if memoryless:
            first += (f" Of the {unsolved_n} unsolved, {memoryless} ended at or above {MEMORYLESS:.0%} of {base_text} "
                      "and learned nothing long-range.")
        else:
            first += f" The {unsolved_n} unsolved ended below {base_text}: they learned part of the task."
        first += f" Final val loss: {_listed([text for _, text in lost])}."

    def rates(r: Run) -> tuple:
        h = r.probes["h"]
        init = decay_summary(h[0][0])
        end = decay_summary(h[-1][0]) if h.shape[0] > 1 else None
        return init, end, int(h.shape[-1])

    unsolved = [r for r in v.runs if not r.summary.get("solved")]
    trained = [r for r in v.runs if r.probes["h"].shape[0] > 1]
    if solved_runs and unsolved and trained:
        parts, short = [], {}
        for what, group in (("solved", solved_runs), ("unsolved", unsolved)):
            ends = [rates(r) for r in group if r.probes["h"].shape[0] > 1]
            rate = _median([e["rate_per_100"] for _, e, _ in ends])
            reach = [100 * (e["horizon"] or 0) / t for _, e, t in ends]
            short[what] = min(reach, default=100) < 100
            where = ("the whole sequence" if not short[what] else
                     f"{min(reach):.0f}% of the sequence" if min(reach) == max(reach) else
                     f"{min(reach):.0f}-{max(reach):.0f}% of the sequence")
            parts.append(f"{what} runs {_number(rate, '{:+.2f}')} decades per 100 steps back (median), "
                         f"reaching {where}")
        second = "The gradient at the end of training: " + "; ".join(parts) + ". "
        second += ("In some unsolved runs it falls below 1e-3 of the last step's before it reaches the first "
                   "inputs, which then send no learning signal." if short["unsolved"] else
                   "It reaches the first inputs in every unsolved run, so a vanishing gradient is not what held "
                   "them back (the diagnosis says what did).")
    else:
        changes = []
        for name, idx in v.groups:
            init, end, t = rates(v.runs[idx[0]])
            if end is not None:
                changes.append((name, init["rate_per_100"], end["rate_per_100"], end["horizon"], t))
            else:
                changes.append((name, init["rate_per_100"], None, init["horizon"], t))
        changes.sort(key=lambda c: -1e9 if c[1] is None else c[1])
        phrases = [f"{n} {_number(a, '{:+.2f}')}" + (f" -> {_number(b, '{:+.2f}')}" if trained else "")
                   + (f" (reaches only {h or 0} of {t} steps)" if (h or 0) < t else "") for n, a, b, h, t in changes]
        second = ("Gradient decay, decades per 100 steps back" + (" at init -> at the end" if trained else " at init")
                  + f", fastest first: {_listed(phrases)}.")
    why = []
    for name, idx in v.groups:
        r = v.runs[idx[0]]
        rows = [0, -1] if r.probes["h"].shape[0] > 1 else [0]
        gains = [geometric_mean(step_gain(r.probes["h"][row][0])) for row in rows]
        if gains[0] is None:
            continue
        steps = int(r.probes["h"].shape[-1]) - 1
        gains = [x if x is not None else math.nan for x in gains]
        text = (f"{name} {' -> '.join(f'{x:.3f}' for x in gains)} "
                f"({' -> '.join(f'{x ** steps:.1g}' for x in gains)} over {steps} steps)")
        mechanism = [_carry_factor(r, row) for row in rows]
        if mechanism[0] is not None:
            what = mechanism[0][0]
            values = [m[1] if m is not None else math.nan for m in mechanism]
            text += f", {what} {' -> '.join(f'{x:.2f}' for x in values)}"
        why.append(text)
    third = ("What one step back multiplies ||dL/dh|| by, measured (geometric mean of "
             "||dL/dh_(t-1)|| / ||dL/dh_t|| over the sequence)" + (", at init -> at the end" if trained else ", at init")
             + f": {_listed(why)}. A factor near 1 carries the gradient to the first inputs; below 1 it compounds "
             "to nothing over the sequence. Beside it, the mechanism: a gated cell's carry gate (90th percentile over "
             "units and batch: the units that keep their state longest, which carry the gradient), or "
             "sigma_max(W) x mean phi', a vanilla cell's bound from above.")
    return [first, second, third]


#: Options resolved() fills from other options: left out of a command when
#: they hold the value it would fill anyway.
_DERIVED = ("activation", "recurrent_init", "probe_every")


def train_command(cfg: dict) -> str:
    """A ``seqvg train`` command that makes a run of these resolved options.

    For runs whose config.json has no command (those a study started): every
    option that differs from its default, minus what the defaults imply.
    """
    import dataclasses

    from seqvg.config import ConfigError, RunConfig

    defaults = RunConfig()
    given = {f.name: cfg[f.name] for f in dataclasses.fields(RunConfig)
             if f.name in cfg and cfg[f.name] != getattr(defaults, f.name)}
    try:
        implied = RunConfig(**{k: v for k, v in given.items() if k not in _DERIVED}).resolved()
    except (ConfigError, TypeError):
        implied = None
    parts = ["seqvg train"]
    for key, value in given.items():
        if key in _DERIVED and implied is not None and getattr(implied, key) == value:
            continue
        option = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            parts.append(option if value else f"--no-{key.replace('_', '-')}")
        else:
            parts.append(f"{option} {value:g}" if isinstance(value, float) else f"{option} {value}")
    return " ".join(parts)


def _series(r: Run, col: str) -> tuple[np.ndarray, np.ndarray]:
    return (np.array([row["step"] for row in r.metrics]),
            np.array([row.get(col, math.nan) for row in r.metrics], dtype=np.float64))


def _solved_point(r: Run, col: str) -> tuple[int, float] | None:
    solved = r.summary.get("solved_at_step")
    if solved is None:
        return None
    steps, ys = _series(r, col)
    k = int(np.nonzero(steps == solved)[0][0]) if (steps == solved).any() else -1
    return solved, float(ys[k])


def _bottom_legend(fig, handles: list, labels: list, note: str = "") -> None:
    """The page's legend under its axes, in report order, room made for it."""
    ncol = min(6, max(1, len(labels)))
    rows = math.ceil(len(labels) / ncol)
    # CAPTION_ROOM: the page's caption sits under the legend.
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, CAPTION_ROOM + (0.02 if note else 0.0)))
    if note:
        fig.text(0.5, CAPTION_ROOM + 0.01, note, ha="center", fontsize=8, color="0.3")
    fig.subplots_adjust(bottom=CAPTION_ROOM + 0.11 + 0.028 * rows + (0.02 if note else 0), top=0.88, wspace=0.25)


def _seeds_note(v: View) -> str:
    parts = [v.colour_key] if v.colour_key else []
    if v.grouped:
        parts.append("line = median over seeds, band = lowest to highest seed (every run: appendix)")
    elif any(k > 0 for k in v.seed_index):
        parts.append("a group's seeds share its colour: s0 solid, s1 dashed, s2 dash-dot")
    return ";  ".join(parts)


def _curves_page(fig, runs: list[Run], title: str = "Learning curves") -> None:
    v = view(runs)
    ax_loss, ax_metric = fig.subplots(1, 2)
    task = get_task(v.runs[0].cfg["task"], v.runs[0].cfg.get("task_args"))
    _draw_runs(ax_loss, v, lambda r: _series(r, "val_loss"))
    _draw_runs(ax_metric, v, lambda r: _series(r, "val_metric"))
    for i, r in enumerate(v.runs):
        for ax, col in ((ax_loss, "val_loss"), (ax_metric, "val_metric")):
            point = _solved_point(r, col)
            if point is not None:
                ax.plot([point[0]], [point[1]], marker="*", markersize=13, color=v.colors[i],
                        markeredgecolor="k", linestyle="none")
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
    ax_loss.set(xlabel="training step", ylabel="validation loss (log)", title="Validation loss")
    ax_metric.set(xlabel="training step", ylabel=f"validation {task.metric_name}",
                  title=f"Validation {task.metric_name}  (star = solved)")
    for ax in (ax_loss, ax_metric):
        ax.grid(True, which="major", alpha=0.3)
    _bottom_legend(fig, *_run_handles(v), _seeds_note(v))
    fig.suptitle(title, fontsize=14, weight="bold")
    solved = sorted((r.summary["solved_at_step"], lab.label) for r, lab in zip(v.runs, v.labels)
                    if r.summary.get("solved"))
    _caption(fig, "a run learns the long-range dependency when its loss leaves the dotted trivial baseline (a model "
             f"with no memory); {len(solved)} of {len(runs)} runs met the solved criterion (star)"
             + (f", the first {solved[0][1]} at step {solved[0][0]}." if solved else "."))


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


def _gradient_page(fig, runs: list[Run]) -> None:
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
        floor = _floor(arrays)
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
                    _plot_norms(ax, med, floor, f"{name} {when}", {"color": color, "linestyle": dash}, width)
                    if len(curves_k) > 1:
                        t = np.arange(stack.shape[1])
                        ax.fill_between(t, np.maximum(stack.min(axis=0), floor), np.maximum(stack.max(axis=0), floor),
                                        color=color, alpha=_band_alpha(v) if row else 0.05, linewidth=0)
        else:
            for i, (r, lab) in enumerate(zip(v.runs, v.labels)):
                if key not in r.probes:
                    continue
                width = SEED_WIDTHS[v.seed_index[i] % len(SEED_WIDTHS)]
                st = {"color": v.colors[i]}
                init, final = r.probes[key][0][0], r.probes[key][-1][0]
                any_zero |= bool((init == 0).any() or (final == 0).any())
                _plot_norms(ax, init, floor, f"{lab.label} init", {**st, "linestyle": "--"}, 0.6 * width)
                if r.probes[key].shape[0] > 1:
                    _plot_norms(ax, final, floor, f"{lab.label} step {int(r.probes['steps'][-1])}",
                                {**st, "linestyle": "-"}, width)
        ax.set_yscale("log")
        if any_zero:
            ax.axhline(floor, color="0.5", linewidth=0.6)
            ax.annotate("x = underflow to 0", (0.99, floor), xycoords=("axes fraction", "data"), ha="right",
                        va="bottom", fontsize=8, color="0.3")
        ax.set(xlabel="timestep t (the loss is read at the end)", ylabel="gradient norm (log)", title=title)
        ax.grid(True, which="major", alpha=0.3)
    from matplotlib.lines import Line2D

    handles, labels = _run_handles(v, seeds_by="width")
    handles += [Line2D([], [], color="0.2", linestyle="--", linewidth=1.0),
                Line2D([], [], color="0.2", linestyle="-", linewidth=1.8)]
    labels += ["dashed: untrained (step 0)", "solid: end of training"]
    note = _seeds_note(v).replace("s0 solid, s1 dashed, s2 dash-dot", "s0 thickest, later seeds thinner")
    _bottom_legend(fig, handles, labels, note)
    fig.suptitle("Gradient flow back through time: dashed = untrained, solid = end of training",
                 fontsize=13, weight="bold")
    trained = any(r.probes["h"].shape[0] > 1 for r in v.runs)
    ratios = _each_group(v, lambda r: decay_summary(r.probes["h"][-1][0])["ratio"], "{:.2g}")
    _caption(fig, "a curve that falls toward t = 0 means the early inputs get (almost) no gradient, so they cannot "
             f"be learned; g_0/g_(T-1) {'at the end' if trained else 'at init'}: {ratios or 'not measurable'}.")


def _log_norms(r: Run) -> np.ndarray:
    h = r.probes["h"][:, 0, :].astype(np.float64)
    with np.errstate(divide="ignore"):
        return np.where(h > 0, np.log10(np.where(h > 0, h, 1.0)), np.nan)


def _heatmap_page(fig, runs: list[Run], part: int | None = None) -> None:
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
    cols = min(n, max(3, math.ceil(math.sqrt(n))))
    rows = math.ceil(n / cols)
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
        bar = fig.colorbar(image, ax=list(axes[:n]), shrink=0.85)
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
    change = _listed([f"{name} {x}" for name, x in got if x is not None])
    _caption(fig, "rows are probes during training (bottom = untrained), columns timesteps; a run that learns "
             "turns its left columns brighter as the gradient reaches further back"
             + (f"; log10 g_0/g_(T-1), first -> last probe: {change}." if change else "."))


def _weights_page(fig, runs: list[Run]) -> None:
    from matplotlib.lines import Line2D

    v = view(runs)
    # Layers by position (recurrent layer 1, 2, ..., the head): Keras names
    # them by cell (rnn_1, lstm_1), which would give each cell its own style.
    layers = list(dict.fromkeys(k for r in v.runs for k in _layer_columns(r)))
    layers.sort(key=lambda k: (k == "head", not k.startswith("layer "), k))

    def draw_layers(ax, sub: View) -> None:
        for j, layer in enumerate(layers):
            _draw_runs(ax, sub, lambda r, layer=layer: _series(r, _layer_columns(r)[layer]) if layer in _layer_columns(r)
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
            draw_layers(ax, _subview(v, idx))
            ax.set_title(name, fontsize=7.5, pad=2)
            ax.tick_params(labelsize=6.5, which="both")
            ax.label_outer()
        ax_w = first
        fig.text(0.31, 0.905, "Weight graph: ||W_now - W_prev|| / ||W_prev|| per layer, one panel per run, log",
                 ha="center", fontsize=10)
    # Bands of a dozen groups turn this secondary panel to mud: medians only.
    _draw_runs(ax_g, v, lambda r: _series(r, "grad_norm"), width=1.4, log=True, band=len(v.groups) <= HANDFUL)
    ax_g.set_yscale("log")
    ax_g.set(xlabel="training step", ylabel="global gradient norm (log)",
             title="Global gradient norm (mean per row, before clipping)")
    ax_g.grid(True, which="major", alpha=0.3)
    handles = [Line2D([], [], color="0.2", linestyle=STYLES[j % len(STYLES)]) for j in range(len(layers))]
    ax_g.legend(handles, [f"left: {layer}" for layer in layers], fontsize=7, loc="upper right",
                title="line style", title_fontsize=7)
    if v.grouped:
        handles, labels = _run_handles(v)
        note = _seeds_note(v)
    else:
        # Here line style is the layer, so a run's seeds differ by colour only.
        handles, labels = _run_handles(v, seeds_by="width")
        note = v.colour_key
    _bottom_legend(fig, handles, labels, note)
    fig.suptitle("Weight graph: flat, low lines for a layer = it stopped learning", fontsize=13, weight="bold")

    def last_change(r: Run) -> float | None:
        col = _layer_columns(r).get("layer 1")
        values = _series(r, col)[1] if col else np.array([])
        values = values[np.isfinite(values)]
        return float(values[-1]) if values.size else None

    moved = _each_group(v, last_change, "{:.2g}")
    _caption(fig, "a layer whose line sinks and stays low has stopped learning; spikes in the global gradient norm "
             "(right) are exploding gradients" + (f"; layer 1's last relative change: {moved}." if moved else "."))


def _subview(v: View, idx: list[int]) -> View:
    """The part of a view that holds the runs ``idx`` (one group)."""
    groups = [(name, [idx.index(i) for i in members]) for name, members in v.groups if set(members) <= set(idx)]
    return View([v.runs[i] for i in idx], [v.labels[i] for i in idx], [v.colors[i] for i in idx],
                [v.seed_index[i] for i in idx], groups, v.grouped, v.colour_key)


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


def _study_page(fig, runs: list[Run]) -> None:
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
    _bottom_legend(fig, handles, labels, v.colour_key)
    varied = f"against {xlabel}" if xlabel else "for each cell and variant"
    fig.suptitle(f"Study: outcome and gradient decay {varied}", fontsize=14, weight="bold")
    at_end = all(r.probes["h"].shape[0] > 1 for r in v.runs)
    rate = [(rates(r, -1 if at_end else 0), lab.group) for r, lab in zip(v.runs, v.labels)]
    rate = sorted((x, name) for x, name in rate if x is not None)
    spread = (f"; decay {'at the end' if at_end else 'at init'} from {rate[0][0]:+.2f} ({rate[0][1]}) to "
              f"{rate[-1][0]:+.2f} ({rate[-1][1]}) decades per 100 steps" if len(rate) > 1 else "")
    _caption(fig, "whether the runs that solve (stars, left) are those whose gradient decays least (right)" + spread
             + ".")


def _spacing(values: list) -> float:
    """The smallest gap between sorted x values (for spreading seeds apart)."""
    gaps = np.diff(sorted(values))
    return float(gaps.min()) if gaps.size else 1.0


def _appendix_page(fig, runs: list[Run], v: View, kind: str) -> None:
    """One small panel per run: its learning curve or its gradient curves."""
    n = len(runs)
    cols = 4
    rows = max(1, math.ceil(n / cols))
    # One y scale per page, so that runs compare at a glance.
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False, sharey=True)).ravel()
    task = get_task(runs[0].cfg["task"], runs[0].cfg.get("task_args"))
    for ax, r in zip(axes, runs):
        i = v.runs.index(r)
        color = v.colors[i]
        if kind == "curves":
            steps, val = _series(r, "val_loss")
            ok = np.isfinite(val) & (val > 0)
            ax.plot(steps[ok], val[ok], color=color, linewidth=1.4)
            point = _solved_point(r, "val_loss")
            if point is not None:
                ax.plot([point[0]], [point[1]], marker="*", markersize=11, color=color, markeredgecolor="k")
            ax.axhline(task.baseline(r.cfg["length"]), color="0.25", linestyle=(0, (1, 1)), linewidth=1)
            ax.set_yscale("log")
            ax.set_xlabel("training step", fontsize=7)
        else:
            h = r.probes["h"]
            floor = _floor([h[0][0], h[-1][0]])
            _plot_norms(ax, h[0][0], floor, None, {"color": color, "linestyle": "--"}, 1.0)
            if h.shape[0] > 1:
                _plot_norms(ax, h[-1][0], floor, None, {"color": color, "linestyle": "-"}, 1.6)
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
    _caption(fig, "every run on its own, one y scale per page: a seed far from its group's median on the main "
             "pages shows here.")


def summary_columns(metric_name: str) -> list[str]:
    """Column names of ``summary_rows``."""
    return ["run", "status", "solved?", "solved at", f"val {metric_name}", "decay init", "horizon init",
            "decay end", "horizon end"]


def summary_rows(runs: list[Run]) -> list[list[str]]:
    """The summary table: one row per run, in report order, named by label."""

    def f(v, fmt="{:.3g}"):
        return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else fmt.format(v)

    v = view(runs)
    rows = []
    for r, lab in zip(v.runs, v.labels):
        s = r.summary
        init = decay_summary(r.probes["h"][0][0])
        end = decay_summary(r.probes["h"][-1][0])
        final = s.get("final") or {}
        rows.append([
            lab.label, s["status"], "yes" if s.get("solved") else "no", f(s.get("solved_at_step"), "{}"),
            f(final.get("val_metric"), "{:.4g}"), f(init["rate_per_100"], "{:+.2f}"), f(init["horizon"], "{}"),
            f(end["rate_per_100"], "{:+.2f}"), f(end["horizon"], "{}"),
        ])
    return rows


#: Summary table rows per page.
SUMMARY_ROWS = 26


def _summary_page(fig, runs: list[Run], part: int = 0) -> None:
    """The summary table (with each run's directory), SUMMARY_ROWS runs a page;
    under the last part's table the diagnosis of as many runs as fit (the
    rest follow on Diagnosis pages)."""
    v = view(runs)
    task = get_task(v.runs[0].cfg["task"], v.runs[0].cfg.get("task_args"))
    cols = summary_columns(task.metric_name) + ["run directory"]
    rows = [row + [r.name] for row, r in zip(summary_rows(runs), v.runs)]
    n_pages, parts = _summary_layout(runs)
    fig.text(0.04, 0.935, "decay: decades per 100 steps back in time (negative = vanishing); "
             "horizon: steps back until ||dL/dh_t|| < 1e-3 of the last step's", fontsize=8.5, color="0.3")
    bottom = _table(fig, SUMMARY_TOP, cols, rows[part * SUMMARY_ROWS:(part + 1) * SUMMARY_ROWS], fontsize=8.5,
                    left=0.04, width=0.92, scale=1.3)
    if part == n_pages - 1 and parts[0]:
        more = " (continued on the next pages)" if len(parts) > 1 else ""
        fig.text(0.04, bottom - 0.025, "Diagnosis" + more, fontsize=12, weight="bold", va="top")
        lines = diagnosis_lines([v.runs[i] for i in parts[0]], [v.labels[i] for i in parts[0]])
        _diagnosis_text(fig, lines, bottom - 0.06)
        bottom -= 0.06 + DIAGNOSIS_LINE_H * len(lines)
    settings = settings_rows(runs)
    if part == n_pages - 1 and bottom - 0.08 - SUMMARY_ROW_H * (len(settings) + 1) > CAPTION_ROOM + 0.01:
        fig.text(0.04, bottom - 0.025, "Settings per run", fontsize=12, weight="bold", va="top")
        _table(fig, bottom - 0.06, SETTINGS_COLUMNS, settings, fontsize=8, left=0.04, width=0.92, scale=1.2)
    fig.suptitle("Summary" + (f" ({part + 1}/{n_pages})" if n_pages > 1 else ""), fontsize=14, weight="bold")
    ends = [(decay_summary(r.probes["h"][-1][0])["horizon"], int(r.probes["h"].shape[-1])) for r in v.runs]
    whole = sum(h is not None and h >= t for h, t in ends)
    _caption(fig, f"a horizon shorter than the sequence means its first inputs send no learning signal: {whole} of "
             f"{len(runs)} runs end with the gradient reaching the whole sequence; the diagnosis says why in words "
             "and what to try.")


SETTINGS_COLUMNS = ["run", "cell", "units", "layers", "optimizer", "lr", "batch", "steps", "clip", "gate init",
                    "remedies", "command"]


def settings_rows(runs: list[Run]) -> list[list]:
    """Each run's training settings, in report order (the summary page's last table)."""
    v = view(runs)
    rows = []
    for r, lab in zip(v.runs, v.labels):
        c = r.cfg
        command = r.config.get("command") or train_command(c)
        rows.append([lab.label, c["cell"], c["units"], c["layers"], c["optimizer"], f"{c['lr']:g}", c["batch_size"],
                     r.summary.get("steps_done", "?"), f"{c['clip']:g}" if c["clip"] else "off", gate_init_text(c),
                     ", ".join(remedies(c)) or "-", command if len(command) <= 60 else command[:57] + "..."])
    return rows


#: Characters per diagnosis line (monospace, 7.5 points, page width).
DIAGNOSIS_WIDTH = 165
#: Height (figure fraction) of a summary table row and of a diagnosis line, and the table's top.
SUMMARY_ROW_H = 0.0235
DIAGNOSIS_LINE_H = 0.0155
SUMMARY_TOP = 0.915
#: Diagnosis lines on a page of their own.
DIAGNOSIS_LINES = 56


def diagnosis_lines(runs: list[Run], labels: list) -> list[str]:
    """Each run's diagnosis (seqvg.diagnose, with why an unsolved run did not
    solve and what to try), wrapped to the page."""
    import textwrap

    lines = []
    for r, lab in zip(runs, labels):
        lines.append(f"{lab.label}:")
        for line in format_diagnosis(r).splitlines():
            lines += textwrap.wrap(line, DIAGNOSIS_WIDTH, initial_indent="  ", subsequent_indent="      ",
                                   break_long_words=False, break_on_hyphens=False)
    return lines


def _summary_layout(runs: list[Run]) -> tuple[int, list[list[int]]]:
    """How many summary pages, and the runs (indices in report order) whose
    diagnosis goes under the last summary table, then on each Diagnosis page
    (whole runs, as many as fit)."""
    v = view(runs)
    n_pages = math.ceil(len(runs) / SUMMARY_ROWS)
    last_rows = len(runs) - (n_pages - 1) * SUMMARY_ROWS
    room = int((SUMMARY_TOP - SUMMARY_ROW_H * (last_rows + 1) - 0.06 - CAPTION_ROOM - 0.02) / DIAGNOSIS_LINE_H)
    parts, used = [[]], 0
    for i in range(len(v.runs)):
        n = len(diagnosis_lines(v.runs[i:i + 1], v.labels[i:i + 1]))
        if used + n > room and (parts[-1] or len(parts) == 1):
            parts.append([])
            used, room = 0, DIAGNOSIS_LINES
        parts[-1].append(i)
        used += n
    return n_pages, parts


def _diagnosis_text(fig, lines: list[str], top: float) -> None:
    fig.text(0.04, top, "\n".join(lines), fontsize=7.5, va="top", family="monospace", linespacing=1.25)


def _diagnosis_page(fig, runs: list[Run], part: int) -> None:
    v = view(runs)
    idx = _summary_layout(runs)[1][part + 1]
    _diagnosis_text(fig, diagnosis_lines([v.runs[i] for i in idx], [v.labels[i] for i in idx]), 0.92)
    fig.suptitle(f"Diagnosis per run, continued ({part + 1}/{len(_summary_layout(runs)[1]) - 1})", fontsize=14,
                 weight="bold")
    _caption(fig, "each verdict comes from the run's own numbers (decay rate, horizon, gates, loss against the "
             "trivial baseline); an unsolved run says why and which commands to try next.")


PAGES = [
    ("Title", _title_page),
    ("Learning curves", _curves_page),
    ("Gradient flow", _gradient_page),
    ("Gradient flow over training", _heatmap_page),
    ("Weight graph", _weights_page),
    ("Summary", _summary_page),
]


def _runs_by_task(runs: list[Run]) -> dict[str, list[Run]]:
    """Runs grouped by task and task parameters, named like "recall pairs=2 vocab=8"."""
    out: dict[str, list[Run]] = {}
    for r in runs:
        args = r.cfg.get("task_args") or {}
        name = " ".join([r.cfg["task"], *(f"{k}={v}" for k, v in sorted(args.items()))])
        out.setdefault(name, []).append(r)
    return out


def pages(runs: list[Run]) -> list[tuple[str, object]]:
    """The report's pages for these runs: (title, draw(fig)) in order.

    PAGES always; the study page after the title when runs differ by more
    than their seed; summary and diagnosis pages as many as the runs need;
    the appendix (every run on its own) when seeds are summarised.
    """
    from functools import partial

    v = view(runs)
    out = [(title, partial(draw, runs=runs)) for title, draw in PAGES[:-1]]
    by_task = _runs_by_task(runs)
    if len(by_task) > 1:  # each task its own curves: its loss, metric, baseline and solved line
        at = [title for title, _ in out].index("Learning curves")
        out[at:at + 1] = [(f"Learning curves: {name}",
                           partial(_curves_page, runs=group, title=f"Learning curves: {name}"))
                          for name, group in by_task.items()]
    if len(v.groups) > 1:
        out.insert(1, ("Study", partial(_study_page, runs=runs)))
    # The story: gradient flow, then why it flows (or not), then over training.
    at = [title for title, _ in out].index("Gradient flow") + 1
    out[at:at] = why_pages(runs)
    n_summary, parts = _summary_layout(runs)
    for part in range(n_summary):
        out.append((f"Summary {part + 1}" if part else "Summary", partial(_summary_page, runs=runs, part=part)))
    for part in range(len(parts) - 1):
        out.append((f"Diagnosis {part + 1}", partial(_diagnosis_page, runs=runs, part=part)))
    if v.grouped:
        chunks = range(math.ceil(len(runs) / APPENDIX_PANELS))
        for kind, name in (("curves", "learning curves"), ("gradients", "gradient flow")):
            for part in chunks:
                chunk = v.runs[part * APPENDIX_PANELS:(part + 1) * APPENDIX_PANELS]
                out.append((f"Appendix {name} {part + 1}",
                            partial(_appendix_page, runs=chunk, v=v, kind=kind)))
        if len(runs) > APPENDIX_PANELS:  # the main heatmap page showed groups
            out += [(f"Appendix gradient flow over training {part + 1}", partial(_heatmap_page, runs=runs, part=part))
                    for part in chunks]
    return out


def make_report(run_dirs: list, out: str | Path, png_dir: str | Path | None = None) -> list:
    """Writes the PDF (and optionally one PNG per page); returns the figures' titles.

    Raises:
        RunDirError: a run directory is missing or corrupt (names the file).
    """
    return write_report([load_run(Path(p)) for p in run_dirs], out, png_dir)


def write_report(runs: list[Run], out: str | Path, png_dir: str | Path | None = None,
                 extra_figures: list | None = None) -> list:
    """``make_report`` for runs already loaded with ``load_run``, in any order.

    ``extra_figures``: (title, matplotlib Figure) pages appended at the end.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from seqvg.pdf import pdf_document, write_png

    out = Path(out)
    if png_dir is not None:
        Path(png_dir).mkdir(parents=True, exist_ok=True)
    titles = []
    with plt.rc_context({"font.size": 9, "axes.titlesize": 10, "svg.hashsalt": "seqvg"}), \
            pdf_document(out, "seqvg report") as pdf:
        for i, (title, draw) in enumerate(pages(runs), start=1):
            fig = plt.figure(figsize=PAGE)
            draw(fig)
            titles.append(title)
            pdf.savefig(fig)
            if png_dir is not None:
                write_png(Path(png_dir) / f"{i:02d}-{re.sub('[^a-z0-9-]', '', title.lower().replace(' ', '-'))}.png",
                          fig)
            plt.close(fig)
        for title, fig in extra_figures or []:
            titles.append(title)
            pdf.savefig(fig)
            plt.close(fig)
    return titles


# -- why: the carry path and the spectrum (seqvg.why) ---------------------------
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
#: The gate that carries the state on, per cell: LSTM forget, GRU keep (z).
CARRY_GATE = {"lstm": ("forget", "forget gate f_t"), "gru": ("keep", "keep gate z_t")}


def _why_runs(v: View) -> list[int]:
    """Indices of the runs the why pages draw: the first seed of each group, at most WHY_ROWS."""
    return [idx[0] for _, idx in v.groups][:WHY_ROWS]


#: Height of the figure (fraction) kept free at the foot of a page for its caption.
CAPTION_ROOM = 0.05


def _caption(fig, text: str) -> None:
    """The page's one-sentence caption at its foot, wrapped to the page width."""
    import textwrap

    fig.text(0.01, 0.008, textwrap.fill("What to look for: " + text, 150), fontsize=9, color="0.15", va="bottom")


def _each_group(v: View, value, fmt: str, limit: int = FINDING_NAMES) -> str:
    """``value(run)`` for the first seed of each group, as "name value, ..." (None left out)."""
    got = [(name, value(v.runs[idx[0]])) for name, idx in v.groups]
    return _listed([f"{name} {fmt.format(x)}" for name, x in got if x is not None and math.isfinite(x)], limit)


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
        ax.text(0.5, 0.5, "no gate statistics in this run's probes.npz\n(recorded since seqvg.why)",
                ha="center", va="center", fontsize=8, color="0.4", transform=ax.transAxes)
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
    ax.set(xlabel="timestep t", ylabel="g_t = ||dL/ds_{t-1}|| / ||dL/ds_t||")
    ax.legend(fontsize=7, loc="best")


def _carry_page(fig, runs: list[Run]) -> None:
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
            cell, "what bounds one step: sigma_max(W) and phi', over training")
        left.set_title(f"{v.labels[i].label}: {what}", fontsize=9)
        right.set_title(f"{v.labels[i].label}: per-step gradient gain", fontsize=9)
        for ax in (left, right):
            ax.grid(alpha=0.3)
    more = len(v.groups) - len(rows)
    fig.suptitle("Why: the carry path (dashed = untrained, solid = end of training)"
                 + (f"\nfirst {len(rows)} of {len(v.groups)} groups, first seed of each" if more else ""),
                 fontsize=14, weight="bold")
    fig.subplots_adjust(left=0.07, right=0.98, top=0.9, bottom=0.1, hspace=0.55, wspace=0.22)
    _caption(fig, "a carry gate near 1 passes the gradient on almost unchanged (gain near 1 at every step); "
             "a vanilla RNN's gain is at most sigma_max(W) x max phi', and below 1 it compounds over T steps.")


def _spectrum_page(fig, runs: list[Run]) -> None:
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
    _caption(fig, "a step norm below 1 shrinks the gradient at every step back (vanishing), above 1 it can grow; "
             "gated cells hold it near 1 through their carry gate, a vanilla RNN through sigma_max(W).")


def why_pages(runs: list[Run]) -> list[tuple[str, object]]:
    """The why pages for these runs: the carry path, and the spectrum when any run
    recorded step-Jacobian norms."""
    from functools import partial

    out = [("Why: the carry path", partial(_carry_page, runs=runs))]
    if len({r.cfg.get("recurrent_gain", 1.0) for r in runs}) > 1:
        out.append(("Spectrum", partial(_gain_page, runs=runs)))
    elif any("jac_sigma" in r.probes for r in runs):
        out.append(("Spectrum", partial(_spectrum_page, runs=runs)))
    return out


def _gain_page(fig, runs: list[Run]) -> None:
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
