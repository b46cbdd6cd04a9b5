"""Default gate initialisation: chrono init for gated cells, Keras's biases one option away."""

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from seqvg.cli import cli
from seqvg.config import ConfigError, RunConfig
from seqvg.report_text import gate_init_text, remedies

from conftest import TINY


@pytest.mark.parametrize("kw, gate_init, chrono", [
    (dict(cell="lstm", length=200), "chrono", 200),
    (dict(cell="gru", length=400), "chrono", 400),
    (dict(cell="gru", task="copy", length=100), "chrono", 120),  # the whole T+20 sequence
    (dict(cell="lstm", length=2), "chrono", 3),  # chrono needs T_max >= 3
    (dict(cell="lstm", chrono=50), "chrono", 50),
    (dict(cell="lstm", gate_init="keras"), "keras", None),
    (dict(cell="lstm", forget_bias=3.0), "keras", None),  # a change to Keras's init
    (dict(cell="rnn"), None, None),
    (dict(cell="irnn", gate_init="keras"), None, None),  # no gates: accepted, nothing to record
])
def test_resolved_gate_init(kw, gate_init, chrono):
    cfg = RunConfig(**kw).resolved()
    assert (cfg.gate_init, cfg.chrono) == (gate_init, chrono)
    assert cfg.resolved() == cfg


@pytest.mark.parametrize("kw, option", [
    (dict(cell="lstm", gate_init="keras", chrono=100), "gate_init"),
    (dict(cell="lstm", gate_init="chrono", forget_bias=2.0), "forget_bias"),
    (dict(cell="rnn", gate_init="chrono"), "gate_init"),
    (dict(cell="lstm", gate_init="zeros"), "gate_init"),
])
def test_gate_init_bad_combinations(kw, option):
    with pytest.raises(ConfigError) as e:
        RunConfig(**kw).resolved()
    assert e.value.option == option


def test_old_config_json_reads_as_keras_init():
    """config.json written before gate_init existed: gated cells used Keras's biases."""
    old = RunConfig(cell="lstm").to_dict()
    del old["gate_init"]
    assert RunConfig.from_dict(old).resolved().gate_init == "keras"
    old_chrono = {**old, "chrono": 100}
    assert RunConfig.from_dict(old_chrono).resolved().gate_init == "chrono"


def _bias(cfg):
    from seqvg.models import build_model, recurrent_layers

    return recurrent_layers(build_model(cfg.resolved()))[0].cell.bias.numpy()


def _keras_bias(layer_class, units):

    layer = layer_class(units)
    layer.build((None, 5, 2))
    return layer.cell.bias.numpy()


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_keras_option_restores_keras_biases_exactly(cell):
    import keras

    u = 16
    ours = _bias(RunConfig(cell=cell, units=u, length=50, gate_init="keras"))
    theirs = _keras_bias(keras.layers.LSTM if cell == "lstm" else keras.layers.GRU, u)
    np.testing.assert_array_equal(ours, theirs)
    if cell == "lstm":  # Keras's unit_forget_bias: [i, f, c, o] = [0, 1, 0, 0]
        np.testing.assert_array_equal(ours, np.r_[np.zeros(u), np.ones(u), np.zeros(2 * u)])
    else:
        np.testing.assert_array_equal(ours, np.zeros((2, 3 * u)))


def _check_log_uniform(b, t_max):
    """b = log(U[1, T_max - 1]): exp(b) fills [1, T_max - 1] with a uniform's mean."""
    e = np.exp(b.astype(np.float64))
    assert e.min() >= 1 - 1e-5 and e.max() <= t_max - 1 + 1e-3
    width = t_max - 2
    assert e.min() < 1 + 0.1 * width and e.max() > t_max - 1 - 0.1 * width
    # Mean of U[1, T_max-1] is T_max/2; 5 standard errors.
    assert abs(e.mean() - t_max / 2) < 5 * width / math.sqrt(12 * len(e))


def test_default_lstm_biases_are_chrono_init():
    """Tallec & Ollivier (2018): b_f ~ log U[1, T_max - 1], b_i = -b_f, the rest 0; T_max = T."""
    u, t = 128, 200
    b = _bias(RunConfig(cell="lstm", units=u, length=t))
    b_i, b_f, b_c, b_o = b[:u], b[u : 2 * u], b[2 * u : 3 * u], b[3 * u :]
    _check_log_uniform(b_f, t)
    np.testing.assert_array_equal(b_i, -b_f)
    assert not b_c.any() and not b_o.any()


def test_default_gru_biases_are_chrono_init():
    """GRU: the keep gate z (h = z h_prev + (1 - z) h_new) takes the forget gate's role."""
    u, t = 128, 100
    b = _bias(RunConfig(cell="gru", units=u, length=t))
    _check_log_uniform(b[0, :u], t)
    assert not b[0, u:].any() and not b[1].any()


def _args(**kw):
    out = []
    for k, v in {**TINY, **kw}.items():
        out += [f"--{k.replace('_', '-')}", str(v)]
    return out


def test_config_json_records_gate_init(tiny_run, tmp_path):
    default = json.loads((tiny_run(cell="lstm") / "config.json").read_text())["config"]
    assert (default["gate_init"], default["chrono"]) == ("chrono", TINY["length"])
    out = tmp_path / "r"
    r = CliRunner().invoke(cli, ["train", *_args(cell="lstm", steps=10), "--gate-init", "keras", "--out", str(out), "-q"])
    assert r.exit_code == 0, r.output
    cfg = json.loads((out / "config.json").read_text())["config"]
    assert (cfg["gate_init"], cfg["chrono"]) == ("keras", None)


def test_title_page_and_labels_show_gate_init():
    default = RunConfig(cell="lstm", length=200).resolved().to_dict()
    keras = RunConfig(cell="lstm", length=200, gate_init="keras").resolved().to_dict()
    fb = RunConfig(cell="lstm", forget_bias=3.0).resolved().to_dict()
    other = RunConfig(cell="gru", length=200, chrono=50).resolved().to_dict()
    rnn = RunConfig(cell="rnn").resolved().to_dict()
    assert [gate_init_text(c) for c in (default, keras, fb, other, rnn)] == [
        "chrono 200", "keras", "keras, forget bias 3", "chrono 50", "-"]
    # The title page's remedies name what differs from the defaults; Keras's
    # gates have their own "gate init" column there.
    assert remedies(default) == [] and remedies(keras) == []
    assert remedies(fb) == ["forget bias 3"] and remedies(other) == ["chrono 50"]


def test_help_explains_the_default():
    r = CliRunner().invoke(cli, ["train", "--help"])
    assert "--gate-init" in r.output and "Tallec" in r.output and "keras" in r.output
