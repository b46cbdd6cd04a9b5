"""What a user would otherwise write: the same model and loop in PyTorch.

    python benchmarks/torch_reference.py --cell lstm --length 200
    python benchmarks/torch_reference.py --cell gru --json

One ``nn.RNN``/``nn.LSTM``/``nn.GRU`` layer (tanh RNN) with 128 units and a
``Linear(units, 1)`` head on the last state, Adam (lr 1e-3), MSE on the
adding problem, float32, batches drawn by seqvg's own generator each step (so
data generation is in the loop, as in ``seqvg train``). Prints the median
steps/s of repeats after warm-up. torch is a benchmark-only extra
(``pip install 'seqvg[bench]'``), never a dependency of seqvg itself.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time


def steps_per_s(cell: str, length: int, batch: int, units: int, threads: int,
                repeats: int, steps: int, warmup: int) -> float:
    """Median steps/s of ``repeats`` timed blocks of ``steps`` training steps."""
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

    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        times.append((time.perf_counter() - t0) / steps)
    return 1.0 / statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cell", choices=("rnn", "lstm", "gru"), default="lstm")
    ap.add_argument("--length", type=int, default=200)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--units", type=int, default=128)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, default=5, help="steps per timed repeat")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    import torch

    rate = steps_per_s(args.cell, args.length, args.batch, args.units, args.threads,
                       args.repeats, args.steps, args.warmup)
    if args.json:
        print(json.dumps({"cell": args.cell, "length": args.length, "steps_per_s": rate, "torch": torch.__version__}))
    else:
        print(f"torch {torch.__version__} {args.cell} T={args.length}: {rate:.2f} steps/s")


if __name__ == "__main__":
    main()
