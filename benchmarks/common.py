"""Helpers shared by the benchmarks (not part of seqvg): argument types and timing.

    from common import positive_int, time_interleaved

The benchmarks run as scripts (``python benchmarks/probe.py``), so this
module is importable from them as ``common``: Python puts the script's own
directory first on the import path.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1, or a usage error naming the value."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not >= 1")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0 (0 meaning "skip")."""
    return 0 if text.strip() == "0" else positive_int(text)


def cell_list(text: str) -> list[str]:
    """argparse type: comma-separated cells, each one of rnn, lstm, gru."""
    cells = text.split(",")
    bad = [c for c in cells if c not in ("rnn", "lstm", "gru")]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown cell(s) {', '.join(bad)}; choose from rnn, lstm, gru")
    return cells


def wall(fn: Callable[[], object]) -> Callable[[], float]:
    """``fn`` made to return its own wall time in seconds."""

    def timed() -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    return timed


def cpu(fn: Callable[[], object]) -> Callable[[], float]:
    """``fn`` made to return the CPU time it took, in seconds: the process's,
    all threads together (a thread spinning at a barrier counts)."""

    def timed() -> float:
        t0 = time.process_time()
        fn()
        return time.process_time() - t0

    return timed


def time_block(step: Callable[[], object], steps: int) -> float:
    """Seconds per step over a block of ``steps`` calls of ``step``."""
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) / steps


def time_interleaved(fns: dict[str, Callable[[], float]], repeats: int, warmup: int = 0) -> dict[str, list[float]]:
    """Runs timing functions in alternation: a, b, a, b, ...

    Alternating gives each function the same machine state, so their ratio
    holds even when a shared CPU's speed drifts by ±20% from one minute to
    the next (measured on the 2-core machines seqvg is benchmarked on).

    Args:
        fns: name -> function returning the seconds it measured (see ``wall``;
            a block in another process reports its own).
        repeats: timed rounds.
        warmup: untimed rounds first.

    Returns:
        name -> the seconds of each round, in round order.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(fn())
    return times


def paired_ratio(num: list[float], den: list[float]) -> float:
    """Median over rounds of num[i] / den[i]: a ratio robust to drift between rounds."""
    return statistics.median(a / b for a, b in zip(num, den, strict=True))


def ratio_spread(num: list[float], den: list[float]) -> tuple[float, float]:
    """First and third quartile of the per-round ratios num[i] / den[i]."""
    ratios = sorted(a / b for a, b in zip(num, den, strict=True))
    if len(ratios) < 2:
        return ratios[0], ratios[0]
    q1, _, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
    return q1, q3
