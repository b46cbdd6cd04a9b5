"""The figures of a study: results.png, and the probe-only study's gradient curves.

    seqvg run tasks/demo.toml     # draws runs/demo/results.png

Drawn from results.csv's rows (``seqvg.results.results_rows``) and the run
directories alone, so they can be redrawn at any time. Training studies:
solved fraction and final loss against length, per cell or variant; a
study over several tasks, one panel per task in that task's own metric.
Probe-only studies: decay rate and horizon against length, the gain figure
(over --recurrent-gain) and the curves g_t / g_{T-1} against steps back.
"""

from __future__ import annotations

from seqvg import rundir
from seqvg.spec import Study, study_labels


def _series_of(study: Study) -> dict[str, str]:
    """Run name -> the curve it belongs to across lengths: its label without
    the length, the other numeric options and the seed ("rnn", "lstm fb=3")."""
    series = {}
    for name, lab in zip(study.run_names, study_labels(study)):
        parts = [p for p in lab.group.split(" ") if not p.startswith("T=")] if "length" not in lab.axes \
            else None
        series[name] = lab.series if parts is None else " ".join(parts)
    return series


def _groups(study: Study, rows: list[dict]) -> dict[str, list[dict]]:
    series = _series_of(study)
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(series[row["run"]] or row["cell"], []).append(row)
    return groups


def results_figure(study: Study, rows: list[dict]):
    """Training studies: solved fraction and median final loss against length, per
    cell/variant. Probe-only studies: decay rate and horizon against length.

    With one length only, the x axis lists the cells/variants instead.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.ticker import NullLocator

    from seqvg.report_view import STYLES, diverged_cross, headroom

    def median(values):
        values = [v for v in values if v is not None and np.isfinite(v)]
        return float(np.median(values)) if values else np.nan

    def final_loss(r: dict):
        """A run's final val loss; None where it diverged (a NaN/Inf loss: its last one, 1e26 and more, is no outcome)."""
        return None if r.get("status") == "diverged" else r["final_val_loss"]

    if study.probe_only and len({r["recurrent_gain"] for r in rows}) > 1:
        return _recurrent_gain_figure(study, rows)
    if not study.probe_only and len({(r["task"], r["task_args"]) for r in rows}) > 1:
        return tasks_figure(study, rows)
    groups = _groups(study, rows)
    all_lengths = sorted({r["length"] for r in rows})
    by_label = len(all_lengths) == 1
    if study.probe_only:
        left, right = "h_rate_per_100", "h_horizon"
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.8), constrained_layout=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    diverged: list[tuple] = []  # (x, colour, runs) of the groups with diverged runs
    for i, (label, group) in enumerate(groups.items()):
        lengths = sorted({r["length"] for r in group})
        style = {"color": colors[i % len(colors)], "linestyle": STYLES[i % len(STYLES)],
                 "marker": "os^vD<>"[i % 7], "label": label}
        at = {t: [r for r in group if r["length"] == t] for t in lengths}
        xs = [i] if by_label else lengths
        if study.probe_only:
            y1 = [median([r[left] for r in at[t]]) for t in lengths]
            y2 = [median([r[right] for r in at[t]]) for t in lengths]
        else:
            y1 = [float(np.mean([r["solved"] in (True, "True") for r in at[t]])) for t in lengths]
            y2 = [median([final_loss(r) for r in at[t]]) for t in lengths]
        ax1.plot(xs, y1, **style)
        ax2.plot(xs, y2, **style)
        if not study.probe_only:  # the seeds' spread around the median
            for x, t in zip(xs, lengths):
                seeds = [final_loss(r) for r in at[t] if final_loss(r) is not None]
                ax2.plot([x] * len(seeds), seeds, marker=style["marker"], color=style["color"], markersize=3.5,
                         alpha=0.55, linestyle="none")
                n_diverged = sum(r.get("status") == "diverged" for r in at[t])
                if n_diverged:  # a cross in a band at the top (made below), counted
                    diverged.append((x, style["color"], n_diverged))
        if study.probe_only:
            for x, t, y in zip(xs, lengths, y2):
                under = sum(r["h_underflow"] for r in at[t])
                if under:
                    ax2.annotate(f"{under} zeros", (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    where = f" (T = {all_lengths[0]})" if by_label else " against length"
    if study.probe_only:
        ax1.axhline(0, color="0.6", lw=0.8)
        ax1.set(ylabel="decades per 100 steps back (negative = vanishing)", title="Gradient decay rate at init" + where)
        ax2.set(ylabel="steps back until g_t < 1e-3 g_{T-1}", title="Gradient horizon at init" + where)
    else:
        ax1.set(ylabel="fraction of seeds solved", ylim=(-0.05, 1.05), title="Solved fraction" + where)
        ax2.set(ylabel="final validation loss (line: median, dots: seeds)", title="Final loss" + where)
        baselines = sorted({(r["length"], r["baseline"]) for r in rows if r.get("baseline") is not None})
        if baselines and len({b for _, b in baselines}) == 1:
            ax2.axhline(baselines[0][1], color="0.4", ls=":", lw=1)
            ax2.annotate("baseline", (0, baselines[0][1]), xycoords=("axes fraction", "data"), fontsize=7,
                         xytext=(3, 3), textcoords="offset points", color="0.3")
        finite = [final_loss(r) for r in rows if final_loss(r) is not None]
        if finite and min(finite) > 0:
            ax2.set_yscale("log")
        if diverged:  # a band at the top, above every plotted loss, for the crosses
            headroom(ax2, 0.15)
            for x, color, n in diverged:
                diverged_cross(ax2, x, color, count=n)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        if by_label:
            ax.set_xticks(range(len(groups)), list(groups), rotation=30, ha="right")
            ax.set_xlim(-0.6, len(groups) - 0.4)
        else:
            ax.set_xlabel("length T")
            if len(all_lengths) > 1:
                ax.set_xscale("log")
                ax.set_xticks(all_lengths, [str(t) for t in all_lengths])
                ax.xaxis.set_minor_locator(NullLocator())  # not y: its labels may all be minor
    if not by_label:
        ax2.legend(fontsize=8, loc="best")
    fig.suptitle(f"{study.name}: {len(rows)} runs", fontsize=11)
    _results_caption(fig, study, rows)
    return fig


#: Options named in a task panel's title when all its runs share them: (key, how to write the value).
_SHARED = (("lr", "lr={:g}"), ("clip", "clip={:g}"), ("optimizer", "{}"), ("batch_size", "batch={}"),
           ("units", "{} units"), ("layers", "{} layers"), ("steps", "{} steps"))
#: Of those, the ones named even at their default: what sets a task's training apart in a tour.
_ALWAYS = ("lr", "steps")


def tasks_figure(study: Study, rows: list[dict]):
    """A training study over several tasks: one panel per task, each in its
    own metric (the final validation metric of every run against the task's
    solved criterion and trivial baseline), titled with the settings its runs
    share (length, lr, clip, steps, ...) and its runs named by what tells
    them apart within the task. Against length where a task has several."""
    import math

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from seqvg.config import RunConfig
    from seqvg.labels import run_labels
    from seqvg.report_view import STYLES, caption, diverged_cross, headroom
    from seqvg.tasks import get_task

    configs = dict(zip(study.run_names, study.configs))
    tasks: dict[tuple, list[dict]] = {}
    for row in rows:
        tasks.setdefault((row["task"], row["task_args"]), []).append(row)
    ncols = min(3, len(tasks))
    nrows = math.ceil(len(tasks) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.4 * nrows + 1.1), layout="constrained",
                             squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    default = RunConfig()
    for ax, ((name, args), group) in zip(axes.flat, tasks.items()):
        cfgs = [configs[r["run"]] for r in group]
        task = get_task(name, cfgs[0].task_args)
        labels = run_labels([c.to_dict() for c in cfgs], [r["run"] for r in group])
        lengths = sorted({c.length for c in cfgs})
        shared = [f"T={lengths[0]}"] if len(lengths) == 1 else []
        for key, fmt in _SHARED:
            values = {getattr(c, key) for c in cfgs}
            if len(values) == 1 and (key in _ALWAYS or values != {getattr(default, key)}):
                shared.append(fmt.format(values.pop()))
        if {c.gate_init for c in cfgs if c.gate_init is not None} == {"keras"}:  # chrono is the default
            shared.append("keras gates")
        # One point per group of seeds: the median, each seed a dot, filled where all solved.
        points: dict[str, list[tuple[dict, object]]] = {}
        for row, lab in zip(group, labels):
            key = lab.series if len(lengths) > 1 else lab.group
            points.setdefault(key or row["cell"], []).append((row, lab))
        for i, (series, members) in enumerate(points.items()):
            style = {"color": colors[i % len(colors)], "marker": "os^vD<>"[i % 7]}
            at = {t: [r for r, _ in members if r["length"] == t] for t in sorted({r["length"] for r, _ in members})}
            xs = list(at) if len(lengths) > 1 else [i]
            for x, runs in zip(xs, at.values()):
                # A diverged run's last metric (1e26 and more for a loss-like one) is no outcome: a cross at the top.
                values = [r["final_val_metric"] for r in runs
                          if r["final_val_metric"] is not None and r.get("status") != "diverged"]
                n_diverged = sum(r.get("status") == "diverged" for r in runs)
                if n_diverged:
                    diverged_cross(ax, x, style["color"], size=8, count=n_diverged, offset=(6, -3))
                solved = sum(r["solved"] in (True, "True") for r in runs)
                y = float(np.median(values)) if values else np.nan
                ax.plot([x], [y], markersize=8, linestyle="none",
                        markerfacecolor=style["color"] if solved == len(runs) else "white", **style)
                if len(runs) > 1:
                    ax.plot([x] * len(values), values, linestyle="none", marker=style["marker"], markersize=3.5,
                            color=style["color"], alpha=0.55)
                note = (f"solved at {runs[0]['solved_at_step']}" if len(runs) == 1
                        else f"{solved}/{len(runs)} solved") if solved else ""
                if note and np.isfinite(y):
                    ax.annotate(note, (x, y), fontsize=7, xytext=(0, 7), textcoords="offset points", ha="center",
                                color="0.25")
            if len(lengths) > 1:
                ax.plot(xs, [np.median([r["final_val_metric"] for r in at[t] if r["final_val_metric"] is not None
                                        and r.get("status") != "diverged"] or [np.nan]) for t in at],
                        linestyle=STYLES[i % len(STYLES)], color=style["color"], label=series)
        for y, ls, what in ((task.threshold, "--", "solved"), (task.baseline_metric(lengths[0]), ":", "baseline")):
            ax.axhline(y, color="0.4", ls=ls, lw=0.9)
            ax.annotate(what, (0, y), xycoords=("axes fraction", "data"), xytext=(3, 2), textcoords="offset points",
                        ha="left", va="bottom", fontsize=7, color="0.35")
        if task.higher_is_better:
            ax.set_ylim(-0.03, 1.1)
        else:
            ax.set_yscale("log")
            if any(r.get("status") == "diverged" for r in group):  # room at the top for the crosses
                headroom(ax, 0.15)
        ax.set_ylabel(f"final validation {task.metric_name}", fontsize=8)
        title = name + (f" {args}" if args else "")
        ax.set_title(title + "\n" + ", ".join(shared), fontsize=9)
        ax.grid(alpha=0.3)
        if len(lengths) > 1:
            ax.set_xscale("log")
            ax.set_xticks(lengths, [str(t) for t in lengths])
            ax.set_xlabel("length T")
            ax.legend(fontsize=7, loc="best")
        else:
            ax.set_xticks(range(len(points)), list(points), fontsize=8)
            ax.set_xlim(-0.6, len(points) - 0.4)
    for ax in list(axes.flat)[len(tasks):]:
        ax.set_visible(False)
    solved = sum(r["solved"] in (True, "True") for r in rows)
    fig.suptitle(f"{study.name}: {len(rows)} runs on {len(tasks)} tasks, each scored by its own metric",
                 fontsize=11)
    fig.get_layout_engine().set(rect=(0, 0.05, 1, 0.95))
    caption(fig, f"which cells solve which task: a filled marker met the task's solved criterion (dashed line), "
                 f"a hollow one did not; dotted: the trivial baseline. {solved} of {len(rows)} runs solved.")
    return fig


def _results_caption(fig, study: Study, rows: list[dict]) -> None:
    """The results figure's "What to look for" line, with the study's counts."""
    from seqvg.report_view import caption

    fig.get_layout_engine().set(rect=(0, 0.07, 1, 0.93))
    if study.probe_only:
        cfgs = {d.name: cfg for cfg, d in zip(study.configs, study.run_dirs())}  # seq_len needs the task's args
        whole = sum((r["h_horizon"] or 0) >= cfgs[r["run"]].seq_len for r in rows)
        caption(fig, "where the decay rate (left) drops below 0 the gradient shrinks on its way back; "
                 f"{whole} of {len(rows)} probes keep it above 1e-3 of the last step's over the whole sequence.")
    else:
        solved = sum(r["solved"] in (True, "True") for r in rows)
        n_diverged = sum(r.get("status") == "diverged" for r in rows)
        caption(fig, f"which cells and lengths solve the task: {solved} of {len(rows)} runs did; the final loss "
                 "(right) against the trivial baseline shows how close the others came"
                 + (f"; {n_diverged} diverged (a NaN/Inf loss: crosses at the top)." if n_diverged else "."))


def _recurrent_gain_figure(study: Study, rows: list[dict]):
    """Probe-only studies over --recurrent-gain: g_0/g_{T-1} against G (seqvg.report_why)."""
    from seqvg.report_why import recurrent_gain_figure

    series = _series_of(study)
    lengths = sorted({r["length"] for r in rows})
    def name(r):  # the curve: the run's series without its gain
        words = [w for w in (series[r["run"]] or r["cell"]).split() if not w.startswith("G=")]
        act = r["activation"] if r["activation"] and r["activation"] not in words else None
        return " ".join(words + ([act] if act else []) + ([f"T={r['length']}"] if len(lengths) > 1 else []))

    points = [{"series": name(r),
               "gain": r["recurrent_gain"], "ratio": r["h_ratio"], "seed": r["seed"]} for r in rows]
    return recurrent_gain_figure(points, lengths[-1], f"{study.name}: {len(rows)} probes at init, T = "
                                 + ", ".join(str(t) for t in lengths))


def probe_curves_figure(study: Study):
    """Probe-only studies: g_t / g_{T-1} against steps back, one panel per length."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from seqvg.report_view import STYLES

    series = _series_of(study)
    runs = [(series[d.name] or cfg.cell, cfg, d) for cfg, d in zip(study.configs, study.run_dirs())
            if cfg.seed == study.configs[0].seed and rundir.is_finished(d, True)]
    lengths = sorted({cfg.length for _, cfg, _ in runs})
    fig, axes = plt.subplots(1, max(1, len(lengths)), figsize=(12, 4.6), layout="constrained", squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    curves = {}
    for label, cfg, d in runs:
        g = np.asarray(rundir.read_json(d / rundir.PROBE)["h"][0], dtype=np.float64)
        curves[(label, cfg.length)] = g / g[-1] if g[-1] > 0 else g
    positive = [c[c > 0].min() for c in curves.values() if (c > 0).any()]
    floor = min(positive) / 10 if positive else 1e-30
    groups = list(dict.fromkeys(label for label, _, _ in runs))
    for ax, length in zip(axes[0], lengths):
        for (label, t), n in curves.items():
            if t != length:
                continue
            k = groups.index(label)
            back = np.arange(len(n))[::-1]
            zero = n == 0
            style = {"color": colors[k % len(colors)], "linestyle": STYLES[k % len(STYLES)]}
            ax.plot(back, np.where(zero, np.nan, n), label=groups[k], **style)
            if zero.any():
                ax.plot(back[zero], np.full(zero.sum(), floor), "x", ms=3, color=style["color"])
        ax.set_yscale("log")
        ax.axhline(floor, color="0.7", lw=0.6)
        ax.text(0, floor, " underflow (exact 0)", fontsize=7, va="bottom", color="0.4")
        ax.set(xlabel="steps back from the last step", title=f"T = {length}")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("||dL/dh_t|| / ||dL/dh_{T-1}||")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="outside right upper")
    fig.suptitle(f"{study.name}: gradient norm at init against steps back (seed {study.configs[0].seed})",
                 fontsize=11)
    from seqvg.report_view import caption

    fig.get_layout_engine().set(rect=(0, 0.07, 1, 0.93))
    ends = sorted((float(c[0]), label + (f" T={t}" if len(lengths) > 1 else "")) for (label, t), c in curves.items()
                  if c[0] > 0)
    spread = (f"; g_0/g_(T-1) from {ends[0][0]:.1g} ({ends[0][1]}) to {ends[-1][0]:.1g} ({ends[-1][1]})"
              if len(ends) > 1 else "")
    caption(fig, "the further a curve falls from 1 at the last step, the less gradient reaches the first input"
             + spread + ".")
    return fig

