"""The transposed CPU loop computes what Keras's LSTM loop computes.

Oracle: the same model object run through Keras's own ``LSTM.inner_loop``
(the loop seqvg used before), on weights with non-zero biases so that every
gate block is exercised; outputs and all gradients agree to 1e-5 relative.
"""

import types

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from seqvg import execpath, fastlstm, kernels  # noqa: E402
from seqvg.config import RunConfig  # noqa: E402
from seqvg.execpath import ExecutionPath  # noqa: E402
from seqvg.models import build_model, recurrent_layers  # noqa: E402

B, T, D, U = 6, 9, 3, 5


@pytest.fixture(params=[True, False], ids=["unrolled", "while"])
def unroll(request):
    """Runs a test with the loop unrolled (T <= UNROLL_MAX) and as a while loop."""
    assert T <= execpath.UNROLL_MAX
    return request.param


@pytest.fixture(params=["seq", "tfops"])
def step(request, monkeypatch):
    """Runs a test with seqvg's whole-sequence op (``seqvg.kernels``) and with
    the plain-TensorFlow loop that runs where the ops cannot be built."""
    if request.param == "seq":
        if kernels.op_module() is None:
            pytest.skip(kernels.kernel_status())
    else:
        monkeypatch.setattr(kernels, "op_module", lambda: None)
    return request.param


def _lstm_path(step: str, unroll: bool) -> ExecutionPath:
    """The path of ``step``: the sequence op has no loop to unroll."""
    if step == "seq" and unroll:
        pytest.skip("the sequence op has no loop to unroll")
    return ExecutionPath("lstm", "seqvg-op") if step == "seq" else ExecutionPath("lstm", "tf-ops", unroll)


def _loop_of(layer):
    """The function a layer's ``inner_loop`` runs (a ``functools.partial``'s own)."""
    func = layer.inner_loop.__func__
    return getattr(func, "func", func)


def _model(layers: int, return_sequences: bool):
    keras.utils.set_random_seed(4)
    x = keras.Input((T, D))
    h = x
    for i in range(layers):
        h = keras.layers.LSTM(U, return_sequences=return_sequences or i < layers - 1)(h)
    model = keras.Model(x, keras.layers.Dense(2)(h))
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.LSTM):
            layer.cell.bias.assign(rng.normal(size=(4 * U,)).astype(np.float32))
    return model


def _keras_loop(model):
    """The same model with Keras's own loop back in every LSTM layer."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.LSTM):
            layer.inner_loop = types.MethodType(keras.layers.LSTM.inner_loop, layer)
    return model


def _outputs_and_grads(model, x):
    x = tf.constant(x)

    @tf.function
    def run():
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = model(x)
            loss = tf.reduce_sum(tf.square(y)) + tf.reduce_sum(y)
        return y, tape.gradient(loss, [x] + model.trainable_variables)

    y, grads = run()
    return y.numpy(), [g.numpy() for g in grads]


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(a)))


@pytest.mark.parametrize("layers,return_sequences", [(1, False), (1, True), (2, False)])
def test_same_outputs_and_gradients_as_keras_loop(layers, return_sequences, unroll, step):
    x = np.random.default_rng(1).normal(size=(B, T, D)).astype(np.float32)
    fast = _model(layers, return_sequences)
    assert fastlstm.accelerate(fast, _lstm_path(step, unroll)) == layers
    ref = _keras_loop(_model(layers, return_sequences))
    y_fast, g_fast = _outputs_and_grads(fast, x)
    y_ref, g_ref = _outputs_and_grads(ref, x)
    assert y_fast.shape == y_ref.shape
    assert _rel(y_ref, y_fast) < 1e-5
    assert len(g_fast) == len(g_ref) == 1 + 3 * layers + 2
    for a, b in zip(g_ref, g_fast):
        assert _rel(a, b) < 1e-5


def test_initial_state_and_returned_states_match(unroll, step):
    rng = np.random.default_rng(2)
    x = tf.constant(rng.normal(size=(B, T, D)).astype(np.float32))
    h0, c0 = (tf.constant(rng.normal(size=(B, U)).astype(np.float32)) for _ in range(2))
    keras.utils.set_random_seed(5)
    layer = keras.layers.LSTM(U, return_state=True)
    ref = layer(x, initial_state=[h0, c0])
    fastlstm.accelerate(keras.Sequential([layer]), _lstm_path(step, unroll))
    out = layer(x, initial_state=[h0, c0])
    for a, b in zip(ref, out):
        assert _rel(a.numpy(), b.numpy()) < 1e-5


def _graph_nodes(model) -> list:
    graph = tf.function(model).get_concrete_function(tf.TensorSpec((B, T, D))).graph.as_graph_def()
    return list(graph.node) + [n for f in graph.library.function for n in f.node_def]


def _op_names(model) -> list[str]:
    return [n.name for n in _graph_nodes(model)]


def test_unrolled_up_to_unroll_max_then_a_while_loop(monkeypatch):
    """Guards the switch itself: without seqvg's ops, a training run's loop
    over T <= UNROLL_MAX timesteps has no While op, a longer one has one (the
    sequence op has no loop in the graph); a one-shot graph never unrolls."""
    monkeypatch.setattr(kernels, "op_module", lambda: None)

    def has_while(timesteps: int, repeated: bool = True) -> bool:
        fast = _model(1, False)
        fastlstm.accelerate(fast, execpath.decide("lstm", timesteps, repeated=repeated))
        return any(n.op in ("While", "StatelessWhile") for n in _graph_nodes(fast))

    assert not has_while(T) and has_while(T, repeated=False)
    monkeypatch.setattr(execpath, "UNROLL_MAX", T - 1)
    assert has_while(T)


def test_fast_loop_runs_and_keras_cell_does_not():
    """Guards the speed-up itself: the accelerated graph has no Keras cell ops."""
    fast = _model(1, False)
    fastlstm.accelerate(fast, execpath.of_model(fast))
    assert not any("lstm_cell" in name for name in _op_names(fast))
    assert any("lstm_cell" in name for name in _op_names(_keras_loop(_model(1, False))))


def test_sequence_op_runs_where_built(step):
    """Guards which loop runs: the sequence op (no per-step ops, no While), or
    (unbuilt) TensorFlow's own ops."""
    fast = _model(1, False)
    fastlstm.accelerate(fast, execpath.of_model(fast))
    ops = {n.op for n in _graph_nodes(fast)}
    assert ("SeqvgLstmSeq" in ops) == (step == "seq")
    assert ("While" in ops or "StatelessWhile" in ops) == (step == "tfops")
    assert "SeqvgLstmCell" not in ops
    assert ("Sigmoid" in ops or "_FusedMatMul" in ops) == (step == "tfops")


def test_masks_dropout_and_other_activations_keep_keras_loop():
    assert not fastlstm.eligible(keras.layers.LSTM(U, dropout=0.1))
    assert not fastlstm.eligible(keras.layers.LSTM(U, activation="relu"))
    assert not fastlstm.eligible(keras.layers.LSTM(U, go_backwards=True))
    assert not fastlstm.eligible(keras.layers.GRU(U))
    # A mask reaches inner_loop: Keras's masked loop runs and gives its result.
    x = np.random.default_rng(3).normal(size=(B, T, D)).astype(np.float32)
    x[:, -3:] = 0.0
    keras.utils.set_random_seed(6)
    inp = keras.Input((T, D))
    lstm = keras.layers.LSTM(U)
    model = keras.Model(inp, lstm(keras.layers.Masking()(inp)))
    ref = model(x).numpy()
    fastlstm.accelerate(model, execpath.of_model(model))
    np.testing.assert_allclose(model(x).numpy(), ref, rtol=1e-6)
    assert _rel(ref, lstm(x[:, :-3]).numpy()) < 1e-5  # the fast loop on the unmasked steps


@pytest.mark.parametrize("residual", [False, True])
def test_seqvg_models_are_accelerated(residual):
    cfg = RunConfig(cell="lstm", length=10, units=8, layers=3, residual=residual).resolved()
    model = build_model(cfg)
    lstms = recurrent_layers(model)  # layers 2 and 3 inside Residual wrappers with residual=True
    loop = {"seqvg-op": fastlstm._lstm_op_inner_loop, "tf-ops": fastlstm._lstm_tfops_inner_loop}
    assert len(lstms) == 3 and all(_loop_of(layer) is loop[execpath.resolve(cfg).cell_path] for layer in lstms)


def test_accelerated_run_saves_plain_lstm(tiny_run):
    loaded = keras.saving.load_model(tiny_run(cell="lstm") / "model.keras")
    assert [type(layer) for layer in loaded.layers if "lstm" in layer.name] == [keras.layers.LSTM]


@pytest.mark.parametrize("switched_off", [False, True], ids=["op", "kernels-off"])
def test_gru_model_runs_the_op_and_matches_keras_loop(switched_off, monkeypatch):
    """A seqvg GRU model (2 layers, chrono gate biases) runs seqvg's GRU op,
    or with the kernels off Keras's own loop; either way its outputs and all
    gradients equal Keras's loop on the same model to 1e-5."""
    if switched_off:
        monkeypatch.setattr(kernels, "op_module", lambda: None)
    elif kernels.op_module() is None:
        pytest.skip(kernels.kernel_status())
    cfg = RunConfig(cell="gru", length=T, units=U + 1, layers=2, chrono=T).resolved()
    model = build_model(cfg)
    grus = recurrent_layers(model)
    if switched_off:
        assert all("inner_loop" not in vars(layer) for layer in grus)  # Keras's own loop
    else:
        assert all(_loop_of(layer) is fastlstm._gru_op_inner_loop for layer in grus)
    ops = {n.op for n in _graph_nodes_of(model, cfg)}
    assert ("SeqvgGruSeq" in ops) != switched_off
    x = np.random.default_rng(8).normal(size=(B, cfg.seq_len, 2)).astype(np.float32)
    got = _outputs_and_grads(model, x)
    for layer in grus:
        layer.inner_loop = types.MethodType(keras.layers.GRU.inner_loop, layer)
    want = _outputs_and_grads(model, x)
    assert _rel(want[0], got[0]) < 1e-5
    for a, b in zip(want[1], got[1]):
        assert _rel(a, b) < 1e-5
    assert execpath.resolve(cfg).gru_path == ("keras" if switched_off else "seqvg-op")


def _graph_nodes_of(model, cfg) -> list:
    graph = tf.function(model).get_concrete_function(tf.TensorSpec((B, cfg.seq_len, 2))).graph.as_graph_def()
    return list(graph.node) + [n for f in graph.library.function for n in f.node_def]
