"""build_model: layers, shapes, seeded weights, initialisers, the optimiser (no training).

Gate biases are in test_defaults.py, the LSTM loops in test_fastlstm.py,
golden parameter counts and losses in test_golden.py.
"""

import numpy as np
import pytest

from seqvg.config import RunConfig
from seqvg.models import build_model, compile_model, make_optimizer, recurrent_layers


def _model(**kw):
    return build_model(RunConfig(**{"length": 7, "units": 6, **kw}).resolved())


@pytest.mark.parametrize("kw, kinds, output", [
    (dict(cell="rnn"), ["SimpleRNN"], (None, 1)),
    (dict(cell="gru", layers=2), ["GRU", "GRU"], (None, 1)),
    (dict(cell="lstm", task="copy"), ["LSTM"], (None, 27, 10)),
    (dict(cell="rnn", layers=3, residual=True, batch_norm=True), ["SimpleRNN"] * 3, (None, 1)),
])
def test_layers_and_shapes(kw, kinds, output):
    model = _model(**kw)
    rec = recurrent_layers(model)
    assert [type(layer).__name__ for layer in rec] == kinds
    assert [layer.return_sequences for layer in rec] == [True] * (len(kinds) - 1) + [kw.get("task") == "copy"]
    assert model.output_shape == output
    names = [layer.name for layer in model.layers]
    assert names[-1] == "head"
    if kw.get("residual"):
        assert names.count("residual_2") == 1 and names.count("residual_3") == 1 and "residual_1" not in names
        assert [n for n in names if n.startswith("batch_norm")] == ["batch_norm_1", "batch_norm_2"]


def test_weights_depend_on_the_seed_only():
    a, b, c = _model(cell="gru"), _model(cell="gru"), _model(cell="gru", seed=1)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert any(not np.array_equal(wa, wc) for wa, wc in zip(a.get_weights(), c.get_weights()))


@pytest.mark.parametrize("init, gain", [("identity", 1.0), ("identity", 0.5), ("orthogonal", 1.0), ("orthogonal", 1.7)])
def test_recurrent_matrix_has_every_singular_value_at_the_gain(init, gain):
    u = _model(cell="rnn", recurrent_init=init, recurrent_gain=gain).get_layer("rnn_1").cell.recurrent_kernel.numpy()
    np.testing.assert_allclose(np.linalg.svd(u, compute_uv=False), gain, rtol=1e-5)
    if init == "identity":
        np.testing.assert_array_equal(u, gain * np.eye(6, dtype=np.float32))


def test_irnn_is_relu_with_identity():
    layer = _model(cell="irnn").get_layer("irnn_1")
    assert layer.cell.activation.__name__ == "relu"
    np.testing.assert_array_equal(layer.cell.recurrent_kernel.numpy(), np.eye(6, dtype=np.float32))


@pytest.mark.parametrize("kw, kind, clip", [
    (dict(), "Adam", None), (dict(optimizer="sgd", clip=1.0), "SGD", 1.0), (dict(optimizer="rmsprop"), "RMSprop", None),
])
def test_optimizer_and_global_norm_clipping(kw, kind, clip):
    opt = make_optimizer(RunConfig(lr=0.01, **kw).resolved())
    assert type(opt).__name__ == kind
    assert float(opt.learning_rate) == pytest.approx(0.01)
    assert opt.global_clipnorm == clip and opt.clipnorm is None  # the whole gradient, not per tensor


@pytest.mark.parametrize("task, loss", [("adding", "MeanSquaredError"), ("copy", "SparseCategoricalCrossentropy")])
def test_compiled_with_a_builtin_keras_loss(task, loss):
    cfg = RunConfig(task=task, cell="rnn", length=5, units=4).resolved()
    model = build_model(cfg)
    compile_model(model, cfg)
    assert type(model.loss).__name__ == loss
