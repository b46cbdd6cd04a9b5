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
    """Reads a file written by ``write_dataset``, checking it against its task.

    Besides ``x``'s shape this checks what would otherwise fail deep inside
    TensorFlow or pass silently: the parameters must be single values, ``x``
    and ``y`` numbers, ``y`` shaped as the task's targets and, for a
    classification task, whole class ids within the task's classes.

    Raises:
        ValueError: the file is not such a dataset (one line naming it).
    """
    try:
        d = read_npz(path)
    except RunDirError as e:
        raise ValueError(str(e)) from None
    missing = [k for k in KEYS if k not in d]
    if missing:
        raise ValueError(f"{path}: not a seqvg dataset (missing {', '.join(missing)})")
    for key in ("task", "length", "task_args"):
        if key in d and d[key].ndim != 0:
            raise ValueError(f"{path}: {key} must be a single value, got an array of shape {d[key].shape}")
    task = str(d["task"])
    if task not in TASKS:
        raise ValueError(f"{path}: unknown task {task!r}")
    if d["length"].dtype.kind not in "iu":
        raise ValueError(f"{path}: length must be an integer, got {d['length'].item()!r}")
    length = int(d["length"])
    for name in ("x", "y"):
        # numpy would turn text such as "0.5" into numbers: a file holding text is not our data.
        if d[name].dtype.kind not in "biuf":
            raise ValueError(f"{path}: {name} must be a numeric array, got dtype {d[name].dtype}")
        if not np.isfinite(d[name]).all():
            raise ValueError(f"{path}: {name} holds NaN or Inf; the probe needs finite inputs and targets")
    try:
        args = json.loads(str(d["task_args"])) if "task_args" in d else {}
        if not isinstance(args, dict):
            raise TypeError(f"expected a JSON object of parameters, got {str(d['task_args'])!r}")
        t = get_task(task, args)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path}: bad task_args ({e})") from None
    x = d["x"].astype(np.float32)
    want = (t.seq_len(length), t.n_inputs)
    if x.ndim != 3 or x.shape[1:] != want or len(x) == 0:
        raise ValueError(f"{path}: x has shape {x.shape}, {task} T={length} needs (n, {want[0]}, {want[1]}) "
                         f"with n >= 1")
    y_shape = (len(x), want[0]) if t.per_step else (len(x),)
    if d["y"].shape != y_shape:
        per = "a class id per step" if t.per_step else ("a sum per sample" if task == "adding"
                                                         else "a class id per sample")
        raise ValueError(f"{path}: y has shape {d['y'].shape}, {task} T={length} with {len(x)} samples in x "
                         f"needs {y_shape} ({per})")
    y = d["y"]
    if task == "adding":
        y = y.astype(np.float32)
    else:
        # A cast to int would floor 2.5 to 2 and TensorFlow's loss fails on an
        # id outside the classes: both are wrong data, said here in one line.
        bad = (y != np.round(y)) | (y < 0) | (y >= t.n_outputs)
        if bad.any():
            raise ValueError(f"{path}: y holds {y[bad][0].item():g}; {task}'s targets are class ids "
                             f"0..{t.n_outputs - 1}")
        y = y.astype(np.int32)
    if "mask" in d:
        # The loss scores the task's own steps whatever the file says: an edited
        # mask would be ignored without a word.
        want_mask = t.target_mask(length)
        if want_mask is None or d["mask"].shape != y.shape or not (d["mask"] == want_mask).all():
            scored = f"scores the last {t.outputs} steps of each sequence" if t.outputs else "has no mask"
            raise ValueError(f"{path}: mask is not {task}'s ({task} {scored}); seqvg's loss scores the task's own "
                             "steps, so a changed mask would be ignored")
    return {"x": x, "y": y, "task": task, "length": length, "task_args": t.params, "path": str(path)}
