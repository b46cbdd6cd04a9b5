"""RunConfig: defaults filled by resolved(), validation, the JSON round trip.

Gate initialisation defaults are in test_defaults.py, the memory check in
test_memory.py, type checks of the Python API in test_faults.py.
"""

import dataclasses

import pytest

from seqvg import config
from seqvg.config import ConfigError, RunConfig


@pytest.mark.parametrize("kw, activation, recurrent_init", [
    (dict(cell="rnn"), "tanh", "orthogonal"),
    (dict(cell="irnn"), "relu", "identity"),
    (dict(cell="rnn", activation="relu", recurrent_init="glorot"), "relu", "glorot"),
    (dict(cell="lstm"), None, "orthogonal"),
    (dict(cell="gru"), None, "orthogonal"),
])
def test_resolved_fills_the_cell_defaults(kw, activation, recurrent_init):
    cfg = RunConfig(**kw).resolved()
    assert (cfg.activation, cfg.recurrent_init) == (activation, recurrent_init)


@pytest.mark.parametrize("steps, probe_every", [(5000, 250), (30, 1), (19, 1), (40, 2)])
def test_probe_schedule_is_a_twentieth_of_the_steps(steps, probe_every):
    assert RunConfig(steps=steps).resolved().probe_every == probe_every
    assert RunConfig(steps=steps, probe_every=7).resolved().probe_every == 7


def test_frozen_and_round_trip():
    cfg = RunConfig(cell="gru", length=50, clip=1.0, seed=3).resolved()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.units = 4
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    assert [f.name for f in dataclasses.fields(RunConfig)] == list(cfg.to_dict())
    with pytest.raises(ConfigError, match="unknown config keys: colour"):
        RunConfig.from_dict({**cfg.to_dict(), "colour": "red"})


@pytest.mark.parametrize("kw, option", [
    (dict(task="parity_of_everything"), "task"),
    (dict(cell="transformer"), "cell"),
    (dict(units=0), "units"),
    (dict(layers=0), "layers"),
    (dict(length=1), "length"),
    (dict(lr=0.0), "lr"),
    (dict(clip=-0.5), "clip"),
    (dict(optimizer="lbfgs"), "optimizer"),
    (dict(probe_every=0), "probe_every"),
    (dict(cell="gru", activation="tanh"), "activation"),
    (dict(cell="lstm", recurrent_init="identity"), "recurrent_init"),
    (dict(cell="lstm", recurrent_gain=2.0), "recurrent_gain"),
    (dict(cell="rnn", recurrent_gain=-1.0), "recurrent_gain"),
    (dict(cell="gru", forget_bias=1.0), "forget_bias"),
    (dict(cell="lstm", layer_norm=True), "layer_norm"),
    (dict(batch_norm=True), "batch_norm"),
    (dict(residual=True), "residual"),
    (dict(cell="lstm", chrono=2), "chrono"),
    (dict(cell="lstm", chrono=10, gate_init="chrono", forget_bias=1.0), "forget_bias"),
])
def test_bad_values_name_their_option(kw, option):
    with pytest.raises(ConfigError) as e:
        RunConfig(**kw).resolved()
    assert e.value.option == option
    assert "\n" not in str(e.value)


def test_copy_task_reads_twenty_more_steps():
    assert RunConfig(task="copy", length=30).seq_len == 50
    assert RunConfig(task="adding", length=30).seq_len == 30
    assert config.default_run_name(RunConfig(task="copy", cell="gru", length=30, seed=2)) == "copy-gru-T30-s2"


def test_a_recurrent_gain_float32_cannot_hold_is_refused(tmp_path):
    """`seqvg probe --cell rnn --recurrent-gain 1e39` (or train) made inf
    weights, and the probe's sigma_max(W) failed with TensorFlow's
    "Self-adjoint eigen decomposition was not successful" traceback; train
    left a run directory behind it. 1e38 still builds (finite weights)."""
    from click.testing import CliRunner

    from seqvg.cli import cli
    from seqvg.config import ConfigError, RunConfig

    with pytest.raises(ConfigError) as e:
        RunConfig(cell="rnn", recurrent_gain=1e39).resolved()
    assert e.value.option == "recurrent_gain" and "must be at most 1e+38" in str(e.value)
    RunConfig(cell="rnn", recurrent_gain=1e38, recurrent_init="glorot").resolved()
    r = CliRunner().invoke(cli, ["train", "--cell", "rnn", "--recurrent-gain", "1e300", "--length", "10",
                                 "--out", str(tmp_path / "run")])
    assert r.exit_code == 2 and "Invalid value for '--recurrent-gain': --recurrent-gain must be at most 1e+38 " \
        "(the recurrent weights are float32), got 1e+300" in r.output, r.output
    assert not (tmp_path / "run").exists()
