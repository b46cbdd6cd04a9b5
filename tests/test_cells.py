"""The modern cells (seqvg.cells) against numpy references of their papers' equations."""

from __future__ import annotations

import math

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from seqvg.cells import BUILTIN, load  # noqa: E402

B, T, D, U = 3, 7, 2, 5


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def ref_mingru(w, x):
    kernel, bias = w["kernel"], w["bias"]
    h = np.zeros((x.shape[0], U))
    out = []
    for t in range(x.shape[1]):
        z = _sigmoid(x[:, t] @ kernel[:, :U] + bias[:U])
        cand = x[:, t] @ kernel[:, U:] + bias[U:]
        h = (1 - z) * h + z * cand
        out.append(h)
    return np.stack(out, 1)


def ref_minlstm(w, x):
    kernel, bias = w["kernel"], w["bias"]
    h = np.zeros((x.shape[0], U))
    out = []
    for t in range(x.shape[1]):
        f = _sigmoid(x[:, t] @ kernel[:, :U] + bias[:U])
        i = _sigmoid(x[:, t] @ kernel[:, U : 2 * U] + bias[U : 2 * U])
        cand = x[:, t] @ kernel[:, 2 * U :] + bias[2 * U :]
        h = f / (f + i) * h + i / (f + i) * cand
        out.append(h)
    return np.stack(out, 1)


def ref_indrnn(w, x):
    h = np.zeros((x.shape[0], U))
    out = []
    for t in range(x.shape[1]):
        h = np.maximum(0.0, x[:, t] @ w["kernel"] + w["recurrent_kernel"] * h + w["bias"])
        out.append(h)
    return np.stack(out, 1)


def ref_lru(w, x):
    # Complex arithmetic, as the paper writes it.
    lam = np.exp(-np.exp(w["nu_log"]) + 1j * np.exp(w["theta_log"]))
    gamma = np.exp(w["gamma_log"])
    bmat = w["B_re"] + 1j * w["B_im"]
    cmat = w["C_re"] + 1j * w["C_im"]
    h = np.zeros((x.shape[0], U), dtype=complex)
    out = []
    for t in range(x.shape[1]):
        h = lam * h + gamma * (x[:, t] @ bmat)
        out.append((h @ cmat).real + x[:, t] @ w["D"])
    return np.stack(out, 1)


REFS = {"mingru": ref_mingru, "minlstm": ref_minlstm, "indrnn": ref_indrnn, "lru": ref_lru}


def _layer(name, **kwargs):
    keras.utils.set_random_seed(1)
    layer = keras.layers.RNN(load(name)(U, **kwargs), return_sequences=True)
    layer.build((None, T, D))
    cell = layer.cell
    if name in ("mingru", "minlstm"):
        # Non-zero biases, so the test sees them used in the right place.
        cell.bias.assign(np.random.default_rng(2).normal(size=tuple(cell.bias.shape)))
    if name == "indrnn":
        cell.bias.assign(np.full(U, 0.1))  # most units active, some not
    return layer


def _weights(cell):
    return {v.path.split("/")[-1]: np.asarray(v.numpy(), dtype=np.float64) for v in cell.weights}


def _inputs():
    return np.random.default_rng(0).normal(size=(B, T, D))


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_forward_matches_numpy_reference(name):
    layer = _layer(name)
    x = _inputs()
    got = np.asarray(layer(x.astype(np.float32)))
    want = REFS[name](_weights(layer.cell), x)
    assert got.shape == (B, T, U)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_gradient_matches_finite_differences(name):
    """TF's gradient of sum(R * outputs) w.r.t. every weight tensor, at three
    entries each, against central differences of the float64 numpy reference."""
    import tensorflow as tf

    layer = _layer(name)
    x = _inputs()
    r = np.random.default_rng(3).normal(size=(B, T, U))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.constant(r, tf.float32) * layer(x.astype(np.float32)))
    grads = tape.gradient(loss, layer.cell.weights)
    w0 = _weights(layer.cell)
    rng = np.random.default_rng(4)
    eps = 1e-6
    for var, grad in zip(layer.cell.weights, grads):
        key = var.path.split("/")[-1]
        grad = np.asarray(grad)
        for _ in range(3):
            idx = tuple(int(rng.integers(s)) for s in w0[key].shape)
            plus, minus = dict(w0), dict(w0)
            plus[key], minus[key] = w0[key].copy(), w0[key].copy()
            plus[key][idx] += eps
            minus[key][idx] -= eps
            fd = (np.sum(r * REFS[name](plus, x)) - np.sum(r * REFS[name](minus, x))) / (2 * eps)
            assert grad[idx] == pytest.approx(fd, rel=2e-3, abs=2e-4), (key, idx)


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_saved_model_reloads(name, tmp_path):
    layer = _layer(name)
    model = keras.Sequential([keras.Input((T, D)), layer])
    x = _inputs().astype(np.float32)
    path = tmp_path / "m.keras"
    model.save(path)
    again = keras.saving.load_model(path)
    np.testing.assert_array_equal(np.asarray(again(x)), np.asarray(model(x)))
    assert type(again.layers[0].cell).from_config(layer.cell.get_config()).get_config() == layer.cell.get_config()


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_same_seed_same_weights(name):
    a, b = _weights(_layer(name).cell), _weights(_layer(name).cell)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_indrnn_bound_init_and_constraint():
    """u starts in [M^(-1/T), M^(1/T)] and an optimizer step cannot push |u| past M^(1/T)."""
    import tensorflow as tf

    layer = _layer("indrnn", t_max=50, magnitude=2.0)
    cell = layer.cell
    bound = 2.0 ** (1 / 50)
    u = cell.recurrent_kernel.numpy()
    assert np.all(u >= 1 / bound - 1e-7) and np.all(u <= bound + 1e-7)
    opt = keras.optimizers.SGD(learning_rate=100.0)
    x = np.abs(_inputs()).astype(np.float32)
    with tf.GradientTape() as tape:
        loss = -tf.reduce_sum(layer(x))  # pushes every active u upwards
    grads = tape.gradient(loss, cell.trainable_weights)
    opt.apply_gradients(zip(grads, cell.trainable_weights))
    u = cell.recurrent_kernel.numpy()
    assert np.max(np.abs(u)) == pytest.approx(bound, rel=1e-6)
    with pytest.raises(ValueError, match="magnitude"):
        load("indrnn")(U, magnitude=1.0)
    # --activation reaches the constructor (declared in seqvg_options).
    from seqvg.config import RunConfig
    from seqvg.customcell import make_cell

    made = make_cell(RunConfig(cell="indrnn", activation="tanh", units=U).resolved())
    assert made.get_config()["activation"] == "tanh"


def test_lru_ring_init_and_gamma():
    keras.utils.set_random_seed(0)
    layer = keras.layers.RNN(load("lru")(400, r_min=0.4, r_max=0.9, max_phase=math.pi / 10))
    layer.build((None, T, D))
    w = _weights(layer.cell)
    modulus = np.exp(-np.exp(w["nu_log"]))
    phase = np.exp(w["theta_log"])
    assert modulus.min() >= 0.4 - 1e-6 and modulus.max() <= 0.9 + 1e-6
    assert phase.min() >= 0 and phase.max() <= math.pi / 10 + 1e-6
    # Uniform on the ring: |lambda|^2 is uniform on [r_min^2, r_max^2], mean 0.485.
    assert np.mean(modulus**2) == pytest.approx((0.4**2 + 0.9**2) / 2, abs=0.03)
    np.testing.assert_allclose(np.exp(w["gamma_log"]), np.sqrt(1 - modulus**2), rtol=1e-5)
    with pytest.raises(ValueError, match="r_min"):
        load("lru")(U, r_min=0.9, r_max=0.5)


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_builtin_name_probes_through_the_cli(name):
    """The registered names go through the custom-cell interface: dry-run check,
    model, generic probe (every state, named by the cell's state_names)."""
    import json

    from click.testing import CliRunner

    from seqvg.cli import cli

    result = CliRunner().invoke(cli, ["probe", "--cell", name, "--length", "6", "--units", "4", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output[result.output.index("{"):])
    assert len(out["h"][0]) == 6 and len(out["x"]) == 6
    extra = load(name).state_names[1:]
    assert sorted((out.get("states") or {}).keys()) == sorted(extra)
    if name != "lru":  # output = h: the last step's gradient reaches h directly
        assert out["h"][0][-1] > 0


@pytest.mark.parametrize("name", ["mingru", "minlstm"])
def test_chrono_init_of_the_min_cells(name):
    """--chrono T: the keep factor at init (1 - z, or f') is u / (1 + u), u ~ U[1, T-1],
    as Tallec & Ollivier's chrono init; through the CLI it flattens the init gradient."""
    import json

    from click.testing import CliRunner

    from seqvg.cli import cli

    keras.utils.set_random_seed(0)
    cell = load(name)(200, chrono=50)
    keras.layers.RNN(cell).build((None, T, D))
    b = cell.bias.numpy()
    if name == "mingru":
        u = np.exp(-b[:200])  # b_z = -log u
        keep = 1 - _sigmoid(b[:200])
    else:
        u = np.exp(b[:200])  # b_f = log u, b_i = -log u
        np.testing.assert_allclose(b[200:400], -b[:200])
        f, i = _sigmoid(b[:200]), _sigmoid(b[200:400])
        keep = f / (f + i)
    assert u.min() >= 1 - 1e-5 and u.max() <= 49 + 1e-4 and u.mean() == pytest.approx(25, abs=3)
    np.testing.assert_allclose(keep, u / (1 + u), rtol=1e-5)
    assert np.all(b[-200:] == 0)  # the candidate's bias keeps its initializer
    ratios = []
    for extra in ([], ["--chrono", "20"]):
        args = ["probe", "--cell", name, "--length", "20", "--units", "4", "--json", *extra]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
        ratios.append(json.loads(result.output[result.output.index("{"):])["summary"]["ratio"])
    assert ratios[0] < 1e-4 < 1e-2 < ratios[1]  # 0.5^19 at the paper's init; ~0.08 measured with chrono
