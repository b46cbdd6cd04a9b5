"""The options the ``seqvg`` commands share, and their parsing into a ``RunConfig``.

    seqvg train --help    # MODEL_OPTIONS and TRAIN_OPTIONS, with every help text

Every run option (``MODEL_OPTIONS``, ``TRAIN_OPTIONS``) is one ``RunConfig``
field; ``run_config`` turns a command's options into a resolved config, a
``ConfigError`` into a usage error (exit 2) that names the option as typed.
The commands live in ``cli_runs`` (one run and its data), ``cli_reports``
(reading run directories) and ``cli_studies`` (many runs); ``cli`` is the
group that holds them.
"""

from __future__ import annotations

import os
import shlex
import sys

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
from seqvg.execpath import XLA_MIN_WORK
from seqvg.tasks import TASKS


class UserPath(click.Path):
    """``click.Path`` that expands a leading ``~`` as a shell would (the shell
    leaves ``--out=~/runs``, no space, as typed, and seqvg would otherwise
    make a directory named ``~``) and refuses an empty path, and for a file a
    path ending in ``/`` (usage errors)."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and not value.strip():
            self.fail("an empty path", param, ctx)  # '' is the working directory to pathlib
        if isinstance(value, str) and not self.dir_okay and value.endswith(("/", os.sep)):
            # pathlib drops the slash: `-o out/` wrote a file named "out".
            self.fail(f"{value}: a trailing '/' names a directory; give a file's name (e.g. {value}FILE)", param, ctx)
        if isinstance(value, str) and value.startswith("~"):
            value = os.path.expanduser(value)
        return super().convert(value, param, ctx)


def parse_task_args(ctx, param, values) -> dict:
    """``--task-arg KEY=VALUE`` (repeatable) as a dict; VALUE is read as TOML (3 is an int)."""
    from seqvg.spec import parse_assignments

    try:
        return parse_assignments(values, dashes=False, empty=False)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


def task_arg_help() -> str:
    """The help text of ``--task-arg``: every task's parameters and defaults."""
    from seqvg.tasks import TASK_ARGS

    listed = "; ".join(f"{t}: " + ", ".join(f"{a.name}={a.default}" for a in args) for t, args in TASK_ARGS.items())
    return f"Task parameter beyond --length, repeatable [defaults: {listed}]. See `seqvg tasks`."


MODEL_OPTIONS = [
    click.option("--task", type=click.Choice(list(TASKS)), default="adding", show_default=True,
                 help="Long-range task; `seqvg tasks` defines each, with its baseline and solved criterion."),
    click.option("--task-arg", "task_args", multiple=True, callback=parse_task_args, metavar="KEY=VALUE",
                 help=task_arg_help()),
    click.option("--length", "-T", type=int, default=100, show_default=True,
                 help="Dependency length T (sequences: copy T+20, selective-copy T+2M, recall 3K+T; "
                      "smnist and psmnist need 784)."),
    click.option("--cell", default="lstm", show_default=True, metavar="CELL",
                 help=f"Recurrent cell: {', '.join(CELLS + tuple(CELL_REGISTRY))} (irnn = ReLU RNN with identity "
                      "recurrent init, Le et al. 2015), or your own Keras RNN cell as package.module:Class or "
                      "path/to/file.py:Class. A custom cell trains on Keras's loop; with XLA only if its class sets "
                      f"seqvg_xla = True (measure with benchmarks/xla_payoff.py) and --steps x T >= {XLA_MIN_WORK:,}."),
    click.option("--cell-arg", "cell_args", multiple=True, metavar="KEY=VALUE",
                 help="Constructor argument of a custom cell, Class(units, KEY=VALUE, ...); VALUE is read as a "
                      "TOML value (0.5, true, \"relu\", [1, 2]; true/false, not Python's True/False), a bare word "
                      "as text (relu). Repeatable."),
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

CONFIG_FIELDS = set(RunConfig.__dataclass_fields__)


def apply_options(options):
    """A decorator that adds ``options`` (click options) to a command, in order."""
    def decorator(f):
        for option in reversed(options):
            f = option(f)
        return f

    return decorator


#: Config fields whose option is not the field's name with dashes.
_FLAGS = {"cell_args": "--cell-arg", "task_args": "--task-arg"}


def _flag(field: str) -> str:
    return _FLAGS.get(field, "--" + field.replace("_", "-"))


def usage_error(e: ConfigError) -> click.UsageError:
    """A ConfigError as click's usage error (exit 2), naming the option as typed."""
    if e.option:
        return click.BadParameter(str(e), param_hint=f"'{_flag(e.option)}'")
    return click.UsageError(str(e))


def parse_cell_args(kwargs: dict) -> dict:
    """kwargs with --cell-arg KEY=VALUE pairs as the config's cell_args mapping."""
    from seqvg.spec import parse_assignments

    items = kwargs.get("cell_args") or ()
    if isinstance(items, dict):
        return kwargs
    try:
        return {**kwargs, "cell_args": parse_assignments(items, dashes=False, identifiers=True)}
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="'--cell-arg'") from None


def run_config(kwargs: dict) -> RunConfig:
    """The resolved RunConfig of a command's options (others ignored); bad values are usage errors."""
    kwargs = parse_cell_args(kwargs)
    try:
        return RunConfig(**{k: v for k, v in kwargs.items() if k in CONFIG_FIELDS}).resolved()
    except ConfigError as e:
        raise usage_error(e) from None


def given_options(ctx: click.Context, kwargs: dict) -> list[str]:
    """Run options the user typed (not defaults)."""
    return [
        _flag(k)
        for k in kwargs
        if k in CONFIG_FIELDS and ctx.get_parameter_source(k) == ParameterSource.COMMANDLINE
    ]


def command_line() -> str:
    """The command line as typed, for config.json's provenance."""
    return " ".join(shlex.quote(a) for a in ["seqvg", *sys.argv[1:]])


def os_error_message(e: OSError) -> str:
    """One line for an operating-system fault: the file and the reason."""
    reason = e.strerror or str(e)
    return f"{e.filename}: {reason}" if e.filename else reason
