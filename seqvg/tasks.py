"""Long-range tasks: adding, copy, temporal order, selective copy, recall, parity, (p)sMNIST.

Definitions follow docs/design.md exactly so results compare with the literature
(Hochreiter & Schmidhuber 1997; Arjovsky et al. 2016; Bai et al. 2018)::

    seqvg generate adding --length 100 -n 64 --seed 0 -o batch.npz

    seqvg generate temporal-order --length 100 --task-arg symbols=3 -o to.npz
    seqvg tasks    # every task, its parameters, baseline and solved criterion

Every generator takes an explicit ``np.random.Generator``; the same seed gives
the same data on every machine (numpy's PCG64 stream is platform-independent).
Inputs are batch-major float32 exactly as the model sees them; adding targets
are float32 of shape ``(n,)``; copy, selective-copy and recall targets int32
class ids per step ``(n, seq_len)``; temporal-order, parity and MNIST targets
one int32 class id per sample ``(n,)``.
"""

from __future__ import annotations

import dataclasses
import errno
import math
import numbers
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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


# -- temporal order, selective copy, associative recall, parity ------------------
#: Temporal order (Hochreiter & Schmidhuber 1997, exp. 6a/6b): symbols a,b,c,d
#: are noise, X/Y the relevant ones, B and E mark start and end.
TEMPORAL_ALPHABET = ("a", "b", "c", "d", "X", "Y", "B", "E")
#: Windows (fractions of T, both ends included) of the relevant positions:
#: exp. 6a puts them in [10, 20] and [50, 60] of a ~100-step sequence, exp. 6b
#: in [10, 20], [33, 43] and [66, 76].
TEMPORAL_WINDOWS = {2: ((0.1, 0.2), (0.5, 0.6)), 3: ((0.1, 0.2), (0.33, 0.43), (0.66, 0.76))}
#: MNIST read one pixel per step.
MNIST_PIXELS = 784
#: The pixel permutation of psmnist is ``np.random.default_rng(PSMNIST_SEED).permutation(784)``.
PSMNIST_SEED = 0
#: Where seqvg looks for MNIST when $SEQVG_MNIST is not set: Keras's cache.
MNIST_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"


def _window(frac: tuple[float, float], length: int) -> tuple[int, int]:
    """The integer positions [lo, hi] (both included) of a window of T."""
    lo, hi = (int(math.floor(f * length + 0.5)) for f in frac)
    return lo, hi


def temporal_positions(length: int, symbols: int = 2) -> list[tuple[int, int]]:
    """The windows [lo, hi] (both included) of the relevant positions at length T."""
    return [_window(f, length) for f in TEMPORAL_WINDOWS[symbols]]


def generate_temporal_order(rng: np.random.Generator, n: int, length: int, symbols: int = 2
                            ) -> tuple[np.ndarray, np.ndarray]:
    """Temporal order: one-hot ``x`` (n, T, 8) and int32 class ids ``y`` (n,).

    Step 0 is B, step T-1 is E, the others are drawn from {a, b, c, d} except
    one position in each window of ``temporal_positions`` that holds X or Y.
    The class is the X/Y sequence read as binary digits (X = 0, Y = 1, the
    first position most significant): XX=0, XY=1, YX=2, YY=3 for exp. 6a.
    """
    seq = rng.integers(0, 4, size=(n, length))
    seq[:, 0], seq[:, -1] = 6, 7
    rows = np.arange(n)
    y = np.zeros(n, dtype=np.int32)
    for lo, hi in temporal_positions(length, symbols):
        pos = rng.integers(lo, hi + 1, size=n)
        bit = rng.integers(0, 2, size=n)
        seq[rows, pos] = 4 + bit
        y = 2 * y + bit.astype(np.int32)
    return np.eye(8, dtype=np.float32)[seq], y


def generate_selective_copy(rng: np.random.Generator, n: int, length: int, tokens: int = 16, vocab: int = 16
                            ) -> tuple[np.ndarray, np.ndarray]:
    """Selective copy: one-hot ``x`` (n, T+2M, V) and int32 ``y`` (n, T+2M).

    Symbols: 0 blank, 1..V-2 data, V-1 marker. The M data tokens (uniform,
    independent) sit at M random distinct positions of the first T+M steps
    (in order), the other T of those steps are blank; then M markers. The
    target is blank except at the markers, which hold the data in order.
    """
    slots = length + tokens
    data = rng.integers(1, vocab - 1, size=(n, tokens))
    # M distinct positions per row: the M smallest of T+M random keys.
    pos = np.sort(np.argsort(rng.random((n, slots)), axis=1)[:, :tokens], axis=1)
    seq = np.zeros((n, slots + tokens), dtype=np.int64)
    np.put_along_axis(seq, pos, data, axis=1)
    seq[:, slots:] = vocab - 1
    y = np.zeros((n, slots + tokens), dtype=np.int32)
    y[:, slots:] = data
    return np.eye(vocab, dtype=np.float32)[seq], y


def generate_recall(rng: np.random.Generator, n: int, length: int, pairs: int = 8, vocab: int = 64
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Multi-query associative recall: one-hot ``x`` (n, 3K+T, V+1), int32 ``y`` (n, 3K+T).

    Keys are K distinct symbols of 0..V/2-1, values K distinct symbols of
    V/2..V-1 (as Zoology's generator draws them); symbol V is blank. Input:
    k1 v1 k2 v2 ... kK vK, T blanks, then the K keys in a random order. The
    target is blank (V) except at the queries, which hold each key's value.
    """
    half = vocab // 2
    keys = np.argsort(rng.random((n, half)), axis=1)[:, :pairs]
    values = half + np.argsort(rng.random((n, half)), axis=1)[:, :pairs]
    order = np.argsort(rng.random((n, pairs)), axis=1)
    total = 3 * pairs + length
    seq = np.full((n, total), vocab, dtype=np.int64)
    seq[:, 0 : 2 * pairs : 2] = keys
    seq[:, 1 : 2 * pairs : 2] = values
    seq[:, 2 * pairs + length :] = np.take_along_axis(keys, order, axis=1)
    y = np.full((n, total), vocab, dtype=np.int32)
    y[:, 2 * pairs + length :] = np.take_along_axis(values, order, axis=1)
    return np.eye(vocab + 1, dtype=np.float32)[seq], y


def generate_parity(rng: np.random.Generator, n: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Parity: bits ``x`` (n, T, 1) in {0, 1} and int32 ``y`` (n,) = their sum mod 2."""
    bits = rng.integers(0, 2, size=(n, length))
    return bits.astype(np.float32)[:, :, None], (bits.sum(axis=1) % 2).astype(np.int32)


_MNIST: dict = {}


def mnist_path() -> Path:
    """Where seqvg reads MNIST: $SEQVG_MNIST, else Keras's cache
    ($KERAS_HOME or ~/.keras, then datasets/mnist.npz)."""
    if os.environ.get("SEQVG_MNIST"):
        return Path(os.environ["SEQVG_MNIST"])
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "datasets" / "mnist.npz"


def _download_mnist() -> None:
    """Keras's download into its cache (needs the network)."""
    import keras

    keras.datasets.mnist.load_data()


def _bad_file(path, reason: str) -> OSError:
    # An OSError, so every command reports it in one line like any other bad file.
    return OSError(errno.EINVAL, reason, str(path))


def load_mnist() -> dict[str, np.ndarray]:
    """MNIST as uint8 images (n, 28, 28) and labels: x_train, y_train, x_test, y_test.

    Read once per process from ``mnist_path()``; a missing file in Keras's
    cache is downloaded with ``keras.datasets.mnist.load_data()``.

    Raises:
        FileNotFoundError: no file and no download; the message says where to put it.
        OSError: the file is not MNIST in Keras's format (EINVAL, naming the file).
    """
    path = mnist_path()
    if str(path) in _MNIST:
        return _MNIST[str(path)]
    if not path.exists() and not os.environ.get("SEQVG_MNIST"):
        try:
            _download_mnist()
        except Exception:  # no network, a proxy, a full disk: all end in the same advice
            pass
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, f"MNIST not found and not downloadable; put mnist.npz ({MNIST_URL}) "
                                "there, or name it with SEQVG_MNIST=FILE", str(path))
    try:
        with np.load(path) as f:
            d = {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise _bad_file(path, f"not Keras's mnist.npz ({type(e).__name__})") from None
    for split in ("train", "test"):
        x, y = d[f"x_{split}"], d[f"y_{split}"]
        if x.ndim != 3 or x.shape[1:] != (28, 28) or len(y) != len(x) or len(x) == 0:
            raise _bad_file(path, f"x_{split} has shape {x.shape}, MNIST needs (n, 28, 28) and n labels")
        if y.min() < 0 or y.max() > 9:
            raise _bad_file(path, f"y_{split} holds labels outside 0..9")
    _MNIST[str(path)] = d
    return d


def psmnist_permutation() -> np.ndarray:
    """The fixed pixel order of psmnist: ``default_rng(PSMNIST_SEED).permutation(784)``."""
    return np.random.default_rng(PSMNIST_SEED).permutation(MNIST_PIXELS)


def generate_mnist(rng: np.random.Generator, n: int, split: str = "train", permuted: bool = False
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Sequential MNIST: pixels ``x`` (n, 784, 1) in [0, 1], int32 labels ``y`` (n,).

    Training batches are n distinct images of the training split; the
    validation set ("test") is n distinct images of the test split (all of
    them, shuffled, for n = its size). Row-major pixel order, or psmnist's
    fixed permutation.
    """
    d = load_mnist()
    images, labels = d[f"x_{split}"], d[f"y_{split}"]
    if n > len(images):
        raise _bad_file(mnist_path(), f"{n} samples asked of the {split} split, which holds {len(images)}")
    idx = rng.choice(len(images), size=n, replace=False)
    x = images[idx].reshape(n, MNIST_PIXELS).astype(np.float32) / 255.0
    if permuted:
        x = x[:, psmnist_permutation()]
    return x[:, :, None], labels[idx].astype(np.int32)


@dataclass(frozen=True)
class TaskArg:
    """A task parameter beyond ``--length`` (``--task-arg NAME=VALUE``)."""

    name: str
    default: int
    help: str
    minimum: int


#: Each task's parameters, in the order ``seqvg tasks`` lists them.
TASK_ARGS: dict[str, tuple[TaskArg, ...]] = {
    "temporal-order": (TaskArg("symbols", 2, "relevant X/Y positions: 2 = exp. 6a (4 classes), 3 = exp. 6b (8)", 2),),
    "selective-copy": (TaskArg("tokens", 16, "data tokens M to copy", 1),
                       TaskArg("vocab", 16, "vocabulary V: blank, V-2 data symbols, marker", 3)),
    "recall": (TaskArg("pairs", 8, "key-value pairs K (all queried)", 1),
               TaskArg("vocab", 64, "vocabulary V (even): keys from the first half, values from the second", 4)),
}


@dataclass(frozen=True)
class Task:
    """A long-range task: its data, loss, metric, baseline and solved criterion.

    A Task is bound to its parameters (``get_task(name, args)``).

    Attributes:
        name: the task's name, e.g. "adding".
        n_inputs: features per timestep.
        n_outputs: model outputs (per step when ``per_step``).
        per_step: whether the model emits one output per timestep.
        metric_name: short name of the reported metric.
        higher_is_better: direction of the metric.
        threshold: the default "solved" threshold on the validation metric.
        outputs: for ``per_step`` tasks, the number of steps at the end that
            are scored (loss and metric); 0 = copy memory's loss over all
            steps with the metric over the last 10.
        args: the parameters as sorted (name, value) pairs.
    """

    name: str
    n_inputs: int
    n_outputs: int
    per_step: bool
    metric_name: str
    higher_is_better: bool
    threshold: float
    _generate: Callable[..., tuple[np.ndarray, np.ndarray]]
    outputs: int = 0
    args: tuple = ()

    @property
    def params(self) -> dict:
        """The task's parameters as a dict (``--task-arg`` values with defaults)."""
        return dict(self.args)

    def seq_len(self, length: int) -> int:
        """Number of timesteps the model reads for task length ``length``."""
        p = self.params
        if self.name == "copy":
            return length + 2 * COPY_SYMBOLS
        if self.name == "selective-copy":
            return length + 2 * p["tokens"]
        if self.name == "recall":
            return length + 3 * p["pairs"]
        if self.name in ("smnist", "psmnist"):
            return MNIST_PIXELS
        return length

    def check_length(self, length: int) -> str | None:
        """Why ``length`` is impossible for this task, or None."""
        if self.name in ("smnist", "psmnist") and length != MNIST_PIXELS:
            return f"{self.name} reads an image's {MNIST_PIXELS} pixels one per step: use --length {MNIST_PIXELS}"
        if self.name == "temporal-order":
            windows = temporal_positions(length, self.params["symbols"])
            inside = all(1 <= lo <= hi <= length - 2 for lo, hi in windows)
            if not inside or any(a[1] >= b[0] for a, b in zip(windows, windows[1:])):
                return (f"temporal-order T={length}: its windows {windows} must lie between B (step 0) and E "
                        f"(step T-1) without overlapping; use a longer --length")
        return None

    def generate(self, rng: np.random.Generator, n: int, length: int, split: str = "train"
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Draws ``n`` samples of length ``length`` from ``rng``.

        ``split`` matters to MNIST only: "train" (training batches, the probe
        batch) or "test" (the validation set).
        """
        if self.name in ("smnist", "psmnist"):
            return generate_mnist(rng, n, split, permuted=self.name == "psmnist")
        return self._generate(rng, n, length, **self.params)

    def target_mask(self, length: int) -> np.ndarray | None:
        """Bool (seq_len,): the steps whose outputs are scored, where only
        some of several are (selective-copy, recall); else None."""
        if not self.outputs:
            return None
        mask = np.zeros(self.seq_len(length), dtype=bool)
        mask[-self.outputs:] = True
        return mask

    def baseline(self, length: int) -> float:
        """Loss of the best memoryless predictor (the trivial baseline)."""
        p = self.params
        if self.name == "adding":
            return 1.0 / 6.0  # predict 1: Var(U1 + U2) = 2/12
        if self.name == "copy":
            return COPY_SYMBOLS * math.log(8) / (length + 2 * COPY_SYMBOLS)
        if self.name == "selective-copy":
            return math.log(p["vocab"] - 2)
        if self.name == "recall":
            return math.log(p["vocab"] // 2)
        return math.log(self.n_outputs)  # uniform classes

    def baseline_metric(self, length: int) -> float:
        """The metric of that memoryless predictor."""
        p = self.params
        if self.name == "adding":
            return 1.0 / 6.0
        if self.name == "copy":
            return 1.0 / 8.0
        if self.name == "selective-copy":
            return 1.0 / (p["vocab"] - 2)
        if self.name == "recall":
            return 1.0 / (p["vocab"] // 2)
        return 1.0 / self.n_outputs

    def partial_plateau(self, length: int) -> float | None:
        """Loss of a model that solves part of the task (the classic plateau), or None.

        Adding: a model that remembers only the near (second) marker predicts
        v2 + 1/2 and plateaus at Var(U1) = 1/12. Temporal order: one of the
        two relevant symbols (6b: two of three) learned leaves two classes,
        ln 2. Recall: a model that keeps the sequence's values but not which
        key holds which guesses among K, ln K.
        """
        if self.name == "adding":
            return 1.0 / 12.0
        if self.name == "temporal-order":
            return math.log(2)
        if self.name == "recall":
            return math.log(self.params["pairs"])
        return None

    def plateau_metric(self, length: int) -> float | None:
        """The metric at ``partial_plateau``, or None."""
        if self.name == "adding":
            return 1.0 / 12.0
        if self.name == "temporal-order":
            return 0.5
        if self.name == "recall":
            return 1.0 / self.params["pairs"]
        return None

    @property
    def plateau_text(self) -> str:
        """What a model at the partial plateau has learned."""
        return {"adding": "remembers only the near marker",
                "temporal-order": ("knows only one of the two relevant symbols (accuracy 0.5)"
                                   if self.params.get("symbols") == 2 else
                                   "knows only two of the three relevant symbols (accuracy 0.5)"),
                "recall": "keeps the sequence's values but not which key holds which (accuracy 1/K)",
                }.get(self.name, "")

    @property
    def criterion(self) -> str:
        """The solved criterion in words, e.g. "val acc >= 0.99"."""
        return f"val {self.metric_name} {'>=' if self.higher_is_better else '<'} {self.threshold:g}"

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
        """Mean loss of a batch (TensorFlow ops): adding MSE; cross-entropy,
        averaged over the scored steps where only some are scored."""
        import tensorflow as tf

        if self.name == "adding":
            return tf.reduce_mean(tf.square(pred[:, 0] - y))
        if self.outputs:
            y, pred = y[:, -self.outputs:], pred[:, -self.outputs:, :]
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(y, tf.int32), logits=pred)
        return tf.reduce_mean(ce)

    def metric_fn(self, y, pred):
        """The task metric of a batch: adding MSE, copy last-10 accuracy,
        else the accuracy over the scored outputs."""
        import tensorflow as tf

        if self.name == "adding":
            return tf.reduce_mean(tf.square(pred[:, 0] - y))
        if self.per_step:
            k = self.outputs or COPY_SYMBOLS
            y, pred = y[:, -k:], pred[:, -k:, :]
        hit = tf.equal(tf.argmax(pred, axis=-1, output_type=tf.int32), tf.cast(y, tf.int32))
        return tf.reduce_mean(tf.cast(hit, tf.float32))


#: One line per task for ``seqvg tasks`` and the CLI's help: source, definition, loss.
TASK_DOCS = {
    "adding": "Hochreiter & Schmidhuber 1997. Sum of the two marked values of U[0,1] inputs; MSE.",
    "copy": "copy memory (Arjovsky et al. 2016). Recall 10 symbols after T steps; sequence T+20; "
            "cross-entropy over all steps.",
    "temporal-order": "Hochreiter & Schmidhuber 1997, exp. 6a/6b. Class of the order of X/Y at positions "
                      "in [0.1T,0.2T] and [0.5T,0.6T] (6b: [0.1T,0.2T], [0.33T,0.43T], [0.66T,0.76T]) among "
                      "noise a-d, B first and E last; cross-entropy at the end.",
    "selective-copy": "Gu & Dao 2023 (Mamba), variable copying. M data tokens at random places among T+M "
                      "steps, then M markers; output the tokens in order; sequence T+2M; cross-entropy over "
                      "the M outputs.",
    "recall": "multi-query associative recall (Arora et al. 2023, Zoology). K key-value pairs, T blanks, the "
              "K keys in random order; output each key's value; sequence 3K+T; cross-entropy over the K "
              "queries.",
    "parity": "e.g. Hochreiter & Schmidhuber 1996. Parity of T random bits at the end; cross-entropy.",
    "smnist": "Le et al. 2015. MNIST one pixel per step (784 steps, [0,1]); --length 784; validation on "
              "the test split; cross-entropy.",
    "psmnist": f"Le et al. 2015; Bai et al. 2018. smnist with one fixed pixel permutation "
               f"(numpy default_rng({PSMNIST_SEED}).permutation(784)); --length 784.",
}


def _build(name: str, p: dict) -> Task:
    if name == "adding":
        return Task("adding", 2, 1, False, "mse", False, 0.01, lambda rng, n, length: generate_adding(rng, n, length))
    if name == "copy":
        return Task("copy", COPY_ALPHABET, COPY_ALPHABET, True, "acc_last10", True, 0.99,
                    lambda rng, n, length: generate_copy(rng, n, length))
    if name == "temporal-order":
        return Task(name, 8, 2 ** p["symbols"], False, "acc", True, 0.99, generate_temporal_order)
    if name == "selective-copy":
        return Task(name, p["vocab"], p["vocab"], True, "token_acc", True, 0.99, generate_selective_copy,
                    outputs=p["tokens"])
    if name == "recall":
        return Task(name, p["vocab"] + 1, p["vocab"] + 1, True, "acc", True, 0.99, generate_recall,
                    outputs=p["pairs"])
    if name == "parity":
        return Task(name, 1, 2, False, "acc", True, 0.99, generate_parity)
    return Task(name, 1, 10, False, "acc", True, 0.98, None)  # smnist, psmnist


def resolve_task_args(name: str, args: dict | None = None) -> dict:
    """``args`` checked against the task's parameters, with every default filled in.

    Raises:
        ValueError: an unknown task or parameter, or a bad value (one line).
    """
    if name not in TASK_DOCS:
        raise ValueError(f"unknown task {name!r}; choose from {', '.join(TASK_DOCS)}")
    known = {a.name: a for a in TASK_ARGS.get(name, ())}
    args = dict(args or {})
    unknown = sorted(set(args) - set(known))
    if unknown:
        takes = ", ".join(known) if known else "none"
        raise ValueError(f"--task-arg {unknown[0]}: {name} has no such parameter (it takes: {takes})")
    out = {}
    for a in known.values():
        v = args.get(a.name, a.default)
        if not isinstance(v, numbers.Integral) or isinstance(v, bool):
            raise ValueError(f"--task-arg {a.name}: must be an integer, got {v!r}")
        if v < a.minimum:
            raise ValueError(f"--task-arg {a.name}: must be at least {a.minimum}, got {v}")
        out[a.name] = int(v)
    if name == "temporal-order" and out["symbols"] not in TEMPORAL_WINDOWS:
        raise ValueError(f"--task-arg symbols: 2 (exp. 6a) or 3 (exp. 6b), got {out['symbols']}")
    if name == "recall":
        if out["vocab"] % 2:
            raise ValueError(f"--task-arg vocab: must be even (keys and values split it), got {out['vocab']}")
        if out["pairs"] > out["vocab"] // 2:
            raise ValueError(f"--task-arg pairs: {out['pairs']} distinct keys need vocab >= {2 * out['pairs']}, "
                             f"got {out['vocab']}")
    return out


def get_task(name: str, args: dict | None = None) -> Task:
    """Returns the task called ``name`` bound to its parameters (defaults for those not given).

    Raises:
        ValueError: an unknown task or parameter, or a bad value.
    """
    p = resolve_task_args(name, args)
    return dataclasses.replace(_build(name, p), args=tuple(sorted(p.items())))


TASKS: dict[str, Task] = {name: get_task(name) for name in TASK_DOCS}


def describe_tasks() -> str:
    """Every task with its definition, parameters, baseline and solved criterion (``seqvg tasks``)."""
    lines = []
    for name, doc in TASK_DOCS.items():
        t = TASKS[name]
        length = MNIST_PIXELS if name in ("smnist", "psmnist") else 100
        lines += [name, f"  {doc}"]
        lines.append(f"  baseline: loss {t.baseline(length):.4g}, {t.metric_name} {t.baseline_metric(length):.4g}"
                     f"{' (T=100)' if name == 'copy' else ''};  solved: {t.criterion}")
        if t.partial_plateau(length) is not None:
            lines.append(f"  plateau: loss {t.partial_plateau(length):.4g} - a model that {t.plateau_text}")
        for a in TASK_ARGS.get(name, ()):
            lines.append(f"  --task-arg {a.name}={a.default}  {a.help}")
        lines.append("")
    return "\n".join(lines).rstrip()


def write_dataset(path, task: str, length: int, n: int, seed: int, args: dict | None = None) -> None:
    """Writes ``n`` samples to an .npz: ``x``, ``y``, the task's parameters and,
    for tasks that score only some steps, ``mask`` (n, seq_len), True where scored.

    Drawn from the probe stream of ``seed``, so ``n`` = the probe batch size
    reproduces the exact batch a run with that seed is probed on.
    """
    import json

    from seqvg.rundir import write_npz

    t = get_task(task, args)
    x, y = t.generate(stream(seed, STREAM_PROBE), n, length)
    extra = {}
    mask = t.target_mask(length)
    if mask is not None:
        extra["mask"] = np.broadcast_to(mask, y.shape).copy()
    write_npz(path, x=x, y=y, task=np.str_(task), length=np.int64(length), seed=np.int64(seed), n=np.int64(n),
              task_args=np.str_(json.dumps(t.params, sort_keys=True)), **extra)


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
    try:
        import json

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


def probe_batch(cfg) -> tuple[np.ndarray, np.ndarray]:
    """The fixed probe batch of a run config (same as ``seqvg generate --seed``).

    Drawn from its own sub-stream of the seed, so it does not change with
    ``--steps`` or the validation size.
    """
    return get_task(cfg.task, cfg.task_args).generate(stream(cfg.seed, STREAM_PROBE), cfg.probe_batch, cfg.length)
