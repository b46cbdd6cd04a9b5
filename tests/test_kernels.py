"""seqvg's C++ ops against the same maths in TensorFlow ops.

Oracle: Keras's own LSTM, GRU and SimpleRNN loops; the whole-sequence ops and
their registered gradients agree to 1e-5 relative, split over 1, 2 and 4
threads; the step-Jacobian norm op against numpy's SVD of explicit Jacobians.
The same tests again on the ops built for AVX2 (the last test), whose own
code an AVX-512 machine never runs otherwise.
Agreement of seqvg's accelerated models with Keras's is in test_fastlstm.py.
"""

import functools
import shutil

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from seqvg import kernels  # noqa: E402

B = 5


@pytest.fixture
def ops():
    if kernels.op_module() is None:
        if shutil.which("g++") or shutil.which("c++"):
            pytest.fail(f"a compiler is here but {kernels.kernel_status()}")
        pytest.skip(kernels.kernel_status())
    return kernels.op_module()


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(a)))


SEQ_T, SEQ_D, SEQ_U = 7, 3, 8


def _lstm_outputs_and_grads(forward, x, h0, c0, weights, w_y, reads_sequence):
    @tf.function
    def f():
        with tf.GradientTape() as tape:
            tape.watch([x, h0, c0])
            y, h, c = forward()
            loss = tf.reduce_sum(h * w_y[:, -1]) + tf.reduce_sum(tf.square(c))
            if reads_sequence:
                loss += tf.reduce_sum(y * w_y)
        return [y, h, c] + tape.gradient(loss, [x, h0, c0] + weights)

    return [v.numpy() for v in f()]


@functools.cache
def _keras_lstm(return_sequences, reads_sequence):
    """The inputs, weights and Keras LSTM's outputs and gradients: computed
    once, the oracle for every thread count of the op."""
    import keras

    rng = np.random.default_rng(7)
    x = tf.constant(rng.normal(size=(B, SEQ_T, SEQ_D)).astype(np.float32))
    h0, c0 = (tf.constant(rng.normal(size=(B, SEQ_U)).astype(np.float32)) for _ in range(2))
    keras.utils.set_random_seed(3)
    layer = keras.layers.LSTM(SEQ_U, return_sequences=return_sequences, return_state=True)
    layer(x)
    layer.cell.bias.assign(rng.normal(size=(4 * SEQ_U,)).astype(np.float32))
    weights = [layer.cell.kernel, layer.cell.recurrent_kernel, layer.cell.bias]
    w_y = tf.constant(rng.normal(size=(B, SEQ_T, SEQ_U)).astype(np.float32))
    want = _lstm_outputs_and_grads(lambda: layer(x, initial_state=[h0, c0]), x, h0, c0, weights, w_y,
                                   reads_sequence)
    return (x, h0, c0, [w.numpy() for w in weights], w_y), want


@pytest.mark.parametrize("parts", [1, 2, 4, 3])
@pytest.mark.parametrize("return_sequences,reads_sequence", [(False, False), (True, True), (True, False)])
def test_sequence_op_matches_keras_lstm(ops, parts, return_sequences, reads_sequence):
    """Outputs and every gradient (inputs, initial states, weights) against
    Keras's loop, on as many threads as the op picks: the most, up to
    ``parts`` and the pool's size, that divide its blocks (3 of 4: 2).
    Bit-identity across thread counts is in test_determinism.py."""
    (x, h0, c0, values, w_y), want = _keras_lstm(return_sequences, reads_sequence)
    weights = [tf.Variable(v) for v in values]

    def seq():
        y, h, c = kernels.lstm_seq(x, h0, c0, *weights, return_sequences=return_sequences, max_threads=parts)
        return (y if return_sequences else h), h, c

    got = _lstm_outputs_and_grads(seq, x, h0, c0, weights, w_y, reads_sequence)
    assert len(want) == len(got) == 9
    for a, b in zip(want, got):
        assert a.shape == b.shape
        assert _rel(a, b) < 1e-5
    # The layout's blocks are fixed by the unit count (8 units: 4 blocks of
    # two), whatever the thread count.
    assert int(ops.seqvg_lstm_seq(x, h0, c0, *weights, tf.zeros([0], tf.float64), max_threads=parts)[3]) == 4


def _outputs_and_grads(forward, x, h0, weights, w_y, return_sequences):
    """A one-state cell's outputs and the gradients of a loss on both with
    respect to the inputs, h0 and the weights."""
    @tf.function
    def f():
        with tf.GradientTape() as tape:
            tape.watch([x, h0])
            y, h = forward()
            loss = tf.reduce_sum(tf.square(h)) + tf.reduce_sum(y * (w_y if return_sequences else w_y[:, -1]))
        return [y, h] + tape.gradient(loss, [x, h0] + weights)

    return [v.numpy() for v in f()]


#: The one-state cells: Keras's layer, its bias's shape, the seeds of the
#: inputs and of the layer's weights.
_ONE_STATE = {
    # Distinct input and recurrent biases: the op sums z's and r's, keeps the candidate's apart.
    "gru": ("GRU", (2, 3 * SEQ_U), 11, 5),
    "rnn": ("SimpleRNN", (SEQ_U,), 13, 9),
}


@functools.cache
def _keras_one_state(cell, return_sequences):
    """As _keras_lstm, for Keras's GRU (reset_after=True) or SimpleRNN (tanh)."""
    import keras

    layer_name, bias_shape, data_seed, weight_seed = _ONE_STATE[cell]
    rng = np.random.default_rng(data_seed)
    x = tf.constant(rng.normal(size=(B, SEQ_T, SEQ_D)).astype(np.float32))
    h0 = tf.constant(rng.normal(size=(B, SEQ_U)).astype(np.float32))
    keras.utils.set_random_seed(weight_seed)
    layer = getattr(keras.layers, layer_name)(SEQ_U, return_sequences=return_sequences, return_state=True)
    layer(x)
    layer.cell.bias.assign(rng.normal(size=bias_shape).astype(np.float32))
    weights = [layer.cell.kernel, layer.cell.recurrent_kernel, layer.cell.bias]
    w_y = tf.constant(rng.normal(size=(B, SEQ_T, SEQ_U)).astype(np.float32))
    want = _outputs_and_grads(lambda: layer(x, initial_state=h0), x, h0, weights, w_y, return_sequences)
    return (x, h0, [w.numpy() for w in weights], w_y), want


@pytest.mark.parametrize("parts", [1, 2, 4])
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("cell", ["gru", "rnn"])
def test_one_state_sequence_op_matches_keras(ops, cell, parts, return_sequences):
    """Keras's GRU (reset_after=True) and SimpleRNN against seqvg's GRU and
    RNN sequence ops (the RNN's is the probe's): outputs and every gradient,
    on 1, 2 and 4 threads (8 units: 4 blocks), and the same bits on each."""
    (x, h0, values, w_y), want = _keras_one_state(cell, return_sequences)
    weights = [tf.Variable(v) for v in values]
    op = {"gru": kernels.gru_seq, "rnn": kernels.rnn_seq}[cell]

    def seq():
        y, h = op(x, h0, *weights, return_sequences=return_sequences, max_threads=parts)
        return (y if return_sequences else h), h

    got = _outputs_and_grads(seq, x, h0, weights, w_y, return_sequences)
    assert len(want) == len(got) == 7
    for a, b in zip(want, got):
        assert a.shape == b.shape
        assert _rel(a, b) < 1e-5
    one = op(x, h0, *weights, return_sequences=True, max_threads=1)[0].numpy()
    assert np.array_equal(one, op(x, h0, *weights, return_sequences=True, max_threads=parts)[0].numpy())


def _per_step_reference(cell, x, h0, c0, weights, w_y):
    """The total dL/dh_t (and dL/dc_t) of every step, as zero perturbations
    added to the states of a per-step loop of TF ops (Keras's maths)."""
    kernel, recurrent, bias = weights
    steps = x.shape[1]
    eps = [tf.zeros_like(h0) for _ in range(2 * steps)]
    with tf.GradientTape() as tape:
        tape.watch(eps)
        h, c, ys = h0, c0, []
        for t in range(steps):
            if cell == "lstm":
                i, f, g, o = tf.split(x[:, t] @ kernel + h @ recurrent + bias, 4, axis=1)
                c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g) + eps[steps + t]
                h = tf.sigmoid(o) * tf.tanh(c)
            elif cell == "rnn":
                h = tf.tanh(x[:, t] @ kernel + h @ recurrent + bias)
            else:
                xz, xr, xh = tf.split(x[:, t] @ kernel + bias[0], 3, axis=1)
                rz, rr, rh = tf.split(h @ recurrent + bias[1], 3, axis=1)
                z, r = tf.sigmoid(xz + rz), tf.sigmoid(xr + rr)
                h = z * h + (1 - z) * tf.tanh(xh + r * rh)
            h = h + eps[t]
            ys.append(h)
        loss = tf.reduce_sum(tf.stack(ys, axis=1) * w_y) + tf.reduce_sum(tf.square(h))
    grads = tape.gradient(loss, eps, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    sq = [float(np.sum(np.square(g.numpy().astype(np.float64)))) for g in grads]
    return np.array([sq[:steps], sq[steps:]]).T


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_sequence_op_taps_are_the_probes_squared_norms(ops, cell):
    """The taps' gradient: per step the squared norms of the total dL/dh_t
    (and dL/dc_t), against zero perturbations in a per-step loop; and with
    weight_grad=False the input gradient is unchanged, the weights' zero."""
    rng = np.random.default_rng(2)
    g = {"lstm": 4, "gru": 3, "rnn": 1}[cell]
    x = tf.constant(rng.normal(size=(B, SEQ_T, SEQ_D)).astype(np.float32))
    h0 = tf.constant(rng.normal(size=(B, SEQ_U)).astype(np.float32) * 0.5)
    bias_shape = (2, g * SEQ_U) if cell == "gru" else (g * SEQ_U,)
    weights = [tf.constant(rng.normal(size=s).astype(np.float32) * 0.4)
               for s in [(SEQ_D, g * SEQ_U), (SEQ_U, g * SEQ_U), bias_shape]]
    w_y = tf.constant(rng.normal(size=(B, SEQ_T, SEQ_U)).astype(np.float32))
    states = 2 if cell == "lstm" else 1
    zero_c = tf.zeros_like(h0)

    def run(taps, weight_grad):
        with tf.GradientTape() as tape:
            tape.watch([x, taps, *weights])
            if cell == "lstm":
                y, h, _ = kernels.lstm_seq(x, h0, zero_c, *weights, return_sequences=True, taps=taps,
                                           weight_grad=weight_grad)
            else:
                seq = kernels.gru_seq if cell == "gru" else kernels.rnn_seq
                y, h = seq(x, h0, *weights, return_sequences=True, taps=taps, weight_grad=weight_grad)
            loss = tf.reduce_sum(y * w_y) + tf.reduce_sum(tf.square(h))
        return [v.numpy() for v in tape.gradient(loss, [x, taps, *weights])]

    full = run(tf.zeros([0], tf.float64), True)
    probe = run(tf.zeros([SEQ_T, states], tf.float64), False)
    want = _per_step_reference(cell, x, h0, zero_c, weights, w_y)[:, :states]
    assert probe[1].shape == (SEQ_T, states) and probe[1].dtype == np.float64
    np.testing.assert_allclose(probe[1], want, rtol=2e-5)
    assert _rel(full[0], probe[0]) < 1e-6
    assert all(not w.any() for w in probe[2:]) and all(w.any() for w in full[2:])


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_step_sigma_op_against_explicit_jacobians_and_tf_lanczos(ops, cell):
    """seqvg's step-Jacobian norm op: with the Krylov space the whole state,
    each row's ||J||_2 from numpy's SVD of the explicit Jacobian of Keras's
    own cell (tf.GradientTape.batch_jacobian); with a smaller one, the TF
    ops' Lanczos estimate (stepstats) of the same products; on 1, 2 and 4
    threads the same numbers (170 rows: three blocks, the last one partial)."""
    import keras

    from seqvg.stepstats import lanczos_sigma_max, linearised_step

    rng = np.random.default_rng(4)
    rows, units, d = 170, 6, 3
    keras.utils.set_random_seed(2)
    make = {"rnn": keras.layers.SimpleRNNCell, "gru": keras.layers.GRUCell, "lstm": keras.layers.LSTMCell}[cell]
    layer_cell = make(units)
    layer_cell.build((None, d))
    for w in layer_cell.weights:  # away from init: gates and derivatives spread out
        w.assign(rng.normal(size=w.shape).astype(np.float32) * 0.7)
    n = 2 * units if cell == "lstm" else units
    x = tf.constant(rng.normal(size=(rows, d)).astype(np.float32))
    s = tf.constant(rng.normal(size=(rows, n)).astype(np.float32))
    v0 = tf.constant(rng.normal(size=(rows, n)).astype(np.float32))
    states = tf.split(s, 2, axis=1) if cell == "lstm" else [s]
    with tf.GradientTape() as tape:
        tape.watch(s)
        parts = tf.split(s, 2, axis=1) if cell == "lstm" else [s]
        _, new = layer_cell(x, parts if cell == "lstm" else parts[0])
        new = tf.concat(tf.nest.flatten(new), axis=1)
    exact = np.linalg.norm(tape.batch_jacobian(new, s).numpy().astype(np.float64), 2, axis=(1, 2))
    full = [kernels.step_sigma(cell, layer_cell, x, s, v0, n, max_threads=p).numpy() for p in (1, 2, 4)]
    np.testing.assert_allclose(full[0], exact, rtol=1e-4)
    jvp, vjp = linearised_step(cell, layer_cell, x, states)
    want = lanczos_sigma_max(jvp, vjp, v0, 3).numpy()
    part = [kernels.step_sigma(cell, layer_cell, x, s, v0, 3, max_threads=p).numpy() for p in (1, 2, 4)]
    # Two float32 recurrences whose sums differ in order: Lanczos carries
    # their rounding along, a few parts in 1e5 after three steps here.
    np.testing.assert_allclose(part[0], want, rtol=2e-4)
    assert np.all(part[0] <= exact * (1 + 1e-5))
    for got in (full, part):
        assert all(np.array_equal(got[0], other) for other in got[1:])


def test_step_sigma_op_where_the_krylov_space_closes_early(ops):
    """A step whose J^T J has two eigenvalues (0 and 0.49): Lanczos breaks
    down after two steps and its matrix decouples into blocks; the op's
    largest eigenvalue must still be exact (0.7), also from a start vector
    in the null space's complement and one with a zero component."""
    import keras

    units = 8
    layer_cell = keras.layers.SimpleRNNCell(units)
    layer_cell.build((None, 2))
    layer_cell.kernel.assign(np.zeros((2, units), np.float32))
    layer_cell.recurrent_kernel.assign(np.diag(np.repeat([0.0, 0.7], units // 2)).astype(np.float32))
    layer_cell.bias.assign(np.zeros(units, np.float32))
    rng = np.random.default_rng(1)
    v0 = rng.normal(size=(3, units)).astype(np.float32)
    v0[1, : units // 2] = 0.0
    v0[2, 0] = 0.0
    sigma = kernels.step_sigma("rnn", layer_cell, tf.zeros((3, 2)), tf.zeros((3, units)), tf.constant(v0), 6).numpy()
    np.testing.assert_allclose(sigma, 0.7, rtol=1e-6)


def _awkward_steps(rng, n: int, steps: int) -> np.ndarray:
    """(steps, n) float32 rows that exercise every path of the gate-statistics
    op: spread values, a tight cluster (its bins split again), ties, a
    constant row, a NaN, infinities, values one float apart, signs and zeros."""
    rows = [
        rng.random(n),
        0.99 + 1e-5 * rng.normal(size=n),
        rng.integers(0, 5, n) / 4,
        np.full(n, 0.25),
        np.where(rng.random(n) < 0.3, 1.0, 1 / (1 + np.exp(-rng.normal(2, 1, n)))),
        np.where(np.arange(n) == n // 3, np.nan, rng.random(n)),
        np.where(np.arange(n) % 97 == 0, np.inf, rng.normal(size=n)),
        np.nextafter(np.float32(0.5), np.float32(1), dtype=np.float32) * (rng.random(n) < 0.5)
        + np.float32(0.5) * (rng.random(n) >= 0.5),
        np.where(rng.random(n) < 0.2, 0.0, rng.normal(size=n)),
    ]
    return np.stack([rows[t % len(rows)] for t in range(steps)]).astype(np.float32)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("units,batch", [(12, 7), (24, 400)])
def test_gate_stats_op_is_numpys_bit_for_bit(ops, cell, units, batch):
    """seqvg's gate-statistics op against seqvg.why's numpy statistics (mean,
    np.percentile's linear 10/50/90th) of the values that kernels.gate_views
    reads from the same cache, bit for bit, on 1, 2 and 4 threads; with
    batch x units both below and above numpy's casting buffer (8192 values,
    the chunks of its mean), and rows of every awkward kind."""
    from seqvg import why

    rng = np.random.default_rng(5)
    steps, blocks = 11, 3
    n = units * batch
    if cell == "rnn":  # s (T+1, K, B): rows [0, u) of s[t+1] hold h_t in (-1, 1), and specials
        d = 2
        values = rng.uniform(-1, 1, (steps + 1, units + d + 1, batch)).astype(np.float32)
        awkward = _awkward_steps(rng, n, steps)
        values[1:, :units] = np.where(np.isfinite(awkward), np.clip(awkward, -1, 1), awkward).reshape(steps, units, batch)
    else:  # act (T, G u, B), G rows per unit of each block
        per_unit = 5 if cell == "lstm" else 4
        values = rng.random((steps, per_unit * units, batch)).astype(np.float32)
        for row in (0, 1):
            block_rows = values.reshape(steps, blocks, per_unit, units // blocks * batch)
            block_rows[:, :, row] = _awkward_steps(rng, n, steps).reshape(steps, blocks, -1)
    views = kernels.gate_views(cell, blocks, values, units)
    want = np.stack([why.gate_stats(v, transform) for v, transform in views.values()])
    assert list(views) == list(why.GATES[cell])
    got = [kernels.gate_stats(cell, tf.constant(blocks), tf.constant(values), units, max_threads=p).numpy()
           for p in (1, 2, 4)]
    assert got[0].shape == (len(views), 4, steps)
    for g in got:
        np.testing.assert_array_equal(g, want)


def _drifting_steps(rng, n: int, steps: int) -> np.ndarray:
    """(steps, n) float32 rows in (0, 1) that move a little from one step to
    the next, as a layer's gates do (the op then finds most percentiles near
    the previous row's), with what breaks that: jumps, a row of ties, a NaN
    row, a row of zeros and ones, and rows whose spread narrows and widens."""
    base = rng.normal(size=n)
    rows = []
    for t in range(steps):
        shift = 0.02 * t + (3.0 if t >= steps // 3 else 0.0) - (5.0 if t >= steps // 2 else 0.0)
        spread = 1.0 + 0.5 * np.sin(t / 4)
        rows.append(1 / (1 + np.exp(-(spread * base + shift + 0.01 * rng.normal(size=n)))))
    rows[steps // 4] = rng.integers(0, 3, n) / 2
    rows[steps // 4 + 1][n // 5] = np.nan
    rows[steps // 4 + 3] = (rng.random(n) < 0.5).astype(float)
    return np.stack(rows).astype(np.float32)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_gate_stats_op_is_numpys_bit_for_bit_on_drifting_rows(ops, cell):
    """As above, on rows that drift from step to step as gates do (where the
    op looks for each percentile first among the values around the previous
    row's), through jumps and odd rows: numpy's numbers, 1, 2 and 4 threads."""
    from seqvg import why

    rng = np.random.default_rng(11)
    steps, blocks, units, batch = 48, 4, 32, 300
    n = units * batch
    if cell == "rnn":  # h_t with 1 - h_t^2 drifting as above
        values = rng.uniform(-1, 1, (steps + 1, units + 3, batch)).astype(np.float32)
        values[1:, :units] = np.sqrt(1 - _drifting_steps(rng, n, steps)).reshape(steps, units, batch)
    else:
        per_unit = 5 if cell == "lstm" else 4
        values = rng.random((steps, per_unit * units, batch)).astype(np.float32)
        block_rows = values.reshape(steps, blocks, per_unit, units // blocks * batch)
        for row in (0, 1):
            block_rows[:, :, row] = _drifting_steps(rng, n, steps).reshape(steps, blocks, -1)
    views = kernels.gate_views(cell, blocks, values, units)
    want = np.stack([why.gate_stats(v, transform) for v, transform in views.values()])
    for p in (1, 2, 4):
        got = kernels.gate_stats(cell, tf.constant(blocks), tf.constant(values), units, max_threads=p).numpy()
        np.testing.assert_array_equal(got, want)


def test_sequence_op_bad_shapes_are_clear_errors(ops):
    x, h = tf.zeros((B, SEQ_T, SEQ_D)), tf.zeros((B, SEQ_U))
    weights = [tf.zeros((SEQ_D, 4 * SEQ_U)), tf.zeros((SEQ_U, 4 * SEQ_U)), tf.zeros((4 * SEQ_U,))]
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"kernel must be \(features, 4 \* units\)"):
        kernels.lstm_seq(tf.zeros((B, SEQ_T, SEQ_D + 1)), h, h, *weights)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"h0 and c0 must be \(batch, units\)"):
        kernels.lstm_seq(x, tf.zeros((B + 1, SEQ_U)), h, *weights)
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match=r"x must be \(batch, T, features\)|rank 3"):
        kernels.lstm_seq(tf.zeros((B, SEQ_D)), h, h, *weights)
    with pytest.raises(tf.errors.InvalidArgumentError, match="values do not hold this cell's gates"):
        kernels.gate_stats("lstm", tf.constant(3), tf.zeros((SEQ_T, 4 * 6, B)), 6)  # a GRU's cache


@pytest.fixture
def fresh_load(monkeypatch, tmp_path):
    """kernels._load re-run with this test's environment as if nothing were
    loaded yet, then forgotten (the process keeps the library it has)."""
    monkeypatch.setenv("SEQVG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(kernels, "_registered", [])
    kernels._load.cache_clear()
    yield tmp_path / "cache"
    kernels._load.cache_clear()


def test_switched_off(monkeypatch, fresh_load):
    monkeypatch.setenv(kernels.ENV_SWITCH, "0")
    assert kernels.op_module() is None
    assert "disabled (SEQVG_KERNELS=0)" in kernels.kernel_status()


def test_failed_build_falls_back_and_leaves_nothing(monkeypatch, fresh_load, capsys):
    monkeypatch.setenv("CXX", "false")
    assert kernels.op_module() is None
    assert "compiling its LSTM ops" in capsys.readouterr().err  # the pause is explained
    assert "unavailable: compiling lstm_ops.cc failed" in kernels.kernel_status()
    # No half-written library to load later; the failure is remembered.
    assert sorted(p.suffix for p in fresh_load.iterdir()) == [".failed", ".lock"]


@pytest.mark.skipif(kernels.compiler() is None, reason="needs a C++ compiler")
def test_a_bad_march_says_so(monkeypatch, fresh_load):
    """SEQVG_MARCH the compiler does not know: the compiler's error line (not
    the notes after it), naming the setting, and the TensorFlow ops instead."""
    monkeypatch.setenv("SEQVG_MARCH", "no-such-cpu")
    assert kernels.op_module() is None
    status = kernels.kernel_status()
    assert "compiling lstm_ops.cc failed (SEQVG_MARCH=no-such-cpu)" in status
    assert "error:" in status and "no-such-cpu" in status.split("error:", 1)[1]


def test_build_writes_only_the_library_and_warns_about_nothing(ops, tmp_path):
    """A real compile, with -Wall -Wextra on seqvg's source: it leaves the
    library and its log of diagnostics, nothing else, and no warning located
    in seqvg's source (GCC 12 flags its own AVX-512 intrinsics headers with a
    known false -Wmaybe-uninitialized, which is not seqvg's to fix).

    The compile is the one that wrote the cached library this session
    loaded (same source, compiler, flags and TensorFlow: the cache key;
    under `make test` on a new machine, the build at the session's start),
    read under the build's lock; where that library has no log, a compile
    of its own into tmp_path."""
    import re

    path = kernels._library_path(tf)
    log = kernels.build_log(path)
    with kernels._Lock(path.with_suffix(".lock")):
        cached = log.exists()
        if cached:
            diagnostics = log.read_text()
            left = {p.name for p in path.parent.iterdir() if p.name.startswith(path.stem + ".")}
            assert left == {path.name, log.name, path.with_suffix(".lock").name}
            target = path
    if not cached:
        target = tmp_path / "cache" / "lstm_ops-test.so"
        diagnostics = kernels.build(tf, target)
        assert [p.name for p in target.parent.iterdir()] == [target.name]
    assert target.stat().st_size > 0
    ours = re.findall(rf"{re.escape(kernels.SOURCE.name)}:\d+:\d+: warning: .*", diagnostics)
    assert ours == []


def test_library_is_keyed_by_source_tensorflow_cpu_compiler_and_march(monkeypatch, tmp_path):
    monkeypatch.setenv("SEQVG_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("SEQVG_MARCH", raising=False)
    path = kernels._library_path(tf)
    assert path.parent == tmp_path and path.name.startswith("lstm_ops-")
    for name, other in [("_cpu_key", lambda: "another cpu"), ("_compiler_key", lambda cxx: "clang 99"),
                        ("SOURCE", tmp_path / "other.cc"), ("_WARNINGS", ["-w"])]:
        with monkeypatch.context() as m:
            if name == "SOURCE":
                other.write_text("// another source")
            m.setattr(kernels, name, other)
            assert kernels._library_path(tf) != path, name
    with monkeypatch.context() as m:
        m.setattr(tf, "__version__", "0.0.0")
        assert kernels._library_path(tf) != path
    with monkeypatch.context() as m:  # another instruction set, its own library
        m.setenv("SEQVG_MARCH", "haswell")
        assert kernels._library_path(tf) != path
        assert kernels._arch_flags() == (["-march=haswell"],)


def test_failure_is_remembered_until_the_key_changes_or_rebuild(monkeypatch, fresh_load, capsys):
    """No compiler: one message, then no retries, in this or any later process."""
    monkeypatch.setenv("CXX", "false")
    assert kernels.op_module() is None
    assert capsys.readouterr().err.count("compiling its LSTM ops") == 1
    calls = []

    def failing_build(*args, **kwargs):
        calls.append(args)
        raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(kernels, "build", failing_build)
    kernels._load.cache_clear()  # as a new process would
    assert kernels.op_module() is None
    assert calls == [] and "remembered" in kernels.kernel_status() and "--rebuild" in kernels.kernel_status()
    assert "compiling" not in capsys.readouterr().err
    kernels._load.cache_clear()
    assert kernels._load(rebuild=True)[0] is None and len(calls) == 1  # --rebuild tries again


def test_a_library_that_does_not_load_is_rebuilt_once(monkeypatch, fresh_load, capsys):
    """A damaged cached library is replaced by a fresh build, once; a build
    that does not load either is remembered as a failure."""
    path = kernels._library_path(tf)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a shared library")
    builds = []

    def fake_build(tf_, target):  # the real compile is tested above
        builds.append(target)
        target.write_bytes(b"still not a shared library")
        return ""

    monkeypatch.setattr(kernels, "build", fake_build)
    assert kernels.op_module() is None
    assert builds == [path]
    assert "rebuilding them" in capsys.readouterr().err
    assert "does not load either" in kernels.kernel_status()
    assert not path.exists() and kernels._failure_note(path).exists()
    kernels._load.cache_clear()  # a later process does not try again
    assert kernels.op_module() is None and builds == [path]


def test_models_without_an_op_never_compile(monkeypatch, tiny_cfg):
    """A model with no layer that seqvg's ops run (an LSTM, a GRU, or, for
    the probe, a tanh vanilla RNN) never waits for a build."""
    from seqvg.models import build_model
    from seqvg.probe import Prober
    from seqvg.tasks import get_task

    monkeypatch.setattr(kernels, "_load", lambda *a, **k: pytest.fail("compiled for a model without an op"))
    for cell in ("irnn",):
        cfg = tiny_cfg(cell=cell).resolved()
        Prober(build_model(cfg), get_task(cfg.task))


def _cpu_has(*flags: str) -> bool:
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        return False
    have = {f for line in text.splitlines() if line.startswith("flags") for f in line.split(":", 1)[1].split()}
    return all(f in have for f in flags)


@pytest.mark.skipif(not _cpu_has("avx2", "fma") or kernels.compiler() is None,
                    reason="needs a CPU with AVX2 and FMA, and a C++ compiler")
def test_the_avx2_build_passes_the_op_tests(tmp_path):
    """The ops built for AVX2 (``SEQVG_MARCH=haswell``, into an empty cache)
    pass the same tests against Keras, numpy and the SVD: on an AVX-512
    machine (where CI runs) their AVX2 code (the gate statistics' gathering,
    Eigen's AVX2 products) runs nowhere else."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "SEQVG_MARCH": "haswell", "SEQVG_CACHE_DIR": str(tmp_path)}
    env.pop("PYTEST_XDIST_WORKER", None)
    here = Path(__file__).parent
    select = "matches or taps or step_sigma or gate_stats or at_128_units"
    run = subprocess.run([sys.executable, "-m", "pytest", "-o", "addopts=", "-q", "-p", "no:cacheprovider",
                          str(here / "test_kernels.py"), str(here / "test_why.py"), "-k", select],
                         env=env, capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "skipped" not in run.stdout, run.stdout[-2000:]
    libraries = list(tmp_path.glob("lstm_ops-*.so"))
    assert len(libraries) == 1
    if shutil.which("objdump"):  # built for AVX2: no AVX-512 register in it
        assert b"zmm" not in subprocess.run(["objdump", "-d", str(libraries[0])], capture_output=True).stdout
