"""LRU, the Linear Recurrent Unit (Orvieto, Smith, Gu, Fernando, Gulcehre,
Pascanu & De 2023, "Resurrecting Recurrent Neural Networks for Long
Sequences", ICML, arXiv:2303.06349).

    seqvg train --cell lru --length 200

A diagonal complex linear recurrence with N = ``units`` complex states:

    lambda = exp(-exp(nu) + i exp(theta))         |lambda| = exp(-exp(nu)) < 1
    gamma  = exp(gamma_log)                       init sqrt(1 - |lambda|^2)
    h_t    = lambda * h_{t-1} + gamma * (x_t B)   B complex (input, N)
    y_t    = Re(h_t C) + x_t D                    C complex (N, units)

The paper's exponential parametrisation keeps |lambda| < 1 whatever the
optimizer does; gamma normalises the state's variance at init. As in the
paper's reference code, gamma_log is a trained parameter initialised at
log sqrt(1 - |lambda|^2). The paper's D is diagonal (y and x of the same
width H); here the output has ``units`` columns (seqvg's Dense head reads it)
and the input the task's width, so D is a real (input, units) matrix: the same
skip from x_t to y_t, projected.

Initialisation (the paper's Section 3.2 and Appendix A): |lambda| uniform on
the ring [r_min, r_max] in the plane (nu = log(-log(u (r_max^2 - r_min^2) +
r_min^2) / 2), u ~ U[0, 1]), phase theta ~ U[0, max_phase];
B ~ N(0, 1/(2 d)) in each of its real and imaginary parts (d = input width),
C ~ N(0, 1/N) likewise, D ~ N(0, 1/d). Defaults r_min = 0.9, r_max = 0.999,
max_phase = 2 pi: the paper's choice for long-range tasks (its Long Range
Arena runs; PathFinder/PathX also cut max_phase to pi/10); its generic code
default is r_min = 0, r_max = 1, which forgets within a few steps.

States: the real and imaginary parts as two real tensors [h_re, h_im], each
(batch, units); ||dL/ds_t|| over both is the norm of the complex gradient.
"""

from __future__ import annotations

import math

import keras
from keras import ops


def _ring_nu_log(r_min: float, r_max: float):
    def init(shape, dtype=None):
        u = keras.random.uniform(shape, dtype=dtype or "float32")
        return ops.log(-0.5 * ops.log(u * (r_max**2 - r_min**2) + r_min**2))

    return init


def _theta_log(max_phase: float):
    def init(shape, dtype=None):
        u = keras.random.uniform(shape, dtype=dtype or "float32")
        # u = 0 would give log(0); its probability is ~2^-24 per unit.
        return ops.log(ops.maximum(max_phase * u, 1e-12))

    return init


@keras.saving.register_keras_serializable(package="seqvg")
class LRUCell(keras.layers.Layer):
    """LRU cell: h_t = lambda * h_{t-1} + gamma * (x_t B), y_t = Re(h_t C) + x_t D.

    Args:
        units: complex state size N and output size.
        r_min, r_max: the ring of |lambda| at init (0 <= r_min < r_max < 1).
        max_phase: arg(lambda) at init is uniform on [0, max_phase].
    """

    state_names = ("h_re", "h_im")
    # No seqvg_xla: XLA saves this cell no CPU per step (66 against 67 ms at
    # T=100, idle; benchmarks/xla_payoff.py), so it runs Keras's loop.

    def __init__(self, units: int, r_min: float = 0.9, r_max: float = 0.999, max_phase: float = 2 * math.pi,
                 **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= float(r_min) < float(r_max) < 1.0 or float(max_phase) <= 0.0:
            raise ValueError(
                f"LRUCell needs 0 <= r_min < r_max < 1 and max_phase > 0, got r_min={r_min}, r_max={r_max}, "
                f"max_phase={max_phase}"
            )
        self.units = int(units)
        self.r_min = float(r_min)
        self.r_max = float(r_max)
        self.max_phase = float(max_phase)
        self.state_size = [self.units, self.units]
        self.output_size = self.units

    def build(self, input_shape):
        d, n = input_shape[-1], self.units
        nu0 = _ring_nu_log(self.r_min, self.r_max)((n,))
        # gamma_log starts at log sqrt(1 - |lambda|^2) of the initial lambda, as in the paper's code.
        gamma0 = ops.log(ops.sqrt(1.0 - ops.exp(-2.0 * ops.exp(nu0))))
        self.nu_log = self.add_weight(shape=(n,), initializer=lambda shape, dtype=None: nu0, name="nu_log")
        self.theta_log = self.add_weight(shape=(n,), initializer=_theta_log(self.max_phase), name="theta_log")
        b_init = keras.initializers.RandomNormal(stddev=1.0 / math.sqrt(2 * d))
        c_init = keras.initializers.RandomNormal(stddev=1.0 / math.sqrt(n))
        self.B_re = self.add_weight(shape=(d, n), initializer=b_init, name="B_re")
        self.B_im = self.add_weight(shape=(d, n), initializer=b_init, name="B_im")
        self.C_re = self.add_weight(shape=(n, n), initializer=c_init, name="C_re")
        self.C_im = self.add_weight(shape=(n, n), initializer=c_init, name="C_im")
        self.D = self.add_weight(
            shape=(d, n), initializer=keras.initializers.RandomNormal(stddev=1.0 / math.sqrt(d)), name="D"
        )
        self.gamma_log = self.add_weight(shape=(n,), initializer=lambda shape, dtype=None: gamma0, name="gamma_log")

    def call(self, inputs, states, training=False):
        h_re, h_im = states
        modulus = ops.exp(-ops.exp(self.nu_log))
        phase = ops.exp(self.theta_log)
        lam_re, lam_im = modulus * ops.cos(phase), modulus * ops.sin(phase)
        gamma = ops.exp(self.gamma_log)
        u_re = gamma * ops.matmul(inputs, self.B_re)
        u_im = gamma * ops.matmul(inputs, self.B_im)
        new_re = lam_re * h_re - lam_im * h_im + u_re
        new_im = lam_re * h_im + lam_im * h_re + u_im
        y = ops.matmul(new_re, self.C_re) - ops.matmul(new_im, self.C_im) + ops.matmul(inputs, self.D)
        return y, [new_re, new_im]

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "r_min": self.r_min,
            "r_max": self.r_max,
            "max_phase": self.max_phase,
        }
