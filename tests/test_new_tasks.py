"""Issue 21's tasks: generated data against their definitions, by independent
code on large samples; baselines measured from the data; --task-arg; MNIST
from a small synthetic mnist.npz (nothing downloads); resume for every task."""

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from seqvg import rundir
from seqvg.cli import cli
from seqvg.config import RunConfig
from seqvg.datasets import read_dataset
from seqvg.tasks import get_task, stream

NEW = ["temporal-order", "selective-copy", "recall", "parity", "smnist", "psmnist"]


@pytest.fixture
def mnist(tmp_path, monkeypatch):
    """A synthetic mnist.npz in Keras's format: random images, balanced labels."""
    rng = np.random.default_rng(5)
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=rng.integers(0, 256, (300, 28, 28), dtype=np.uint8),
             y_train=(np.arange(300) % 10).astype(np.uint8),
             x_test=rng.integers(0, 256, (50, 28, 28), dtype=np.uint8), y_test=(np.arange(50) % 10).astype(np.uint8))
    monkeypatch.setenv("SEQVG_MNIST", str(path))
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def _symbols(x):
    assert (x.sum(-1) == 1).all()  # one-hot
    return x.argmax(-1)


@pytest.mark.parametrize("symbols", [2, 3])
def test_temporal_order_definition(symbols):
    length, n = 50, 6000
    x, y = get_task("temporal-order", {"symbols": symbols}).generate(np.random.default_rng(1), n, length)
    assert x.shape == (n, length, 8) and y.shape == (n,)
    seq = _symbols(x)  # a b c d X Y B E = 0..7
    assert (seq[:, 0] == 6).all() and (seq[:, -1] == 7).all()
    relevant = (seq == 4) | (seq == 5)
    assert (relevant.sum(1) == symbols).all()
    middle = seq[:, 1:-1][~relevant[:, 1:-1]]
    assert set(np.unique(middle)) == {0, 1, 2, 3}
    np.testing.assert_allclose(np.bincount(middle) / middle.size, 0.25, atol=0.01)
    # The windows of H&S 1997 scaled to T = 50: [5, 10], [25, 30] (6b: [5, 10], [17, 22], [33, 38]).
    windows = {2: [(5, 10), (25, 30)], 3: [(5, 10), (17, 22), (33, 38)]}[symbols]
    rows, cols = np.nonzero(relevant)
    cols = cols.reshape(n, symbols)
    for k, (lo, hi) in enumerate(windows):
        assert set(cols[:, k]) == set(range(lo, hi + 1))
    bits = (seq[rows, cols.ravel()] == 5).reshape(n, symbols)  # Y = 1, first position most significant
    np.testing.assert_array_equal(y, (bits * 2 ** np.arange(symbols)[::-1]).sum(1))
    assert np.bincount(y).size == 2 ** symbols


def test_selective_copy_definition():
    length, m, v, n = 30, 5, 7, 4000
    task = get_task("selective-copy", {"tokens": m, "vocab": v})
    x, y = task.generate(np.random.default_rng(2), n, length)
    assert x.shape == (n, length + 2 * m, v) and y.shape == (n, length + 2 * m)
    seq = _symbols(x)
    head = seq[:, : length + m]
    assert ((head != 0).sum(1) == m).all()  # M data tokens, T blanks
    assert set(np.unique(head[head != 0])) == set(range(1, v - 1))
    assert (seq[:, length + m :] == v - 1).all()  # M markers
    np.testing.assert_array_equal(y[:, length + m :], head[head != 0].reshape(n, m))  # in order
    assert (y[:, : length + m] == 0).all()
    # Every one of the T+M slots holds data sometimes.
    assert set(np.nonzero(head)[1]) == set(range(length + m))
    np.testing.assert_array_equal(task.target_mask(length), np.arange(length + 2 * m) >= length + m)


def test_recall_definition():
    length, k, v, n = 6, 4, 12, 3000
    x, y = get_task("recall", {"pairs": k, "vocab": v}).generate(np.random.default_rng(3), n, length)
    assert x.shape == (n, 3 * k + length, v + 1) and y.shape == (n, 3 * k + length)
    seq = _symbols(x)
    keys, values = seq[:, 0 : 2 * k : 2], seq[:, 1 : 2 * k : 2]
    assert (keys < v // 2).all() and (values >= v // 2).all() and (values < v).all()
    for row_k, row_v in zip(keys, values):
        assert len(set(row_k)) == k and len(set(row_v)) == k
    assert (seq[:, 2 * k : 2 * k + length] == v).all()  # the gap: blanks
    queries = seq[:, 2 * k + length :]
    assert (np.sort(queries, 1) == np.sort(keys, 1)).all()  # every key once
    assert len({tuple(q) for q in queries[:, :k]}) > 1  # in random orders
    for i in range(0, n, 97):
        table = dict(zip(keys[i], values[i]))
        assert list(y[i, 2 * k + length :]) == [table[q] for q in queries[i]]
    assert (y[:, : 2 * k + length] == v).all()


def test_parity_definition():
    x, y = get_task("parity").generate(np.random.default_rng(4), 5000, 13)
    assert x.shape == (5000, 13, 1) and set(np.unique(x)) == {0.0, 1.0}
    np.testing.assert_array_equal(y, x[:, :, 0].astype(int).sum(1) % 2)
    assert abs(x.mean() - 0.5) < 0.01


def _entropy_and_mode(y):
    """Loss and accuracy of the best memoryless predictor: per scored step, the targets' frequencies."""
    y = y.reshape(len(y), -1)
    loss = acc = 0.0
    for pos in range(y.shape[1]):
        p = np.bincount(y[:, pos]) / len(y)
        loss -= np.mean(np.log(p[y[:, pos]]))
        acc += p.max()
    return loss / y.shape[1], acc / y.shape[1]


@pytest.mark.parametrize("task,length,args", [
    ("temporal-order", 20, {}), ("temporal-order", 20, {"symbols": 3}), ("selective-copy", 10, {}),
    ("selective-copy", 5, {"tokens": 3, "vocab": 5}), ("recall", 4, {}), ("recall", 4, {"pairs": 3, "vocab": 10}),
    ("parity", 9, {}), ("smnist", 784, {}), ("psmnist", 784, {}),
])
def test_baselines_measured(task, length, args, mnist):
    t = get_task(task, args)
    x, y = t.generate(np.random.default_rng(11), 300 if "mnist" in task else 30000, length)
    mask = t.target_mask(length)
    scored = y[:, mask] if mask is not None else y
    loss, acc = _entropy_and_mode(scored)
    assert abs(loss - t.baseline(length)) / t.baseline(length) < 0.02, (loss, t.baseline(length))
    assert abs(acc - t.baseline_metric(length)) < 0.02 + 0.1 * t.baseline_metric(length)


def test_classic_plateaus_measured():
    """Temporal order: the class given one relevant symbol leaves ln 2; recall: one of the K values, ln K."""
    t = get_task("temporal-order")
    x, y = t.generate(np.random.default_rng(12), 30000, 30)
    first = y // 2  # knowing the first symbol only
    cond = sum(np.mean(first == b) * _entropy_and_mode(y[first == b])[0] for b in (0, 1))
    assert cond == pytest.approx(t.partial_plateau(30), rel=0.01)
    assert t.plateau_metric(30) == 0.5
    r = get_task("recall", {"pairs": 5})
    x, y = r.generate(np.random.default_rng(13), 500, 3)
    values = x.argmax(-1)[:, 1:10:2]
    assert all(set(row) == set(v) for row, v in zip(y[:, -5:], values))  # a guess among the K values: ln K
    assert r.partial_plateau(3) == pytest.approx(math.log(5))


def test_mnist_pixels_and_splits(mnist):
    x, y = get_task("smnist").generate(stream(0, 1, 1), 20, 784)
    flat = mnist["x_train"].reshape(300, 784).astype(np.float32) / 255
    idx = [int(np.nonzero((flat == row).all(1))[0][0]) for row in x[:, :, 0]]
    assert len(set(idx)) == 20  # distinct images of the training split, row-major, in [0, 1]
    np.testing.assert_array_equal(y, mnist["y_train"][idx])
    perm = np.random.default_rng(0).permutation(784)  # psmnist's documented permutation
    xp, yp = get_task("psmnist").generate(stream(0, 1, 1), 20, 784)
    np.testing.assert_array_equal(xp[:, :, 0], x[:, perm, 0])
    np.testing.assert_array_equal(yp, y)
    xt, _ = get_task("smnist").generate(stream(0, 2), 50, 784, split="test")
    test = mnist["x_test"].reshape(50, 784).astype(np.float32) / 255
    assert sorted(int(np.nonzero((test == row).all(1))[0][0]) for row in xt[:, :, 0]) == list(range(50))


def test_mnist_missing_says_where(tmp_path, monkeypatch):
    from seqvg import mnist

    monkeypatch.delenv("SEQVG_MNIST", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))

    def offline():
        raise OSError("no network")

    monkeypatch.setattr(mnist, "_download_mnist", offline)
    r = CliRunner().invoke(cli, ["generate", "smnist", "-T", "784", "-o", str(tmp_path / "m.npz")])
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert str(tmp_path / "kh" / "datasets" / "mnist.npz") in r.output and len(r.output.strip().splitlines()) == 1
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    monkeypatch.setenv("SEQVG_MNIST", str(tmp_path / "bad.npz"))
    r = CliRunner().invoke(cli, ["generate", "smnist", "-T", "784", "-o", str(tmp_path / "m.npz")])
    assert r.exit_code == 1 and "not Keras's mnist.npz" in r.output and "Traceback" not in r.output


def test_task_args_cli_generate_and_help(tmp_path):
    out = tmp_path / "r.npz"
    r = CliRunner().invoke(cli, ["generate", "recall", "-T", "3", "--task-arg", "pairs=2", "--task-arg", "vocab=6",
                                 "-n", "4", "-o", str(out)])
    assert r.exit_code == 0, r.output
    d = read_dataset(out)
    assert d["task_args"] == {"pairs": 2, "vocab": 6} and d["x"].shape == (4, 9, 7)
    with np.load(out) as f:
        np.testing.assert_array_equal(f["mask"], np.broadcast_to(np.arange(9) >= 7, (4, 9)))
        x, _ = get_task("recall", {"pairs": 2, "vocab": 6}).generate(stream(0, 3), 4, 3)
        np.testing.assert_array_equal(f["x"], x)  # the probe batch of seed 0
    for bad in (["--task-arg", "symbols=4"], ["--task-arg", "colour=3"], ["--task-arg", "symbols"],
                ["--task-arg", "symbols=two"], ["-T", "3"]):
        r = CliRunner().invoke(cli, ["train", "--task", "temporal-order", "-T", "20", *bad, "-o", str(tmp_path / "x")])
        assert r.exit_code == 2 and "Traceback" not in r.output, (bad, r.output)
        assert ("--task-arg" in r.output or "--length" in r.output), r.output
    r = CliRunner().invoke(cli, ["train", "--task", "smnist", "-T", "100"])
    assert r.exit_code == 2 and "--length 784" in r.output
    r = CliRunner().invoke(cli, ["tasks"])
    assert r.exit_code == 0
    for name in NEW + ["symbols=2", "tokens=16", "vocab=16", "pairs=8", "vocab=64", "ln" if False else "0.25"]:
        assert name in r.output, name
    assert "symbols=2" in CliRunner().invoke(cli, ["train", "--help"]).output


def test_spec_task_args_table(tmp_path):
    from seqvg.study import parse_spec

    spec = 'task = "temporal-order"\nlength = 20\n[task_args]\nsymbols = 3\n[grid]\ncell = ["rnn", "gru"]\n'
    study = parse_spec(spec, "s.toml", out=tmp_path)
    assert [c.task_args for c in study.configs] == [{"symbols": 3}] * 2
    with pytest.raises(Exception, match="symbols"):
        parse_spec(spec.replace("symbols = 3", "symbols = 9"), "s.toml", out=tmp_path)
    from seqvg.diagnose import train_command

    assert "--task-arg symbols=3" in train_command(study.configs[0])
    assert "--task-arg" not in train_command(RunConfig(task="temporal-order", length=20).resolved())


def _metrics_without_wall(path):
    header, rows = rundir.read_csv(path / "metrics.csv")
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]


@pytest.mark.parametrize("task,length,args", [
    ("temporal-order", 10, {}), ("selective-copy", 3, {"tokens": 2, "vocab": 5}),
    ("recall", 2, {"pairs": 2, "vocab": 4}), ("parity", 5, {}), ("smnist", 784, {}), ("psmnist", 784, {}),
])
def test_batches_depend_on_seed_and_step_only(task, length, args, mnist):
    """What makes resume and determinism hold for every task: training batch s is a
    function of (seed, s) alone, differs between steps and seeds, and the validation
    set and probe batch are fixed by the seed (MNIST: validation from the test split)."""
    from seqvg.tasks import STREAM_PROBE, STREAM_TRAIN, STREAM_VAL, probe_batch

    t = get_task(task, args)
    a = t.generate(stream(7, STREAM_TRAIN, 3), 6, length)
    t.generate(stream(7, STREAM_TRAIN, 2), 6, length)  # drawing another batch first changes nothing
    b = t.generate(stream(7, STREAM_TRAIN, 3), 6, length)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[0], t.generate(stream(7, STREAM_TRAIN, 4), 6, length)[0])
    assert not np.array_equal(a[0], t.generate(stream(8, STREAM_TRAIN, 3), 6, length)[0])
    cfg = RunConfig(task=task, task_args=args, length=length, probe_batch=6, seed=7).resolved()
    np.testing.assert_array_equal(probe_batch(cfg)[0], t.generate(stream(7, STREAM_PROBE), 6, length)[0])
    val = t.generate(stream(7, STREAM_VAL), 6, length, split="test")
    np.testing.assert_array_equal(val[0], t.generate(stream(7, STREAM_VAL), 6, length, split="test")[0])


@pytest.mark.parametrize("task,length,args", [
    ("temporal-order", 10, {"symbols": 3}), ("recall", 2, {"pairs": 2, "vocab": 4}), ("psmnist", 784, {}),
])
def test_resume_matches_uninterrupted(task, length, args, tmp_path, mnist):
    """A run stopped at a checkpoint and resumed ends with the metrics and probes of an
    uninterrupted one, for the three ways a task feeds the loop: one class at the end
    (temporal-order, parity, MNIST), scored steps at the end (recall, selective-copy),
    and data read from a file (MNIST, psmnist's permutation, the test split)."""
    from seqvg.training import train

    cfg = RunConfig(task=task, task_args=args, length=length, cell="rnn", units=4, steps=4, eval_every=2,
                    val_size=8, batch_size=4, probe_batch=2, probe_every=2, early_stop=False).resolved()
    train(cfg, tmp_path / "ref", progress=False)
    out = tmp_path / "run"
    train(RunConfig(**{**cfg.to_dict(), "steps": 2}).resolved(), out, progress=False)
    config = json.loads((out / "config.json").read_text())
    config["config"].update(steps=4, probe_every=2)
    rundir.write_json(out / "config.json", config)
    rundir.write_json(out / "summary.json", {"status": "running"})
    train(None, out, resume=True, progress=False)
    assert _metrics_without_wall(out) == _metrics_without_wall(tmp_path / "ref")
    pr, po = rundir.read_npz(tmp_path / "ref" / "probes.npz"), rundir.read_npz(out / "probes.npz")
    np.testing.assert_array_equal(pr["h"], po["h"])
    np.testing.assert_array_equal(pr["loss"], po["loss"])
    from seqvg.study import Study, results_rows

    row, = results_rows(Study("s", (cfg,), ("ref",), tmp_path, None))  # results.csv's row
    t = get_task(task, args)
    assert row["task_args"] == " ".join(f"{k}={v}" for k, v in sorted(t.params.items()))
    assert row["baseline"] == t.baseline(length) and row["baseline_metric"] == t.baseline_metric(length)
    assert row["solved_criterion"] == f"val {t.metric_name} >= {t.threshold:g}"


def test_probe_loss_is_the_mean_over_scored_steps():
    """The probe differentiates training's loss: for recall, the mean cross-entropy over the K queries only."""
    from seqvg.models import build_model
    from seqvg.probe import probe
    from seqvg.tasks import probe_batch

    cfg = RunConfig(task="recall", task_args={"pairs": 2, "vocab": 4}, length=3, cell="gru", units=4,
                    probe_batch=4).resolved()
    model = build_model(cfg)
    x, y = probe_batch(cfg)
    result = probe(model, get_task(cfg.task, cfg.task_args), x, y)
    logits = np.asarray(model(x), dtype=np.float64)[:, -2:, :]
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    manual = -np.mean(np.take_along_axis(logp, y[:, -2:, None].astype(int), -1))
    assert result.loss == pytest.approx(manual, rel=1e-5)


def _fake_run(tmp_path, cfg, val):
    """A completed, unsolved run built in memory (no training): flat gradient, ``val`` as validation loss."""
    from seqvg.rundir import Run

    length = cfg.seq_len
    rows = [{"step": 100 * i, "loss": v, "metric": 0.5, "val_loss": v, "val_metric": 0.5, "grad_norm": 1.0}
            for i, v in enumerate(val)]
    summary = {"status": "completed", "solved": False, "solved_at_step": None, "steps_done": 100 * len(val),
               "final": {"val_loss": val[-1], "val_metric": 0.5}}
    probes = {"steps": np.array([0, 100]), "h": np.ones((2, 1, length), np.float32),
              "x": np.ones((2, length), np.float32)}
    return Run(tmp_path / "run", {"config": cfg.to_dict()}, summary, list(rows[0]), rows, probes)


@pytest.mark.parametrize("args,words", [({}, "one of the two"), ({"symbols": 3}, "two of the three")])
def test_diagnose_names_the_temporal_order_plateau(tmp_path, args, words):
    """Loss ln 2 / accuracy 0.5: the model that learned one relevant position (6b: two of three)."""
    from seqvg.diagnose import diagnose, explain

    cfg = RunConfig(task="temporal-order", task_args=args, length=50, cell="rnn").resolved()
    run = _fake_run(tmp_path, cfg, [math.log(4)] * 3 + [math.log(2)] * 8)
    plateau = [v.text for v in diagnose(run) if v.key == "plateau"]
    assert plateau and words in plateau[0] and "0.6931" in plateau[0]
    assert words in explain(run).why
    flat = _fake_run(tmp_path, cfg, [math.log(4 if not args else 8)] * 11)
    assert [v.key for v in diagnose(flat)].count("flat") == 1


def test_train_command_carries_task_args():
    """diagnose's remedy commands rebuild the run's config, task parameters included."""
    import shlex

    from seqvg.cli_options import run_config
    from seqvg.cli_runs import train
    from seqvg.diagnose import train_command

    cfg = RunConfig(task="recall", task_args={"pairs": 3}, length=7, cell="gru", steps=50).resolved()
    words = shlex.split(train_command(cfg))
    assert run_config(train.make_context("train", words[2:]).params) == cfg


def test_task_parameters_that_make_the_task_need_no_memory():
    """selective-copy with vocab=3 has one data symbol: the copy needs no
    memory and its "trivial baseline" was loss ln 1 = 0, so any model met it.
    recall with pairs=1 had a partial plateau of ln 1 = 0 ("keeps the values
    but not which key"), which with one key is the solution."""
    with pytest.raises(ValueError, match="--task-arg vocab: must be at least 4, got 3"):
        get_task("selective-copy", {"vocab": 3})
    assert get_task("selective-copy", {"vocab": 4}).baseline(10) == pytest.approx(math.log(2))
    one = get_task("recall", {"pairs": 1, "vocab": 4})
    assert one.partial_plateau(10) is None and one.plateau_metric(10) is None
    assert one.baseline(10) == pytest.approx(math.log(2))
    assert get_task("recall", {"pairs": 2, "vocab": 4}).partial_plateau(10) == pytest.approx(math.log(2))
    r = CliRunner().invoke(cli, ["generate", "selective-copy", "-T", "5", "--task-arg", "vocab=3", "-o", "x.npz"])
    assert r.exit_code == 2 and "--task-arg vocab: must be at least 4, got 3" in r.output, r.output


def test_mnist_sizes_beyond_its_splits_are_refused_before_the_run(mnist, tmp_path):
    """--val-size 60 with a test split of 50 images: the run wrote
    config.json, then failed with `Error: mnist.npz: 60 samples asked of the
    test split, which holds 50; files kept: ... --resume` (exit 1), and that
    resume failed the same way. Now a usage error naming the option, before
    anything is written; --batch-size and --probe-batch (training split) alike."""
    out = tmp_path / "sm"
    base = ["train", "--task", "smnist", "--length", "784", "--units", "4", "--steps", "2", "--eval-every", "2",
            "--batch-size", "4", "--probe-batch", "2", "-q", "--out", str(out)]
    r = CliRunner().invoke(cli, [*base, "--val-size", "60"])
    assert r.exit_code == 2, r.output
    assert ("Error: Invalid value for '--val-size': --val-size 60: smnist draws it as distinct images of MNIST's "
            "test split, which holds 50") in r.output
    assert not out.exists()
    r = CliRunner().invoke(cli, ["probe", "--task", "psmnist", "--length", "784", "--units", "4",
                                 "--probe-batch", "301"])
    assert r.exit_code == 2 and "--probe-batch 301: psmnist draws it as distinct images of MNIST's train split, " \
        "which holds 300" in r.output, r.output
    # generate -n alike (it was `Error: mnist.npz: 301 samples asked of the train split ...`, exit 1).
    r = CliRunner().invoke(cli, ["generate", "smnist", "-T", "784", "-n", "301", "-o", str(tmp_path / "g.npz")])
    assert r.exit_code == 2 and "Invalid value for '-n': smnist draws 301 distinct images of MNIST's train split, " \
        "which holds 300" in r.output, r.output
    assert not (tmp_path / "g.npz").exists()


def test_temporal_order_too_short_names_the_shortest_length():
    """`--length 5 --task-arg symbols=3` said "use a longer --length" and left
    the user to guess; every length from the one named on fits."""
    three = get_task("temporal-order", {"symbols": 3})
    assert three.check_length(5).endswith("use --length 7 or longer")
    assert get_task("temporal-order").check_length(3).endswith("use --length 5 or longer")
    assert all(three.check_length(t) is None for t in range(7, 2000))
