"""The execution path: decided once from the config and the machine, recorded.

The path (seqvg's sequence op, its TF-ops loop or Keras's loop; unrolled or
not) depends on the cell, the timesteps and whether seqvg's ops are built,
never on --steps; only a custom cell's XLA reads the budget (--steps x
timesteps, execpath.XLA_MIN_WORK) and the cell's class (seqvg_xla,
execpath.XLA_ATTRIBUTE). config.json records it, and old records still read.
"""

import dataclasses
import json

import pytest

from seqvg import cells, execpath, kernels
from seqvg.config import RunConfig
from seqvg.execpath import ExecutionPath, decide, recorded, resolve
from seqvg.training import train

from conftest import copy_run


@pytest.fixture
def no_ops(monkeypatch):
    """As on a machine where seqvg's ops cannot be built."""
    monkeypatch.setattr(kernels, "op_module", lambda: None)


def test_other_cells_run_keras_loop_without_asking_for_the_ops(monkeypatch):
    monkeypatch.setattr(kernels, "_load", lambda *a, **k: pytest.fail("asked for seqvg's ops"))
    for cell in ("rnn", "irnn"):
        assert resolve(RunConfig(cell=cell, length=10).resolved()) == ExecutionPath(None, "keras", False)
    # A custom cell (seqvg's own modern cells take that path) runs Keras's
    # loop, compiled with XLA in a training run long enough to repay it if
    # its class declares that XLA pays for it; a one-shot probe compiles nothing.
    for cell, xla in (("mingru", True), ("keras.layers:LSTMCell", False)):
        long = RunConfig(cell=cell, length=10, steps=execpath.XLA_MIN_WORK // 10).resolved()
        assert resolve(long) == ExecutionPath(None, "keras", False, xla=xla)
        assert resolve(long, repeated=False) == ExecutionPath()


def test_a_short_custom_cell_run_takes_the_loop_and_a_long_one_xla():
    """XLA's fixed compilation pays only over enough steps x timesteps
    (XLA_MIN_WORK): the last step under it goes without XLA and says why,
    the first at it compiles; the length counts as much as the steps."""
    work = execpath.XLA_MIN_WORK
    for length in (20, 100):
        steps = work // length
        short = resolve(RunConfig(cell="mingru", length=length, steps=steps - 1).resolved())
        assert not short.xla and not short.xla_refused
        assert short.xla_skipped == f"{steps - 1} steps x {length} timesteps, under {work:,}: too short to repay " \
                                    "its compilation"
        assert short.describe() == f"Keras's own loop, without XLA ({short.xla_skipped})"
        assert resolve(RunConfig(cell="mingru", length=length, steps=steps).resolved()) == ExecutionPath(xla=True)
    # The built-in cells never take XLA, however long the run.
    assert resolve(RunConfig(cell="rnn", length=100, steps=10**6).resolved()) == ExecutionPath()
    # decide() without a budget: as long as needed.
    assert decide(None, 10, custom=True) == ExecutionPath(xla=True)


def test_xla_only_for_a_cell_that_declares_it_pays(tmp_path):
    """XLA saves some cells nothing per step (benchmarks/xla_payoff.py): a
    cell's class says whether it pays (seqvg_xla = True), read from its code,
    never timed, so a seed gives the same path, and numbers, anywhere."""
    work = execpath.XLA_MIN_WORK
    declared = {name: execpath.declares_xla(cells.load(name)) for name in cells.BUILTIN}
    assert declared == {"mingru": True, "minlstm": True, "indrnn": True, "lru": False}
    # modern-cells.toml: 2500 steps x T=100.
    for name, xla in declared.items():
        path = resolve(RunConfig(cell=name, length=100, steps=2500).resolved())
        assert path.xla is xla, name
    lru = resolve(RunConfig(cell="lru", length=100, steps=10 * work).resolved())
    assert lru.xla_skipped == "LRUCell does not declare seqvg_xla = True, that XLA pays for it"
    assert lru.describe() == f"Keras's own loop, without XLA ({lru.xla_skipped})"
    # A user's cell: Keras's loop, unless it declares it (only True counts).
    for line, xla in (("", False), ("    seqvg_xla = 1\n", False), ("    seqvg_xla = True\n", True)):
        source = NO_XLA_CELL.replace(NO_XLA_DECLARED, line)
        (tmp_path / f"c{len(line)}.py").write_text(source)
        cfg = RunConfig(cell=f"{tmp_path / f'c{len(line)}.py'}:NumpyTanh", length=100, steps=work // 100).resolved()
        assert resolve(cfg).xla is xla, line
        # ... and with a budget too short to repay it, never.
        assert not resolve(dataclasses.replace(cfg, steps=work // 100 - 1)).xla


def test_a_resumed_custom_cell_run_keeps_its_xla():
    """Whether a custom cell's run compiles with XLA comes from what it
    recorded when resumed: one started under an older rule (lru took XLA
    from 100,000 steps x T) goes on as it ran, and the other way round."""
    lru = RunConfig(cell="lru", length=100, steps=2500).resolved()
    assert not resolve(lru).xla
    for before in (ExecutionPath(xla=True), ExecutionPath().refuse_xla("no XLA kernel for X")):
        assert resolve(lru, before=before) == ExecutionPath(xla=True)
    mingru = RunConfig(cell="mingru", length=100, steps=2500).resolved()
    assert resolve(mingru, before=ExecutionPath(xla=True)) == ExecutionPath(xla=True)
    for before in (ExecutionPath(), ExecutionPath(xla_skipped="too short")):  # a record from before XLA; skipped
        path = resolve(mingru, before=before)
        assert not path.xla and path.xla_skipped == (before.xla_skipped or "the run started without XLA")
    assert resolve(lru, before=ExecutionPath(xla_skipped="too short")).xla_skipped.startswith("LRUCell does not")
    assert resolve(lru, before=ExecutionPath(xla=True), repeated=False) == ExecutionPath()


def test_without_the_ops_lstm_runs_tf_ops_unrolled_up_to_unroll_max(no_ops):
    assert decide("lstm", execpath.UNROLL_MAX) == ExecutionPath("lstm", "tf-ops", unroll=True)
    assert decide("lstm", execpath.UNROLL_MAX + 1) == ExecutionPath("lstm", "tf-ops", unroll=False)
    # A graph traced for one call does not pay for unrolling.
    assert decide("lstm", 10, repeated=False) == ExecutionPath("lstm", "tf-ops", unroll=False)
    assert decide("gru", 10) == ExecutionPath("gru", "keras")  # no TF-ops loop of seqvg's for the GRU


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_with_the_ops_lstm_and_gru_run_the_sequence_op(cell):
    if kernels.op_module() is None:
        pytest.skip(kernels.kernel_status())
    for repeated in (True, False):
        assert decide(cell, 10, repeated=repeated) == ExecutionPath(cell, "seqvg-op")


@pytest.mark.parametrize("ops", [True, False], ids=["ops", "tfops"])
def test_path_does_not_depend_on_training_steps(ops, monkeypatch):
    if not ops:
        monkeypatch.setattr(kernels, "op_module", lambda: None)
    elif kernels.op_module() is None:
        pytest.skip(kernels.kernel_status())
    for cell in ("lstm", "gru"):
        paths = {resolve(RunConfig(cell=cell, length=30, steps=steps).resolved()) for steps in (10, 3000, 10**6)}
        assert len(paths) == 1


def test_copy_task_counts_its_timesteps(no_ops):
    """The copy task reads length + 20 timesteps: that is what unrolls."""
    length = execpath.UNROLL_MAX - 20
    assert resolve(RunConfig(cell="lstm", task="copy", length=length).resolved()).unroll
    assert not resolve(RunConfig(cell="lstm", task="copy", length=length + 1).resolved()).unroll


@pytest.mark.parametrize("args", [
    ("rnn", "keras", False), (None, "seqvg-op", False), (None, "tf-ops", False), ("gru", "tf-ops", False),
    ("lstm", "seqvg-op", True), ("lstm", "keras", True), ("lstm", "cudnn", False),
    ("lstm", "seqvg-op", False, True), ("gru", "keras", False, True), (None, "keras", False, True, "no kernel"),
    (None, "keras", False, True, None, "too short"), ("gru", "keras", False, False, None, "too short"),
])
def test_impossible_paths_are_refused(args):
    with pytest.raises(ValueError, match="execution path"):
        ExecutionPath(*args)


@pytest.mark.parametrize("path, lstm_path, gru_path, words", [
    (ExecutionPath(), None, None, "Keras's own loop"),
    (ExecutionPath("lstm", "seqvg-op"), "seqvg-op", None, "LSTM: seqvg's sequence op"),
    (ExecutionPath("lstm", "tf-ops", True), "tf-ops-unrolled", None, "LSTM: seqvg's loop of TensorFlow ops, unrolled"),
    (ExecutionPath("lstm", "tf-ops"), "tf-ops", None, "LSTM: seqvg's loop of TensorFlow ops"),
    (ExecutionPath("lstm", "keras"), "keras", None, "LSTM: Keras's own loop"),
    (ExecutionPath("gru", "seqvg-op"), None, "seqvg-op", "GRU: seqvg's sequence op"),
    (ExecutionPath("gru", "keras"), None, "keras", "GRU: Keras's own loop"),
    (ExecutionPath(xla=True), None, None, "Keras's own loop, XLA-compiled"),
    (ExecutionPath(xla=True).refuse_xla("no XLA kernel for PyFuncStateless"), None, None,
     "Keras's own loop, without XLA (no XLA kernel for PyFuncStateless)"),
    (ExecutionPath(xla_skipped="too short"), None, None, "Keras's own loop, without XLA (too short)"),
])
def test_record_round_trips_and_reads_as_older_runs_wrote_it(path, lstm_path, gru_path, words):
    assert ExecutionPath.from_dict(path.to_dict()) == path
    assert (path.lstm_path, path.gru_path, path.describe()) == (lstm_path, gru_path, words)
    new = {"numerics": {"execution_path": path.to_dict(), "lstm_path": lstm_path, "gru_path": gru_path}}
    old = {"numerics": {"lstm_path": lstm_path, "gru_path": gru_path, "cpu_isa": "x86_64 avx2"}}
    assert recorded(new) == path and recorded(new).describe() == words
    if not (path.xla or path.xla_refused or path.xla_skipped):  # older runs had no XLA to record
        assert recorded(old) == path


@pytest.mark.parametrize("config", [
    {}, {"numerics": None}, {"numerics": {"cpu_isa": "x86_64"}}, {"numerics": {"lstm_path": "keras, seqvg-op"}},
    {"numerics": {"execution_path": {"cell": "lstm", "cell_path": "warp"}}},
])
def test_runs_that_record_no_readable_path_give_none(config):
    assert recorded(config) is None


def test_a_run_resumed_on_another_path_says_so(tiny_run, tmp_path, capsys):
    out = copy_run(tiny_run(cell="lstm"), tmp_path / "run")
    config = json.loads((out / "config.json").read_text())
    other = ExecutionPath("lstm", "keras")
    config["numerics"] = {**config["numerics"], "execution_path": other.to_dict(), "lstm_path": "keras"}
    (out / "config.json").write_text(json.dumps(config))
    summary = json.loads((out / "summary.json").read_text())
    (out / "summary.json").write_text(json.dumps({**summary, "status": "running"}))
    assert train(None, out, resume=True, progress=False)["status"] == "completed"
    err = capsys.readouterr().err
    assert f"ran on LSTM: Keras's own loop and resumes on {resolve(RunConfig.from_dict(config['config'])).describe()}" in err
    # What the run first recorded stays recorded.
    assert json.loads((out / "config.json").read_text())["numerics"]["execution_path"] == other.to_dict()


NO_XLA_DECLARED = "    seqvg_xla = True  # so that a long run asks for XLA, which cannot compile it\n"
NO_XLA_CELL = """
import keras
import numpy as np
import tensorflow as tf


class NumpyTanh(keras.layers.Layer):
    \"\"\"h = tanh(x W + h U), the tanh taken by numpy: an op XLA has no kernel for.\"\"\"

    seqvg_xla = True  # so that a long run asks for XLA, which cannot compile it

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.state_size = units

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], self.units), initializer="glorot_uniform")
        self.u = self.add_weight(shape=(self.units, self.units), initializer="orthogonal")

    def call(self, inputs, states):
        a = tf.matmul(inputs, self.w) + tf.matmul(states[0], self.u)
        h = tf.numpy_function(np.tanh, [a], tf.float32, stateful=False)
        h = tf.ensure_shape(h, a.shape)
        return h, [h]

    def get_config(self):
        return {**super().get_config(), "units": self.units}
"""


def test_a_cell_xla_cannot_compile_trains_without_it_and_says_why(tmp_path, capsys, xla_always):
    """Decided once, before the first step: the run records why, config.json
    and the report's title page carry it, and the run trains as before."""
    from seqvg.training import Trainer

    (tmp_path / "np_cell.py").write_text(NO_XLA_CELL)
    cfg = RunConfig(cell=f"{tmp_path / 'np_cell.py'}:NumpyTanh", length=6, units=4, steps=4, eval_every=2,
                    probe_every=2, batch_size=4, probe_batch=4, val_size=8)
    trainer = Trainer(cfg.resolved())
    assert not trainer.path.xla and trainer.path.xla_refused == "no XLA kernel for PyFuncStateless"
    assert trainer.prober.path == trainer.path
    summary = train(cfg, tmp_path / "run", progress=False)
    assert summary["status"] == "completed"
    assert "XLA cannot compile this cell (no XLA kernel for PyFuncStateless)" in capsys.readouterr().err
    path = recorded(json.loads((tmp_path / "run" / "config.json").read_text()))
    assert path == ExecutionPath().refuse_xla("no XLA kernel for PyFuncStateless")
    assert path.describe() == "Keras's own loop, without XLA (no XLA kernel for PyFuncStateless)"


def test_custom_cell_run_records_xla_and_its_probe_matches_the_graph_probe(tmp_path):
    """XLA compiles the step and the probe's gradient pass of a run long
    enough to repay it; the probe's numbers agree with the same probe
    without XLA to float32 rounding."""
    import numpy as np

    from seqvg.probe import Prober
    from seqvg.tasks import probe_batch
    from seqvg.training import Trainer

    cfg = RunConfig(cell="mingru", length=8, units=6, batch_size=4, probe_batch=4,
                    steps=execpath.XLA_MIN_WORK // 8).resolved()
    trainer = Trainer(cfg)
    assert trainer.path == ExecutionPath(xla=True)
    x, y = probe_batch(cfg)
    fast, plain = trainer.prober(x, y), Prober(trainer.model, trainer.task, ExecutionPath())(x, y)
    assert np.isclose(fast.loss, plain.loss, rtol=1e-6)
    for a, b in [(fast.h, plain.h), (fast.x, plain.x), (fast.why["jac_sigma"], plain.why["jac_sigma"])]:
        np.testing.assert_allclose(a, b, rtol=1e-5)
    loss, _, _ = trainer.train_batch(1)
    assert np.isfinite(loss)


def test_a_run_resumed_under_another_xla_rule_goes_on_as_it_started(tmp_path, capsys, xla_always):
    """A short mingru run (no XLA: under XLA_MIN_WORK), resumed where the
    rule would now compile it, resumes on Keras's loop, without a note."""
    cfg = RunConfig(cell="mingru", length=6, units=4, steps=2, eval_every=2, probe_every=2, batch_size=4,
                    probe_batch=4, val_size=8)
    execpath.XLA_MIN_WORK = 10**9
    train(cfg, tmp_path / "run", progress=False)
    execpath.XLA_MIN_WORK = 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["numerics"]["execution_path"]["xla_skipped"].startswith("2 steps x 6 timesteps")
    config["config"]["steps"] = 4
    (tmp_path / "run" / "config.json").write_text(json.dumps(config))
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    (tmp_path / "run" / "summary.json").write_text(json.dumps({**summary, "status": "interrupted"}))
    assert resolve(RunConfig.from_dict(config["config"])).xla
    assert train(None, tmp_path / "run", resume=True, progress=False)["status"] == "completed"
    assert "resumes on" not in capsys.readouterr().err
