"""The execution path: decided once from the config and the machine, recorded.

The path (seqvg's sequence op, its TF-ops loop or Keras's loop; unrolled or
not) depends on the cell, the timesteps and whether seqvg's ops are built,
never on --steps; config.json records it, and old records still read.
"""

import json

import pytest

from seqvg import execpath, kernels
from seqvg.config import RunConfig
from seqvg.execpath import ExecutionPath, decide, recorded, resolve
from seqvg.training import train

from conftest import copy_run


@pytest.fixture
def no_ops(monkeypatch):
    """As on a machine where seqvg's ops cannot be built."""
    monkeypatch.setattr(kernels, "lstm_cell_ops", lambda: None)


def test_other_cells_run_keras_loop_without_asking_for_the_ops(monkeypatch):
    monkeypatch.setattr(kernels, "_load", lambda *a, **k: pytest.fail("asked for seqvg's ops"))
    for cell in ("rnn", "irnn", "mingru", "keras.layers:LSTMCell"):
        assert resolve(RunConfig(cell=cell, length=10).resolved()) == ExecutionPath(None, "keras", False)


def test_without_the_ops_lstm_runs_tf_ops_unrolled_up_to_unroll_max(no_ops):
    assert decide("lstm", execpath.UNROLL_MAX) == ExecutionPath("lstm", "tf-ops", unroll=True)
    assert decide("lstm", execpath.UNROLL_MAX + 1) == ExecutionPath("lstm", "tf-ops", unroll=False)
    # A graph traced for one call does not pay for unrolling.
    assert decide("lstm", 10, repeated=False) == ExecutionPath("lstm", "tf-ops", unroll=False)
    assert decide("gru", 10) == ExecutionPath("gru", "keras")  # no TF-ops loop of seqvg's for the GRU


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_with_the_ops_lstm_and_gru_run_the_sequence_op(cell):
    if kernels.lstm_cell_ops() is None:
        pytest.skip(kernels.kernel_status())
    for repeated in (True, False):
        assert decide(cell, 10, repeated=repeated) == ExecutionPath(cell, "seqvg-op")


@pytest.mark.parametrize("ops", [True, False], ids=["ops", "tfops"])
def test_path_does_not_depend_on_training_steps(ops, monkeypatch):
    if not ops:
        monkeypatch.setattr(kernels, "lstm_cell_ops", lambda: None)
    elif kernels.lstm_cell_ops() is None:
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
])
def test_record_round_trips_and_reads_as_older_runs_wrote_it(path, lstm_path, gru_path, words):
    assert ExecutionPath.from_dict(path.to_dict()) == path
    assert (path.lstm_path, path.gru_path, path.describe()) == (lstm_path, gru_path, words)
    new = {"numerics": {"execution_path": path.to_dict(), "lstm_path": lstm_path, "gru_path": gru_path}}
    old = {"numerics": {"lstm_path": lstm_path, "gru_path": gru_path, "cpu_isa": "x86_64 avx2"}}
    assert recorded(new) == recorded(old) == path


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
