"""Summary figures of a gradient-norm curve: decay rate, horizon, ratio.

    from seqvg.decay import decay_summary
    decay_summary(np.load("runs/x/probes.npz")["h"][-1, 0])

numpy only, so reports, diagnoses and study tables read run directories
without loading the probe's TensorFlow machinery (docs/design.md,
"Summaries").
"""

from __future__ import annotations

import math

import numpy as np

#: Steps back until the normalised gradient falls below this is the horizon.
HORIZON_LEVEL = 1e-3


def decay_summary(g) -> dict:
    """Summary figures of a gradient-norm curve g_t, t = 0..T-1.

    The curve is normalised by its last value g_{T-1}. Norms that underflowed
    to exactly 0 are left out of the fit and counted in ``underflow``.
    Where g_{T-1} is exactly 0 but earlier values are not, the state feeds
    only the next step and the model's output is computed beside it (a custom
    cell such as the LRU, whose probe taps the state as it leaves the step):
    the curve is then normalised by its last positive value instead, and the
    horizon counts from there.

    Returns:
        dict with ``rate_per_100`` (slope of the least-squares fit of
        log10 g_t against steps *back* in time, in decades per 100 steps:
        negative = vanishing, positive = exploding), ``horizon`` (how many
        steps back, counting t = T-1 itself, g_t stays >= 1e-3 g_{T-1}),
        ``ratio`` (g_0 / g_{T-1}) and ``underflow`` (count of exact zeros).
        Values that cannot be computed are None.
    """
    g = np.asarray(g, dtype=np.float64)
    length = g.shape[0]
    positive = np.nonzero(np.isfinite(g) & (g > 0))[0]
    if g.size and g[-1] == 0.0 and positive.size:
        # A state that only feeds the next step: nothing follows its last value.
        g = g[: positive[-1] + 1]
        length = g.shape[0]
    underflow = int(np.sum(g == 0.0))
    last = g[-1] if g.size else math.nan
    if not (np.isfinite(last) and last > 0):
        return {"rate_per_100": None, "horizon": None, "ratio": None, "underflow": underflow}
    n = g / last
    ok = np.isfinite(n) & (n > 0)
    t = np.arange(length, dtype=np.float64)
    rate = None
    if ok.sum() >= 2:
        slope = np.polyfit(t[ok], np.log10(n[ok]), 1)[0]
        rate = float(-100.0 * slope)  # per step back in time
    below = ~(n >= HORIZON_LEVEL)  # NaN counts as below
    back = below[::-1]
    horizon = int(np.argmax(back)) if back.any() else length
    ratio = float(n[0]) if np.isfinite(n[0]) else None
    return {"rate_per_100": rate, "horizon": horizon, "ratio": ratio, "underflow": underflow}


def format_summary(value) -> str:
    """Formats a summary figure for tables (None as '-')."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.3g}"
