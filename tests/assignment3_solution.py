"""A worked solution of assignment 3 ("build a gate"), kept out of tasks/ so
students do not find it next to the starter; tests/test_assignment3.py
checks that it solves the task where the starter does not.

    seqvg run tasks/assignment-3-gate/spec.toml --set cell=tests/assignment3_solution.py:GatedCell

The starter's tanh cell with an update gate:

    z_t = sigmoid(x_t W_z + h_{t-1} U_z + b_z)
    h_t = (1 - z_t) * h_{t-1} + z_t * tanh(x_t W + h_{t-1} U + b)

b_z starts at -3: z_t ~ sigmoid(-3) = 0.05, so at initialisation the state
passes a step mostly unchanged instead of being rewritten. Measured at T=50
(init): g_0/g_{T-1} = 0.47, where the starter's falls by ~4 decades per 100
steps.
"""

from __future__ import annotations

import keras
from keras import ops


class GatedCell(keras.layers.Layer):
    """A tanh RNN cell with an update gate z_t (b_z initialised at ``gate_bias``)."""

    def __init__(self, units: int, gate_bias: float = -3.0, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.gate_bias = gate_bias
        self.state_size = units
        self.output_size = units

    def build(self, input_shape):
        d = input_shape[-1]
        self.kernel = self.add_weight(shape=(d, self.units), initializer="glorot_uniform", name="kernel")
        self.recurrent_kernel = self.add_weight(
            shape=(self.units, self.units), initializer="orthogonal", name="recurrent_kernel"
        )
        self.bias = self.add_weight(shape=(self.units,), initializer="zeros", name="bias")
        self.gate_kernel = self.add_weight(shape=(d, self.units), initializer="glorot_uniform", name="gate_kernel")
        self.gate_recurrent_kernel = self.add_weight(
            shape=(self.units, self.units), initializer="orthogonal", name="gate_recurrent_kernel"
        )
        self.gate_bias_weight = self.add_weight(
            shape=(self.units,), initializer=keras.initializers.Constant(self.gate_bias), name="gate_bias"
        )

    def call(self, inputs, states):
        h_prev = states[0] if isinstance(states, (list, tuple)) else states
        candidate = ops.tanh(ops.matmul(inputs, self.kernel) + ops.matmul(h_prev, self.recurrent_kernel) + self.bias)
        z = ops.sigmoid(
            ops.matmul(inputs, self.gate_kernel) + ops.matmul(h_prev, self.gate_recurrent_kernel) + self.gate_bias_weight
        )
        h = (1.0 - z) * h_prev + z * candidate
        return h, [h]

    def get_config(self):
        return {**super().get_config(), "units": self.units, "gate_bias": self.gate_bias}
