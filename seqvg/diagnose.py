"""Text diagnosis of a run, from its run directory alone.

    seqvg diagnose runs/adding-rnn-T100-s0

(``format_run_summary`` is also the text ``seqvg train`` ends with.)

Verdicts follow the seeds' "how to spot it": gradient flow (vanishing /
exploding / healthy, with decay rate, horizon and underflow as evidence), a
flat loss at the trivial baseline, a plateau at a partial solution (adding:
1/12, only the near marker remembered), lower layers that stopped changing,
and divergence. An unsolved run also gets ``explain``: one or two lines on
why it did not solve, from its own evidence, and the remedies most likely to
help that cell on that task, as exact commands with the spec that studies
them.
"""

from __future__ import annotations

import dataclasses
import math
import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seqvg.config import RunConfig
from seqvg.decay import decay_summary, format_summary
from seqvg.rundir import Run, config_of, load_run, lock_holder
from seqvg.tasks import get_task
from seqvg.why import explain as explain_gradient

#: |decay rate| above this many decades per 100 steps counts as vanishing or
#: exploding: the gradient 100 steps back is 10x off the last step's; on a
#: sequence shorter than 100 steps only where it is 10x off over the sequence
#: (``decades_over``), so T=20 at -1.5/100 (g0/gT 0.5) is not "vanishing".
RATE_LIMIT = 1.0
#: Relative closeness to a reference loss that counts as "sitting on it".
NEAR = 0.1
#: Closeness to the partial-solution plateau (wider: runs hover above it).
NEAR_PLATEAU = 0.2
#: A bottom layer whose recent weight change is below this fraction of the
#: top layer's has "stopped changing".
STALL = 0.05


@dataclass(frozen=True)
class Verdict:
    """One finding: a short key, a headline and the evidence behind it."""

    key: str
    text: str


def gradient_verdict(summary: dict | None, length: int, when: str) -> Verdict:
    """Vanishing / exploding / healthy from a probe's decay summary."""
    if not summary or summary.get("rate_per_100") is None:
        return Verdict("unknown", f"gradient flow at {when}: not measurable (the last-step gradient is 0 or NaN)")
    rate, horizon, ratio = summary["rate_per_100"], summary["horizon"], summary["ratio"]
    underflow = summary.get("underflow", 0)
    evidence = (
        f"decay {rate:+.2f} decades/100 steps, horizon {horizon}/{length} steps, g0/gT {ratio:.2g}"
        + (f", {underflow} steps underflow to 0" if underflow else "")
    )
    if underflow or horizon < length or _steep(rate, length) < 0:
        return Verdict("vanishing", f"vanishing gradient at {when}: {evidence}")
    if _steep(rate, length) > 0:
        return Verdict("exploding", f"exploding gradient at {when}: {evidence}")
    if abs(rate) > RATE_LIMIT:  # steep per 100 steps, but the sequence is too short for it to matter
        evidence += f" ({decades_over(rate, length):+.2f} decades over the {length} steps)"
    return Verdict("healthy", f"healthy gradient flow at {when}: {evidence}")


def decades_over(rate: float, length: int) -> float:
    """Decades the gradient changes by from the last step back to t = 0, at ``rate`` per 100 steps."""
    return rate * (length - 1) / 100


def _steep(rate: float | None, length: int) -> int:
    """-1 vanishing, +1 exploding, 0 neither: beyond ``RATE_LIMIT`` per 100
    steps and a decade or more over the sequence."""
    if rate is None or abs(rate) <= RATE_LIMIT or abs(decades_over(rate, length)) < 1:
        return 0
    return 1 if rate > 0 else -1


#: How many of the last evaluations a run's final figures average.
TAIL = 3


def _tail(values: list[float], k: int = TAIL) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite[-k:])) if finite else math.nan


def diagnose(run: Run) -> list[Verdict]:
    """All verdicts for one run, most important first."""
    cfg = run.cfg
    task = get_task(cfg["task"], cfg.get("task_args"))
    length = run.probes["h"].shape[-1]
    status = run.summary["status"]
    out: list[Verdict] = []
    if status == "diverged":
        step = run.summary.get("diverged_at_step")
        out.append(Verdict("diverged", f"diverged: the loss became NaN/Inf at step {step} (exploding gradient); "
                                       "try --clip 1.0 or a lower --lr"))
    elif status in ("running", "interrupted"):
        # A killed run's summary still says where it started; its metrics say
        # how far it got.
        reached = max([run.summary.get("steps_done") or 0] + [r["step"] for r in run.metrics])
        holder = lock_holder(run.path)
        if holder:  # being written now: not stopped, and --resume would be refused
            out.append(Verdict(status, f"{status}: at step {reached} so far (in use by {holder}, which is "
                                       "writing it)"))
        else:
            out.append(Verdict(status, f"{status}: the run stopped at step {reached} (resume with seqvg train "
                                       f"--resume --out {shlex.quote(str(run.path))})"))
    if run.summary.get("solved"):
        out.append(Verdict("solved", f"solved at step {run.summary['solved_at_step']}"))

    h = run.probes["h"]
    init = decay_summary(h[0][0])
    out.append(gradient_verdict(init, length, "init"))
    if h.shape[0] > 1:
        out.append(gradient_verdict(decay_summary(h[-1][0]), length, f"step {int(run.probes['steps'][-1])}"))
    because = explain_gradient(run)  # seqvg.why: gates, sigma_max(W), per-step gain, step Jacobian
    if because:
        out.append(Verdict("why", because))

    val = [r["val_loss"] for r in run.metrics]
    final_val = _tail(val)
    baseline = task.baseline(cfg["length"])
    plateau = task.partial_plateau(cfg["length"])
    if not run.summary.get("solved") and math.isfinite(final_val):
        if abs(final_val - baseline) <= NEAR * baseline:
            out.append(Verdict("flat", f"flat loss at the trivial baseline: val loss {final_val:.4g} (last evaluations) vs "
                                       f"{baseline:.4g}; the model learned nothing long-range"))
        elif plateau is not None and abs(final_val - plateau) <= NEAR_PLATEAU * plateau:
            out.append(Verdict("plateau", f"plateau at the partial solution: val loss {final_val:.4g} (last evaluations) vs "
                                          f"{plateau:.4g} (a model that {task.plateau_text})"))
    recurrent = [c for c in run.columns if c.startswith("weight_change/") and c != "weight_change/head"]
    if len(recurrent) >= 2 and len(run.metrics) >= 3:
        bottom = _tail([r[recurrent[0]] for r in run.metrics])
        top = _tail([r[recurrent[-1]] for r in run.metrics])
        if top > 0 and bottom < STALL * top:
            name = recurrent[0].split("/", 1)[1]
            out.append(Verdict("stalled", f"lower layers stopped changing: {name} moves {bottom:.2g} per row "
                                          f"vs {top:.2g} for the top layer"))
    return out


def format_diagnosis(run: Run) -> str:
    """The diagnosis as lines of text, with why an unsolved run did not
    solve and what to try."""
    lines = [f"- {v.text}" for v in diagnose(run)]
    e = explain(run)
    if e is not None:
        lines.append(f"- why not solved: {e.why}")
        lines += [f"- try: {r.command}  # {r.what}; see {r.spec}" for r in e.remedies]
    return "\n".join(lines)


#: A validation loss this much lower over the last third of the run is still
#: falling: more steps are the first thing to try.
STILL_FALLING = 0.8
#: RunConfig fields whose default depends on other fields (resolved()).
_DEPENDENT = ("activation", "recurrent_init", "gate_init", "chrono", "probe_every")
_DEFAULTS = RunConfig()
#: Options a command shows first.
_FIRST = ["task", "cell", "length"]


@dataclass(frozen=True)
class Remedy:
    """A command to try next, what it changes and the spec that studies it."""

    command: str
    what: str
    spec: str


@dataclass(frozen=True)
class Explanation:
    """Why an unsolved run did not solve, and what to try."""

    why: str
    remedies: list[Remedy]


def option_words(name: str, value) -> list[str]:
    """The command-line words that set option ``name`` to ``value`` (unquoted)."""
    from seqvg.spec import format_assignment

    flag = "--" + name.replace("_", "-")
    if value is None:
        return []
    if isinstance(value, dict):  # task_args, cell_args: one --task-arg / --cell-arg KEY=VALUE each
        flag = "--task-arg" if name == "task_args" else "--cell-arg"
        return [w for k, v in sorted(value.items()) for w in (flag, format_assignment(k, v))]
    if isinstance(value, bool):
        if name == "early_stop":
            return [] if value else ["--no-early-stop"]
        return [flag] if value else []
    if isinstance(value, float):
        # :g keeps six digits: --lr 0.00123456789 would come back as 0.00123457.
        short = f"{value:g}"
        return [flag, short if float(short) == value else repr(value)]
    return [flag, str(value)]


def train_command(cfg: RunConfig, out: str | None = None, show: tuple[str, ...] = ()) -> str:
    """The shortest ``seqvg train`` command that runs ``cfg`` (cell and length always
    shown, the rest only where they differ from what the defaults resolve to)."""
    cfg = cfg.resolved()
    names = [f.name for f in dataclasses.fields(RunConfig)]
    opts = {n: getattr(cfg, n) for n in names
            if n in ("cell", "length") or n in show
            or (n not in _DEPENDENT and getattr(cfg, n) != getattr(_DEFAULTS, n))}
    for _ in range(len(_DEPENDENT)):
        got = RunConfig(**opts).resolved()
        differ = [n for n in names if getattr(got, n) != getattr(cfg, n)]
        if not differ:
            break
        opts.update({n: getattr(cfg, n) for n in differ})
    if "task_args" in opts:  # only the parameters that differ from the task's defaults
        defaults = get_task(cfg.task).params
        opts["task_args"] = {k: v for k, v in cfg.task_args.items() if defaults.get(k) != v} or None
    words = ["seqvg", "train"]
    for n in sorted(names, key=lambda n: (n not in _FIRST, _FIRST.index(n) if n in _FIRST else 0)):
        if n in opts:
            words += option_words(n, opts[n])
    if out is not None:
        words += ["--out", str(out)]
    # Quoted for the shell: a path with a space or a cell argument's quotes must paste as one word.
    return " ".join(shlex.quote(w) for w in words)


def _remedy(run: Run, cfg: RunConfig, suffix: str, what: str, spec: str, show=(), **changes) -> Remedy:
    """A remedy that changes ``changes`` in the run's config; its own --out
    when the default run directory would be this run's."""
    from seqvg.config import default_run_name

    # Dependent options at their defaults follow the change (--steps moves
    # the probe schedule, --length the chrono T_max); others stay as set.
    bare = dataclasses.replace(cfg, **{n: None for n in _DEPENDENT}).resolved()
    template = dataclasses.replace(cfg, **{n: None for n in _DEPENDENT if getattr(bare, n) == getattr(cfg, n)})
    new = dataclasses.replace(template, **changes)
    out = None
    if default_run_name(new) == default_run_name(cfg) or run.path.name != default_run_name(cfg):
        out = f"{run.path}-{suffix}"
    return Remedy(train_command(new, out, show), what, spec)


def _where(final_val: float, baseline: float, plateau: float | None, plateau_text: str = "", evaluations: int = TAIL) -> str:
    if abs(final_val - baseline) <= NEAR * baseline:
        return f"val loss {final_val:.3g} sits on the trivial baseline {baseline:.3g} (a model with no memory)"
    if plateau is not None and abs(final_val - plateau) <= NEAR_PLATEAU * plateau:
        return f"val loss {final_val:.3g} sits on the {plateau:.3g} plateau (a model that {plateau_text})"
    over = "the last evaluation" if evaluations == 1 else f"the last {min(evaluations, TAIL)} evaluations"
    return f"val loss {final_val:.3g} over {over} (baseline {baseline:.3g})"


#: What a task must carry back to its output: what a short horizon cuts off.
_FAR = {"adding": "the first marker", "copy": "the symbols to copy", "temporal-order": "the first X/Y symbol",
        "selective-copy": "the data tokens", "recall": "the key-value pairs", "parity": "the first bits",
        "smnist": "the top rows of the image", "psmnist": "the first pixels of the permutation"}


def explain(run: Run) -> Explanation | None:
    """Why a completed run did not solve its task, and the remedies to try.

    Returns None for a solved run or one that did not complete (diverged,
    interrupted, running: ``diagnose`` says what to do about those).
    """
    if run.summary.get("status") != "completed" or run.summary.get("solved"):
        return None
    cfg = config_of(run.config, run.path / "config.json")
    task = get_task(cfg.task, cfg.task_args)
    seq_len = cfg.seq_len
    end = decay_summary(run.probes["h"][-1][0])
    val = [r["val_loss"] for r in run.metrics if math.isfinite(r.get("val_loss", math.nan))]
    final_val = _tail(val)
    earlier = _tail(val[: max(1, (2 * len(val)) // 3)])
    falling = math.isfinite(final_val) and final_val < STILL_FALLING * earlier
    where = _where(final_val, task.baseline(cfg.length), task.partial_plateau(cfg.length), task.plateau_text,
                   len(val))
    rate, horizon = end.get("rate_per_100"), end.get("horizon")
    far = _FAR.get(cfg.task, "the early inputs")
    if rate is None:
        why = f"the gradient at the last step is 0 or NaN, so nothing was learned from it; {where}."
    elif horizon < seq_len or end.get("underflow"):
        why = (f"at the end the gradient reaches back only {horizon} of {seq_len} steps "
               f"({rate:+.1f} decades/100 steps), so {far}, up to {seq_len} steps back, sends no learning "
               f"signal; {where}.")
    elif _steep(rate, seq_len) > 0:
        why = f"the gradient grows {rate:+.1f} decades/100 steps back in time (exploding); {where}."
    elif _steep(rate, seq_len) < 0:
        # Above the horizon's 1e-3 yet vanishing by diagnose's verdict: say both, not "the signal arrives".
        why = (f"the gradient reaches all {seq_len} steps but fades on the way: {decades_over(rate, seq_len):+.1f} "
               f"decades over them ({rate:+.1f} decades/100 steps, g0/gT {end['ratio']:.2g}), so {far} sends a "
               f"weak learning signal; {where}" + (", still falling." if falling else "."))
    else:
        why = (f"the gradient reaches all {seq_len} steps ({rate:+.1f} decades/100 steps), so the signal "
               f"arrives; the model has not fitted it yet: {where}" + (", still falling." if falling else "."))
    steps = cfg.steps * 2
    more = _remedy(run, cfg, f"steps{steps}", "more steps: the loss was still falling", "tasks/defaults.toml",
                   steps=steps)
    clip = _remedy(run, cfg, "clip1", "gradient clipping (Pascanu et al. 2013)", "tasks/remedies.toml", clip=1.0)
    out: list[Remedy] = []
    if falling:
        out.append(more)
    if _steep(rate, seq_len) > 0:
        out.append(clip)
    if cfg.cell in ("rnn", "irnn"):
        for cell in ("lstm", "gru"):
            out.append(_remedy(run, cfg, cell, f"a gated cell ({cell.upper()}, chrono init)",
                               "tasks/assignment-2-gating.toml", cell=cell, activation=None, recurrent_init=None,
                               layer_norm=False, recurrent_gain=1.0))
        if cfg.cell == "rnn" and cfg.activation == "tanh":
            out.append(_remedy(run, cfg, "irnn", "ReLU + identity init (IRNN, Le et al. 2015)",
                               "tasks/remedies.toml", cell="irnn", activation=None, recurrent_init=None))
    elif cfg.gate_init == "keras":
        out.append(_remedy(run, cfg, f"chrono{seq_len}", "chrono gate init: memory time scales up to T",
                           "tasks/assignment-2-gating.toml", show=("chrono",), gate_init=None, forget_bias=None,
                           chrono=seq_len))
    if cfg.cell in ("lstm", "gru"):
        if more not in out:
            out.append(dataclasses.replace(more, what="more steps: gated cells need more of them as T grows"))
        if clip not in out:
            out.append(clip)
    return Explanation(why, out[:3])


def format_explanation(e: Explanation) -> list[str]:
    """``why`` and ``try`` lines for a closing summary."""
    lines = [f"why       not solved: {e.why}"]
    for i, r in enumerate(e.remedies):
        lines.append(f"{'try' if i == 0 else '':10s}{r.command}  # {r.what}; see {r.spec}")
    return lines


def format_run_summary(out: Path, summary: dict) -> str:
    """The few lines ``seqvg train`` prints after a run (``summary``: its
    summary.json), with ``explain``'s lines when it completed unsolved."""
    f = format_summary
    final = summary.get("final") or {}
    decay = summary.get("decay") or {}
    solved = f"yes, at step {summary['solved_at_step']}" if summary.get("solved") else "no"
    lines = [
        f"run       {out}",
        f"status    {summary['status']} after {summary.get('steps_done')} steps ({f(summary.get('wall_s'))} s)",
        f"solved    {solved}",
        f"val       loss {f(final.get('val_loss'))}  {summary.get('metric_name')} {f(final.get('val_metric'))}"
        f"  (baseline loss {f(summary.get('baseline'))})",
    ]
    for key in ("init", "final"):
        d = decay.get(key) or {}
        if key == "final" and not d and decay.get("init"):
            lines.append("gradient  final -  (no probe after the untrained one)")
            continue
        lines.append(
            f"gradient  {key:5s} decay {f(d.get('rate_per_100'))} decades/100 steps, horizon {f(d.get('horizon'))}, "
            f"g0/gT {f(d.get('ratio'))}, underflow {f(d.get('underflow'))}"
        )
    if summary.get("status") == "completed" and not summary.get("solved"):
        explanation = explain(load_run(out))
        if explanation is not None:
            lines += format_explanation(explanation)
    return "\n".join(lines)
