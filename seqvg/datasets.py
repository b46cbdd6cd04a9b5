"""The data files of ``seqvg generate``: a task's samples as an .npz, written and read back.

    seqvg generate adding --length 100 -n 64 --seed 0 -o batch.npz
    seqvg probe --cell lstm --length 100 --data batch.npz

A file drawn with ``-n`` = the probe batch size and a run's seed holds exactly
the batch that run is probed on, so anyone can check the probe with their own
code; ``seqvg probe --data`` reads any such file back.
"""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np

from seqvg.rundir import RunDirError, read_npz, write_npz
from seqvg.tasks import STREAM_PROBE, TASKS, get_task, stream

#: The arrays every dataset holds (``read_dataset`` needs them all).
KEYS = ("x", "y", "task", "length")


def write_dataset(path, task: str, length: int, n: int, seed: int, args: dict | None = None) -> None:
    """Writes ``n`` samples to an .npz: ``x``, ``y``, the task's parameters and,
    for tasks that score only some steps, ``mask`` (n, seq_len), True where scored.

    Drawn from the probe stream of ``seed``, so ``n`` = the probe batch size
    reproduces the exact batch a run with that seed is probed on.
    """
    check_replaceable_dataset(path)
    t = get_task(task, args)
    x, y = t.generate(stream(seed, STREAM_PROBE), n, length)
    extra = {}
    mask = t.target_mask(length)
    if mask is not None:
        extra["mask"] = np.broadcast_to(mask, y.shape).copy()
    write_npz(path, x=x, y=y, task=np.str_(task), length=np.int64(length), seed=np.int64(seed), n=np.int64(n),
              task_args=np.str_(json.dumps(t.params, sort_keys=True)), **extra)


def check_replaceable_dataset(path) -> None:
    """Refuses to replace a file that is not a dataset seqvg wrote.

    Raises:
        FileExistsError: ``path`` exists and is not an .npz with a dataset's
            arrays (``write_dataset``'s), naming it and what to do.
    """
    path = Path(path)
    if not path.is_file():
        return
    # The names of its arrays and the small "task" one, not the data: the
    # file may be a large one of the user's.
    try:
        with np.load(path, mmap_mode="r", allow_pickle=False) as z:  # a .npy: mapped, not read; no `with`
            ours = set(KEYS) <= set(z.files) and z["task"].dtype.kind == "U"
    except Exception:  # not an .npz at all (text, a zip of something else, a pickle, unreadable)
        ours = False
    if not ours:
        raise FileExistsError(errno.EEXIST, "exists and is not a dataset seqvg wrote; seqvg replaces only its "
                              "own files: remove it or choose another -o", str(path))


def read_dataset(path) -> dict:
    """Reads a file written by ``write_dataset``.

    Raises:
        ValueError: the file is not such a dataset.
    """
    try:
        d = read_npz(path)
    except RunDirError as e:
        raise ValueError(str(e)) from None
    missing = [k for k in KEYS if k not in d]
    if missing:
        raise ValueError(f"{path}: not a seqvg dataset (missing {', '.join(missing)})")
    task = str(d["task"])
    if task not in TASKS:
        raise ValueError(f"{path}: unknown task {task!r}")
    try:
        x, y = d["x"].astype(np.float32), d["y"].astype(np.float32 if task == "adding" else np.int32)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: x and y must be numeric arrays") from None
    try:
        args = json.loads(str(d["task_args"])) if "task_args" in d else {}
        t = get_task(task, args)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path}: bad task_args ({e})") from None
    length = int(d["length"])
    want = (t.seq_len(length), t.n_inputs)
    if x.ndim != 3 or x.shape[1:] != want or len(y) != len(x) or len(x) == 0:
        raise ValueError(f"{path}: x has shape {x.shape}, {task} T={length} needs (n, {want[0]}, {want[1]}) "
                         f"with n >= 1 and as many targets")
    for name, a in (("x", x), ("y", y)):
        if not np.isfinite(a).all():
            raise ValueError(f"{path}: {name} holds NaN or Inf; the probe needs finite inputs and targets")
    return {"x": x, "y": d["y"], "task": task, "length": length, "task_args": t.params}
