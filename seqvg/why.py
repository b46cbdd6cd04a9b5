"""Why a gradient survives or vanishes: gates, step Jacobians, the recurrent spectrum.

    seqvg probe --cell lstm --length 200 --json     # keys gain, gates, jacobian
    seqvg probe --cell rnn --length 100 --json      # ... and recurrent_sigma_max

Back-propagation through time multiplies the gradient, once per step, by the
transposed step Jacobian J_t = d s_t / d s_{t-1} of the recurrent state s.
For a vanilla RNN J_t = diag(phi'(a_t)) W^T, bounded by max|phi'| sigma_max(W)
(Pascanu et al. 2013); for an LSTM the cell-state block of J_t is diag(f_t),
so a forget gate near 1 carries the gradient; for a GRU (Keras's convention
h_t = z_t * h_{t-1} + (1 - z_t) * h~_t) the keep gate z_t does. This module
measures those quantities on the probe batch, at every probe:

- ``gates``: per timestep, mean and 10/50/90th percentiles over batch and
  units of the LSTM's forget and input gates, the GRU's keep gate z, and the
  vanilla cell's phi'(a_t) (the per-unit factor it multiplies the gradient by);
- ``jacobian``: the spectral norm of J_t at ``JAC_POINTS`` timesteps spread
  over the sequence, per sample by ``KRYLOV_DIM`` Lanczos steps on J_t^T J_t
  (Jacobian-vector products), then the mean over the batch;
- ``recurrent_sigma_max``: sigma_max(W) of a vanilla cell's recurrent matrix;
- ``gain`` (``step_gain``, from the probe's own norms): g_t =
  ||dL/dh_{t-1}|| / ||dL/dh_t||, what one step back did to the gradient.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

#: Timesteps at which the step Jacobian's spectral norm is measured.
JAC_POINTS = 5
#: Lanczos steps of the sigma_max(J_t) estimate (``stepstats.lanczos_sigma_max``).
#: At init the top singular values of a step lie close together (closest with
#: chrono-initialised gates, the default), which slows any iterative
#: estimate; at 128 units this many steps come within 0.5% of the explicit
#: Jacobian's for every built-in cell (power iteration needed 60 products to
#: come within a percent), tested in tests/test_why.py. Fewer steps do not
#: hold that tolerance once trained: after 400 adding-task steps the LSTM's
#: mean estimate was 0.55% low at 12 steps and 1.1% low at 8.
KRYLOV_DIM = 12
#: The statistics of each gate per timestep, in this order along their axis.
STATS = ("mean", "p10", "p50", "p90")
#: Gate names per cell kind (``seqvg.cellstep.fast_kind``).
GATES = {"lstm": ("forget", "input"), "gru": ("keep",), "rnn": ("dphi",)}


def jacobian_timesteps(steps: int) -> np.ndarray:
    """The ``JAC_POINTS`` timesteps t >= 1 (J_t needs an s_{t-1}), spread evenly up to T-1."""
    return np.unique(np.linspace(1, steps - 1, JAC_POINTS).round().astype(np.int64))


def step_gain(g) -> np.ndarray:
    """Per-step gradient gain g_t = n_{t-1} / n_t for t = 1..T-1 (T-1 values).

    Args:
        g: (..., T) gradient norms n_t = ||dL/ds_t|| (the probe's h or c).

    Returns:
        (..., T-1) array; entry k is the gain of step t = k+1. Above 1 the
        gradient grew going one step back, below 1 it shrank. A 0/0 step
        (both norms underflowed) is NaN.
    """
    g = np.asarray(g, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return g[..., :-1] / g[..., 1:]


def geometric_mean(values) -> float | None:
    """Geometric mean of the finite positive values, or None if there are none."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v) & (v > 0)]
    return float(np.exp(np.mean(np.log(v)))) if v.size else None


#: Values (float32) one task of ``gate_stats`` copies and sorts at a time:
#: bounds the memory the statistics add to a probe at long T.
CHUNK_VALUES = 1 << 16

_pool: list = []


def _threads() -> ThreadPoolExecutor:
    """The process's pool for ``gate_stats`` (made once: starting threads at
    every probe cost a few ms)."""
    if not _pool:
        _pool.append(ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="seqvg-gate-stats"))
    return _pool[0]


def gate_stats_async(values: np.ndarray, transform=None):
    """``gate_stats`` started on the pool; call the result for the (4, T) array."""
    steps = values.shape[0]
    n = int(np.prod(values.shape[1:]))
    out = np.empty((4, steps), np.float32)
    per_task = max(1, min(-(-steps // (os.cpu_count() or 1)), CHUNK_VALUES // max(n, 1)))
    pos = np.array([0.1, 0.5, 0.9]) * (n - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)

    def work(a: int) -> None:
        b = min(a + per_task, steps)
        # A copy of these steps (``values`` may be a strided view of a
        # cache), sorted in place: numpy's float32 sort releases the GIL and
        # is several times faster than np.percentile's partitions here.
        flat = np.array(values[a:b], dtype=np.float32).reshape(b - a, n)
        if transform is not None:
            flat = transform(flat)
        flat.sort(axis=1)
        # np.percentile's linear interpolation on the sorted rows.
        out[1:, a:b] = (flat[:, lo] + (flat[:, hi] - flat[:, lo]) * (pos - lo)).T
        out[0, a:b] = flat.mean(axis=1, dtype=np.float64)

    futures = [_threads().submit(work, a) for a in range(0, steps, per_task)]

    def result() -> np.ndarray:
        for f in futures:
            f.result()
        return out

    return result


def gate_stats(values: np.ndarray, transform=None) -> np.ndarray:
    """(4, T) mean, 10th, 50th and 90th percentile per timestep of a (T, batch, units) gate.

    Any (T, ...) array, a strided view included: each step's values are
    pooled, in whatever order. Steps are copied and sorted a chunk at a time
    on all cores (the sort is most of the cost of a probe's gate statistics).
    A layer on seqvg's sequence ops has the same numbers, bit for bit, from
    ``kernels.gate_stats`` (tests/test_kernels.py); this is the loops' path
    and that op's reference.

    Args:
        values: (T, ...) values.
        transform: None, or a function applied to each (steps, values)
            float32 copy before its statistics (e.g. phi' from phi).
    """
    return gate_stats_async(values, transform)()


def to_json(why: dict | None, h: np.ndarray, c: np.ndarray | None) -> dict:
    """The ``seqvg probe --json`` keys of this module (NaN as None).

    ``gain`` is {state: {"t": [1..T-1], "layers": [[g_t ...] per layer],
    "geometric_mean": [per layer]}}; ``gates`` {name: {"stats": STATS,
    "layers": [{stat: [per t]} per layer]}}; ``jacobian`` {"t", "layers":
    [[sigma per t] per layer]}; ``recurrent_sigma_max`` {"layers": [sigma
    per layer], "times_mean_dphi": [sigma_max(W) times the mean over t, batch
    and units of phi'(a_t), per layer]} for vanilla cells, else None.
    """
    def clean(a):
        a = np.asarray(a, dtype=np.float64)
        return [None if not np.isfinite(v) else float(v) for v in a.ravel()] if a.ndim <= 1 else [clean(r) for r in a]

    states = {"h": h} if c is None else {"h": h, "c": c}
    steps = h.shape[-1]
    out = {
        "gain": {
            name: {
                "t": list(range(1, steps)),
                "layers": [clean(step_gain(g)) for g in norms],
                "geometric_mean": [geometric_mean(step_gain(g)) for g in norms],
            }
            for name, norms in states.items()
        },
        "gates": None, "jacobian": None, "recurrent_sigma_max": None,
    }
    if why is None:
        return out
    out["gates"] = {
        name: {"stats": list(STATS), "layers": [dict(zip(STATS, clean(layer))) for layer in values]}
        for name, values in why["gates"].items()
    }
    out["jacobian"] = {"t": [int(t) for t in why["jac_t"]], "layers": clean(why["jac_sigma"])}
    if "sigma_w" in why:
        dphi = why["gates"].get("dphi")
        times = [
            float(s * np.nanmean(d[0])) if d is not None and np.isfinite(d[0]).any() else None
            for s, d in zip(why["sigma_w"], dphi if dphi is not None else [None] * len(why["sigma_w"]))
        ]
        out["recurrent_sigma_max"] = {"layers": clean(why["sigma_w"]), "times_mean_dphi": times}
    return out


#: probes.npz keys of this module, besides ``gate_<name>`` (K, layers, 4, T).
NPZ_KEYS = ("jac_t", "jac_sigma", "sigma_w")


def npz_arrays(whys: list[dict]) -> dict[str, np.ndarray]:
    """The probes.npz arrays of K probes' ``StepStats`` results (one per probe row).

    ``gate_<name>`` (K, layers, 4, T), ``jac_t`` (J,), ``jac_sigma`` (K,
    layers, J) and, for vanilla cells, ``sigma_w`` (K, layers).
    """
    if not whys:
        return {}
    arrays = {f"gate_{name}": np.stack([w["gates"][name] for w in whys]) for name in whys[0]["gates"]}
    arrays["jac_t"] = np.asarray(whys[0]["jac_t"], np.int64)
    arrays["jac_sigma"] = np.stack([w["jac_sigma"] for w in whys])
    if "sigma_w" in whys[0]:
        arrays["sigma_w"] = np.stack([w["sigma_w"] for w in whys])
    return arrays


def from_npz(probes: dict, keep=None) -> list[dict]:
    """The per-probe ``StepStats`` results stored in probes.npz (rows ``keep``).

    Runs written before these keys existed give [].
    """
    if "jac_sigma" not in probes:
        return []
    rows = np.arange(probes["jac_sigma"].shape[0]) if keep is None else np.flatnonzero(keep)
    gates = {k[len("gate_"):]: v for k, v in probes.items() if k.startswith("gate_")}
    out = []
    for i in rows:
        w = {"gates": {name: v[i] for name, v in gates.items()}, "jac_t": probes["jac_t"], "jac_sigma": probes["jac_sigma"][i]}
        if "sigma_w" in probes:
            w["sigma_w"] = probes["sigma_w"][i]
        out.append(w)
    return out


def explain(run) -> str | None:
    """Why a run's gradient vanished or survived, in words, from its probes.npz.

    LSTM and GRU: the carry gate's mean and 90th percentile at init and at
    the last probe (what the typical unit and the units that carry the
    state keep per step); vanilla cells: sigma_max(W) x the mean phi', an
    upper bound on one step back. Then the measured per-step gain of each
    state (geometric mean, the figure that compounds over the sequence) and
    the step Jacobian's norm. None for runs recorded before these numbers existed.
    """
    p = run.probes
    if "jac_sigma" not in p:
        return None
    rows = [0] if p["steps"].shape[0] == 1 else [0, -1]
    whens = ["at init", f"at step {int(p['steps'][-1])}"]
    cell = run.cfg.get("cell")
    gate = {"lstm": ("forget", "forget gate", "the cell state"), "gru": ("keep", "keep gate z", "the state")}.get(cell)
    parts = []
    if gate and f"gate_{gate[0]}" in p:
        # Mean and 90th percentile, not compounded over T: the mean gate's
        # power says nothing about the few units that keep their state (a
        # mean of 0.70 gives 3e-16 over 99 steps for an LSTM whose gradient
        # reaches every step); the measured gain below is what compounds.
        figures = []
        for r, when in zip(rows, whens):
            g = p[f"gate_{gate[0]}"][r, 0]
            figures.append(f"mean {float(np.mean(g[0])):.2f}, 90th percentile {float(np.mean(g[3])):.2f} {when}")
        parts.append(f"{gate[1]} ({gate[2]} keeps that fraction per step): " + "; ".join(figures))
    elif "sigma_w" in p and "gate_dphi" in p:
        figures = []
        for r, when in zip(rows, whens):
            sw = float(p["sigma_w"][r, 0])
            dphi = float(np.mean(p["gate_dphi"][r, 0, 0]))
            figures.append(f"sigma_max(W) {sw:.2f} x mean phi' {dphi:.2f} = {sw * dphi:.2f} {when}")
        parts.append("upper bound on one step back: " + "; ".join(figures))
    keys = ["h", "c"] if "c" in p else ["h"]
    keys += sorted(k for k in p if k.startswith("state_"))  # a custom cell's further states
    for key in keys:
        gains = [geometric_mean(step_gain(p[key][r][0])) for r in rows]
        if gains[0] is not None:
            parts.append(f"measured gain of {key.removeprefix('state_')} per step back (geometric mean) " + ", ".join(
                f"{g:.3g} {when}" for g, when in zip(gains, whens) if g is not None))
    jac = [float(np.mean(p["jac_sigma"][r, 0])) for r in rows]
    parts.append("step Jacobian norm " + ", ".join(f"{j:.3g} {when}" for j, when in zip(jac, whens)))
    return "why: " + "; ".join(parts)
