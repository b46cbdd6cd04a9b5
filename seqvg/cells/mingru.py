"""minGRU (Feng et al. 2024, "Were RNNs All We Needed?", arXiv:2410.01201).

    seqvg train --cell mingru --length 200

The paper's sequential mode (its Algorithm "minGRU", not the log-space
parallel scan), with gates that read only the input x_t:

    z_t  = sigmoid(x_t W_z + b_z)                 update gate
    h~_t = x_t W_h + b_h                          candidate: Linear(x_t), no tanh
    h_t  = (1 - z_t) * h_{t-1} + z_t * h~_t       output = state = h_t

The step Jacobian dh_t/dh_{t-1} = diag(1 - z_t) depends on the input only:
the gradient through time is a product of gates, never of a weight matrix,
so it cannot explode, and it vanishes only as fast as the gates forget.

With zero biases (the paper's init) z_t ~ 0.5, so at init the gradient halves
every step (0.5^100 ~ 1e-30 at T=100: ``seqvg probe --cell mingru``).
``chrono=T_MAX`` (``--chrono T_MAX``; seqvg's remedy, not the paper's) draws
b_z = -log u, u ~ U[1, T_MAX - 1] (Tallec & Ollivier 2018's chrono init for a
leaky unit): z = 1 / (1 + u), so each unit keeps its state for ~1 + u steps.
"""

from __future__ import annotations

import keras
from keras import ops


class _InputGatedCell(keras.layers.Layer):
    """What minGRU and minLSTM share: one state h, gates and candidate that
    read only x_t, all ``blocks`` linears in one (d, blocks * units) kernel,
    and chrono init of the gate biases (``_chrono_gates``)."""

    blocks: int

    def __init__(self, units: int, kernel_initializer="glorot_uniform", bias_initializer="zeros", chrono=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.chrono = _check_chrono(chrono)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.state_size = self.units
        self.output_size = self.units

    def build(self, input_shape):
        d = input_shape[-1]
        # One matmul per step for all linears (column order: the subclass's).
        n = self.blocks * self.units
        self.kernel = self.add_weight(shape=(d, n), initializer=self.kernel_initializer, name="kernel")
        self.bias = self.add_weight(shape=(n,), initializer=self._bias_init, name="bias")

    def _bias_init(self, shape, dtype=None):
        bias = self.bias_initializer(shape, dtype=dtype)
        if self.chrono is None:
            return bias
        u = keras.random.uniform((self.units,), 1.0, self.chrono - 1.0, dtype=dtype or "float32")
        gates = self._chrono_gates(u)
        return ops.concatenate([*gates, bias[len(gates) * self.units :]])

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            "chrono": self.chrono,
        }


@keras.saving.register_keras_serializable(package="seqvg")
class MinGRUCell(_InputGatedCell):
    """minGRU cell: h_t = (1 - z_t) * h_{t-1} + z_t * Linear(x_t), z_t = sigmoid(Linear(x_t)).

    Args:
        units: state (and output) size.
        kernel_initializer: initializer of the input weights [W_z, W_h].
        bias_initializer: initializer of the biases [b_z, b_h] (zeros, as in the paper).
        chrono: T_MAX of the chrono init of b_z (None: ``bias_initializer``).
    """

    state_names = ("h",)
    seqvg_options = ("chrono",)
    # XLA pays: 12 against 31 ms a step at T=100, idle (benchmarks/xla_payoff.py).
    seqvg_xla = True
    blocks = 2  # columns [z | h~]

    def _chrono_gates(self, u):
        return [-ops.log(u)]  # b_z

    def call(self, inputs, states, training=False):
        h_prev = states[0] if isinstance(states, (list, tuple)) else states
        a = ops.matmul(inputs, self.kernel) + self.bias
        z = ops.sigmoid(a[:, : self.units])
        h_tilde = a[:, self.units :]
        h = (1.0 - z) * h_prev + z * h_tilde
        return h, [h] if isinstance(states, (list, tuple)) else h


def _check_chrono(chrono):
    if chrono is None:
        return None
    if isinstance(chrono, bool) or not isinstance(chrono, (int, float)) or chrono <= 2:
        raise ValueError(f"chrono (T_MAX) must be a number > 2, got {chrono!r}")
    return int(chrono)
