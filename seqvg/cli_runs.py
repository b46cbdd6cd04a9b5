"""The ``seqvg`` commands on one run and its data: train, probe, generate, tasks.

    seqvg train --task adding --cell gru --length 100
    seqvg probe --cell lstm --length 200
    seqvg generate adding --length 100 -n 64 --seed 0 -o batch.npz
    seqvg tasks

Each command parses its options (``cli_options``), calls the library
(``training.train``, ``probe``, ``datasets``, ``tasks``) and prints; a bad
option is a usage error (exit 2) in one line, never a traceback.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import click

from seqvg.cli_options import (
    MODEL_OPTIONS,
    TRAIN_OPTIONS,
    UserPath,
    apply_options,
    command_line,
    given_options,
    os_error_message,
    parse_task_args,
    run_config,
    task_arg_help,
    usage_error,
)
from seqvg.config import MAX_SEED, ConfigError, RunConfig
from seqvg.rundir import RunDirError
from seqvg.tasks import TASKS


@click.command()
@apply_options(MODEL_OPTIONS + TRAIN_OPTIONS)
@click.option("--out", "-o", type=UserPath(file_okay=False, path_type=Path), default=None,
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
    diverged (NaN/Inf) or a disk fault (full, read-only; files kept, then
    --resume), 2 bad options or a bad run directory, 130 interrupted.

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
        given = given_options(ctx, kwargs)
        if given:
            raise click.UsageError(
                f"--resume takes the options from {out}/config.json; drop {', '.join(given)}"
            )
        if overwrite:
            raise click.UsageError("--resume and --overwrite contradict each other")
        cfg = RunConfig()
    else:
        cfg = run_config(kwargs)
    out = out or Path("runs") / default_run_name(cfg)
    command = command_line()
    _settle_threads(out if resume else cfg)
    try:
        summary = run_training(cfg, out, resume=resume, overwrite=overwrite, progress=not quiet, command=command)
    except ConfigError as e:
        if resume:  # the run's own options (config.json), not an option typed now
            raise click.UsageError(f"{out}: {e}") from None
        raise usage_error(e) from None
    except RunDirError as e:
        raise click.UsageError(str(e)) from None
    except KeyboardInterrupt:
        click.echo(f"Interrupted. Continue with: seqvg train --resume --out {shlex.quote(str(out))}", err=True)
        sys.exit(130)
    except OSError as e:
        hint = ""
        if (out / "config.json").exists():
            hint = f"; files kept: fix that, then continue with: seqvg train --resume --out {shlex.quote(str(out))}"
        raise click.ClickException(os_error_message(e) + hint) from None
    from seqvg.diagnose import format_run_summary

    click.echo(format_run_summary(out, summary))
    if summary["status"] == "diverged":
        raise click.ClickException(
            f"the loss diverged (NaN/Inf) at step {summary.get('diverged_at_step')}; files kept in {out}. "
            "Try --clip 1.0 or a lower --lr."
        )


@click.command()
@click.argument("task", type=click.Choice(list(TASKS)))
@click.option("--length", "-T", type=int, required=True, help="Dependency length T.")
@click.option("--task-arg", "task_args", multiple=True, callback=parse_task_args, metavar="KEY=VALUE",
              help=task_arg_help())
@click.option("-n", "n", type=int, default=64, show_default=True, help="Number of samples.")
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True,
              help="Seed; -n 64 gives exactly the probe batch of a run with this seed.")
@click.option("--out", "-o", type=UserPath(dir_okay=False, path_type=Path), required=True,
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
        raise click.BadParameter(str(e), param_hint="'--task-arg'" if e.option == "task_args" else "'-n'") from None
    if task in ("smnist", "psmnist"):
        # n distinct images of the training split (the probe batch's): more is -n's fault, not the file's.
        from seqvg.mnist import load_mnist, mnist_path

        have = len(load_mnist()["x_train"])
        if n > have:
            raise click.BadParameter(f"{task} draws {n} distinct images of MNIST's train split, which holds {have} "
                                     f"({mnist_path()}); use -n {have} or fewer", param_hint="'-n'")
    check_writable(out)
    write_dataset(out, task, length, n, seed, task_args)
    shown = "".join(f" {k}={v}" for k, v in bound.params.items())
    click.echo(f"wrote {out}: {n} sample{'' if n == 1 else 's'} of {task} T={length}{shown}, seed {seed}")


@click.command("tasks")
def tasks_command():
    """List the tasks: definition, source, parameters (--task-arg) with their
    defaults, trivial baseline, classic plateau and solved criterion."""
    from seqvg.tasks import describe_tasks

    click.echo(describe_tasks())


@click.command()
@click.argument("run_dir", required=False, type=UserPath(file_okay=False, path_type=Path))
@apply_options(MODEL_OPTIONS)
@click.option("--data", type=UserPath(dir_okay=False, exists=True, path_type=Path),
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
    import contextlib

    from seqvg.probe import format_probe

    # With --json, stdout holds the JSON alone: whatever a custom cell prints
    # (at import, while traced) goes to stderr.
    quiet_stdout = contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext()
    try:
        with quiet_stdout:
            result, cfg = _probe(ctx, run_dir, data, kwargs)
    except ConfigError as e:
        if run_dir is not None:  # the run's own options, not an option typed now
            raise click.UsageError(f"{run_dir}: {e}") from None
        raise usage_error(e) from None
    except (RunDirError, ValueError) as e:
        raise click.UsageError(str(e)) from None
    if as_json:
        from seqvg.rundir import json_clean

        # Strict JSON: a norm that overflowed is null, as in the run's own files (NaN is not JSON).
        click.echo(json.dumps(json_clean(result.to_json()), allow_nan=False))
    else:
        click.echo(format_probe(result, cfg))


def _settle_threads(run: RunConfig | Path) -> None:
    """TensorFlow's inter-op threads for this process's one run
    (``execpath.settle_inter_op``): a config's cell, or the cell of the run in
    a directory (whose config.json, if unreadable, the command reports)."""
    from seqvg.execpath import settle_inter_op
    from seqvg.rundir import read_config

    try:
        cfg = run if isinstance(run, RunConfig) else read_config(run, resolve=False)
    except (RunDirError, OSError):
        return
    settle_inter_op([cfg.cell])


def _probe(ctx, run_dir, data, kwargs):
    """probe's work: (ProbeResult, cfg) of RUN_DIR's final model, or of the options' untrained one."""
    from seqvg.datasets import read_dataset
    from seqvg.probe import probe_run, probe_untrained

    if data and "--probe-batch" in given_options(ctx, kwargs):
        # The batch is the file's samples: --probe-batch would be ignored without a word.
        raise click.BadParameter(f"the probe runs on the samples of --data {data}; drop --probe-batch "
                                 "(seqvg generate -n sets how many a file holds)", param_hint="'--probe-batch'")
    batch = read_dataset(data) if data else None
    if run_dir is not None:
        given = given_options(ctx, kwargs)
        if given:
            raise click.UsageError(f"a run is probed with its own options; drop {', '.join(given)}")
        _settle_threads(run_dir)
        return probe_run(run_dir, batch)
    cfg = run_config(kwargs)
    _settle_threads(cfg)
    return probe_untrained(cfg, batch)
