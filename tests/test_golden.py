"""Pinned values: a changed random stream, initialiser or model is noticed.

The other tests check seqvg against itself or an oracle on whatever numbers
the streams give; these pin the numbers. Task data come from numpy's PCG64,
which is the same on every platform, so they are compared exactly. Losses go
through float32 maths whose last bits may differ between CPUs and LSTM paths,
so they are compared to 1e-5 relative. A change that moves them on purpose
updates the values here (and says why in its commit).
"""

import numpy as np
import pytest

from seqvg.config import RunConfig
from seqvg.models import build_model
from seqvg.tasks import STREAM_PROBE, STREAM_TRAIN, STREAM_VAL, get_task, stream

#: Seed 0, length 6, first sample: (channel 0, marker positions, targets of samples 0 and 1).
ADDING = {
    STREAM_TRAIN: ([0.8897387981414795, 0.5571380257606506, 0.800908088684082, 0.9565138220787048,
                    0.05861515924334526, 0.23640069365501404], [0, 3], [1.846252679824829, 0.8961175680160522]),
    STREAM_VAL: ([0.08082403987646103, 0.40243780612945557, 0.6012892127037048, 0.14510023593902588,
                  0.11531870067119598, 0.3269386887550354], [1, 4], [0.5177565217018127, 1.2471778392791748]),
    STREAM_PROBE: ([0.8949727416038513, 0.860414445400238, 0.3213748335838318, 0.316874623298645,
                    0.2991340160369873, 0.6884899735450745], [2, 3], [0.6382494568824768, 0.8876906633377075]),
}
#: Seed 0, length 6: the ten symbols to remember, of samples 0 and 1.
COPY = {
    STREAM_TRAIN: ([5, 8, 8, 5, 3, 7, 2, 8, 8, 1], [1, 2, 3, 7, 3, 1, 1, 6, 8, 5]),
    STREAM_VAL: ([8, 1, 3, 4, 2, 5, 8, 2, 4, 1], [1, 3, 8, 1, 8, 4, 1, 4, 4, 3]),
    STREAM_PROBE: ([5, 8, 8, 7, 6, 3, 5, 3, 8, 3], [6, 6, 2, 3, 2, 6, 2, 1, 8, 2]),
}


@pytest.mark.parametrize("kind", [STREAM_TRAIN, STREAM_VAL, STREAM_PROBE], ids=["train", "val", "probe"])
def test_adding_stream_first_values(kind):
    rng = stream(0, kind, 0) if kind == STREAM_TRAIN else stream(0, kind)
    x, y = get_task("adding").generate(rng, 2, 6)
    values, markers, targets = ADDING[kind]
    assert x[0, :, 0].tolist() == values
    assert np.flatnonzero(x[0, :, 1]).tolist() == markers
    assert y.tolist() == targets


@pytest.mark.parametrize("kind", [STREAM_TRAIN, STREAM_VAL, STREAM_PROBE], ids=["train", "val", "probe"])
def test_copy_stream_first_values(kind):
    rng = stream(0, kind, 0) if kind == STREAM_TRAIN else stream(0, kind)
    x, y = get_task("copy").generate(rng, 2, 6)
    first, second = COPY[kind]
    assert x[0].argmax(-1).tolist() == first + [0] * 5 + [9] + [0] * 10
    assert y[:, -10:].tolist() == [first, second]


def test_training_batches_depend_on_the_step():
    a = get_task("adding").generate(stream(0, STREAM_TRAIN, 1), 2, 6)[0]
    assert a[0, :, 0].tolist() != ADDING[STREAM_TRAIN][0]


def _params(cell: str, d: int, u: int, out: int) -> int:
    """Parameter count from the cell equations (Keras layouts; GRU has reset_after's two biases)."""
    per_gate = d * u + u * u + u
    recurrent = {"rnn": per_gate, "irnn": per_gate, "lstm": 4 * per_gate, "gru": 3 * per_gate + 3 * u}[cell]
    return recurrent + u * out + out


#: (task, cell) -> (parameters, loss of the first training batch at init); units 8, length 10, batch 16, seed 0.
MODELS = {
    ("adding", "rnn"): (97, 1.031503677368164),
    ("adding", "irnn"): (97, 1.2853448390960693),
    ("adding", "lstm"): (361, 0.7670577764511108),
    ("adding", "gru"): (297, 0.6939672827720642),
    ("copy", "lstm"): (698, 2.2885544300079346),
    ("copy", "gru"): (570, 2.2961995601654053),
}


@pytest.mark.parametrize("task,cell", list(MODELS), ids=lambda v: v)
def test_parameter_count_and_first_batch_loss(task, cell):
    cfg = RunConfig(task=task, cell=cell, length=10, units=8, batch_size=16).resolved()
    model = build_model(cfg)
    t = get_task(task)
    params, loss = MODELS[task, cell]
    assert model.count_params() == params == _params(cell, t.n_inputs, 8, t.n_outputs)
    x, y = t.generate(stream(cfg.seed, STREAM_TRAIN, 0), cfg.batch_size, cfg.length)
    assert float(t.loss_fn(y, model(x))) == pytest.approx(loss, rel=1e-5)
