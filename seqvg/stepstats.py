"""Gate statistics and step-Jacobian norms of a model on a batch (see ``seqvg.why``).

    from seqvg.probe import Prober
    why = Prober(model, task)(x, y).why      # this module's numbers

The TensorFlow half of ``seqvg.why``: ``why`` holds the definitions and the
numpy summaries that reports read; this module measures them, from what the
gradient probe's forward pass hands it (``Prober._measure``): each recurrent
layer's gate values at every step, and its input and entering state at the
Jacobian timesteps. No second pass over the sequence.
"""

from __future__ import annotations

import numpy as np

from seqvg.cellstep import call_cell, fast_kind, step
from seqvg.why import GATES, KRYLOV_DIM, gate_stats, jacobian_timesteps


def recurrent_sigma_max(layer) -> float:
    """sigma_max of the recurrent matrix of a vanilla layer (numpy's 2-norm)."""
    return float(np.linalg.norm(np.asarray(layer.cell.recurrent_kernel, dtype=np.float64), 2))


#: Relative size below which a Lanczos residual is rounding error (float32).
BREAKDOWN = 1e-4


def lanczos_sigma_max(jvp, vjp, v0, dim: int):
    """Per row, sigma_max of a linear map J from its products, by Lanczos on J^T J.

    A Krylov space of ``dim`` vectors q_0 = v0/|v0|, ..., each J^T J q_j
    orthogonalised against all before it (twice, which keeps the basis
    orthonormal in float32), then the largest eigenvalue of the projected
    (dim x dim) matrix Q^T J^T J Q (Rayleigh-Ritz). It is a lower bound on
    sigma_max^2 that, unlike power iteration's, converges fast when the top
    singular values lie close together; with ``dim`` equal to the width of
    J it is exact.

    Args:
        jvp: v -> J v for a (rows, n) batch of vectors, each row its own J.
        vjp: u -> J^T u, likewise.
        v0: (rows, n) start vectors.
        dim: Krylov dimension, at most n.

    Returns:
        (rows,) float32 estimates of each row's ||J||_2.
    """
    import tensorflow as tf

    def unit(v):
        return tf.math.divide_no_nan(v, tf.norm(v, axis=1, keepdims=True))

    basis, images = [unit(v0)], []
    for j in range(dim):
        w = vjp(jvp(basis[-1]))
        images.append(w)
        if j == dim - 1:
            break
        q = tf.stack(basis, axis=1)  # (rows, j+1, n)
        residual = w
        for _ in range(2):
            residual = residual - tf.einsum("rj,rjn->rn", tf.einsum("rjn,rn->rj", q, residual), q)
        # A residual at rounding level means the space already holds an
        # invariant subspace (its Ritz values are exact): a normalised
        # rounding error would be no direction at all (and its norm, from
        # squares that flush to zero, not 1), so the row's basis stops there.
        alive = tf.norm(residual, axis=1, keepdims=True) > BREAKDOWN * tf.norm(w, axis=1, keepdims=True)
        basis.append(tf.where(alive, unit(residual), tf.zeros_like(residual)))
    q, aq = tf.stack(basis, axis=1), tf.stack(images, axis=1)
    projected = tf.cast(tf.einsum("rin,rjn->rij", q, aq), tf.float64)
    projected = (projected + tf.linalg.matrix_transpose(projected)) / 2
    top = tf.reduce_max(tf.linalg.eigvalsh(projected), axis=1)
    return tf.cast(tf.sqrt(tf.maximum(top, 0.0)), tf.float32)


class StepStats:
    """Gate statistics and step-Jacobian norms of a model's recurrent layers.

    Built by ``seqvg.probe.Prober``; one traced function per model, reused at
    every probe of a training run.

    Args:
        rnns: the model's ``keras.layers.RNN`` layers, bottom first.
    """

    def __init__(self, rnns):
        import tensorflow as tf

        self.rnns = rnns
        self.kinds = [fast_kind(rnn.cell) for rnn in rnns]
        self._fn = tf.function(self._measure, autograph=False)

    def _sigma(self, layer, kind, x_j, s_j, v0):
        """(rows,) ||J_t||_2 of each row of the stacked (J*B) points."""
        import tensorflow as tf

        cell = layer.cell
        sizes = [int(s) for s in tf.nest.flatten(cell.state_size)]

        def f(s):
            states = tf.split(s, sizes, axis=1)
            if kind is not None:
                new = step(kind, cell, x_j, states, lambda k, v: v)
            else:
                _, new = call_cell(cell, x_j, states)  # any cell, by its own call
            return tf.concat(new, axis=1)

        # One forward pass for all products: J^T u from the tape of f, and
        # J v as the gradient of the (linear) u -> J^T u (the double-backward
        # trick, which is also how TensorFlow's ForwardAccumulator gets a JVP).
        dummy = tf.zeros_like(s_j)
        with tf.GradientTape(persistent=True) as outer:
            outer.watch(dummy)
            with tf.GradientTape(persistent=True) as inner:
                inner.watch(s_j)
                out = f(s_j)
            transposed = inner.gradient(out, s_j, output_gradients=dummy,
                                        unconnected_gradients=tf.UnconnectedGradients.ZERO)
        zero = tf.UnconnectedGradients.ZERO

        def jvp(v):
            return outer.gradient(transposed, dummy, output_gradients=v, unconnected_gradients=zero)

        def vjp(u):
            return inner.gradient(out, s_j, output_gradients=u, unconnected_gradients=zero)

        return lanczos_sigma_max(jvp, vjp, v0, min(KRYLOV_DIM, sum(sizes)))

    def _measure(self, inputs, v0s):
        import tensorflow as tf

        out = []
        for layer, kind, layer_in, v0 in zip(self.rnns, self.kinds, inputs, v0s):
            gates = dict(layer_in["gates"])
            if "dphi" in gates:
                # The loop kept a_t; phi'(a) for all t at once, for any
                # elementwise phi: d sum(phi(a)) / da.
                a = gates["dphi"]
                with tf.GradientTape() as g:
                    g.watch(a)
                    phi = layer.cell.activation(a)
                gates["dphi"] = g.gradient(phi, a)
            out.append((gates, self._sigma(layer, kind, layer_in["x"], layer_in["s"], v0)))
        return out

    def __call__(self, inputs: list[dict], steps: int) -> dict:
        """Statistics of every recurrent layer from its ``Prober`` forward values.

        Args:
            steps: the sequence length T.
            inputs: per layer, ``gates`` {name: (T, ...) values}, ``x`` and
                ``s``: the layer's input and entering state (all states
                concatenated) at ``jacobian_timesteps(T)``, batch rows
                stacked per timestep, (J*B, width).

        Returns:
            dict with ``gates`` {name: (layers, 4, T) float32, STATS along
            axis 1}, ``jac_t`` (J,) timesteps, ``jac_sigma`` (layers, J)
            float32 and, for vanilla cells, ``sigma_w`` (layers,) float32.

            ``jac_sigma`` is the norm of the Jacobian of the whole state
            (for an LSTM s = [h; c], whose c-to-c block is diag(f_t)): the
            matrix the backward pass multiplies the gradient by.
            It is batch-averaged as the mean over samples of each
            sample's spectral norm ||J_t^(b)||_2: each sample's gradient is
            multiplied by its own Jacobian, and Pascanu et al.'s bound is on
            that product, so this is the factor a typical sample's gradient
            sees. The norm of the batch-mean Jacobian would let samples whose
            directions differ cancel and is not a factor any gradient sees.
        """
        jac_t = jacobian_timesteps(steps)
        rng = np.random.default_rng(0)  # fixed start vectors: the same numbers at every probe
        v0s = [rng.standard_normal(tuple(layer_in["s"].shape)).astype(np.float32) for layer_in in inputs]
        results = self._fn(inputs, v0s)
        out: dict = {"gates": {}, "jac_t": jac_t}
        names = {name for kind in self.kinds for name in GATES.get(kind, ())}
        for name in sorted(names):
            rows = []
            for gates, _ in results:
                rows.append(gate_stats(gates[name].numpy()) if name in gates else np.full((4, steps), np.nan, np.float32))
            out["gates"][name] = np.stack(rows)
        # Rows are the J timesteps' batches one after the other.
        out["jac_sigma"] = np.stack([sigma.numpy().reshape(len(jac_t), -1).mean(axis=1) for _, sigma in results])
        out["jac_sigma"] = out["jac_sigma"].astype(np.float32)
        if all(isinstance(rnn.cell, _simple_rnn_cell()) for rnn in self.rnns):
            out["sigma_w"] = np.asarray([recurrent_sigma_max(rnn) for rnn in self.rnns], np.float32)
        return out


def _simple_rnn_cell():
    import keras

    return keras.layers.SimpleRNNCell
