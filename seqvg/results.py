"""What a study's runs came to: results.csv, the study's PDF and tables (results.png: results_figures).

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
from seqvg.results_figures import probe_curves_figure, results_figure
from seqvg.spec import Study, study_labels
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
            rundir.check_summary(s, d / rundir.SUMMARY)
            # A finished run's summary holds all of these (seqvg writes them at once); one gone is a hand edit.
            missing = [k for k in ("solved_at_step", "steps_done", "final", "metric_name", "baseline", "decay")
                       if k not in s] + [f"final.{k}" for k in ("val_loss", "val_metric") if k not in (s.get("final") or {})]
            if missing:
                raise rundir.RunDirError(f"{d / rundir.SUMMARY}: corrupt (no {', '.join(missing)})")
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
        write_png(study.out / rundir.RESULTS_PNG, fig, check=False)  # OUT holds only seqvg's files
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
        header = summary_columns(runs)
        rows = summary_rows(runs)
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    return "\n".join("  ".join(str(x).ljust(w) for x, w in zip(row, widths)) for row in [header, *rows])
