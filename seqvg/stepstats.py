"""Gate statistics and step-Jacobian norms of a model on a batch (see ``seqvg.why``).

    from seqvg.stepstats import StepStats
    stats = StepStats(Prober(model, task).plan)(x)

The TensorFlow half of ``seqvg.why``: ``why`` holds the definitions and the
numpy summaries that reports read; this module measures them.
"""

from __future__ import annotations

import numpy as np

from seqvg.cellstep import call_cell, fast_kind, initial_states, step
from seqvg.why import GATES, POWER_ITERS, gate_stats, jacobian_timesteps


def recurrent_sigma_max(layer) -> float:
    """sigma_max of the recurrent matrix of a vanilla layer (numpy's 2-norm)."""
    return float(np.linalg.norm(np.asarray(layer.cell.recurrent_kernel, dtype=np.float64), 2))


class StepStats:
    """Gate statistics and step-Jacobian norms of a model on a batch.

    Built by ``seqvg.probe.Prober`` next to its gradient probe; one traced
    function per model, reused at every probe of a training run.

    Args:
        plan: the Prober's (layer, its recurrent layer or None) chain.
    """

    def __init__(self, plan):
        import tensorflow as tf

        self.plan = plan
        self.rnns = [rnn for _, rnn in plan if rnn is not None]
        self.kinds = [fast_kind(rnn.cell) for rnn in self.rnns]
        self._fn = tf.function(self._forward, autograph=False)

    def _run(self, layer, kind, h, jac_t, v0):
        """One recurrent layer: its output sequence, gates (T, B, u) and J_t norms (J, B)."""
        import tensorflow as tf

        cell = layer.cell
        steps, batch = h.shape[1], h.shape[0]
        xs = tf.transpose(h, [1, 0, 2])
        in_ta = tf.TensorArray(xs.dtype, size=steps, element_shape=xs.shape[1:]).unstack(xs)
        states = initial_states(layer, batch)
        n_states = len(states)
        names = GATES.get(kind, ())
        gate_tas = [tf.TensorArray(h.dtype, size=steps) for _ in names]
        # s_{t-1} per state for every t (state_tas[k].read(t) is the state
        # *entering* step t): the Jacobian points are gathered from them after.
        state_tas = [tf.TensorArray(h.dtype, size=steps) for _ in range(n_states)]
        out_ta = tf.TensorArray(h.dtype, size=steps)

        def cell_step(x_t, states, gates=None, with_output=False):
            if kind is not None:
                new = step(kind, cell, x_t, list(states), lambda k, s: s, gates)
                return (new[0], new) if with_output else new
            output, new = call_cell(cell, x_t, states)  # any cell, by its own call
            return (output, new) if with_output else new

        def body(t, states, gate_tas, state_tas, out_ta):
            state_tas = [ta.write(t, s) for ta, s in zip(state_tas, states)]
            gates: dict = {}
            output, new = cell_step(in_ta.read(t), states, gates, with_output=True)
            gate_tas = [ta.write(t, gates[name]) for ta, name in zip(gate_tas, names)]
            return t + 1, new, gate_tas, state_tas, out_ta.write(t, output)

        _, _, gate_tas, state_tas, out_ta = tf.while_loop(
            lambda t, *_: t < steps, body, (tf.constant(0), states, gate_tas, state_tas, out_ta),
            maximum_iterations=steps, parallel_iterations=32,
        )
        gates = {name: ta.stack() for name, ta in zip(names, gate_tas)}
        if "dphi" in gates:
            # The loop kept a_t; phi'(a) for all t at once, for any elementwise
            # phi: d sum(phi(a)) / da.
            a = gates["dphi"]
            with tf.GradientTape() as g:
                g.watch(a)
                out = cell.activation(a)
            gates["dphi"] = g.gradient(out, a)

        # The J timesteps of the whole batch as one batch of J*B rows: a cell
        # acts on each row alone, so every row's power iteration is its own.
        points = int(jac_t.shape[0])
        x_j = tf.reshape(tf.gather(xs, jac_t), [points * batch, -1])
        s_j = tf.concat([tf.reshape(ta.gather(tf.cast(jac_t, tf.int32)), [points * batch, -1]) for ta in state_tas], axis=1)
        sizes = [int(s.shape[-1]) for s in states]

        def f(s):
            return tf.concat(cell_step(x_j, tf.split(s, sizes, axis=1)), axis=1)

        def jvp_vjp(v):
            with tf.GradientTape() as tape:
                tape.watch(s_j)
                with tf.autodiff.ForwardAccumulator(s_j, v) as acc:
                    out = f(s_j)
                u = acc.jvp(out)
            return u, tape.gradient(out, s_j, output_gradients=u)

        def normalised(v):
            return tf.math.divide_no_nan(v, tf.norm(v, axis=1, keepdims=True))

        _, v = tf.while_loop(
            lambda i, v: i < POWER_ITERS,
            lambda i, v: (i + 1, normalised(jvp_vjp(v)[1])),  # v <- J^T J v / ||.||
            (tf.constant(0), normalised(v0)),
        )
        # sqrt(||J^T J v||) for a unit v: a lower bound on sigma_max, and a
        # tighter one than ||J v|| = sqrt(v^T J^T J v).
        _, w = jvp_vjp(v)
        sigma = tf.reshape(tf.sqrt(tf.norm(w, axis=1)), [points, batch])
        return tf.transpose(out_ta.stack(), [1, 0, 2]), gates, sigma

    def _forward(self, x, jac_t, v0s):
        h = x
        results = []
        k = 0
        for layer, rnn in self.plan:
            if k == len(self.rnns):
                break  # nothing above the last recurrent layer is needed
            if rnn is None:
                h = layer(h, training=False)
                continue
            seq, gates, sigma = self._run(rnn, self.kinds[k], h, jac_t, v0s[k])
            out = seq if rnn.return_sequences else seq[:, -1, :]
            if rnn is not layer:  # Residual: skip + layer(x), as its call
                out = (h if rnn.return_sequences else h[:, -1, :]) + out
            h = out
            results.append((gates, sigma))
            k += 1
        return results

    def __call__(self, x: np.ndarray) -> dict:
        """Statistics of every recurrent layer on the batch ``x`` (batch, T, inputs).

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
        import tensorflow as tf

        steps = x.shape[1]
        jac_t = jacobian_timesteps(steps)
        rng = np.random.default_rng(0)  # a fixed start vector: same numbers every probe
        v0s = []
        for rnn in self.rnns:
            width = sum(int(s) for s in tf.nest.flatten(rnn.cell.state_size))
            v0s.append(tf.constant(rng.standard_normal((len(jac_t) * x.shape[0], width)), tf.float32))
        results = self._fn(tf.constant(x, tf.float32), tf.constant(jac_t), v0s)
        out: dict = {"gates": {}, "jac_t": jac_t}
        names = {name for kind in self.kinds for name in GATES.get(kind, ())}
        for name in sorted(names):
            rows = []
            for gates, _ in results:
                rows.append(gate_stats(gates[name].numpy()) if name in gates else np.full((4, steps), np.nan, np.float32))
            out["gates"][name] = np.stack(rows)
        out["jac_sigma"] = np.stack([sigma.numpy().mean(axis=1) for _, sigma in results]).astype(np.float32)
        if all(isinstance(rnn.cell, _simple_rnn_cell()) for rnn in self.rnns):
            out["sigma_w"] = np.asarray([recurrent_sigma_max(rnn) for rnn in self.rnns], np.float32)
        return out


def _simple_rnn_cell():
    import keras

    return keras.layers.SimpleRNNCell
