"""A GRU written as a plain Keras RNN cell: the example of README's "Your own cell".

    seqvg probe --cell docs/examples/my_gru.py:MyGRU --length 100
    seqvg train --cell docs/examples/my_gru.py:MyGRU --length 50 --cell-arg keep_bias=1.0
    seqvg train --cell docs/examples/my_gru.py:MyGRU --activation relu   # declared in seqvg_options

The maths are Keras's GRU (reset gate after the recurrent matmul):

    z = sigmoid(x Wz + h Uz + bz + keep_bias)     the keep gate
    r = sigmoid(x Wr + h Ur + br)
    h~ = act(x Wh + bh + r * (h Uh + bh'))
    h' = z * h + (1 - z) * h~

``benchmarks/custom_cell.py`` times this cell against the built-in ``gru``.
"""

import keras
from keras import ops


class MyGRU(keras.layers.Layer):
    """GRU cell; ``keep_bias`` is added to the keep gate's pre-activation."""

    # Options of seqvg that need a cell's internals and that this cell
    # implements: seqvg passes them to __init__ as keyword arguments.
    seqvg_options = ("activation",)

    def __init__(self, units, keep_bias=0.0, activation="tanh", **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.keep_bias = keep_bias
        self.activation = keras.activations.get(activation)
        self.state_size = units  # one state, h (a list [u, v] for two)
        self.output_size = units

    def build(self, input_shape):
        u = self.units
        self.kernel = self.add_weight(shape=(input_shape[-1], 3 * u), initializer="glorot_uniform", name="kernel")
        self.recurrent_kernel = self.add_weight(shape=(u, 3 * u), initializer="orthogonal", name="recurrent_kernel")
        self.bias = self.add_weight(shape=(2, 3 * u), initializer="zeros", name="bias")

    def call(self, inputs, states):
        h = states[0]
        x_z, x_r, x_h = ops.split(ops.matmul(inputs, self.kernel) + self.bias[0], 3, axis=-1)
        r_z, r_r, r_h = ops.split(ops.matmul(h, self.recurrent_kernel) + self.bias[1], 3, axis=-1)
        z = ops.sigmoid(x_z + r_z + self.keep_bias)
        r = ops.sigmoid(x_r + r_r)
        hh = self.activation(x_h + r * r_h)
        h = z * h + (1 - z) * hh
        return h, [h]  # output, new states

    def get_config(self):
        return {**super().get_config(), "units": self.units, "keep_bias": self.keep_bias,
                "activation": keras.activations.serialize(self.activation)}
