"""Will a run fit in memory? Estimates of what a run or a probe allocates, checked before any work.

    seqvg train --length 100000 --units 4096    # refused at once: needs ... GiB, this machine has ...

``check_memory`` (training, ``seqvg probe``, every run of a study before the
first starts) and ``check_data_memory`` (``seqvg generate``) raise a
``ConfigError`` that names the estimate, the machine's memory and the
options that make it smaller. The estimates are rough bounds: they only have
to catch runs that cannot work.
"""

from __future__ import annotations

import dataclasses
import os

from seqvg.config import ConfigError, RunConfig
from seqvg.tasks import TASK_ARGS, get_task

#: Float32 values kept per timestep, sample and unit for the backward pass of
#: one cell (gate pre-activations, activations and states). Measured orders of
#: magnitude, rounded up; the estimate only has to catch impossible runs.
_FLOATS_PER_UNIT = {"rnn": 4, "irnn": 4, "gru": 12, "lstm": 16}


def estimate_memory_bytes(cfg: RunConfig) -> int:
    """Estimates the peak activation memory of one training step in bytes."""
    return _activation_bytes(cfg, cfg.batch_size)


def _activation_bytes(cfg: RunConfig, batch: int) -> int:
    # A custom cell: assumed as large as an LSTM's (a rough bound is all this needs).
    per_step = batch * cfg.layers * cfg.units * _FLOATS_PER_UNIT.get(cfg.cell, 16)
    task = get_task(cfg.task, cfg.task_args)
    per_step += batch * (task.n_inputs + (task.n_outputs if task.per_step else 0)) * 2
    return 4 * cfg.seq_len * per_step


#: Weight matrices per unit of a cell's state (its gates); a custom cell is
#: assumed to be as large as an LSTM.
_GATES = {"rnn": 1, "irnn": 1, "gru": 3, "lstm": 4}


def weight_bytes(cfg: RunConfig, training: bool = True) -> int:
    """The model's recurrent weights in bytes, with, when ``training``, the
    gradient and the optimizer's two moment estimates beside each (Adam's)."""
    task = get_task(cfg.task, cfg.task_args)
    gates = _GATES.get(cfg.cell, 4)
    params = sum((fan_in + cfg.units + 1) * gates * cfg.units
                 for fan_in in [task.n_inputs] + [cfg.units] * (cfg.layers - 1))
    return 4 * params * (4 if training else 1)


def data_bytes(task: str, n: int, length: int, task_args: dict | None = None) -> int:
    """Peak memory of generating ``n`` samples: float32 inputs, targets and
    the generator's float64/int temporaries (about twice the result)."""
    t = get_task(task, task_args)
    return 2 * n * t.seq_len(length) * (4 * t.n_inputs + 12)


def memory_parts(cfg: RunConfig, training: bool = True, probe_n: int | None = None) -> list[tuple[str, int, list[str]]]:
    """What a run (or, ``training=False``, a probe) allocates: (part, bytes, the
    options that shrink it), largest first.

    Training holds the weights (with their gradients and Adam's moments),
    the validation set and the probe batch for the whole run;
    the training step and the probe run one after the other, so only the
    larger of the two counts. Validation runs in fixed chunks (bounded).
    """
    n_probe = cfg.probe_batch if probe_n is None else probe_n
    probe_opts = ["probe_batch" if probe_n is None else "data", "length", "units", "layers"]
    # The probe keeps the recurrent states and one tap per step besides the
    # training step's activations: about twice a training step's per sample.
    probe = 2 * _activation_bytes(cfg, n_probe) + data_bytes(cfg.task, n_probe, cfg.length, cfg.task_args)
    weights = ("the weights", weight_bytes(cfg, training), ["units", "layers"])
    if not training:
        return sorted([("the probe", probe, probe_opts), weights], key=lambda p: -p[1])
    step = estimate_memory_bytes(cfg) + data_bytes(cfg.task, cfg.batch_size, cfg.length, cfg.task_args)
    parts = [("the validation set", data_bytes(cfg.task, cfg.val_size, cfg.length, cfg.task_args), ["val_size", "length"])]
    parts.append(("one training step", step, ["length", "batch_size", "units", "layers"]) if step >= probe
                 else ("the probe", probe, probe_opts))
    parts.append(weights)
    return sorted(parts, key=lambda p: -p[1])


def physical_memory_bytes() -> int:
    """Total physical memory of this machine, in bytes."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 16 * 2**30


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**28 else f"{n / 2**20:.0f} MiB"


def check_memory(cfg: RunConfig, budget_fraction: float = 0.5, *, training: bool = True,
                 probe_n: int | None = None, names: dict[str, str] | None = None) -> None:
    """Refuses, before any work, a run (or probe) whose arrays cannot fit in memory.

    Args:
        cfg: the resolved config.
        budget_fraction: share of physical memory a run may plan to use.
        training: False for ``seqvg probe`` (no training step, no validation set).
        probe_n: samples of a user's probe batch (``--data``), if any.
        names: how the command spells each option (default ``--field-name``);
            None for an option the command does not have.

    Raises:
        ConfigError: with the estimate, the machine's memory and the options
            (of this command) that make it smaller.
    """
    parts = memory_parts(cfg, training, probe_n)
    need = sum(b for _, b, _ in parts)
    have = physical_memory_bytes()
    if need <= budget_fraction * have:
        return
    part, _, options = parts[0]
    # Blame the option the user raised most above its default (``--length
    # 10**8`` should not read as an invalid --probe-batch); the part's first
    # where none was raised.
    defaults = {f.name: f.default for f in dataclasses.fields(RunConfig)}
    raised = {o: getattr(cfg, o) / defaults[o] for o in options
              if isinstance(defaults.get(o), int) and defaults[o] > 0 and getattr(cfg, o) > defaults[o]}
    # A task parameter raised above its default (--task-arg vocab=10**7)
    # grows the inputs or the sequence: named where it grows this part.
    shrinking = {a: r for a, r in raised_task_args(cfg.task, cfg.task_args).items()
                 if _part_bytes(_with_default(cfg, a), part, training, probe_n) < parts[0][1]}
    candidates = {**raised, **shrinking}
    culprit = max(candidates, key=candidates.get) if candidates else options[0]

    def name(o: str) -> str | None:
        if names is None:
            return "-" * (1 + (o != "n")) + o.replace("_", "-")
        return names.get(o)

    shown = [n for n in map(name, options) if n]
    if names is None or names.get("task_args"):
        shown += [f"--task-arg {a}" for a in shrinking]
    detail = ", ".join(f"{w} {_gib(b)}" for w, b, _ in parts)
    advice = f"; make it smaller with {', '.join(shown)}" if shown else ""
    raise ConfigError(
        f"needs about {_gib(need)} of memory ({detail}), more than half of this machine's {_gib(have)}{advice}",
        ("task_args" if culprit in shrinking else culprit) if names is None else None,
    )


def raised_task_args(task: str, args: dict | None) -> dict[str, float]:
    """The task's parameters set above their defaults, each with its value / default."""
    out = {}
    for a in TASK_ARGS.get(task, ()):
        value = (args or {}).get(a.name, a.default)
        if a.default > 0 and value > a.default:
            out[a.name] = value / a.default
    return out


def _part_bytes(cfg: RunConfig | None, part: str, training: bool, probe_n: int | None) -> float:
    """Bytes of ``part`` of ``cfg`` (``memory_parts``); inf where ``cfg`` is None."""
    if cfg is None:
        return float("inf")
    return dict((w, b) for w, b, _ in memory_parts(cfg, training, probe_n)).get(part, 0)


def _with_default(cfg: RunConfig, arg: str) -> RunConfig | None:
    """``cfg`` with task parameter ``arg`` at its default; None where the
    others then do not fit it (recall's pairs=40 needs vocab >= 80)."""
    default = next(a.default for a in TASK_ARGS[cfg.task] if a.name == arg)
    args = {**cfg.task_args, arg: default}
    try:
        get_task(cfg.task, args)
    except ValueError:
        return None
    return dataclasses.replace(cfg, task_args=args)


def check_data_memory(task: str, n: int, length: int, budget_fraction: float = 0.5,
                      task_args: dict | None = None) -> None:
    """Refuses, before any work, ``seqvg generate -n N`` that cannot fit in memory.

    Raises:
        ConfigError: option ``n`` (``task_args`` where a task parameter raised
            above its default is what does not fit), with the estimate, the
            machine's memory and what makes it smaller.
    """
    need, have = data_bytes(task, n, length, task_args), physical_memory_bytes()
    if need > budget_fraction * have:
        raised = raised_task_args(task, task_args)
        shown = ["-n", "--length"] + [f"--task-arg {a}" for a in raised]
        # Blame a task parameter when the same samples at its defaults would fit.
        at_defaults = data_bytes(task, n, length, {k: v for k, v in (task_args or {}).items() if k not in raised})
        blame = "task_args" if raised and at_defaults <= budget_fraction * have else "n"
        raise ConfigError(f"{n} samples of {task} T={length} need about {_gib(need)} of memory, more than half "
                          f"of this machine's {_gib(have)}; make it smaller with {', '.join(shown[:-1])} or "
                          f"{shown[-1]}", blame)
