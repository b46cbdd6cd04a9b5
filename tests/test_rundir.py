"""The run-directory contract (seqvg.rundir) on files made here, no training."""

import json
import math
import os

import numpy as np
import pytest

from seqvg import rundir
from seqvg.rundir import RunDirError


def _no_temp_files(d):
    return [p.name for p in d.iterdir() if rundir.is_temp_name(p.name)] == []


def test_atomic_write_replaces_whole_files_and_leaves_no_temp(tmp_path):
    p = tmp_path / "f.bin"
    rundir.atomic_write_bytes(p, b"old")
    rundir.atomic_write_bytes(p, b"new and longer")
    assert p.read_bytes() == b"new and longer"
    assert sorted(q.name for q in tmp_path.iterdir()) == ["f.bin"]


def test_json_round_trip_writes_nan_as_null(tmp_path):
    p = tmp_path / "s.json"
    rundir.write_json(p, {"a": 1.5, "b": math.nan, "c": [np.float32(2.0), math.inf], "d": {"e": None}})
    assert json.loads(p.read_text()) == {"a": 1.5, "b": None, "c": [2.0, None], "d": {"e": None}}
    assert rundir.read_json(p) == {"a": 1.5, "b": None, "c": [2.0, None], "d": {"e": None}}
    assert _no_temp_files(tmp_path)


@pytest.mark.parametrize("text, needle", [(None, "missing"), ('{"a": ', "corrupt JSON"), ("[1, 2]", "expected a JSON object")])
def test_read_json_errors_name_the_file(tmp_path, text, needle):
    p = tmp_path / "s.json"
    if text is not None:
        p.write_text(text)
    with pytest.raises(RunDirError, match=needle) as e:
        rundir.read_json(p)
    assert str(e.value).startswith(str(p))


def test_csv_round_trip_keeps_floats_exactly(tmp_path):
    p = tmp_path / "metrics.csv"
    rows = [{"step": 0, "loss": 0.1 + 0.2, "val_loss": None}, {"step": 10, "loss": 1e-30, "val_loss": math.nan}]
    rundir.write_csv(p, ["step", "loss", "val_loss"], rows)
    cols, back = rundir.read_csv(p)
    assert cols == ["step", "loss", "val_loss"]
    assert [r["step"] for r in back] == [0, 10] and isinstance(back[0]["step"], int)
    assert back[0]["loss"] == 0.1 + 0.2 and back[1]["loss"] == 1e-30  # repr round-trips a float
    assert all(math.isnan(r["val_loss"]) for r in back)


def test_csv_cut_row_is_an_error_or_dropped(tmp_path):
    p = tmp_path / "metrics.csv"
    p.write_text("step,loss\n0,1.0\n10,0.5")
    with pytest.raises(RunDirError, match=r"corrupt at line 3 \(row cut short"):
        rundir.read_csv(p)
    assert [r["step"] for r in rundir.read_csv(p, drop_cut_row=True)[1]] == [0]


@pytest.mark.parametrize("text, needle", [
    ("loss,step\n1,0\n", "no header starting with 'step'"),
    ("step,loss\n0,1,2\n", "line 2 (3 cells, header has 2)"),
    ("step,loss\n0,abc\n", "line 2 (not a number)"),
])
def test_csv_corrupt_rows_name_the_line(tmp_path, text, needle):
    p = tmp_path / "metrics.csv"
    p.write_text(text)
    with pytest.raises(RunDirError) as e:
        rundir.read_csv(p)
    assert needle in str(e.value)


def test_npz_round_trip_and_refusals(tmp_path):
    p = tmp_path / "probes.npz"
    rundir.write_npz(p, steps=np.arange(3), h=np.ones((3, 1, 4), np.float32))
    back = rundir.read_npz(p)
    assert sorted(back) == ["h", "steps"] and back["h"].dtype == np.float32
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(RunDirError, match="pickled Python objects"):
        rundir.read_npz(tmp_path / "obj.npy")
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(RunDirError, match="not an .npz file$"):
        rundir.read_npz(tmp_path / "text.npz")
    with pytest.raises(RunDirError, match="missing"):
        rundir.read_npz(tmp_path / "none.npz")


def _seqvg_run(d):
    d.mkdir()
    rundir.write_json(d / rundir.CONFIG, {"config": {"cell": "rnn"}, "versions": {"seqvg": "0"}})
    rundir.write_csv(d / rundir.METRICS, ["step"], [{"step": 0}])
    (d / rundir.CHECKPOINTS).mkdir()
    rundir.write_npz(d / rundir.CHECKPOINTS / rundir.STATE, step=np.array(0))
    return d


def test_remove_run_deletes_only_seqvg_files(tmp_path):
    run = _seqvg_run(tmp_path / "run")
    with rundir.locked(run):
        pass
    assert rundir.foreign_entries(run) == []
    rundir.remove_run(run)
    assert [p.name for p in run.iterdir()] == [rundir.LOCK]
    mine = _seqvg_run(tmp_path / "mine")
    (mine / "notes.txt").write_text("mine\n")
    (mine / rundir.CHECKPOINTS / "extra.npz").write_bytes(b"")
    assert rundir.foreign_entries(mine) == ["checkpoints/extra.npz", "notes.txt"]
    with pytest.raises(rundir.NotARunError, match="holds checkpoints/extra.npz, notes.txt, not written by seqvg"):
        rundir.remove_run(mine)
    assert (mine / "notes.txt").exists() and (mine / rundir.CONFIG).exists()


def test_data_files_without_a_seqvg_config_are_foreign(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / rundir.METRICS).write_text("step\n0\n")
    assert rundir.foreign_entries(d) == ["(files without a seqvg config.json)"]
    (d / rundir.CONFIG).write_text('{"config": {}}')  # not as seqvg writes it: no versions
    assert rundir.foreign_entries(d) == [rundir.CONFIG]


def test_lock_names_its_holder_and_is_released(tmp_path):
    run = tmp_path / "run"
    assert rundir.lock_holder(run) is None
    with rundir.locked(run):
        assert rundir.lock_holder(run) == f"PID {os.getpid()}"
        with pytest.raises(RunDirError, match=f"in use by PID {os.getpid()}"):
            rundir.check_not_in_use(run)
    assert rundir.lock_holder(run) is None
    rundir.check_not_in_use(run)


def test_check_writable(tmp_path):
    rundir.check_writable(tmp_path / "new" / "deeper" / "r.pdf")  # the nearest existing directory answers
    (tmp_path / "f").write_text("")
    with pytest.raises(OSError, match="not a directory"):
        rundir.check_writable(tmp_path / "f", is_dir=True)
    with pytest.raises(OSError):
        rundir.check_writable("/proc/seqvg-test.pdf")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]
