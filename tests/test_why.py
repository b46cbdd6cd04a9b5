"""Gate statistics, step-Jacobian norms, sigma_max(W) and the per-step gain
(seqvg.why) against independent computations."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner

from seqvg.cli import cli
from seqvg.config import RunConfig
from seqvg.models import build_model, recurrent_layers
from seqvg.probe import Prober, probe
from seqvg.tasks import get_task
from seqvg.training import probe_batch, train
from seqvg.why import jacobian_timesteps, step_gain


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def _stats(cfg):
    model = build_model(cfg)
    x, y = probe_batch(cfg)
    return model, x, Prober(model, get_task(cfg.task))(x, y).why


@pytest.mark.parametrize("forget_bias, expected", [(None, _sigmoid(1.0)), (3.0, _sigmoid(3.0))])
def test_lstm_forget_gate_at_init_is_sigmoid_of_its_bias(forget_bias, expected):
    # Keras's LSTM starts with forget bias 1 (unit_forget_bias). At init the
    # pre-activation is that bias plus x W_f + h U_f, which are small (Glorot
    # input weights on inputs in [0, 1], states near 0) and symmetric around
    # 0, so the mean gate is sigmoid(b) up to sigmoid''(b) var / 2: < 0.02.
    cfg = RunConfig(cell="lstm", length=40, units=16, probe_batch=32, gate_init="keras",
                    forget_bias=forget_bias).resolved()
    _, _, why = _stats(cfg)
    forget = why["gates"]["forget"][0]  # (4, T): mean, p10, p50, p90
    assert forget.shape == (4, 40)
    np.testing.assert_allclose(forget[0], expected, atol=0.02)
    np.testing.assert_allclose(forget[2], expected, atol=0.02)
    assert np.all(forget[1] <= forget[2]) and np.all(forget[2] <= forget[3])
    # The input gate's bias is 0: sigmoid(0) = 1/2.
    np.testing.assert_allclose(why["gates"]["input"][0][0], 0.5, atol=0.02)


def test_gru_keep_gate_is_kerases_z():
    # With --chrono the bias of z (Keras: h_t = z h_{t-1} + (1 - z) h~_t) is
    # log U[1, T_max - 1] per unit: the keep gate's mean is near the mean of
    # sigmoid over those biases, far above the 1/2 of 1 - z's complement.
    cfg = RunConfig(cell="gru", length=30, units=16, probe_batch=32, chrono=30).resolved()
    model, _, why = _stats(cfg)
    bias = recurrent_layers(model)[0].cell.bias.numpy()
    expected = _sigmoid(bias[0, :16] + bias[1, :16]).mean()
    assert expected > 0.8
    np.testing.assert_allclose(why["gates"]["keep"][0][0], expected, atol=0.03)


def test_vanilla_dphi_and_sigma_w_against_keras_and_numpy():
    cfg = RunConfig(cell="rnn", length=20, units=12, probe_batch=16, recurrent_init="glorot").resolved()
    model, x, why = _stats(cfg)
    layer = recurrent_layers(model)[0]
    # phi' of tanh from the layer's own returned sequence: 1 - h_t^2.
    seq = keras.layers.RNN(layer.cell, return_sequences=True)(x.astype(np.float32)).numpy()
    np.testing.assert_allclose(why["gates"]["dphi"][0][0], (1 - seq**2).mean(axis=(0, 2)), rtol=1e-5)
    sv = np.linalg.svd(layer.cell.recurrent_kernel.numpy().astype(np.float64), compute_uv=False)
    np.testing.assert_allclose(why["sigma_w"][0], sv[0], rtol=1e-6)


def _explicit_jacobian_norms(layer, x, jac_t):
    """Mean over samples of ||d s_t / d s_{t-1}||_2, from tf.GradientTape.batch_jacobian."""
    cell = layer.cell
    # Keras's RNN starts a cell without get_initial_state from zeros.
    states = (tf.nest.flatten(cell.get_initial_state(batch_size=x.shape[0])) if hasattr(cell, "get_initial_state")
              else [tf.zeros((x.shape[0], int(n))) for n in tf.nest.flatten(cell.state_size)])
    xs = tf.constant(x, tf.float32)
    sizes = [int(s.shape[-1]) for s in states]
    out = {}
    for t in range(x.shape[1]):
        if t in jac_t:
            s = tf.concat(states, axis=1)
            with tf.GradientTape() as tape:
                tape.watch(s)
                _, new = cell(xs[:, t], tf.split(s, sizes, axis=1), training=False)
                new = tf.concat(tf.nest.flatten(new), axis=1)
            jac = tape.batch_jacobian(new, s).numpy().astype(np.float64)
            out[t] = np.mean([np.linalg.norm(j, 2) for j in jac])
        _, states = cell(xs[:, t], states, training=False)
        states = tf.nest.flatten(states)
    return np.array([out[t] for t in jac_t])


@pytest.mark.parametrize(
    "kw",
    [
        dict(cell="rnn"),
        dict(cell="irnn"),
        dict(cell="rnn", layer_norm=True),  # no fast kind: the cell's own call
        dict(cell="lstm", forget_bias=2.0),
        dict(cell="gru"),
        dict(cell="lstm", layers=2),
        dict(cell="lru"),  # generic, not diagonal: 2 x 2 rotations of (re, im)
    ],
)
def test_step_jacobian_norms_match_explicit_jacobians(kw):
    cfg = RunConfig(length=13, units=6, probe_batch=5, seed=3, **kw).resolved()
    model, x, why = _stats(cfg)
    jac_t = jacobian_timesteps(13)
    np.testing.assert_array_equal(why["jac_t"], jac_t)
    assert why["jac_sigma"].shape == (cfg.layers, len(jac_t))
    # Layer 1 reads x; layer 2 reads layer 1's returned sequence.
    inputs = x.astype(np.float32)
    for k, layer in enumerate(recurrent_layers(model)):
        expected = _explicit_jacobian_norms(layer, inputs, jac_t)
        # Power iteration approaches sigma_max from below; at init a step's
        # top singular values lie close together, which slows it: 1%.
        np.testing.assert_allclose(why["jac_sigma"][k], expected, rtol=1e-2)
        assert np.all(why["jac_sigma"][k] <= expected * (1 + 1e-5))
        inputs = keras.layers.RNN(layer.cell, return_sequences=True)(inputs).numpy()


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_step_jacobian_norms_at_128_units(cell):
    """Where the Lanczos estimate's Krylov space (why.KRYLOV_DIM) is smaller
    than the state: within 1% of the explicit Jacobian's norm, and below it,
    at chrono-initialised gates, where the top singular values lie close."""
    from seqvg.why import KRYLOV_DIM

    cfg = RunConfig(cell=cell, length=20, units=128, probe_batch=4, seed=1).resolved()
    model, x, why = _stats(cfg)
    assert KRYLOV_DIM < 128
    expected = _explicit_jacobian_norms(recurrent_layers(model)[0], x.astype(np.float32), jacobian_timesteps(20))
    np.testing.assert_allclose(why["jac_sigma"][0], expected, rtol=1e-2)
    assert np.all(why["jac_sigma"][0] <= expected * (1 + 1e-5))


def test_gate_stats_against_numpy_on_strided_chunks(monkeypatch):
    """Per step mean and np.percentile's 10/50/90th percentiles, from a
    strided view (as of a sequence op's cache) read in chunks of a few
    steps, with and without a transform."""
    from seqvg import why

    rng = np.random.default_rng(4)
    cache = rng.random((23, 3, 5, 40)).astype(np.float32)
    view = cache[:, :, 1]  # (T, blocks, values) not contiguous
    flat = np.ascontiguousarray(view).reshape(23, -1).astype(np.float64)
    want = np.concatenate([flat.mean(axis=1)[None], np.percentile(flat, [10, 50, 90], axis=1)])
    monkeypatch.setattr(why, "CHUNK_VALUES", 250)  # 2 steps a chunk
    np.testing.assert_allclose(why.gate_stats(view), want, rtol=1e-6)
    np.testing.assert_allclose(why.gate_stats(view, lambda h: 1.0 - h * h)[[0, 2]],
                               [(1 - flat**2).mean(axis=1), np.percentile(1 - flat**2, 50, axis=1)], rtol=1e-5)


def test_lanczos_sigma_max_against_numpy_svd():
    from seqvg.stepstats import lanczos_sigma_max

    rng = np.random.default_rng(0)
    n = 24
    mats = rng.standard_normal((6, n, n)).astype(np.float32)
    # A row whose J^T J has two eigenvalues: the Krylov space is invariant
    # after two steps and the estimate must stay exact, not inflate.
    mats[5] = np.diag(np.repeat([0.0, 0.7], n // 2)).astype(np.float32)
    exact = np.linalg.norm(mats.astype(np.float64), 2, axis=(1, 2))
    j = tf.constant(mats)
    jvp = lambda v: tf.einsum("rij,rj->ri", j, v)  # noqa: E731
    vjp = lambda u: tf.einsum("rij,ri->rj", j, u)  # noqa: E731
    v0 = tf.constant(rng.standard_normal((6, n)).astype(np.float32))
    full = lanczos_sigma_max(jvp, vjp, v0, n).numpy()
    np.testing.assert_allclose(full, exact, rtol=1e-4)
    part = lanczos_sigma_max(jvp, vjp, v0, 12).numpy()
    assert np.all(part <= exact * (1 + 1e-5))
    np.testing.assert_allclose(part, exact, rtol=2e-2)
    assert part[5] == pytest.approx(0.7, rel=1e-5)


@pytest.mark.parametrize("cell", ["mingru", "minlstm", "indrnn"])
def test_diagonal_step_jacobians_give_the_exact_norm(cell):
    """Cells whose recurrence is elementwise have a diagonal step Jacobian:
    the probe finds that out (``stepstats.diagonal_sigma``) and gives its
    exact norm, where 12 Lanczos steps on 24 units would only approach it."""
    cfg = RunConfig(cell=cell, length=13, units=24, probe_batch=5, seed=3, layers=2).resolved()
    model, x, why = _stats(cfg)
    inputs = x.astype(np.float32)
    for k, layer in enumerate(recurrent_layers(model)):
        expected = _explicit_jacobian_norms(layer, inputs, jacobian_timesteps(13))
        np.testing.assert_allclose(why["jac_sigma"][k], expected, rtol=1e-6)
        inputs = keras.layers.RNN(layer.cell, return_sequences=True)(inputs).numpy()


def test_diagonal_sigma_tells_diagonal_from_not():
    """Exact max |d| for diagonal rows; refused for a J with one small
    off-diagonal entry, and for a batch where one row's J is not diagonal."""
    from seqvg.stepstats import diagonal_sigma, start_direction

    rng = np.random.default_rng(1)
    n = 16
    d = rng.standard_normal((4, n)).astype(np.float32)
    d[3] = 0.0  # a J that is all zero: diagonal, norm 0
    mats = np.stack([np.diag(row) for row in d])

    def check(m):
        j = tf.constant(m)
        jvp = lambda v: tf.einsum("rij,rj->ri", j, v)  # noqa: E731
        q = start_direction(tf.constant(rng.standard_normal((4, n)).astype(np.float32)))
        diagonal, sigma = diagonal_sigma(jvp, q, jvp(q))
        return bool(diagonal), sigma.numpy()

    ok, sigma = check(mats)
    assert ok
    np.testing.assert_array_equal(sigma, np.abs(d).max(axis=1))
    near = mats.copy()
    near[1, 2, 5] = 1e-4 * np.abs(d[1]).max()
    assert not check(near)[0]
    full = mats.copy()
    full[2] = rng.standard_normal((n, n)).astype(np.float32)
    assert not check(full)[0]


def test_gain_is_the_ratio_of_the_stored_norms(tiny_run):
    run = tiny_run(cell="lstm")  # length 10
    saved = dict(np.load(run / "probes.npz"))
    k = saved["steps"].shape[0]
    assert saved["gate_forget"].shape == (k, 1, 4, 10) and saved["jac_sigma"].shape == (k, 1, len(saved["jac_t"]))
    for key in ("h", "c"):
        g = saved[key].astype(np.float64)
        np.testing.assert_allclose(step_gain(g), g[..., :-1] / g[..., 1:])
    r = CliRunner().invoke(cli, ["probe", str(run), "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    h = np.array(d["h"][0])
    np.testing.assert_allclose(d["gain"]["h"]["layers"][0], h[:-1] / h[1:], rtol=1e-6)
    assert d["gain"]["h"]["t"] == list(range(1, 10))
    assert set(d["gates"]) == {"forget", "input"} and d["recurrent_sigma_max"] is None
    # The saved final probe is the final model's: the same gate statistics.
    np.testing.assert_allclose(d["gates"]["forget"]["layers"][0]["mean"], saved["gate_forget"][-1, 0, 0], rtol=1e-5)
    np.testing.assert_allclose(d["jacobian"]["layers"][0], saved["jac_sigma"][-1, 0], rtol=1e-5)


def test_probe_json_vanilla_keys():
    r = CliRunner().invoke(cli, ["probe", "--cell", "rnn", "--length", "10", "--units", "8", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert set(d["gates"]) == {"dphi"}
    # Orthogonal init: sigma_max(W) = 1.
    assert d["recurrent_sigma_max"]["layers"][0] == pytest.approx(1.0, abs=1e-5)
    assert 0 < d["recurrent_sigma_max"]["times_mean_dphi"][0] <= 1.0


def test_npz_round_trip_and_old_probes_without_why_keys():
    """Runs written before these keys existed read as no rows; new ones round-trip."""
    from seqvg import why

    probes = {"steps": np.arange(2), "h": np.ones((2, 1, 5), np.float32)}
    assert why.from_npz(probes, np.array([True, True])) == []
    assert why.npz_arrays([]) == {}
    cfg = RunConfig(length=5, units=4, probe_batch=2).resolved()
    r = probe(build_model(cfg), get_task("adding"), *probe_batch(cfg))
    back = why.from_npz(why.npz_arrays([r.why, r.why]))
    assert len(back) == 2
    np.testing.assert_array_equal(back[1]["jac_sigma"], r.why["jac_sigma"])


@pytest.mark.parametrize("cell, init", [("rnn", "orthogonal"), ("irnn", "identity"), ("rnn", "glorot")])
def test_recurrent_gain_scales_the_recurrent_matrix(cell, init):
    base = RunConfig(cell=cell, recurrent_init=init, units=16, length=5).resolved()
    scaled = RunConfig(cell=cell, recurrent_init=init, units=16, length=5, recurrent_gain=1.7).resolved()
    w1 = recurrent_layers(build_model(base))[0].cell.recurrent_kernel.numpy().astype(np.float64)
    w = recurrent_layers(build_model(scaled))[0].cell.recurrent_kernel.numpy().astype(np.float64)
    np.testing.assert_allclose(w, 1.7 * w1, rtol=1e-5, atol=1e-7)  # the same draws times G
    if init != "glorot":
        np.testing.assert_allclose(np.linalg.svd(w, compute_uv=False), 1.7, rtol=1e-5)


def test_recurrent_gain_option_recorded_and_refused_for_gated_cells(tmp_path):
    runner = CliRunner()
    r = runner.invoke(cli, ["probe", "--cell", "lstm", "--recurrent-gain", "2", "--length", "5"])
    assert r.exit_code == 2 and "--recurrent-gain" in r.output and "vanilla" in r.output
    r = runner.invoke(cli, ["probe", "--cell", "rnn", "--recurrent-gain", "0", "--length", "5"])
    assert r.exit_code == 2 and "positive" in r.output
    r = runner.invoke(cli, ["probe", "--cell", "rnn", "--recurrent-gain", "0.5", "--length", "5", "--units", "8",
                            "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["recurrent_sigma_max"]["layers"][0] == pytest.approx(0.5, rel=1e-5)
    out = tmp_path / "run"
    r = runner.invoke(cli, ["train", "--cell", "irnn", "--recurrent-gain", "0.9", "--length", "5", "--units", "4",
                            "--steps", "2", "--eval-every", "1", "--val-size", "8", "--probe-batch", "4",
                            "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert json.loads((out / "config.json").read_text())["config"]["recurrent_gain"] == 0.9
    # A config.json from before the option loads with the default.
    assert RunConfig.from_dict({"cell": "rnn"}).recurrent_gain == 1.0


def test_why_pages_draw_the_recorded_numbers(tiny_run):
    import matplotlib.pyplot as plt

    from seqvg import rundir
    from seqvg.report import pages
    from seqvg.report_why import carry_page, gain_page, spectrum_page

    dirs = {}
    for name, kw in {"lstm": dict(cell="lstm"), "rnn": dict(cell="rnn"),
                     "rnn-g2": dict(cell="rnn", recurrent_gain=2.0)}.items():
        dirs[name] = rundir.load_run(tiny_run(**kw))
    lstm, rnn = dirs["lstm"], dirs["rnn"]

    fig = plt.figure()
    carry_page(fig, [lstm, rnn])
    lines = [np.asarray(line.get_ydata(), dtype=np.float64) for ax in fig.axes for line in ax.lines]

    def drawn(values):
        return any(y.shape == np.shape(values) and np.allclose(y, values, equal_nan=True) for y in lines)

    forget_end = lstm.probes["gate_forget"][-1, 0, 0]
    assert drawn(forget_end)  # the forget gate's mean at the end
    h = lstm.probes["h"][0, 0].astype(np.float64)
    assert drawn(h[:-1] / h[1:])  # the init gain
    assert drawn(rnn.probes["sigma_w"][:, 0])
    plt.close(fig)

    fig = plt.figure()
    spectrum_page(fig, [lstm, rnn])
    lines = [np.asarray(line.get_ydata(), dtype=np.float64) for ax in fig.axes for line in ax.lines]
    assert drawn(rnn.probes["sigma_w"][:, 0])
    assert drawn(lstm.probes["jac_sigma"][:, 0].mean(axis=1))
    plt.close(fig)

    # Runs that differ by --recurrent-gain get the ratio-against-G page.
    runs = [rnn, dirs["rnn-g2"]]
    assert [t for t, _ in pages(runs)].count("Spectrum") == 1
    fig = plt.figure()
    gain_page(fig, runs)
    xs = {float(x) for ax in fig.axes for line in ax.lines for x in np.atleast_1d(line.get_xdata())}
    assert {1.0, 2.0} <= xs
    plt.close(fig)

    # A run written before gates were recorded: the carry page says so, no Spectrum page.
    old = {k: v for k, v in lstm.probes.items() if not k.startswith("gate_") and k not in ("jac_t", "jac_sigma")}
    legacy = rundir.Run(lstm.path, lstm.config, lstm.summary, lstm.columns, lstm.metrics, old)
    assert "Spectrum" not in [t for t, _ in pages([legacy])]
    fig = plt.figure()
    carry_page(fig, [legacy])
    assert any("no gate statistics" in t.get_text() for ax in fig.axes for t in ax.texts)
    plt.close(fig)

    # A custom cell's gates are its own: the carry page says that, not "old run".
    config = {**lstm.config, "config": {**lstm.config["config"], "cell": "mingru"}}
    custom = rundir.Run(lstm.path, config, lstm.summary, lstm.columns, lstm.metrics, old)
    fig = plt.figure()
    carry_page(fig, [custom])
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any("a custom cell: seqvg does not know its gates" in t for t in texts)
    assert not any("no gate statistics" in t for t in texts)
    plt.close(fig)


def test_diagnose_explains_from_the_recorded_numbers(tmp_path):
    from seqvg import rundir
    from seqvg.diagnose import diagnose
    from seqvg.why import explain

    from conftest import TINY

    train(RunConfig(**{**TINY, "cell": "lstm", "forget_bias": 3.0}), tmp_path / "lstm", progress=False)
    run = rundir.load_run(tmp_path / "lstm")
    text = explain(run)
    m = float(np.mean(run.probes["gate_forget"][0, 0, 0]))
    assert abs(m - _sigmoid(3.0)) < 0.02
    p90 = float(np.mean(run.probes["gate_forget"][0, 0, 3]))
    assert f"forget gate (the cell state keeps that fraction per step): mean {m:.2f}, 90th percentile {p90:.2f} at init" in text
    assert " over " not in text.split("measured gain")[0]  # the gate is not compounded over the sequence
    assert [v.key for v in diagnose(run)].count("why") == 1
    # A run recorded before these numbers: no explanation, the rest unchanged.
    old = {k: v for k, v in run.probes.items() if k not in ("jac_t", "jac_sigma") and not k.startswith("gate_")}
    legacy = rundir.Run(run.path, run.config, run.summary, run.columns, run.metrics, old)
    assert explain(legacy) is None and "why" not in [v.key for v in diagnose(legacy)]

    train(RunConfig(**{**TINY, "cell": "rnn", "recurrent_gain": 0.5}), tmp_path / "rnn", progress=False)
    run = rundir.load_run(tmp_path / "rnn")
    dphi = float(np.mean(run.probes["gate_dphi"][0, 0, 0]))
    assert f"sigma_max(W) 0.50 x mean phi' {dphi:.2f} = {0.5 * dphi:.2f} at init" in explain(run)


def test_train_command_remakes_the_config():
    """The title page's command for study runs: parsing it gives the same config."""
    from seqvg import cli_runs
    from seqvg.report_text import train_command

    cfg = RunConfig(cell="rnn", length=30, units=8, recurrent_gain=0.5, activation="relu", layer_norm=True,
                    early_stop=False, lr=0.01, seed=2).resolved()
    command = train_command(cfg.to_dict())
    assert command.startswith("seqvg train ") and "--recurrent-gain 0.5" in command and "--no-early-stop" in command
    assert "--probe-every" not in command  # implied by --steps
    seen = {}
    real = cli_runs.run_config

    def capture(kwargs):
        seen["cfg"] = real(kwargs)
        raise SystemExit(0)

    import unittest.mock

    with unittest.mock.patch.object(cli_runs, "run_config", capture):
        CliRunner().invoke(cli, command.split()[1:])
    assert seen["cfg"] == cfg


def test_load_run_refuses_why_arrays_that_disagree(tiny_run, tmp_path):
    from seqvg import rundir

    from conftest import copy_run

    copy_run(tiny_run(cell="gru"), tmp_path / "run")
    probes = dict(np.load(tmp_path / "run" / "probes.npz"))
    assert rundir.load_run(tmp_path / "run").probes["gate_keep"].shape[0] == probes["steps"].shape[0]
    probes["gate_keep"] = probes["gate_keep"][:1]
    probes["steps"] = np.concatenate([probes["steps"], probes["steps"][-1:] + 1])
    probes["h"] = np.concatenate([probes["h"], probes["h"][-1:]])
    probes["x"] = np.concatenate([probes["x"], probes["x"][-1:]])
    rundir.write_npz(tmp_path / "run" / "probes.npz", **probes)
    with pytest.raises(rundir.RunDirError, match="gate or Jacobian arrays"):
        rundir.load_run(tmp_path / "run")
    r = CliRunner().invoke(cli, ["report", str(tmp_path / "run"), "-o", str(tmp_path / "r.pdf")])
    assert r.exit_code != 0 and "Traceback" not in r.output and "probes.npz" in r.output


def test_load_run_refuses_curves_of_another_length(tiny_run, tmp_path):
    """A probes.npz whose curves are not the run's (cut to 5 of its 10
    timesteps, or one layer of a 2-layer run): diagnose took their length
    as the sequence's ("horizon 5/5 steps" of a T=10 run) and the report
    drew them; now corrupt, naming the shapes the run needs."""
    from seqvg import rundir

    from conftest import copy_run

    run = copy_run(tiny_run(cell="rnn"), tmp_path / "run")
    probes = dict(np.load(run / "probes.npz"))
    k = probes["steps"].shape[0]
    rundir.write_npz(run / "probes.npz", **{**probes, "h": probes["h"][:, :, :5]})
    with pytest.raises(rundir.RunDirError, match=rf"corrupt \(h has shape \({k}, 1, 5\), x \({k}, 10\); the "
                       rf"run's 1 layer\(s\) over 10 timesteps need \({k}, 1, 10\) and \({k}, 10\)\)"):
        rundir.load_run(run)
    rundir.write_npz(run / "probes.npz", **{**probes, "h": np.concatenate([probes["h"]] * 2, axis=1)})
    r = CliRunner().invoke(cli, ["diagnose", str(run)])
    assert r.exit_code == 2 and f"Error: {run}/probes.npz: corrupt (h has shape ({k}, 2, 10)" in r.output, r.output
