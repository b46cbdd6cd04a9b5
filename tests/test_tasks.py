"""Generators follow docs/design.md exactly; baselines match their formulas."""

import math

import numpy as np
import pytest
from click.testing import CliRunner

from seqvg.cli import cli
from seqvg.datasets import read_dataset
from seqvg.generators import COPY_DELIMITER, generate_adding, generate_copy
from seqvg.tasks import get_task, stream


@pytest.mark.parametrize("length", [2, 7, 100])
def test_adding_markers_and_targets(length):
    x, y = generate_adding(np.random.default_rng(0), 500, length)
    assert x.shape == (500, length, 2) and x.dtype == np.float32 and y.shape == (500,)
    markers = x[:, :, 1]
    assert set(np.unique(markers)) <= {0.0, 1.0}
    assert (markers.sum(axis=1) == 2).all()
    half = length // 2
    assert (markers[:, :half].sum(axis=1) == 1).all()
    assert (markers[:, half:].sum(axis=1) == 1).all()
    np.testing.assert_allclose(y, (x[:, :, 0] * markers).sum(axis=1), rtol=1e-6)
    assert (x[:, :, 0] >= 0).all() and (x[:, :, 0] < 1).all()


def test_adding_marker_positions_cover_each_half():
    x, _ = generate_adding(np.random.default_rng(1), 4000, 10)
    pos = np.argwhere(x[:, :, 1] == 1)[:, 1]
    assert set(pos) == set(range(10))


def test_copy_layout_and_targets():
    length = 15
    x, y = generate_copy(np.random.default_rng(0), 300, length)
    assert x.shape == (300, length + 20, 10) and x.dtype == np.float32
    assert y.shape == (300, length + 20)
    assert (x.sum(axis=-1) == 1).all()  # one-hot
    seq = x.argmax(-1)
    data = seq[:, :10]
    assert ((data >= 1) & (data <= 8)).all()
    assert (seq[:, 10 : 10 + length - 1] == 0).all()
    assert (seq[:, 10 + length - 1] == COPY_DELIMITER).all()
    assert (seq[:, -10:] == 0).all()
    assert (y[:, : length + 10] == 0).all()
    np.testing.assert_array_equal(y[:, -10:], data)


def test_adding_baseline_measured():
    task = get_task("adding")
    _, y = task.generate(np.random.default_rng(123), 20000, 50)
    measured = float(np.mean((y - 1.0) ** 2))  # always predict 1
    assert abs(measured - task.baseline(50)) / task.baseline(50) < 0.02
    assert task.baseline(50) == pytest.approx(1 / 6)


@pytest.mark.parametrize("length", [5, 100])
def test_copy_baseline_measured(length):
    """The best memoryless predictor: per-position target frequencies."""
    task = get_task("copy")
    _, y = task.generate(np.random.default_rng(7), 20000, length)
    total = 0.0
    for pos in range(y.shape[1]):
        p = np.bincount(y[:, pos], minlength=10) / len(y)
        total += -np.mean(np.log(p[y[:, pos]]))
    measured = total / y.shape[1]
    formula = 10 * math.log(8) / (length + 20)
    assert task.baseline(length) == pytest.approx(formula)
    assert abs(measured - formula) / formula < 0.02


def test_streams_are_deterministic_and_distinct():
    task = get_task("adding")
    a = task.generate(stream(3, 1, 5), 4, 20)[0]
    b = task.generate(stream(3, 1, 5), 4, 20)[0]
    c = task.generate(stream(3, 1, 6), 4, 20)[0]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_solved_criteria():
    assert get_task("adding").is_solved(0.009) and not get_task("adding").is_solved(0.011)
    assert get_task("copy").is_solved(0.99) and not get_task("copy").is_solved(0.98)
    assert not get_task("adding").is_solved(float("nan"))


def test_generate_cli_roundtrip(tmp_path):
    out = tmp_path / "b.npz"
    r = CliRunner().invoke(cli, ["generate", "copy", "--length", "12", "-n", "5", "--seed", "4", "-o", str(out)])
    assert r.exit_code == 0, r.output
    d = read_dataset(out)
    assert d["task"] == "copy" and d["length"] == 12
    assert d["x"].shape == (5, 32, 10) and d["y"].shape == (5, 32)
    x, y = get_task("copy").generate(stream(4, 3), 5, 12)
    np.testing.assert_array_equal(d["x"], x)


@pytest.mark.parametrize(
    "args",
    [["adding", "--length", "1", "-o", "f.npz"], ["adding", "--length", "10", "-n", "0", "-o", "f.npz"],
     ["no-such-task", "--length", "10", "-o", "f.npz"], ["adding", "-o", "f.npz"]],
)
def test_generate_bad_input(args, tmp_path):
    r = CliRunner().invoke(cli, ["generate", *args])
    assert r.exit_code == 2
    assert "Traceback" not in r.output and "Error" in r.output


def test_atomic_writes_are_readable_by_others(tmp_path):
    import os
    import stat

    from seqvg.rundir import atomic_write_bytes

    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "f.json", b"{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.json").stat().st_mode) == 0o644


def _edited(tmp_path, task: str, **changes) -> str:
    """A dataset of ``task`` (T=12, 4 samples) written by seqvg, then hand-edited."""
    from seqvg.datasets import write_dataset

    src = tmp_path / "src.npz"
    write_dataset(src, task, 12, 4, 0)
    d = dict(np.load(src))
    d.update(changes(d) if callable(changes) else {k: (v(d) if callable(v) else v) for k, v in changes.items()})
    out = tmp_path / "edited.npz"
    np.savez(out, **d)
    return str(out)


@pytest.mark.parametrize("task,changes,message", [
    ("copy", {"y": lambda d: np.full_like(d["y"], 99)}, "y holds 99; copy's targets are class ids 0..9"),
    ("copy", {"y": lambda d: np.full_like(d["y"], -1)}, "y holds -1; copy's targets are class ids 0..9"),
    ("parity", {"y": lambda d: d["y"] * 0 + 0.5}, "y holds 0.5; parity's targets are class ids 0..1"),
    ("parity", {"y": lambda d: np.where(np.arange(4) == 2, np.nan, d["y"])}, "y holds NaN or Inf"),
    ("adding", {"length": np.array([12, 12])}, "length must be a single value, got an array of shape (2,)"),
    ("adding", {"length": np.array("x")}, "length must be an integer, got 'x'"),
    ("adding", {"y": lambda d: d["y"][:2]}, "y has shape (2,), adding T=12 with 4 samples in x needs (4,)"),
    ("copy", {"y": lambda d: d["y"][:, :5]}, "y has shape (4, 5), copy T=12 with 4 samples in x needs (4, 32)"),
    ("adding", {"x": lambda d: d["x"].astype(str)}, "x must be a numeric array, got dtype <U"),
    ("recall", {"task_args": np.array("[1]")}, "bad task_args (expected a JSON object of parameters"),
])
def test_a_hand_edited_dataset_is_refused_naming_what_is_wrong(tmp_path, task, changes, message):
    """Out-of-range or fractional class ids, array-valued parameters, text
    arrays and targets of the wrong shape: each was a TensorFlow or numpy
    traceback, a message without the file, or silently read (2.5 floored to 2)."""
    path = _edited(tmp_path, task, **changes)
    with pytest.raises(ValueError) as e:
        read_dataset(path)
    assert str(e.value).startswith(f"{path}: {message}"), str(e.value)


def test_probe_data_with_class_ids_out_of_range_is_a_usage_error(tmp_path):
    """``seqvg probe --data`` with a class id outside the task's classes was a
    TensorFlow InvalidArgumentError traceback (exit 1)."""
    path = _edited(tmp_path, "copy", y=lambda d: np.full_like(d["y"], 99))
    r = CliRunner().invoke(cli, ["probe", "--task", "copy", "--cell", "rnn", "--length", "12", "--units", "4",
                                 "--data", path])
    assert r.exit_code == 2, r.output
    assert f"Error: {path}: y holds 99; copy's targets are class ids 0..9" in r.output


@pytest.mark.parametrize("task,changes,message", [
    ("recall", {"mask": lambda d: np.zeros_like(d["mask"])},
     "mask is not recall's (recall scores the last 8 steps of each sequence)"),
    ("selective-copy", {"mask": lambda d: d["mask"][:, :5]},
     "mask is not selective-copy's (selective-copy scores the last 16 steps of each sequence)"),
    ("adding", {"mask": np.ones((4, 12), bool)}, "mask is not adding's (adding has no mask)"),
])
def test_a_dataset_whose_mask_is_not_the_tasks_is_refused(tmp_path, task, changes, message):
    """seqvg scores a task's own steps; an edited mask in a --data file was
    read and ignored without a word."""
    path = _edited(tmp_path, task, **changes)
    with pytest.raises(ValueError) as e:
        read_dataset(path)
    assert str(e.value).startswith(f"{path}: {message}"), str(e.value)
