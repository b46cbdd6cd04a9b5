"""IndRNN (Li, Li, Cook, Zhu & Gao 2018, "Independently Recurrent Neural
Network (IndRNN): Building A Longer and Deeper RNN", CVPR, arXiv:1803.04831).

    seqvg train --cell indrnn --length 200

Each unit has one recurrent weight of its own (a vector u, not a matrix):

    h_t = relu(x_t W + u * h_{t-1} + b)           output = state = h_t

so dh_t/dh_{t-1} = diag(u * relu'(a_t)), and the gradient from step T back
to step t is scaled per unit by u^(T-t) (where the unit is active). The
paper bounds it: |u| <= gamma^(1/T) keeps it below gamma (no explosion),
|u| >= epsilon^(1/T) keeps it above epsilon (memory over T steps). Its
recipe, used here with magnitude M = 2 (the paper's and its code's choice for the
adding problem) and T = ``t_max``:

    constraint  |u| <= M^(1/T)                    (after every optimizer step)
    init        u ~ U[M^(-1/T), M^(1/T)]          (the layer that must remember
                                                  over all T steps, as the last
                                                  layer is in the paper; a
                                                  seqvg model's only layer is)

``t_max`` should be the task's sequence length (``--cell-arg t_max=200``);
its default, 100, is seqvg's default length.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="seqvg")
class AbsBound(keras.constraints.Constraint):
    """Clips every entry of a weight to [-max_abs, max_abs]."""

    def __init__(self, max_abs: float):
        self.max_abs = float(max_abs)

    def __call__(self, w):
        return ops.clip(w, -self.max_abs, self.max_abs)

    def get_config(self):
        return {"max_abs": self.max_abs}


@keras.saving.register_keras_serializable(package="seqvg")
class IndRNNCell(keras.layers.Layer):
    """IndRNN cell: h_t = relu(x_t W + u * h_{t-1} + b), |u| <= magnitude^(1/t_max).

    Args:
        units: state (and output) size.
        t_max: the sequence length T the bound is for.
        magnitude: M: the gradient over T steps stays within [1/M, M] per unit at init,
            below M always.
        activation: the nonlinearity (relu in the paper).
        kernel_initializer: initializer of the input weights W.
        recurrent_initializer: initializer of u; None: U[M^(-1/T), M^(1/T)].
    """

    state_names = ("h",)
    seqvg_options = ("activation",)  # --activation (relu in the paper)
    # XLA pays: 6 against 17 ms a step at T=100, idle (benchmarks/xla_payoff.py).
    seqvg_xla = True

    def __init__(self, units: int, t_max: int = 100, magnitude: float = 2.0, activation="relu",
                 kernel_initializer="glorot_uniform", recurrent_initializer=None, **kwargs):
        super().__init__(**kwargs)
        if int(t_max) < 1 or float(magnitude) <= 1.0:
            raise ValueError(f"IndRNNCell needs t_max >= 1 and magnitude > 1, got t_max={t_max}, magnitude={magnitude}")
        self.units = int(units)
        self.t_max = int(t_max)
        self.magnitude = float(magnitude)
        self.activation = keras.activations.get(activation)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = None if recurrent_initializer is None else keras.initializers.get(recurrent_initializer)
        self.state_size = self.units
        self.output_size = self.units

    @property
    def recurrent_max(self) -> float:
        """The bound on |u|: magnitude^(1/t_max)."""
        return self.magnitude ** (1.0 / self.t_max)

    def build(self, input_shape):
        d = input_shape[-1]
        rec_init = self.recurrent_initializer or keras.initializers.RandomUniform(
            1.0 / self.recurrent_max, self.recurrent_max
        )
        self.kernel = self.add_weight(shape=(d, self.units), initializer=self.kernel_initializer, name="kernel")
        self.recurrent_kernel = self.add_weight(
            shape=(self.units,), initializer=rec_init, constraint=AbsBound(self.recurrent_max), name="recurrent_kernel"
        )
        self.bias = self.add_weight(shape=(self.units,), initializer="zeros", name="bias")

    def call(self, inputs, states, training=False):
        h_prev = states[0] if isinstance(states, (list, tuple)) else states
        h = self.activation(ops.matmul(inputs, self.kernel) + self.recurrent_kernel * h_prev + self.bias)
        return h, [h] if isinstance(states, (list, tuple)) else h

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "t_max": self.t_max,
            "magnitude": self.magnitude,
            "activation": keras.activations.serialize(self.activation),
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "recurrent_initializer": None if self.recurrent_initializer is None
            else keras.initializers.serialize(self.recurrent_initializer),
        }
