"""Same config and seed, same numbers, whatever the thread count.

Each thread count runs in a process of its own (TensorFlow's pool size is
fixed once per process): the LSTM and GRU sequence ops (the GRU's with its
probe taps) on their own on 1, 2, 3 and 4 threads, and tiny LSTM and GRU training runs, whose metrics.csv (all columns
but wall_s) and probes.npz must be bit-identical across 1, 2 and 3 threads;
the LSTM's TF-ops
fallback (SEQVG_KERNELS=0, switched in the 1- and 3-thread processes after
their other runs) and a custom cell's XLA-compiled run (mingru) across 1 and
3 threads. 24 units make 12 blocks
in the op's layout, so each of those thread counts is really used.

The 1- and 3-thread processes are each started fresh (their own interpreter,
imports and address layout): the same seed in two fresh processes gives the
same numbers. The 2- and 4-thread processes are forked by the 1-thread one
after its imports and before it runs any TensorFlow op (so before any thread
pool exists; the fork is safe), which saves two TensorFlow imports (about
4 s of CPU each); each sets its own thread count, as a fresh process does.
"""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

WORKER = r"""
import json, os, sys
# [[threads, out, cells], ...]: the first runs in this process, each other
# one in a child forked before this process runs any TensorFlow op.
jobs = json.loads(sys.argv[1])
import numpy as np
import tensorflow as tf
from seqvg import kernels
from seqvg.config import RunConfig
from seqvg.training import train


def run(threads, out, cells):
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    cells = [c for c in cells.split(",") if c]
    if kernels.op_module() is not None:
        rng = np.random.default_rng(0)
        b, t, d, u = 5, 9, 3, 24
        x = tf.constant(rng.normal(size=(b, t, d)).astype(np.float32))
        h0, c0 = (tf.constant(rng.normal(size=(b, u)).astype(np.float32)) for _ in range(2))
        w = [tf.Variable(rng.normal(size=s).astype(np.float32) * 0.3) for s in [(d, 4 * u), (u, 4 * u), (4 * u,)]]
        with tf.GradientTape() as tape:
            tape.watch([x, h0, c0])
            y, h, c = kernels.lstm_seq(x, h0, c0, *w, return_sequences=True)
            loss = tf.reduce_sum(y * y) + tf.reduce_sum(h) + tf.reduce_sum(c * c)
        grads = tape.gradient(loss, [x, h0, c0, *w])
        # The GRU op, and its probe taps (per-block norms summed in block order).
        wg = [tf.Variable(rng.normal(size=s).astype(np.float32) * 0.3) for s in [(d, 3 * u), (u, 3 * u), (2, 3 * u)]]
        taps = tf.zeros([t, 1], tf.float64)
        with tf.GradientTape() as tape:
            tape.watch([x, h0, taps])
            yg, hg = kernels.gru_seq(x, h0, *wg, return_sequences=True, taps=taps)
            loss = tf.reduce_sum(yg * yg) + tf.reduce_sum(hg)
        ggrads = tape.gradient(loss, [x, h0, taps, *wg])
        np.savez(f"{out}/op.npz", *[v.numpy() for v in [y, h, c, *grads, yg, hg, *ggrads]])

    for cell in cells:
        if cell == "mingru":  # XLA, as a run long enough to repay it (execpath.XLA_MIN_WORK) takes it
            from seqvg import execpath
            execpath.XLA_MIN_WORK = 0
        if cell == "lstm-tfops":  # the fallback: seqvg's ops switched off from here on
            os.environ[kernels.ENV_SWITCH] = "0"
            kernels._load.cache_clear()
            assert kernels.op_module() is None
        cfg = RunConfig(cell=cell.split("-")[0], length=12, units=24, steps=30, eval_every=10, val_size=32,
                        probe_every=10, batch_size=16, probe_batch=8, early_stop=False)
        train(cfg, f"{out}/{cell}", progress=False)


children = []
for job in jobs[1:]:
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            run(*job)
            code = 0
        finally:
            os._exit(code)
    children.append(pid)
run(*jobs[0])
for pid in children:
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0, f"a forked job (pid {pid}) failed"
"""


def _run_all(tmp_path, processes):
    """Starts every process at once, each a list of (name, threads, cells)
    jobs (the first run by the process, the others by children it forks);
    waits for all."""
    procs = []
    for jobs in processes:
        for name, _, _ in jobs:
            (tmp_path / name).mkdir()
        spec = json.dumps([[threads, str(tmp_path / name), cells] for name, threads, cells in jobs])
        procs.append((jobs[0][0], subprocess.Popen(
            [sys.executable, "-c", WORKER, spec],
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )))
    for name, proc in procs:
        output, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"{name}:\n{output[-3000:]}"


def _metrics(path):
    with open(path / "metrics.csv", newline="") as f:
        rows = list(csv.reader(f))
    wall = rows[0].index("wall_s")
    return [r[:wall] + r[wall + 1:] for r in rows]


def _assert_same_run(a, b):
    assert _metrics(a) == _metrics(b)
    pa, pb = np.load(a / "probes.npz"), np.load(b / "probes.npz")
    assert sorted(pa.files) == sorted(pb.files)
    for key in pa.files:
        assert np.array_equal(pa[key], pb[key]), key


def test_bit_identical_across_thread_counts(tmp_path):
    # Training runs on 1, 2 and 3 threads; the op alone on 4 as well; the
    # TF-ops fallback after the rest, in the 1- and 3-thread processes.
    # mingru, a custom cell, trains XLA-compiled (1 and 3 threads).
    # Two fresh processes (1 and 3 threads); the 1-thread one forks the 2- and 4-thread ones.
    both = "lstm,gru,mingru,lstm-tfops"
    _run_all(tmp_path, [[("t1", 1, both), ("t2", 2, "lstm,gru"), ("t4", 4, "")], [("t3", 3, both)]])
    for n in (2, 3, 4):
        if (tmp_path / "t1" / "op.npz").exists():
            a, b = np.load(tmp_path / "t1" / "op.npz"), np.load(tmp_path / f"t{n}" / "op.npz")
            for key in a.files:
                assert np.array_equal(a[key], b[key]), (n, key)
        for cell in ("lstm", "gru") if n < 4 else ():
            _assert_same_run(tmp_path / "t1" / cell, tmp_path / f"t{n}" / cell)
    _assert_same_run(tmp_path / "t1" / "lstm-tfops", tmp_path / "t3" / "lstm-tfops")
    _assert_same_run(tmp_path / "t1" / "mingru", tmp_path / "t3" / "mingru")
    mingru = json.loads((tmp_path / "t1" / "mingru" / "config.json").read_text())
    assert mingru["numerics"]["execution_path"]["xla"] is True
    config = json.loads((tmp_path / "t1" / "lstm-tfops" / "config.json").read_text())
    # A training run over 12 timesteps unrolls the TF-ops loop (execpath.UNROLL_MAX).
    assert config["numerics"]["execution_path"] == {"cell": "lstm", "cell_path": "tf-ops", "unroll": True}
    assert config["numerics"]["lstm_path"] == "tf-ops-unrolled"
    # The run is real: it trained, and the probe measured a gradient.
    rows = _metrics(tmp_path / "t1" / "lstm")
    assert len(rows) == 1 + 4 and rows[-1][0] == "30"
    assert np.all(np.load(tmp_path / "t1" / "lstm" / "probes.npz")["h"][:, 0, -1] > 0)


def test_config_records_what_identity_depends_on(tiny_run):
    from seqvg.config import RunConfig
    from seqvg.execpath import resolve

    config = json.loads((tiny_run(cell="lstm") / "config.json").read_text())
    numerics = config["numerics"]
    path = resolve(RunConfig.from_dict(config["config"]).resolved())
    assert numerics["execution_path"] == path.to_dict() and path.cell == "lstm"
    assert numerics["lstm_path"] == path.lstm_path in ("seqvg-op", "tf-ops", "tf-ops-unrolled")
    assert numerics["cpu_isa"]
    assert "thread counts" in numerics["identical_across"]


@pytest.mark.parametrize("cell", ["rnn", "gru"])
def test_no_lstm_no_lstm_path(tiny_run, cell):
    from seqvg import fastlstm

    numerics = json.loads((tiny_run(cell=cell) / "config.json").read_text())["numerics"]
    assert numerics["lstm_path"] is None
    if cell == "rnn":
        assert numerics["execution_path"] == {"cell": None, "cell_path": "keras", "unroll": False}
    if cell == "gru":
        assert numerics["gru_path"] == ("seqvg-op" if fastlstm.fused("float32") else "keras")
