"""Per-timestep gradient norms through the recurrence, from one backward pass.

    seqvg probe --cell lstm --length 200          # untrained model, seconds
    seqvg probe runs/adding-gru-T100-s0           # a trained run's final model

For every recurrent layer and timestep t this measures ||dL/dh_t|| (and
||dL/dc_t|| for LSTM, the total derivative including c_t -> h_t), the gradient of the batch-mean loss with respect to the
whole (batch x units) state tensor, and ||dL/dx_t|| for the inputs; for a
custom cell (``seqvg.customcell``) ||dL/ds_t|| of every state s it returns.

Method (docs/design.md, "The gradient probe"): each recurrent layer runs by
one of two paths. An LSTM or GRU layer that trains on seqvg's sequence op
(``seqvg.kernels``), or a tanh vanilla layer where the ops are built, is
probed by that op (the vanilla layer's: ``kernels.rnn_seq``): its ``taps`` input, (T, states)
zeros, has as its gradient the per-step squared norms of the total dL/dh_t
(and dL/dc_t) that its backward loop holds anyway, and it skips the weight
gradient. Any other layer re-runs its own cell (the trained weights, Keras's
maths in ``seqvg.cellstep``, or a custom cell's ``call``) in a
``tf.while_loop``, and after every step passes each state through a *tap*:
the identity in the forward pass, whose gradient hands the incoming dL/ds_t
on unchanged and adds its squared norm to a (T, states) accumulator. Either
way ``tape.gradient(loss, accumulator)`` holds ||dL/ds_t||^2 through the
recurrence for all t, from one backward pass: the zero perturbation eps_t of
docs/design.md with the norm taken where dL/d(eps_t) is formed, so the
backward loop emits T scalars instead of T (batch x units) tensors. The
gradient with respect to the layer's returned sequence is a different
quantity (off the recurrent path: it is non-zero only where the loss reads
the sequence) and is deliberately not what is measured.

The same forward pass hands ``seqvg.stepstats`` the gate values of every
step (the op's cache, read in place, or written by the loop) and each
layer's input and state at the Jacobian timesteps, for ``seqvg.why``'s
statistics: no second pass over the sequence.

It is long because the one backward pass has two paths (the sequence ops' taps, the tapped
while loop) and three ways of calling it (plain; one call with the statistics where seqvg's ops
probe every layer or every layer is a custom cell's loop; XLA) that share their setup; the statistics it hands on are
``seqvg.stepstats``'s.
"""

from __future__ import annotations

import contextlib
import shlex
from dataclasses import dataclass

import numpy as np

from seqvg.cellstep import call_cell, fast_kind as _fast_kind, initial_states, output_size, step as _step
from seqvg.decay import HORIZON_LEVEL, decay_summary, format_summary  # noqa: F401 (re-exported)
from seqvg.execpath import ExecutionPath
from seqvg.tasks import Task


@dataclass(frozen=True)
class ProbeResult:
    """One probe of a model on one batch.

    Attributes:
        loss: the probe's forward loss (equals the model's own loss).
        h: (layers, T) norms ||dL/dh_t|| per recurrent layer, bottom first.
        c: (layers, T) norms ||dL/dc_t|| for LSTM models, else None.
        x: (T,) norms ||dL/dx_t||.
        why: gate statistics and step-Jacobian norms (``seqvg.stepstats.StepStats``).
        states: a custom cell's further states, name -> (layers, T) norms
            ||dL/ds_t|| (names from the cell's ``state_names``, else s1, s2, ...;
            a second state named ``c`` is ``c``), else None.
    """

    loss: float
    h: np.ndarray
    c: np.ndarray | None
    x: np.ndarray
    why: dict | None = None
    states: dict | None = None

    def summary(self) -> dict:
        """Decay figures of the bottom layer's h curve (see ``decay_summary``)."""
        return decay_summary(self.h[0])

    def to_json(self) -> dict:
        """JSON-ready dict: loss, h, c, x, the summary figures and ``seqvg.why``'s keys."""
        from seqvg.why import to_json

        return {
            "loss": self.loss,
            "h": self.h.astype(float).tolist(),
            "c": None if self.c is None else self.c.astype(float).tolist(),
            "x": self.x.astype(float).tolist(),
            "summary": self.summary(),
            **({"states": {k: v.astype(float).tolist() for k, v in self.states.items()}} if self.states else {}),
            **to_json(self.why, self.h, self.c),
        }


def _recurrent(layer):
    """The keras.layers.RNN inside ``layer`` (itself, or a Residual's), or None."""
    import keras

    from seqvg.models import residual_class

    if isinstance(layer, residual_class()):
        layer = layer.layer
    return layer if isinstance(layer, keras.layers.RNN) else None


def _chain(model) -> list:
    """The model's layers in call order, checked to be a simple chain.

    A ``Residual`` wrapper (x + layer(x)) counts as one link of the chain.
    """
    import keras

    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    for layer in layers:
        if _recurrent(layer) is not None:
            layer = _recurrent(layer)
            if layer.go_backwards or getattr(layer, "stateful", False):
                raise ValueError(f"probe: layer {layer.name} runs backwards or statefully; not supported")
        nodes = getattr(layer, "_inbound_nodes", [])
        if len(nodes) > 1:
            raise ValueError(f"probe: layer {layer.name} is called more than once; not a simple chain")
    return layers


def _state_names(cell, n: int) -> list[str]:
    """Names of a cell's states: Keras's LSTM h, c; any other cell's from
    ``seqvg.customcell.state_names``."""
    import keras

    from seqvg.customcell import state_names

    if isinstance(cell, keras.layers.LSTMCell):
        return ["h", "c"][:n]
    return state_names(cell, n)


def _tap(acc, t, col: int, state, dense: bool = False):
    """Identity on ``state`` whose gradient adds ||dL/d state||^2 to acc[t, col].

    The incoming gradient passes through unchanged, so the tap measures the
    total derivative at this point of the loop without altering the backward
    pass; it is what ``tape.gradient(loss, eps_t)`` would give for a zero eps_t
    added here, reduced to its squared norm inside the backward loop. Squared
    in float64: a float32 gradient of 1e-25 squares to 0 in float32 and would
    be reported as underflow though it is not.

    With ``dense`` (a loop compiled by XLA) the square is added through a
    select over the whole (T, states) accumulator, a few hundred numbers,
    rather than by a scatter: XLA's CPU scatter cost a tap about 17 us, a
    third of a cheap cell's gradient pass. Each entry receives one square
    either way, so the numbers are the same.
    """
    import tensorflow as tf

    @tf.custom_gradient
    def tap(acc, t, state):
        def grad(d_acc, d_state):
            square = tf.reduce_sum(tf.square(tf.cast(d_state, tf.float64)))
            if dense:
                steps, cols = d_acc.shape
                here = tf.logical_and(tf.equal(tf.range(steps), t)[:, None], tf.equal(tf.range(cols), col)[None, :])
                return d_acc + tf.where(here, square, tf.zeros([], tf.float64)), None, d_state
            index = tf.reshape(tf.stack([t, col]), [1, 2])
            return tf.tensor_scatter_nd_add(d_acc, index, square[None]), None, d_state

        return (tf.identity(acc), tf.identity(state)), grad

    return tap(acc, t, state)


class Prober:
    """Measures gradient norms of one model; reuse it to avoid retracing.

    One forward and one backward pass give every norm; the same forward pass
    hands ``seqvg.stepstats.StepStats`` what it needs for ``seqvg.why``'s
    gate statistics and step-Jacobian norms (no second loop over the
    sequence). Each recurrent layer is probed by one of two paths, chosen
    here once: the sequence op it trains on (where ``path`` says so), else
    a ``tf.while_loop`` of its own cell with taps (``_run_loop``).

    Args:
        model: a Keras model that is a chain of layers (as seqvg builds them).
        task: the task whose loss is differentiated.
        path: the run's ``seqvg.execpath.ExecutionPath``: its LSTM or GRU
            layers are probed by seqvg's sequence op where it says so. None:
            the path of a one-shot probe of this model (``execpath.of_model``).
    """

    def __init__(self, model, task: Task, path: ExecutionPath | None = None):
        import tensorflow as tf

        from seqvg import execpath, fastlstm
        from seqvg.stepstats import StepStats

        self.model = model
        self.task = task
        self.path = execpath.of_model(model) if path is None else path
        self.layers = _chain(model)
        # (layer, its recurrent layer or None), resolved here: the traced
        # _measure must not call into seqvg.models (AutoGraph cannot convert it).
        self.plan = [(layer, _recurrent(layer)) for layer in self.layers]
        self.rnns = [rnn for _, rnn in self.plan if rnn is not None]
        if not self.rnns:
            raise ValueError("probe: the model has no recurrent layer")
        self.n_states = [len(tf.nest.flatten(layer.cell.state_size)) for layer in self.rnns]
        self.state_names = [_state_names(layer.cell, n) for layer, n in zip(self.rnns, self.n_states)]
        # The one choice of path: layers that train on seqvg's sequence ops
        # are probed by them (resolved here, outside the trace); a first one
        # gives dL/dx from its input gradient. A tanh vanilla layer, which
        # trains on Keras's loop, is probed by seqvg's RNN op where the ops
        # are built: a loop of TensorFlow ops costs as much as its training
        # step, the op a fraction (same maths, tested against Keras's).
        self.op_layers = [rnn for rnn in self.rnns if self.path.sequence_op and fastlstm.covered(rnn) == self.path.cell]
        vanilla = [rnn for rnn in self.rnns if fastlstm.vanilla_covered(rnn)]
        if vanilla and fastlstm.fused("float32"):
            self.op_layers += vanilla
        self.op_first = any(self.plan[0][1] is layer for layer in self.op_layers)
        # The layers probed by seqvg's ops have their step-Jacobian norms
        # from its op too; the ops are loaded for them anyway.
        self.stats = StepStats(self.rnns, jit_compile=self.path.xla,
                               sigma_op=[any(rnn is layer for layer in self.op_layers) for rnn in self.rnns])
        # No autograph: the loops are explicit tf.while_loops, and converting
        # the probe's functions costs each new process about a second of CPU.
        # XLA where the run's path says so (a custom cell's training run).
        # _fn: the gradient pass alone; StepStats then measures from its
        # forward values, the gate statistics beside the Jacobian products
        # (an op's, or numpy's on the host for a loop's gates). _all, on an XLA path: the gradient pass and
        # StepStats's Jacobian products as one compiled program (its small
        # eigenproblems stay outside, in ``StepStats.finish``).
        self._fn = tf.function(self._measure, autograph=False, jit_compile=self.path.xla)
        self._all = tf.function(self._measure_all, autograph=False, jit_compile=self.path.xla)
        # Where seqvg's ops probe every recurrent layer, the statistics are
        # ops as well (nothing for numpy to compute beside TensorFlow's
        # products), and so are a custom cell's (it has no gates to
        # summarise): the gradient pass and the statistics are then one call,
        # _one, which spares a probe the Python and executor teardown of a
        # second call.
        self.one_call = not self.path.xla and all(
            op or (kind is None and not any(rnn is layer for layer in self.op_layers))
            for rnn, op, kind in zip(self.rnns, self.stats.sigma_op, self.stats.kinds))
        self._one = tf.function(self._measure_one, autograph=False)

    def _run_rnn(self, layer, h, acc, jac_t, tap_input: bool = False):
        """Runs recurrent ``layer`` over ``h``, its state k tapped into acc[:, k].

        Returns:
            (the layer's output, ``StepStats`` inputs: ``gates`` {name: (T, ...)}
            from a loop or the op's ``cache`` that holds them, ``x`` and ``s``
            the layer's input and entering state at ``jac_t``).
        """
        if any(layer is op_layer for op_layer in self.op_layers):  # _chain has refused stateful layers
            return self._run_sequence_op(layer, h, acc, jac_t)
        return self._run_loop(layer, h, acc, jac_t, tap_input)

    def _run_loop(self, layer, h, acc, jac_t, tap_input: bool):
        """The layer's own cell in a ``tf.while_loop``, every new state tapped.

        With ``tap_input`` the input h_t is tapped too, into the last column.
        The taps' squares arrive as the gradient of ``acc``; the accumulator
        the loop returns carries nothing and is dropped.
        """
        import tensorflow as tf

        from seqvg.why import GATES

        xs = tf.transpose(h, [1, 0, 2])
        steps, batch = h.shape[1], h.shape[0]
        # TensorArrays (not slicing a captured tensor) keep the backward pass
        # O(T): the gradient of a slice would be a dense (T, B, u) per step.
        in_ta = tf.TensorArray(xs.dtype, size=steps, element_shape=xs.shape[1:]).unstack(xs)
        # Only a layer that returns its sequence needs every h_t kept; the
        # last state comes out of the loop anyway.
        states = initial_states(layer, batch)
        out_ta = tf.TensorArray(h.dtype, size=steps if layer.return_sequences else 0,
                                element_shape=[batch, output_size(layer.cell)])
        kind = _fast_kind(layer.cell)
        n_states = len(states)
        names = GATES.get(kind, ())
        gate_tas = [tf.TensorArray(h.dtype, size=steps) for _ in names]
        # The state entering the step at each of StepStats's Jacobian points.
        # Compiled by XLA, picked by a select as the loop passes them: a
        # (J, B, n) buffer, where a TensorArray of every step's state would
        # cost the loop a copy of the whole array per step. Otherwise every
        # step's state goes into a TensorArray, a reference to a tensor the
        # backward pass keeps anyway, gathered at the points after the loop:
        # the select read and wrote the whole buffer at every step.
        points = int(jac_t.shape[0])
        select = self.path.xla
        picked = [tf.zeros([points, *s.shape], s.dtype) if select else
                  tf.TensorArray(s.dtype, size=steps, element_shape=s.shape) for s in states]
        # The output of the last step (what the layer returns without
        # return_sequences); Keras's cells output their first state.
        last = tf.zeros([batch, output_size(layer.cell)], h.dtype)

        def body(t, states, acc, out_ta, last, gate_tas, picked):
            x_t = in_ta.read(t)
            # Read, never differentiated: without stop_gradient the backward
            # loop would carry a zero gradient for them through every step.
            if select:
                here = tf.reshape(tf.equal(jac_t, t), [points, 1, 1])
                picked = [tf.stop_gradient(tf.where(here, s[None], p)) for s, p in zip(states, picked)]
            else:
                picked = [ta.write(t, tf.stop_gradient(s)) for s, ta in zip(states, picked)]
            box = [acc]  # the taps thread the accumulator through the step

            def tap(k, state):
                box[0], state = _tap(box[0], t, k, state, dense=select)
                return state

            if tap_input:
                x_t = tap(n_states, x_t)
            if kind is not None:
                gates: dict = {}
                new_states = _step(kind, layer.cell, x_t, states, tap, gates)
                gate_tas = [ta.write(t, gates[name]) for ta, name in zip(gate_tas, names)]
                output = new_states[0]
            else:
                # Any cell, by its own call: every state it returns is tapped.
                # An output that is one of those states (Keras's `return h, [h]`)
                # leaves through the tap, so its norm is the total dL/ds_t; an
                # output computed beside the states is not a state and is not
                # measured (docs/design.md, "Custom cells").
                output, raw = call_cell(layer.cell, x_t, states)
                new_states = [tap(k, s) for k, s in enumerate(raw)]
                output = next((new for old, new in zip(raw, new_states) if old is output), output)
            if layer.return_sequences:
                out_ta = out_ta.write(t, output)
            return t + 1, new_states, box[0], out_ta, output, gate_tas, picked

        _, states, _, out_ta, last, gate_tas, picked = tf.while_loop(
            lambda t, *_: t < steps, body, (tf.constant(0), states, acc, out_ta, last, gate_tas, picked),
            maximum_iterations=steps,
            parallel_iterations=32,  # as Keras: lets input reads and taps run ahead
        )
        if not select:
            picked = [ta.gather(jac_t) for ta in picked]
        why_in = {
            "gates": {name: ta.stack() for name, ta in zip(names, gate_tas)},
            "x": tf.reshape(tf.gather(xs, jac_t), [points * batch, -1]),
            "s": tf.concat([tf.reshape(p, [points * batch, -1]) for p in picked], axis=1),
        }
        out = tf.transpose(out_ta.stack(), [1, 0, 2]) if layer.return_sequences else last
        return out, why_in

    def _run_sequence_op(self, layer, h, acc, jac_t):
        """``_run_rnn`` for an LSTM or GRU that training runs as seqvg's sequence op,
        or a tanh vanilla layer run by seqvg's RNN op.

        The op itself taps: ``acc`` (T, states) is its ``taps`` input, whose
        gradient is per step the squared norms of the total dL/dh_t (and
        dL/dc_t) that its backward loop holds anyway; it skips the weight
        gradient, which the probe never reads. ||dL/dx_t|| comes from its
        input gradient (``_measure`` does not tap x here). The states at
        ``jac_t`` are read from what its forward pass keeps for the backward
        (``kernels.sequence_internals``), and so are the gates: the cache
        itself leaves the graph, to be read in place (``kernels.gate_views``).
        """
        import tensorflow as tf

        from seqvg import fastlstm, kernels

        cell = layer.cell
        batch = h.shape[0]
        h0 = tf.zeros([batch, cell.units], h.dtype)
        seq = layer.return_sequences
        kind = fastlstm.covered(layer) or "rnn"
        if kind == "rnn":
            h_seq, h_last, caches = kernels.rnn_seq(
                h, h0, cell.kernel, cell.recurrent_kernel, cell.bias, seq, taps=acc, weight_grad=False,
                with_caches=True)
        elif kind == "lstm":
            h_seq, h_last, _, caches = kernels.lstm_seq(
                h, h0, h0, cell.kernel, cell.recurrent_kernel, cell.bias, seq, taps=acc, weight_grad=False,
                with_caches=True)
        else:
            h_seq, h_last, caches = kernels.gru_seq(
                h, h0, cell.kernel, cell.recurrent_kernel, cell.bias, seq, taps=acc, weight_grad=False,
                with_caches=True)
        cache, states = kernels.sequence_internals(kind, caches, cell.units, jac_t)
        points = int(jac_t.shape[0])
        # The input at the Jacobian points, timestep after timestep, in one
        # gather from the flat (batch * T, d) input: no transpose of it all.
        steps = h.shape[1]
        rows = tf.reshape(jac_t[:, None] + steps * tf.range(batch)[None, :], [-1])
        why_in = {
            "cache": cache,
            "x": tf.gather(tf.reshape(h, [batch * steps, -1]), rows),
            "s": tf.concat([tf.reshape(s, [points * batch, cell.units]) for s in states], axis=1),
        }
        return (h_seq if seq else h_last), why_in

    def _measure(self, x, y):
        """(loss, per layer the norms per state, x norms, per layer ``StepStats`` inputs)."""
        import tensorflow as tf

        from seqvg.why import jacobian_timesteps

        steps = x.shape[1]
        jac_t = tf.constant(jacobian_timesteps(steps), tf.int32)
        # When the model's input goes straight into a recurrent layer, its loop
        # taps x_t as well (one more accumulator column): cheaper than a
        # gradient TensorArray of dL/dx written per step and stacked after.
        tap_x = self.plan[0][1] is self.plan[0][0] and not self.op_first
        # Per layer, the (T, states) accumulator the taps add ||dL/ds_t||^2 to.
        accs = [tf.zeros([steps, n + (tap_x and k == 0)], tf.float64) for k, n in enumerate(self.n_states)]
        why_in = []
        # Only x and the accumulators are differentiated: watching the weights
        # would make the backward loop accumulate dL/dW at every step for nothing.
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            if not tap_x:
                tape.watch(x)
            tape.watch(accs)
            h = x
            k = 0
            for layer, rnn in self.plan:
                if rnn is None:
                    h = layer(h, training=False)
                    continue
                out, inputs = self._run_rnn(rnn, h, accs[k], jac_t, tap_input=tap_x and k == 0)
                if rnn is not layer:  # Residual: skip + layer(x), as its call
                    out = (h if rnn.return_sequences else h[:, -1, :]) + out
                h = out
                why_in.append(inputs)
                k += 1
            loss = self.task.loss_fn(y, h)
        sources = accs if tap_x else [x] + accs
        grads = tape.gradient(loss, sources, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        squares = grads if tap_x else grads[1:]
        norms = [tf.unstack(tf.sqrt(sq[:, :n]), axis=1) for sq, n in zip(squares, self.n_states)]
        if tap_x:
            x_norm = tf.sqrt(squares[0][:, -1])
        else:
            x_norm = tf.sqrt(tf.reduce_sum(tf.square(tf.cast(grads[0], tf.float64)), axis=[0, 2]))
        return loss, norms, x_norm, why_in

    def _measure_all(self, x, y, v0s):
        """``_measure``, then ``StepStats``'s Jacobian products from its forward values."""
        loss, norms, x_norm, why_in = self._measure(x, y)
        return loss, norms, x_norm, why_in, self.stats._measure(self.stats.tf_inputs(why_in), v0s)

    def _measure_one(self, x, y, v0s):
        """``_measure``, then ``StepStats``'s statistics from its forward values
        (every layer on seqvg's ops, or every layer a custom cell's loop):
        (loss, norms, x norms, ``StepStats._sigmas``'s per-layer results)."""
        import tensorflow as tf

        loss, norms, x_norm, why_in = self._measure(x, y)
        inputs = [tf_in | ({"cache": layer_in["cache"]} if "cache" in layer_in else {})
                  for tf_in, layer_in in zip(self.stats.tf_inputs(why_in), why_in)]
        # Beside a sequence op's backward pass the statistics' threads would
        # take the cores its threads wait on: they run after it, as when they
        # were a call of their own. A loop's backward pass is a chain of small
        # ops that leaves a core idle, so there they run beside it.
        after = tf.control_dependencies([x_norm, *tf.nest.flatten(norms)]) if self.op_layers else contextlib.nullcontext()
        with after:
            results = self.stats._sigmas(self.stats._measure(inputs, v0s))
        return loss, norms, x_norm, results

    def start_vectors(self, batch: int, steps: int) -> list:
        """The ``StepStats`` start vectors of a (batch, steps) probe, as tensors."""
        from seqvg.why import jacobian_timesteps

        return self.stats.start_vectors(len(jacobian_timesteps(steps)) * batch)

    def __call__(self, x: np.ndarray, y: np.ndarray) -> ProbeResult:
        """Probes the model on the batch (x, y)."""
        import tensorflow as tf

        expected = tuple(self.model.inputs[0].shape[1:])
        if tuple(x.shape[1:]) != expected:
            raise ValueError(f"probe: batch inputs have shape {tuple(x.shape[1:])}, the model reads {expected}")
        xt, yt = tf.constant(x, tf.float32), tf.constant(y)
        if self.path.xla:
            loss, norms, x_norm, why_in, products = self._all(xt, yt, self.start_vectors(x.shape[0], x.shape[1]))
            why = self.stats.finish(why_in, products, x.shape[1])
        elif self.one_call:
            loss, norms, x_norm, results = self._one(xt, yt, self.start_vectors(x.shape[0], x.shape[1]))
            why = self.stats.summarise(results, x.shape[1])
        else:
            loss, norms, x_norm, why_in = self._fn(xt, yt)
            why = self.stats(why_in, x.shape[1])
        h = np.stack([per_layer[0].numpy() for per_layer in norms]).astype(np.float32)
        c, states = None, {}
        names = self.state_names[0]
        if all(n == names for n in self.state_names):  # seqvg stacks one kind of cell
            for k, name in enumerate(names[1:], start=1):
                values = np.stack([per_layer[k].numpy() for per_layer in norms]).astype(np.float32)
                if name == "c" and k == 1:
                    c = values
                else:
                    states[name] = values
        return ProbeResult(float(loss.numpy()), h, c, x_norm.numpy().astype(np.float32),
                           why, states or None)


def probe(model, task: Task, x: np.ndarray, y: np.ndarray, path: ExecutionPath | None = None) -> ProbeResult:
    """One-shot probe of ``model`` on the batch (x, y); see ``Prober``."""
    return Prober(model, task, path)(x, y)


def _args_text(args: dict | None) -> str:
    return "".join(f" {k}={v}" for k, v in sorted((args or {}).items()))


def _batch_for(cfg, batch: dict | None) -> tuple[np.ndarray, np.ndarray]:
    """The seeded probe batch of ``cfg``, or a user's batch checked against it."""
    from seqvg.tasks import probe_batch

    if batch is None:
        return probe_batch(cfg)
    if batch["task"] != cfg.task or batch["length"] != cfg.length or batch.get("task_args", {}) != cfg.task_args:
        raise ValueError(
            f"--data {batch.get('path', '')}".rstrip() + f" holds {batch['task']} T={batch['length']}"
            f"{_args_text(batch.get('task_args'))}, the model is {cfg.task} T={cfg.length}{_args_text(cfg.task_args)}"
        )
    return batch["x"], batch["y"]


def probe_untrained(cfg, batch: dict | None = None):
    """Probes the untrained model of a resolved config.

    Returns:
        (ProbeResult, cfg).
    """
    from seqvg.customcell import check_cell
    from seqvg.execpath import resolve
    from seqvg.memory import check_memory
    from seqvg.models import build_model
    from seqvg.tasks import get_task

    check_memory(cfg, training=False, probe_n=None if batch is None else len(batch["x"]))
    if batch is None:
        from seqvg.config import check_split_sizes

        check_split_sizes(cfg, training=False)
    from seqvg.customcell import unbind

    unbind(cfg.cell)  # the cell file as it is now, not a run's copy bound earlier in this process
    check_cell(cfg)
    path = resolve(cfg, repeated=False)
    model = build_model(cfg, path)
    return probe(model, get_task(cfg.task, cfg.task_args), *_batch_for(cfg, batch), path), cfg


def probe_run(run_dir, batch: dict | None = None):
    """Probes the final model saved in a run directory.

    Raises:
        RunDirError: the directory has no readable config or model.
    """
    from pathlib import Path

    import keras

    from seqvg import rundir
    from seqvg.tasks import get_task

    run_dir = Path(run_dir)
    if not (run_dir / rundir.CONFIG).exists() and (run_dir / rundir.PROBE).is_file():
        raise rundir.RunDirError(f"{run_dir}: a probe-only run: its probe at init is {run_dir / rundir.PROBE}; "
                                 "seqvg probe RUN probes a trained run's final model")
    cfg = rundir.read_config(run_dir, resolve=False)
    from seqvg.memory import check_memory

    # A run is probed with its own options; only --data can make this smaller.
    check_memory(cfg.resolved(), training=False, probe_n=None if batch is None else len(batch["x"]),
                 names={"data": "--data"})
    path = run_dir / rundir.MODEL
    if not path.exists():
        status = rundir.read_json(run_dir / rundir.SUMMARY).get("status") if (run_dir / rundir.SUMMARY).exists() else None
        if status == "diverged":
            # Finished, but its weights went NaN/Inf: it saves no final model (diagnose reads its probes).
            raise rundir.RunDirError(f"{path}: missing: the run diverged (its loss became NaN/Inf), so it kept no "
                                     f"final model; its probes up to then are in {run_dir / rundir.PROBES} "
                                     f"(seqvg diagnose {shlex.quote(str(run_dir))})")
        raise rundir.RunDirError(f"{path}: missing (run status: {status}); only a run that completed has a final "
                                 "model")
    from seqvg.config import is_custom_cell
    from seqvg.models import register_custom_objects

    register_custom_objects()
    custom = None
    if is_custom_cell(cfg.cell):
        import sys

        from seqvg.customcell import bind_run, custom_objects

        bind_run(cfg, run_dir, warn=lambda m: print(m, file=sys.stderr))  # a file cell: from the run's copy
        custom = custom_objects(cfg.cell)
    try:
        model = keras.saving.load_model(path, compile=False, custom_objects=custom)
    except Exception as e:  # keras raises many types for a damaged archive
        raise rundir.RunDirError(f"{path}: corrupt ({type(e).__name__})") from None
    if custom is not None:
        from seqvg.customcell import settle_name
        from seqvg.models import recurrent_layers

        for layer in recurrent_layers(model):
            settle_name(layer.cell)
    return probe(model, get_task(cfg.task, cfg.task_args), *_batch_for(cfg, batch)), cfg


def format_probe(result: ProbeResult, cfg) -> str:
    """Human-readable tables: summary per curve, then sampled timesteps."""
    curves = [(f"h layer {i + 1}", g) for i, g in enumerate(result.h)]
    if result.c is not None:
        curves += [(f"c layer {i + 1}", g) for i, g in enumerate(result.c)]
    for name, values in (result.states or {}).items():
        curves += [(f"{name} layer {i + 1}", g) for i, g in enumerate(values)]
    curves.append(("x (input)", result.x))
    length = result.x.shape[0]
    lines = [
        f"{cfg.cell} on {cfg.task} T={cfg.length} ({length} steps), units {cfg.units}, layers {cfg.layers}; "
        f"probe loss {result.loss:.6g}",
        "",
        f"{'curve':<11} {'decay/100':>10} {'horizon':>8} {'g0/gT':>10} {'underflow':>9} {'g[0]':>10} {'g[T-1]':>10}",
    ]
    for name, g in curves:
        s = decay_summary(g)
        lines.append(
            f"{name:<11} {format_summary(s['rate_per_100']):>10} {format_summary(s['horizon']):>8} "
            f"{format_summary(s['ratio']):>10} {s['underflow']:>9} {g[0]:>10.3g} {g[-1]:>10.3g}"
        )
    if not np.isfinite(result.loss):
        # Every norm is then NaN too: say why the table is empty.
        lines += ["", "the model's loss on the probe batch is not finite (NaN/Inf: its activations overflow, as "
                      "relu's do with a large --recurrent-gain), so no gradient can be measured"]
    lines += ["", "decay/100: decades per 100 steps back in time (negative = vanishing)", ""]
    ts = sorted(set(np.linspace(0, length - 1, 11).round().astype(int).tolist()))
    lines.append(f"{'t':>6} " + " ".join(f"{name:>11}" for name, _ in curves))
    for t in ts:
        lines.append(f"{t:>6} " + " ".join(f"{g[t]:>11.3e}" for _, g in curves))
    return "\n".join(lines)
