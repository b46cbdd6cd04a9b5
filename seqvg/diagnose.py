"""Text diagnosis of a run, from its run directory alone.

    seqvg diagnose runs/adding-rnn-T100-s0

Verdicts follow the seeds' "how to spot it": gradient flow (vanishing /
exploding / healthy, with decay rate, horizon and underflow as evidence), a
flat loss at the trivial baseline, a plateau at a partial solution (adding:
1/12, only the near marker remembered), lower layers that stopped changing,
and divergence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from seqvg.decay import decay_summary
from seqvg.rundir import Run
from seqvg.tasks import get_task
from seqvg.why import explain

#: |decay rate| above this many decades per 100 steps counts as vanishing or
#: exploding: the gradient 100 steps back is 10x off the last step's.
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
    if underflow or rate < -RATE_LIMIT or horizon < length:
        return Verdict("vanishing", f"vanishing gradient at {when}: {evidence}")
    if rate > RATE_LIMIT:
        return Verdict("exploding", f"exploding gradient at {when}: {evidence}")
    return Verdict("healthy", f"healthy gradient flow at {when}: {evidence}")


def _tail(values: list[float], k: int = 3) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite[-k:])) if finite else math.nan


def diagnose(run: Run) -> list[Verdict]:
    """All verdicts for one run, most important first."""
    cfg = run.cfg
    task = get_task(cfg["task"])
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
        out.append(Verdict(status, f"{status}: the run stopped at step {reached} "
                                   "(resume with seqvg train --resume)"))
    if run.summary.get("solved"):
        out.append(Verdict("solved", f"solved at step {run.summary['solved_at_step']}"))

    h = run.probes["h"]
    init = decay_summary(h[0][0])
    out.append(gradient_verdict(init, length, "init"))
    if h.shape[0] > 1:
        out.append(gradient_verdict(decay_summary(h[-1][0]), length, f"step {int(run.probes['steps'][-1])}"))
    because = explain(run)  # seqvg.why: gates, sigma_max(W), per-step gain, step Jacobian
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
                                          f"{plateau:.4g} (remembers only the near marker)"))
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
    """The diagnosis as lines of text."""
    return "\n".join(f"- {v.text}" for v in diagnose(run))
