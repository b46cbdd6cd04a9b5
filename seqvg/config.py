"""The one frozen config of a run; its fields map 1:1 to ``seqvg train`` options.

    from seqvg.config import RunConfig
    cfg = RunConfig(cell="gru", length=100).resolved()

``resolved()`` fills the defaults that depend on other fields (activation and
recurrent init of the vanilla cells, the gate initialisation of the gated
cells, the probe schedule) so that config.json records every value the run
actually used.

Gated cells default to chrono initialisation (Tallec & Ollivier 2018) with
T_max = the task's sequence length: the gating argument is that gates let a
cell keep its state for as long as the task needs, and chrono init starts the
gates at time scales spread up to that length instead of Keras's forget bias
of 1 (a memory of a few steps). Keras's own biases are ``gate_init="keras"``
(``--gate-init keras``). Vanilla cells have no gates: ``"keras"`` is accepted
there (a spec can set it across a grid of cells) and resolves to None.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
from dataclasses import dataclass
from pathlib import Path

from seqvg.tasks import TASKS, get_task, resolve_task_args

CELLS = ("rnn", "irnn", "lstm", "gru")
#: Cells seqvg ships as modules of their own, by name. Each name resolves
#: exactly like a user's ``--cell package.module:Class`` (``seqvg.customcell``),
#: so a shipped cell is trained, probed and checked like any custom one.
#: Adding one is one line, e.g. ``"mingru": "seqvg.cells.mingru:MinGRUCell",``.
CELL_REGISTRY: dict[str, str] = {
    "mingru": "seqvg.cells.mingru:MinGRUCell",
    "minlstm": "seqvg.cells.minlstm:MinLSTMCell",
    "indrnn": "seqvg.cells.indrnn:IndRNNCell",
    "lru": "seqvg.cells.lru:LRUCell",
}
ACTIVATIONS = ("tanh", "sigmoid", "relu", "leaky_relu")
RECURRENT_INITS = ("orthogonal", "glorot", "identity")
OPTIMIZERS = ("adam", "rmsprop", "sgd")
GATE_INITS = ("chrono", "keras")


class ConfigError(ValueError):
    """An invalid option or combination of options (a usage error)."""

    def __init__(self, message: str, option: str | None = None):
        super().__init__(message)
        self.option = option


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one training run (see ``seqvg train --help``)."""

    task: str = "adding"
    #: Task parameters beyond the length (``--task-arg KEY=VALUE``, a spec's
    #: ``[task_args]``); resolved() fills in the task's defaults.
    task_args: dict = dataclasses.field(default_factory=dict)
    length: int = 100
    cell: str = "lstm"
    units: int = 128
    layers: int = 1
    activation: str | None = None
    recurrent_init: str | None = None
    recurrent_gain: float = 1.0
    gate_init: str | None = None
    forget_bias: float | None = None
    chrono: int | None = None
    layer_norm: bool = False
    batch_norm: bool = False
    residual: bool = False
    clip: float = 0.0
    optimizer: str = "adam"
    lr: float = 1e-3
    batch_size: int = 64
    steps: int = 5000
    eval_every: int = 100
    val_size: int = 512
    probe_every: int | None = None
    probe_batch: int = 64
    early_stop: bool = True
    seed: int = 0
    tensorboard: bool = False
    cell_args: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        for f in dataclasses.fields(self):
            _check_field_type(f.name, str(f.type), getattr(self, f.name))

    def __hash__(self):
        # Hashable like any frozen config: the cell_args dict by its JSON text.
        return hash(tuple(json.dumps(v, sort_keys=True) if isinstance(v, dict) else v
                          for v in (getattr(self, f.name) for f in dataclasses.fields(self))))

    def resolved(self) -> RunConfig:
        """Validates and returns a copy with every dependent default filled in.

        Raises:
            ConfigError: naming the offending option.
        """
        validate(self)
        changes: dict = {}
        if is_custom_cell(self.cell):
            # The cell's own defaults hold; a file's path is made absolute
            # (relative to the working directory) so the config names one file.
            changes["cell"] = absolute_cell_spec(self.cell)
        elif self.cell in ("rnn", "irnn"):
            if self.activation is None:
                changes["activation"] = "relu" if self.cell == "irnn" else "tanh"
            if self.recurrent_init is None:
                changes["recurrent_init"] = "identity" if self.cell == "irnn" else "orthogonal"
            if self.gate_init is not None:
                changes["gate_init"] = None  # no gates: nothing to initialise
        else:
            if self.recurrent_init is None:
                changes["recurrent_init"] = "orthogonal"
            gate_init = self.gate_init
            if gate_init is None:
                # --forget-bias modifies Keras's init; --chrono is chrono init.
                gate_init = "keras" if self.forget_bias is not None else "chrono"
                changes["gate_init"] = gate_init
            if gate_init == "chrono" and self.chrono is None:
                changes["chrono"] = default_chrono(self)
        if self.probe_every is None:
            changes["probe_every"] = max(1, self.steps // 20)
        task_args = resolve_task_args(self.task, self.task_args)
        if task_args != self.task_args:
            changes["task_args"] = task_args
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """The config as a JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        """Builds a config from ``to_dict`` output; unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ConfigError(f"unknown config keys: {', '.join(sorted(unknown))}")
        if "gate_init" not in d and d.get("cell") in ("lstm", "gru") and d.get("chrono") is None:
            # Written before gate_init existed, when Keras's biases were the default.
            d = {**d, "gate_init": "keras"}
        return cls(**d)

    @property
    def seq_len(self) -> int:
        """Timesteps the model reads (copy adds 20 to the length)."""
        return get_task(self.task, self.task_args).seq_len(self.length)


def _check_field_type(name: str, kind: str, value) -> None:
    """Raises ConfigError unless ``value`` fits the field's annotation."""
    base, optional = kind.split("|")[0].strip(), "None" in kind
    if value is None and optional:
        return
    ok = {
        "int": isinstance(value, numbers.Integral) and not isinstance(value, bool),
        "float": isinstance(value, numbers.Real) and not isinstance(value, bool),
        "str": isinstance(value, str),
        "bool": isinstance(value, bool),
        "dict": isinstance(value, dict),
    }[base]
    if not ok:
        raise ConfigError(f"{name} must be {'an' if base == 'int' else 'a'} {base}"
                          f"{' or None' if optional else ''}, got {type(value).__name__} {value!r}", name)
    if base == "float" and not math.isfinite(value):
        raise ConfigError(f"--{name.replace('_', '-')} must be a finite number, got {value}", name)


def option_differences(held: RunConfig, wanted: RunConfig, most: int = 3) -> str:
    """The options in which a run on disk (``held``) differs from the one
    asked for, for messages: "--units 16, not 32; --steps 40, not 20"."""
    theirs, mine = held.to_dict(), wanted.to_dict()
    differ = [k for k in mine if mine[k] != theirs[k]]
    # Options resolved from others (a cell's defaults, the probe schedule)
    # only where nothing the user typed differs.
    derived = ("probe_every", "chrono", "gate_init", "activation", "recurrent_init", "task_args")
    differ = [k for k in differ if k not in derived] or differ
    return "; ".join(f"--{k.replace('_', '-')} {theirs[k]}, not {mine[k]}" for k in differ[:most])


def default_run_name(cfg: RunConfig) -> str:
    """Directory name of a run under runs/: task, cell, length and seed."""
    return f"{cfg.task}-{cell_label(cfg.cell)}-T{cfg.length}-s{cfg.seed}"


def is_custom_cell(cell: str) -> bool:
    """True for a registered cell name or ``module:Class`` / ``file.py:Class``."""
    return cell in CELL_REGISTRY or ":" in cell


def cell_label(cell: str) -> str:
    """A short name of a cell for directory names and labels: a built-in
    or registered name as it is, a custom cell by its class name."""
    if cell in CELLS or cell in CELL_REGISTRY or ":" not in cell:
        return cell
    return cell.rpartition(":")[2]


def scope_name(name: str) -> str:
    """``name`` as TensorFlow accepts it for a layer's name scope: accents
    dropped (``Zellé`` -> ``Zelle``), any other character outside
    ``[A-Za-z0-9_.-]`` as ``_``; a name that then starts with neither a
    letter, a digit nor a dot gets ``cell`` in front. ASCII names of those
    characters come back unchanged, so the layer names of existing runs
    stay as they were.
    """
    import re
    import unicodedata

    ascii_ = "".join(unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode() or "_" for ch in name)
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", ascii_)
    return safe if re.match(r"[A-Za-z0-9.]", safe) else "cell" + safe


def default_chrono(cfg: RunConfig) -> int:
    """T_max of the default chrono init: the task's sequence length (at least 3).

    The longest dependency a task can hold is its whole sequence (adding: the
    first marker can sit at step 0 and the answer is read at T-1).
    """
    return default_chrono_for(cfg.task, cfg.length, cfg.task_args)


def default_chrono_for(task: str, length: int, task_args: dict | None = None) -> int:
    """``default_chrono`` from the task and length alone (for config dicts)."""
    return max(3, get_task(task, task_args).seq_len(length))


def _positive(cfg: RunConfig, name: str) -> None:
    value = getattr(cfg, name)
    if value is None or value <= 0:
        raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {value}", name)


#: The largest --recurrent-gain: every init's largest weight (glorot's, at
#: most sqrt(3)) times it stays below float32's largest number, 3.4e38.
MAX_RECURRENT_GAIN = 1e38

#: The largest --seed: 2**32 - 1, what numpy's legacy seeding (Keras's) accepts.
MAX_SEED = 2**32 - 1


def validate(cfg: RunConfig) -> None:
    """Raises ConfigError for a bad value or an incompatible combination."""
    for f in dataclasses.fields(cfg):
        _check_field_type(f.name, str(f.type), getattr(cfg, f.name))
    if cfg.task not in TASKS:
        raise ConfigError(f"unknown task {cfg.task!r}; choose from {', '.join(TASKS)}", "task")
    custom = is_custom_cell(cfg.cell)
    if cfg.cell not in CELLS and not custom:
        names = ", ".join(CELLS + tuple(CELL_REGISTRY))
        raise ConfigError(f"unknown cell {cfg.cell!r}; choose from {names}, or give your own as "
                          "package.module:Class or path/to/file.py:Class", "cell")
    if cfg.cell_args and not custom:
        raise ConfigError(f"--cell-arg is for custom cells (module:Class, file.py:Class), not {cfg.cell}",
                          "cell_args")
    for name in ("units", "layers", "batch_size", "steps", "eval_every", "val_size", "probe_batch"):
        _positive(cfg, name)
    if not 0 <= cfg.seed <= MAX_SEED:
        # Keras seeds numpy's legacy generator, which takes 32-bit seeds only.
        raise ConfigError(f"--seed must be between 0 and {MAX_SEED}, got {cfg.seed}", "seed")
    if cfg.length < 2:
        raise ConfigError(f"--length must be at least 2, got {cfg.length}", "length")
    try:
        task = get_task(cfg.task, cfg.task_args)
    except ValueError as e:
        raise ConfigError(str(e), "task_args") from None
    if task.check_length(cfg.length):
        raise ConfigError(task.check_length(cfg.length), "length")
    if cfg.task in ("smnist", "psmnist") and cfg.val_size > 10000:
        raise ConfigError(f"MNIST's test split holds 10000 images, got {cfg.val_size}", "val_size")
    if cfg.probe_every is not None:
        _positive(cfg, "probe_every")
    if not cfg.lr > 0:
        raise ConfigError(f"--lr must be positive, got {cfg.lr}", "lr")
    if cfg.clip < 0:
        raise ConfigError(f"--clip must be >= 0 (0 = off), got {cfg.clip}", "clip")
    if cfg.optimizer not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {cfg.optimizer!r}", "optimizer")
    if custom:
        # The spec's form and --cell-arg values here; the file, the class and the
        # options that need the cell's internals where it is loaded (check_cell).
        _validate_cell_spec(cfg)
        _check_stacking(cfg)
        return
    gated = cfg.cell in ("lstm", "gru")
    if cfg.activation is not None:
        if cfg.activation not in ACTIVATIONS:
            raise ConfigError(f"unknown activation {cfg.activation!r}", "activation")
        if gated:
            raise ConfigError(
                f"--activation applies to the vanilla cells (rnn, irnn), not to {cfg.cell}", "activation"
            )
    if cfg.recurrent_init is not None:
        if cfg.recurrent_init not in RECURRENT_INITS:
            raise ConfigError(f"unknown recurrent init {cfg.recurrent_init!r}", "recurrent_init")
        if gated and cfg.recurrent_init == "identity":
            raise ConfigError(
                f"--recurrent-init identity needs a square recurrent matrix (rnn, irnn), not {cfg.cell}",
                "recurrent_init",
            )
    if not (isinstance(cfg.recurrent_gain, (int, float)) and math.isfinite(cfg.recurrent_gain)
            and cfg.recurrent_gain > 0):
        raise ConfigError(f"--recurrent-gain must be a positive number, got {cfg.recurrent_gain}", "recurrent_gain")
    if cfg.recurrent_gain > MAX_RECURRENT_GAIN:
        # Beyond it a float32 weight overflows to inf and the probe's sigma_max(W) failed with a traceback.
        raise ConfigError(f"--recurrent-gain must be at most {MAX_RECURRENT_GAIN:g} (the recurrent weights are "
                          f"float32), got {cfg.recurrent_gain:g}", "recurrent_gain")
    if gated and cfg.recurrent_gain != 1.0:
        raise ConfigError(
            f"--recurrent-gain scales the vanilla cells' recurrent matrix (rnn, irnn), not {cfg.cell}'s "
            "(its gates set the carry)", "recurrent_gain",
        )
    if cfg.forget_bias is not None and cfg.cell != "lstm":
        raise ConfigError(f"--forget-bias applies to --cell lstm only, not {cfg.cell}", "forget_bias")
    if cfg.layer_norm and gated:
        raise ConfigError(
            f"--layer-norm is built for the vanilla cells (rnn, irnn), not for {cfg.cell}", "layer_norm"
        )
    _check_stacking(cfg)
    if cfg.gate_init is not None:
        if cfg.gate_init not in GATE_INITS:
            raise ConfigError(f"unknown gate init {cfg.gate_init!r}; choose from {', '.join(GATE_INITS)}",
                              "gate_init")
        if not gated and cfg.gate_init == "chrono":
            raise ConfigError(f"--gate-init chrono applies to --cell lstm or gru, not {cfg.cell}", "gate_init")
        if cfg.gate_init == "keras" and cfg.chrono is not None:
            raise ConfigError("--chrono is chrono init; drop --gate-init keras", "gate_init")
        if cfg.gate_init == "chrono" and cfg.forget_bias is not None:
            raise ConfigError("--forget-bias modifies Keras's gate init; add --gate-init keras", "forget_bias")
    if cfg.chrono is not None:
        if not gated:
            raise ConfigError(f"--chrono applies to --cell lstm or gru, not {cfg.cell}", "chrono")
        if cfg.chrono < 3:
            raise ConfigError(f"--chrono T_MAX must be at least 3, got {cfg.chrono}", "chrono")
        if cfg.forget_bias is not None:
            raise ConfigError("--chrono sets the forget-gate bias itself; drop --forget-bias", "chrono")


# -- custom cells (seqvg.customcell loads them; their spec is checked here) ------
@dataclass(frozen=True)
class CellRef:
    """Where a custom cell's class lives.

    Attributes:
        kind: "file" or "module".
        target: the file's path (absolute once resolved) or the module name.
        class_name: the class inside it.
    """

    kind: str
    target: str
    class_name: str

    @property
    def where(self) -> str:
        """``file.py:Class`` or ``module:Class``, for messages."""
        return f"{self.target}:{self.class_name}"


def parse_cell_spec(spec: str) -> CellRef:
    """Splits a ``--cell`` value (or a registered name) into a ``CellRef``.

    Raises:
        ConfigError: not ``module:Class`` or ``path.py:Class``.
    """
    text = CELL_REGISTRY.get(spec, spec)
    target, sep, class_name = text.rpartition(":")
    if not sep or not target or not class_name.isidentifier():
        raise ConfigError(f"expected package.module:Class or path/to/file.py:Class, got {spec!r}", "cell")
    if target.endswith(".py") or "/" in target or os.sep in target:
        return CellRef("file", target, class_name)
    if not all(part.isidentifier() for part in target.split(".")):
        raise ConfigError(f"{target!r} is neither a module name (package.module) nor a .py file, in {spec!r}",
                          "cell")
    return CellRef("module", target, class_name)


def absolute_cell_spec(spec: str, base: str | os.PathLike | None = None) -> str:
    """``spec`` with a file's path made absolute (relative to ``base``, by
    default the working directory); module specs and names unchanged."""
    if spec in CELL_REGISTRY:
        return spec
    ref = parse_cell_spec(spec)
    if ref.kind != "file":
        return spec
    path = Path(ref.target).expanduser()
    if not path.is_absolute():
        path = Path(base if base is not None else os.getcwd()) / path
    return f"{os.path.normpath(path)}:{ref.class_name}"


def _json_value(value) -> bool:
    try:
        return json.loads(json.dumps(value, allow_nan=False)) == value
    except (TypeError, ValueError):
        return False


def _non_finite(value) -> bool:
    """True if a float in ``value`` (or in its lists and tables) is inf or nan."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_non_finite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_non_finite(v) for v in value)
    return False


def _validate_cell_spec(cfg) -> None:
    """The checks that need no import: the spec's form and JSON-serialisable
    ``cell_args``. (A file's existence is checked where it is loaded: a run
    resumed or probed from its directory needs only its copy.)

    Raises:
        ConfigError: naming the file and class.
    """
    ref = parse_cell_spec(cfg.cell)
    for key, value in cfg.cell_args.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise ConfigError(f"{ref.where}: --cell-arg {key!r}: not a keyword argument name", "cell_args")
        if _non_finite(value):
            raise ConfigError(f"{ref.where}: --cell-arg {key}={value!r}: not a finite number; config.json (JSON) "
                              "holds only finite numbers",
                              "cell_args")
        if not _json_value(value):
            raise ConfigError(f"{ref.where}: --cell-arg {key}={value!r}: a {type(value).__name__} cannot be "
                              "stored in config.json (use a number, string, boolean, array or table)",
                              "cell_args")


def _check_stacking(cfg: RunConfig) -> None:
    if cfg.batch_norm and cfg.layers < 2:
        raise ConfigError("--batch-norm normalises between stacked layers; it needs --layers 2 or more",
                          "batch_norm")
    if cfg.residual and cfg.layers < 2:
        raise ConfigError("--residual adds skip connections across stacked layers; it needs --layers 2 or more",
                          "residual")


def check_split_sizes(cfg, training: bool = True) -> None:
    """Refuses, before anything is written, sizes MNIST's splits cannot give.

    A batch is n distinct images of a split: ``--val-size`` of the test split,
    ``--batch-size`` and ``--probe-batch`` of the training split. Asked for
    more, the run failed mid-start with an error blaming the file (exit 1)
    and left a directory that ``--resume`` could not continue.

    Args:
        cfg: a resolved run config; nothing is checked unless its task is
            smnist or psmnist.
        training: False for a probe (only ``--probe-batch`` is drawn).

    Raises:
        ConfigError: naming the option, the split's size and the file.
    """
    if cfg.task not in ("smnist", "psmnist"):
        return
    from seqvg.mnist import load_mnist, mnist_path

    d = load_mnist()
    sizes = [("probe_batch", cfg.probe_batch, "train")]
    if training:
        sizes = [("val_size", cfg.val_size, "test"), ("batch_size", cfg.batch_size, "train")] + sizes
    for option, n, split in sizes:
        have = len(d[f"x_{split}"])
        if n > have:
            raise ConfigError(f"--{option.replace('_', '-')} {n}: {cfg.task} draws it as distinct images of "
                              f"MNIST's {split} split, which holds {have} ({mnist_path()}); use {have} or fewer",
                              option)
