"""Run labels: each run named by the options that tell it apart from the others.

    from seqvg.labels import run_labels
    labels = run_labels([run.cfg for run in runs])   # e.g. "T=25 s0", "rnn clip=1 s2"

The report and results.csv name a run by the options that differ between the
runs shown together, computed from the configs alone: a length sweep reads
"T=25 s0", "T=50 s0"; a study of remedies "rnn s0", "rnn clip=1 s0",
"lstm s0". Options that follow from others (an RNN's tanh next to an LSTM,
the probe schedule next to the step count) are left out; remedy switches and
options held by most runs are shown only where a run departs from them.
Runs sort by length, then cell, then the other options (plain runs before
those with a remedy), then seed.
"""

from __future__ import annotations

from dataclasses import dataclass

from seqvg.config import cell_label

#: Options in the order they are kept when one follows from another (earlier
#: wins) and sorted by (length first, then cell, ..., seed last).
PRIORITY = ["task", "length", "cell", "layers", "activation", "recurrent_init", "recurrent_gain", "gate_init",
            "forget_bias", "chrono",
            "layer_norm", "batch_norm", "residual", "clip", "units", "optimizer", "lr", "batch_size", "steps",
            "eval_every", "val_size", "probe_every", "probe_batch", "early_stop", "tensorboard"]
#: Order of the parts of a label: the cell first, the length last before the seed.
SHOWN_ORDER = ["task", "cell", "layers", "activation", "recurrent_init", "recurrent_gain", "gate_init", "forget_bias",
               "chrono", "layer_norm",
               "batch_norm", "residual", "clip", "units", "optimizer", "lr", "batch_size", "steps", "eval_every",
               "val_size", "probe_every", "probe_batch", "early_stop", "tensorboard", "length"]
#: Options always shown with their value when they vary (the axes of a grid).
AXES = ("task", "length", "cell")
#: Remedies: shown wherever they are on, even when another option implies them
#: (the one GRU of a study that has chrono init still says so).
SWITCHES = ("layers", "activation", "recurrent_init", "gate_init", "forget_bias", "chrono", "layer_norm", "batch_norm",
            "residual", "clip")
#: Cells in their natural order (vanilla to gated) for sorting.
CELL_ORDER = ("rnn", "irnn", "lstm", "gru")
#: Values that mean "off": never shown (the run without the remedy is plain).
_OFF = {"recurrent_gain": (1.0,), "forget_bias": (None,), "chrono": (None,), "layer_norm": (False,), "batch_norm": (False,),
        "residual": (False,), "clip": (0, 0.0), "tensorboard": (False,)}


@dataclass(frozen=True)
class RunLabel:
    """The name of one run within a set of runs.

    Attributes:
        label: the full name, e.g. "rnn T=50 s1".
        group: the name without the seed ("rnn T=50"): runs that differ only
            by seed share it.
        series: the group without the length and the other numeric options
            ("rnn"): the line a group belongs to when plotted against them.
        numeric: the values of the numeric options shown for every run
            (length, units, ...), in PRIORITY order; () when none varies.
        axes: the names of those options ("length", "units", ...).
        sort_key: orders runs by length, then cell, the other options, seed.
    """

    label: str
    group: str
    series: str
    numeric: tuple
    axes: tuple
    sort_key: tuple


def _token(key: str, value) -> str:
    """One part of a label: an option's value in a few readable characters."""
    if key == "length":
        return f"T={value}"
    if key == "cell":
        return cell_label(str(value))  # a custom cell by its class name, not its path
    if key in ("cell_args", "task_args"):  # a dict: "symbols=3", not Python's "{'symbols': 3}"
        items = (value or {}).items()
        return " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in (sorted(items) if key == "task_args" else items)) \
            or f"no {key.replace('_', ' ')}"
    if key in ("task", "activation", "optimizer"):
        return str(value)
    if key == "recurrent_init":
        return f"{value} init"
    if key == "gate_init":
        return f"{value} gates"
    if key == "layers":
        return f"{value} layer" + ("s" if value != 1 else "")
    if key in ("layer_norm", "batch_norm", "residual"):
        words = key.replace("_", " ")
        return words if value else f"no {words}"
    if key == "units":
        return f"{value} units"
    if key == "forget_bias":
        return f"fb={value:g}"
    if key == "recurrent_gain":
        return f"G={value:g}"
    if key == "clip":
        return f"clip={value:g}" if value else "no clip"
    if key == "steps":
        return f"{value} steps"
    if key == "batch_size":
        return f"batch={value}"
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return f"{key}={text}"


def _cell_default(key: str, cell) -> object:
    """The value an option takes for a cell when not set (see RunConfig.resolved)."""
    if key == "activation":
        return {"rnn": "tanh", "irnn": "relu"}.get(cell)
    if key == "recurrent_init":
        return "identity" if cell == "irnn" else "orthogonal"
    if key == "gate_init":
        return "chrono" if cell in ("lstm", "gru") else None
    return object()  # equals nothing


def _at_default(key: str, c: dict) -> bool:
    """Whether the run's value of ``key`` is what the run would get unset."""
    if key == "chrono":  # default chrono init: T_max = the sequence length
        from seqvg.config import default_chrono_for

        return (c.get("gate_init", "chrono") == "chrono" and c.get("chrono") is not None
                and c["chrono"] == default_chrono_for(c.get("task", "adding"), c.get("length", 100),
                                                    c.get("task_args")))
    return c.get(key) == _cell_default(key, c.get("cell"))


def _order_value(key: str, value) -> tuple:
    """A sortable form of any option value (None first, numbers by size)."""
    if value is None:
        return (0, 0, "")
    if key == "cell" and value in CELL_ORDER:
        return (1, CELL_ORDER.index(value), "")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (1, float(value), "")
    return (2, 0, str(value))


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _determined(key: str, keys: list[str], cfgs: list[dict]) -> bool:
    """Whether ``key``'s value follows from the values of ``keys`` in every run."""
    seen: dict = {}
    for c in cfgs:
        ident = tuple(repr(c.get(k)) for k in keys)
        if seen.setdefault(ident, repr(c.get(key))) != repr(c.get(key)):
            return False
    return True


def shown_keys(cfgs: list[dict]) -> list[str]:
    """The options (not the seed) that vary and do not follow from the others."""
    known = [k for k in PRIORITY if any(k in c for c in cfgs)]
    extra = sorted({k for c in cfgs for k in c} - set(PRIORITY) - {"seed"})
    keys = [k for k in known + extra if len({repr(c.get(k)) for c in cfgs}) > 1]
    # Drop, lowest priority first, every other option the remaining ones
    # determine: the runs stay told apart exactly as well as by all options.
    for key in reversed(list(keys)):
        rest = [k for k in keys if k != key]
        if key not in AXES and key not in SWITCHES and _determined(key, rest, cfgs):
            keys = rest
    return keys


def run_labels(cfgs: list[dict], names: list[str] | None = None) -> list[RunLabel]:
    """The label of each run among ``cfgs`` (resolved config dicts, config.json's "config").

    Args:
        cfgs: every run shown together, in any order.
        names: the runs' directory names, appended to labels that would
            otherwise be equal (the same options and seed twice).

    Returns:
        One RunLabel per config, in the order given.
    """
    keys = shown_keys(cfgs)
    n = len(cfgs)
    reference: dict[str, object] = {}
    for key in keys:
        if key in AXES or key in ("activation", "recurrent_init"):
            continue
        counts: dict = {}
        for c in cfgs:
            counts[repr(c.get(key))] = counts.get(repr(c.get(key)), 0) + 1
        top = max(counts, key=lambda v: counts[v])
        if 2 * counts[top] > n:  # held by most runs: name only the departures
            reference[key] = next(c.get(key) for c in cfgs if repr(c.get(key)) == top)

    def hidden(key: str, c: dict) -> bool:
        value = c.get(key)
        if value is None or value in _OFF.get(key, ()):
            return True
        if key == "gate_init" and value == "keras" and c.get("forget_bias") is not None:
            return True  # fb=... says it: a forget bias is set on Keras's init
        if key == "gate_init" and key in reference:  # most runs' gates: name the others
            return value == reference[key]
        if key in ("activation", "recurrent_init", "gate_init", "chrono") and _at_default(key, c):
            return True
        if key in ("activation", "recurrent_init", "gate_init"):
            return False
        return key in reference and value == reference[key]

    numeric = [k for k in keys if all(_is_number(c.get(k)) and not hidden(k, c) for c in cfgs)]
    out = []
    for c in cfgs:
        parts = [(k, _token(k, c.get(k))) for k in SHOWN_ORDER + [k for k in keys if k not in SHOWN_ORDER]
                 if k in keys and not hidden(k, c)]
        if not parts:
            parts = [("cell", cell_label(str(c.get("cell", "run"))))]
        group = " ".join(t for _, t in parts)
        series = " ".join(t for k, t in parts if k not in numeric)
        seed = c.get("seed")
        label = f"{group} s{seed}" if seed is not None else group
        # Within each option the plain runs (default, off, most common) first.
        sort_key = tuple((hidden(k, c), _order_value(k, c.get(k))) for k in PRIORITY if k in keys)
        sort_key = tuple((not h, v) for h, v in sort_key) + (_order_value("seed", seed),)
        out.append(RunLabel(label, group, series, tuple(c.get(k) for k in numeric), tuple(numeric), sort_key))
    labels = [r.label for r in out]
    if names is not None and len(set(labels)) < len(labels):
        out = [RunLabel(f"{r.label} [{name}]", f"{r.group} [{name}]", r.series, r.numeric, r.axes,
                        r.sort_key + (name,))
               if labels.count(r.label) > 1 else r for r, name in zip(out, names)]
    return out


def sort_order(labels: list[RunLabel]) -> list[int]:
    """Indices that put runs in report order: length, cell, other options, seed."""
    return sorted(range(len(labels)), key=lambda i: (labels[i].sort_key, labels[i].label))


def axis_name(key: str) -> str:
    """An option's name as an axis label ("length T", "units", "learning rate")."""
    return {"length": "length T", "lr": "learning rate", "batch_size": "batch size",
            "forget_bias": "forget-gate bias"}.get(key, key.replace("_", " "))
