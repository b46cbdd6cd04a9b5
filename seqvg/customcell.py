"""Your own recurrent cell: any Keras RNN cell, from an installed module or a file.

    seqvg train --cell my_cell.py:MyGRU --length 50 --cell-arg gate_bias=1.0
    seqvg probe --cell keras.layers:GRUCell --length 100

A cell is a ``keras.layers.Layer`` with ``state_size`` (an int, or a list of
ints: one per state tensor) and ``call(inputs, states)`` returning
``(output, new_states)``, usable inside ``keras.layers.RNN``. seqvg builds it
as ``Class(units, **cell_args)`` (``--cell-arg KEY=VALUE``, TOML values).

Two optional class attributes tell seqvg more:

- ``state_names``: names of the state tensors, e.g. ``("h", "c")``. The probe
  reports the first state as ``h`` whatever its name, the others by these
  names (default ``s1``, ``s2``, ...).
- ``seqvg_options``: the options that need a cell's internals which this
  cell implements, e.g. ``("activation", "forget_bias")``. seqvg passes each
  one that is set as a keyword argument to the constructor; any other such
  option (``INTERNAL_OPTIONS``) is refused for the cell.

Names in ``seqvg.config.CELL_REGISTRY`` (seqvg's own modern cells) resolve to
``module:Class`` and then take exactly this path.

The run directory keeps what re-running needs (``cell/cell.json``: the spec,
the class, its ``get_config()``, for a file its sha256, and a copy of the
file), so ``seqvg probe RUN`` and ``seqvg train --resume`` work from the run
directory alone (``bind_run``).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import re
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

from seqvg.config import CELL_REGISTRY, CellRef, ConfigError, parse_cell_spec as parse, scope_name  # noqa: F401 (CellRef re-exported)

#: Options that need the cell's internals: refused for a custom cell unless
#: its class lists them in ``seqvg_options`` (then passed to its constructor).
INTERNAL_OPTIONS = ("activation", "recurrent_init", "recurrent_gain", "gate_init", "forget_bias", "chrono",
                    "layer_norm")

#: Inside a run directory: the cell's record and the copy of its file.
CELL_DIR = "cell"
CELL_JSON = "cell.json"


# -- loading --------------------------------------------------------------------
@dataclass
class _Loaded:
    cls: type
    ref: CellRef
    source: bytes | None = None  # a file cell: the exact bytes that ran
    sha256: str | None = None
    path: str | None = None  # a file cell: the file that ran (the run's copy, when bound)
    bound: bool = False  # loaded from a run's copy by bind_run, not from the spec's own file


#: spec -> the loaded class; ``bind_run`` puts a run's copy here.
_LOADED: dict[str, _Loaded] = {}
_CHECKED: set = set()


def _error_line(e: BaseException, filename: str | None = None) -> str:
    """The failing line of the user's code and the error, on one line."""
    if isinstance(e, SyntaxError):
        return f"{e.filename}:{e.lineno}: SyntaxError: {e.msg}"
    frames = traceback.extract_tb(e.__traceback__)
    if filename is not None:  # the user's file: its deepest line, if it is on the stack
        own = [f for f in frames if f.filename == filename]
    else:
        own = [f for f in frames if "importlib" not in f.filename and f.filename != __file__]
    where = f"{own[-1].filename}:{own[-1].lineno}: " if own else ""
    name, text = type(e).__name__, re.sub(r"\x1b\[[0-9;]*m", "", str(e))
    if text.startswith("in user code:"):
        # An error raised while TensorFlow traced a graph: the frames and the
        # original error are in the text ("File ..., line N" lines, then
        # "    Name: message").
        mine = [m for m in re.finditer(r'File "([^"]+)", line (\d+)', text) if m.group(1) == filename]
        if mine:
            where = f"{mine[-1].group(1)}:{mine[-1].group(2)}: "
        error = re.search(r"^ {4}([A-Za-z_][\w.]*): ", text, re.M)
        if error:
            name, text = error.group(1), text[error.end():]
    # Keras wraps an error raised in a layer's call: "Exception encountered
    # when calling X.call().", then the original message in bold.
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if len(lines) > 1 and lines[0].startswith("Exception encountered when calling"):
        lines = lines[1:]
    message = lines[0] if lines else ""
    return f"{where}{name}" + (f": {message}" if message else "")


def _exec_file(ref: CellRef, path: Path, shown: str):
    """Runs a cell file as a module of its own (no __pycache__ is written next
    to it: a run's copy stays the one file seqvg wrote)."""
    import types

    try:
        source = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{shown}: cannot read {path} ({e.strerror})", "cell") from None
    sha = hashlib.sha256(source).hexdigest()
    # One module per file and content: the same file is executed once per process.
    name = "seqvg_cell_" + hashlib.sha256(str(path).encode() + b"\0" + source).hexdigest()[:16]
    module = sys.modules.get(name)
    if module is None:
        module = types.ModuleType(name)
        module.__file__ = str(path)
        # Registered before running, as an import would: dataclasses, pickling
        # and Keras's deserialisation look the module up by name.
        sys.modules[name] = module
        try:
            code = compile(source, str(path), "exec")
            exec(code, module.__dict__)
        except BaseException as e:  # anything the user's file raises, SystemExit included
            del sys.modules[name]
            if isinstance(e, KeyboardInterrupt):
                raise
            hint = ""
            top = (getattr(e, "name", None) or "").split(".")[0]
            if isinstance(e, ModuleNotFoundError) and top and (
                    (path.parent / f"{top}.py").is_file() or (path.parent / top).is_dir()):
                hint = (f"; {top} is beside the file, but a cell file runs on its own (a run keeps a copy of that "
                        "one file): put what it needs into it, or install that module or add its directory to "
                        "PYTHONPATH")
            raise ConfigError(f"{shown}: importing the file failed: {_error_line(e, str(path))}{hint}",
                              "cell") from None
    return module, source, sha


def _import(ref: CellRef, spec: str, path: Path | None = None) -> _Loaded:
    shown = ref.where
    if ref.kind == "file":
        path = path or Path(ref.target)
        if not path.is_file():
            why = "is a directory" if path.is_dir() else "no such file"
            raise ConfigError(f"{shown}: {path}: {why}", "cell")
        module, source, sha = _exec_file(ref, path, shown)
    else:
        source = sha = None
        try:
            module = importlib.import_module(ref.target)
        except BaseException as e:
            if isinstance(e, KeyboardInterrupt):
                raise
            hint = ""
            local = Path(*ref.target.split(".")).with_suffix(".py")
            if isinstance(e, ModuleNotFoundError) and ref.target.startswith(e.name or "\0") and local.is_file():
                # The seqvg command does not import from the working directory.
                hint = (f"; {local} is here: give it as {local}:{ref.class_name} (a module must be installed "
                        "or on PYTHONPATH)")
            raise ConfigError(f"{shown}: importing module {ref.target} failed: {_error_line(e)}{hint}",
                              "cell") from None
    cls = getattr(module, ref.class_name, None)
    if cls is None:
        raise ConfigError(f"{shown}: {ref.target} has no {ref.class_name}", "cell")
    import keras

    if not (isinstance(cls, type) and issubclass(cls, keras.layers.Layer)):
        raise ConfigError(f"{shown}: not a Keras RNN cell ({ref.class_name} is not a keras.layers.Layer "
                          "subclass)", "cell")
    return _Loaded(cls, ref, source, sha, str(path) if path is not None else None)


def load(spec: str) -> _Loaded:
    """The class of a custom cell (cached per spec; a bound run's copy wins).

    Raises:
        ConfigError: the file or module is missing or fails to import, or the
            name is not a Keras layer class.
    """
    if spec not in _LOADED:
        _LOADED[spec] = _import(parse(spec), spec)
    return _LOADED[spec]


def unbind(spec: str) -> None:
    """Forgets a run's copy that ``bind_run`` put in place of ``spec``, so a
    new run (or a check for one) loads the spec's own file again, as it is now."""
    loaded = _LOADED.get(spec)
    if loaded is not None and loaded.bound:
        del _LOADED[spec]


def load_class(spec: str) -> type:
    """The class of a custom cell (see ``load``)."""
    return load(spec).cls


def declared_names(cell, attr: str, where: str | None = None) -> tuple[str, ...]:
    """A cell's (or class's) ``state_names`` or ``seqvg_options``: names.
    A plain string is one name (``("activation")`` is a string, not a tuple).

    Raises:
        ConfigError: anything else, naming the class and the attribute.
    """
    value = getattr(cell, attr, None)
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    try:
        names = tuple(value)
    except TypeError:
        names = None
    if names is None or not all(isinstance(n, str) for n in names):
        cls = cell if isinstance(cell, type) else type(cell)
        example = '("h", "m")' if attr == "state_names" else '("activation",)'
        raise ConfigError(f"{where or cls.__qualname__}: {attr} must be a tuple of names, e.g. {example}, "
                          f"got {value!r}", "cell")
    return names


def state_names(cell, n: int, where: str | None = None) -> list[str]:
    """Names of a cell's n states: the first is always ``h``; then the cell's
    ``state_names`` where it gives them, else ``s1``, ``s2``, ... (``where``:
    ``file.py:Class`` for messages)."""
    given = list(declared_names(cell, "state_names", where))
    names = ["h"]
    for k in range(1, n):
        name = str(given[k]) if k < len(given) else f"s{k}"
        names.append(name if re.fullmatch(r"[A-Za-z0-9_]+", name) and name not in names else f"s{k}")
    return names


def constructor_kwargs(cfg, cls: type | None = None) -> dict:
    """``cell_args`` plus each internal option that is set and that the class
    declares in ``seqvg_options``.

    Raises:
        ConfigError: an internal option is set that the class does not declare.
    """
    loaded = load(cfg.cell)
    cls = cls or loaded.cls
    supported = set(declared_names(cls, "seqvg_options", loaded.ref.where))
    kwargs = dict(cfg.cell_args)
    defaults = {"recurrent_gain": 1.0, "layer_norm": False}
    for name in INTERNAL_OPTIONS:
        value = getattr(cfg, name)
        if value is None or value == defaults.get(name, None):
            continue
        if name == "gate_init" and value == "keras" and name not in supported:
            continue  # the cell's own initialisation, as "keras" means for a vanilla cell
        if name not in supported:
            raise ConfigError(
                f"--{name.replace('_', '-')} works inside a cell's equations; {loaded.ref.where} does not say it "
                f"implements it (a cell that does lists it in its class attribute seqvg_options and takes it as a "
                f"keyword argument)", name)
        kwargs[name] = value
    return kwargs


def make_cell(cfg):
    """A new cell of the config: ``Class(units, **constructor_kwargs(cfg))``."""
    loaded = load(cfg.cell)
    kwargs = constructor_kwargs(cfg)
    try:
        cell = loaded.cls(cfg.units, **kwargs)
    except Exception as e:
        args = ", ".join([str(cfg.units)] + [f"{k}={v!r}" for k, v in kwargs.items()])
        line = _error_line(e, loaded.path)
        # An argument the class does not take, or a value it refuses, is the
        # --cell-arg's fault, and click names that option.
        option = "cell_args" if any(k in str(e) for k in cfg.cell_args) else "cell"
        raise ConfigError(f"{loaded.ref.where}: {loaded.ref.class_name}({args}) failed: {line}", option) from None
    return settle_name(cell)


def settle_name(cell):
    """Renames ``cell`` to ``config.scope_name`` of its name where they differ:
    Keras names a layer after its class (``Zellé`` -> ``zellé``), and
    TensorFlow refuses that as a name scope once the cell runs in a graph.
    Call on a new cell and on one loaded from model.keras. Returns the cell.
    """
    name = getattr(cell, "name", None)
    if isinstance(name, str) and scope_name(name) != name:
        cell.name = scope_name(name)
    return cell


def _state_sizes(cell, where: str) -> list[int]:
    size = getattr(cell, "state_size", None)
    sizes = [size] if isinstance(size, int) else list(size) if isinstance(size, (list, tuple)) else None
    if not sizes or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sizes):
        raise ConfigError(f"{where}: not a Keras RNN cell (state_size must be a positive int or a list of "
                          f"them, got {size!r})", "cell")
    return sizes


def check_cell(cfg) -> None:
    """For a custom cell: ``check``; nothing for the built-in cells. Call
    before anything of a run is written.

    Raises:
        ConfigError: naming the file (or module) and class.
    """
    from seqvg.config import is_custom_cell

    if is_custom_cell(cfg.cell):
        check(cfg)


def check(cfg) -> None:
    """Imports a custom cell, builds it and runs it on one sample, as
    ``keras.layers.RNN`` would: one step by hand (float32 states and output
    checked against ``state_size`` and ``output_size``), then two steps inside
    ``keras.layers.RNN``, eagerly and traced into a graph on two samples
    (``_check_in_graph``); and checks that its ``get_config()`` rebuilds it.
    Cached per process and file version.

    Raises:
        ConfigError: one line naming the file (or module) and class.
    """
    import numpy as np

    from seqvg.tasks import get_task

    loaded = load(cfg.cell)
    # Per file version: a run's copy and the edited original share a spec.
    key = (cfg.cell, loaded.sha256, json.dumps(cfg.cell_args, sort_keys=True), cfg.units, cfg.layers, cfg.task,
           tuple(getattr(cfg, n) for n in INTERNAL_OPTIONS))
    if key in _CHECKED:
        return
    where = loaded.ref.where
    cell = make_cell(cfg)
    if not callable(getattr(cell, "call", None)):
        raise ConfigError(f"{where}: not a Keras RNN cell (no call(inputs, states))", "cell")
    import keras

    if isinstance(cell, keras.layers.RNN):  # keras.layers:GRU for keras.layers:GRUCell
        raise ConfigError(f"{where}: a recurrent layer, not a cell; give the cell it runs (e.g. "
                          f"keras.layers:{type(cell).__name__}Cell), which seqvg wraps in keras.layers.RNN", "cell")
    sizes = _state_sizes(cell, where)
    state_names(cell, len(sizes), where)  # a malformed state_names: refused here, not mid-probe
    out_size = getattr(cell, "output_size", None) or sizes[0]

    widths = [get_task(cfg.task, cfg.task_args).n_inputs] + ([out_size] if cfg.layers > 1 else [])
    rng = np.random.default_rng(0)
    for width in widths:
        cell = make_cell(cfg)
        x = rng.uniform(-1, 1, (1, width)).astype("float32")
        states = [np.zeros((1, s), "float32") for s in sizes]
        kwargs = {"training": False} if getattr(cell, "_call_has_training_arg", False) else {}
        try:
            result = cell(x, states, **kwargs)
            out, new = result
        except Exception as e:
            raise ConfigError(f"{where}: call on one sample ({width} inputs, states {sizes}) failed: "
                              f"{_error_line(e, loaded.path)}", "cell") from None
        new = list(new) if isinstance(new, (list, tuple)) else [new]
        got = [tuple(getattr(s, "shape", ())) for s in new]
        if got != [(1, s) for s in sizes]:
            raise ConfigError(f"{where}: call returned states of shapes {got}; state_size {sizes} needs "
                              f"{[(1, s) for s in sizes]}", "cell")
        if tuple(getattr(out, "shape", ())) != (1, out_size):
            raise ConfigError(f"{where}: call returned an output of shape {tuple(getattr(out, 'shape', ()))}; "
                              f"expected (1, {out_size}) (output_size, else state_size[0])", "cell")
        # Keras's loop (and the probe's) needs every step to hand back the
        # dtype it was given; a float64 state fails only inside the graph.
        dtypes = [keras.backend.standardize_dtype(t.dtype) for t in [out, *new]]
        if any(d != "float32" for d in dtypes):
            raise ConfigError(f"{where}: call returned {', '.join(dtypes)} (output, then states) for float32 inputs "
                              "and states; return float32 (a cell built with dtype=float64 cannot run in "
                              "seqvg's float32 models)", "cell")
        rnn = keras.layers.RNN(make_cell(cfg), return_sequences=True)
        try:
            seq = rnn(np.repeat(x[:, None, :], 2, axis=1))
        except Exception as e:
            raise ConfigError(f"{where}: inside keras.layers.RNN on one sample: {_error_line(e, loaded.path)}",
                              "cell") from None
        if tuple(seq.shape) != (1, 2, out_size):
            raise ConfigError(f"{where}: keras.layers.RNN returned shape {tuple(seq.shape)}, expected "
                              f"(1, 2, {out_size})", "cell")
        _check_in_graph(rnn, np.repeat(x[:, None, :], 2, axis=0).repeat(2, axis=1), out_size, where,
                        loaded.path)
    try:
        config = cell.get_config()
        json.dumps(keras.saving.serialize_keras_object(cell))
    except Exception as e:
        raise ConfigError(f"{where}: get_config() cannot be saved with the model: {_error_line(e, loaded.path)}",
                              "cell") from None
    try:
        loaded.cls.from_config(config)
    except Exception as e:
        raise ConfigError(f"{where}: get_config() does not rebuild the cell ({loaded.ref.class_name}.from_config "
                          f"failed: {_error_line(e, loaded.path)}); add the constructor's arguments to get_config()",
                          "cell") from None
    _CHECKED.add(key)


def _check_in_graph(rnn, x, out_size: int, where: str, path: str | None) -> None:
    """Runs the built layer as training and the probe do: traced into a graph
    (a ``tf.function``), on two samples, in training mode. Catches what an
    eager call lets through: Python ``if`` on a tensor, ``.numpy()``, a
    hard-coded batch of 1.

    Raises:
        ConfigError: naming the cell and its failing line.
    """
    import tensorflow as tf

    try:
        seq = tf.function(lambda x: rnn(x, training=True))(tf.constant(x))
    except Exception as e:
        raise ConfigError(f"{where}: inside keras.layers.RNN traced as a graph (as training runs it), on "
                          f"{x.shape[0]} samples: {_error_line(e, path)}", "cell") from None
    if tuple(seq.shape) != (x.shape[0], x.shape[1], out_size):
        raise ConfigError(f"{where}: keras.layers.RNN traced as a graph returned shape {tuple(seq.shape)} on "
                          f"{x.shape[0]} samples, expected {(x.shape[0], x.shape[1], out_size)}", "cell")


def custom_objects(spec: str) -> dict:
    """``custom_objects`` for ``keras.saving.load_model`` of a model with this cell."""
    cls = load_class(spec)
    import keras

    return {cls.__name__: cls, keras.saving.get_registered_name(cls): cls}


# -- the run directory ------------------------------------------------------------
def write_run_files(cfg, out: Path) -> None:
    """Writes ``cell/cell.json`` (and a file cell's copy) into a run directory."""
    from seqvg import rundir

    loaded = load(cfg.cell)
    record = {
        "spec": cfg.cell,
        "kind": loaded.ref.kind,
        "class": loaded.ref.class_name,
        "qualname": f"{loaded.cls.__module__}.{loaded.cls.__qualname__}",
        "cell_args": cfg.cell_args,
        "state_names": state_names(loaded.cls, len(_state_sizes(make_cell(cfg), loaded.ref.where))),
        "get_config": json.loads(json.dumps(make_cell(cfg).get_config(), default=repr)),
    }
    if loaded.ref.kind == "file":
        copy = Path(loaded.ref.target).name
        copy += "" if copy.endswith(".py") else ".py"  # what the run directory's owner check expects
        rundir.atomic_write_bytes(out / CELL_DIR / copy, loaded.source)
        record.update({"source": loaded.ref.target, "copy": f"{CELL_DIR}/{copy}", "sha256": loaded.sha256})
    else:
        top = loaded.ref.target.split(".")[0]
        try:
            from importlib.metadata import version

            record["package_version"] = version(top)
        except Exception:  # not an installed distribution (a local module)
            record["package_version"] = None
        record["module_file"] = getattr(sys.modules.get(loaded.ref.target), "__file__", None)
    rundir.write_json(out / CELL_DIR / CELL_JSON, record)


def bind_run(cfg, out: Path, warn=None) -> None:
    """Makes ``cfg.cell`` load as the run in ``out`` recorded it: a file cell
    from the run's copy (``warn`` is told if the original changed or is gone).

    Raises:
        RunDirError: the run's cell record or copy is missing or damaged.
    """
    from seqvg import rundir
    from seqvg.config import is_custom_cell

    if not is_custom_cell(cfg.cell):
        return
    record_path = Path(out) / CELL_DIR / CELL_JSON
    ref = parse(cfg.cell)
    if ref.kind == "module" and cfg.cell not in CELL_REGISTRY:
        # A module is imported again by name: say where the run found it.
        try:
            load(cfg.cell)
        except ConfigError as e:
            record = rundir.read_json(record_path) if record_path.exists() else {}
            was = f"; the run imported it from {record['module_file']}" if record.get("module_file") else ""
            raise rundir.RunDirError(f"{out}: the run's cell {e}{was}: install it again or put its directory "
                                     "on PYTHONPATH") from None
        return
    if ref.kind != "file" or not record_path.exists():
        # A run stopped before its cell was recorded (right after config.json)
        # loads the original, as it started.
        return
    record = rundir.read_json(record_path)
    copy = Path(out) / record.get("copy", "")
    if not copy.is_file():
        raise rundir.RunDirError(f"{copy}: missing; the run's copy of {ref.where} is needed to rebuild its cell")
    data = copy.read_bytes()
    if hashlib.sha256(data).hexdigest() != record.get("sha256"):
        raise rundir.RunDirError(f"{copy}: corrupt (its sha256 differs from {record_path})")
    original = Path(ref.target)
    try:
        changed = hashlib.sha256(original.read_bytes()).hexdigest() != record["sha256"]
        note = "has changed since the run started"
    except OSError:
        changed, note = True, "is gone"
    if changed and warn is not None:
        warn(f"warning: {original} {note}; using the run's copy {copy}")
    _LOADED[cfg.cell] = _import(ref, cfg.cell, copy)
    _LOADED[cfg.cell].bound = True
    if _LOADED[cfg.cell].sha256 != record["sha256"]:  # pragma: no cover - the file changed while reading
        raise rundir.RunDirError(f"{copy}: changed while it was read")
