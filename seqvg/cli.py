"""The ``seqvg`` command line: a thin layer over seqvg's importable functions.

    seqvg train --task adding --cell gru --length 100
    seqvg probe --cell lstm --length 200
    seqvg generate adding --length 100 -n 64 --seed 0 -o batch.npz

Options parse into a frozen ``RunConfig``; bad values and combinations are
usage errors (exit code 2) with a one-line message, never a traceback. The
work is done by the library (training, probe, study, report, diagnose); this
module is long only because it holds every option's help text.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import click
from click.core import ParameterSource

from seqvg.config import (
    ACTIVATIONS,
    CELL_REGISTRY,
    CELLS,
    GATE_INITS,
    OPTIMIZERS,
    RECURRENT_INITS,
    ConfigError,
    RunConfig,
)
from seqvg.rundir import RESULTS_CSV, RESULTS_PNG, RunDirError
from seqvg.tasks import TASKS
from seqvg.tfsetup import import_tensorflow_quietly


def _parse_task_args(ctx, param, values) -> dict:
    """``--task-arg KEY=VALUE`` (repeatable) as a dict; VALUE is read as TOML (3 is an int)."""
    from seqvg.spec import parse_assignments

    try:
        return parse_assignments(values, dashes=False, empty=False)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


def _task_arg_help() -> str:
    from seqvg.tasks import TASK_ARGS

    listed = "; ".join(f"{t}: " + ", ".join(f"{a.name}={a.default}" for a in args) for t, args in TASK_ARGS.items())
    return f"Task parameter beyond --length, repeatable [defaults: {listed}]. See `seqvg tasks`."


MODEL_OPTIONS = [
    click.option("--task", type=click.Choice(list(TASKS)), default="adding", show_default=True,
                 help="Long-range task; `seqvg tasks` defines each, with its baseline and solved criterion."),
    click.option("--task-arg", "task_args", multiple=True, callback=_parse_task_args, metavar="KEY=VALUE",
                 help=_task_arg_help()),
    click.option("--length", "-T", type=int, default=100, show_default=True,
                 help="Dependency length T (sequences: copy T+20, selective-copy T+2M, recall 3K+T; "
                      "smnist and psmnist need 784)."),
    click.option("--cell", default="lstm", show_default=True, metavar="CELL",
                 help=f"Recurrent cell: {', '.join(CELLS + tuple(CELL_REGISTRY))} (irnn = ReLU RNN with identity "
                      "recurrent init, Le et al. 2015), or your own Keras RNN cell as package.module:Class or "
                      "path/to/file.py:Class."),
    click.option("--cell-arg", "cell_args", multiple=True, metavar="KEY=VALUE",
                 help="Constructor argument of a custom cell, Class(units, KEY=VALUE, ...); VALUE is read as a "
                      "TOML value (0.5, true, \"relu\", [1, 2]). Repeatable."),
    click.option("--units", type=int, default=128, show_default=True, help="Hidden units per layer."),
    click.option("--layers", type=int, default=1, show_default=True, help="Stacked recurrent layers."),
    click.option("--activation", type=click.Choice(ACTIVATIONS), default=None,
                 help="Activation of the vanilla cells [default: tanh; irnn: relu]."),
    click.option("--recurrent-init", type=click.Choice(RECURRENT_INITS), default=None,
                 help="Recurrent weight init [default: orthogonal; irnn: identity]."),
    click.option("--recurrent-gain", type=float, default=1.0, show_default=True, metavar="G",
                 help="Scale the vanilla cells' recurrent init by G (orthogonal, identity: sigma_max(W) = G)."),
    click.option("--gate-init", type=click.Choice(GATE_INITS), default=None,
                 help="Gate biases of LSTM/GRU at init. chrono [default]: chrono init (Tallec & Ollivier "
                      "2018) with T_MAX = the sequence length, so the gates start able to keep a memory as long "
                      "as the task needs, which is what gating is for; keras: Keras's own biases (LSTM forget "
                      "bias 1, others 0), whose memory spans a few steps. Vanilla cells have no gates."),
    click.option("--forget-bias", type=float, default=None,
                 help="LSTM forget-gate bias on top of --gate-init keras (implies it) [Keras: 1.0]."),
    click.option("--chrono", type=int, default=None, metavar="T_MAX",
                 help="Chrono init of LSTM/GRU gate biases for dependencies up to T_MAX "
                      "[default: the sequence length]."),
    click.option("--layer-norm", is_flag=True,
                 help="Layer normalisation inside the vanilla cell (Ba et al. 2016); rnn/irnn only."),
    click.option("--batch-norm", is_flag=True,
                 help="Batch normalisation between stacked recurrent layers (needs --layers >= 2)."),
    click.option("--residual", is_flag=True,
                 help="Skip connections around recurrent layers 2..N: out = x + layer(x) (needs --layers >= 2)."),
    click.option("--seed", type=int, default=0, show_default=True,
                 help="Seeds data, weights and the probe batch."),
    click.option("--probe-batch", type=int, default=64, show_default=True,
                 help="Samples in the fixed probe batch."),
]

TRAIN_OPTIONS = [
    click.option("--clip", type=float, default=0.0, show_default=True,
                 help="Global-norm gradient clipping threshold (Pascanu et al. 2013); 0 = off."),
    click.option("--optimizer", type=click.Choice(OPTIMIZERS), default="adam", show_default=True),
    click.option("--lr", type=float, default=1e-3, show_default=True, help="Learning rate."),
    click.option("--batch-size", type=int, default=64, show_default=True, help="Fresh samples per step."),
    click.option("--steps", type=int, default=5000, show_default=True, help="Maximum training steps."),
    click.option("--eval-every", type=int, default=100, show_default=True,
                 help="Steps between validation, metrics rows and checkpoints."),
    click.option("--val-size", type=int, default=512, show_default=True, help="Fixed validation samples."),
    click.option("--probe-every", type=int, default=None,
                 help="Steps between gradient probes [default: steps/20]."),
    click.option("--early-stop/--no-early-stop", default=True, show_default=True,
                 help="Stop once the validation metric meets the task's solved criterion."),
    click.option("--tensorboard", is_flag=True, help="Also write TensorBoard scalars to RUN/tensorboard."),
]

_CONFIG_FIELDS = set(RunConfig.__dataclass_fields__)

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


def _apply(options):
    def decorator(f):
        for option in reversed(options):
            f = option(f)
        return f

    return decorator


#: Config fields whose option is not the field's name with dashes.
_FLAGS = {"cell_args": "--cell-arg", "task_args": "--task-arg"}


def _flag(field: str) -> str:
    return _FLAGS.get(field, "--" + field.replace("_", "-"))


def _usage(e: ConfigError) -> click.UsageError:
    if e.option:
        return click.BadParameter(str(e), param_hint=f"'{_flag(e.option)}'")
    return click.UsageError(str(e))


def _parse_cell_args(kwargs: dict) -> dict:
    """kwargs with --cell-arg KEY=VALUE pairs as the config's cell_args mapping."""
    from seqvg.spec import parse_assignments

    items = kwargs.get("cell_args") or ()
    if isinstance(items, dict):
        return kwargs
    try:
        return {**kwargs, "cell_args": parse_assignments(items, dashes=False, identifiers=True)}
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="'--cell-arg'") from None


def _config(kwargs: dict) -> RunConfig:
    kwargs = _parse_cell_args(kwargs)
    try:
        return RunConfig(**{k: v for k, v in kwargs.items() if k in _CONFIG_FIELDS}).resolved()
    except ConfigError as e:
        raise _usage(e) from None


def _given(ctx: click.Context, kwargs: dict) -> list[str]:
    """Run options the user typed (not defaults)."""
    return [
        _flag(k)
        for k in kwargs
        if k in _CONFIG_FIELDS and ctx.get_parameter_source(k) == ParameterSource.COMMANDLINE
    ]


def _command_line() -> str:
    """The command line as typed, for config.json's provenance."""
    return " ".join(shlex.quote(a) for a in ["seqvg", *sys.argv[1:]])


_TF_COMMANDS = {"train", "probe", "compare", "run", "sweep"}


def os_error_message(e: OSError) -> str:
    """One line for an operating-system fault: the file and the reason."""
    reason = e.strerror or str(e)
    return f"{e.filename}: {reason}" if e.filename else reason


class _Group(click.Group):
    """Turns operating-system faults (disk full, read-only, no permission)
    into one-line errors with exit status 1 instead of tracebacks."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except OSError as e:
            raise click.ClickException(os_error_message(e)) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="seqvg")
@click.pass_context
def cli(ctx):
    """seqvg: see, measure and fix vanishing gradients in recurrent networks.

    \b
    seqvg train --cell gru --length 100      train one model, write runs/...
    seqvg probe --cell lstm --length 200     gradient norm per timestep at init
    seqvg diagnose runs/adding-gru-T100-s0   vanishing / exploding / healthy
    seqvg report runs/a runs/b -o r.pdf      multi-page PDF from run directories
    seqvg compare --cells rnn,lstm,gru       train several cells, one report
    seqvg sweep --lengths 50,100,200 -j 2    grid of cells x lengths x seeds
    seqvg run tasks/demo.toml                a ready-made study from tasks/
    seqvg generate adding -T 100 -n 64 -o b.npz   the data, for your own models
    seqvg tasks                              the tasks, their parameters and baselines
    """
    if ctx.invoked_subcommand in _TF_COMMANDS and "--help" not in sys.argv and "-h" not in sys.argv:
        try:
            import_tensorflow_quietly()
        except ModuleNotFoundError as e:
            if e.name != "tensorflow":
                raise
            raise click.ClickException(str(e)) from None


@cli.command()
@_apply(MODEL_OPTIONS + TRAIN_OPTIONS)
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run directory [default: runs/TASK-CELL-TLENGTH-sSEED].")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--overwrite", is_flag=True, help="Replace an existing run in --out.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
@click.pass_context
def train(ctx, out, resume, overwrite, quiet, **kwargs):
    """Train one model on a long-range task and write its run directory.

    The run directory holds config.json, metrics.csv (one row per
    --eval-every steps), probes.npz (gradient norm per timestep at init,
    every --probe-every steps and at the end), summary.json and model.keras.
    A run killed at any moment continues with --resume and ends with the
    metrics an uninterrupted run would have. Exit status: 0 done, 1 the loss
    diverged (NaN/Inf; files kept), 2 bad options, 130 interrupted.

    Every cell trains with the same optimiser settings. LSTM and GRU start
    with chrono init of their gate biases, T_MAX = the sequence length: the
    gates start able to hold a memory as long as the task, which is what
    gating is for (Keras's own biases: --gate-init keras). A run that does
    not solve says why and which commands to try next.

    \b
    Examples:
      seqvg train --task adding --cell gru --length 100
      seqvg train --cell rnn --length 100 --clip 1.0 --out runs/rnn-clip
      seqvg train --resume --out runs/rnn-clip
      seqvg train --cell my_cell.py:MyGRU --cell-arg keep_bias=1.0 --length 50
    """
    from seqvg.training import default_run_name, train as run_training

    if resume:
        if out is None:
            raise click.UsageError("--resume needs --out DIR, the run to continue")
        given = _given(ctx, kwargs)
        if given:
            raise click.UsageError(
                f"--resume takes the options from {out}/config.json; drop {', '.join(given)}"
            )
        if overwrite:
            raise click.UsageError("--resume and --overwrite contradict each other")
        cfg = RunConfig()
    else:
        cfg = _config(kwargs)
    out = out or Path("runs") / default_run_name(cfg)
    command = _command_line()
    try:
        summary = run_training(cfg, out, resume=resume, overwrite=overwrite, progress=not quiet, command=command)
    except ConfigError as e:
        raise _usage(e) from None
    except RunDirError as e:
        raise click.UsageError(str(e)) from None
    except KeyboardInterrupt:
        click.echo(f"Interrupted. Continue with: seqvg train --resume --out {out}", err=True)
        sys.exit(130)
    except OSError as e:
        hint = ""
        if (out / "config.json").exists():
            hint = f"; files kept: fix that, then continue with: seqvg train --resume --out {out}"
        raise click.ClickException(os_error_message(e) + hint) from None
    from seqvg.diagnose import format_run_summary

    click.echo(format_run_summary(out, summary))
    if summary["status"] == "diverged":
        raise click.ClickException(
            f"the loss diverged (NaN/Inf) at step {summary.get('diverged_at_step')}; files kept in {out}. "
            "Try --clip 1.0 or a lower --lr."
        )


@cli.command()
@click.argument("task", type=click.Choice(list(TASKS)))
@click.option("--length", "-T", type=int, required=True, help="Dependency length T.")
@click.option("--task-arg", "task_args", multiple=True, callback=_parse_task_args, metavar="KEY=VALUE",
              help=_task_arg_help())
@click.option("-n", "n", type=int, default=64, show_default=True, help="Number of samples.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed; -n 64 gives exactly the probe batch of a run with this seed.")
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Output .npz file.")
def generate(task, length, task_args, n, seed, out):
    """Write N samples of TASK to an .npz file (arrays x, y and the parameters).

    x holds the inputs exactly as seqvg's models read them (batch, time,
    features; symbols one-hot) and y the targets (adding: sums; copy,
    selective-copy, recall: class ids per step; the others: one class id per
    sample). Where only some steps are scored (selective-copy, recall), mask
    (batch, time) is True at those steps. The same seed gives the same file
    on every machine.
    """
    from seqvg.datasets import write_dataset
    from seqvg.tasks import get_task

    if length < 2:
        raise click.BadParameter(f"must be at least 2, got {length}", param_hint="'--length'")
    try:
        bound = get_task(task, task_args)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    if bound.check_length(length):
        raise click.BadParameter(bound.check_length(length), param_hint="'--length'")
    if n < 1:
        raise click.BadParameter(f"must be positive, got {n}", param_hint="'-n'")
    from seqvg.memory import check_data_memory
    from seqvg.rundir import check_writable

    try:
        check_data_memory(task, n, length, task_args=task_args)
    except ConfigError as e:
        raise click.BadParameter(str(e), param_hint="'-n'") from None
    check_writable(out)
    write_dataset(out, task, length, n, seed, task_args)
    shown = "".join(f" {k}={v}" for k, v in bound.params.items())
    click.echo(f"wrote {out}: {n} samples of {task} T={length}{shown}, seed {seed}")


@cli.command("tasks")
def tasks_command():
    """List the tasks: definition, source, parameters (--task-arg) with their
    defaults, trivial baseline, classic plateau and solved criterion."""
    from seqvg.tasks import describe_tasks

    click.echo(describe_tasks())


@cli.command()
@click.argument("run_dir", required=False, type=click.Path(file_okay=False, path_type=Path))
@_apply(MODEL_OPTIONS)
@click.option("--data", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Probe on this batch (a file from `seqvg generate`) instead of the seeded probe batch.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
@click.pass_context
def probe(ctx, run_dir, data, as_json, **kwargs):
    """Measure ||dL/dh_t|| (and ||dL/dc_t||, ||dL/dx_t||, every state of a
    custom cell) for every timestep t.

    With RUN_DIR: the run's final model. Without: an untrained model built
    from the options, in seconds (at init, which cell keeps its gradient?).
    All T values come from one backward pass through the recurrence.

    \b
    Examples:
      seqvg probe --cell lstm --length 200
      seqvg probe --cell lstm --length 200 --forget-bias 3
      seqvg probe runs/adding-gru-T100-s0 --json
      seqvg probe --cell docs/examples/my_gru.py:MyGRU --length 100
    """
    from seqvg.datasets import read_dataset
    from seqvg.probe import format_probe, probe_run, probe_untrained

    try:
        batch = read_dataset(data) if data else None
        if run_dir is not None:
            given = _given(ctx, kwargs)
            if given:
                raise click.UsageError(f"a run is probed with its own options; drop {', '.join(given)}")
            result, cfg = probe_run(run_dir, batch)
        else:
            cfg = _config(kwargs)
            result, cfg = probe_untrained(cfg, batch)
    except ConfigError as e:
        raise _usage(e) from None
    except (RunDirError, ValueError) as e:
        raise click.UsageError(str(e)) from None
    if as_json:
        click.echo(json.dumps(result.to_json()))
    else:
        click.echo(format_probe(result, cfg))


@cli.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), default=Path("reports/report.pdf"),
              show_default=True, help="The PDF to write.")
@click.option("--png", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also write each page as a PNG into this directory.")
def report(run_dirs, out, png):
    """Write a multi-page PDF report from one or more run directories.

    Pages: title (configs, versions, device), learning curves with the
    task's baselines, gradient norm per timestep at init and end, heatmaps of
    the gradient over training, the weight graph, and a summary table with a
    diagnosis per run. Made from the run directories alone (no retraining);
    the same runs give a byte-identical PDF.

    \b
    Example:
      seqvg report runs/rnn runs/lstm runs/gru -o reports/adding.pdf --png reports/adding
    """
    from seqvg.report import make_report
    from seqvg.rundir import check_writable

    # Before the work: a report that cannot be saved is not worth drawing.
    check_writable(out)
    if png is not None:
        check_writable(png, is_dir=True)
    try:
        titles = make_report(list(run_dirs), out, png)
    except RunDirError as e:
        raise click.UsageError(str(e)) from None
    click.echo(f"wrote {out} ({len(titles)} pages: {', '.join(titles)})")


@cli.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(file_okay=False, path_type=Path))
def diagnose(run_dirs):
    """Print a text diagnosis of each run: vanishing / exploding / healthy
    gradient flow with its evidence, a flat loss at the baseline, a plateau
    at a partial solution, lower layers that stopped changing, divergence."""
    from seqvg.diagnose import format_diagnosis
    from seqvg.rundir import load_run

    for path in run_dirs:
        try:
            run = load_run(path)
        except RunDirError as e:
            raise click.UsageError(str(e)) from None
        click.echo(f"{path}:")
        click.echo(format_diagnosis(run))


@cli.command()
@_apply(MODEL_OPTIONS + TRAIN_OPTIONS)
@click.option("--cells", default="rnn,lstm,gru", show_default=True, help="Comma-separated cells to compare.")
@click.option("--seeds", type=int, default=1, show_default=True, help="Runs per cell (seeds SEED..SEED+N-1).")
@WORKERS_OPTION
@YES_OPTION
@_apply(BACKEND_OPTIONS)
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/compare"),
              show_default=True, help="Directory of the runs (one sub-directory per cell and seed).")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the comparison report here [default: OUT/report.pdf].")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
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
    cell_list = [c.strip() for c in cells.split(",") if c.strip()]
    from seqvg.rundir import COMPARE_REPORT

    _run_grid(ctx, "compare", {"cell": cell_list}, seeds, out, report_path or out / COMPARE_REPORT, workers, quiet,
              kwargs, yes)


def _run_grid(ctx, name: str, grid: dict, seeds: int, out: Path, report_path, workers: int, quiet: bool,
              kwargs: dict, yes: bool) -> None:
    """compare and sweep: the grid (plural options) x seeds over the other options."""
    from seqvg.study import grid_study

    for key in grid:
        if ctx.get_parameter_source(key) == ParameterSource.COMMANDLINE:
            raise click.UsageError(f"{name} takes --{key}s, not --{key}")
    kwargs = _parse_cell_args(kwargs)
    options = {k: v for k, v in kwargs.items() if k in _CONFIG_FIELDS}
    try:
        study = grid_study(name, grid, seeds, options, out, report_path, command=_command_line())
    except ConfigError as e:
        if e.option in grid:  # a bad value of --cells/--lengths: name the option typed
            plural = f"--{e.option}s"
            raise click.BadParameter(str(e).replace(f"--{e.option} ", "", 1),
                                     param_hint=f"'{plural}'") from None
        raise _usage(e) from None
    click.echo(f"{name}: {len(study.configs)} runs in {out}", err=True)
    names = {o: "--" + o.replace("_", "-") for o in _CONFIG_FIELDS}
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
        raise _usage(e) from None
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


def _run_study(study, workers: int, quiet: bool, names: dict[str, str], yes: bool, backend=None) -> None:
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
        raise _usage(e) from None
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


@cli.command("run")
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
@WORKERS_OPTION
@YES_OPTION
@_apply(BACKEND_OPTIONS)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a run option in every run, e.g. --set steps=300 (repeatable).")
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory of the runs [default: the spec's 'out', else runs/NAME].")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="PDF to write [default: the spec's 'report', else reports/NAME.pdf].")
@click.option("--quiet", "-q", is_flag=True, help="No per-run progress bars.")
@click.option("--check", is_flag=True,
              help="Compare the outcomes with the spec's [expect] tables; exit 1 if any deviates.")
def run_spec(spec, workers, yes, overrides, out, report_path, quiet, check, **backend):
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
    """
    import dataclasses

    from seqvg.study import SpecError, check_expectations, load_spec

    if check and overrides:
        raise click.UsageError("--check compares with the spec's [expect] tables, measured without --set; "
                               "drop --set or --check")
    try:
        study = load_spec(spec, overrides=_parse_set(overrides), out=out, report=report_path)
    except SpecError as e:
        raise click.UsageError(str(e)) from None
    if check and not study.expectations:
        raise click.UsageError(f"{spec}: no [expect] table, so --check has nothing to compare")
    study = dataclasses.replace(study, command=_command_line())
    click.echo(f"{study.name}: {len(study.configs)} runs in {study.out}"
               + (" (probe only, no training)" if study.probe_only else ""), err=True)
    _run_study(study, workers, quiet, {o: f"--set {o}=..." for o in _CONFIG_FIELDS}, yes, _backend(backend))
    if check:
        verdict = check_expectations(study)
        click.echo("\nExpected and measured\n" + verdict.table())
        if not verdict.ok:
            raise click.ClickException(verdict.summary())
        click.echo(verdict.summary())


@cli.command()
@_apply(MODEL_OPTIONS + TRAIN_OPTIONS)
@click.option("--cells", default="rnn,lstm,gru", show_default=True, help="Comma-separated cells.")
@click.option("--lengths", default="50,100,200,400", show_default=True, help="Comma-separated lengths T.")
@click.option("--seeds", type=int, default=1, show_default=True, help="Runs per cell and length (SEED..SEED+N-1).")
@WORKERS_OPTION
@YES_OPTION
@_apply(BACKEND_OPTIONS)
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/sweep"),
              show_default=True, help="Directory of the runs, results.csv and results.png.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write a PDF report of all runs here.")
@click.option("--quiet", "-q", is_flag=True, help="No per-run progress bars.")
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
    cell_list = [c.strip() for c in cells.split(",") if c.strip()]
    try:
        length_list = [int(t) for t in lengths.split(",") if t.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {lengths!r}", param_hint="'--lengths'") from None
    _run_grid(ctx, "sweep", {"cell": cell_list, "length": length_list}, seeds, out, report_path, workers, quiet,
              kwargs, yes)
