"""Training speed of seqvg's own training path against PyTorch and the matmul limit.

    python benchmarks/train_speed.py                 # the standard workload
    python benchmarks/train_speed.py --json          # one JSON object
    python benchmarks/train_speed.py --long-length 0 --repeats 7
    python benchmarks/train_speed.py --threads 1     # both sides on one thread
    python benchmarks/train_speed.py --runs 3        # 3 whole runs: the README's range table

Standard workload: adding problem, T=200, batch 64, 128 units, one recurrent
layer + Dense(1), Adam, float32, all cores; plus LSTM at T=1000. Each
figure is timed through ``seqvg.training.Trainer.train_batch``, the exact
code ``seqvg train`` runs per step (data generation included): median over
``--repeats`` blocks of ``--steps`` steps, after warm-up.

In the same run it measures numpy's float32 matmul rate, square (2048^3)
and at each cell's gate shape ((B x (n_in+U)) @ ((n_in+U) x gates*U)), which
bounds what any implementation can reach ("matmul limit"), the cost of one
gradient probe (so the overhead of the default probe schedule), and, when
torch is installed (``pip install 'seqvg[bench]'``), the same model and loop
in PyTorch (benchmarks/torch_reference.py, in its own process). seqvg's and
torch's blocks alternate, and "vs torch" is the median over rounds of the
two blocks' time ratio: a shared CPU's speed drifts by ±20% from minute to
minute, which would swamp a ratio of figures taken minutes apart.

Both sides run on ``--threads`` threads: TensorFlow's intra- and inter-op
pools (seqvg's sequence ops take theirs from the intra-op pool), torch's
``set_num_threads`` (each torch block reports the count it ran with) and
numpy's BLAS for the matmul figures.

``--runs N`` runs the whole comparison N times, each in a process of its
own with its own matmul peak, and prints the range over the runs of each
run's figures as the Markdown table the README carries (``--json``: every
run's object and the ranges).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import cell_list, non_negative_int, paired_ratio, positive_int, time_block, time_interleaved, wall

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

GATES = {"rnn": 1, "lstm": 4, "gru": 3}
N_IN = 2  # the adding problem's input features


def step_gflop(cell: str, length: int, batch: int, units: int) -> float:
    """Matmul GFLOP of one training step: forward, and backward at twice that.

    Per timestep the forward multiplies (B x (n_in+U)) by ((n_in+U) x gates*U);
    the backward needs that product twice (input/state gradients and weight
    gradients). Elementwise work and the Dense head are left out.
    """
    forward = 2.0 * batch * (N_IN + units) * GATES[cell] * units * length
    return 3.0 * forward / 1e9


def matmul_gflops(m: int, k: int, n: int, seconds: float = 0.3) -> float:
    """Median numpy float32 matmul rate for (m x k) @ (k x n), in GFLOP/s."""
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    for _ in range(3):
        a @ b
    t0 = time.perf_counter()
    a @ b
    reps = max(1, int(seconds / max(time.perf_counter() - t0, 1e-6) / 7))
    times = []
    for _ in range(7):
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        times.append((time.perf_counter() - t0) / reps)
    return 2.0 * m * k * n / statistics.median(times) / 1e9


class TorchPartner:
    """benchmarks/torch_reference.py --serve in its own process, timing torch blocks on request.

    Its own process keeps torch's and TensorFlow's thread pools apart; it
    waits on stdin while seqvg's blocks run, so only one computes at a time.
    """

    def __init__(self, cell: str, length: int, batch: int, units: int, warmup: int, threads: int):
        script = Path(__file__).with_name("torch_reference.py")
        # stderr to a file, not a pipe: an unread pipe would block torch once
        # its warnings filled the pipe's buffer.
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [sys.executable, str(script), "--cell", cell, "--length", str(length), "--batch", str(batch),
             "--units", str(units), "--warmup", str(warmup), "--threads", str(threads), "--serve"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True,
        )
        self._answer()  # {"ready": true} once torch is warm
        self.threads: set[int] = set()  # torch's thread count in each block

    def _answer(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout=60)
            self.stderr.seek(0)
            err = self.stderr.read().strip().splitlines()
            raise RuntimeError(f"torch_reference.py exited: {err[-1] if err else 'no output'}")
        return json.loads(line)

    def block(self, steps: int) -> float:
        """Seconds per step of one block of ``steps`` torch training steps."""
        self.proc.stdin.write(f"{steps}\n")
        self.proc.stdin.flush()
        answer = self._answer()
        self.threads.add(answer["threads"])
        return answer["seconds_per_step"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            self.close()
        else:
            self.proc.kill()
        self.stderr.close()


def speeds(cell: str, length: int, batch: int, units: int, repeats: int, steps: int, warmup: int,
           with_torch: bool, threads: int) -> dict:
    """steps/s of seqvg's training path (and torch's, in alternating blocks) and one probe's time."""
    from seqvg.config import RunConfig
    from seqvg.probe import Prober
    from seqvg.tasks import probe_batch
    from seqvg.training import Trainer

    cfg = RunConfig(cell=cell, length=length, units=units, batch_size=batch, probe_batch=batch).resolved()
    trainer = Trainer(cfg)
    counter = [0]

    def next_step() -> None:
        counter[0] += 1
        trainer.train_batch(counter[0])

    def ours() -> float:
        return time_block(next_step, steps)

    time_block(next_step, warmup)
    torch_threads = None
    if with_torch:
        with TorchPartner(cell, length, batch, units, warmup, threads) as torch_ref:
            t = time_interleaved({"seqvg": ours, "torch": lambda: torch_ref.block(steps)}, repeats)
        torch_threads = sorted(torch_ref.threads)
    else:
        t = time_interleaved({"seqvg": ours}, repeats)
    prober = Prober(trainer.model, trainer.task)
    px, py = probe_batch(cfg)
    prober(px, py)
    probe_times = time_interleaved({"probe": wall(lambda: prober(px, py))}, max(3, repeats))["probe"]
    result = {
        "steps_per_s": 1.0 / statistics.median(t["seqvg"]),
        "probe_s": statistics.median(probe_times),
        "torch_steps_per_s": None,
        "ratio_vs_torch": None,
        "torch_threads": torch_threads,
    }
    if with_torch:
        result["torch_steps_per_s"] = 1.0 / statistics.median(t["torch"])
        result["ratio_vs_torch"] = paired_ratio(t["torch"], t["seqvg"])
    return result


def op_threads(units: int, threads: int) -> int:
    """The threads seqvg's LSTM/GRU sequence ops run on: the most, up to
    ``threads``, that divide their unit blocks evenly (``Blocks`` and
    ``Threads`` in seqvg/csrc/lstm_ops.cc), which can be fewer than torch's."""
    blocks = max(1, min(12, units // 2))
    while units % blocks:
        blocks -= 1
    p = max(1, min(threads, blocks))
    while blocks % p:
        p -= 1
    return p


def cpu_model() -> str:
    """The CPU's model name (the machine class a figure was measured on)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def one_run(args: argparse.Namespace) -> dict:
    """The whole comparison once: the matmul peak, then every workload."""
    # numpy's BLAS on the benchmark's thread count too (its default is all
    # cores): the matmul limit of --threads 1 is one core's. Read when numpy
    # (which TensorFlow imports) loads, so set before that.
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    start = time.time()
    load_start = os.getloadavg()[0]
    import tensorflow as tf

    from seqvg.execpath import settle_inter_op

    # Both sides on the same thread count, before TensorFlow starts its pools.
    # Inter-op threads as seqvg sets them for a process of these cells: one
    # where all are LSTMs and GRUs on seqvg's ops (--cells lstm,gru), else
    # --threads (the default rnn,lstm,gru: as `seqvg compare` of all three).
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    cells_here = list(args.cells) + (["lstm"] if args.long_length else [])
    if not settle_inter_op(cells_here):
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)

    has_torch = importlib.util.find_spec("torch") is not None
    if not has_torch and not args.json:
        print("torch is not installed: the PyTorch column is skipped (pip install 'seqvg[bench]')", file=sys.stderr)
    peak = matmul_gflops(2048, 2048, 2048)
    workloads = [(c, args.length) for c in args.cells]
    if args.long_length:
        workloads.append(("lstm", args.long_length))
    rows = []
    for cell, length in workloads:
        gate = matmul_gflops(args.batch, N_IN + args.units, GATES[cell] * args.units)
        ours = speeds(cell, length, args.batch, args.units, args.repeats, args.steps, args.warmup, has_torch,
                      args.threads)
        gflop = step_gflop(cell, length, args.batch, args.units)
        sps = ours["steps_per_s"]
        # Default schedule: a probe at step 0, every steps/20, and at the end.
        probes = 21
        rows.append({
            "cell": cell,
            "length": length,
            "steps_per_s": sps,
            "gflops": gflop * sps,
            "gate_matmul_gflops": gate,
            "fraction_of_matmul_limit": gflop * sps / gate,
            "torch_steps_per_s": ours["torch_steps_per_s"],
            "ratio_vs_torch": ours["ratio_vs_torch"],
            "torch_threads": ours["torch_threads"],
            "probe_ms": 1e3 * ours["probe_s"],
            "probe_overhead": probes * ours["probe_s"] * sps / args.run_steps,
        })
    from seqvg import fastlstm, kernels

    torch_version = None
    if has_torch:
        import torch

        torch_version = torch.__version__
    return {"batch": args.batch, "units": args.units, "cores": os.cpu_count(), "threads": args.threads,
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(), "cpu": cpu_model(),
            "op_threads": op_threads(args.units, args.threads), "matmul_peak_gflops": peak,
            "fused_lstm_op": fastlstm.fused("float32"),
            "kernels": kernels.kernel_status(), "torch": torch_version, "load_avg_start": load_start,
            "load_avg_end": os.getloadavg()[0], "wall_s": time.time() - start, "cells": rows}


def print_run(args: argparse.Namespace, run: dict) -> None:
    """One run's table."""
    print(f"seqvg training path vs PyTorch: adding, batch {args.batch}, {args.units} units, "
          f"median of {args.repeats}x{args.steps} steps, {run['cores']} cores ({run['cpu']}), "
          f"{args.threads} threads on each side (seqvg's sequence ops: {run['op_threads']}; TensorFlow's "
          f"inter-op: {run.get('inter_op_threads') or args.threads})")
    print(f"numpy float32 matmul peak (2048^3): {run['matmul_peak_gflops']:.0f} GFLOP/s; {run['kernels']}; "
          f"load average {run['load_avg_start']:.1f} at the start, {run['load_avg_end']:.1f} at the end")
    print(f"{'cell':<5} {'T':>5} {'steps/s':>8} {'GFLOP/s':>8} {'gate mm':>8} {'of limit':>9} "
          f"{'torch/s':>8} {'torch thr':>9} {'vs torch':>9} {'probe ms':>9} {'probe +%':>9}")
    for r in run["cells"]:
        torch_s = "-" if r["torch_steps_per_s"] is None else f"{r['torch_steps_per_s']:.2f}"
        ratio = "-" if r["ratio_vs_torch"] is None else f"{r['ratio_vs_torch']:.2f}x"
        thr = "-" if not r["torch_threads"] else ",".join(map(str, r["torch_threads"]))
        print(f"{r['cell']:<5} {r['length']:>5} {r['steps_per_s']:>8.2f} {r['gflops']:>8.1f} "
              f"{r['gate_matmul_gflops']:>8.0f} {100 * r['fraction_of_matmul_limit']:>8.0f}% {torch_s:>8} "
              f"{thr:>9} {ratio:>9} {r['probe_ms']:>9.1f} {100 * r['probe_overhead']:>8.2f}%")
    print(f"gate mm: numpy matmul GFLOP/s at the cell's gate shape (the matmul limit); "
          f"probe +%: default schedule (21 probes) over a {args.run_steps}-step run")


def _figures(lo: float, hi: float) -> tuple[str, str]:
    """lo and hi with the decimals that give hi three significant figures."""
    import math

    decimals = max(0, 2 - math.floor(math.log10(abs(hi)))) if hi else 0
    return f"{lo:.{decimals}f}", f"{hi:.{decimals}f}"


def _ratio(x: float) -> str:
    return f"{x:#.2g}".rstrip(".") if x < 10 else f"{x:.0f}"


def _percent(x: float) -> str:
    return f"{100 * x:.0f}"


def _hundredths(x: float) -> str:
    return f"{100 * x:.2f}"


def span(values: list[float | None], fmt=None, suffix: str = "") -> str:
    """'lo–hi' over runs (one value where they print alike); '-' when any is missing.

    ``fmt`` formats each end; by default both ends get the decimals that give
    the higher three significant figures.
    """
    if not values or any(v is None for v in values):
        return "-"
    lo, hi = _figures(min(values), max(values)) if fmt is None else (fmt(min(values)), fmt(max(values)))
    return f"{lo}{suffix}" if lo == hi else f"{lo}–{hi}{suffix}"


def range_rows(runs: list[dict]) -> list[dict]:
    """Per workload, the range over runs of each run's figures."""
    rows = []
    for i, first in enumerate(runs[0]["cells"]):
        per_run = [run["cells"][i] for run in runs]
        rows.append({
            "cell": first["cell"],
            "length": first["length"],
            **{key: [r[key] for r in per_run]
               for key in ("steps_per_s", "torch_steps_per_s", "ratio_vs_torch", "fraction_of_matmul_limit",
                           "probe_overhead")},
        })
    return rows


def print_ranges(args: argparse.Namespace, runs: list[dict]) -> None:
    """The README's table: each figure the range over ``runs`` of each run's median."""
    print("| cell | T | seqvg steps/s | PyTorch steps/s | vs PyTorch | of matmul limit | probe overhead |")
    print("|---|---|---|---|---|---|---|")
    for r in range_rows(runs):
        print(f"| {r['cell']} | {r['length']} | {span(r['steps_per_s'])} | {span(r['torch_steps_per_s'])} | "
              f"{span(r['ratio_vs_torch'], _ratio, 'x')} | {span(r['fraction_of_matmul_limit'], _percent, '%')} | "
              f"{span(r['probe_overhead'], _hundredths, '%')} |")
    first = runs[0]
    torch_threads = sorted({t for run in runs for r in run["cells"] for t in (r["torch_threads"] or [])})
    peaks = ", ".join(f"{run['matmul_peak_gflops']:.0f}" for run in runs)
    loads = ", ".join(f"{run['load_avg_start']:.1f}–{run['load_avg_end']:.1f}" for run in runs)
    minutes = ", ".join(f"{run['wall_s'] / 60:.1f}" for run in runs)
    print()
    print(f"Ranges over {len(runs)} runs of `benchmarks/train_speed.py` (each figure a run's median of "
          f"{args.repeats} rounds of {args.steps} steps; vs PyTorch the median of the rounds' paired ratios), "
          f"adding problem, batch {args.batch}, {args.units} units, Adam. Machine: {first['cpu']}, "
          f"{first['cores']} cores; {args.threads} threads on each side (TensorFlow; seqvg's sequence ops "
          f"{first['op_threads']}; "
          f"PyTorch {first['torch'] or '-'} ran on {','.join(map(str, torch_threads)) or '-'}). "
          f"numpy float32 matmul peak (2048^3) per run: {peaks} GFLOP/s. "
          f"Load average (1 min) at each run's start–end: {loads}; minutes per run: {minutes}.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cells", type=cell_list, default="rnn,lstm,gru", help="comma-separated cells (rnn,lstm,gru)")
    ap.add_argument("--length", type=positive_int, default=200, help="sequence length T (200)")
    ap.add_argument("--long-length", type=non_negative_int, default=1000,
                    help="T of the extra LSTM long-sequence workload; 0 skips it (1000)")
    ap.add_argument("--batch", type=positive_int, default=64, help="batch size (64)")
    ap.add_argument("--units", type=positive_int, default=128, help="recurrent units (128)")
    ap.add_argument("--repeats", type=positive_int, default=5, help="timed blocks; the median is reported (5)")
    ap.add_argument("--steps", type=positive_int, default=5, help="training steps per timed block (5)")
    ap.add_argument("--warmup", type=positive_int, default=3, help="untimed steps first (3)")
    ap.add_argument("--run-steps", type=positive_int, default=5000,
                    help="run length for the probe-overhead column (5000)")
    ap.add_argument("--threads", type=positive_int, default=os.cpu_count(),
                    help="intra-op threads of TensorFlow and of torch alike (all cores)")
    ap.add_argument("--runs", type=positive_int, default=1,
                    help="whole runs, each in its own process; > 1 prints the range table (1)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    if args.runs == 1:
        run = one_run(args)
        if args.json:
            print(json.dumps(run))
        else:
            print_run(args, run)
        return
    # Each run a process of its own: a fresh TensorFlow, torch and numpy, and
    # the same command someone checking one figure would type.
    argv = [a for a in sys.argv[1:] if a != "--json"]
    argv = [a for i, a in enumerate(argv) if a != "--runs" and not (i > 0 and argv[i - 1] == "--runs")]
    argv = [a for a in argv if not a.startswith("--runs=")]
    runs = []
    for k in range(args.runs):
        out = subprocess.run([sys.executable, str(Path(__file__).resolve()), *argv, "--json"], check=True,
                             stdout=subprocess.PIPE, text=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        if not args.json:
            print(f"run {k + 1}/{args.runs}:")
            print_run(args, runs[-1])
            print()
    if args.json:
        ranges = [{"cell": r["cell"], "length": r["length"],
                   **{key: [min(v), max(v)] if None not in v else None for key, v in r.items()
                      if key not in ("cell", "length")}} for r in range_rows(runs)]
        print(json.dumps({"runs": runs, "ranges": ranges}))
        return
    print_ranges(args, runs)


if __name__ == "__main__":
    main()
