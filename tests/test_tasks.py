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
