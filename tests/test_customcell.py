"""Custom cells (--cell file.py:Class / module:Class): the generic probe against
an independent per-timestep reference, the run directory, and bad input."""

import json
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner

from seqvg import rundir
from seqvg.cli import cli
from seqvg.config import RunConfig
from seqvg.models import build_model
from seqvg.probe import Prober
from seqvg.study import SpecError, parse_spec
from seqvg.tasks import get_task, stream

CELLS = textwrap.dedent('''
    import keras
    from keras import ops


    class EluCell(keras.layers.Layer):
        """One state, a non-tanh nonlinearity: h = elu(x W + h U + b)."""

        def __init__(self, units, scale=1.0, **kwargs):
            super().__init__(**kwargs)
            self.units, self.scale = units, scale
            self.state_size = units

        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1], self.units), initializer="glorot_uniform")
            self.u = self.add_weight(shape=(self.units, self.units), initializer="orthogonal")
            self.b = self.add_weight(shape=(self.units,), initializer="zeros")

        def call(self, inputs, states):
            h = ops.elu(ops.matmul(inputs, self.w) + self.scale * ops.matmul(states[0], self.u) + self.b)
            return h, [h]

        def get_config(self):
            return {**super().get_config(), "units": self.units, "scale": self.scale}


    class TwoState(keras.layers.Layer):
        """Two states, named: m_t = 0.5 m + tanh(x V); h_t = sigmoid(x W + h U + m_t)."""

        state_names = ("h", "m")

        def __init__(self, units, **kwargs):
            super().__init__(**kwargs)
            self.units = units
            self.state_size = [units, units]

        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1], self.units), initializer="glorot_uniform")
            self.v = self.add_weight(shape=(input_shape[-1], self.units), initializer="glorot_uniform")
            self.u = self.add_weight(shape=(self.units, self.units), initializer="orthogonal")

        def call(self, inputs, states, training=None):
            h, m = states
            m = 0.5 * m + ops.tanh(ops.matmul(inputs, self.v))
            h = ops.sigmoid(ops.matmul(inputs, self.w) + ops.matmul(h, self.u) + m)
            return h, [h, m]

        def get_config(self):
            return {**super().get_config(), "units": self.units}


    class WideCell(keras.layers.Layer):
        """A state twice as wide as units, and an output beside it: s = tanh(x W + s U), y = s[:u] * s[u:]."""

        def __init__(self, units, **kwargs):
            super().__init__(**kwargs)
            self.units = units
            self.state_size = 2 * units
            self.output_size = units

        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1], 2 * self.units), initializer="glorot_uniform")
            self.u = self.add_weight(shape=(2 * self.units, 2 * self.units), initializer="orthogonal")

        def call(self, inputs, states):
            s = ops.tanh(ops.matmul(inputs, self.w) + ops.matmul(states[0], self.u))
            return s[:, : self.units] * s[:, self.units :] + s[:, : self.units], [s]

        def get_config(self):
            return {**super().get_config(), "units": self.units}


    class NotACell:
        pass


    class BadShapes(EluCell):
        def call(self, inputs, states):
            h, _ = super().call(inputs, states)
            return h, [ops.concatenate([h, h], axis=-1)]


    class Raises(EluCell):
        def call(self, inputs, states):
            raise RuntimeError("my cell is broken")


    class BadNames(EluCell):
        state_names = 5


    class BadOptions(EluCell):
        seqvg_options = 5


    class OneOption(EluCell):
        seqvg_options = ("activation")  # a string, not a tuple: one name

        def __init__(self, units, activation="elu", **kwargs):
            super().__init__(units, **kwargs)
            self.activation = activation

        def get_config(self):
            return {**super().get_config(), "activation": self.activation}


    class Float64(EluCell):
        def call(self, inputs, states):
            h, _ = super().call(inputs, states)
            h = ops.cast(h, "float64")
            return h, [h]


    class EagerOnly(EluCell):
        def call(self, inputs, states):
            h, _ = super().call(inputs, states)
            if float(ops.max(h).numpy()) > 1e9:
                h = h * 0
            return h, [h]


    class OneSample(EluCell):
        def call(self, inputs, states):
            h, _ = super().call(inputs, states)
            h = ops.reshape(h, (1, -1))
            return h, [h]
''')


@pytest.fixture
def cells(tmp_path):
    path = tmp_path / "cells.py"
    path.write_text(CELLS)
    return path


def reference(model, task, x, y, output_is_state: bool):
    """O(T^2) oracle on Keras's own RNN loop: split the layer after step t
    and differentiate the loss with respect to every state handed across.

    The output at t is the first state when the cell returns it as its output
    (then its gradient is part of dL/dh_t), else the cell's own output.
    """
    layer = next(lay for lay in model.layers if isinstance(lay, keras.layers.RNN))
    twin = keras.layers.RNN(layer.cell, return_sequences=True, return_state=True)  # the same weights
    x = tf.constant(x)
    steps = x.shape[1]
    norms = []
    for t in range(steps):
        seq1, *state = twin(x[:, : t + 1])
        with tf.GradientTape() as tape:
            tape.watch(state)
            out_t = state[0] if output_is_state else seq1[:, t]
            parts = [seq1[:, :t], out_t[:, None, :]]
            if t < steps - 1:
                parts.append(twin(x[:, t + 1 :], initial_state=state)[0])
            seq = tf.concat(parts, axis=1)
            out = model.get_layer("head")(seq if layer.return_sequences else seq[:, -1])
            loss = task.loss_fn(y, out)
        grads = tape.gradient(loss, state, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        norms.append([float(tf.norm(tf.cast(g, tf.float64))) for g in grads])
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = task.loss_fn(y, model(x))
    gx = tape.gradient(loss, x).numpy().astype(np.float64)
    return np.array(norms).T, np.sqrt((gx**2).sum(axis=(0, 2))), float(loss)


@pytest.mark.parametrize("cls,task,output_is_state", [
    ("EluCell", "adding", True), ("TwoState", "copy", True), ("WideCell", "adding", False),
])
def test_generic_probe_matches_per_timestep_reference(cells, cls, task, output_is_state):
    cfg = RunConfig(cell=f"{cells}:{cls}", task=task, length=6 if task == "copy" else 8, units=5).resolved()
    model = build_model(cfg)
    t = get_task(task)
    x, y = t.generate(stream(1, 3), 6, cfg.length)
    r = Prober(model, t)(x, y)
    ref, ref_x, ref_loss = reference(model, t, x, y, output_is_state)
    assert r.loss == pytest.approx(ref_loss, rel=1e-5)
    np.testing.assert_allclose(r.h[0], ref[0], rtol=1e-4, atol=0)
    np.testing.assert_allclose(r.x, ref_x, rtol=1e-4, atol=0)
    if cls == "TwoState":
        assert r.c is None and set(r.states) == {"m"}
        np.testing.assert_allclose(r.states["m"][0], ref[1], rtol=1e-4, atol=0)
        assert ref[1][:-1].min() > 0 and ref[1][-1] == 0  # the last m feeds nothing
    else:
        assert r.states is None and len(ref) == 1


@pytest.mark.parametrize("cls,layers", [("TwoState", 1), ("EluCell", 2)])
def test_generic_one_call_probe_is_the_two_call_probe(cells, cls, layers):
    """A custom cell's gradient pass and seqvg.why's statistics run as one
    call (``Prober.one_call``, the statistics beside the backward loop): the
    numbers of the pass and ``StepStats`` called apart, bit for bit."""
    cfg = RunConfig(cell=f"{cells}:{cls}", length=9, units=5, layers=layers).resolved()
    model = build_model(cfg)
    t = get_task(cfg.task)
    x, y = t.generate(stream(1, 3), 6, cfg.length)
    prober = Prober(model, t)
    assert prober.one_call
    one = prober(x, y)
    prober.one_call = False
    two = prober(x, y)
    assert one.loss == two.loss
    for a, b in [(one.h, two.h), (one.x, two.x), (one.why["jac_sigma"], two.why["jac_sigma"]),
                 *[(one.states[k], two.states[k]) for k in two.states or {}]]:
        np.testing.assert_array_equal(a, b)
    assert np.all(one.why["jac_sigma"] > 0)


def test_module_cell_is_keras_own_gru_cell():
    """--cell keras.layers:GRUCell takes the module path and the generic probe."""
    cfg = RunConfig(cell="keras.layers:GRUCell", length=8, units=4).resolved()
    model = build_model(cfg)
    t = get_task("adding")
    x, y = t.generate(stream(1, 3), 4, cfg.length)
    r = Prober(model, t)(x, y)
    ref, ref_x, _ = reference(model, t, x, y, True)
    np.testing.assert_allclose(r.h[0], ref[0], rtol=1e-4, atol=0)
    np.testing.assert_allclose(r.x, ref_x, rtol=1e-4, atol=0)


TINY = ["--length", "6", "--units", "4", "--steps", "4", "--eval-every", "2", "--val-size", "8",
        "--batch-size", "4", "--probe-batch", "4", "-q"]


def test_train_probe_resume_from_the_run_directory(cells, tmp_path):
    out = tmp_path / "run"
    runner = CliRunner()
    res = runner.invoke(cli, ["train", "--cell", f"{cells}:TwoState", "--out", str(out), *TINY, "--steps", "2",
                              "--probe-every", "2"])
    assert res.exit_code == 0, res.output
    record = json.loads((out / "cell" / "cell.json").read_text())
    assert (out / "cell" / "cells.py").read_text() == CELLS
    assert record["kind"] == "file" and record["state_names"] == ["h", "m"] and record["get_config"]["units"] == 4
    probes = np.load(out / "probes.npz")
    assert probes["state_m"].shape == probes["h"].shape and "c" not in probes
    # The original changes and then goes: the run's copy still probes and resumes.
    cells.write_text(CELLS.replace("0.5 * m", "0.9 * m"))
    res = runner.invoke(cli, ["probe", str(out), "--json"])
    assert res.exit_code == 0, res.output
    assert "has changed since the run started" in res.output
    saved = json.loads(next(line for line in res.output.splitlines() if line.startswith("{")))
    np.testing.assert_allclose(saved["states"]["m"], probes["state_m"][-1], rtol=1e-5)
    cells.unlink()
    config = json.loads((out / "config.json").read_text())
    config["config"]["steps"] = 4  # as if it had been stopped at step 2 of 4
    (out / "config.json").write_text(json.dumps(config))
    summary = json.loads((out / "summary.json").read_text())
    (out / "summary.json").write_text(json.dumps({**summary, "status": "interrupted"}))
    res = runner.invoke(cli, ["train", "--resume", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "is gone; using the run's copy" in res.output
    # A cell that does not declare that XLA pays for it (execpath.XLA_ATTRIBUTE):
    # Keras's loop, saying why; resumed with a longer budget, on the same path (no note).
    path = json.loads((out / "config.json").read_text())["numerics"]["execution_path"]
    assert path["xla"] is False and path["xla_skipped"] == "TwoState does not declare seqvg_xla = True, that " \
                                                           "XLA pays for it"
    assert "resumes on" not in res.output
    probes = np.load(out / "probes.npz")
    assert list(probes["steps"]) == [0, 2, 4] and probes["state_m"].shape[0] == 3
    res = runner.invoke(cli, ["diagnose", str(out)])
    assert res.exit_code == 0 and "gain of m per step back" in res.output, res.output


def test_a_study_after_its_cell_file_changed(cells, tmp_path, monkeypatch):
    """Finished runs are not re-checked; a started run resumes from its own
    copy; a new run takes the file as it is now (not a copy bound earlier in
    the process); a broken file stops only runs that need it, naming the spec."""
    import hashlib

    from seqvg import customcell

    def fresh():  # each seqvg command is a new process: nothing loaded yet
        customcell._LOADED.clear()
        customcell._CHECKED.clear()

    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "s.toml"
    spec.write_text('name = "s"\ncell = "cells.py:EluCell"\nlength = 6\nunits = 4\nsteps = 4\neval_every = 2\n'
                    'val_size = 8\nbatch_size = 4\nprobe_batch = 4\nseeds = 1\nout = "st"\n')
    runner = CliRunner()
    assert runner.invoke(cli, ["run", str(spec), "-q"]).exit_code == 0
    summary = tmp_path / "st" / "s0" / "summary.json"
    # The original changes (still valid); s0 is marked unfinished; a new seed is added.
    cells.write_text(CELLS.replace("self.units, self.scale = units, scale", "self.units, self.scale = units, 0.9"))
    rundir.write_json(summary, {**json.loads(summary.read_text()), "status": "running"})
    spec.write_text(spec.read_text().replace("seeds = 1", "seeds = 2"))
    fresh()
    res = runner.invoke(cli, ["run", str(spec), "-q"])
    assert res.exit_code == 0, res.output
    old = json.loads((tmp_path / "st" / "s0" / "cell" / "cell.json").read_text())["sha256"]
    new = json.loads((tmp_path / "st" / "s1" / "cell" / "cell.json").read_text())["sha256"]
    assert old == hashlib.sha256(CELLS.encode()).hexdigest()
    assert new == hashlib.sha256(cells.read_bytes()).hexdigest() != old
    # A broken file: the finished study is read again untouched; a new run is refused.
    cells.write_text(CELLS + "\noops(\n")
    fresh()
    res = runner.invoke(cli, ["run", str(spec), "-q"])
    assert res.exit_code == 0, res.output
    spec.write_text(spec.read_text().replace("seeds = 2", "seeds = 3"))
    fresh()
    res = runner.invoke(cli, ["run", str(spec), "-q"])
    assert res.exit_code == 2, res.output
    assert res.output.strip().splitlines()[-1].startswith(f"Error: {spec}: cell: {cells}:EluCell: importing the file "
                                                          f"failed: {cells}:")
    assert not (tmp_path / "st" / "s2").exists()


def test_a_module_cell_gone_since_the_run_is_named_with_where_it_was(tmp_path, monkeypatch):
    """probe RUN and --resume of a run whose module cell no longer imports:
    the message names the run and where the module was, not '--cell'."""
    import sys

    from seqvg import customcell

    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "seqvg_test_gone_mod.py").write_text(CELLS)
    monkeypatch.syspath_prepend(str(tmp_path / "lib"))
    out = tmp_path / "run"
    res = CliRunner().invoke(cli, ["train", "--cell", "seqvg_test_gone_mod:EluCell", "--out", str(out), *TINY])
    assert res.exit_code == 0, res.output
    (tmp_path / "lib" / "seqvg_test_gone_mod.py").unlink()
    monkeypatch.delitem(sys.modules, "seqvg_test_gone_mod")
    customcell._LOADED.clear()  # a new process
    rundir.write_json(out / "summary.json", {**json.loads((out / "summary.json").read_text()), "status": "running"})
    for args in (["probe", str(out)], ["train", "--resume", "--out", str(out)]):
        res = CliRunner().invoke(cli, args)
        assert res.exit_code == 2, res.output
        line = res.output.strip().splitlines()[-1]
        assert line.startswith(f"Error: {out}: the run's cell seqvg_test_gone_mod:EluCell: importing module "
                               "seqvg_test_gone_mod failed: ModuleNotFoundError"), line
        assert f"the run imported it from {tmp_path / 'lib' / 'seqvg_test_gone_mod.py'}: install it again" in line
        assert "--cell" not in line


def test_probe_json_stays_json_when_the_cell_prints(tmp_path):
    """A student's cell that prints (at import, in call) must not break
    `seqvg probe --json | jq`: its output goes to stderr."""
    path = tmp_path / "chatty.py"
    path.write_text(CELLS.replace("class EluCell(keras.layers.Layer):", 'print("loading my cell")\n\n\n'
                                  "class EluCell(keras.layers.Layer):")
                    .replace("        h = ops.elu(", '        print("tracing call")\n        h = ops.elu(', 1))
    res = CliRunner().invoke(cli, ["probe", "--cell", f"{path}:EluCell", "--length", "6", "--units", "4",
                                   "--probe-batch", "4", "--json"])
    assert res.exit_code == 0, res.output
    assert set(json.loads(res.stdout)) >= {"loss", "h", "x"}
    assert "loading my cell" in res.stderr and "tracing call" in res.stderr


def test_cell_arg_and_declared_options(cells, tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["probe", "--cell", f"{cells}:EluCell", "--cell-arg", "scale=0.5", "--length", "6",
                              "--units", "4", "--probe-batch", "4", "--json"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli, ["probe", "--cell", f"{cells}:EluCell", "--activation", "relu"])
    assert res.exit_code == 2 and "--activation works inside a cell's equations" in res.output
    assert "seqvg_options" in res.output and "cells.py:EluCell" in res.output


@pytest.mark.parametrize("spec,extra,needle", [
    ("missing.py:EluCell", [], "missing.py: no such file"),
    ("{cells}:Nope", [], "has no Nope"),
    ("{cells}:NotACell", [], "not a Keras RNN cell"),
    ("{cells}:BadShapes", [], "call returned states of shapes [(1, 8)]"),
    ("{cells}:Raises", [], "RuntimeError: my cell is broken"),
    ("{cells}:BadNames", [], "cells.py:BadNames: state_names must be a tuple of names, e.g. (\"h\", \"m\"), got 5"),
    ("{cells}:BadOptions", [], "cells.py:BadOptions: seqvg_options must be a tuple of names"),
    ("{cells}:Float64", [], "call returned float64, float64 (output, then states) for float32"),
    ("{cells}:EluCell", ["--cell-arg", 'dtype="float64"'], "call returned float64"),
    ("{cells}:EagerOnly", [], "traced as a graph (as training runs it), on 2 samples: {cells}:"),
    ("{cells}:EagerOnly", [], "AttributeError: 'SymbolicTensor' object has no attribute 'numpy'"),
    ("{cells}:OneSample", [], "traced as a graph (as training runs it), on 2 samples: ValueError"),
    ("{cells}:EluCell", ["--cell-arg", "scale=1979-05-27"], "cannot be stored in config.json"),
    ("{cells}:EluCell", ["--cell-arg", "scale=1e400"], "scale=inf: not a finite number; config.json (JSON) holds"),
    ("{cells}:EluCell", ["--cell-arg", "scale=[1.0, nan]"], "scale=[1.0, nan]: not a finite number"),
    ("{cells}:EluCell", ["--cell-arg", "nope=1"], "Unrecognized keyword arguments passed to EluCell"),
    ("{cells}:EluCell", ["--forget-bias", "2"], "--forget-bias works inside a cell's equations"),
    ("{broken}:EluCell", [], "broken.py:3: ZeroDivisionError"),
    ("{syntax}:EluCell", [], "syntax.py:1: SyntaxError"),
    ("no_such_module_xyz:Cell", [], "No module named 'no_such_module_xyz'"),
    ("keras.layers:GRU", [], "keras.layers:GRU: a recurrent layer, not a cell; give the cell it runs (e.g. "
                             "keras.layers:GRUCell)"),
    ("cells.py", [], "give your own as package.module:Class"),
])
def test_bad_cells_are_one_line_usage_errors_and_write_nothing(cells, tmp_path, spec, extra, needle):
    (tmp_path / "broken.py").write_text("import keras\n\nx = 1 / 0\n")
    (tmp_path / "syntax.py").write_text("def (:\n")
    spec = spec.format(cells=cells, broken=tmp_path / "broken.py", syntax=tmp_path / "syntax.py")
    needle = needle.format(cells=cells)
    out = tmp_path / "runs" / "x"
    res = CliRunner().invoke(cli, ["train", "--cell", spec, "--out", str(out), *TINY, *extra])
    assert res.exit_code == 2, res.output
    message = res.output.strip().splitlines()[-1]
    assert needle in message, message
    assert "Traceback" not in res.output
    if ":" in spec:
        assert spec.rpartition(":")[2] in message or "--cell-arg" in message
    assert not (tmp_path / "runs").exists()


def test_a_cell_file_importing_a_sibling_says_it_runs_on_its_own(tmp_path):
    (tmp_path / "seqvg_test_helpers_xyz.py").write_text("SCALE = 0.5\n")
    (tmp_path / "mycell.py").write_text("from seqvg_test_helpers_xyz import SCALE\n" + CELLS)
    res = CliRunner().invoke(cli, ["probe", "--cell", f"{tmp_path / 'mycell.py'}:EluCell", "--length", "6"])
    assert res.exit_code == 2, res.output
    assert res.output.strip().splitlines()[-1].endswith(
        "No module named 'seqvg_test_helpers_xyz'; seqvg_test_helpers_xyz is beside the file, but a cell file runs on "
        "its own (a run keeps a copy of that one file): put what it needs into it, or install that module or add its "
        "directory to PYTHONPATH")


def test_seqvg_options_as_one_string_declares_that_option(cells):
    res = CliRunner().invoke(cli, ["probe", "--cell", f"{cells}:OneOption", "--activation", "relu", "--length", "6",
                                   "--units", "4", "--probe-batch", "4"])
    assert res.exit_code == 0, res.output


def test_a_file_given_as_a_module_is_refused_with_the_spec_that_works(cells, tmp_path, monkeypatch):
    """`--cell cells:EluCell` beside cells.py: the seqvg command does not
    import from the working directory; the message gives the file form."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "seqvg_test_local_cell_xyz.py").write_text(CELLS)
    res = CliRunner().invoke(cli, ["probe", "--cell", "seqvg_test_local_cell_xyz:EluCell", "--length", "6"])
    assert res.exit_code == 2, res.output
    assert res.output.strip().splitlines()[-1].endswith(
        "No module named 'seqvg_test_local_cell_xyz'; seqvg_test_local_cell_xyz.py is here: give it as "
        "seqvg_test_local_cell_xyz.py:EluCell (a module must be installed or on PYTHONPATH)")


def test_spec_cell_path_is_relative_to_the_spec(cells, tmp_path):
    text = 'cell = "cells.py:EluCell"\ncell_args = {scale = 0.5}\nlength = 8\n[grid]\nunits = [4, 5]\n'
    study = parse_spec(text, str(tmp_path / "study.toml"))
    assert {c.cell for c in study.configs} == {f"{cells}:EluCell"}
    assert study.configs[0].cell_args == {"scale": 0.5}
    assert study.run_names[0].startswith("units4")
    study = parse_spec('cell_args = {scale = 0.5}\n[grid]\ncell = ["gru", "cells.py:EluCell"]\n',
                       str(tmp_path / "s.toml"))
    assert [n.split("-")[0] for n in study.run_names] == ["gru", "EluCell"]
    assert [c.cell_args for c in study.configs] == [{}, {"scale": 0.5}]  # the custom cell's arguments
    with pytest.raises(SpecError, match="s.toml:1: cell"):
        parse_spec('cell = "x:1bad"\n', str(tmp_path / "s.toml"))


def test_readme_example_cell_passes_the_checks_and_takes_its_declared_option():
    from pathlib import Path

    from seqvg.customcell import check_cell, make_cell

    example = Path(__file__).resolve().parents[1] / "docs" / "examples" / "my_gru.py"
    cfg = RunConfig(cell=f"{example}:MyGRU", units=4, activation="relu", cell_args={"keep_bias": 1.0}).resolved()
    check_cell(cfg)
    cell = make_cell(cfg)
    assert cell.keep_bias == 1.0 and cell.activation is keras.activations.relu


def test_a_registered_name_takes_the_custom_cell_path(cells, monkeypatch):
    from seqvg import config
    from seqvg.config import default_run_name
    from seqvg.customcell import check_cell, parse

    monkeypatch.setitem(config.CELL_REGISTRY, "elu", f"{cells}:EluCell")
    cfg = RunConfig(cell="elu", units=4, length=6, cell_args={"scale": 0.5}).resolved()
    assert cfg.cell == "elu" and default_run_name(cfg) == "adding-elu-T6-s0"
    assert parse("elu").class_name == "EluCell"
    check_cell(cfg)
    layer = build_model(cfg).get_layer("elu_1")
    assert type(layer.cell).__name__ == "EluCell" and layer.cell.scale == 0.5


def test_outside_remedies_work_with_a_custom_cell(cells):
    """--layers, --residual, --batch-norm, --clip and the optimizers act outside
    the cell: a stacked custom cell trains, and the probe measures the model
    Keras runs (its forward loss is the model's own)."""
    from seqvg.training import Trainer

    cfg = RunConfig(cell=f"{cells}:TwoState", length=6, units=4, layers=2, residual=True, batch_norm=True,
                    clip=1.0, optimizer="rmsprop", batch_size=4).resolved()
    trainer = Trainer(cfg)
    loss, _, gnorm = trainer.train_batch(1)
    assert np.isfinite(loss) and np.isfinite(gnorm)
    t = get_task("adding")
    x, y = t.generate(stream(1, 3), 4, cfg.length)
    r = Prober(trainer.model, t)(x, y)
    assert r.loss == pytest.approx(float(t.loss_fn(y, trainer.model(x, training=False))), rel=1e-5)
    assert r.h.shape == r.states["m"].shape == (2, cfg.length) and (r.h > 0).all()


@pytest.mark.parametrize("spec", ["{cells}:EluCell", "mingru"])
def test_an_argument_the_cell_does_not_take_is_blamed_on_cell_arg(cells, tmp_path, spec):
    """A constructor that refuses a --cell-arg: click names --cell-arg, not
    --cell (a shipped cell's name was blamed as if it were unknown)."""
    res = CliRunner().invoke(cli, ["train", "--cell", spec.format(cells=cells), "--cell-arg", "nope=1",
                                   "--out", str(tmp_path / "x"), *TINY])
    assert res.exit_code == 2, res.output
    line = res.output.strip().splitlines()[-1]
    assert line.startswith("Error: Invalid value for '--cell-arg': "), line
    assert "Unrecognized keyword arguments" in line and "nope" in line
    assert not (tmp_path / "x").exists()


def test_a_class_named_outside_ascii_trains_probes_and_reloads(tmp_path):
    """Keras names a cell after its class (Zellé -> zellé), which TensorFlow
    refused as a name scope in a graph: the run failed its check with
    "'zellé_2' is not a valid scope name". The cell's and the layers' names
    are now made scope-safe (accents dropped); the run dir keeps the class."""
    from seqvg.config import scope_name

    assert scope_name("zellé") == "zelle" and scope_name("gru") == "gru" and scope_name("My.Cell-2") == "My.Cell-2"
    assert scope_name("ячейка") == "cell______" and scope_name("_x y") == "cell_x_y"
    path = tmp_path / "zelle.py"
    path.write_text(CELLS + "\n\nclass Zellé(EluCell):\n    pass\n", encoding="utf-8")
    out = tmp_path / "run"
    res = CliRunner().invoke(cli, ["train", "--cell", f"{path}:Zellé", "--out", str(out), *TINY])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "config.json").read_text())["config"]["cell"].endswith(":Zellé")
    res = CliRunner().invoke(cli, ["probe", str(out), "--json"])  # reloads model.keras
    assert res.exit_code == 0, res.output
    assert np.isfinite(json.loads(res.stdout)["loss"])


def test_compare_keeps_a_comma_inside_a_cell_files_path(cells, tmp_path):
    """--cells splits on commas, but not inside the path of a cell file that
    exists (``my,cells/c.py:EluCell``); an unknown name is still named alone."""
    from seqvg.cli_studies import split_cells

    folder = tmp_path / "my,cells"
    folder.mkdir()
    (folder / "c.py").write_text(CELLS)
    spec = f"{folder / 'c.py'}:EluCell"
    assert split_cells(f"rnn, {spec},gru") == ["rnn", spec, "gru"]
    assert split_cells("rnn,lsmt,gru") == ["rnn", "lsmt", "gru"]
    assert split_cells(f"rnn,{tmp_path / 'no,such.py'}:EluCell") == ["rnn", str(tmp_path / "no"),
                                                                   "such.py:EluCell"]
    res = CliRunner().invoke(cli, ["compare", "--cells", "rnn,lsmt", "--out", str(tmp_path / "c"), *TINY])
    assert res.exit_code == 2 and "unknown cell 'lsmt'" in res.output, res.output
