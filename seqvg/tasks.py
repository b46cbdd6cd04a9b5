"""Long-range synthetic tasks: the adding problem and copy memory.

Definitions follow docs/design.md exactly so results compare with the literature
(Hochreiter & Schmidhuber 1997; Arjovsky et al. 2016; Bai et al. 2018)::

    seqvg generate adding --length 100 -n 64 --seed 0 -o batch.npz

Every generator takes an explicit ``np.random.Generator``; the same seed gives
the same data on every machine (numpy's PCG64 stream is platform-independent).
Inputs are batch-major float32 exactly as the model sees them; adding targets
are float32 of shape ``(n,)``, copy targets int32 class ids of shape
``(n, T+20)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: Sub-streams of one run seed. Keeping them separate means the validation set
#: and the probe batch do not change when the number of training steps does.
STREAM_TRAIN = 1
STREAM_VAL = 2
STREAM_PROBE = 3
STREAM_INIT = 4

COPY_SYMBOLS = 10  # symbols to remember
COPY_ALPHABET = 10  # 0 blank, 1..8 data, 9 delimiter
COPY_DELIMITER = 9


def stream(seed: int, kind: int, step: int | None = None) -> np.random.Generator:
    """Returns the generator of one sub-stream of ``seed``.

    Training draws batch ``step`` from ``stream(seed, STREAM_TRAIN, step)``: a
    batch depends on (seed, step) only, so a resumed run sees exactly the data
    an uninterrupted one would.
    """
    key = [int(seed), int(kind)] if step is None else [int(seed), int(kind), int(step)]
    return np.random.default_rng(key)


def generate_adding(rng: np.random.Generator, n: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Adding problem: returns ``x`` of shape (n, T, 2) and ``y`` of shape (n,).

    Channel 0 is U[0, 1]; channel 1 is zero except two markers, one uniform in
    ``[0, T//2)`` and one in ``[T//2, T)``; the target is the sum of the two
    marked values.
    """
    if length < 2:
        raise ValueError("the adding problem needs length >= 2")
    half = length // 2
    values = rng.uniform(0.0, 1.0, size=(n, length)).astype(np.float32)
    first = rng.integers(0, half, size=n)
    second = rng.integers(half, length, size=n)
    markers = np.zeros((n, length), dtype=np.float32)
    rows = np.arange(n)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    x = np.stack([values, markers], axis=-1)
    y = (values[rows, first] + values[rows, second]).astype(np.float32)
    return x, y


def generate_copy(rng: np.random.Generator, n: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Copy memory: returns one-hot ``x`` (n, T+20, 10) and int32 ``y`` (n, T+20).

    Input: 10 symbols from 1..8, T-1 blanks, the delimiter 9, 10 blanks.
    Target: T+10 blanks, then the 10 data symbols.
    """
    if length < 1:
        raise ValueError("the copy task needs length >= 1")
    total = length + 2 * COPY_SYMBOLS
    data = rng.integers(1, 9, size=(n, COPY_SYMBOLS))
    seq = np.zeros((n, total), dtype=np.int32)
    seq[:, :COPY_SYMBOLS] = data
    seq[:, COPY_SYMBOLS + length - 1] = COPY_DELIMITER
    y = np.zeros((n, total), dtype=np.int32)
    y[:, -COPY_SYMBOLS:] = data
    x = np.eye(COPY_ALPHABET, dtype=np.float32)[seq]
    return x, y


@dataclass(frozen=True)
class Task:
    """A long-range task: its data, loss, metric, baseline and solved criterion.

    Attributes:
        name: "adding" or "copy".
        n_inputs: features per timestep.
        n_outputs: model outputs (per step when ``per_step``).
        per_step: whether the model emits one output per timestep.
        metric_name: short name of the reported metric.
        higher_is_better: direction of the metric.
        threshold: the default "solved" threshold on the validation metric.
    """

    name: str
    n_inputs: int
    n_outputs: int
    per_step: bool
    metric_name: str
    higher_is_better: bool
    threshold: float
    _generate: Callable[[np.random.Generator, int, int], tuple[np.ndarray, np.ndarray]]

    def seq_len(self, length: int) -> int:
        """Number of timesteps the model reads for task length ``length``."""
        return length + 2 * COPY_SYMBOLS if self.name == "copy" else length

    def generate(self, rng: np.random.Generator, n: int, length: int) -> tuple[np.ndarray, np.ndarray]:
        """Draws ``n`` samples of length ``length`` from ``rng``."""
        return self._generate(rng, n, length)

    def baseline(self, length: int) -> float:
        """Loss of the best memoryless predictor (the trivial baseline)."""
        if self.name == "adding":
            return 1.0 / 6.0  # predict 1: Var(U1 + U2) = 2/12
        return COPY_SYMBOLS * math.log(8) / (length + 2 * COPY_SYMBOLS)

    def partial_plateau(self, length: int) -> float | None:
        """Loss of a model that solves half the task, or None.

        Adding: a model that remembers only the near (second) marker predicts
        v2 + 1/2 and plateaus at Var(U1) = 1/12.
        """
        return 1.0 / 12.0 if self.name == "adding" else None

    def is_solved(self, val_metric: float) -> bool:
        """Whether a validation metric meets the solved criterion."""
        if not math.isfinite(val_metric):
            return False
        if self.higher_is_better:
            return val_metric >= self.threshold
        return val_metric < self.threshold

    def keras_loss(self):
        """The loss as a built-in Keras loss, so model.keras loads anywhere."""
        import keras

        if self.name == "adding":
            return keras.losses.MeanSquaredError()
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def loss_fn(self, y, pred):
        """Mean loss of a batch (TensorFlow ops; matches ``keras_loss``)."""
        import tensorflow as tf

        if self.name == "adding":
            return tf.reduce_mean(tf.square(pred[:, 0] - y))
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(y, tf.int32), logits=pred)
        return tf.reduce_mean(ce)

    def metric_fn(self, y, pred):
        """The task metric of a batch: adding MSE, copy last-10 accuracy."""
        import tensorflow as tf

        if self.name == "adding":
            return tf.reduce_mean(tf.square(pred[:, 0] - y))
        tail = tf.argmax(pred[:, -COPY_SYMBOLS:, :], axis=-1, output_type=tf.int32)
        hit = tf.equal(tail, tf.cast(y[:, -COPY_SYMBOLS:], tf.int32))
        return tf.reduce_mean(tf.cast(hit, tf.float32))


TASKS: dict[str, Task] = {
    "adding": Task("adding", 2, 1, False, "mse", False, 0.01, generate_adding),
    "copy": Task("copy", COPY_ALPHABET, COPY_ALPHABET, True, "acc_last10", True, 0.99, generate_copy),
}


def get_task(name: str) -> Task:
    """Returns the task called ``name``."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; choose from {', '.join(TASKS)}") from None


def write_dataset(path, task: str, length: int, n: int, seed: int) -> None:
    """Writes ``n`` samples to an .npz: ``x``, ``y`` and the task's parameters.

    Drawn from the probe stream of ``seed``, so ``n`` = the probe batch size
    reproduces the exact batch a run with that seed is probed on.
    """
    from seqvg.rundir import write_npz

    x, y = get_task(task).generate(stream(seed, STREAM_PROBE), n, length)
    write_npz(path, x=x, y=y, task=np.str_(task), length=np.int64(length), seed=np.int64(seed), n=np.int64(n))


def read_dataset(path) -> dict:
    """Reads a file written by ``write_dataset``.

    Raises:
        ValueError: the file is not such a dataset.
    """
    from seqvg.rundir import RunDirError, read_npz

    try:
        d = read_npz(path)
    except RunDirError as e:
        raise ValueError(str(e)) from None
    missing = [k for k in ("x", "y", "task", "length") if k not in d]
    if missing:
        raise ValueError(f"{path}: not a seqvg dataset (missing {', '.join(missing)})")
    task = str(d["task"])
    if task not in TASKS:
        raise ValueError(f"{path}: unknown task {task!r}")
    try:
        x, y = d["x"].astype(np.float32), d["y"].astype(np.float32 if task == "adding" else np.int32)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: x and y must be numeric arrays") from None
    t = get_task(task)
    length = int(d["length"])
    want = (t.seq_len(length), t.n_inputs)
    if x.ndim != 3 or x.shape[1:] != want or len(y) != len(x) or len(x) == 0:
        raise ValueError(f"{path}: x has shape {x.shape}, {task} T={length} needs (n, {want[0]}, {want[1]}) "
                         f"with n >= 1 and as many targets")
    for name, a in (("x", x), ("y", y)):
        if not np.isfinite(a).all():
            raise ValueError(f"{path}: {name} holds NaN or Inf; the probe needs finite inputs and targets")
    return {"x": x, "y": d["y"], "task": task, "length": length}


def probe_batch(cfg) -> tuple[np.ndarray, np.ndarray]:
    """The fixed probe batch of a run config (same as ``seqvg generate --seed``).

    Drawn from its own sub-stream of the seed, so it does not change with
    ``--steps`` or the validation size.
    """
    return get_task(cfg.task).generate(stream(cfg.seed, STREAM_PROBE), cfg.probe_batch, cfg.length)
