"""The report's tables and words that are not findings: a run's remedies
and gate init, the outcome, summary and settings rows, the command that
makes a run, each run's diagnosis wrapped to the page, and the small
number and list formats the captions share.

    seqvg report runs/demo -o reports/demo.pdf
"""

from __future__ import annotations

import math
import shlex

import numpy as np

from seqvg.config import RunConfig, default_chrono
from seqvg.decay import decay_summary
from seqvg.diagnose import format_diagnosis, option_words
from seqvg.report_view import View, view
from seqvg.rundir import Run
from seqvg.tasks import get_task


def remedies(cfg: dict) -> list[str]:
    """The options of a run that differ from its cell's defaults."""
    out = []
    if cfg.get("layers", 1) > 1:
        out.append(f"{cfg['layers']} layers")
    if cfg["cell"] == "rnn" and cfg.get("activation") not in (None, "tanh"):
        out.append(cfg["activation"])
    default_init = "identity" if cfg["cell"] == "irnn" else "orthogonal"
    if cfg.get("recurrent_init") not in (None, default_init):
        out.append(f"{cfg['recurrent_init']} init")
    if cfg.get("recurrent_gain", 1.0) != 1.0:
        out.append(f"recurrent gain {cfg['recurrent_gain']:g}")
    if cfg.get("forget_bias") is not None:
        out.append(f"forget bias {cfg['forget_bias']:g}")
    if cfg.get("chrono") is not None and cfg["chrono"] != default_chrono(RunConfig(**_fields(cfg))):
        out.append(f"chrono {cfg['chrono']}")
    if cfg.get("layer_norm"):
        out.append("layer norm")
    if cfg.get("batch_norm"):
        out.append("batch norm")
    if cfg.get("residual"):
        out.append("residual")
    if cfg.get("clip"):
        out.append(f"clip {cfg['clip']:g}")
    return out


def _fields(cfg: dict) -> dict:
    # task_args too: recall's sequence (3K+T), and so its default chrono, depends on K.
    return {k: cfg[k] for k in ("task", "task_args", "length") if k in cfg}


def gate_init(cfg: dict) -> str | None:
    """A run's gate initialisation: "chrono", "keras" or None (vanilla cell).

    Runs written before ``gate_init`` existed used Keras's biases unless
    they set --chrono.
    """
    if cfg["cell"] not in ("lstm", "gru"):
        return None
    return cfg.get("gate_init") or ("chrono" if cfg.get("chrono") is not None else "keras")


def gate_init_text(cfg: dict) -> str:
    """The gate initialisation as the title page shows it."""
    kind = gate_init(cfg)
    if kind is None:
        return "-"
    if kind == "chrono":
        return f"chrono {cfg.get('chrono')}"
    return "keras" + (f", forget bias {cfg['forget_bias']:g}" if cfg.get("forget_bias") is not None else "")


def common_settings(cfgs: list[dict]) -> str:
    """The training settings as one line: a value when every run shares it,
    "varies" otherwise (the run labels say how)."""
    parts = []
    for key, name in (("units", "units"), ("layers", "layers"), ("optimizer", "optimizer"), ("lr", "lr"),
                      ("batch_size", "batch"), ("steps", "steps"), ("clip", "clip")):
        values = {c.get(key) for c in cfgs}
        if len(values) > 1:
            parts.append(f"{name} varies")
            continue
        value = values.pop()
        if key == "clip":
            parts.append(f"clip {value:g}" if value else "no clipping")
        elif key == "steps":
            parts.append(f"up to {value} steps")
        else:
            parts.append(f"{name} {value:g}" if isinstance(value, float) else f"{name} {value}")
    return ", ".join(parts)


#: Groups a finding names one by one; the rest are counted.
FINDING_NAMES = 4


def number(value, fmt: str = "{:.3g}") -> str:
    return "-" if value is None or (isinstance(value, float) and not math.isfinite(value)) else fmt.format(value)


def median(values: list) -> float | None:
    values = [x for x in values if x is not None and math.isfinite(x)]
    return float(np.median(values)) if values else None


def listed(phrases: list[str], limit: int = FINDING_NAMES) -> str:
    more = len(phrases) - limit
    return ", ".join(phrases[:limit]) + (f" and {more} more" if more > 0 else "")


def each_group(v: View, value, fmt: str, limit: int = FINDING_NAMES) -> str:
    """``value(run)`` for the first seed of each group, as "name value, ..." (None left out)."""
    got = [(name, value(v.runs[idx[0]])) for name, idx in v.groups]
    return listed([f"{name} {fmt.format(x)}" for name, x in got if x is not None and math.isfinite(x)], limit)


def outcome_columns(metric_name: str) -> list[str]:
    """Column names of ``outcome_rows``."""
    return ["run", "cell", "remedies, gate init", "outcome", f"val {metric_name}", "val loss / trivial baseline",
            "decay at init", "decay at end"]


def run_outcome(r: Run) -> str:
    """A run's outcome in words: "solved at step 900", "running at step 310"."""
    s = r.summary
    if s.get("solved"):
        return f"solved at step {s['solved_at_step']}"
    if s["status"] == "diverged":
        return f"diverged at step {s.get('diverged_at_step', '?')}"
    if s["status"] == "completed":
        return f"not solved in {s.get('steps_done', '?')} steps"
    return f"{s['status']} at step {steps_reached(r)}"


def steps_reached(r: Run) -> int:
    """The training steps a run has done: a killed run's summary.json still
    says 0 (written at its start); its metrics say how far it got."""
    return max([r.summary.get("steps_done") or 0] + [row["step"] for row in r.metrics])


def outcome_rows(runs: list[Run], by_group: bool | None = None) -> list[list[str]]:
    """The title page's outcome table in report order: one row per run or,
    ``by_group`` (default: when the report summarises seeds), one per group
    with its seeds' medians and how many solved."""
    v = view(runs)
    by_group = v.grouped if by_group is None else by_group
    members = [(name, [v.runs[i] for i in idx]) for name, idx in v.groups] if by_group else \
        [(lab.label, [r]) for r, lab in zip(v.runs, v.labels)]
    rows = []
    for name, rs in members:
        c = rs[0].cfg
        gates = gate_init_text(c)
        finals = [r.summary.get("final") or {} for r in rs]
        metric = median([f.get("val_metric") for f in finals])
        loss = median([f.get("val_loss") for f in finals])
        init = median([decay_summary(r.probes["h"][0][0])["rate_per_100"] for r in rs])
        end = median([decay_summary(r.probes["h"][-1][0])["rate_per_100"] for r in rs if r.probes["h"].shape[0] > 1])
        if len(rs) == 1:
            outcome = run_outcome(rs[0])
        else:
            at = [r.summary["solved_at_step"] for r in rs if r.summary.get("solved")]
            outcome = f"{len(at)}/{len(rs)} solved" + (f", median step {median(at):.0f}" if at else "")
            name = f"{name} ({len(rs)} seeds)"
        base = get_task(c["task"], c.get("task_args")).baseline(c["length"])  # with the task's parameters
        rows.append([name, c["cell"], ", ".join(remedies(c) + ([f"gates: {gates}"] if gates != "-" else [])) or "-",
                     outcome, number(metric, "{:.4g}"), f"{number(loss)} / {base:.3g}",
                     number(init, "{:+.2f}"), number(end, "{:+.2f}")])
    return rows


def metric_name(run: Run) -> str:
    """The name of a run's task metric, e.g. "mse", "acc"."""
    return get_task(run.cfg["task"], run.cfg.get("task_args")).metric_name


def summary_columns(runs: list[Run]) -> list[str]:
    """Column names of ``summary_rows``: the metric's column is named after
    the runs' metric, or "val metric" where the runs' tasks score different
    metrics (each row then names its own)."""
    names = {metric_name(r) for r in runs}
    metric = f"val {names.pop()}" if len(names) == 1 else "val metric"
    return ["run", "status", "solved?", "solved at", metric, "decay init", "horizon init",
            "decay end", "horizon end"]


def summary_rows(runs: list[Run]) -> list[list[str]]:
    """The summary table: one row per run, in report order, named by label."""

    def f(v, fmt="{:.3g}"):
        return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else fmt.format(v)

    v = view(runs)
    mixed = len({metric_name(r) for r in runs}) > 1
    rows = []
    for r, lab in zip(v.runs, v.labels):
        s = r.summary
        value = f((s.get("final") or {}).get("val_metric"), "{:.4g}")
        init = decay_summary(r.probes["h"][0][0])
        end = decay_summary(r.probes["h"][-1][0])
        rows.append([
            lab.label, s["status"], "yes" if s.get("solved") else "no", f(s.get("solved_at_step"), "{}"),
            f"{metric_name(r)} {value}" if mixed else value, f(init["rate_per_100"], "{:+.2f}"), f(init["horizon"], "{}"),
            f(end["rate_per_100"], "{:+.2f}"), f(end["horizon"], "{}"),
        ])
    return rows


SETTINGS_COLUMNS = ["run", "cell", "units", "layers", "optimizer", "lr", "batch", "steps", "clip", "gate init",
                    "remedies", "command"]


def settings_rows(runs: list[Run]) -> list[list]:
    """Each run's training settings, in report order (the summary page's last table)."""
    v = view(runs)
    rows = []
    for r, lab in zip(v.runs, v.labels):
        c = r.cfg
        command = r.config.get("command") or train_command(c)
        rows.append([lab.label, c["cell"], c["units"], c["layers"], c["optimizer"], f"{c['lr']:g}", c["batch_size"],
                     _steps_text(r), f"{c['clip']:g}" if c["clip"] else "off", gate_init_text(c),
                     ", ".join(remedies(c)) or "-", command if len(command) <= 60 else command[:57] + "..."])
    return rows


def _steps_text(r: Run) -> str:
    """The steps column: the steps done, "of --steps" where they differ
    (early stop, a run stopped or still running)."""
    done = steps_reached(r)
    return str(done) if done == r.cfg["steps"] else f"{done} of {r.cfg['steps']}"


#: Options resolved() fills from other options: left out of a command when
#: they hold the value it would fill anyway.
_DERIVED = ("activation", "recurrent_init", "probe_every")


def train_command(cfg: dict) -> str:
    """A ``seqvg train`` command that makes a run of these resolved options.

    For runs whose config.json has no command (those a study started): every
    option that differs from its default, minus what the defaults imply.
    """
    import dataclasses

    from seqvg.config import ConfigError, RunConfig

    defaults = RunConfig()
    given = {f.name: cfg[f.name] for f in dataclasses.fields(RunConfig)
             if f.name in cfg and cfg[f.name] != getattr(defaults, f.name)}
    try:
        implied = RunConfig(**{k: v for k, v in given.items() if k not in _DERIVED}).resolved()
    except (ConfigError, TypeError):
        implied = None
    words = ["seqvg", "train"]
    for key, value in given.items():
        if key in _DERIVED and implied is not None and getattr(implied, key) == value:
            continue
        # diagnose's spelling: --task-arg/--cell-arg KEY=VALUE per parameter, not the dict's repr.
        words += option_words(key, value)
    return " ".join(shlex.quote(w) for w in words)


#: Characters per diagnosis line (monospace, 7.5 points, page width).
DIAGNOSIS_WIDTH = 165


def diagnosis_lines(runs: list[Run], labels: list) -> list[str]:
    """Each run's diagnosis (seqvg.diagnose, with why an unsolved run did not
    solve and what to try), wrapped to the page."""
    import textwrap

    lines = []
    for r, lab in zip(runs, labels):
        lines.append(f"{lab.label}:")
        for line in format_diagnosis(r).splitlines():
            lines += textwrap.wrap(line, DIAGNOSIS_WIDTH, initial_indent="  ", subsequent_indent="      ",
                                   break_long_words=False, break_on_hyphens=False)
    return lines
