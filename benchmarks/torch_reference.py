"""What a user would otherwise write: the same model and loop in PyTorch.

    python benchmarks/torch_reference.py --cell lstm --length 200
    python benchmarks/torch_reference.py --cell gru --json
    python benchmarks/torch_reference.py --cell lstm --serve   # for train_speed.py

One ``nn.RNN``/``nn.LSTM``/``nn.GRU`` layer (tanh RNN) with 128 units and a
``Linear(units, 1)`` head on the last state, Adam (lr 1e-3), MSE on the
adding problem, float32, batches drawn by seqvg's own generator each step (so
data generation is in the loop, as in ``seqvg train``). Prints the median
steps/s of repeats after warm-up.

With ``--serve`` it warms up, then times a block of N steps for each line "N"
read from stdin and answers one JSON line per block, so ``train_speed.py``
can alternate its blocks with seqvg's. torch is a benchmark-only extra
(``pip install 'seqvg[bench]'``), never a dependency of seqvg itself.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from collections.abc import Callable

from common import positive_int, time_block


def make_step(cell: str, length: int, batch: int, units: int, threads: int) -> Callable[[], float]:
    """One training step of the PyTorch model as a function returning the loss."""
    import torch
    from torch import nn

    from seqvg.tasks import STREAM_TRAIN, get_task, stream

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    rnn_cls = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[cell]
    task = get_task("adding")

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = rnn_cls(task.n_inputs, units, batch_first=True)
            self.head = nn.Linear(units, task.n_outputs)

        def forward(self, x):
            out, _ = self.rnn(x)
            return self.head(out[:, -1])

    model = Model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.MSELoss()
    counter = [0]

    def step() -> float:
        counter[0] += 1
        x, y = task.generate(stream(0, STREAM_TRAIN, counter[0]), batch, length)
        x, y = torch.from_numpy(x), torch.from_numpy(y).reshape(batch, task.n_outputs)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()  # a sync, as seqvg reads its loss every step

    return step


def serve(step: Callable[[], float], warmup: int) -> None:
    """Warms up, then answers each stdin line "N" with the seconds per step of N
    steps and torch's intra-op thread count."""
    for _ in range(warmup):
        step()
    print(json.dumps({"ready": True}), flush=True)
    import torch

    for line in sys.stdin:
        seconds = time_block(step, int(line))
        # The thread count torch actually ran with, so the caller can show it.
        print(json.dumps({"seconds_per_step": seconds, "threads": torch.get_num_threads()}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cell", choices=("rnn", "lstm", "gru"), default="lstm", help="recurrent cell (lstm)")
    ap.add_argument("--length", type=positive_int, default=200, help="sequence length T (200)")
    ap.add_argument("--batch", type=positive_int, default=64, help="batch size (64)")
    ap.add_argument("--units", type=positive_int, default=128, help="recurrent units (128)")
    ap.add_argument("--threads", type=positive_int, default=os.cpu_count(),
                    help="torch intra-op threads (all cores, as seqvg uses)")
    ap.add_argument("--repeats", type=positive_int, default=5, help="timed blocks; the median is reported (5)")
    ap.add_argument("--steps", type=positive_int, default=5, help="steps per timed block (5)")
    ap.add_argument("--warmup", type=positive_int, default=3, help="untimed steps first (3)")
    ap.add_argument("--serve", action="store_true",
                    help="warm up, then time N steps for each line N read from stdin, answering one JSON line "
                         "per block (train_speed.py alternates these blocks with seqvg's)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    import torch

    step = make_step(args.cell, args.length, args.batch, args.units, args.threads)
    if args.serve:
        serve(step, args.warmup)
        return
    for _ in range(args.warmup):
        step()
    rate = 1.0 / statistics.median(time_block(step, args.steps) for _ in range(args.repeats))
    if args.json:
        print(json.dumps({"cell": args.cell, "length": args.length, "steps_per_s": rate, "torch": torch.__version__}))
    else:
        print(f"torch {torch.__version__} {args.cell} T={args.length}: {rate:.2f} steps/s")


if __name__ == "__main__":
    main()
