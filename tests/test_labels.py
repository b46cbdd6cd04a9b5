"""Run labels: names from what varies between runs, report order."""

from pathlib import Path

import pytest

from seqvg.config import RunConfig
from seqvg.labels import run_labels, shown_keys, sort_order
from seqvg.study import load_spec

TASKS = Path(__file__).resolve().parents[1] / "tasks"


def _cfgs(*overrides):
    return [RunConfig(**kw).resolved().to_dict() for kw in overrides]


def _sorted_labels(cfgs, names=None):
    labels = run_labels(cfgs, names)
    return [labels[i].label for i in sort_order(labels)]


def test_length_sweep_is_named_by_length_then_seed():
    cfgs = _cfgs(*({"cell": "rnn", "length": t, "seed": s} for t in (200, 25, 100, 50) for s in (1, 0)))
    assert _sorted_labels(cfgs) == ["T=25 s0", "T=25 s1", "T=50 s0", "T=50 s1", "T=100 s0", "T=100 s1",
                                    "T=200 s0", "T=200 s1"]
    assert shown_keys(cfgs) == ["length"]


def test_options_that_follow_from_others_are_left_out():
    # tanh is the RNN's activation and None the LSTM's: the cell says it all.
    # probe_every follows from steps.
    cfgs = _cfgs(*({"cell": c, "steps": n} for c in ("lstm", "rnn") for n in (200, 100)))
    assert "probe_every" not in shown_keys(cfgs)
    assert _sorted_labels(cfgs) == ["rnn 100 steps s0", "rnn 200 steps s0", "lstm 100 steps s0",
                                    "lstm 200 steps s0"]
    # An odd one out in lr and optimizer, both implied by its cell: the cell names it.
    cfgs = _cfgs({"cell": "rnn"}, {"cell": "irnn", "optimizer": "sgd", "lr": 0.1})
    assert _sorted_labels(cfgs) == ["rnn s0", "irnn s0"]


def test_remedies_are_named_where_a_run_departs_from_the_rest():
    study = load_spec(TASKS / "remedies.toml")
    labels = {n: lab.label for n, lab in zip(study.run_names, run_labels([c.to_dict() for c in study.configs]))}
    assert labels["rnn-tanh-s0"] == "rnn s0"
    assert labels["rnn-clip1-s0"] == "rnn clip=1 s0"
    assert labels["rnn-1layer-s0"] == "rnn 1 layer s0"
    assert labels["irnn-s0"] == "irnn s0"  # relu and identity init are the IRNN's own
    assert labels["rnn-relu-s0"] == "rnn relu s0"
    assert labels["lstm-s0"] == "lstm keras gates s0"  # not the default chrono init: named


@pytest.mark.parametrize("spec", sorted(TASKS.glob("*.toml")), ids=lambda p: p.stem)
def test_every_shipped_spec_gets_distinct_labels(spec):
    study = load_spec(spec)
    labels = run_labels([c.to_dict() for c in study.configs], list(study.run_names))
    assert len({lab.label for lab in labels}) == len(labels)
    assert all("[" not in lab.label for lab in labels)  # no fallback to directory names needed


def test_cell_by_length_by_seed_orders_by_length_then_cell_then_seed():
    cfgs = _cfgs(*({"cell": c, "length": t, "seed": s} for c in ("gru", "lstm", "rnn") for t in (40, 10)
                   for s in (1, 0)))
    labels = run_labels(cfgs)
    ordered = [labels[i] for i in sort_order(labels)]
    assert [lab.label for lab in ordered[:7]] == ["rnn T=10 s0", "rnn T=10 s1", "lstm T=10 s0", "lstm T=10 s1",
                                                   "gru T=10 s0", "gru T=10 s1", "rnn T=40 s0"]
    assert ordered[0].group == "rnn T=10" and ordered[0].series == "rnn"
    assert ordered[0].axes == ("length",) and ordered[0].numeric == (10,)


def test_variant_and_seed_only_and_duplicates():
    cfgs = _cfgs({"cell": "lstm"}, {"cell": "lstm", "forget_bias": 3.0}, {"cell": "gru", "chrono": 100})
    # gru's chrono 100 is the default chrono init at T=100: not named.
    assert _sorted_labels(cfgs) == ["lstm s0", "lstm fb=3 s0", "gru s0"]
    # Nothing but the seed varies: the cell keeps the label from being bare.
    assert _sorted_labels(_cfgs({"cell": "gru", "seed": 1}, {"cell": "gru"})) == ["gru s0", "gru s1"]
    # The same run twice: the directory names tell them apart.
    twice = run_labels(_cfgs({"cell": "gru"}, {"cell": "gru"}), ["a", "b"])
    assert [lab.label for lab in twice] == ["gru s0 [a]", "gru s0 [b]"]


def test_balanced_grid_of_a_switch_names_both_values():
    cfgs = _cfgs(*({"cell": "rnn", "layers": n, "seed": s} for n in (1, 2) for s in (0, 1)))
    assert _sorted_labels(cfgs) == ["1 layer s0", "1 layer s1", "2 layers s0", "2 layers s1"]
