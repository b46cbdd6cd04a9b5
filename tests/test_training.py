"""Training runs: the run-directory contract, determinism, resume, NaN, early stop."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from seqvg import rundir
from seqvg.cli import cli
from seqvg.training import train

from conftest import TINY, copy_run


def _tiny_args(**kw):
    opts = {**TINY, **kw}
    args = []
    for k, v in opts.items():
        args += [f"--{k.replace('_', '-')}", str(v)]
    return args


def _metrics_without_wall(path):
    cols, rows = rundir.read_csv(path / rundir.METRICS)
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]


def test_run_directory_contract(tiny_cfg, tmp_path):
    out = tmp_path / "run"
    summary = train(tiny_cfg(cell="lstm", layers=2), out, progress=False)
    names = {p.name for p in out.iterdir() if not p.name.startswith(".")}
    assert names == {"config.json", "metrics.csv", "probes.npz", "summary.json", "model.keras", "checkpoints"}
    config = json.loads((out / "config.json").read_text())
    assert {"config", "seed", "versions", "device", "command"} <= set(config)
    assert config["config"]["cell"] == "lstm" and config["config"]["probe_every"] == 1
    assert {"tensorflow", "keras", "numpy", "seqvg"} <= set(config["versions"])
    cols, rows = rundir.read_csv(out / "metrics.csv")
    for c in ("step", "loss", "metric", "val_loss", "val_metric", "grad_norm", "wall_s"):
        assert c in cols
    assert "weight_change/lstm_1" in cols and "weight_change/lstm_2" in cols and "weight_change/head" in cols
    assert [r["step"] for r in rows] == [0, 10, 20, 30]
    assert all(r["weight_change/lstm_1"] > 0 for r in rows[1:])
    p = rundir.read_npz(out / "probes.npz")
    assert p["steps"][0] == 0 and p["steps"][-1] == 30
    assert p["h"].shape == (len(p["steps"]), 2, 10) and p["c"].shape == p["h"].shape
    assert p["x"].shape == (len(p["steps"]), 10) and p["h"].dtype == np.float32
    s = json.loads((out / "summary.json").read_text())
    assert s == summary
    assert s["status"] == "completed" and s["solved"] is False and s["solved_at_step"] is None
    assert set(s["final"]) == {"loss", "metric", "val_loss", "val_metric"}
    assert set(s["decay"]) == {"init", "final"}
    assert {"rate_per_100", "horizon", "ratio"} <= set(s["decay"]["init"])
    assert s["final"]["val_loss"] == pytest.approx(rows[-1]["val_loss"])


def test_model_keras_loads_without_seqvg_objects(tiny_cfg, tmp_path):
    import keras

    out = tmp_path / "run"
    train(tiny_cfg(cell="gru", task="copy", chrono=20), out, progress=False)
    model = keras.saving.load_model(out / "model.keras")
    assert model.output_shape == (None, 30, 10)


@pytest.mark.parametrize("cell", ["gru", "lstm"])  # lstm: seqvg's own CPU loop (fastlstm)
def test_same_seed_same_metrics(cell, tiny_cfg, tiny_run, tmp_path):
    """A run trained now equals the session's shared run of the same config,
    trained earlier in this process with other models built in between."""
    shared = tiny_run(cell=cell)
    train(tiny_cfg(cell=cell), tmp_path / "b", progress=False)
    train(tiny_cfg(cell=cell, seed=4), tmp_path / "c", progress=False)
    a, b, c = (_metrics_without_wall(p) for p in (shared, tmp_path / "b", tmp_path / "c"))
    assert a == b
    assert a != c
    pa, pb = rundir.read_npz(shared / "probes.npz"), rundir.read_npz(tmp_path / "b" / "probes.npz")
    np.testing.assert_array_equal(pa["h"], pb["h"])


def test_resume_after_sigkill_matches_uninterrupted(tmp_path):
    """Kill -9 a real process mid-run, resume, compare with a clean run.

    Only the killed run is a process of its own; the reference and the resume
    run in-process (a run's numbers do not depend on the process)."""
    args = _tiny_args(cell="rnn", steps=400, eval_every=20, length=12)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    ref = tmp_path / "ref"
    assert CliRunner().invoke(cli, ["train", *args, "-q", "--out", str(ref)]).exit_code == 0
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "seqvg", "train", *args, "-q", "--out", str(out)], env=env)
    state = out / "checkpoints" / "state.npz"
    deadline = time.time() + 120
    while time.time() < deadline:  # wait for a checkpoint past step 0, then kill
        if state.exists() and int(rundir.read_npz(state)["step"]) >= 100:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_summary = json.loads((out / "summary.json").read_text())
    assert killed_summary["status"] == "running"  # killed before the end: there is something to resume
    r = CliRunner().invoke(cli, ["train", "--resume", "--out", str(out), "-q"])
    assert r.exit_code == 0, r.output
    assert _metrics_without_wall(out) == _metrics_without_wall(ref)
    pr, po = rundir.read_npz(ref / "probes.npz"), rundir.read_npz(out / "probes.npz")
    np.testing.assert_array_equal(pr["steps"], po["steps"])
    np.testing.assert_array_equal(pr["h"], po["h"])
    assert json.loads((out / "summary.json").read_text())["status"] == "completed"


def test_an_lstm_process_runs_one_inter_op_thread_with_the_same_numbers(tmp_path):
    """``seqvg train --cell lstm`` in a process of its own takes one
    TensorFlow inter-op thread (execpath.settle_inter_op; config.json says
    so), and its numbers are those of the same run with TensorFlow's default
    (TF_NUM_INTEROP_THREADS set: seqvg leaves the user's choice alone)."""
    from seqvg import kernels
    from seqvg.execpath import settle_inter_op

    if kernels.op_module() is None:
        pytest.skip(kernels.kernel_status())
    assert not settle_inter_op(["lstm", "rnn"]) and not settle_inter_op([])  # a mixed process keeps the default
    args = _tiny_args(cell="lstm", steps=40)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("TF_NUM_INTEROP_THREADS", None)
    ref, out = tmp_path / "default", tmp_path / "one"
    for where, extra in ((ref, {"TF_NUM_INTEROP_THREADS": "2"}), (out, {})):
        subprocess.run([sys.executable, "-m", "seqvg", "train", *args, "-q", "--out", str(where)],
                       env={**env, **extra}, check=True, timeout=600)
    assert json.loads((out / "config.json").read_text())["numerics"]["inter_op_threads"] == 1
    assert json.loads((ref / "config.json").read_text())["numerics"]["inter_op_threads"] != 1
    assert _metrics_without_wall(out) == _metrics_without_wall(ref)
    pr, po = rundir.read_npz(ref / "probes.npz"), rundir.read_npz(out / "probes.npz")
    assert sorted(pr) == sorted(po)
    for key in pr:
        np.testing.assert_array_equal(pr[key], po[key], err_msg=key)


def test_resume_in_process_from_checkpoint(tiny_cfg, tmp_path):
    """Truncating to an earlier checkpoint and resuming reproduces the run."""
    cfg = tiny_cfg(cell="lstm", steps=40)
    train(cfg, tmp_path / "ref", progress=False)
    out = tmp_path / "run"
    train(cfg.__class__(**{**cfg.to_dict(), "steps": 20}), out, progress=False)
    # Pretend the process died at step 20 of a 40-step run.
    config = json.loads((out / "config.json").read_text())
    config["config"]["steps"] = 40
    config["config"]["probe_every"] = 2
    rundir.write_json(out / "config.json", config)
    rundir.write_json(out / "summary.json", {"status": "running"})
    train(None, out, resume=True, progress=False)
    assert _metrics_without_wall(out) == _metrics_without_wall(tmp_path / "ref")


def test_nan_loss_ends_diverged_keeping_files(tmp_path):
    out = tmp_path / "run"
    r = CliRunner().invoke(
        cli, ["train", *_tiny_args(cell="irnn", optimizer="sgd", lr=1e12, steps=50), "--out", str(out), "-q"]
    )
    assert r.exit_code == 1, r.output
    assert "diverged" in r.output and "Traceback" not in r.output
    s = json.loads((out / "summary.json").read_text())
    assert s["status"] == "diverged" and s["diverged_at_step"] >= 1
    _, rows = rundir.read_csv(out / "metrics.csv")
    assert rows[0]["step"] == 0 and not np.isfinite(rows[-1]["loss"])
    assert (out / "probes.npz").exists() and (out / "config.json").exists()


def test_early_stop_when_solved(tmp_path):
    """Adding with T=2 is solved in a few hundred steps; the run stops there."""
    out = tmp_path / "run"
    s = train(
        __import__("seqvg.config", fromlist=["RunConfig"]).RunConfig(
            length=2, cell="gru", units=16, lr=1e-2, steps=2000, eval_every=25, val_size=128, probe_batch=8
        ),
        out,
        progress=False,
    )
    assert s["solved"] and s["status"] == "completed"
    assert s["steps_done"] == s["solved_at_step"] < 2000
    _, rows = rundir.read_csv(out / "metrics.csv")
    assert rows[-1]["val_metric"] < 0.01 and rows[-2]["val_metric"] >= 0.01


def test_tensorboard_scalars(tiny_cfg, tmp_path):
    """The event files hold metrics.csv's numbers, per step (NaN cells are not logged)."""
    import tensorflow as tf

    out = tmp_path / "run"
    train(tiny_cfg(cell="rnn", tensorboard=True), out, progress=False)
    logged = {}
    for f in (out / "tensorboard").iterdir():
        for event in tf.compat.v1.train.summary_iterator(str(f)):
            for v in event.summary.value:
                logged[v.tag, event.step] = float(tf.make_ndarray(v.tensor))
    _, rows = rundir.read_csv(out / "metrics.csv")
    for row in rows:
        for tag in ("val_loss", "val_metric", "weight_change/head"):
            if np.isfinite(row[tag]):
                assert logged[tag, row["step"]] == pytest.approx(row[tag], rel=1e-6), (tag, row["step"])
    assert ("loss", 0) not in logged and logged["loss", 30] == pytest.approx(rows[-1]["loss"], rel=1e-6)


BAD_OPTIONS = [
    (["--cell", "transformer"], "--cell"),
    (["--length", "1"], "--length"),
    (["--units", "0"], "--units"),
    (["--steps", "-5"], "--steps"),
    (["--lr", "0"], "--lr"),
    (["--clip", "-1"], "--clip"),
    (["--cell", "gru", "--forget-bias", "2"], "--forget-bias"),
    (["--cell", "rnn", "--chrono", "100"], "--chrono"),
    (["--cell", "lstm", "--chrono", "1"], "--chrono"),
    (["--cell", "lstm", "--activation", "relu"], "--activation"),
    (["--cell", "gru", "--recurrent-init", "identity"], "--recurrent-init"),
    (["--task", "no-such-task"], "--task"),
    (["--length", "abc"], "--length"),
    (["--length", "10000000", "--batch-size", "4096"], "GiB"),
]


@pytest.mark.parametrize("args,needle", BAD_OPTIONS)
def test_bad_options_are_usage_errors(args, needle, tmp_path):
    r = CliRunner().invoke(cli, ["train", *args, "--out", str(tmp_path / "r"), "-q"])
    assert r.exit_code == 2, r.output
    assert needle in r.output and "Traceback" not in r.output
    assert not (tmp_path / "r" / "config.json").exists()


def test_existing_run_not_overwritten_and_cli_train_prints_summary(tiny_run, tmp_path):
    out = copy_run(tiny_run(cell="rnn"), tmp_path / "r")
    before = (out / "metrics.csv").read_bytes()
    r = CliRunner().invoke(cli, ["train", *_tiny_args(cell="gru"), "--out", str(out), "-q"])
    assert r.exit_code == 2 and "--overwrite" in r.output
    assert (out / "metrics.csv").read_bytes() == before
    r = CliRunner().invoke(cli, ["train", *_tiny_args(cell="gru"), "--out", str(out), "-q", "--overwrite"])
    assert r.exit_code == 0, r.output
    assert json.loads((out / "config.json").read_text())["config"]["cell"] == "gru"
    assert "status    completed" in r.output and "gradient  init" in r.output  # the closing summary, even with -q


def test_resume_of_completed_run_is_a_no_op(tiny_run, tmp_path):
    out = copy_run(tiny_run(cell="rnn"), tmp_path / "r")
    before = (out / "metrics.csv").read_bytes()
    r = CliRunner().invoke(cli, ["train", "--resume", "--out", str(out), "-q"])
    assert r.exit_code == 0 and "completed" in r.output
    assert (out / "metrics.csv").read_bytes() == before


@pytest.mark.parametrize(
    "setup,needle",
    [
        ("missing", "no such run directory"),
        ("empty", "config.json missing"),
        ("corrupt_config", "corrupt"),
        ("corrupt_checkpoint", "corrupt"),
        ("options", "drop --cell"),
        ("no_out", "--resume needs --out"),
    ],
)
def test_resume_bad_directories(setup, needle, tiny_run, tmp_path):
    out = tmp_path / "r"
    args = ["train", "--resume", "--out", str(out), "-q"]
    if setup == "empty":
        out.mkdir()
    elif setup in ("corrupt_config", "corrupt_checkpoint", "options"):
        copy_run(tiny_run(cell="rnn"), out)
        rundir.write_json(out / "summary.json", {"status": "running"})
        if setup == "corrupt_config":
            (out / "config.json").write_text('{"config": {"cell": ')
        elif setup == "corrupt_checkpoint":
            (out / "checkpoints" / "state.npz").write_bytes(b"PK\x03\x04 half a zip")
        else:
            args += ["--cell", "gru"]
    elif setup == "no_out":
        args = ["train", "--resume", "-q"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 2, r.output
    assert needle in r.output and "Traceback" not in r.output


# The layer-norm RNN at 4 units and 10 steps: its cell is not one seqvg
# steps itself, so each probe's Jacobian estimates are TensorFlow's own
# double-backward Lanczos products, traced op by op once per model, with a
# Krylov dimension of min(12, units); what is checked needs no width or length.
@pytest.mark.parametrize("opts", [dict(cell="rnn", layers=2, layer_norm=True, batch_norm=True, units=4, steps=10,
                                       eval_every=5),
                                  dict(cell="lstm", layers=3, residual=True, forget_bias=2.0)])
def test_model_remedies_train_probe_and_reload(opts, tiny_cfg, tmp_path):
    """--layer-norm, --batch-norm, --residual: trained, probed, saved and reloaded like the rest."""
    from seqvg.models import register_custom_objects
    from seqvg.probe import probe_run

    cfg = tiny_cfg(**opts)
    train(cfg, tmp_path / "a", progress=False)
    register_custom_objects()
    loaded = __import__("keras").saving.load_model(tmp_path / "a" / "model.keras")
    names = [w.path for w in loaded.weights]
    if cfg.layer_norm:
        assert any("gamma" in n for n in names) and any("moving_mean" in n for n in names)
    else:
        assert [type(layer).__name__ for layer in loaded.layers].count("Residual") == 2  # layers 2 and 3
    result, _ = probe_run(tmp_path / "a")
    probes = rundir.read_npz(tmp_path / "a" / rundir.PROBES)
    np.testing.assert_allclose(result.h, probes["h"][-1], rtol=1e-5)
    # Deterministic with the norm layers too (moving statistics included).
    train(cfg, tmp_path / "b", progress=False)
    ck = tmp_path / "b" / rundir.CHECKPOINTS / rundir.STATE
    assert ck.exists()
    assert _metrics_without_wall(tmp_path / "a") == _metrics_without_wall(tmp_path / "b")


@pytest.mark.parametrize("args, message", [
    (["--cell", "lstm", "--layer-norm"], "--layer-norm is built for the vanilla cells"),
    (["--cell", "rnn", "--batch-norm"], "needs --layers 2 or more"),
    (["--cell", "gru", "--residual"], "needs --layers 2 or more"),
])
def test_model_remedy_bad_combinations(args, message, tmp_path):
    result = CliRunner().invoke(cli, ["train", *args, "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and message in result.output
