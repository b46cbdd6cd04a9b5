"""Keras models for the tasks: stacked SimpleRNN / LSTM / GRU and a Dense head.

    from seqvg.config import RunConfig, cell_label, is_custom_cell
    from seqvg.models import build_model
    model = build_model(RunConfig(cell="lstm", forget_bias=3.0).resolved())

Keras's own recurrent layers are used for every remedy here, so a GPU runs the
cuDNN kernels. On a CPU, LSTM and GRU layers run seqvg's own loops
(``seqvg.fastlstm``: same weights and maths, about 2x faster training; which
one, ``seqvg.execpath``); they are still ``keras.layers.LSTM`` and
``keras.layers.GRU`` in the saved model. Gate-bias remedies
(``forget_bias``, ``chrono``) are written into the built weights instead of
passed as custom initializers: the saved ``model.keras`` then loads with
plain Keras, no seqvg import needed.
"""

from __future__ import annotations

import numpy as np

from seqvg.config import RunConfig, cell_label, is_custom_cell, scope_name
from seqvg.execpath import ExecutionPath, resolve
from seqvg.fastlstm import accelerate
from seqvg.tasks import STREAM_INIT, get_task, stream


def _activation(name: str):
    import keras

    return keras.activations.get(name)


def _recurrent_initializer(name: str, seed: int, gain: float = 1.0):
    """The recurrent initializer, scaled by ``gain`` (--recurrent-gain).

    Orthogonal and identity times G have every singular value G; Glorot
    uniform times G is VarianceScaling with scale G^2 (the same draws times G).
    """
    import keras

    if name == "identity":
        return keras.initializers.Identity(gain=gain)
    if name == "glorot":
        if gain == 1.0:
            return keras.initializers.GlorotUniform(seed=seed)
        return keras.initializers.VarianceScaling(scale=gain**2, mode="fan_avg", distribution="uniform", seed=seed)
    return keras.initializers.Orthogonal(gain=gain, seed=seed)


def _layer_norm_cell_class():
    """The layer-normalised vanilla cell (Ba, Kiros & Hinton 2016), defined lazily
    so that importing seqvg does not import Keras.

    h_t = act(gamma * (a_t - mean(a_t)) / std(a_t) + beta), with
    a_t = x_t W + h_{t-1} U: the normalisation keeps the pre-activation's scale
    fixed at every step, whatever the recurrent weights do to it.
    """
    global _LN_CELL
    if _LN_CELL is not None:
        return _LN_CELL
    import keras

    @keras.saving.register_keras_serializable(package="seqvg")
    class LayerNormSimpleRNNCell(keras.layers.SimpleRNNCell):
        """SimpleRNNCell with layer normalisation of the pre-activation."""

        def __init__(self, units, epsilon=1e-3, **kwargs):
            kwargs["use_bias"] = False  # LayerNorm's beta is the bias
            super().__init__(units, **kwargs)
            self.epsilon = epsilon

        def build(self, input_shape):
            super().build(input_shape)
            self.gamma = self.add_weight(shape=(self.units,), initializer="ones", name="gamma")
            self.beta = self.add_weight(shape=(self.units,), initializer="zeros", name="beta")

        def call(self, sequence, states, training=False):
            prev = states[0] if isinstance(states, (list, tuple)) else states
            a = keras.ops.matmul(sequence, self.kernel) + keras.ops.matmul(prev, self.recurrent_kernel)
            mean = keras.ops.mean(a, axis=-1, keepdims=True)
            var = keras.ops.var(a, axis=-1, keepdims=True)
            a = self.gamma * (a - mean) / keras.ops.sqrt(var + self.epsilon) + self.beta
            h = self.activation(a)
            return h, [h] if isinstance(states, (list, tuple)) else h

        def get_config(self):
            config = super().get_config()
            config.pop("use_bias", None)
            return {**config, "epsilon": self.epsilon}

    _LN_CELL = LayerNormSimpleRNNCell
    return _LN_CELL


_LN_CELL = None
_RESIDUAL = None


def residual_class():
    """The ``Residual`` wrapper: a skip connection around one recurrent layer.

    out = x + layer(x) (for a layer that returns only its last state, the
    skip adds the last input step). The gradient then reaches the layer below
    through the identity as well as through the recurrent layer.
    """
    global _RESIDUAL
    if _RESIDUAL is not None:
        return _RESIDUAL
    import keras

    @keras.saving.register_keras_serializable(package="seqvg")
    class Residual(keras.layers.Wrapper):
        """x + layer(x) around a recurrent layer of the input's width."""

        def call(self, inputs, training=None):
            skip = inputs if self.layer.return_sequences else inputs[:, -1, :]
            return skip + self.layer(inputs, training=training)

        def compute_output_shape(self, input_shape):
            return self.layer.compute_output_shape(input_shape)

    _RESIDUAL = Residual
    return _RESIDUAL


def register_custom_objects() -> None:
    """Registers seqvg's own Keras classes, so ``keras.saving.load_model``
    can read any model.keras that seqvg wrote (call before loading)."""
    _layer_norm_cell_class()
    residual_class()


def _recurrent_layer(cfg: RunConfig, index: int, return_sequences: bool):
    import keras

    name = f"{scope_name(cell_label(cfg.cell))}_{index + 1}"
    if is_custom_cell(cfg.cell):
        from seqvg.customcell import make_cell

        # The cell's own initialisers, drawn from the seed set in build_model.
        return keras.layers.RNN(make_cell(cfg), return_sequences=return_sequences, name=name)
    rec_init = _recurrent_initializer(cfg.recurrent_init or "orthogonal", cfg.seed * 1000 + index, cfg.recurrent_gain)
    kernel_init = keras.initializers.GlorotUniform(seed=cfg.seed * 1000 + 500 + index)
    common = dict(
        return_sequences=return_sequences,
        kernel_initializer=kernel_init,
        recurrent_initializer=rec_init,
        name=name,
    )
    if cfg.cell in ("rnn", "irnn") and cfg.layer_norm:
        cell = _layer_norm_cell_class()(
            cfg.units, activation=_activation(cfg.activation), kernel_initializer=kernel_init,
            recurrent_initializer=rec_init,
        )
        return keras.layers.RNN(cell, return_sequences=return_sequences, name=name)
    if cfg.cell in ("rnn", "irnn"):
        return keras.layers.SimpleRNN(cfg.units, activation=_activation(cfg.activation), **common)
    if cfg.cell == "lstm":
        return keras.layers.LSTM(cfg.units, **common)
    return keras.layers.GRU(cfg.units, **common)


def recurrent_layers(model) -> list:
    """The model's recurrent (keras.layers.RNN) layers, bottom to top,
    including those inside a ``Residual`` wrapper."""
    import keras

    out = []
    for layer in model.layers:
        inner = getattr(layer, "layer", None) if isinstance(layer, residual_class()) else layer
        if isinstance(inner, keras.layers.RNN):
            out.append(inner)
    return out


def _set_gate_biases(cfg: RunConfig, model) -> None:
    """Writes --forget-bias / --chrono into the built gate biases.

    Keras gate layouts: LSTM bias is [i, f, c, o]; GRU (reset_after) bias is
    (2, 3u) with rows input/recurrent and columns [z, r, h], where z is the
    fraction of the old state kept (h = z*h_prev + (1-z)*h_new).
    """
    if (cfg.forget_bias is None and cfg.chrono is None) or is_custom_cell(cfg.cell):
        return  # a custom cell that takes these options got them in its constructor
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


def build_model(cfg: RunConfig, path: ExecutionPath | None = None):
    """Builds the (uncompiled) Keras model of a resolved config.

    Weights are seeded from ``cfg.seed``: the same config gives the same
    initial weights on every run.

    Args:
        cfg: a resolved config.
        path: which loop the LSTM or GRU layers run; None: ``execpath.resolve(cfg)``.
    """
    import keras

    keras.utils.set_random_seed(cfg.seed)
    task = get_task(cfg.task, cfg.task_args)
    inputs = keras.Input((cfg.seq_len, task.n_inputs), name="x")
    h = inputs
    for i in range(cfg.layers):
        top = i == cfg.layers - 1
        rnn = _recurrent_layer(cfg, i, return_sequences=task.per_step or not top)
        if cfg.residual and i > 0:  # layer 1 reads the task's inputs, not units wide
            rnn = residual_class()(rnn, name=f"residual_{i + 1}")
        h = rnn(h)
        if cfg.batch_norm and not top:
            # Normalises each feature over batch and time between the layers.
            h = keras.layers.BatchNormalization(name=f"batch_norm_{i + 1}")(h)
    outputs = keras.layers.Dense(
        task.n_outputs, kernel_initializer=keras.initializers.GlorotUniform(seed=cfg.seed * 1000 + 999), name="head"
    )(h)
    model = keras.Model(inputs, outputs, name=f"{cfg.task}_{scope_name(cell_label(cfg.cell))}")
    _set_gate_biases(cfg, model)
    accelerate(model, resolve(cfg) if path is None else path)
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
    model.compile(optimizer=make_optimizer(cfg), loss=get_task(cfg.task, cfg.task_args).keras_loss())
