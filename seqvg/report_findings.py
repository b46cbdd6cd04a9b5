"""The title page's three findings, in words, from the runs' own numbers:
the outcome, the gradient flow behind it, and what carries (or loses) the
gradient at each step back.

    seqvg report runs/demo -o reports/demo.pdf
"""

from __future__ import annotations

import math

import numpy as np

from seqvg.decay import decay_summary
from seqvg.report_text import listed, median, number, run_outcome
from seqvg.report_view import view
from seqvg.rundir import Run
from seqvg.tasks import get_task

#: An unsolved run whose final val loss is at least this fraction of the
#: trivial baseline has learned nothing long-range (diagnose's "flat" is
#: within 10% either side).
MEMORYLESS = 0.9
#: The gate that carries the state on, per cell: LSTM forget, GRU keep (z).
CARRY_GATE = {"lstm": ("forget", "forget gate f_t"), "gru": ("keep", "keep gate z_t")}


def _carry_factor(r: Run, row: int) -> tuple[str, float] | None:
    """What carries the gradient per step back at probe ``row``: the carry
    gate's 90th percentile over batch and units, averaged over timesteps
    (gated cells), or sigma_max(W) x mean phi' (vanilla), bottom layer."""
    p = r.probes
    gate = CARRY_GATE.get(r.cfg.get("cell"))
    if gate and f"gate_{gate[0]}" in p:
        # The 90th percentile (STATS index 3): the units that carry the state.
        return f"{gate[0]} gate p90", float(np.mean(p[f"gate_{gate[0]}"][row, 0, 3]))
    if "sigma_w" in p and "gate_dphi" in p:
        return "sigma_max(W) x mean phi'", float(p["sigma_w"][row, 0]) * float(np.mean(p["gate_dphi"][row, 0, 0]))
    return None


def _baseline(r: Run) -> float:
    """The trivial baseline loss of a run's task, with its parameters, and length."""
    return get_task(r.cfg["task"], r.cfg.get("task_args")).baseline(r.cfg["length"])


def findings(runs: list[Run]) -> list[str]:
    """The report's three main findings in words, from the runs' numbers:
    the outcome, the gradient flow behind it, and what carries (or loses) the
    gradient at each step back."""
    from seqvg.why import geometric_mean, step_gain

    v = view(runs)
    task = get_task(v.runs[0].cfg["task"], v.runs[0].cfg.get("task_args"))
    criterion = f"val {task.metric_name} {'>=' if task.higher_is_better else '<'} {task.threshold:g}"
    lengths = sorted({r.cfg["length"] for r in v.runs})
    solved_runs = [r for r in v.runs if r.summary.get("solved")]
    # A run stopped (or still going) before its end has no final loss: it
    # neither "ended" anywhere nor failed; it is named, not counted as unsolved.
    stopped = [i for i, r in enumerate(v.runs) if not r.summary.get("solved") and r.summary.get("status") in
               ("running", "interrupted")]
    # A diverged run did not "end at the baseline having learned nothing": its
    # loss became NaN or Inf, which stopped it. Named as such, not counted there.
    diverged = [i for i, r in enumerate(v.runs) if not r.summary.get("solved")
                and r.summary.get("status") == "diverged"]
    won, lost, memoryless = [], [], 0
    for name, idx in v.groups:
        members = [v.runs[i] for i in idx]
        ok = [r.summary["solved_at_step"] for r in members if r.summary.get("solved")]
        if len(members) == 1 and ok:
            won.append(f"{name} at step {ok[0]}")
        elif ok:
            won.append(f"{name} {len(ok)}/{len(members)} seeds (median step {median(ok):.0f})")
        left = [v.runs[i] for i in idx if not v.runs[i].summary.get("solved") and i not in stopped
                and i not in diverged]
        # Near or above the trivial baseline: the run learned nothing long-range.
        flat = [r for r in left if ((r.summary.get("final") or {}).get("val_loss") or math.inf)
                >= MEMORYLESS * _baseline(r)]
        memoryless += len(flat)
        if left:
            loss = median([(r.summary.get("final") or {}).get("val_loss") for r in left])
            lost.append((loss is None or loss >= MEMORYLESS * _baseline(members[0]),
                         f"{name} {number(loss)}" + (f" (median of {len(left)})" if len(left) > 1 else "")))
    bases = sorted({round(_baseline(r), 12) for r in v.runs})
    tasks = list(dict.fromkeys(r.cfg["task"] for r in v.runs))
    solved_what = (f"{task.name} at T={', '.join(map(str, lengths))} ({criterion})" if len(tasks) == 1 else
                   f"their task ({', '.join(tasks)})")
    first = (f"{len(solved_runs)} of {len(v.runs) - len(stopped)} {'finished ' if stopped else ''}runs solved "
             f"{solved_what}" + (f": {listed(won)}." if won else "."))
    if stopped:
        named = listed([f"{v.labels[i].label} ({run_outcome(v.runs[i])})" for i in stopped])
        first = (f"No run has finished, so none is counted as solved or not: {named}." if len(stopped) == len(v.runs)
                 else first + f" Not finished, so not counted: {named}.")
    if diverged:
        at = [f"{v.labels[i].label} at step {v.runs[i].summary.get('diverged_at_step', '?')}" for i in diverged]
        first += f" Diverged (the loss became NaN or Inf, which ended the run): {listed(at)}."
    if lost:
        lost.sort(key=lambda item: not item[0])
        unsolved_n = len(v.runs) - len(solved_runs) - len(stopped) - len(diverged)
        base_text = f"the trivial baseline (val loss {', '.join(f'{b:.3g}' for b in bases)}: a model with no memory)"
        if memoryless and unsolved_n == 1:
            first += (f" The unsolved run ended at or above {MEMORYLESS:.0%} of {base_text} "
                      "and learned nothing long-range.")
        elif memoryless:
            first += (f" Of the {unsolved_n} unsolved, {memoryless} ended at or above {MEMORYLESS:.0%} of {base_text} "
                      "and learned nothing long-range.")
        else:
            first += (f" The {unsolved_n} unsolved ended below {base_text}: they learned part of the task."
                      if unsolved_n > 1 else f" The unsolved run ended below {base_text}: it learned part of the task.")
        first += f" Final val loss: {listed([text for _, text in lost])}."

    def rates(r: Run) -> tuple:
        h = r.probes["h"]
        init = decay_summary(h[0][0])
        end = decay_summary(h[-1][0]) if h.shape[0] > 1 else None
        return init, end, int(h.shape[-1])

    unsolved = [r for r in v.runs if not r.summary.get("solved")]
    trained = [r for r in v.runs if r.probes["h"].shape[0] > 1]
    if solved_runs and unsolved and trained:
        parts, short = [], {}
        for what, group in (("solved", solved_runs), ("unsolved", unsolved)):
            ends = [rates(r) for r in group if r.probes["h"].shape[0] > 1]
            rate = median([e["rate_per_100"] for _, e, _ in ends])
            reach = [100 * (e["horizon"] or 0) / t for _, e, t in ends]
            short[what] = min(reach, default=100) < 100
            where = ("the whole sequence" if not short[what] else
                     f"{min(reach):.0f}% of the sequence" if min(reach) == max(reach) else
                     f"{min(reach):.0f}-{max(reach):.0f}% of the sequence")
            parts.append(f"{what} runs {number(rate, '{:+.2f}')} decades per 100 steps back (median), "
                         f"reaching {where}")
        second = "The gradient at the end of training: " + "; ".join(parts) + ". "
        second += ("In some unsolved runs it falls below 1e-3 of the last step's before it reaches the first "
                   "inputs, which then send no learning signal." if short["unsolved"] else
                   "It reaches the first inputs in every unsolved run, so a vanishing gradient is not what held "
                   "them back (the diagnosis says what did).")
    else:
        changes = []
        for name, idx in v.groups:
            init, end, t = rates(v.runs[idx[0]])
            if end is not None:
                changes.append((name, init["rate_per_100"], end["rate_per_100"], end["horizon"], t))
            else:
                changes.append((name, init["rate_per_100"], None, init["horizon"], t))
        # A run whose gradient overflowed at init has no rate: last, said so, not "reaches only 0 steps".
        changes.sort(key=lambda c: (c[1] is None, 0 if c[1] is None else c[1]))
        phrases = [f"{n} {number(a, '{:+.2f}')}" + (f" -> {number(b, '{:+.2f}')}" if trained else "")
                   + (f" (reaches only {h or 0} of {t} steps)" if (h or 0) < t else "") if a is not None else
                   f"{n}: no finite gradient to measure (NaN or Inf in the probe)" for n, a, b, h, t in changes]
        second = ("Gradient decay, decades per 100 steps back" + (" at init -> at the end" if trained else " at init")
                  + f", fastest first: {listed(phrases)}.")
    why = []
    for name, idx in v.groups:
        r = v.runs[idx[0]]
        rows = [0, -1] if r.probes["h"].shape[0] > 1 else [0]
        gains = [geometric_mean(step_gain(r.probes["h"][row][0])) for row in rows]
        if gains[0] is None:
            continue
        steps = int(r.probes["h"].shape[-1]) - 1
        gains = [x if x is not None else math.nan for x in gains]
        text = (f"{name} {' -> '.join(f'{x:.3f}' for x in gains)} "
                f"({' -> '.join(f'{x ** steps:.1g}' for x in gains)} over {steps} steps)")
        mechanism = [_carry_factor(r, row) for row in rows]
        if mechanism[0] is not None:
            what = mechanism[0][0]
            values = [m[1] if m is not None else math.nan for m in mechanism]
            text += f", {what} {' -> '.join(f'{x:.2f}' for x in values)}"
        why.append(text)
    third = ("What one step back multiplies ||dL/dh|| by, measured (geometric mean of "
             "||dL/dh_(t-1)|| / ||dL/dh_t|| over the sequence)" + (", at init -> at the end" if trained else ", at init")
             + f": {listed(why)}. A factor near 1 carries the gradient to the first inputs; below 1 it compounds "
             "to nothing over the sequence. Beside it, the mechanism: a gated cell's carry gate (90th percentile over "
             "units and batch: the units that keep their state longest, which carry the gradient), or "
             "sigma_max(W) x mean phi', a vanilla cell's bound from above.")
    return [first, second, third]
