"""The ``seqvg`` commands that run many runs as one study: run, compare, sweep.

    seqvg run tasks/demo.toml --workers 2
    seqvg compare --task adding --length 100 --cells rnn,lstm,gru
    seqvg sweep --cells rnn,lstm,gru --lengths 50,100,200 --seeds 3 --workers 2

A spec file (``seqvg.spec.load_spec``) or a grid of options
(``seqvg.spec.grid_study``) becomes a Study, which ``seqvg.study.run_study``
runs resumably on a local process pool or a Ray cluster; the results table
and figure come from ``seqvg.results``. This module only turns the options
into those calls and their errors into one-line messages.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from click.core import ParameterSource

from seqvg.cli_options import (
    CONFIG_FIELDS,
    MODEL_OPTIONS,
    TRAIN_OPTIONS,
    UserPath,
    apply_options,
    command_line,
    parse_cell_args,
    usage_error,
)
from seqvg.config import ConfigError
from seqvg.rundir import RESULTS_CSV, RESULTS_PNG, RunDirError

YES_OPTION = click.option("--yes", "-y", is_flag=True,
                          help="Start a study of more than 100 runs without asking.")

#: A study with more runs than this says how long it will take and asks first.
LARGE_STUDY = 100

WORKERS_OPTION = click.option("--workers", "-j", type=int, default=1, show_default=True,
                              help="Runs in parallel processes (TensorFlow threads split between them).")

BACKEND_OPTIONS = [
    click.option("--backend", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                 help="Where the runs go: processes on this machine (--workers), or a Ray cluster."),
    click.option("--address", default=None, metavar="HOST:PORT",
                 help="Ray: the cluster [default: $RAY_ADDRESS, else the Ray instance started on this "
                      "machine, else a new one for this study]."),
    click.option("--cpus-per-run", type=int, default=None,
                 help="Ray: CPUs (TensorFlow threads) per run [default: the cluster's CPUs / runs, at least 1]."),
    click.option("--gpus-per-run", type=float, default=0.0, show_default=True, help="Ray: GPUs per run."),
]



def grid_study_options(out_default: str, out_help: str, report_help: str, quiet_help: str) -> list:
    """The options compare and sweep share after their grid options, in
    --help order: --workers, --yes, the backend, --out, --report, --quiet."""
    return [
        WORKERS_OPTION,
        YES_OPTION,
        *BACKEND_OPTIONS,
        click.option("--out", "-o", type=UserPath(file_okay=False, path_type=Path), default=Path(out_default),
                     show_default=True, help=out_help),
        click.option("--report", "report_path", type=UserPath(dir_okay=False, path_type=Path), default=None,
                     help=report_help),
        click.option("--quiet", "-q", is_flag=True, help=quiet_help),
    ]

@click.command()
@apply_options(MODEL_OPTIONS + TRAIN_OPTIONS)
@click.option("--cells", default="rnn,lstm,gru", show_default=True, help="Comma-separated cells to compare.")
@click.option("--seeds", type=int, default=1, show_default=True, help="Runs per cell (seeds SEED..SEED+N-1).")
@apply_options(grid_study_options(
    "runs/compare", out_help="Directory of the runs (one sub-directory per cell and seed).",
    report_help="Write the comparison report here [default: OUT/report.pdf].", quiet_help="No progress output."))
@click.pass_context
def compare(ctx, cells, seeds, workers, yes, out, report_path, quiet, **kwargs):
    """Train several cells on the same task and report them side by side.

    Runs live in OUT/CELL-sSEED; running the same command again skips the
    finished runs and resumes interrupted ones. Also writes OUT/results.csv
    and OUT/results.png. Takes --cells, not --cell.

    \b
    Example:
      seqvg compare --task adding --length 100 --cells rnn,lstm,gru --report reports/adding.pdf
    """
    cell_list = split_cells(cells)
    from seqvg.rundir import COMPARE_REPORT

    _run_grid(ctx, "compare", {"cell": cell_list}, seeds, out, report_path or out / COMPARE_REPORT, workers, quiet,
              kwargs, yes)


def split_cells(text: str) -> list[str]:
    """``--cells`` as a list: split on commas, except a comma inside a cell
    file's path (``my,cells/gru.py:MyGRU``): pieces are joined up to the next
    one with a ``:`` when the joined path names an existing file.
    """
    from seqvg.config import CELL_REGISTRY, CELLS

    raw = text.split(",")
    pieces = [c.strip() for c in raw]
    out, i = [], 0
    while i < len(pieces):
        piece = pieces[i]
        if piece and piece not in CELLS and piece not in CELL_REGISTRY and ":" not in piece:
            j = next((k for k in range(i + 1, len(pieces)) if ":" in pieces[k]), None)
            if j is not None:
                joined = ",".join(raw[i:j + 1]).strip()  # the user's spelling, commas back
                if Path(joined.rpartition(":")[0]).expanduser().is_file():
                    out.append(joined)
                    i = j + 1
                    continue
        if piece:
            out.append(piece)
        i += 1
    return out


def _run_grid(ctx, name: str, grid: dict, seeds: int, out: Path, report_path, workers: int, quiet: bool,
              kwargs: dict, yes: bool) -> None:
    """compare and sweep: the grid (plural options) x seeds over the other options."""
    from seqvg.study import grid_study

    for key in grid:
        if ctx.get_parameter_source(key) == ParameterSource.COMMANDLINE:
            raise click.UsageError(f"{name} takes --{key}s, not --{key}")
    kwargs = parse_cell_args(kwargs)
    options = {k: v for k, v in kwargs.items() if k in CONFIG_FIELDS}
    try:
        study = grid_study(name, grid, seeds, options, out, report_path, command=command_line())
    except ConfigError as e:
        if e.option in grid:  # a bad value of --cells/--lengths: name the option typed
            plural = f"--{e.option}s"
            raise click.BadParameter(str(e).replace(f"--{e.option} ", "", 1),
                                     param_hint=f"'{plural}'") from None
        raise usage_error(e) from None
    click.echo(f"{name}: {len(study.configs)} runs in {out}", err=True)
    names = {o: "--" + o.replace("_", "-") for o in CONFIG_FIELDS}
    names.update({k: f"--{k}s" for k in grid})
    _run_study(study, workers, quiet, names, yes, _backend(kwargs))


def _backend(opts: dict):
    """The backend the options ask for (seqvg.ray_backend.make_backend), None for the local pool."""
    from seqvg.ray_backend import RAY_OPTIONS, make_backend

    ctx = click.get_current_context()
    given = {k for k in ("workers", *RAY_OPTIONS) if ctx.get_parameter_source(k) == ParameterSource.COMMANDLINE}
    try:
        return make_backend(opts["backend"], opts["address"], opts["cpus_per_run"], opts["gpus_per_run"], given)
    except ConfigError as e:
        raise usage_error(e) from None
    except ImportError as e:
        raise click.UsageError(str(e)) from None


def _parse_set(items) -> dict:
    """--set KEY=VALUE pairs; VALUE is read as a TOML value (1e-3, true, "x")."""
    from seqvg.spec import parse_assignments

    try:
        return parse_assignments(items)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="'--set'") from None


def _confirm_large(study, workers: int, yes: bool, todo: int, seconds: float) -> None:
    """Says how many runs and roughly how long a large study takes; asks first."""
    if todo <= LARGE_STUDY:
        return
    when = f"{seconds / 3600:.1f} hours" if seconds >= 3600 else f"{seconds / 60:.0f} minutes"
    what = (f"{study.name}: {todo} runs to do, roughly {when} with --workers {workers} "
            "(estimated from seqvg's training speed on 2 CPU cores)")
    if yes:
        click.echo(what, err=True)
    elif sys.stdin.isatty():
        click.confirm(what + "; start?", abort=True, err=True)
    else:
        raise click.UsageError(what + f"; a study of more than {LARGE_STUDY} runs starts only with --yes")


def _run_study(study, workers: int, quiet: bool, names: dict[str, str], yes: bool, backend=None,
               spec: Path | None = None) -> None:
    from seqvg.ray_backend import BackendError, RunsFailed
    from seqvg.study import run_study, summary_table, write_study_report

    if workers < 1:
        raise click.BadParameter(f"must be at least 1, got {workers}", param_hint="'--workers'")
    try:
        run_study(study, workers=workers, progress=not quiet, echo=lambda m: click.echo(m, err=True),
                  backend=backend, names=names,
                  confirm=lambda todo, seconds: _confirm_large(study, workers, yes, todo, seconds))
        if study.report is not None:
            write_study_report(study)
        click.echo(summary_table(study))
    except ConfigError as e:
        if spec is not None and e.option in ("cell", "cell_args"):  # the spec's cell, not a --cell typed
            raise click.UsageError(f"{spec}: {e.option}: {e}") from None
        raise usage_error(e) from None
    except RunDirError as e:
        raise click.UsageError(str(e)) from None
    except (BackendError, RunsFailed) as e:
        raise click.ClickException(str(e)) from None
    except KeyboardInterrupt:
        click.echo("Interrupted. Run the same command again to resume.", err=True)
        sys.exit(130)
    click.echo(f"results: {study.out / RESULTS_CSV}  figure: {study.out / RESULTS_PNG}")
    if study.report is not None:
        click.echo(f"report: {study.report}")


@click.command("run")
@click.argument("spec", type=UserPath(dir_okay=False, path_type=Path))
@WORKERS_OPTION
@YES_OPTION
@apply_options(BACKEND_OPTIONS)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a run option in every run, e.g. --set steps=300 (repeatable).")
@click.option("--seeds", "n_seeds", type=click.IntRange(min=1), default=None, metavar="N",
              help="Run every point with seeds 0..N-1 instead of the spec's seeds (finished runs are kept), "
                   "e.g. --seeds 5 --check to test a one-seed spec's claim on the five seeds it was measured on.")
@click.option("--out", "-o", type=UserPath(file_okay=False, path_type=Path), default=None,
              help="Directory of the runs [default: the spec's 'out', else runs/NAME].")
@click.option("--report", "report_path", type=UserPath(dir_okay=False, path_type=Path), default=None,
              help="PDF to write [default: the spec's 'report', else reports/NAME.pdf].")
@click.option("--quiet", "-q", is_flag=True, help="No per-run progress bars.")
@click.option("--check", is_flag=True,
              help="Compare the outcomes with the spec's [expect] tables; exit 1 if any deviates.")
def run_spec(spec, workers, yes, overrides, n_seeds, out, report_path, quiet, check, **backend):
    """Run a study spec (tasks/*.toml): its grid of runs, results and report.

    Finished runs are skipped and interrupted ones resumed, so the same
    command after a crash or Ctrl-C finishes the study. Writes
    OUT/results.csv, OUT/results.png and the report PDF.

    \b
    Examples:
      seqvg run tasks/demo.toml
      seqvg run tasks/remedies.toml --workers 2
      seqvg run tasks/assignment-1-vanishing.toml --set steps=500 --out runs/a1-quick
      seqvg run tasks/assignment-1-vanishing.toml --check
      seqvg run tasks/demo.toml --seeds 5 --check
    """
    import dataclasses

    from seqvg.study import SpecError, check_expectations, load_spec

    if check and overrides:
        raise click.UsageError("--check compares with the spec's [expect] tables, measured without --set; "
                               "drop --set or --check")
    try:
        study = load_spec(spec, overrides=_parse_set(overrides), out=out, report=report_path, seeds=n_seeds)
    except SpecError as e:
        raise click.UsageError(str(e)) from None
    if check and not study.expectations:
        raise click.UsageError(f"{spec}: no [expect] table, so --check has nothing to compare")
    study = dataclasses.replace(study, command=command_line())
    click.echo(f"{study.name}: {len(study.configs)} runs in {study.out}"
               + (" (probe only, no training)" if study.probe_only else ""), err=True)
    _run_study(study, workers, quiet, {o: f"--set {o}=..." for o in CONFIG_FIELDS}, yes, _backend(backend),
               spec=spec)
    if check:
        verdict = check_expectations(study)
        click.echo("\nExpected and measured\n" + verdict.table())
        if not verdict.ok:
            raise click.ClickException(verdict.summary())
        click.echo(verdict.summary())


@click.command()
@apply_options(MODEL_OPTIONS + TRAIN_OPTIONS)
@click.option("--cells", default="rnn,lstm,gru", show_default=True, help="Comma-separated cells.")
@click.option("--lengths", default="50,100,200,400", show_default=True, help="Comma-separated lengths T.")
@click.option("--seeds", type=int, default=1, show_default=True, help="Runs per cell and length (SEED..SEED+N-1).")
@apply_options(grid_study_options(
    "runs/sweep", out_help="Directory of the runs, results.csv and results.png.",
    report_help="Also write a PDF report of all runs here.", quiet_help="No per-run progress bars."))
@click.pass_context
def sweep(ctx, cells, lengths, seeds, workers, yes, out, report_path, quiet, **kwargs):
    """Train every cell at every length and seed; tabulate and plot the outcome.

    OUT/results.csv has one row per run (options, solved, steps to solve,
    final metric, gradient-decay figures at init and at the end);
    OUT/results.png plots the solved fraction and the median final loss
    against length, per cell. Resumable like `seqvg run`. --cell and
    --length are replaced by --cells and --lengths.

    \b
    Example:
      seqvg sweep --task adding --cells rnn,lstm,gru --lengths 50,100,200,400 --seeds 3 --workers 2
    """
    cell_list = split_cells(cells)
    try:
        length_list = [int(t) for t in lengths.split(",") if t.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {lengths!r}", param_hint="'--lengths'") from None
    _run_grid(ctx, "sweep", {"cell": cell_list, "length": length_list}, seeds, out, report_path, workers, quiet,
              kwargs, yes)


def _hide(command: click.Command, *names: str) -> None:
    """Leaves the singular options a grid command refuses (--cell for --cells)
    out of its --help, which listed them with a default as if they worked."""
    for param in command.params:
        if param.name in names:
            param.hidden = True


_hide(compare, "cell")
_hide(sweep, "cell", "length")
