"""A metrics row's statistics: the training batches since the last row,
validation, and how far each layer's weights moved.

    from seqvg.rowstats import Validation, WeightChange, Window
    window = Window(); window.add(loss, metric, grad_norm); window.stats()

Used by ``seqvg.training``'s loop, one object per job; metrics.csv's columns
are documented in docs/design.md ("The run directory").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from seqvg.config import RunConfig
from seqvg.tasks import STREAM_VAL, stream

EVAL_CHUNK = 256  # validation samples per forward pass (bounds memory)


@dataclass
class Window:
    """The training batches since the last metrics row: their means (and the
    largest gradient norm) make the row's training columns."""

    loss: list[float] = field(default_factory=list)
    metric: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)

    def add(self, loss: float, metric: float, grad_norm: float) -> None:
        self.loss.append(loss)
        self.metric.append(metric)
        self.grad_norm.append(grad_norm)

    def diverged(self) -> bool:
        """Whether the last batch's loss or gradient norm is NaN or infinite."""
        return not (math.isfinite(self.loss[-1]) and math.isfinite(self.grad_norm[-1]))

    def stats(self) -> dict:
        """loss, metric, grad_norm (means) and grad_norm_max; NaN for no batches (step 0)."""
        def mean(values):
            return float(np.mean(values)) if values else math.nan

        return {"loss": mean(self.loss), "metric": mean(self.metric), "grad_norm": mean(self.grad_norm),
                "grad_norm_max": float(np.max(self.grad_norm)) if self.grad_norm else math.nan}


class WeightChange:
    """||W_now - W_marked|| / ||W_marked|| for every layer with weights: the
    weight graph's columns, ``weight_change/<layer>``, bottom to top."""

    def __init__(self, model):
        self.layers = [(f"weight_change/{layer.name}", layer) for layer in model.layers if layer.weights]
        self.columns = [name for name, _ in self.layers]
        self.marked: list[np.ndarray] | None = None

    def mark(self) -> None:
        """Remembers the weights as they are now."""
        self.marked = [_flat_weights(layer) for _, layer in self.layers]

    def since_mark(self) -> dict:
        """Each layer's relative change since ``mark`` (NaN before the first mark)."""
        if self.marked is None:
            return {name: math.nan for name in self.columns}
        out = {}
        for (name, layer), prev in zip(self.layers, self.marked):
            denom = np.linalg.norm(prev)
            out[name] = float(np.linalg.norm(_flat_weights(layer) - prev) / denom) if denom > 0 else math.nan
        return out


def _flat_weights(layer) -> np.ndarray:
    return np.concatenate([np.ravel(w) for w in layer.get_weights()]).astype(np.float64)


class Validation:
    """The run's fixed validation set, and the model's loss and metric on it."""

    def __init__(self, model, task, cfg: RunConfig):
        import tensorflow as tf

        self.task = task
        # sMNIST validates on the test split; the synthetic tasks ignore the split.
        self.x, self.y = task.generate(stream(cfg.seed, STREAM_VAL), cfg.val_size, cfg.length, split="test")
        self._predict = tf.function(lambda x: model(x, training=False), reduce_retracing=True, autograph=False)

    def evaluate(self) -> tuple[float, float]:
        """Validation loss and metric, in chunks of ``EVAL_CHUNK`` samples."""
        import tensorflow as tf

        total_loss = total_metric = 0.0
        for i in range(0, len(self.x), EVAL_CHUNK):
            xb, yb = self.x[i : i + EVAL_CHUNK], self.y[i : i + EVAL_CHUNK]
            pred = self._predict(tf.constant(xb))
            total_loss += float(self.task.loss_fn(yb, pred)) * len(xb)
            total_metric += float(self.task.metric_fn(yb, pred)) * len(xb)
        return total_loss / len(self.x), total_metric / len(self.x)
