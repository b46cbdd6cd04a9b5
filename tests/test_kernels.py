"""seqvg's fused LSTM cell op against the same maths in TensorFlow ops.

Oracle: the cell written out with tf.sigmoid/tf.tanh (as Keras's LSTMCell
computes it), differentiated by TensorFlow; the op and its registered
gradient agree to 1e-5 relative, including a loss that reads the op's cache.
Whole-loop agreement with Keras's LSTM is in test_fastlstm.py.
"""

import shutil

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from seqvg import kernels  # noqa: E402

U, B = 7, 5


@pytest.fixture
def ops():
    if kernels.lstm_cell_ops() is None:
        if shutil.which("g++") or shutil.which("c++"):
            pytest.fail(f"a compiler is here but {kernels.kernel_status()}")
        pytest.skip(kernels.kernel_status())
    return kernels.lstm_cell_ops()


def _reference(z, c_prev, eps=None):
    i, f, g, o = tf.split(z, 4, axis=0)
    i, f, g, o = tf.sigmoid(i), tf.sigmoid(f), tf.tanh(g), tf.sigmoid(o)
    c = f * c_prev + i * g
    if eps is not None:
        c = c + eps
    tc = tf.tanh(c)
    return o * tc, c, tf.concat([i, f, g, o, tc], axis=0)


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(a)))


@pytest.mark.parametrize("reads_cache", [False, True])
@pytest.mark.parametrize("perturbed", [False, True])
def test_cell_and_gradient_match_tensorflow_ops(ops, reads_cache, perturbed):
    """Outputs, dL/dz and dL/dc_prev; with eps also dL/d eps, the total dL/dc_t
    (carried and through h_t) that the probe measures."""
    rng = np.random.default_rng(0)
    z = tf.constant(rng.normal(scale=2.0, size=(4 * U, B)).astype(np.float32))
    c_prev = tf.constant(rng.normal(size=(U, B)).astype(np.float32))
    eps = tf.zeros((U, B)) if perturbed else None
    w_h, w_c, w_a = (tf.constant(rng.normal(size=s).astype(np.float32)) for s in [(U, B), (U, B), (5 * U, B)])

    def run(cell):
        @tf.function
        def f():
            sources = [z, c_prev] + ([eps] if perturbed else [])
            with tf.GradientTape() as tape:
                tape.watch(sources)
                h, c, act = cell(z, c_prev, eps)
                loss = tf.reduce_sum(h * w_h) + tf.reduce_sum(c * w_c)
                if reads_cache:
                    loss += tf.reduce_sum(act * w_a)
            return [h, c, act, *tape.gradient(loss, sources)]

        return [t.numpy() for t in f()]

    ref, out = run(_reference), run(kernels.lstm_cell)
    assert len(ref) == len(out) == 5 + perturbed
    for a, b in zip(ref, out):
        assert a.shape == b.shape
        assert _rel(a, b) < 1e-5
    if perturbed:  # the total, not just the carried part dL/dc = w_c
        assert _rel(out[5], w_c.numpy()) > 1e-2


def test_squared_norms_in_double(ops):
    rng = np.random.default_rng(3)
    xs = [rng.normal(size=(U, B)).astype(np.float32) for _ in range(4)]
    xs.append(np.full((U, B), 1e-25, np.float32))  # squares to 0 in float32
    out = kernels.squared_norms([tf.constant(x) for x in xs]).numpy()
    want = np.array([np.sum(np.square(x.astype(np.float64))) for x in xs])
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, want, rtol=1e-12)
    assert out[-1] > 0


def test_bad_shapes_are_clear_errors(ops):
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"z must be \(4 \* units, batch\)"):
        kernels.lstm_cell(tf.zeros((3 * U, B)), tf.zeros((U, B)))


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
    assert kernels.lstm_cell_ops() is None
    assert "disabled (SEQVG_KERNELS=0)" in kernels.kernel_status()


def test_failed_build_falls_back_and_leaves_nothing(monkeypatch, fresh_load, capsys):
    monkeypatch.setenv("CXX", "false")
    assert kernels.lstm_cell_ops() is None
    assert "compiling its fused LSTM cell op" in capsys.readouterr().err  # the pause is explained
    assert "unavailable: compiling lstm_cell.cc failed" in kernels.kernel_status()
    assert list(fresh_load.iterdir()) == []  # no half-written library to load later


def test_build_writes_only_the_library(ops, tmp_path):
    target = tmp_path / "cache" / "lstm_cell-test.so"
    kernels.build(tf, target)
    assert [p.name for p in target.parent.iterdir()] == [target.name]
    assert target.stat().st_size > 0


def test_library_is_keyed_by_source_tensorflow_and_cpu(monkeypatch, tmp_path):
    monkeypatch.setenv("SEQVG_CACHE_DIR", str(tmp_path))
    path = kernels._library_path(tf)
    assert path.parent == tmp_path and path.name.startswith("lstm_cell-")
    monkeypatch.setattr(kernels, "_cpu_key", lambda: "another cpu")
    assert kernels._library_path(tf) != path
