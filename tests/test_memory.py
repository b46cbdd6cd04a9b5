"""The memory estimate and the check that refuses, before any work, a run that cannot fit."""

import dataclasses

import pytest

from seqvg import memory
from seqvg.config import ConfigError, RunConfig


def test_memory_estimate_grows_with_the_work():
    base = RunConfig(cell="lstm", length=100, units=64).resolved()
    b = memory.estimate_memory_bytes(base)
    assert memory.estimate_memory_bytes(dataclasses.replace(base, length=200)) == 2 * b
    assert memory.estimate_memory_bytes(dataclasses.replace(base, cell="gru")) < b
    assert memory.estimate_memory_bytes(dataclasses.replace(base, batch_size=128)) > 1.9 * b


def test_memory_check_names_the_options_that_shrink_it(monkeypatch):
    monkeypatch.setattr(memory, "physical_memory_bytes", lambda: 2**30)  # a 1 GiB machine
    memory.check_memory(RunConfig(length=100, units=32).resolved())
    huge = RunConfig(length=10000, units=256, batch_size=256).resolved()
    with pytest.raises(ConfigError) as e:
        memory.check_memory(huge)
    assert e.value.option == "length"
    assert "more than half of this machine's 1.0 GiB" in str(e.value)
    assert "make it smaller with --length, --batch-size, --units, --layers" in str(e.value)
    with pytest.raises(ConfigError) as e:  # a command that spells its options otherwise
        memory.check_memory(huge, names={"length": "-T", "units": "--units"})
    assert str(e.value).endswith("make it smaller with -T, --units") and e.value.option is None


def test_memory_check_blames_the_option_the_user_moved(monkeypatch):
    # The probe is the largest part and --probe-batch its first option; a user
    # who asked for an impossible --length is told about --length.
    monkeypatch.setattr(memory, "physical_memory_bytes", lambda: 2**30)
    long = RunConfig(length=10**6).resolved()
    assert memory.memory_parts(long)[0][0] == "the probe"
    with pytest.raises(ConfigError) as e:
        memory.check_memory(long)
    assert e.value.option == "length"
    with pytest.raises(ConfigError) as e:
        memory.check_memory(RunConfig(probe_batch=10**6).resolved())
    assert e.value.option == "probe_batch"
    with pytest.raises(ConfigError) as e:  # a short sequence of very wide layers
        memory.check_memory(RunConfig(length=10, units=200_000).resolved())
    assert e.value.option == "units"


def test_memory_check_counts_the_weights(monkeypatch):
    # Keras's LSTM on the adding task (2 inputs): 4u(d + u + 1) parameters.
    assert memory.weight_bytes(RunConfig(units=128).resolved(), training=False) == 4 * 4 * 128 * (2 + 128 + 1)
    # Training keeps each weight's gradient and Adam's two moments beside it.
    cfg = RunConfig(units=128, layers=2).resolved()
    assert memory.weight_bytes(cfg) == 4 * memory.weight_bytes(cfg, training=False)
    # 20,000 units: short sequences, but 6.4 GB of recurrent weights, 26 GB to train.
    monkeypatch.setattr(memory, "physical_memory_bytes", lambda: 24 * 2**30)
    wide = RunConfig(units=20_000, length=10).resolved()
    with pytest.raises(ConfigError, match="the weights 23.8 GiB") as e:
        memory.check_memory(wide)
    assert e.value.option == "units" and "make it smaller with --units, --layers" in str(e.value)



def test_memory_check_names_a_task_parameter_that_makes_it_too_large(monkeypatch):
    """``--task-arg vocab=10000000`` (tokens, pairs alike) grows the inputs or
    the sequence: the refusal blamed --length (or -n for generate) and never
    named --task-arg, the one option the user had moved."""
    from click.testing import CliRunner

    from seqvg.cli import cli

    monkeypatch.setattr(memory, "physical_memory_bytes", lambda: 24 * 2**30)
    cfg = RunConfig(task="selective-copy", task_args={"vocab": 10**7}, length=20, units=8).resolved()
    with pytest.raises(ConfigError) as e:
        memory.check_memory(cfg)
    assert e.value.option == "task_args" and str(e.value).endswith(", --task-arg vocab"), str(e.value)
    # Both recall parameters raised: the check survives a default that would not fit the other (pairs > vocab/2).
    cfg = RunConfig(task="recall", task_args={"pairs": 10**7, "vocab": 2 * 10**7}, length=20, units=8).resolved()
    with pytest.raises(ConfigError) as e:
        memory.check_memory(cfg, training=False)
    assert e.value.option == "task_args" and "--task-arg pairs" in str(e.value), str(e.value)
    # A length too large is still the length's fault, with no task parameter named.
    with pytest.raises(ConfigError) as e:
        memory.check_memory(RunConfig(length=10**8, units=8).resolved())
    assert e.value.option == "length" and "--task-arg" not in str(e.value)
    r = CliRunner().invoke(cli, ["generate", "selective-copy", "-T", "20", "--task-arg", "vocab=100000000",
                                 "-o", "x.npz"])
    assert r.exit_code == 2 and "Error: Invalid value for '--task-arg': 64 samples of selective-copy" in r.output
    assert r.output.rstrip().endswith("make it smaller with -n, --length or --task-arg vocab"), r.output
