"""Assignment 3, "build a gate": your own recurrent cell for seqvg.

    seqvg run tasks/assignment-3-gate/spec.toml --workers 2
    seqvg probe --cell tasks/assignment-3-gate/starter.py:GatedCell --length 100

As given, ``GatedCell`` is a vanilla tanh RNN cell:

    h_t = tanh(x_t W + h_{t-1} U + b)

Its step Jacobian dh_t/dh_{t-1} = diag(1 - h_t^2) U^T multiplies the
gradient once per step, so ||dL/dh_t|| shrinks geometrically as t goes back
(assignment 1). Your job: add a gate that lets the cell *keep* its state,

    z_t = sigmoid(x_t W_z + h_{t-1} U_z + b_z)      how much to write
    h_t = (1 - z_t) * h_{t-1} + z_t * tanh(x_t W + h_{t-1} U + b)

so that where z_t is near 0 the state (and the gradient) passes through a
step almost unchanged. Follow the TODOs. Then run the spec and answer the
questions in tasks/README.md ("Assignment 3").

Rules of the interface (seqvg builds your cell as ``GatedCell(units)``):
``state_size``, ``call(inputs, states)`` returning ``(output, new_states)``,
and ``get_config()`` so the saved model reloads. Keep the class name.
"""

from __future__ import annotations

import keras
from keras import ops


class GatedCell(keras.layers.Layer):
    """A tanh RNN cell, to be given an update gate (see the module docstring)."""

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.state_size = units
        self.output_size = units

    def build(self, input_shape):
        d = input_shape[-1]
        self.kernel = self.add_weight(shape=(d, self.units), initializer="glorot_uniform", name="kernel")
        self.recurrent_kernel = self.add_weight(
            shape=(self.units, self.units), initializer="orthogonal", name="recurrent_kernel"
        )
        self.bias = self.add_weight(shape=(self.units,), initializer="zeros", name="bias")
        # TODO 1: add the gate's weights W_z (d, units), U_z (units, units) and
        # b_z (units,). Think about b_z's initial value: which z_t makes the
        # state (and the gradient) pass through a step unchanged, and what
        # sigmoid(b_z) gives that at initialisation?

    def call(self, inputs, states):
        h_prev = states[0] if isinstance(states, (list, tuple)) else states
        candidate = ops.tanh(ops.matmul(inputs, self.kernel) + ops.matmul(h_prev, self.recurrent_kernel) + self.bias)
        # TODO 2: compute the gate z_t from inputs and h_prev, and mix:
        #   h = (1 - z) * h_prev + z * candidate
        h = candidate
        return h, [h]

    def get_config(self):
        # TODO 3 (only if you add constructor arguments): add them here too.
        return {**super().get_config(), "units": self.units}
