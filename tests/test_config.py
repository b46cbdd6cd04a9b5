"""RunConfig: defaults filled by resolved(), validation, the JSON round trip, the memory check.

Gate initialisation defaults are in test_defaults.py; type checks of the
Python API in test_faults.py.
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


def test_memory_estimate_grows_with_the_work():
    base = RunConfig(cell="lstm", length=100, units=64).resolved()
    b = config.estimate_memory_bytes(base)
    assert config.estimate_memory_bytes(dataclasses.replace(base, length=200)) == 2 * b
    assert config.estimate_memory_bytes(dataclasses.replace(base, cell="gru")) < b
    assert config.estimate_memory_bytes(dataclasses.replace(base, batch_size=128)) > 1.9 * b


def test_memory_check_names_the_options_that_shrink_it(monkeypatch):
    monkeypatch.setattr(config, "physical_memory_bytes", lambda: 2**30)  # a 1 GiB machine
    config.check_memory(RunConfig(length=100, units=32).resolved())
    huge = RunConfig(length=10000, units=256, batch_size=256).resolved()
    with pytest.raises(ConfigError) as e:
        config.check_memory(huge)
    assert e.value.option == "length"
    assert "more than half of this machine's 1.0 GiB" in str(e.value)
    assert "make it smaller with --length, --batch-size, --units, --layers" in str(e.value)
    with pytest.raises(ConfigError) as e:  # a command that spells its options otherwise
        config.check_memory(huge, names={"length": "-T", "units": "--units"})
    assert str(e.value).endswith("make it smaller with -T, --units") and e.value.option is None
