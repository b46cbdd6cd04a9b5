"""What a study's runs came to: results.csv, results.png, the study's PDF and tables.

    seqvg run tasks/demo.toml     # writes runs/demo/results.csv, results.png, reports/demo.pdf

and afterwards, in Python::

    from seqvg.study import load_spec, results_rows, summary_table
    study = load_spec("tasks/demo.toml")
    print(summary_table(study)); rows = results_rows(study)

Everything here is read from the study's run directories alone (results.csv
is derived, never the only copy), so it can be redrawn at any time.
results.csv and results.png leave out the runs not finished yet; the study's
PDF and the summary table of a training study need every run finished.
"""

from __future__ import annotations

import time
from pathlib import Path

from seqvg import rundir
from seqvg.spec import Study
from seqvg.tasks import get_task

OPTION_COLUMNS = ["task", "task_args", "length", "cell", "units", "layers", "activation", "recurrent_init", "recurrent_gain",
                  "gate_init", "forget_bias", "chrono", "layer_norm", "batch_norm", "residual",
                  "clip", "optimizer", "lr", "batch_size", "steps", "seed"]
DECAY = ("rate_per_100", "horizon", "ratio", "underflow")
TRAIN_COLUMNS = ["run", "label", *OPTION_COLUMNS, "status", "solved", "solved_at_step", "steps_done",
                 "final_val_loss", "final_val_metric", "metric_name", "baseline", "baseline_metric",
                 "solved_criterion",
                 *[f"init_{k}" for k in DECAY], *[f"final_{k}" for k in DECAY]]
PROBE_COLUMNS = ["run", "label", *OPTION_COLUMNS, "loss", *[f"h_{k}" for k in DECAY], *[f"c_{k}" for k in DECAY]]


def study_labels(study: Study) -> list:
    """Every run's RunLabel (seqvg.labels), computed over all the study's runs:
    the names its report gives them."""
    from seqvg.labels import run_labels

    return run_labels([c.to_dict() for c in study.configs], list(study.run_names))


def label_of(study: Study, index: int) -> str:
    """A run's label as the report names it, e.g. "rnn T=50 s1"."""
    return study_labels(study)[index].label


def results_rows(study: Study) -> list[dict]:
    """One row per finished run, in spec order (no wall times: reruns compare equal)."""
    rows = []
    labels = study_labels(study)
    for i, (cfg, d) in enumerate(zip(study.configs, study.run_dirs())):
        if not rundir.is_finished(d, study.probe_only):
            continue
        row = {"run": d.name, "label": labels[i].label, **{k: getattr(cfg, k) for k in OPTION_COLUMNS}}
        row["task_args"] = " ".join(f"{k}={v}" for k, v in sorted(cfg.task_args.items()))
        if study.probe_only:
            p = rundir.read_json(d / rundir.PROBE)
            row["loss"] = p["loss"]
            for k in DECAY:
                row[f"h_{k}"] = p["summary"][k]
                row[f"c_{k}"] = (p.get("c_summary") or {}).get(k)
        else:
            s = rundir.read_json(d / rundir.SUMMARY)
            row.update(status=s["status"], solved=s["solved"], solved_at_step=s["solved_at_step"],
                       steps_done=s["steps_done"], final_val_loss=s["final"]["val_loss"],
                       final_val_metric=s["final"]["val_metric"], metric_name=s["metric_name"],
                       baseline=s["baseline"])
            task = get_task(cfg.task, cfg.task_args)
            row.update(baseline_metric=task.baseline_metric(cfg.length), solved_criterion=task.criterion)
            for when in ("init", "final"):
                for k in DECAY:
                    row[f"{when}_{k}"] = (s["decay"].get(when) or {}).get(k)
        rows.append(row)
    return rows


#: Seconds between redraws of results.png while a study runs.
FIGURE_EVERY_S = 120.0


def write_results(study: Study, figure: bool = True) -> list[dict]:
    """Atomically (re)writes OUT/results.csv and, with ``figure``, OUT/results.png."""
    rows = results_rows(study)
    columns = PROBE_COLUMNS if study.probe_only else TRAIN_COLUMNS
    rundir.write_csv(study.out / rundir.RESULTS_CSV, columns, rows)
    if rows and figure:
        import matplotlib.pyplot as plt

        from seqvg.pdf import write_png

        fig = results_figure(study, rows)
        write_png(study.out / rundir.RESULTS_PNG, fig)
        plt.close(fig)
    return rows


class ResultsWriter:
    """Writes a running study's results after each finished run: results.csv
    every time, so an interruption loses no finished run, and results.png at
    most every ``every`` seconds, since drawing it costs more than a tiny run
    and a long study's figure still shows how it is going. The study draws
    the last one, with every run, when it ends (``write_results``)."""

    def __init__(self, study: Study, every: float = FIGURE_EVERY_S):
        self.study, self.every = study, every
        self._drawn = time.monotonic()

    def run_finished(self) -> None:
        """results.csv now; results.png too if the last drawing is ``every`` seconds old."""
        figure = time.monotonic() - self._drawn >= self.every
        write_results(self.study, figure=figure)
        if figure:
            self._drawn = time.monotonic()


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

    from seqvg.report_view import STYLES

    def median(values):
        values = [v for v in values if v is not None and np.isfinite(v)]
        return float(np.median(values)) if values else np.nan

    if study.probe_only and len({r["recurrent_gain"] for r in rows}) > 1:
        return _recurrent_gain_figure(study, rows)
    groups = _groups(study, rows)
    all_lengths = sorted({r["length"] for r in rows})
    by_label = len(all_lengths) == 1
    if study.probe_only:
        left, right = "h_rate_per_100", "h_horizon"
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.8), constrained_layout=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
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
            y2 = [median([r["final_val_loss"] for r in at[t]]) for t in lengths]
        ax1.plot(xs, y1, **style)
        ax2.plot(xs, y2, **style)
        if not study.probe_only:  # the seeds' spread around the median
            for x, t in zip(xs, lengths):
                seeds = [r["final_val_loss"] for r in at[t] if r["final_val_loss"] is not None]
                ax2.plot([x] * len(seeds), seeds, marker=style["marker"], color=style["color"], markersize=3.5,
                         alpha=0.55, linestyle="none")
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
        finite = [r["final_val_loss"] for r in rows if r["final_val_loss"] is not None]
        if finite and min(finite) > 0:
            ax2.set_yscale("log")
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


def _results_caption(fig, study: Study, rows: list[dict]) -> None:
    """The results figure's "What to look for" line, with the study's counts."""
    from seqvg.report_view import caption
    from seqvg.tasks import get_task

    fig.get_layout_engine().set(rect=(0, 0.07, 1, 0.93))
    if study.probe_only:
        whole = sum((r["h_horizon"] or 0) >= get_task(r["task"]).seq_len(r["length"]) for r in rows)
        caption(fig, "where the decay rate (left) drops below 0 the gradient shrinks on its way back; "
                 f"{whole} of {len(rows)} probes keep it above 1e-3 of the last step's over the whole sequence.")
    else:
        solved = sum(r["solved"] in (True, "True") for r in rows)
        caption(fig, f"which cells and lengths solve the task: {solved} of {len(rows)} runs did; the final loss "
                 "(right) against the trivial baseline shows how close the others came.")


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


def expectation_table(study: Study) -> tuple[list[str], list[list[str]]]:
    """The spec's expected outcomes against the measured ones (seqvg.expect):
    the table that ``seqvg run --check`` prints and the report's "Expected
    and measured" page shows; its last column is OK or DEVIATES."""
    from seqvg.expect import check, check_table

    rows = results_rows(study)
    metric = next((r["metric_name"] for r in rows if r.get("metric_name")), "metric")
    return check_table(check(study.expectations, rows, study.probe_only), metric)


def check_expectations(study: Study):
    """The study's outcomes against its spec's [expect] tables, as an
    ``expect.Verdict`` (the table, whether all hold, a one-line summary)."""
    from seqvg.expect import Verdict

    return Verdict(*expectation_table(study))


def write_study_report(study: Study) -> Path:
    """Writes the study's PDF: the runs' report pages (training studies) and
    the results figure; for probe-only studies the curves and the results.
    A spec with [expect] tables adds the "Expected and measured" page last."""
    import matplotlib

    matplotlib.use("Agg")

    rows = results_rows(study)
    expected = []
    if study.expectations:
        from seqvg.expect import expected_figures

        expected = expected_figures(*expectation_table(study), study.name)
    if study.probe_only:
        from seqvg.pdf import write_pdf

        write_pdf(study.report, f"seqvg study {study.name}",
                  (probe_curves_figure(study), results_figure(study, rows), *(f for _, f in expected)))
    else:
        from seqvg.report import write_report

        runs = [rundir.load_run(d) for d in study.run_dirs()]
        # The report's own Study page plots the outcome against what varies.
        write_report(runs, study.report, extra_figures=expected)
    return study.report


def summary_table(study: Study) -> str:
    """The table ``seqvg run`` prints when a study is done, one line per run:
    the report's summary columns (training), or each probe's decay figures."""
    if study.probe_only:
        from seqvg.decay import format_summary

        header = ["run", "decay/100", "horizon", "g0/gT", "underflow"]
        rows = [[r["run"], format_summary(r["h_rate_per_100"]), format_summary(r["h_horizon"]),
                 format_summary(r["h_ratio"]), str(r["h_underflow"])] for r in results_rows(study)]
    else:
        from seqvg.report_text import summary_columns, summary_rows

        runs = [rundir.load_run(d) for d in study.run_dirs()]
        header = summary_columns(runs[0].summary.get("metric_name", "metric"))
        rows = summary_rows(runs)
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    return "\n".join("  ".join(str(x).ljust(w) for x, w in zip(row, widths)) for row in [header, *rows])
