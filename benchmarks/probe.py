"""Cost of one gradient probe against one training step, measured in one run.

    python benchmarks/probe.py            # T=200, batch 64, 128 units
    python benchmarks/probe.py --repeats 20 --length 200 --mem-length 1000
    python benchmarks/probe.py --clock cpu    # CPU time: steadier on a loaded machine

For rnn, lstm and gru, each in a process of its own with the thread pools
``seqvg train`` sets up for it (``execpath.settle_inter_op``: one TensorFlow
inter-op thread for an LSTM or a GRU on seqvg's ops): the median wall time
of one probe (all T per-timestep norms, one backward pass) and of one
training step through seqvg's own compiled step (data generation included,
as in `seqvg train`), timed in back-to-back pairs, and their ratio (median of the pairs' ratios, with its
quartiles, so the noise of a shared CPU shows), and the same ratio for the
probe's two parts alone: the gradient norms (``grad_ratio``) and the gate and
step-Jacobian statistics of ``seqvg.why`` (``why_ratio``), computed from
what that pass hands them. Then the peak resident memory that one probe and
one training step add at T=1000, each in a fresh process (VmHWM minus VmRSS
before the call). Times are wall-clock (issue 22's figure), or with ``--clock
cpu`` the CPU time of all the process's threads: on a loaded shared machine
the wall ratio swings with what else runs, the CPU ratio much less.

Earlier idle runs on the README's machine: at 12dcad2 (five runs) probe/step
rnn 0.62-0.81, lstm 0.95-0.98, gru 0.91-1.08; at 149b522 (before the gate
statistics' guided selection and the one-call probe) probe/step rnn
0.70-0.90, lstm 1.01-1.07, gru 1.00-1.01 over three runs; with the gate statistics in numpy
(8eb3ae2) probe/step 1.03, 1.17 and 1.07 (why/step 0.48, 0.51, 0.40); before
the vanilla RNN's probe op and the step-Jacobian op, 2.11, 1.93 and 1.71,
with peaks at T=1000 of 318, 406 and 299 MiB. On the shared 2-core machine
on 2026-12-01 at load ~1 (this benchmark's own threads), three runs each
alternating 8403374 (the step-Jacobian op's own AVX-512 products) with
dcc2d79: probe/step lstm 0.91, 0.90, 0.89 (dcc2d79: 0.92, 0.94, 0.94), gru
0.95, 0.98, 0.89 (1.05, 0.91, 0.90); why/step lstm 0.23-0.24 (0.25-0.26),
gru 0.22-0.23 (0.23-0.25); peaks at T=1000 unchanged. At 225dc65, each cell
in its own process and the LSTM's and GRU's with one inter-op thread (three
idle runs): lstm 0.93-0.95, gru 0.90-0.92, their quartiles within 0.89-0.98,
where the three runs just before, all cells in one process with
TensorFlow's default, gave lstm 0.90-0.99, gru 0.90-1.02 and quartiles up
to 1.17.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

from common import cell_list, cpu, paired_ratio, positive_int, ratio_spread, time_interleaved, wall

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def time_cell(cell: str, length: int, batch: int, units: int, repeats: int, clock=wall) -> dict:
    import tensorflow as tf

    from seqvg.config import RunConfig
    from seqvg.models import build_model, compile_model
    from seqvg.probe import Prober
    from seqvg.tasks import STREAM_TRAIN, get_task, probe_batch, stream
    from seqvg.training import make_train_step

    cfg = RunConfig(cell=cell, length=length, units=units, batch_size=batch, probe_batch=batch).resolved()
    model = build_model(cfg)
    compile_model(model, cfg)
    task = get_task(cfg.task)
    step_fn = make_train_step(model, task, model.optimizer)
    prober = Prober(model, task)
    px, py = probe_batch(cfg)
    pxc, pyc = tf.constant(px, tf.float32), tf.constant(py)
    counter = [0]

    def train_step():
        counter[0] += 1
        x, y = task.generate(stream(cfg.seed, STREAM_TRAIN, counter[0]), batch, length)
        float(step_fn(tf.constant(x), tf.constant(y))[0])

    def one_probe():
        prober(px, py)

    def grad_part():  # the one forward and backward pass of Prober.__call__
        float(prober._fn(pxc, pyc)[0])

    why_in = prober._fn(pxc, pyc)[3]  # what that pass hands StepStats

    t = time_interleaved({"step": clock(train_step), "probe": clock(one_probe), "grad": clock(grad_part),
                          "why": clock(lambda: prober.stats(why_in, length))}, repeats, warmup=3)
    return {
        "cell": cell,
        "probe_s": statistics.median(t["probe"]),
        "step_s": statistics.median(t["step"]),
        "ratio": paired_ratio(t["probe"], t["step"]),
        "ratio_quartiles": ratio_spread(t["probe"], t["step"]),
        "grad_ratio": paired_ratio(t["grad"], t["step"]),
        "why_ratio": paired_ratio(t["why"], t["step"]),
    }


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def peak_memory_child(cell: str, length: int, batch: int, units: int, what: str) -> None:
    """Runs in a fresh process: prints the peak memory in MiB that one probe
    (``what`` "probe") or one training step ("step") adds, on the same batch."""
    import tensorflow as tf

    from seqvg.config import RunConfig
    from seqvg.models import build_model, compile_model
    from seqvg.probe import Prober
    from seqvg.tasks import get_task, probe_batch
    from seqvg.training import make_train_step

    cfg = RunConfig(cell=cell, length=length, units=units, batch_size=batch, probe_batch=batch).resolved()
    model = build_model(cfg)
    task = get_task(cfg.task)
    px, py = probe_batch(cfg)
    if what == "probe":
        prober = Prober(model, task)
        call = lambda: prober(px, py)  # noqa: E731
    else:
        compile_model(model, cfg)
        step_fn = make_train_step(model, task, model.optimizer)
        call = lambda: step_fn(tf.constant(px), tf.constant(py))  # noqa: E731
    before = _rss_kib("VmRSS")
    call()  # the first call, tracing included, as a run's first probe or step
    peak = _rss_kib("VmHWM")
    print(json.dumps({"cell": cell, "peak_mib": (peak - before) / 1024}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--length", type=positive_int, default=200, help="sequence length T of the timed runs (200)")
    ap.add_argument("--batch", type=positive_int, default=64, help="batch size of the step and the probe (64)")
    ap.add_argument("--units", type=positive_int, default=128, help="recurrent units (128)")
    ap.add_argument("--repeats", type=positive_int, default=15,
                    help="timed (step, probe) pairs per cell, after 3 warm-up pairs (15)")
    ap.add_argument("--mem-length", type=positive_int, default=1000,
                    help="sequence length of the peak-memory measurement (1000)")
    ap.add_argument("--cells", type=cell_list, default="rnn,lstm,gru", help="comma-separated cells (rnn,lstm,gru)")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="time each call by the wall clock (the figure of issue 22), or by the CPU time of the "
                         "process's threads together, steadier than the wall clock on a loaded machine (wall)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--_child", help=argparse.SUPPRESS)
    ap.add_argument("--_time", help=argparse.SUPPRESS)
    args = ap.parse_args()
    clock = cpu if args.clock == "cpu" else wall
    if args._child:
        cell, what = args._child.split(":")
        peak_memory_child(cell, args.mem_length, args.batch, args.units, what)
        return
    if args._time:
        from seqvg.execpath import settle_inter_op

        # The thread pools seqvg train sets up for a run of this cell alone.
        settle_inter_op([args._time])
        row = time_cell(args._time, args.length, args.batch, args.units, args.repeats, clock)
        import tensorflow as tf

        row["inter_op_threads"] = tf.config.threading.get_inter_op_parallelism_threads()
        print(json.dumps(row))
        return
    rows = []
    for c in args.cells:  # each cell timed in a process of its own, as seqvg train runs it
        out = subprocess.run(
            [sys.executable, __file__, "--_time", c, "--length", str(args.length), "--batch", str(args.batch),
             "--units", str(args.units), "--repeats", str(args.repeats), "--clock", args.clock],
            capture_output=True, text=True, check=True,
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    for row in rows:
        for what in ("probe", "step"):
            out = subprocess.run(
                [sys.executable, __file__, "--_child", f"{row['cell']}:{what}", "--mem-length", str(args.mem_length),
                 "--batch", str(args.batch), "--units", str(args.units)],
                capture_output=True, text=True, check=True,
            )
            peak = json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]
            row[f"{what}_peak_mib_T{args.mem_length}"] = peak
    if args.json:
        print(json.dumps({"length": args.length, "batch": args.batch, "units": args.units, "clock": args.clock,
                          "load": os.getloadavg()[0], "cells": rows}))
        return
    print(f"probe vs train step: T={args.length}, batch {args.batch}, {args.units} units, "
          f"median of {args.repeats}, {os.cpu_count()} cores, {args.clock} clock, load {os.getloadavg()[0]:.1f}")
    print(f"{'cell':<6} {'inter-op':>8} {'probe ms':>9} {'step ms':>9} {'probe/step':>11} {'quartiles':>11} "
          f"{'grad/step':>10} {'why/step':>9} {'probe/step MiB @T=' + str(args.mem_length):>22}")
    for r in rows:
        q1, q3 = r["ratio_quartiles"]
        inter = r["inter_op_threads"] or "default"
        print(f"{r['cell']:<6} {inter:>8} {1e3 * r['probe_s']:>9.1f} {1e3 * r['step_s']:>9.1f} {r['ratio']:>11.2f} "
              f"{f'{q1:.2f}-{q3:.2f}':>11} {r['grad_ratio']:>10.2f} {r['why_ratio']:>9.2f} "
              f"{r[f'probe_peak_mib_T{args.mem_length}']:>12.0f}/{r[f'step_peak_mib_T{args.mem_length}']:<9.0f}")
    print("probe/step: median over the pairs of probe time / step time (each pair timed back to back); "
          "quartiles: of those pair ratios; grad/step, why/step: the probe's gradient norms and its "
          "seqvg.why statistics alone, timed alike; inter-op: TensorFlow's inter-op threads in the cell's process")


if __name__ == "__main__":
    main()
