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
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="seqvg")
class MinGRUCell(keras.layers.Layer):
    """minGRU cell: h_t = (1 - z_t) * h_{t-1} + z_t * Linear(x_t), z_t = sigmoid(Linear(x_t)).

    Args:
        units: state (and output) size.
        kernel_initializer: initializer of the input weights [W_z, W_h].
        bias_initializer: initializer of the biases [b_z, b_h] (zeros, as in the paper).
    """

    state_names = ("h",)

    def __init__(self, units: int, kernel_initializer="glorot_uniform", bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.state_size = self.units
        self.output_size = self.units

    def build(self, input_shape):
        d = input_shape[-1]
        # Columns [z | h~]: one matmul per step for both linears.
        self.kernel = self.add_weight(shape=(d, 2 * self.units), initializer=self.kernel_initializer, name="kernel")
        self.bias = self.add_weight(shape=(2 * self.units,), initializer=self.bias_initializer, name="bias")

    def call(self, inputs, states, training=False):
        h_prev = states[0] if isinstance(states, (list, tuple)) else states
        a = ops.matmul(inputs, self.kernel) + self.bias
        z = ops.sigmoid(a[:, : self.units])
        h_tilde = a[:, self.units :]
        h = (1.0 - z) * h_prev + z * h_tilde
        return h, [h] if isinstance(states, (list, tuple)) else h

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        }
