"""Which loop runs a run's LSTM or GRU layers: decided once per run, recorded.

    from seqvg.config import RunConfig
    from seqvg.execpath import resolve
    path = resolve(RunConfig(cell="lstm", length=200).resolved())
    print(path.describe())    # e.g. "LSTM: seqvg's sequence op"

An LSTM or GRU layer gives the same maths on three paths (docs/design.md,
"Execution paths"): seqvg's compiled sequence op, seqvg's loop of TensorFlow
ops (LSTM only), or Keras's own loop. Which one runs, and whether the TF-ops
loop is unrolled into the graph, depends on the cell, the number of
timesteps and this machine (a GPU; whether seqvg's ops are built), never on
the number of training steps (which only decides whether a custom cell's
loop is XLA-compiled, below). ``resolve`` makes that decision once;
``build_model``, the probe and config.json (``numerics``) all take the value
it returns, so what is recorded is what ran.

A custom cell (``seqvg.customcell``) runs Keras's loop. Its training run
compiles its step and its probe's gradient pass with XLA (``xla``), which
fuses the many small per-timestep ops of a cell written in Keras ops, only
where both hold: the cell's class declares that XLA pays for it
(``XLA_ATTRIBUTE``, ``seqvg_xla = True``: measured with
benchmarks/xla_payoff.py, since for some cells XLA saves nothing per step)
and the budget repays the compilation (``XLA_MIN_WORK``). Otherwise the run
goes without it and the path records why (``xla_skipped``). Both are read
from the cell's code and the options, never from a timing, so a seed gives
the same numbers on any machine and under any load. A cell XLA cannot compile (an
op without an XLA kernel, e.g. ``tf.numpy_function``) runs without it;
``seqvg.training.Trainer`` finds that out once, before the first step
(``xla_refusal``), and the path records why (``xla_refused``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

#: The paths, and how the report names them.
CELL_PATHS = {
    "seqvg-op": "seqvg's sequence op",
    "tf-ops": "seqvg's loop of TensorFlow ops",
    "keras": "Keras's own loop",
}
#: The cells seqvg can run its own way (Keras's LSTM and GRU layers).
FAST_CELLS = ("lstm", "gru")
#: The longest sequence (timesteps) whose TF-ops loop is unrolled: a
#: tf.while_loop pays per timestep for its control ops and for pushing, then
#: popping, every intermediate the backward pass needs, which unrolled are
#: plain graph edges; beyond this length the bigger graph costs more than it
#: saves.
UNROLL_MAX = 256
#: The least work, training steps x timesteps per sequence (``--steps`` x
#: the task's sequence length: the budget, not the steps an early stop
#: leaves), for which a custom cell that declares XLA pays for it
#: (``XLA_ATTRIBUTE``) has its run compiled with XLA. XLA costs a
#: fixed compilation per process, before the first step (lowering, then
#: compiling the step and the probe: the same whatever the length, since
#: Keras's loop is one while loop), and saves a little at every timestep of
#: every step; a short run pays more than it saves. Measured for the cells
#: that declare it (benchmarks/xla_payoff.py; docs/design.md, "Custom cells
#: and XLA"): XLA breaks even after 18,000 to 37,000 steps x timesteps idle
#: (mingru, minlstm, indrnn at T=100; up to 68,000 under load); from 100,000
#: (e.g. 1000 steps at T=100) it pays for each of them, and a shorter run (a
#: quick look, a test) starts at once.
XLA_MIN_WORK = 100_000
#: The class attribute by which a custom cell declares that XLA pays for it
#: (``seqvg_xla = True``): its XLA step costs less CPU than Keras's plain
#: loop, by enough to repay the compilation within ``XLA_MIN_WORK``
#: (benchmarks/xla_payoff.py tells; docs/design.md, "Custom cells and XLA").
#: XLA saves a cell of a few wide ops nothing (LRU, a GRU written in Keras
#: ops: measured), so a cell that does not declare it runs Keras's loop.
XLA_ATTRIBUTE = "seqvg_xla"


@dataclass(frozen=True)
class ExecutionPath:
    """How a model's recurrent layers run.

    Attributes:
        cell: "lstm" or "gru" for a layer seqvg can run its own way; None for
            every other cell, which runs Keras's loop.
        cell_path: "seqvg-op", "tf-ops" (LSTM only) or "keras" (``CELL_PATHS``).
        unroll: the TF-ops loop is unrolled into the graph (a bigger graph,
            built more slowly, for faster steps).
        xla: the training step and the probe's gradient pass are compiled
            with XLA (custom cells, on Keras's loop).
        xla_refused: why XLA was wanted but could not compile this model (one
            line), else None.
        xla_skipped: why a custom cell's training run goes without XLA
            (its class does not declare that XLA pays for it,
            ``XLA_ATTRIBUTE``; or a budget too short to repay the
            compilation, ``XLA_MIN_WORK``; one line), else None.
    """

    cell: str | None = None
    cell_path: str = "keras"
    unroll: bool = False
    xla: bool = False
    xla_refused: str | None = None
    #: Not compared: it says why, while the path (what ran, which a resumed
    #: run checks) is the same whatever the budget in its reason.
    xla_skipped: str | None = field(default=None, compare=False)

    def __post_init__(self):
        if self.cell not in (None, *FAST_CELLS):
            raise ValueError(f"execution path: cell {self.cell!r} is not one of {FAST_CELLS} or None")
        if self.cell_path not in CELL_PATHS:
            raise ValueError(f"execution path: {self.cell_path!r} is not one of {tuple(CELL_PATHS)}")
        if self.cell is None and self.cell_path != "keras":
            raise ValueError(f"execution path: only an LSTM or GRU runs {self.cell_path!r}")
        if self.cell_path == "tf-ops" and self.cell != "lstm":
            raise ValueError("execution path: the TF-ops loop runs LSTMs only")
        if self.unroll and self.cell_path != "tf-ops":
            raise ValueError("execution path: only the TF-ops loop unrolls")
        if self.xla and self.cell is not None:
            raise ValueError("execution path: XLA compiles only Keras's loop of a custom cell")
        if self.xla and (self.xla_refused or self.xla_skipped):
            raise ValueError("execution path: XLA both used and refused or skipped")
        if self.xla_skipped and self.cell is not None:
            raise ValueError("execution path: XLA compiles only Keras's loop of a custom cell")

    def to_dict(self) -> dict:
        """JSON-ready, as config.json's ``numerics.execution_path`` holds it."""
        d = {"cell": self.cell, "cell_path": self.cell_path, "unroll": self.unroll}
        if self.xla or self.xla_refused or self.xla_skipped:  # absent where XLA never applied: read as before
            d.update(xla=self.xla, xla_refused=self.xla_refused)
        if self.xla_skipped:
            d["xla_skipped"] = self.xla_skipped
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ExecutionPath:
        """The inverse of ``to_dict`` (records written before ``xla`` existed: no XLA)."""
        refused, skipped = d.get("xla_refused"), d.get("xla_skipped")
        return cls(d.get("cell"), d.get("cell_path", "keras"), bool(d.get("unroll", False)), bool(d.get("xla", False)),
                   None if refused is None else str(refused), None if skipped is None else str(skipped))

    def refuse_xla(self, why: str) -> ExecutionPath:
        """This path without XLA, recording ``why``."""
        return replace(self, xla=False, xla_refused=why)

    @property
    def lstm_path(self) -> str | None:
        """The LSTM's path in config.json's older words (``numerics.lstm_path``)."""
        if self.cell != "lstm":
            return None
        return "tf-ops-unrolled" if self.unroll else self.cell_path

    @property
    def gru_path(self) -> str | None:
        """The GRU's path in config.json's older words (``numerics.gru_path``)."""
        return self.cell_path if self.cell == "gru" else None

    @property
    def sequence_op(self) -> bool:
        """Whether the layers run (and are probed by) seqvg's sequence op."""
        return self.cell_path == "seqvg-op"

    def describe(self) -> str:
        """The path in words, e.g. "LSTM: seqvg's loop of TensorFlow ops, unrolled"."""
        where = CELL_PATHS[self.cell_path] + (", unrolled" if self.unroll else "") + (", XLA-compiled" if self.xla else "")
        if self.xla_refused or self.xla_skipped:
            where += f", without XLA ({self.xla_refused or self.xla_skipped})"
        return f"{self.cell.upper()}: {where}" if self.cell else where


def decide(cell: str | None, timesteps: int, *, repeated: bool = True, custom: bool = False,
           steps: int | None = None, xla_pays: bool | str = True) -> ExecutionPath:
    """The path of a ``cell`` layer over ``timesteps`` on this machine.

    Args:
        cell: "lstm", "gru", or None for any other cell.
        timesteps: the sequence length the layers read.
        repeated: whether the graph is traced once and run many times (a
            training run and its probes), so that an unrolled loop's slower
            build, or XLA's compilation, pays; a one-shot probe (``seqvg
            probe``) neither unrolls nor compiles.
        custom: the cell is a custom cell (``seqvg.customcell``): XLA where
            ``repeated``, ``xla_pays`` and the run's ``steps`` x
            ``timesteps`` reach ``XLA_MIN_WORK`` (subject to
            ``xla_refusal``, checked by the trainer).
        steps: the run's budget of training steps (``--steps``); None: as
            long as needed to repay XLA.
        xla_pays: True if the custom cell declares that XLA pays for it
            (``XLA_ATTRIBUTE``); else the cell's name for the reason, e.g.
            "MyGRU" (or False).

    Only for an LSTM or a GRU on a CPU are seqvg's ops asked for here (which
    compiles them on first use), so other cells never wait for a build to
    train (the probe of a tanh vanilla RNN asks for them: ``seqvg.probe``).
    """
    if cell not in FAST_CELLS:
        # XLA for a custom cell only: seqvg's other cells on Keras's loop
        # keep the numbers they have always given.
        if not (custom and repeated):
            return ExecutionPath()
        if xla_pays is not True:
            who = xla_pays if isinstance(xla_pays, str) and xla_pays else "the cell"
            return ExecutionPath(xla_skipped=f"{who} does not declare {XLA_ATTRIBUTE} = True, that XLA pays for it")
        if steps is not None and steps * timesteps < XLA_MIN_WORK:
            return ExecutionPath(xla_skipped=f"{steps} steps x {timesteps} timesteps, under {XLA_MIN_WORK:,}: "
                                             "too short to repay its compilation")
        return ExecutionPath(xla=True)
    import tensorflow as tf

    from seqvg import kernels

    if tf.config.list_logical_devices("GPU"):
        return ExecutionPath(cell, "keras")  # cuDNN; seqvg's ops have only CPU kernels
    if kernels.op_module() is not None:
        return ExecutionPath(cell, "seqvg-op")
    if cell == "gru":
        return ExecutionPath(cell, "keras")  # seqvg has no TF-ops loop of its own for the GRU
    return ExecutionPath(cell, "tf-ops", unroll=repeated and timesteps <= UNROLL_MAX)


def settle_inter_op(cells) -> bool:
    """One TensorFlow inter-op thread for a process whose every run is an
    LSTM or a GRU on seqvg's ops (a CPU where they are built).

    On a 2-core machine TensorFlow's second inter-op thread spins while an
    op's threads meet at their per-timestep barriers: a third of the ops'
    passes then took 12-20 ms instead of about 8, and the probe/step ratio
    of benchmarks/probe.py, 0.90-0.99 at the median, reached 1.17 at its
    upper quartile. With one thread its quartiles stay within 0.89-0.98
    (README, Benchmarks); the steps themselves hardly change. Keras's loop
    (the vanilla RNN's step, custom cells) is 15% slower with it, so a
    process with any other cell keeps TensorFlow's default. TensorFlow takes
    the setting only before it starts its pools: later (or where the user set
    TF_NUM_INTEROP_THREADS) this changes nothing. Threads do not change any
    number, only time.

    Args:
        cells: the ``--cell`` of every run the process will train or probe.

    Returns:
        Whether the process now has one inter-op thread by this call.
    """
    from seqvg import kernels
    from seqvg.tfsetup import import_tensorflow_quietly

    cells = list(cells)
    if not cells or any(c not in FAST_CELLS for c in cells) or os.environ.get("TF_NUM_INTEROP_THREADS"):
        return False

    import_tensorflow_quietly()
    import tensorflow as tf

    # Neither loading the ops nor listing the physical devices starts
    # TensorFlow's pools; a GPU runs cuDNN, not seqvg's ops.
    if tf.config.list_physical_devices("GPU") or kernels.op_module() is None:
        return False
    try:
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow has started: too late, and harmless
        return False
    return True


def declares_xla(cls: type) -> bool:
    """Whether a custom cell's class declares that XLA pays for it (``XLA_ATTRIBUTE``)."""
    return getattr(cls, XLA_ATTRIBUTE, False) is True


def resolve(cfg, *, repeated: bool = True, before: ExecutionPath | None = None) -> ExecutionPath:
    """The execution path of a resolved ``RunConfig`` on this machine (``decide``).

    XLA's threshold reads the whole budget (``cfg.steps``) and the cell's
    class (``declares_xla``: loaded here, a bound run's copy if any), so that
    a resumed run keeps the path it started on.

    Args:
        cfg: the run's resolved config.
        repeated: see ``decide``.
        before: the path a resumed run recorded (``recorded``), if any: a
            custom cell's run keeps whether it compiles with XLA from it,
            whatever the rule gives today (a run started under an older rule,
            or before a module cell's class changed, resumes as it ran).
    """
    from seqvg.config import is_custom_cell

    custom = is_custom_cell(cfg.cell)
    pays: bool | str = True
    if custom and repeated:
        from seqvg.customcell import load_class

        cls = load_class(cfg.cell)
        pays = True if declares_xla(cls) else cls.__name__
    path = decide(cfg.cell if cfg.cell in FAST_CELLS else None, cfg.seq_len, repeated=repeated,
                  custom=custom, steps=cfg.steps, xla_pays=pays)
    if custom and repeated and before is not None and before.cell is None and before.cell_path == "keras":
        wanted = before.xla or before.xla_refused is not None
        if wanted and not path.xla:
            path = ExecutionPath(xla=True)  # the trainer checks again that XLA compiles it
        elif not wanted and path.xla:
            path = ExecutionPath(xla_skipped=before.xla_skipped or "the run started without XLA")
    return path


def xla_refusal(functions) -> str | None:
    """Why XLA cannot compile one of ``functions``, in one line; None if it can.

    Each is lowered to XLA's HLO, which converts every op (where a cell's op
    without an XLA kernel fails) but neither runs nor changes anything.

    Args:
        functions: (``tf.function`` made with ``jit_compile=True``, its args) pairs.
    """
    import re

    for fn, args in functions:
        try:
            fn.experimental_get_compiler_ir(*args)(stage="hlo")
        except Exception as e:  # TensorFlow raises several types for what XLA cannot compile
            text = str(e)
            ops = sorted(set(re.findall(r"No registered '(\w+)' OpKernel for XLA", text)))
            if ops:
                return "no XLA kernel for " + ", ".join(ops)
            first = next((line.strip() for line in text.splitlines() if line.strip()), "")
            return f"{type(e).__name__}: {first[:200]}"
    return None


def recorded(config: dict) -> ExecutionPath | None:
    """The path a run directory's config.json records, or None where it records none.

    Runs written before ``numerics.execution_path`` existed have only
    ``lstm_path`` and ``gru_path``; their path is read from those.
    """
    numerics = config.get("numerics")
    if not isinstance(numerics, dict):
        return None
    try:
        if isinstance(numerics.get("execution_path"), dict):
            return ExecutionPath.from_dict(numerics["execution_path"])
        if numerics.get("lstm_path"):
            unroll = numerics["lstm_path"] == "tf-ops-unrolled"
            return ExecutionPath("lstm", "tf-ops" if unroll else numerics["lstm_path"], unroll)
        if numerics.get("gru_path"):
            return ExecutionPath("gru", numerics["gru_path"])
        return ExecutionPath() if "lstm_path" in numerics else None
    except (ValueError, TypeError):
        return None


def of_model(model, *, repeated: bool = False) -> ExecutionPath:
    """The path for a model given without its config (a loaded model.keras, a
    test's model): ``decide`` for its first LSTM or GRU layer, if any."""
    from seqvg.fastlstm import _lstm_layers, covered

    cell = next((kind for kind in map(covered, _lstm_layers(model)) if kind), None)
    return decide(cell, model.inputs[0].shape[1], repeated=repeated)
