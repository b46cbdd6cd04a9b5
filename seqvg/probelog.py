"""A training run's gradient probes, as one list of records; probes.npz is its file form.

    from seqvg.probelog import ProbeLog
    log = ProbeLog()
    log.add(0, prober(x, y))                 # one record per probe
    arrays = log.to_arrays()                 # what probes.npz holds (docs/design.md)
    log = ProbeLog.from_arrays(arrays, up_to_step=0)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from seqvg import why
from seqvg.decay import decay_summary


@dataclass(frozen=True)
class ProbeRecord:
    """One probe of the model at a training step.

    Attributes:
        step: the training step (0: the untrained model).
        h: (layers, T) ||dL/dh_t|| per recurrent layer.
        x: (T,) ||dL/dx_t||.
        loss: the probe's forward loss.
        c: (layers, T) ||dL/dc_t|| of an LSTM, else None.
        states: a custom cell's further states, name -> (layers, T).
        why: ``seqvg.why``'s gates and step Jacobians, or None (a run begun
            before they were measured).
    """

    step: int
    h: np.ndarray
    x: np.ndarray
    loss: float
    c: np.ndarray | None = None
    states: dict[str, np.ndarray] = field(default_factory=dict)
    why: dict | None = None

    def decay(self) -> dict:
        """Decay figures of the bottom layer's h curve (``decay_summary``)."""
        return decay_summary(self.h[0])


@dataclass
class ProbeLog:
    """The probes of one run, oldest first."""

    records: list[ProbeRecord] = field(default_factory=list)

    def add(self, step: int, result) -> ProbeRecord:
        """Records a ``seqvg.probe.ProbeResult`` taken at training step ``step``."""
        record = ProbeRecord(step, result.h, result.x, result.loss, result.c, dict(result.states or {}), result.why)
        self.records.append(record)
        return record

    @property
    def last_step(self) -> int | None:
        return self.records[-1].step if self.records else None

    def decay(self) -> dict:
        """summary.json's ``decay``: the first (untrained) and the last probe's figures."""
        return {
            "init": self.records[0].decay() if self.records else None,
            # None, not the init figures again, for a run with no probe after step 0 (diverged at step 2).
            "final": self.records[-1].decay() if len(self.records) > 1 else None,
        }

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The arrays of probes.npz, one row per record."""
        records = self.records
        arrays = {
            "steps": np.asarray([r.step for r in records], dtype=np.int64),
            "h": np.stack([r.h for r in records]).astype(np.float32),
            "x": np.stack([r.x for r in records]).astype(np.float32),
            "loss": np.asarray([r.loss for r in records], dtype=np.float32),
        }
        if records[0].c is not None:
            arrays["c"] = np.stack([r.c for r in records]).astype(np.float32)
        for name in records[0].states:
            arrays[f"state_{name}"] = np.stack([r.states[name] for r in records]).astype(np.float32)
        # Gates and step Jacobians only when every row has them: a run begun
        # before they existed and resumed now goes on without.
        if all(r.why is not None for r in records):
            arrays.update(why.npz_arrays([r.why for r in records]))
        return arrays

    @classmethod
    def from_arrays(cls, probes: dict, up_to_step: int) -> ProbeLog:
        """The records of probes.npz's rows up to training step ``up_to_step``."""
        keep = probes["steps"] <= up_to_step
        steps = [int(v) for v in probes["steps"][keep]]
        whys = why.from_npz(probes, keep) or [None] * len(steps)
        c = probes["c"][keep] if "c" in probes else [None] * len(steps)
        states = {key[len("state_"):]: v[keep] for key, v in probes.items() if key.startswith("state_")}
        return cls([
            ProbeRecord(step, h, x, float(loss), c_k, {name: v[k] for name, v in states.items()}, why_k)
            for k, (step, h, x, loss, c_k, why_k) in enumerate(
                zip(steps, probes["h"][keep], probes["x"][keep], probes["loss"][keep], c, whys))
        ])
