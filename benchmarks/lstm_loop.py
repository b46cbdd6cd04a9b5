"""seqvg's LSTM (or GRU) loop (seqvg/fastlstm.py) against Keras's own, in one run.

    python benchmarks/lstm_loop.py                 # T=200 and T=1000
    python benchmarks/lstm_loop.py --lengths 200 --repeats 25 --json
    python benchmarks/lstm_loop.py --cell gru --lengths 200   # the GRU op vs Keras's GRU loop

Training paths of the same model (adding, batch 64, 128 units), built from
the same config: seqvg's compiled step as ``seqvg train`` runs it (its
whole-sequence LSTM op where it is built: ``python -m seqvg.kernels``; the
header line says), the same step on Keras's own loop, and, where the op
runs, the loop of TensorFlow ops that runs without it ("tfops", unrolled as
a training run over at most ``execpath.UNROLL_MAX`` timesteps is).
The first step of each, which traces the graph, is timed too.
Their blocks of steps are timed in alternation, and the speed-up is the
median of the per-round time ratios (the machine drifts by ±20% between
minutes). The first steps' losses are compared too: the two loops train the
same model.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from common import paired_ratio, positive_int, ratio_spread, time_block, time_interleaved

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _lengths(text: str) -> list[int]:
    try:
        return [positive_int(part) for part in text.split(",")]
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated integers >= 1") from None


def _path(cfg, loop: str):
    """The execution path of ``loop``: seqvg's (as ``seqvg train`` resolves it),
    Keras's own loop, or the one resolved where seqvg's ops cannot be built."""
    from seqvg import execpath, kernels

    if loop == "keras":
        return execpath.ExecutionPath(cfg.cell, "keras")
    if loop == "seqvg":
        return execpath.resolve(cfg)
    ops = kernels.op_module
    kernels.op_module = lambda: None
    try:
        return execpath.resolve(cfg)
    finally:
        kernels.op_module = ops


def _trainer(cfg, loop: str):
    """A Trainer whose LSTM layers run ``loop``, warmed up: (trainer, first-step s, losses)."""
    from seqvg.training import Trainer

    trainer = Trainer(cfg, _path(cfg, loop))
    start = time.perf_counter()
    losses = [trainer.train_batch(1)[0]]
    first = time.perf_counter() - start
    losses += [trainer.train_batch(k)[0] for k in (2, 3)]
    return trainer, first, losses


def time_length(length: int, batch: int, units: int, repeats: int, steps: int, cell: str = "lstm") -> dict:
    import numpy as np

    from seqvg import fastlstm
    from seqvg.config import RunConfig

    cfg = RunConfig(cell=cell, length=length, units=units, batch_size=batch).resolved()
    # The GRU has no TF-ops loop of seqvg's: without the op it runs Keras's.
    loops = ("seqvg", "keras", "tfops") if fastlstm.fused("float32") and cell == "lstm" else ("seqvg", "keras")
    built = {loop: _trainer(cfg, loop) for loop in loops}
    counter = iter(range(4, 10**9))
    times = time_interleaved(
        {loop: (lambda tr=tr: time_block(lambda: tr.train_batch(next(counter)), steps)) for loop, (tr, _, _) in built.items()},
        repeats,
    )
    row = {"length": length}
    for loop in ("seqvg", "keras", "tfops"):
        row[f"{loop}_ms"] = 1000 * float(np.median(times[loop])) if loop in times else None
        row[f"{loop}_first_step_s"] = built[loop][1] if loop in built else None
    row["speedup"] = paired_ratio(times["keras"], times["seqvg"])
    row["speedup_quartiles"] = list(ratio_spread(times["keras"], times["seqvg"]))
    row["op_speedup"] = paired_ratio(times["tfops"], times["seqvg"]) if "tfops" in times else None
    row["max_loss_diff"] = max(
        float(np.max(np.abs(np.subtract(built["seqvg"][2], losses)))) for _, _, losses in built.values()
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=_lengths, default=[200, 1000], help="comma-separated T (200,1000)")
    parser.add_argument("--batch", type=positive_int, default=64, help="batch size (64)")
    parser.add_argument("--units", type=positive_int, default=128, help="LSTM units (128)")
    parser.add_argument("--cell", choices=("lstm", "gru"), default="lstm", help="the cell (lstm)")
    parser.add_argument("--repeats", type=positive_int, default=11, help="timed rounds; medians are reported (11)")
    parser.add_argument("--steps", type=positive_int, default=3, help="training steps per timed block (3)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    from seqvg import fastlstm, kernels

    rows = [time_length(n, args.batch, args.units, args.repeats, args.steps, args.cell) for n in args.lengths]
    if args.json:
        print(json.dumps({"cell": args.cell, "batch": args.batch, "units": args.units,
                          "fused_lstm_op": fastlstm.fused("float32"), "rows": rows}))
        return
    print(f"{args.cell.upper()} training step, adding, batch {args.batch}, {args.units} units, median of {args.repeats} rounds; "
          f"{kernels.kernel_status()}")
    print(f"{'T':>6} {'seqvg ms':>9} {'keras ms':>9} {'speed-up':>9} {'quartiles':>11}"
          f" {'tfops ms':>9} {'op gain':>8} {'1st step s':>15} {'loss diff':>10}")
    for r in rows:
        q1, q3 = r["speedup_quartiles"]
        tfops = f"{r['tfops_ms']:.1f}" if r["tfops_ms"] is not None else "-"
        gain = f"{r['op_speedup']:.2f}x" if r["op_speedup"] is not None else "-"
        first = "/".join(f"{r[f'{loop}_first_step_s']:.1f}" for loop in ("seqvg", "keras", "tfops")
                         if r[f"{loop}_first_step_s"] is not None)
        print(f"{r['length']:>6} {r['seqvg_ms']:>9.1f} {r['keras_ms']:>9.1f} {r['speedup']:>8.2f}x"
              f" {q1:>5.2f}-{q3:<5.2f} {tfops:>9} {gain:>8} {first:>15} {r['max_loss_diff']:>10.1e}")
    print("speed-up: median over rounds of Keras-loop time / seqvg-loop time (blocks timed in alternation)")
    print("op gain: the loop of TensorFlow ops seqvg runs without its compiled op, against seqvg's loop, timed alike")
    print("1st step s: the first training step, which traces and optimizes the graph (seqvg/Keras/tfops)")


if __name__ == "__main__":
    main()
