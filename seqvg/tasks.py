"""Long-range tasks: adding, copy, temporal order, selective copy, recall, parity, (p)sMNIST.

    seqvg tasks    # every task, its parameters, baseline and solved criterion
    seqvg generate temporal-order --length 100 --task-arg symbols=3 -o to.npz

A ``Task`` (``get_task(name, args)``) is a task bound to its parameters: its
data, loss, metric, trivial baseline, classic plateau and solved criterion.
Here too are the seeded sub-streams every run draws from (``stream``) and a
run's fixed probe batch. The data of each task is drawn in
``seqvg.generators`` ((p)sMNIST in ``seqvg.mnist``), exactly as
docs/design.md defines it, so results compare with the literature
(Hochreiter & Schmidhuber 1997; Arjovsky et al. 2016; Bai et al. 2018);
``seqvg.datasets`` writes and reads ``seqvg generate``'s files.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from seqvg.generators import (
    COPY_ALPHABET,
    COPY_SYMBOLS,
    TEMPORAL_WINDOWS,
    generate_adding,
    generate_copy,
    generate_parity,
    generate_recall,
    generate_selective_copy,
    generate_temporal_order,
    temporal_positions,
)
from seqvg.mnist import MNIST_PIXELS, PSMNIST_SEED, generate_mnist

#: Sub-streams of one run seed. Keeping them separate means the validation set
#: and the probe batch do not change when the number of training steps does.
STREAM_TRAIN = 1
STREAM_VAL = 2
STREAM_PROBE = 3
STREAM_INIT = 4


def stream(seed: int, kind: int, step: int | None = None) -> np.random.Generator:
    """Returns the generator of one sub-stream of ``seed``.

    Training draws batch ``step`` from ``stream(seed, STREAM_TRAIN, step)``: a
    batch depends on (seed, step) only, so a resumed run sees exactly the data
    an uninterrupted one would.
    """
    key = [int(seed), int(kind)] if step is None else [int(seed), int(kind), int(step)]
    return np.random.default_rng(key)



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
                       # V >= 4: with one data symbol (V = 3) the copy needs no memory (baseline loss ln 1 = 0).
                       TaskArg("vocab", 16, "vocabulary V: blank, V-2 data symbols, marker", 4)),
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
        if self.name == "temporal-order" and not self._windows_fit(length):
            windows = temporal_positions(length, self.params["symbols"])
            # "A longer --length" alone left the user guessing: name the shortest that fits.
            shortest = next(t for t in range(length + 1, length + 1000) if self._windows_fit(t))
            return (f"temporal-order T={length}: its windows {windows} must lie between B (step 0) and E "
                    f"(step T-1) without overlapping; use --length {shortest} or longer")
        return None

    def _windows_fit(self, length: int) -> bool:
        """Whether temporal order's windows fit a sequence of ``length``."""
        windows = temporal_positions(length, self.params["symbols"])
        inside = all(1 <= lo <= hi <= length - 2 for lo, hi in windows)
        return inside and all(a[1] < b[0] for a, b in zip(windows, windows[1:]))

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
        if self.name == "recall" and self.params["pairs"] > 1:  # one pair: knowing the value is solving it
            return math.log(self.params["pairs"])
        return None

    def plateau_metric(self, length: int) -> float | None:
        """The metric at ``partial_plateau``, or None."""
        if self.name == "adding":
            return 1.0 / 12.0
        if self.name == "temporal-order":
            return 0.5
        if self.name == "recall" and self.params["pairs"] > 1:
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


def probe_batch(cfg) -> tuple[np.ndarray, np.ndarray]:
    """The fixed probe batch of a run config (same as ``seqvg generate --seed``).

    Drawn from its own sub-stream of the seed, so it does not change with
    ``--steps`` or the validation size.
    """
    return get_task(cfg.task, cfg.task_args).generate(stream(cfg.seed, STREAM_PROBE), cfg.probe_batch, cfg.length)
