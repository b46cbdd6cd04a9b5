"""minLSTM (Feng et al. 2024, "Were RNNs All We Needed?", arXiv:2410.01201).

    seqvg train --cell minlstm --length 200

The paper's sequential mode (its Algorithm "minLSTM", length-independent
scaling: normalised gates), with gates that read only the input x_t:

    f_t  = sigmoid(x_t W_f + b_f)                 forget gate
    i_t  = sigmoid(x_t W_i + b_i)                 input gate
    f'_t = f_t / (f_t + i_t),  i'_t = i_t / (f_t + i_t)
    h~_t = x_t W_h + b_h                          candidate: Linear(x_t), no tanh
    h_t  = f'_t * h_{t-1} + i'_t * h~_t           output = state = h_t

No output gate and no separate cell state: h_t is a convex mix of h_{t-1}
and h~_t, and dh_t/dh_{t-1} = diag(f'_t).

With zero biases (the paper's init) f'_t ~ 0.5, so at init the gradient
halves every step. ``chrono=T_MAX`` (``--chrono T_MAX``; seqvg's remedy, not
the paper's) draws b_f = log u, b_i = -log u, u ~ U[1, T_MAX - 1] (Tallec &
Ollivier 2018): then f + i = 1 and f' = u / (1 + u), a memory of ~1 + u steps.
"""

from __future__ import annotations

import keras
from keras import ops

from seqvg.cells.mingru import _InputGatedCell


@keras.saving.register_keras_serializable(package="seqvg")
class MinLSTMCell(_InputGatedCell):
    """minLSTM cell: h_t = f'_t * h_{t-1} + i'_t * Linear(x_t), f', i' normalised to sum to 1.

    Args:
        units: state (and output) size.
        kernel_initializer: initializer of the input weights [W_f, W_i, W_h].
        bias_initializer: initializer of the biases [b_f, b_i, b_h] (zeros).
        chrono: T_MAX of the chrono init of b_f, b_i (None: ``bias_initializer``).
    """

    state_names = ("h",)
    seqvg_options = ("chrono",)
    # XLA pays: 26 against 47 ms a step at T=100, idle (benchmarks/xla_payoff.py).
    seqvg_xla = True
    blocks = 3  # columns [f | i | h~]

    def _chrono_gates(self, u):
        return [ops.log(u), -ops.log(u)]  # b_f, b_i

    def call(self, inputs, states, training=False):
        h_prev = states[0] if isinstance(states, (list, tuple)) else states
        u = self.units
        a = ops.matmul(inputs, self.kernel) + self.bias
        f = ops.sigmoid(a[:, :u])
        i = ops.sigmoid(a[:, u : 2 * u])
        h_tilde = a[:, 2 * u :]
        total = f + i  # > 0: both are sigmoids
        h = (f / total) * h_prev + (i / total) * h_tilde
        return h, [h] if isinstance(states, (list, tuple)) else h
