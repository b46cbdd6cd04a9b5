"""When XLA pays for a custom cell: its compilation against its saving per step.

    python benchmarks/xla_payoff.py                       # seqvg's modern cells and MyGRU, T=100
    python benchmarks/xla_payoff.py --cells mingru,lru --length 25 --steps 40

For each cell, two fresh processes build ``seqvg.training.Trainer`` (what
``seqvg train`` runs) on Keras's loop, one with XLA and one without, and
time in CPU seconds (``time.process_time``: the figure that matters when
study workers share the cores) the setup (model, and with XLA the lowering
that checks it compiles), the first training step and the first probe
(tracing, and with XLA compiling), then ``--steps`` training steps and
three probes. The extra first-use cost of XLA divided by its saving per
step is the break-even budget in steps; times the length, the
steps x timesteps that ``seqvg.execpath.XLA_MIN_WORK`` must exceed.

This is how a cell's author decides whether to declare ``seqvg_xla = True``
on its class (``seqvg.execpath.XLA_ATTRIBUTE``), without which seqvg trains
it on Keras's plain loop: run it on the cell, at the lengths it is meant
for, on an idle machine; the last column says "yes" where XLA saves CPU per
step and breaks even within ``XLA_MIN_WORK``.

    python benchmarks/xla_payoff.py --cells path/to/my_cell.py:MyCell

Measured under load 8-15 (2026-11-30, T=25 and T=100): 5-17 s extra,
0.08-0.74 ms saved per timestep, break-even at 22,000-72,000 steps x
timesteps; the idle figures are in the README. MyGRU's XLA step is slower
in wall time too (60-65 ms against 42-45 ms plain, idle,
``benchmarks/custom_cell.py`` both ways back to back).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from common import positive_int

from seqvg.execpath import XLA_MIN_WORK

MY_GRU = str(Path(__file__).resolve().parents[1] / "docs" / "examples" / "my_gru.py") + ":MyGRU"

CHILD = r"""
import json, os, sys, time
cell, length, xla, steps, units, batch = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", *map(int, sys.argv[4:7])
from seqvg.config import RunConfig
from seqvg.execpath import ExecutionPath
from seqvg.tasks import probe_batch
from seqvg.training import Trainer
kw = dict(cell_args={"t_max": length}) if cell == "indrnn" else {}
cfg = RunConfig(cell=cell, length=length, units=units, batch_size=batch, probe_batch=batch, **kw).resolved()
t = [time.process_time()]
trainer = Trainer(cfg, ExecutionPath(xla=xla))
t.append(time.process_time())
trainer.train_batch(1)
t.append(time.process_time())
px, py = probe_batch(cfg)
trainer.prober(px, py)
t.append(time.process_time())
for s in range(2, 4):  # warm-up
    trainer.train_batch(s)
t.append(time.process_time())
for s in range(4, 4 + steps):
    trainer.train_batch(s)
t.append(time.process_time())
for _ in range(3):
    trainer.prober(px, py)
t.append(time.process_time())
print(json.dumps(dict(xla=trainer.path.xla, first=t[3] - t[0], step=(t[5] - t[4]) / steps, probe=(t[6] - t[5]) / 3)))
"""


def measure(cell: str, length: int, xla: bool, steps: int, units: int, batch: int) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = subprocess.run([sys.executable, "-c", CHILD, cell, str(length), str(int(xla)), str(steps), str(units),
                          str(batch)], check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cells", default=f"mingru,minlstm,indrnn,lru,{MY_GRU}",
                    help="comma-separated custom cells (names or file.py:Class); default: seqvg's four and MyGRU")
    ap.add_argument("--length", type=positive_int, default=100, help="sequence length T (100)")
    ap.add_argument("--steps", type=positive_int, default=30, help="timed training steps per process (30)")
    ap.add_argument("--units", type=positive_int, default=128, help="recurrent units (128)")
    ap.add_argument("--batch", type=positive_int, default=64, help="batch size of the step and the probe (64)")
    ap.add_argument("--json", action="store_true", help="print one JSON object per cell")
    args = ap.parse_args()
    print(f"T={args.length}, batch {args.batch}, {args.units} units, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f}; CPU seconds", file=sys.stderr)
    if not args.json:
        print(f"{'cell':<10} {'extra first-use s':>17} {'step ms plain':>13} {'step ms XLA':>11} "
              f"{'break-even steps':>16} {'steps x T':>10} {'seqvg_xla':>9}")
    for cell in args.cells.split(","):
        plain, fast = (measure(cell, args.length, xla, args.steps, args.units, args.batch) for xla in (False, True))
        extra, saved = fast["first"] - plain["first"], plain["step"] - fast["step"]
        steps = extra / saved if saved > 0 else float("inf")
        name = Path(cell.split(":")[0]).stem if ":" in cell else cell
        pays = steps * args.length <= XLA_MIN_WORK
        row = dict(cell=name, length=args.length, extra_first_s=extra, plain=plain, xla=fast, break_even_steps=steps,
                   break_even_work=steps * args.length, xla_pays=pays)
        if args.json:
            print(json.dumps(row))
        else:
            print(f"{name:<10} {extra:>17.1f} {1e3 * plain['step']:>13.1f} {1e3 * fast['step']:>11.1f} "
                  f"{steps:>16.0f} {steps * args.length:>10.0f} {'yes' if pays else 'no':>9}")


if __name__ == "__main__":
    main()
