"""Gate statistics and step-Jacobian norms of a model on a batch (see ``seqvg.why``).

    from seqvg.probe import Prober
    why = Prober(model, task)(x, y).why      # this module's numbers

The TensorFlow half of ``seqvg.why``: ``why`` holds the definitions and the
numpy summaries that reports read; this module measures them, from what the
gradient probe's forward pass hands it (``Prober._measure``): each recurrent
layer's gate values at every step, and its input and entering state at the
Jacobian timesteps. No second pass over the sequence.

It is long because each kind of layer (LSTM, GRU, vanilla, custom cell) hands over its gates
and Jacobian inputs in its own way; the definitions and summaries are ``seqvg.why``'s.
"""

from __future__ import annotations

import numpy as np

from seqvg.cellstep import call_cell, fast_kind
from seqvg.why import GATES, KRYLOV_DIM, jacobian_timesteps


def recurrent_sigma_max(layer):
    """sigma_max of the recurrent matrix W of a vanilla layer, in float64 (a tensor).

    The square root of the largest eigenvalue of W^T W (symmetric, so
    ``eigvalsh``): numpy's 2-norm to rounding (tested), without a full SVD,
    and in TensorFlow's graph: numpy's SVD, on its BLAS's own threads beside
    TensorFlow's, took up to 90 ms at 128 units on a loaded 2-core machine,
    several times a vanilla RNN's training step.
    """
    import tensorflow as tf

    w = tf.cast(layer.cell.recurrent_kernel, tf.float64)
    return tf.sqrt(tf.maximum(tf.reduce_max(tf.linalg.eigvalsh(tf.matmul(w, w, transpose_a=True))), 0.0))


#: Relative size below which a Lanczos residual is rounding error (float32).
BREAKDOWN = 1e-4


def lanczos_sigma_max(jvp, vjp, v0, dim: int):
    """Per row, sigma_max of a linear map J from its products, by Lanczos on J^T J.

    ``sigma_from_tridiagonal(lanczos_tridiagonal(...))``; see there.
    """
    return sigma_from_tridiagonal(lanczos_tridiagonal(jvp, vjp, v0, dim))


def sigma_from_tridiagonal(tridiagonal):
    """(rows,) float32 sqrt of the largest eigenvalue of each (dim x dim)
    Lanczos matrix of J^T J (``lanczos_tridiagonal``): the estimate of ||J||_2."""
    import tensorflow as tf

    top = tf.reduce_max(tf.linalg.eigvalsh(tridiagonal), axis=1)
    return tf.cast(tf.sqrt(tf.maximum(top, 0.0)), tf.float32)


def lanczos_tridiagonal(jvp, vjp, v0, dim: int):
    """Per row, the Lanczos matrix of J^T J whose top eigenvalue estimates ||J||_2^2.

    ``dim`` Lanczos steps on A = J^T J from q_0 = v0/|v0| (one product
    A q = J^T (J q) each) give a (dim x dim) tridiagonal matrix whose largest
    eigenvalue approaches A's largest from below (Rayleigh-Ritz on the Krylov
    space; in floating point within a few rounding errors of the spectrum,
    Paige 1980). Unlike power iteration's, the estimate converges fast when
    the top singular values lie close together; with ``dim`` equal to the
    width of J it is exact.

    Args:
        jvp: v -> J v for a (rows, n) batch of vectors, each row its own J.
        vjp: u -> J^T u, likewise.
        v0: (rows, n) start vectors.
        dim: Krylov dimension, at most n.

    Returns:
        (rows, dim, dim) float64 symmetric tridiagonal matrices.
    """
    import tensorflow as tf

    def dot(a, b):
        return tf.reduce_sum(a * b, axis=1, keepdims=True)

    q = start_direction(v0)
    q_prev = tf.zeros_like(q)
    beta = tf.zeros_like(q[:, :1])
    alphas, betas = [], []
    for j in range(dim):
        w = vjp(jvp(q))
        alpha = dot(q, w)
        alphas.append(alpha)
        if j == dim - 1:
            break
        r = w - alpha * q - beta * q_prev
        norm = tf.norm(r, axis=1, keepdims=True)
        # A residual at rounding level means the Krylov space is invariant
        # (its Ritz values are exact): a normalised rounding error would be no
        # direction at all (and its norm, from squares that flush to zero, not
        # 1), so the row's recurrence stops there.
        alive = norm > BREAKDOWN * tf.norm(w, axis=1, keepdims=True)
        beta = tf.where(alive, norm, 0.0)
        betas.append(beta)
        q_prev, q = q, tf.where(alive, tf.math.divide_no_nan(r, norm), 0.0)
    diagonal = tf.cast(tf.concat(alphas, axis=1), tf.float64)
    if not betas:
        return tf.linalg.diag(diagonal)
    off = tf.cast(tf.concat(betas, axis=1), tf.float64)
    pad = tf.zeros_like(off[:, :1])
    # The three bands in one op (rows above the diagonal first; the
    # superdiagonal padded on the left, the subdiagonal on the right, as
    # MatrixDiagV3 aligns them): where two diagonal matrices, a transpose and
    # two sums built the same numbers.
    bands = tf.stack([tf.concat([pad, off], axis=1), diagonal, tf.concat([off, pad], axis=1)], axis=1)
    return tf.linalg.diag(bands, k=(-1, 1), num_rows=dim, num_cols=dim)


def start_direction(v0):
    """Lanczos's q_0: each row of ``v0`` scaled to unit length (a zero row stays zero)."""
    import tensorflow as tf

    return tf.math.divide_no_nan(v0, tf.norm(v0, axis=1, keepdims=True))


#: How far J q may stray from (J 1) * q, relative to the row's largest
#: entry of J q, for ``diagonal_sigma`` to take J as diagonal: a few float32
#: rounding errors (eps 1.2e-7), where one off-diagonal entry of J of that
#: relative size would already show.
DIAGONAL_TOLERANCE = 1e-6


def diagonal_sigma(jvp, q, jq):
    """||J||_2 per row where every row's J is diagonal, from one more product.

    A diagonal J is its own diagonal d = J 1, and ||J||_2 = max |d|. Whether
    J is diagonal is measured, not assumed: J q (``jq``, for the rows'
    random unit vectors ``q``) equals d * q entry by entry for a diagonal J,
    and for a J with any off-diagonal entry only by a coincidence of
    measure zero. Cells whose recurrence is elementwise (minGRU, minLSTM,
    IndRNN) pass, and their norm then costs one product instead of
    ``dim`` Lanczos steps of two; every other cell fails and keeps Lanczos.

    Args:
        jvp: v -> J v for a (rows, n) batch of vectors, each row its own J.
        q: (rows, n) start directions (``start_direction``).
        jq: ``jvp(q)``.

    Returns:
        (diagonal, sigma): a scalar bool, whether every row's J passed, and
        (rows,) float32 max |J 1| per row (||J||_2 where ``diagonal``).
    """
    import tensorflow as tf

    d = jvp(tf.ones_like(q))
    stray = tf.reduce_max(tf.abs(jq - d * q), axis=1)
    scale = tf.reduce_max(tf.abs(jq), axis=1)
    diagonal = tf.reduce_all(stray <= DIAGONAL_TOLERANCE * scale)
    return diagonal, tf.reduce_max(tf.abs(d), axis=1)


def _derivative(fn, a):
    """fn'(a) of an elementwise ``fn``: d sum(fn(a)) / da."""
    import tensorflow as tf

    with tf.GradientTape() as tape:
        tape.watch(a)
        out = fn(a)
    return tape.gradient(out, a)


def step_coefficients(kind: str, cell, x, states) -> list:
    """The elementwise factors of one step's Jacobian products, (rows, u) each.

    One step of a Keras cell (``cellstep.step``'s maths) at (x, states),
    linearised in the concatenated states: each product J v or J^T u is one
    matmul with the recurrent matrix R and these factors (the activations'
    derivatives at the point, any elementwise activation):

    - rnn ``[d]``: J v = d (v R);
    - gru ``[cz, z, cr, ch]`` (Keras's ``reset_after=True``): J v = cz E_z
      + z v + cr E_r + ch E_h with E = v R;
    - lstm ``[f, af, ai, ag, ao, bc]``, state [h; c]: e = f v_c + ai E_i
      + af E_f + ag E_g with E = v_h R, J v = [ao E_o + bc e; e].

    ``jacobian_products`` reads them; seqvg's ``SeqvgStepSigma`` op
    (``kernels.step_sigma``) computes the same factors in C++.
    """
    import tensorflow as tf

    h = states[0]
    rec = cell.recurrent_kernel
    xp = tf.matmul(x, cell.kernel)
    if kind == "rnn":
        a = xp + tf.matmul(h, rec) + (cell.bias if cell.use_bias else 0.0)
        return [_derivative(cell.activation, a)]
    if kind == "lstm":
        c = states[1]
        z = xp + tf.matmul(h, rec) + (cell.bias if cell.use_bias else 0.0)
        z_i, z_f, z_g, z_o = tf.split(z, 4, axis=1)
        sig, act = cell.recurrent_activation, cell.activation
        i, f, g, o = sig(z_i), sig(z_f), act(z_g), sig(z_o)
        tc = act(f * c + i * g)
        return [f, c * _derivative(sig, z_f), g * _derivative(sig, z_i), i * _derivative(act, z_g),
                tc * _derivative(sig, z_o), o * _derivative(act, f * c + i * g)]
    # GRU, Keras's reset_after=True: the recurrent bias inside r's product.
    inner = tf.matmul(h, rec)
    if cell.use_bias:
        xp = xp + cell.bias[0]
        inner = inner + cell.bias[1]
    x_z, x_r, x_h = tf.split(xp, 3, axis=1)
    r_z, r_r, r_h = tf.split(inner, 3, axis=1)
    sig = cell.recurrent_activation
    z, r = sig(x_z + r_z), sig(x_r + r_r)
    a = x_h + r * r_h
    keep = (1 - z) * _derivative(cell.activation, a)
    return [_derivative(sig, x_z + r_z) * (h - cell.activation(a)), z, keep * _derivative(sig, x_r + r_r) * r_h,
            keep * r]


def jacobian_products(kind: str, rec, coefficients: list):
    """(J v, J^T u) from ``step_coefficients``; each row its own Jacobian."""
    import tensorflow as tf

    if kind == "rnn":
        (d,) = coefficients
        return (lambda v: d * tf.matmul(v, rec)), (lambda u: tf.matmul(d * u, rec, transpose_b=True))
    if kind == "lstm":
        f, af, ai, ag, ao, bc = coefficients
        units = f.shape[-1]

        def jvp(v):
            e_i, e_f, e_g, e_o = tf.split(tf.matmul(v[:, :units], rec), 4, axis=1)
            e_c = f * v[:, units:] + af * e_f + ai * e_i + ag * e_g
            return tf.concat([ao * e_o + bc * e_c, e_c], axis=1)

        def vjp(w):
            w_h = w[:, :units]
            k = w[:, units:] + bc * w_h
            dz = tf.concat([k * ai, k * af, k * ag, w_h * ao], axis=1)
            return tf.concat([tf.matmul(dz, rec, transpose_b=True), k * f], axis=1)

        return jvp, vjp
    cz, z, cr, ch = coefficients

    def jvp(v):
        e_z, e_r, e_h = tf.split(tf.matmul(v, rec), 3, axis=1)
        return cz * e_z + z * v + cr * e_r + ch * e_h

    def vjp(w):
        return tf.matmul(tf.concat([w * cz, w * cr, w * ch], axis=1), rec, transpose_b=True) + w * z

    return jvp, vjp


def linearised_step(kind: str, cell, x, states):
    """(J v, J^T u) of one step of a Keras cell at (x, states), w.r.t. the
    concatenated states; each row its own Jacobian (``step_coefficients``)."""
    return jacobian_products(kind, cell.recurrent_kernel, step_coefficients(kind, cell, x, states))


class StepStats:
    """Gate statistics and step-Jacobian norms of a model's recurrent layers.

    Built by ``seqvg.probe.Prober``; one traced function per model (the
    Jacobian norms, and the gate statistics of layers on seqvg's ops),
    reused at every probe of a training run; a loop's gate statistics are
    computed on the host from the probe's forward values meanwhile.

    Args:
        rnns: the model's ``keras.layers.RNN`` layers, bottom first.
        jit_compile: compile the Jacobian products with XLA (the probe of a
            run on an XLA path, ``ExecutionPath.xla``). The small
            eigenproblems that end each estimate stay outside: XLA's
            eigensolver costs more than all the products.
    """

    def __init__(self, rnns, jit_compile: bool = False, sigma_op=None):
        import tensorflow as tf

        self.rnns = rnns
        self.kinds = [fast_kind(rnn.cell) for rnn in rnns]
        # seqvg's SeqvgStepSigma for a built-in cell's layer where the caller
        # runs seqvg's ops anyway (so no other probe compiles them), and
        # SeqvgGateStats for its gates where they come in the sequence op's
        # cache; not under XLA, which has no kernel for them.
        self.sigma_op = [bool(use) and kind is not None and not jit_compile
                         for use, kind in zip(sigma_op or [False] * len(rnns), self.kinds)]
        self._v0: dict = {}
        #: The Jacobian products of ``_measure`` (Lanczos matrices, or the
        #: op's estimates; phi', sigma_max(W)), under XLA where the run's path
        #: says so; the small eigenproblems that end each estimate
        #: (``_sigmas``) stay outside.
        self.products = tf.function(self._measure, autograph=False, jit_compile=jit_compile)
        self._fn = tf.function(lambda inputs, v0s: self._sigmas(self.products(inputs, v0s)), autograph=False)
        self._finish = tf.function(self._sigmas, autograph=False)

    @staticmethod
    def _sigmas(products):
        """``_measure``'s per-layer results with each Lanczos matrix "tri"
        replaced by its estimate "sigma" of ||J_t||_2 per row (for a diagonal
        J, its exact norm, ``diagonal_sigma``)."""
        import tensorflow as tf

        def sigma(got):
            if "diagonal" not in got:
                return sigma_from_tridiagonal(got["tri"])
            return tf.cond(got["diagonal"], lambda: got["diagonal_sigma"], lambda: sigma_from_tridiagonal(got["tri"]))

        done = ("tri", "diagonal", "diagonal_sigma")
        return [{k: v for k, v in got.items() if k not in done} | {"sigma": sigma(got)}
                if "tri" in got else got for got in products]

    def _sigma(self, layer, kind, x_j, s_j, v0, op: bool) -> dict:
        """{"tri": (rows, dim, dim) Lanczos matrices of J_t^T J_t}, one per
        row of the stacked (J*B) points (``lanczos_tridiagonal``), or with
        ``op`` {"sigma": (rows,)} their estimates from seqvg's op, the same
        recurrence without TensorFlow's per-op cost."""
        import tensorflow as tf

        cell = layer.cell
        sizes = [int(s) for s in tf.nest.flatten(cell.state_size)]
        dim = min(KRYLOV_DIM, sum(sizes))

        if op:
            from seqvg import kernels

            return {"sigma": kernels.step_sigma(kind, cell, x_j, s_j, v0, dim)}
        if kind is not None:
            jvp, vjp = linearised_step(kind, cell, x_j, tf.split(s_j, sizes, axis=1))
            return {"tri": lanczos_tridiagonal(jvp, vjp, v0, dim)}

        def f(s):
            _, new = call_cell(cell, x_j, tf.split(s, sizes, axis=1))  # any cell, by its own call
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

        # A cell whose step Jacobian is diagonal needs no Lanczos: its norm is
        # its largest entry (``diagonal_sigma``). The branch not taken costs
        # nothing (under XLA too). Lanczos computes the test's product J q
        # again in its own branch: handed in from outside, it came out of
        # TensorFlow's graph optimiser rounded differently, and every other
        # cell's estimates moved in their last bit.
        q = start_direction(v0)
        diagonal, sigma = diagonal_sigma(jvp, q, jvp(q))
        rows = tf.shape(v0)[0]
        tri = tf.cond(diagonal, lambda: tf.zeros([rows, dim, dim], tf.float64),
                      lambda: lanczos_tridiagonal(jvp, vjp, v0, dim))
        return {"tri": tri, "diagonal": diagonal, "diagonal_sigma": sigma}

    def _measure(self, inputs: list[dict], v0s: list) -> list[dict]:
        """Per layer {"tri": (J*B, dim, dim) Lanczos matrices of J_t^T J_t} (or
        {"sigma": (J*B,)}, see ``_sigma``), for a vanilla layer
        "sigma_w" (``recurrent_sigma_max``), for a loop's vanilla layer
        "dphi": phi'(a_t) (T, batch, units) and, where the layer's input has
        the sequence op's ``cache``, "gates": its gates' statistics
        (``kernels.gate_stats``, beside the Jacobian products in one call)."""
        import tensorflow as tf

        out = []
        for layer, kind, layer_in, v0, op in zip(self.rnns, self.kinds, inputs, v0s, self.sigma_op):
            got = self._sigma(layer, kind, layer_in["x"], layer_in["s"], v0, op)
            if "cache" in layer_in:
                from seqvg import kernels

                cache = layer_in["cache"]
                got["gates"] = kernels.gate_stats(kind, cache["blocks"], cache["values"], layer.cell.units)
            if "a" in layer_in:
                # The loop kept a_t; phi'(a) for all t at once, for any
                # elementwise phi: d sum(phi(a)) / da.
                a = layer_in["a"]
                with tf.GradientTape() as g:
                    g.watch(a)
                    phi = layer.cell.activation(a)
                got["dphi"] = g.gradient(phi, a)
            if isinstance(layer.cell, _simple_rnn_cell()):
                got["sigma_w"] = recurrent_sigma_max(layer)
            out.append(got)
        return out

    def start_vectors(self, rows: int) -> list:
        """Lanczos's fixed start vectors for ``rows`` = J*B stacked points, one
        (rows, state width) float32 tensor per layer: the same numbers at every
        probe, made once per shape (converting numpy arrays at each call cost a
        probe a few tenths of a millisecond)."""
        import tensorflow as tf

        shapes = tuple((rows, sum(int(n) for n in tf.nest.flatten(layer.cell.state_size))) for layer in self.rnns)
        if shapes not in self._v0:
            rng = np.random.default_rng(0)
            self._v0[shapes] = [tf.constant(rng.standard_normal(shape).astype(np.float32)) for shape in shapes]
        return self._v0[shapes]

    def __call__(self, inputs: list[dict], steps: int) -> dict:
        """Statistics of every recurrent layer from its ``Prober`` values.

        Args:
            steps: the sequence length T.
            inputs: per layer, ``x`` and ``s``: the layer's input and
                entering state (all states concatenated) at
                ``jacobian_timesteps(T)``, batch rows stacked per timestep,
                (J*B, width); and the gate values of every step: ``gates``
                {name: (T, ...) values} (for ``dphi`` the pre-activation
                a_t) from a loop, or ``cache`` {"blocks", "values"}, the
                sequence op's cache that holds them (read in place by
                ``kernels.gate_views``).

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
        pending, tf_inputs = self._gates(inputs)
        rows = int(inputs[0]["x"].shape[0])
        return self._summarise(pending, self._fn(tf_inputs, self.start_vectors(rows)), steps)

    def finish(self, inputs: list[dict], products, steps: int) -> dict:
        """``__call__``'s result where ``products`` (what ``self.products``
        returns for ``tf_inputs(inputs)``) were computed inside the probe's
        own pass (``Prober`` on an XLA path)."""
        pending, _ = self._gates(inputs)
        return self._summarise(pending, self._finish(products), steps)

    def summarise(self, results, steps: int) -> dict:
        """``__call__``'s result from ``_sigmas(_measure(...))`` computed inside
        the probe's own pass where every layer is on seqvg's ops (their gates
        summarised by ``kernels.gate_stats``: nothing left for numpy)."""
        return self._summarise([{} for _ in self.rnns], results, steps)

    @staticmethod
    def tf_inputs(inputs: list[dict]) -> list[dict]:
        """What ``products`` reads of the ``Prober`` values: ``x``, ``s`` and a loop's a_t as ``a``."""
        return [{k: layer_in[k] for k in ("x", "s")}
                | ({"a": layer_in["gates"]["dphi"]} if "dphi" in layer_in.get("gates", {}) else {})
                for layer_in in inputs]

    def _gates(self, inputs: list[dict]) -> tuple[list[dict], list[dict]]:
        """Starts the gate statistics of the layers whose gates TensorFlow
        does not summarise (numpy, on the pool), so that they run while it
        computes the Jacobian norms; returns them pending, per layer {name:
        result()}, and what ``products`` reads: ``tf_inputs(inputs)`` and,
        for a layer on seqvg's ops, its sequence op's ``cache``, whose gates
        ``kernels.gate_stats`` summarises in place beside the products."""
        from seqvg import kernels
        from seqvg.why import gate_stats_async

        pending: list[dict] = []
        tf_inputs = self.tf_inputs(inputs)
        for layer, kind, layer_in, tf_in, op in zip(self.rnns, self.kinds, inputs, tf_inputs, self.sigma_op):
            if "cache" in layer_in and op:
                tf_in["cache"] = layer_in["cache"]
                pending.append({})
                continue
            if "cache" in layer_in:
                cache = layer_in["cache"]
                views = kernels.gate_views(kind, int(cache["blocks"]), host_view(cache["values"]), layer.cell.units)
            else:
                views = {name: (host_view(v), None) for name, v in layer_in["gates"].items() if name != "dphi"}
            pending.append({name: gate_stats_async(v, transform) for name, (v, transform) in views.items()})
        return pending, tf_inputs

    def _summarise(self, pending: list[dict], results, steps: int) -> dict:
        """The numpy half: per-step gate statistics (phi'(a_t) of a loop's
        vanilla layer from ``results``), the mean sigma per Jacobian point."""
        from seqvg.why import gate_stats_async

        jac_t = jacobian_timesteps(steps)
        for stats, got, kind in zip(pending, results, self.kinds):
            if "dphi" in got:
                stats["dphi"] = gate_stats_async(host_view(got["dphi"]))
            if "gates" in got:
                summarised = got["gates"].numpy()
                stats.update({name: (lambda a=summarised[k]: a) for k, name in enumerate(GATES[kind])})
        out: dict = {"gates": {}, "jac_t": jac_t}
        names = {name for kind in self.kinds for name in GATES.get(kind, ())}
        for name in sorted(names):
            out["gates"][name] = np.stack([
                stats[name]() if name in stats else np.full((4, steps), np.nan, np.float32) for stats in pending])
        # Rows are the J timesteps' batches one after the other.
        out["jac_sigma"] = np.stack([got["sigma"].numpy().reshape(len(jac_t), -1).mean(axis=1)
                                     for got in results]).astype(np.float32)
        if all(isinstance(rnn.cell, _simple_rnn_cell()) for rnn in self.rnns):
            out["sigma_w"] = np.asarray([float(got["sigma_w"]) for got in results], np.float32)
        return out


class _DLPack:
    """A tensor as numpy's ``from_dlpack`` takes it (a CPU tensor)."""

    def __init__(self, tensor):
        self.tensor = tensor

    def __dlpack__(self, **_):
        import tensorflow as tf

        return tf.experimental.dlpack.to_dlpack(self.tensor)

    def __dlpack_device__(self):
        return (1, 0)  # DLPack's kDLCPU


def host_view(tensor) -> np.ndarray:
    """A read-only numpy view of a CPU tensor's own buffer.

    ``Tensor.numpy()`` copies (TensorFlow 2.21): for a sequence op's cache at
    T=1000 that copy was 164 MiB, more than the rest of a probe adds. Where
    DLPack cannot share the buffer (another device), a copy.
    """
    try:
        return np.from_dlpack(_DLPack(tensor))
    except (BufferError, RuntimeError, TypeError, ValueError):
        return tensor.numpy()


def _simple_rnn_cell():
    import keras

    return keras.layers.SimpleRNNCell
