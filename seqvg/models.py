"""Keras models for the tasks: stacked SimpleRNN / LSTM / GRU and a Dense head.

    from seqvg.config import RunConfig
    from seqvg.models import build_model
    model = build_model(RunConfig(cell="lstm", forget_bias=3.0).resolved())

Keras's own recurrent layers are used for every remedy here, so a GPU runs the
cuDNN kernels. Gate-bias remedies (``forget_bias``, ``chrono``) are written
into the built weights instead of passed as custom initializers: the saved
``model.keras`` then loads with plain Keras, no seqvg import needed.
"""

from __future__ import annotations

import numpy as np

from seqvg.config import RunConfig
from seqvg.tasks import STREAM_INIT, get_task, stream


def _activation(name: str):
    import keras

    return keras.activations.get(name)


def _recurrent_initializer(name: str, seed: int):
    import keras

    if name == "identity":
        return keras.initializers.Identity()
    if name == "glorot":
        return keras.initializers.GlorotUniform(seed=seed)
    return keras.initializers.Orthogonal(seed=seed)


def _recurrent_layer(cfg: RunConfig, index: int, return_sequences: bool):
    import keras

    name = f"{cfg.cell}_{index + 1}"
    rec_init = _recurrent_initializer(cfg.recurrent_init or "orthogonal", cfg.seed * 1000 + index)
    kernel_init = keras.initializers.GlorotUniform(seed=cfg.seed * 1000 + 500 + index)
    common = dict(
        return_sequences=return_sequences,
        kernel_initializer=kernel_init,
        recurrent_initializer=rec_init,
        name=name,
    )
    if cfg.cell in ("rnn", "irnn"):
        return keras.layers.SimpleRNN(cfg.units, activation=_activation(cfg.activation), **common)
    if cfg.cell == "lstm":
        return keras.layers.LSTM(cfg.units, **common)
    return keras.layers.GRU(cfg.units, **common)


def recurrent_layers(model) -> list:
    """The model's recurrent (keras.layers.RNN) layers, bottom to top."""
    import keras

    return [layer for layer in model.layers if isinstance(layer, keras.layers.RNN)]


def _set_gate_biases(cfg: RunConfig, model) -> None:
    """Writes --forget-bias / --chrono into the built gate biases.

    Keras gate layouts: LSTM bias is [i, f, c, o]; GRU (reset_after) bias is
    (2, 3u) with rows input/recurrent and columns [z, r, h], where z is the
    fraction of the old state kept (h = z*h_prev + (1-z)*h_new).
    """
    if cfg.forget_bias is None and cfg.chrono is None:
        return
    rng = stream(cfg.seed, STREAM_INIT)
    u = cfg.units
    for layer in recurrent_layers(model):
        bias = layer.cell.bias
        value = np.zeros(tuple(bias.shape), dtype=np.float32)
        if cfg.cell == "lstm":
            if cfg.chrono is not None:
                # Tallec & Ollivier (2018): b_f ~ log U[1, T_max - 1], b_i = -b_f.
                b_f = np.log(rng.uniform(1.0, cfg.chrono - 1.0, size=u))
                value[u : 2 * u] = b_f
                value[:u] = -b_f
            else:
                value[u : 2 * u] = cfg.forget_bias
        else:  # gru + chrono: the keep gate z plays the forget gate's role.
            value[0, :u] = np.log(rng.uniform(1.0, cfg.chrono - 1.0, size=u))
        bias.assign(value)


def build_model(cfg: RunConfig):
    """Builds the (uncompiled) Keras model of a resolved config.

    Weights are seeded from ``cfg.seed``: the same config gives the same
    initial weights on every run.
    """
    import keras

    keras.utils.set_random_seed(cfg.seed)
    task = get_task(cfg.task)
    inputs = keras.Input((cfg.seq_len, task.n_inputs), name="x")
    h = inputs
    for i in range(cfg.layers):
        top = i == cfg.layers - 1
        h = _recurrent_layer(cfg, i, return_sequences=task.per_step or not top)(h)
    outputs = keras.layers.Dense(
        task.n_outputs, kernel_initializer=keras.initializers.GlorotUniform(seed=cfg.seed * 1000 + 999), name="head"
    )(h)
    model = keras.Model(inputs, outputs, name=f"{cfg.task}_{cfg.cell}")
    _set_gate_biases(cfg, model)
    return model


def make_optimizer(cfg: RunConfig):
    """The optimizer of a config; ``clip`` > 0 is global-norm clipping.

    Pascanu et al. (2013) rescale the whole gradient when its global norm
    exceeds the threshold, which is Keras's ``global_clipnorm`` (``clipnorm``
    would clip each weight tensor separately and change its direction).
    """
    import keras

    kwargs = {"learning_rate": cfg.lr}
    if cfg.clip > 0:
        kwargs["global_clipnorm"] = cfg.clip
    if cfg.optimizer == "adam":
        return keras.optimizers.Adam(**kwargs)
    if cfg.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(**kwargs)
    return keras.optimizers.SGD(**kwargs)


def compile_model(model, cfg: RunConfig) -> None:
    """Compiles with built-in Keras loss objects so model.keras loads anywhere."""
    model.compile(optimizer=make_optimizer(cfg), loss=get_task(cfg.task).keras_loss())
