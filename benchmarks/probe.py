"""Cost of one gradient probe against one training step, measured in one run.

    python benchmarks/probe.py            # T=200, batch 64, 128 units
    python benchmarks/probe.py --repeats 20 --length 200 --mem-length 1000

For rnn, lstm and gru: the median wall time of one probe (all T per-timestep
norms, one backward pass) and of one training step through seqvg's own
compiled step (data generation included, as in `seqvg train`), and their
ratio. Then the peak resident memory a probe adds at T=1000, measured in a
fresh process per cell (VmHWM minus VmRSS before the probe).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _timeit_interleaved(fns: dict, repeats: int, warmup: int = 3) -> dict:
    """Median seconds per call of each function, timed in alternation.

    Alternating (step, probe, step, probe, ...) gives both the same machine
    state, so their ratio holds even when a shared CPU's speed drifts
    between the two measurements.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def time_cell(cell: str, length: int, batch: int, units: int, repeats: int) -> dict:
    import tensorflow as tf

    from seqvg.config import RunConfig
    from seqvg.models import build_model, compile_model
    from seqvg.probe import Prober
    from seqvg.tasks import STREAM_TRAIN, get_task, stream
    from seqvg.training import make_train_step, probe_batch

    cfg = RunConfig(cell=cell, length=length, units=units, batch_size=batch, probe_batch=batch).resolved()
    model = build_model(cfg)
    compile_model(model, cfg)
    task = get_task(cfg.task)
    step_fn = make_train_step(model, task, model.optimizer)
    prober = Prober(model, task)
    px, py = probe_batch(cfg)
    counter = [0]

    def train_step():
        counter[0] += 1
        x, y = task.generate(stream(cfg.seed, STREAM_TRAIN, counter[0]), batch, length)
        float(step_fn(tf.constant(x), tf.constant(y))[0])

    def one_probe():
        prober(px, py)

    t = _timeit_interleaved({"step": train_step, "probe": one_probe}, repeats)
    t_step, t_probe = t["step"], t["probe"]
    return {"cell": cell, "probe_s": t_probe, "step_s": t_step, "ratio": t_probe / t_step}


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def peak_memory_child(cell: str, length: int, batch: int, units: int) -> None:
    """Runs in a fresh process: prints the probe's added peak memory in MiB."""
    from seqvg.config import RunConfig
    from seqvg.models import build_model
    from seqvg.probe import Prober
    from seqvg.tasks import get_task
    from seqvg.training import probe_batch

    cfg = RunConfig(cell=cell, length=length, units=units, probe_batch=batch).resolved()
    model = build_model(cfg)
    prober = Prober(model, get_task(cfg.task))
    px, py = probe_batch(cfg)
    before = _rss_kib("VmRSS")
    prober(px, py)
    peak = _rss_kib("VmHWM")
    print(json.dumps({"cell": cell, "peak_mib": (peak - before) / 1024}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--length", type=int, default=200)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--units", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--mem-length", type=int, default=1000)
    ap.add_argument("--cells", default="rnn,lstm,gru")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--_child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._child:
        peak_memory_child(args._child, args.mem_length, args.batch, args.units)
        return
    cells = args.cells.split(",")
    rows = [time_cell(c, args.length, args.batch, args.units, args.repeats) for c in cells]
    for row in rows:
        out = subprocess.run(
            [sys.executable, __file__, "--_child", row["cell"], "--mem-length", str(args.mem_length),
             "--batch", str(args.batch), "--units", str(args.units)],
            capture_output=True, text=True, check=True,
        )
        row["probe_peak_mib_T%d" % args.mem_length] = json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]
    if args.json:
        print(json.dumps({"length": args.length, "batch": args.batch, "units": args.units, "cells": rows}))
        return
    print(f"probe vs train step: T={args.length}, batch {args.batch}, {args.units} units, "
          f"median of {args.repeats}, {os.cpu_count()} cores")
    print(f"{'cell':<6} {'probe ms':>9} {'step ms':>9} {'probe/step':>11} {'peak MiB @T=' + str(args.mem_length):>16}")
    for r in rows:
        print(f"{r['cell']:<6} {1e3 * r['probe_s']:>9.1f} {1e3 * r['step_s']:>9.1f} {r['ratio']:>11.2f} "
              f"{r['probe_peak_mib_T%d' % args.mem_length]:>16.0f}")


if __name__ == "__main__":
    main()
