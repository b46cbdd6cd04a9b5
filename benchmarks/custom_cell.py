"""A custom cell's cost: the GRU maths as a custom cell against the built-in gru,
and the generic probe of the custom cell in training steps, in one run.

    python benchmarks/custom_cell.py                  # T=100, batch 64, 128 units
    python benchmarks/custom_cell.py --length 200 --repeats 9
    python benchmarks/custom_cell.py --clock cpu      # CPU time: steadier on a loaded machine
    python benchmarks/custom_cell.py --baseline keras.layers:GRUCell   # against Keras's own GRU, same loop
    python benchmarks/custom_cell.py --cell mingru    # another custom cell (its own path: XLA for mingru)

The custom cell is ``docs/examples/my_gru.py:MyGRU`` (Keras's GRU maths in
plain Keras ops), loaded through ``--cell file.py:Class``'s own path and
trained by ``seqvg.training.Trainer``, the object ``seqvg train`` runs, on
the path it decides (a custom cell: Keras's loop, without XLA since MyGRU
does not declare that XLA pays for it; ``--xla`` compiles it anyway;
printed). Blocks
of ``--steps`` training steps of the built-in ``gru`` (or ``--baseline``) and of the custom cell,
one probe of each (what ``seqvg train`` records: gradient norms plus
``seqvg.why``'s gate and step-Jacobian statistics) and the gradient norms
alone (``Prober._fn``: one forward and one backward pass) are timed in
alternation (``common.time_interleaved``), so the ratios hold on a shared
CPU whose speed drifts; each ratio is the median over rounds of the round's
ratio, with its quartiles. Times are wall-clock, or with ``--clock cpu``
the CPU time of the process's threads together. The 1-minute load average
is printed beside them.

Measured on one 2-core machine, 2026-11-30 (the README gives the latest idle
figures). Idle, wall clock: step 1.63 (quartiles 1.55-1.71), then 1.71-1.75
(8eb3ae2, load 1.3-2.0), then 1.83 (1.75-1.92) at 149b522, as the built-in
GRU's op got faster, and 1.80, 1.77, 1.96 in three runs at 095db62 (11
rounds, load 1.0-1.1, the benchmark's own threads); whole probe / own step
1.51-1.61 at 149b522, and 1.00, 1.01, 0.96 in those three runs (T=50: 1.48). With MyGRU compiled
by XLA (``--xla``), idle: step 2.42 (2.25-2.66), probe 1.15 (1.10-1.32): XLA
makes its step slower and so its probe cheaper relative to it. Under load
(CPU clock, load 2.8-3.2) the step ratio reads 1.36-1.50: load slows the
one compiled op more than Keras's many small ops.

The custom cell's probe / its step, 2026-12-01 (T=100, 5-7 rounds, wall
clock, the load another engineer's work): at dcc2d79 1.24, 1.48, 1.47 (load
2.3-2.5) and 1.32 (load 1.3); at 61a2638 1.12, 1.25, 1.21 (load 2.4-2.7); at
2ec0fc7 1.12, 1.08, 1.16 (load 1.9-2.3), by CPU clock 1.18 (load 2.0); at
6e52feb 1.02 (0.94-1.05), by CPU clock 1.06 (1.04-1.08) (load 1.7, 9
rounds); at f39e79b 1.00 (0.99-1.03) (load 1.3, 9 rounds). At T=50 1.69 at
dcc2d79, 1.55 at 2ec0fc7 (load 1.2-1.3), 1.44 (1.41-1.52) at f39e79b (load
1.4, 9 rounds): the statistics cost the same at any T, so they weigh more
beside a shorter step. Two changes, the same bits: the gradient pass and
the step-Jacobian statistics are one call, the statistics beside the
backward loop, a chain of small ops that leaves a core idle (61a2638); the
loop keeps the states for the statistics in a TensorArray rather than a
select over the (J, B, n) buffer at every step (2ec0fc7; the norms pass
0.90 -> 0.84 of a step, CPU clock). What the
statistics cost (17-20 ms of CPU, 0.4 of MyGRU's step, T=100): 24 products
of (320 x 128) by (128 x 384), 6 ms; about 1,100 elementwise ops, the
cell's backward pass and its transpose twelve times over and the Lanczos
recurrence; TensorFlow's eigenvalues of the 320 small tridiagonal
matrices, 2-3 ms.

Under XLA the taps add their squares through a select over the small
(T, states) accumulator, not XLA's CPU scatter (about 17 us a tap; 4157f96,
the same bits): with ``--cell``, probe / step at load 1.5-2.2 (a scratch
script before it; then this benchmark): mingru 2.03 -> 1.72, 1.93; minlstm
1.52 -> 1.20, 1.25; indrnn 2.07 -> 1.92, 2.47; lru (no XLA) 0.99. A cell
whose compiled step takes a few milliseconds pays the statistics' fixed
cost (about 2.5 ms of Jacobian products, 2.7 ms of eigenvalues) beside a
gradient pass that alone costs about a step: still 1.7-2.5 steps for mingru
and indrnn.

A diagonal step Jacobian (minGRU, minLSTM and IndRNN: the probe checks at
each call that J q = (J 1) q) needs no Lanczos: its norm is max |J 1|,
exact, from two products instead of 24 (``stepstats.diagonal_sigma``).
Probe / step with ``--cell``, 9 rounds, 2026-12-01 (load 0.7-1.8 with the
benchmark's own threads): at fe49d05 mingru 1.91, indrnn 2.06, minlstm
1.29; then mingru 1.18, 1.20, 1.22, indrnn 1.34, 1.39, 1.35, minlstm 1.13,
1.11, 1.12. What is left is mostly the gradient pass itself (indrnn: 4.5-4.7
ms beside a 4.0 ms step).

Tried for the probe and dropped: the statistics' Jacobian products
compiled by XLA, 15.0 against 17.1 ms of CPU (load 1.6) for about 2 s of
CPU to compile; the select replaced by a scatter into a (J+1)-slot buffer,
no change; the 320 rows as two or five independent Lanczos chains, to run
side by side (the same bits), whole probe 1.67 and 1.64 against 1.58 steps
at T=50 (wall, load 1.7); under XLA a TensorArray of the states in place of
the select, gradient pass 1.33 against 1.49 steps for indrnn but 1.28
against 1.00 for mingru (wall, load 2.1); numpy's eigenvalues of the
tridiagonal matrices, 1.4 against 2.7 ms, not the same bits.

Against Keras's own GRU on the same loop (``--baseline
keras.layers:GRUCell``: the cell ``keras.layers.GRU`` runs on the CPU, the
built-in baseline when issue 19 was filed), 2026-12-01 at 2ec0fc7, 7
rounds, load 1.7-1.9: MyGRU's step is 0.77 (0.74-0.78) of Keras's by wall
clock and by CPU clock (46 against 60 ms wall).

Levers tried for the custom step, none of which works for any cell (CPU
clock, T=100, load 2.5-5; MyGRU's plain step 40-50 ms): Keras's
``unroll=True`` 45-64 ms and about 5 s to build; one inter-op thread 39-45;
one intra-op thread 53; grappler off 45, or without its loop optimizer 49;
TensorFlow's single-threaded executor 73; XLA on each step's cell call alone
105-115; whole-step XLA with its thunk runtime off 50, with oneDNN 43, with
XNNPACK 50, with single-threaded Eigen 46, with fusion emitters off 47 (as
shipped 42); oneDNN off 86. TensorFlow's profile of the step: five small
matrix products and about 20 other ops (concatenations and splits of the
gates first) per timestep, forward and backward, at about 5 us of executor
cost each: roughly 20 of the 46 ms. The built-in GRU runs its loop as one
C++ op each way. Keras's loop against a minimal ``tf.while_loop`` of the
cell's call (a TensorArray read and the states, no output TensorArray, no
zero-output or mask handling; CPU clock, load 1.3-1.8, the same first-step
loss and gradient norm): 0.96-0.98 of Keras's step with 32 parallel
iterations, 0.97 with 10, 1.08 with 1; the cell's weights read once before
the loop (Keras's StatelessScope) 0.98; the loop run as a functional While
op rather than lowered to switch/merge 1.85. The while loop's gradient
keeps nine intermediates a step for MyGRU, each the cell's own (its gates,
its input, its state): none of them is left to drop. Keeping none, a loop
with its own gradient that re-runs each step's cell call under a tape in a
backward loop (the same gradient bits): forward and backward 1.09 of
Keras's with 32 parallel iterations, 1.44 with 1 (wall, T=100, load ~1,
2026-12-01): the re-run costs more than the kept intermediates.

Why no scheduling lever can close the gap (idle, load 0.6-0.7, 9 rounds,
T=100, 2026-12-01, a scratch script at fe49d05): by CPU clock
MyGRU's step costs 53 ms of CPU against the built-in gru's 27, and by wall
clock 28.4 against 16.3 ms, so it already keeps 1.9 cores busy (the op 1.6).
The batch split in two halves whose steps run side by side (the same maths,
the gradients summed): Keras's loop 0.98 of the whole step, four quarters
1.30; the halves each compiled by XLA 0.91 of it, 44.8 ms of CPU, still 1.67
built-in steps. At 1.5 built-in steps a custom step would have to do the
whole forward and backward pass in under about 45 ms of CPU on two cores:
less work per timestep, which only the cell's own code decides.

Measured on a second 2-core machine (CPU model 207, 2026-12-01, scratch
scripts at 1587015; MyGRU, T=100, Keras's step 33-37 ms wall and 57-67 ms
of CPU): TensorFlow's profile of Keras's step gives its five matrix
products per timestep 26 ms of op time per step (oneDNN's, 59 us for a
64 x 128 by 128 x 384 product backward and 43 us forward, about 60-70% of
numpy's rate at that shape), as much as the built-in GRU op's whole step
takes of CPU. A loop whose backward pass computes only the state
cotangents (the cell's weights read through ``keras.StatelessScope`` as
``stop_gradient`` of their values, zero taps added to each new state, and
the weight gradient from the taps' cotangents in one batched call of the
cell over all T x B rows, the same gradients to 5e-7): the loop alone 17-21
ms wall and 34-40 ms of CPU, but the batched weight gradient, which has to
run the cell forward again, costs 50-55 ms of CPU whether in one call of
6,400 rows or in chunks of 4, 8 or 16 timesteps, or compiled by XLA, so the
whole is 1.39-1.58 of Keras's step; compiled whole by XLA, 1.69-2.02.
Re-running each step's cell under a tape in a backward loop of its own
(all gradients per step): 1.58.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path

from common import cpu, paired_ratio, positive_int, ratio_spread, time_interleaved, wall

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CUSTOM = str(Path(__file__).resolve().parents[1] / "docs" / "examples" / "my_gru.py") + ":MyGRU"


def baseline_name(cell: str) -> str:
    """The short name of the baseline cell in the timings' keys: gru, or a class's name in lower case."""
    return cell.rsplit(":", 1)[-1].lower()


def measure(length: int, batch: int, units: int, repeats: int, steps: int, xla: bool = False, clock=wall,
            baseline: str = "gru", custom: str = CUSTOM) -> dict:
    import tensorflow as tf

    from seqvg.config import RunConfig
    from seqvg.execpath import ExecutionPath
    from seqvg.tasks import probe_batch
    from seqvg.training import Trainer

    fns, counters, paths = {}, {}, {}
    base = baseline_name(baseline)
    for name, cell in ((base, baseline), ("custom", custom)):
        cfg = RunConfig(cell=cell, length=length, units=units, batch_size=batch, probe_batch=batch).resolved()
        trainer = Trainer(cfg, ExecutionPath(xla=True) if xla and name == "custom" else None)
        prober = trainer.prober  # the probe seqvg train records, on the run's execution path
        paths[name] = trainer.path.describe()
        px, py = probe_batch(cfg)
        counters[name] = [0]

        def train(trainer=trainer, counter=counters[name]):
            def one():
                counter[0] += 1
                trainer.train_batch(counter[0])

            return clock(lambda: [one() for _ in range(steps)])() / steps

        def probe(prober=prober, px=px, py=py):
            def one():
                prober(px, py)

            return clock(one)()

        tx, ty = tf.constant(px, tf.float32), tf.constant(py)

        def norms(prober=prober, x=tx, y=ty):
            # The gradient norms alone (one forward and one backward pass),
            # without seqvg.why's gate and step-Jacobian statistics.
            def one():
                [v.numpy() for v in tf.nest.flatten(prober._fn(x, y))]

            return clock(one)()

        fns[f"{name}_step"] = train
        fns[f"{name}_probe"] = probe
        fns[f"{name}_norms"] = norms
    t = time_interleaved(fns, repeats, warmup=2)
    out = {name: statistics.median(v) for name, v in t.items()}
    pairs = {
        f"custom_step/{base}_step": ("custom_step", f"{base}_step"),
        "custom_probe/custom_step": ("custom_probe", "custom_step"),
        f"{base}_probe/{base}_step": (f"{base}_probe", f"{base}_step"),
        "custom_norms/custom_step": ("custom_norms", "custom_step"),
        f"{base}_norms/{base}_step": (f"{base}_norms", f"{base}_step"),
    }
    ratios = {k: {"median": paired_ratio(t[a], t[b]), "quartiles": ratio_spread(t[a], t[b])}
              for k, (a, b) in pairs.items()}
    return {"custom": custom, "baseline": baseline, "length": length, "batch": batch, "units": units,
            "repeats": repeats, "steps_per_block": steps, "cores": os.cpu_count(), "load": os.getloadavg()[0],
            "clock": clock.__name__, "paths": paths, "seconds": out, "ratios": ratios}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--length", type=positive_int, default=100, help="sequence length T (100)")
    ap.add_argument("--batch", type=positive_int, default=64, help="batch size of the step and the probe (64)")
    ap.add_argument("--units", type=positive_int, default=128, help="recurrent units (128)")
    ap.add_argument("--repeats", type=positive_int, default=7, help="timed rounds after 2 warm-up rounds (7)")
    ap.add_argument("--steps", type=positive_int, default=5, help="training steps per timed block (5)")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="time by the wall clock, or by the CPU time of the process's threads together (wall)")
    ap.add_argument("--xla", action="store_true", help="compile the custom cell's step and probe with XLA")
    ap.add_argument("--cell", default=CUSTOM,
                    help="the custom cell: file.py:Class, module:Class or one of seqvg's modern cells "
                         "(mingru, ...) (docs/examples/my_gru.py:MyGRU)")
    ap.add_argument("--baseline", default="gru",
                    help="the cell the custom cell is timed against: a built-in name or module:Class "
                         "(keras.layers:GRUCell: Keras's own GRU cell, on the same loop as the custom cell) (gru)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    r = measure(args.length, args.batch, args.units, args.repeats, args.steps, args.xla,
                cpu if args.clock == "cpu" else wall, args.baseline, args.cell)
    if args.json:
        print(json.dumps(r))
        return
    s = r["seconds"]
    base = r["baseline"] if ":" in r["baseline"] else f"built-in {r['baseline']}"
    print(f"custom cell {Path(r['custom']).name} vs {base}: T={r['length']}, batch {r['batch']}, {r['units']} units, "
          f"median of {r['repeats']} rounds, {r['cores']} cores, load {r['load']:.1f}, {r['clock']} clock")
    for name, where in r["paths"].items():
        print(f"{name}: {where}")
    print(f"{'':<10} {'step ms':>9} {'probe ms':>9} {'norms ms':>9}")
    for name in (baseline_name(r["baseline"]), "custom"):
        print(f"{name:<10} {1e3 * s[name + '_step']:>9.1f} {1e3 * s[name + '_probe']:>9.1f} "
              f"{1e3 * s[name + '_norms']:>9.1f}")
    print()
    print(f"{'ratio':<26} {'median':>7} {'quartiles':>11}")
    for name, v in r["ratios"].items():
        q1, q3 = v["quartiles"]
        print(f"{name:<26} {v['median']:>7.2f} {f'{q1:.2f}-{q3:.2f}':>11}")
    print("probe: what seqvg train records (gradient norms + seqvg.why's gates and step Jacobians); norms: the "
          "gradient norms alone. ratios: median over rounds of the round's ratio (timed back to back); quartiles "
          "of those ratios")


if __name__ == "__main__":
    main()
