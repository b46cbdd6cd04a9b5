"""seqvg's LSTM loop (seqvg/fastlstm.py) against Keras's own, in one run.

    python benchmarks/lstm_loop.py                 # T=200 and T=1000
    python benchmarks/lstm_loop.py --lengths 200 --repeats 25 --json

Two training paths of the same model (adding, batch 64, 128 units), built
from the same config: seqvg's compiled step as ``seqvg train`` runs it, and
the same step with each LSTM layer given Keras's ``LSTM.inner_loop`` back.
Their blocks of steps are timed in alternation, and the speed-up is the
median of the per-round time ratios (the machine drifts by ±20% between
minutes). The first steps' losses are compared too: the two loops train the
same model.
"""

from __future__ import annotations

import argparse
import json
import os
import types

from common import paired_ratio, positive_int, ratio_spread, time_block, time_interleaved

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _lengths(text: str) -> list[int]:
    try:
        return [positive_int(part) for part in text.split(",")]
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated integers >= 1") from None


def time_length(length: int, batch: int, units: int, repeats: int, steps: int) -> dict:
    import keras
    import numpy as np

    from seqvg.config import RunConfig
    from seqvg.training import Trainer

    cfg = RunConfig(cell="lstm", length=length, units=units, batch_size=batch).resolved()
    fast, keras_loop = Trainer(cfg), Trainer(cfg)
    for layer in keras_loop.model.layers:
        if isinstance(layer, keras.layers.LSTM):
            layer.inner_loop = types.MethodType(keras.layers.LSTM.inner_loop, layer)
    # The first steps also warm up (trace) both paths.
    losses = [[trainer.train_batch(k)[0] for k in (1, 2, 3)] for trainer in (fast, keras_loop)]
    counter = iter(range(4, 10**9))
    times = time_interleaved(
        {
            "seqvg": lambda: time_block(lambda: fast.train_batch(next(counter)), steps),
            "keras": lambda: time_block(lambda: keras_loop.train_batch(next(counter)), steps),
        },
        repeats,
    )
    q1, q3 = ratio_spread(times["keras"], times["seqvg"])
    return {
        "length": length,
        "seqvg_ms": 1000 * float(np.median(times["seqvg"])),
        "keras_ms": 1000 * float(np.median(times["keras"])),
        "speedup": paired_ratio(times["keras"], times["seqvg"]),
        "speedup_quartiles": [q1, q3],
        "max_loss_diff": float(np.max(np.abs(np.subtract(*losses)))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=_lengths, default=[200, 1000], help="comma-separated T (200,1000)")
    parser.add_argument("--batch", type=positive_int, default=64, help="batch size (64)")
    parser.add_argument("--units", type=positive_int, default=128, help="LSTM units (128)")
    parser.add_argument("--repeats", type=positive_int, default=11, help="timed rounds; medians are reported (11)")
    parser.add_argument("--steps", type=positive_int, default=3, help="training steps per timed block (3)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    rows = [time_length(n, args.batch, args.units, args.repeats, args.steps) for n in args.lengths]
    if args.json:
        print(json.dumps({"batch": args.batch, "units": args.units, "rows": rows}))
        return
    print(f"LSTM training step, adding, batch {args.batch}, {args.units} units, median of {args.repeats} rounds")
    print(f"{'T':>6} {'seqvg ms':>9} {'keras ms':>9} {'speed-up':>9} {'quartiles':>11} {'loss diff':>10}")
    for r in rows:
        q1, q3 = r["speedup_quartiles"]
        print(f"{r['length']:>6} {r['seqvg_ms']:>9.1f} {r['keras_ms']:>9.1f} {r['speedup']:>8.2f}x"
              f" {q1:>5.2f}-{q3:<5.2f} {r['max_loss_diff']:>10.1e}")
    print("speed-up: median over rounds of Keras-loop time / seqvg-loop time (blocks timed in alternation)")


if __name__ == "__main__":
    main()
