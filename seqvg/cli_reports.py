"""The ``seqvg`` commands that read run directories: report, diagnose.

    seqvg report runs/rnn runs/lstm runs/gru -o reports/adding.pdf
    seqvg diagnose runs/adding-gru-T100-s0
    seqvg diagnose runs/demo

Nothing here trains or rebuilds a model: the PDF (``seqvg.report``) and the
diagnosis (``seqvg.diagnose``) come from the files of the runs alone.
"""

from __future__ import annotations

from pathlib import Path

import click

from seqvg.cli_options import UserPath
from seqvg.rundir import RunDirError


@click.command()
@click.argument("run_dirs", nargs=-1, required=True, type=UserPath(path_type=Path))
@click.option("--out", "-o", type=UserPath(dir_okay=False, path_type=Path), default=Path("reports/report.pdf"),
              show_default=True, help="The PDF to write.")
@click.option("--png", type=UserPath(file_okay=False, path_type=Path), default=None,
              help="Also write each page as a PNG into this directory.")
def report(run_dirs, out, png):
    """Write a multi-page PDF report from run directories, or from a study's
    directory (all its runs).

    Pages: title (the outcome per run, three findings, the commands that
    made the runs); Study (when runs differ by more than their seed: outcome
    and decay rate against what varies); learning curves with the task's
    baselines; gradient flow (gradient norm per timestep at init and end);
    Why: the carry path; Spectrum; gradient flow over training (heatmaps);
    the weight graph; a summary table with a diagnosis per run; appendix
    pages with every run on its own when seeds are drawn as bands. Made from
    the run directories alone (no retraining); the same runs give a
    byte-identical PDF. A run that has not written its first results yet is
    left out, with a note.

    \b
    Examples:
      seqvg report runs/rnn runs/lstm runs/gru -o reports/adding.pdf --png reports/adding
      seqvg report runs/demo -o reports/demo.pdf
    """
    from seqvg.pdf import image_name_problem
    from seqvg.report import make_report
    from seqvg.rundir import check_writable, find_runs, inside_run_problem

    if problem := image_name_problem(out):
        raise click.BadParameter(problem, param_hint="'--out' / '-o'")

    # Before the work: a report that cannot be saved is not worth drawing.
    # (Whether it would replace a file of the user's, -o or a page PNG, is
    # checked once the runs are read and before any page is drawn.)
    # Not into a run: a run directory holds only the run's own files, and a
    # report or pages there made the study that owns it refuse its directory.
    for option, shown, where in (("--out", out, out.parent), ("--png", png, png)):
        if where is not None and (problem := inside_run_problem(shown, where)):
            raise click.BadParameter(problem, param_hint=f"'{option}'")
    check_writable(out)
    if png is not None:
        check_writable(png, is_dir=True)
    try:
        found, notes = find_runs(run_dirs)
        for note in notes:
            click.echo(note, err=True)
        titles = make_report(found, out, png)
    except RunDirError as e:
        raise click.UsageError(str(e)) from None
    click.echo(f"wrote {out} ({len(titles)} pages: {', '.join(titles)})")


@click.command()
@click.argument("run_dirs", nargs=-1, required=True, type=UserPath(path_type=Path))
def diagnose(run_dirs):
    """Print a text diagnosis of each run: vanishing / exploding / healthy
    gradient flow with its evidence, a flat loss at the baseline, a plateau
    at a partial solution, lower layers that stopped changing, divergence.

    Takes run directories, or a study's directory (all its runs).

    \b
    Examples:
      seqvg diagnose runs/adding-gru-T100-s0
      seqvg diagnose runs/demo
    """
    from seqvg.diagnose import format_diagnosis
    from seqvg.labels import run_labels, sort_order
    from seqvg.rundir import find_runs, load_run

    try:
        found, notes = find_runs(run_dirs, what="diagnose")
    except RunDirError as e:
        raise click.UsageError(str(e)) from None
    for note in notes:
        click.echo(note, err=True)
    try:
        runs = [load_run(path) for path in found]
    except RunDirError as e:
        raise click.UsageError(str(e)) from None
    # A study's runs in the report's order (length, cell, options, seed), not
    # the directory listing's, which puts T100 before T25; runs named one by
    # one stay in the order given.
    order = range(len(runs))
    if len(run_dirs) == 1 and runs:
        order = sort_order(run_labels([r.cfg for r in runs], [r.name for r in runs]))
    for i in order:
        click.echo(f"{runs[i].path}:")
        click.echo(format_diagnosis(runs[i]))
