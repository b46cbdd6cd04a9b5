"""The probe against independent oracles.

(a) a reference that steps Keras's own cells in a Python loop and
    differentiates the loss with respect to each step's state tensors; itself
    checked against a slower one that splits Keras's own layer at every
    timestep t and differentiates with respect to the state handed across;
(b) a linear RNN with scalar weight w, where ||dL/dh_t|| = |w|^(T-1-t) ||dL/dh_{T-1}||;
(c) the probe's loss equals model.evaluate's;
(d) the gradient w.r.t. the returned sequence is a different quantity.
"""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner

from seqvg import execpath, kernels
from seqvg.cli import cli
from seqvg.config import RunConfig
from seqvg.models import build_model, compile_model, residual_class
from seqvg.probe import Prober, decay_summary, probe
from seqvg.tasks import get_task, stream


def _chain(model):
    return [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]


def _splittable(layer, width):
    """A copy of ``layer`` that returns its whole sequence and its final state."""
    cfg = {**layer.get_config(), "return_sequences": True, "return_state": True, "name": layer.name + "_ref"}
    twin = type(layer).from_config(cfg)
    twin.build((None, None, width))
    twin.set_weights(layer.get_weights())
    return twin


def _step_through(layer, below):
    """``layer`` (a Keras RNN) run one timestep at a time by calling its own
    cell eagerly: its output and, per step, the state tensors the cell
    returns (h_t, and c_t for LSTM), each the one tensor that the output at
    t and step t+1 read."""
    states = layer.get_initial_state(below.shape[0])
    outs, taken = [], []
    for t in range(below.shape[1]):
        out, states = layer.cell(below[:, t], states, training=False)
        states = list(states) if isinstance(states, (list, tuple)) else [states]
        assert out is states[0]  # Keras's cells return h_t itself as their output
        outs.append(out)
        taken.append(states)
    seq = tf.stack(outs, axis=1)
    return (seq if layer.return_sequences else seq[:, -1]), taken


def reference_probe(model, task, x, y):
    """O(T) oracle: Keras's own cells stepped in a Python loop under one tape.

    The gradient of the loss with respect to each step's state tensor, as a
    node of the graph, is the total derivative through everything that reads
    it: for h_t the output at t and step t+1, for an LSTM's c_t also
    h_t = o_t tanh(c_t) and step t+1. One forward, one backward; nothing of
    the probe's (its loop, taps or seqvg's ops) is used. The loss and dL/dx
    come from the model's own call.
    """
    layers = _chain(model)
    with tf.GradientTape() as tape:
        out = tf.constant(x)
        per_layer = []  # (is LSTM, [[h_t, (c_t)] for each t]) per recurrent layer
        for layer in layers:
            inner = layer.layer if isinstance(layer, residual_class()) else layer
            if not isinstance(inner, keras.layers.RNN):
                out = layer(out)
                continue
            seq, taken = _step_through(inner, out)
            if inner is not layer:  # the Residual wrapper's skip connection, written out
                seq = seq + (out if inner.return_sequences else out[:, -1])
            per_layer.append((isinstance(inner, keras.layers.LSTM), taken))
            out = seq
        loss = task.loss_fn(y, out)
    states = [s for _, taken in per_layer for step in taken for s in step]
    grads = iter(tape.gradient(loss, states, unconnected_gradients=tf.UnconnectedGradients.ZERO))
    h_norms, c_norms = [], []
    for lstm, taken in per_layer:
        norms = np.array([[float(tf.norm(next(grads))) for _ in step] for step in taken])  # (T, states)
        h_norms.append(norms[:, 0])
        if lstm:
            c_norms.append(norms[:, 1])
    with tf.GradientTape() as tape:
        xt = tf.constant(x)
        tape.watch(xt)
        loss = task.loss_fn(y, model(xt))
    gx = tape.gradient(loss, xt).numpy()
    x_norm = np.sqrt((gx**2).sum(axis=(0, 2)))
    return np.array(h_norms), (np.array(c_norms) if c_norms else None), x_norm, float(loss)


def split_reference(model, task, x, y):
    """O(T^2) oracle: one tape per (layer, t), using Keras's own layer loop.

    For LSTM the split gives dL/dc_t along the carry path only; the total
    BPTT derivative adds dL/dh_t * o_t * tanh'(c_t) (h_t = o_t tanh(c_t)),
    with o_t computed here from the layer's weights.
    """
    layers = _chain(model)
    x = tf.constant(x)
    steps = x.shape[1]
    h_norms, c_norms = [], []
    for li, layer in enumerate(layers):
        residual = isinstance(layer, residual_class())
        if residual:
            layer = layer.layer
        if not isinstance(layer, keras.layers.RNN):
            continue
        below = x
        for lower in layers[:li]:
            below = lower(below)
        twin = _splittable(layer, below.shape[-1])
        lstm = isinstance(layer, keras.layers.LSTM)
        hs, cs = [], []
        for t in range(steps):
            seq1, *state = twin(below[:, : t + 1])
            with tf.GradientTape() as tape:
                tape.watch(state)
                parts = [seq1[:, :t], state[0][:, None, :]]
                if t < steps - 1:
                    seq2 = twin(below[:, t + 1 :], initial_state=state)[0]
                    parts.append(seq2)
                seq = tf.concat(parts, axis=1)
                out = seq if layer.return_sequences else seq[:, -1]
                if residual:  # the wrapper's skip connection, written out
                    out = out + (below if layer.return_sequences else below[:, -1])
                for upper in layers[li + 1 :]:
                    out = upper(out)
                loss = task.loss_fn(y, out)
            grads = tape.gradient(loss, state)
            g_h = grads[0]
            hs.append(float(tf.norm(g_h)))
            if lstm:
                g_c = grads[1] if grads[1] is not None else tf.zeros_like(state[1])
                kernel, rec, bias = (w.numpy() for w in layer.cell.weights)
                u = layer.cell.units
                h_prev = seq1[:, t - 1].numpy() if t > 0 else np.zeros_like(state[0].numpy())
                z_o = below[:, t].numpy() @ kernel[:, 3 * u :] + h_prev @ rec[:, 3 * u :] + bias[3 * u :]
                o = 1 / (1 + np.exp(-z_o))
                c_t = state[1].numpy()
                total = g_c.numpy() + g_h.numpy() * o * (1 - np.tanh(c_t) ** 2)
                cs.append(float(np.linalg.norm(total)))
        h_norms.append(hs)
        if lstm:
            c_norms.append(cs)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = task.loss_fn(y, model(x))
    gx = tape.gradient(loss, x).numpy()
    x_norm = np.sqrt((gx**2).sum(axis=(0, 2)))
    return np.array(h_norms), (np.array(c_norms) if c_norms else None), x_norm, float(loss)


CASES = [
    dict(cell="rnn"),
    dict(cell="lstm"),
    dict(cell="gru"),
    dict(cell="irnn"),
    dict(cell="lstm", layers=2),
    dict(cell="gru", layers=2, task="copy", length=6),
    dict(cell="rnn", activation="sigmoid", recurrent_init="glorot"),
    dict(cell="rnn", layer_norm=True),
    dict(cell="irnn", layer_norm=True, layers=2),
    dict(cell="lstm", layers=2, batch_norm=True),
    dict(cell="rnn", layers=3, batch_norm=True, layer_norm=True),
    dict(cell="rnn", layers=3, residual=True),
    dict(cell="lstm", layers=2, residual=True, batch_norm=True),
    dict(cell="gru", layers=2, residual=True, task="copy", length=6),
]


def _case(kw):
    """The case's config, untrained model, task and probe batch (x, y)."""
    cfg = RunConfig(**{"length": 10, "units": 6, **kw}).resolved()
    model = build_model(cfg)
    rng = np.random.default_rng(5)
    for w in model.weights:
        # Untrained norm layers are the identity; give them trained-like values.
        if "batch_norm" in w.path or "gamma" in w.path or "beta" in w.path:
            w.assign(rng.uniform(0.5, 1.5, w.shape).astype(np.float32))
    task = get_task(cfg.task)
    return cfg, model, task, *task.generate(stream(1, 3), 8, cfg.length)


@pytest.mark.parametrize("kw", [dict(cell="lstm", layers=2, residual=True, batch_norm=True), dict(cell="gru"),
                                dict(cell="rnn", layer_norm=True)],
                         ids=lambda kw: "-".join(f"{v}" for v in kw.values()))
def test_step_reference_matches_split_reference(kw):
    """The two oracles agree: the states of Keras's cells stepped one by one
    are those its layer's own loop hands across (the LSTM's c_t with the
    c_t -> h_t term written out), stacked, normalised and residual too."""
    _, model, task, x, y = _case(kw)
    step, split = reference_probe(model, task, x, y), split_reference(model, task, x, y)
    assert (step[1] is None) == (split[1] is None) == (kw["cell"] != "lstm")
    for a, b in zip(step, split):
        if a is not None:
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=0)


@pytest.mark.parametrize("kw", CASES, ids=lambda kw: "-".join(f"{v}" for v in kw.values()))
def test_probe_matches_per_timestep_reference(kw):
    """Both paths: an LSTM or GRU runs seqvg's sequence op where it is built
    (tfops below: the tapped loop), every other cell the tapped loop."""
    cfg, model, task, x, y = _case(kw)
    r = Prober(model, task)(x, y)
    ref_h, ref_c, ref_x, ref_loss = reference_probe(model, task, x, y)
    assert r.loss == pytest.approx(ref_loss, rel=1e-5)
    np.testing.assert_allclose(r.h, ref_h, rtol=1e-4, atol=0)
    np.testing.assert_allclose(r.x, ref_x, rtol=1e-4, atol=0)
    if cfg.cell == "lstm":
        np.testing.assert_allclose(r.c, ref_c, rtol=1e-4, atol=0)
    else:
        assert r.c is None


@pytest.mark.parametrize("kw", [dict(cell="lstm", layers=2, residual=True, batch_norm=True), dict(cell="gru"),
                                dict(cell="rnn")], ids=lambda kw: "-".join(f"{v}" for v in kw.values()))
def test_one_call_probe_is_the_two_call_probe(kw):
    """Where seqvg's ops probe every layer, the gradient pass and seqvg.why's
    statistics are one call (``Prober.one_call``): the numbers of the pass and
    ``StepStats`` called apart, bit for bit."""
    if kernels.op_module() is None:
        pytest.skip(kernels.kernel_status())
    _, model, task, x, y = _case(kw)
    prober = Prober(model, task)
    assert prober.one_call
    one = prober(x, y)
    prober.one_call = False
    two = prober(x, y)
    assert one.loss == two.loss and (one.c is None) == (two.c is None)
    for a, b in [(one.h, two.h), (one.x, two.x), (one.c, two.c), (one.why["jac_sigma"], two.why["jac_sigma"]),
                 *[(one.why["gates"][k], two.why["gates"][k]) for k in two.why["gates"]]]:
        np.testing.assert_array_equal(a, b)
    assert list(one.why["gates"]) == list(two.why["gates"]) and ("sigma_w" in one.why) == ("sigma_w" in two.why)
    if "sigma_w" in two.why:
        np.testing.assert_array_equal(one.why["sigma_w"], two.why["sigma_w"])


@pytest.mark.parametrize("kw", [kw for kw in CASES if kw["cell"] == "lstm" or kw == dict(cell="rnn")],
                         ids=lambda kw: "-".join(f"{v}" for v in kw.values()))
def test_lstm_probe_tfops_while_loop_matches_reference(kw, monkeypatch):
    """The LSTM's (and the tanh RNN's) probe by the tapped loop of
    TensorFlow ops, where seqvg's ops are not built."""
    monkeypatch.setattr(kernels, "op_module", lambda: None)
    test_probe_matches_per_timestep_reference(kw)


@pytest.mark.parametrize("cell", ["lstm", "rnn"])
def test_probe_input_gradient_when_first_layer_is_not_recurrent(cell):
    """A projection before the recurrence: x is not tapped in a loop but
    differentiated directly, and still matches the reference."""
    inp = keras.Input((10, 2))
    h = keras.layers.Dense(5, activation="tanh", name="proj")(inp)
    h = (keras.layers.LSTM if cell == "lstm" else keras.layers.SimpleRNN)(6, name="rec")(h)
    model = keras.Model(inp, keras.layers.Dense(1, name="head")(h))
    task = get_task("adding")
    x, y = task.generate(stream(2, 3), 8, 10)
    r = Prober(model, task)(x, y)
    ref_h, ref_c, ref_x, ref_loss = reference_probe(model, task, x, y)
    assert r.loss == pytest.approx(ref_loss, rel=1e-5)
    np.testing.assert_allclose(r.h, ref_h, rtol=1e-4, atol=0)
    np.testing.assert_allclose(r.x, ref_x, rtol=1e-4, atol=0)
    if cell == "lstm":
        np.testing.assert_allclose(r.c, ref_c, rtol=1e-4, atol=0)


def test_probe_matches_reference_on_trained_model(tiny_run):
    """A model seqvg trained and saved, reloaded from model.keras."""
    run = tiny_run(cell="lstm")  # length 10, probe batch 8, seed 0
    model = keras.saving.load_model(run / "model.keras")
    task = get_task("adding")
    x, y = task.generate(stream(0, 3), 8, 10)
    r = probe(model, task, x, y)
    ref_h, ref_c, _, _ = reference_probe(model, task, x, y)
    np.testing.assert_allclose(r.h, ref_h, rtol=1e-4)
    np.testing.assert_allclose(r.c, ref_c, rtol=1e-4)
    saved = np.load(run / "probes.npz")
    np.testing.assert_allclose(saved["h"][-1], r.h, rtol=1e-5)  # the final probe is this model


def _linear_rnn(w, steps):
    inp = keras.Input((steps, 2))
    h = keras.layers.SimpleRNN(1, activation=None, use_bias=False, name="lin")(inp)
    out = keras.layers.Dense(1, use_bias=False)(h)
    model = keras.Model(inp, out)
    model.layers[1].set_weights([np.array([[1.0], [0.0]], np.float32), np.array([[w]], np.float32)])
    model.layers[2].set_weights([np.array([[1.0]], np.float32)])
    return model


# w=0.5: g_0 ~ 1e-26, whose square underflows in float32; the norm must not.
@pytest.mark.parametrize("w", [0.9, -0.7, 1.05, 0.5])
def test_linear_rnn_analytic_decay(w):
    steps = 80
    task = get_task("adding")
    x, y = task.generate(np.random.default_rng(0), 16, steps)
    r = probe(_linear_rnn(w, steps), task, x, y)
    g = r.h[0].astype(np.float64)
    expected = np.abs(w) ** (steps - 1 - np.arange(steps))
    np.testing.assert_allclose(g / g[-1], expected, rtol=1e-4)
    s = decay_summary(g)
    assert s["underflow"] == 0
    assert s["rate_per_100"] == pytest.approx(100 * np.log10(abs(w)), rel=1e-4)
    assert s["ratio"] == pytest.approx(abs(w) ** (steps - 1), rel=1e-4)
    if abs(w) < 1:
        expected_horizon = int(np.floor(np.log(1e-3) / np.log(abs(w)))) + 1
        assert expected_horizon < steps and s["horizon"] == expected_horizon
    else:
        assert s["horizon"] == steps


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_probe_loss_equals_model_evaluate(cell):
    cfg = RunConfig(cell=cell, task="copy", length=10, units=8).resolved()
    model = build_model(cfg)
    compile_model(model, cfg)
    task = get_task("copy")
    x, y = task.generate(stream(0, 3), 16, 10)
    r = probe(model, task, x, y)
    evaluated = model.evaluate(x, y, batch_size=16, verbose=0)
    assert abs(r.loss - evaluated) / evaluated < 1e-5


def test_returned_sequence_gradient_is_not_the_probe():
    """dL/d(returned sequence) is zero wherever the loss does not read it."""
    cfg = RunConfig(cell="gru", length=12, units=6, layers=2).resolved()
    model = build_model(cfg)
    task = get_task("adding")
    x, y = task.generate(stream(0, 3), 8, 12)
    layers = _chain(model)
    with tf.GradientTape() as tape:
        seq = layers[0](tf.constant(x))  # the bottom layer's returned sequence
        tape.watch(seq)
        loss = task.loss_fn(y, layers[2](layers[1](seq)))
    naive = np.linalg.norm(tape.gradient(loss, seq).numpy(), axis=2)  # per sample
    r = probe(model, task, x, y)
    # The top layer returns only its last step: its naive gradient would be 0
    # for t < T-1, while the probe sees the whole recurrent path.
    top = _chain(model)[1]
    assert not top.return_sequences
    assert (r.h[1][:-1] > 0).all()
    # And even for a layer whose sequence the next layer reads, the two differ.
    assert not np.allclose(np.sqrt((naive**2).sum(axis=0)), r.h[0], rtol=1e-2)


def test_underflow_kept_as_zero_and_counted():
    s = decay_summary(np.array([0.0, 0.0, 1e-30, 1e-10, 1.0]))
    assert s["underflow"] == 2 and s["horizon"] == 1 and s["ratio"] == 0.0
    assert s["rate_per_100"] is not None
    assert decay_summary(np.zeros(5))["rate_per_100"] is None


def test_state_beside_the_output_is_summarised_up_to_its_last_step():
    """A custom cell whose output is computed beside its state (the LRU): the
    state's gradient is exactly 0 at the last step, where nothing follows it;
    the summary reads the curve up to its last positive value."""
    g = np.array([1e-4, 1e-3, 1e-2, 1e-1, 0.0])
    s = decay_summary(g)
    assert s["ratio"] == pytest.approx(1e-3) and s["underflow"] == 0 and s["horizon"] == 4
    assert s["rate_per_100"] == pytest.approx(-100.0)


def test_prober_rejects_wrong_shapes():
    cfg = RunConfig(cell="rnn", length=8, units=4).resolved()
    prober = Prober(build_model(cfg), get_task("adding"))
    x, y = get_task("adding").generate(stream(0, 3), 4, 9)
    with pytest.raises(ValueError, match="shape"):
        prober(x, y)


def test_probe_cli_untrained_json():
    r = CliRunner().invoke(cli, ["probe", "--cell", "lstm", "--length", "30", "--units", "8", "--layers", "2", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert set(d) >= {"loss", "h", "c", "x", "summary"}
    assert len(d["h"]) == 2 and len(d["h"][0]) == 30 and len(d["c"]) == 2 and len(d["x"]) == 30
    assert {"rate_per_100", "horizon", "ratio", "underflow"} <= set(d["summary"])


def test_probe_cli_overflow_is_strict_json_and_said_in_words():
    """relu at gain 50 over 60 steps overflows: --json must still be JSON
    (null, not NaN), and the table says why it is empty."""
    args = ["probe", "--cell", "rnn", "--activation", "relu", "--recurrent-init", "identity", "--recurrent-gain", "50",
            "--length", "60", "--units", "8", "--probe-batch", "4"]
    r = CliRunner().invoke(cli, [*args, "--json"])
    assert r.exit_code == 0, r.output

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    d = json.loads(r.output, parse_constant=refuse)
    assert d["loss"] is None and d["h"][0][0] is None
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert "the model's loss on the probe batch is not finite (NaN/Inf: its activations overflow" in r.output


def test_probe_cli_run_dir_and_data(tiny_run, tmp_path):
    run = tiny_run(cell="gru")  # length 10, probe batch 8, seed 0
    runner = CliRunner()
    r = runner.invoke(cli, ["probe", str(run), "--json"])
    assert r.exit_code == 0, r.output
    from_run = json.loads(r.output)
    saved = np.load(run / "probes.npz")
    np.testing.assert_allclose(from_run["h"], saved["h"][-1], rtol=1e-5)
    # the same batch through `seqvg generate`, fed back with --data
    data = tmp_path / "b.npz"
    assert runner.invoke(cli, ["generate", "adding", "-T", "10", "-n", "8", "--seed", "0", "-o", str(data)]).exit_code == 0
    r2 = runner.invoke(cli, ["probe", str(run), "--data", str(data), "--json"])
    assert json.loads(r2.output)["h"] == from_run["h"]
    table = runner.invoke(cli, ["probe", str(run)])
    assert table.exit_code == 0 and "h layer 1" in table.output and "decay/100" in table.output


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--cell", "gru", "--forget-bias", "3"], "--forget-bias"),
        (["--length", "0"], "--length"),
        (["NO_SUCH_RUN"], "missing"),
    ],
)
def test_probe_cli_bad_input(args, needle):
    r = CliRunner().invoke(cli, ["probe", *args])
    assert r.exit_code == 2, r.output
    assert needle in r.output and "Traceback" not in r.output


def test_probe_cli_data_mismatch(tmp_path):
    data = tmp_path / "b.npz"
    CliRunner().invoke(cli, ["generate", "copy", "-T", "10", "-o", str(data)])
    r = CliRunner().invoke(cli, ["probe", "--length", "10", "--data", str(data)])
    assert r.exit_code == 2 and "copy" in r.output


def _prober_ops(prober, x, y) -> set[str]:
    """The op types of the prober's traced graph, its functions' bodies included."""
    graph = prober._fn.get_concrete_function(tf.cast(x, tf.float32), y).graph.as_graph_def()
    return {n.op for n in list(graph.node) + [n for f in graph.library.function for n in f.node_def]}


@pytest.mark.parametrize("ops", [True, False], ids=["ops", "tfops"])
def test_prober_has_one_path_per_layer(ops, monkeypatch):
    """Guards the choice of path: with seqvg's ops an LSTM is probed by its
    sequence op (no loop in the graph), without them by the tapped while
    loop, whatever the run's length in training steps."""
    if not ops:
        monkeypatch.setattr(kernels, "op_module", lambda: None)
    elif kernels.op_module() is None:
        pytest.skip(kernels.kernel_status())
    task = get_task("adding")
    x, y = (tf.constant(a) for a in task.generate(stream(0, 3), 4, 12))
    for steps in (100, 5000):
        model = build_model(RunConfig(cell="lstm", length=12, units=4, steps=steps).resolved())
        assert bool(_prober_ops(Prober(model, task), x, y) & {"While", "StatelessWhile"}) == (not ops)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_prober_runs_the_sequence_op(cell):
    """Guards that the sequence-op probe path (and so the tests above) is the
    one the Prober takes where the ops are
    built: the training op (a tanh RNN: the RNN op) with its taps and
    without the weight gradient."""
    if kernels.op_module() is None:
        pytest.skip(kernels.kernel_status())
    cfg = RunConfig(cell=cell, length=12, units=4).resolved()
    model, task = build_model(cfg), get_task(cfg.task)
    x, y = (tf.constant(a) for a in task.generate(stream(0, 3), 4, 12))
    name = {"lstm": "SeqvgLstmSeq", "gru": "SeqvgGruSeq", "rnn": "SeqvgRnnSeq"}[cell]
    for prober in (Prober(model, task, execpath.resolve(cfg)), Prober(model, task)):
        graph = prober._fn.get_concrete_function(tf.cast(x, tf.float32), y).graph.as_graph_def()
        nodes = list(graph.node) + [n for f in graph.library.function for n in f.node_def]
        grads = [n for n in nodes if n.op == name + "Grad"]
        assert grads and all(not n.attr["weight_grad"].b and n.attr["with_taps"].b for n in grads)
        assert not {n.op for n in nodes} & {"SeqvgLstmCell", "While", "StatelessWhile"}


def test_probe_batch_with_data_is_a_usage_error(tmp_path):
    """`seqvg probe --data FILE --probe-batch 3` probed all of FILE's 8
    samples and said nothing of the 3 asked for."""
    data = tmp_path / "d.npz"
    r = CliRunner().invoke(cli, ["generate", "adding", "-T", "10", "-n", "8", "-o", str(data)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["probe", "--cell", "rnn", "--length", "10", "--units", "4", "--data", str(data),
                                 "--probe-batch", "3"])
    assert r.exit_code == 2, r.output
    assert (f"Error: Invalid value for '--probe-batch': the probe runs on the samples of --data {data}; drop "
            "--probe-batch") in r.output


def test_data_of_another_task_names_the_file(tmp_path):
    """`seqvg probe --task adding --data copy.npz` said '--data holds copy
    T=10, the model is adding T=10' without the file."""
    data = tmp_path / "c.npz"
    r = CliRunner().invoke(cli, ["generate", "copy", "-T", "10", "-n", "4", "-o", str(data)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["probe", "--cell", "rnn", "--length", "10", "--units", "4", "--data", str(data)])
    assert r.exit_code == 2, r.output
    assert f"Error: --data {data} holds copy T=10, the model is adding T=10" in r.output


def test_probe_of_a_diverged_run_says_it_diverged(tiny_run, tmp_path):
    """A diverged run keeps no model.keras; `seqvg probe RUN` said
    "missing (run status: diverged); only a finished run has a final model",
    though a diverged run is finished (it is not resumed or run again)."""
    import json

    from conftest import copy_run

    run = copy_run(tiny_run(cell="rnn"), tmp_path / "run")
    (run / "model.keras").unlink()
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "status": "diverged", "diverged_at_step": 20}))
    r = CliRunner().invoke(cli, ["probe", str(run)])
    assert r.exit_code == 2, r.output
    assert (f"Error: {run}/model.keras: missing: the run diverged (its loss became NaN/Inf), so it kept no final "
            f"model; its probes up to then are in {run}/probes.npz") in r.output
