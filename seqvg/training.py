"""One training run: config in, run directory out.

    seqvg train --task adding --cell gru --length 100 --out runs/gru100

    from seqvg.config import RunConfig
    from seqvg.training import train
    summary = train(RunConfig(cell="gru", length=100), "runs/gru100")

Training batch ``s`` is drawn from ``stream(seed, TRAIN, s)``; evaluation,
logging, probing and checkpointing happen on fixed step multiples, and a
checkpoint is written only right after a logged row. A run resumed from its
last checkpoint therefore repeats exactly what the interrupted run would have
done: same data, same weights, same metrics.csv rows (wall_s aside).

``_Run.run`` is the loop; each job it hands on has a class of its own:
``Trainer`` (model, optimizer, one step), ``seqvg.rowstats`` (a metrics
row's statistics: the window of batches, validation, weight change),
``seqvg.probelog.ProbeLog`` (the probes), ``seqvg.runfiles.RunFiles`` (the
files) and ``TensorBoardLog``.

It is long because the loop's order of events (step, row, probe, checkpoint, early stop, resume)
is the run's contract and reads best in one place; each job it calls lives elsewhere (above).
"""

from __future__ import annotations

import importlib.util
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seqvg import rundir
from seqvg.config import (  # noqa: F401 (re-exported)
    ConfigError,
    RunConfig,
    check_split_sizes,
    default_run_name,
    is_custom_cell,
    option_differences,
)
from seqvg.customcell import check_cell
from seqvg.execpath import ExecutionPath, recorded, resolve
from seqvg.memory import check_memory
from seqvg.probelog import ProbeLog
from seqvg.progress import Progress
from seqvg.rowstats import Validation, WeightChange, Window
from seqvg.rundir import RunDirError
from seqvg.runfiles import Checkpoint, RunFiles, config_to_resume, write_config
from seqvg.tasks import STREAM_TRAIN, get_task, probe_batch, stream  # noqa: F401 (probe_batch re-exported)

#: metrics.csv's columns before one ``weight_change/<layer>`` per layer with weights.
METRIC_COLUMNS = ["step", "loss", "metric", "val_loss", "val_metric", "grad_norm", "grad_norm_max", "wall_s"]


class RunExistsError(RunDirError):
    """The output directory holds a run and --overwrite was not given."""


def _exists_message(out: Path, cfg: RunConfig) -> str:
    """Why ``out`` is refused without --overwrite, and what --resume would do
    there: continue the same run, or one of other options (two custom cells
    of one class name share a default directory)."""
    try:
        held = rundir.read_config(out)
        status = rundir.read_json(out / rundir.SUMMARY).get("status") if (out / rundir.SUMMARY).exists() else None
    except RunDirError:
        return f"{out}: already holds a run; pass --overwrite to replace it or --resume"
    diffs = option_differences(held, cfg)
    if diffs:
        return (f"{out}: already holds a run of other options ({diffs}); choose another --out, "
                "or pass --overwrite to replace it")
    if status in ("completed", "diverged"):
        return f"{out}: already holds this run, {status}; pass --overwrite to run it again"
    return f"{out}: already holds this run, not finished; pass --resume to continue it or --overwrite to start again"


def train(
    cfg: RunConfig,
    out: str | os.PathLike,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    command: str | None = None,
) -> dict:
    """Trains one model and writes its run directory.

    Args:
        cfg: the run's options (resolved here; ignored when resuming, which
            reads the directory's own config.json).
        out: the run directory.
        resume: continue the run in ``out`` from its last checkpoint.
        overwrite: replace an existing run in ``out``.
        progress: show a progress bar (or per-row lines) on stderr.
        command: the command line to record in config.json.

    Returns:
        The summary (as written to summary.json).

    Raises:
        ConfigError: bad options or a run that cannot fit in memory.
        RunDirError: a missing/corrupt run to resume, or an existing one.
    """
    out = Path(out)
    if resume:
        cfg = config_to_resume(out)
        if is_custom_cell(cfg.cell):
            from seqvg.customcell import bind_run

            bind_run(cfg, out, warn=lambda m: print(m, file=sys.stderr))
    else:
        cfg = cfg.resolved()
        if is_custom_cell(cfg.cell):
            from seqvg.customcell import unbind

            unbind(cfg.cell)  # a new run takes the cell file as it is now, not an earlier run's copy
    # Every check before anything is written or deleted.
    check_memory(cfg)
    check_split_sizes(cfg)
    check_cell(cfg)
    if cfg.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise ConfigError("--tensorboard needs the tensorboard package: pip install 'seqvg[tensorboard]'", "tensorboard")
    if out.exists():
        rundir.check_not_in_use(out)
    if not resume and rundir.has_content(out):
        from seqvg.pdf import written_by_seqvg

        rundir.check_own_run(out, signed=written_by_seqvg)
        if not overwrite:
            raise RunExistsError(_exists_message(out, cfg))
    if not out.exists():
        rundir.check_writable(out, is_dir=True)
    with rundir.locked(out):
        if resume:
            summary = rundir.read_json(out / rundir.SUMMARY) if (out / rundir.SUMMARY).exists() else {}
            if summary.get("status") in ("completed", "diverged"):
                return summary
        else:
            if rundir.has_content(out):
                rundir.remove_run(out)  # checks again, under the lock, that all of it is seqvg's
            write_config(out, cfg, command)
        if is_custom_cell(cfg.cell) and not (out / rundir.CELL_DIR / "cell.json").exists():
            from seqvg.customcell import write_run_files

            write_run_files(cfg, out)  # a new run, or one stopped before its cell was recorded
        return _Run(cfg, out, resume=resume).run(resume=resume, progress=progress)


def make_train_step(model, task, optimizer, jit_compile: bool = False):
    """The compiled training step ``(x, y) -> (loss, metric, grad_norm)``.

    ``grad_norm`` is the global norm of the weight gradient before clipping:
    the exploding-gradient symptom is this number. ``jit_compile``: compiled
    with XLA (``ExecutionPath.xla``).
    """
    import tensorflow as tf

    def step(x, y):
        with tf.GradientTape() as tape:
            pred = model(x, training=True)
            loss = task.loss_fn(y, pred)
        grads = tape.gradient(loss, model.trainable_variables)
        gnorm = tf.linalg.global_norm(grads)
        optimizer.apply(grads, model.trainable_variables)
        return loss, task.metric_fn(y, pred), gnorm

    # No autograph (as Keras's own fit): the step has no Python control flow
    # on tensors, and converting it and every function it calls costs each
    # new process about a second of CPU.
    return tf.function(step, autograph=False, jit_compile=jit_compile)


class Trainer:
    """The model, optimizer and compiled step of a config: ``seqvg train``'s inner loop.

    ``benchmarks/train_speed.py`` times this same object, so the benchmark
    measures exactly the path that ``seqvg train`` runs.

        trainer = Trainer(RunConfig(cell="lstm", length=200).resolved())
        loss, metric, grad_norm = trainer.train_batch(1)

    Args:
        cfg: a resolved config.
        path: which loop the LSTM or GRU layers run; None: ``execpath.resolve(cfg)``.
    """

    def __init__(self, cfg: RunConfig, path: ExecutionPath | None = None):
        import tensorflow as tf

        from seqvg.models import build_model, compile_model

        # Same seed on CPU -> identical metrics: ask TF for deterministic ops
        # (measured: no cost on the CPU kernels these models use).
        tf.config.experimental.enable_op_determinism()
        self.cfg = cfg
        self.path = resolve(cfg) if path is None else path
        self.task = get_task(cfg.task, cfg.task_args)
        self.model = build_model(cfg, self.path)
        compile_model(self.model, cfg)
        self.optimizer = self.model.optimizer
        self.optimizer.build(self.model.trainable_variables)
        self._build_steps()
        if self.path.xla:
            self._settle_xla()

    def _build_steps(self) -> None:
        """The compiled training step and the probe, both on ``self.path``."""
        from seqvg.probe import Prober

        self._train_step = make_train_step(self.model, self.task, self.optimizer, self.path.xla)
        #: The probe of this run (``seqvg train`` probes with it): on the same path as training.
        self.prober = Prober(self.model, self.task, self.path)

    def _settle_xla(self) -> None:
        """Keeps XLA only if it compiles both the step and the probe; else
        records why not in ``self.path`` and builds both without it."""
        import tensorflow as tf

        from seqvg.execpath import xla_refusal

        cfg = self.cfg
        x, y = self.task.generate(stream(cfg.seed, STREAM_TRAIN, 1), cfg.batch_size, cfg.length)
        px, py = probe_batch(cfg)
        v0s = self.prober.start_vectors(px.shape[0], px.shape[1])
        why = xla_refusal([(self._train_step, (tf.constant(x), tf.constant(y))),
                           (self.prober._all, (tf.constant(px, tf.float32), tf.constant(py), v0s))])
        if why is not None:
            self.path = self.path.refuse_xla(why)
            self._build_steps()

    def train_batch(self, step: int) -> tuple[float, float, float]:
        """Draws training batch ``step`` (1-based) and takes one optimizer step.

        Returns:
            (loss, metric, grad_norm) of the batch, before the update.
        """
        import tensorflow as tf

        cfg = self.cfg
        x, y = self.task.generate(stream(cfg.seed, STREAM_TRAIN, step), cfg.batch_size, cfg.length)
        loss, metric, gnorm = self._train_step(tf.constant(x), tf.constant(y))
        return float(loss), float(metric), float(gnorm)


class TensorBoardLog:
    """--tensorboard: every metrics row's finite values as scalars in ``<run>/tensorboard``."""

    def __init__(self, directory: Path):
        import tensorflow as tf

        self.writer = tf.summary.create_file_writer(str(directory))

    def write(self, row: dict) -> None:
        import tensorflow as tf

        with self.writer.as_default():
            for k, v in row.items():
                if k != "step" and math.isfinite(v):
                    tf.summary.scalar(k, v, step=row["step"])
        self.writer.flush()


@dataclass
class _State:
    """Where the run stands: what a checkpoint, metrics.csv and probes.npz restore."""

    step: int = 0
    wall_s: float = 0.0
    solved_at_step: int | None = None
    rows: list[dict] = field(default_factory=list)
    probes: ProbeLog = field(default_factory=ProbeLog)


class _Run:
    """One training run (see ``train``): the loop, handing each job on."""

    def __init__(self, cfg: RunConfig, out: Path, *, resume: bool = False):
        self.cfg = cfg
        # A resumed run keeps the path it recorded where the rule leaves a
        # choice (a custom cell's XLA), so its numbers go on as they started.
        before = recorded(rundir.read_json(Path(out) / rundir.CONFIG)) if resume else None
        self.trainer = Trainer(cfg, resolve(cfg, before=before))
        self.task = self.trainer.task
        self.prober = self.trainer.prober
        self.weights = WeightChange(self.trainer.model)
        self.files = RunFiles(out, METRIC_COLUMNS + self.weights.columns)
        self.validation = Validation(self.trainer.model, self.task, cfg)
        self.probe_xy = probe_batch(cfg)
        self.state = _State()
        self.window = Window()
        self.tensorboard: TensorBoardLog | None = None
        self._lap_start = time.perf_counter()

    def run(self, *, resume: bool, progress: bool) -> dict:
        """Runs (or resumes) the loop and returns the summary."""
        cfg, s = self.cfg, self.state
        self._record_path(resume)
        restored = resume and self._restore()
        if cfg.tensorboard:
            self.tensorboard = TensorBoardLog(self.files.out / "tensorboard")
        self.files.write_summary(self._summary("running"))
        if not restored:
            # Step 0: the untrained model, the reference for everything later.
            self._log_row()
            self._probe()
            self._checkpoint()
        bar = Progress(cfg, s.step, progress)
        self.weights.mark()
        self.window = Window()
        self._lap_start = time.perf_counter()
        try:
            while s.step < cfg.steps and not (cfg.early_stop and s.solved_at_step is not None):
                self.window.add(*self.trainer.train_batch(s.step + 1))
                s.step += 1
                bar.step()
                if self.window.diverged():
                    bar.close()
                    return self._diverged()
                if s.step % cfg.eval_every == 0 or s.step == cfg.steps:
                    self._lap()
                    row = self._log_row()
                    if s.solved_at_step is None and self.task.is_solved(row["val_metric"]):
                        s.solved_at_step = s.step
                    if s.step % cfg.probe_every == 0:
                        self._probe()
                    bar.row(_row_text(cfg, self.task, row), f"val_{self.task.metric_name} {row['val_metric']:.4g}")
                    self._checkpoint()
                elif s.step % cfg.probe_every == 0:
                    self._probe()
        except KeyboardInterrupt:
            bar.close()
            self.files.write_summary(self._summary("interrupted"))
            raise
        bar.close()
        if s.probes.last_step != s.step:
            self._probe()
        self.files.save_model(self.trainer.model)
        self._checkpoint()
        return self.files.write_summary(self._summary("completed"))

    # -- the loop's steps ------------------------------------------------------
    def _lap(self) -> None:
        """Adds the time since the last lap to the run's wall time."""
        now = time.perf_counter()
        self.state.wall_s += now - self._lap_start
        self._lap_start = now

    def _log_row(self) -> dict:
        """A metrics row: the window's statistics, validation, weight change."""
        s = self.state
        val_loss, val_metric = self.validation.evaluate()
        train = self.window.stats()
        row = {"step": s.step, "loss": train["loss"], "metric": train["metric"], "val_loss": val_loss,
               "val_metric": val_metric, "grad_norm": train["grad_norm"], "grad_norm_max": train["grad_norm_max"],
               "wall_s": s.wall_s, **self.weights.since_mark()}
        s.rows.append(row)
        self.files.write_metrics(s.rows)
        if self.tensorboard is not None:
            self.tensorboard.write(row)
        self.window = Window()
        self.weights.mark()
        return row

    def _probe(self) -> None:
        self.state.probes.add(self.state.step, self.prober(*self.probe_xy))
        self.files.write_probes(self.state.probes)

    def _checkpoint(self) -> None:
        s, trainer = self.state, self.trainer
        self.files.write_checkpoint(Checkpoint(
            s.step, s.wall_s, s.solved_at_step, trainer.model.get_weights(),
            [np.asarray(v.numpy()) for v in trainer.optimizer.variables],
        ))

    def _diverged(self) -> dict:
        """Ends a run whose loss or gradient went NaN/Inf, keeping its files."""
        s = self.state
        self._lap()
        train = self.window.stats()
        s.rows.append({"step": s.step, "loss": train["loss"], "metric": train["metric"],
                       "grad_norm": train["grad_norm"], "grad_norm_max": train["grad_norm_max"], "wall_s": s.wall_s})
        self.files.write_metrics(s.rows)
        # No model.keras: its weights are NaN. The last checkpoint is kept.
        return self.files.write_summary(self._summary("diverged", diverged_at_step=s.step))

    # -- starting and resuming ---------------------------------------------------
    def _record_path(self, resume: bool) -> None:
        """Records the execution path in config.json; a run resumed on another
        path says so, since its numbers from here on differ in the last bits."""
        before = self.files.recorded_path() if resume else None
        self.files.record_numerics(self.trainer.path)
        if self.trainer.path.xla_refused and before is None:
            print(f"note: XLA cannot compile this cell ({self.trainer.path.xla_refused}); it trains without XLA, "
                  "more slowly", file=sys.stderr)
        if before is not None and before != self.trainer.path:
            print(f"note: {self.files.out} ran on {before.describe()} and resumes on {self.trainer.path.describe()}: "
                  "from here on its numbers may differ in the last bits from an uninterrupted run's", file=sys.stderr)

    def _restore(self) -> bool:
        """Loads the last checkpoint, and the rows and probes up to its step.

        Returns:
            False if there is no checkpoint yet (the run starts over).
        """
        model, optimizer = self.trainer.model, self.trainer.optimizer
        ck = self.files.read_checkpoint(len(model.weights), len(optimizer.variables))
        if ck is None:
            return False  # killed before the first checkpoint: start over
        model.set_weights(ck.weights)
        for v, value in zip(optimizer.variables, ck.slots):
            v.assign(value)
        s = self.state
        s.step, s.wall_s, s.solved_at_step = ck.step, ck.wall_s, ck.solved_at_step
        s.rows = self.files.read_rows(s.step)
        s.probes = self.files.read_probes(s.step)
        return True

    def _summary(self, status: str, **extra) -> dict:
        """summary.json's contents now."""
        s = self.state
        last = s.rows[-1] if s.rows else {}
        evals = [r for r in s.rows if not math.isnan(r.get("val_loss", math.nan))]
        last_eval = evals[-1] if evals else {}
        return {
            "status": status,
            "solved": s.solved_at_step is not None,
            "solved_at_step": s.solved_at_step,
            "steps_done": s.step,
            "final": {
                "loss": last.get("loss"),
                "metric": last.get("metric"),
                "val_loss": last_eval.get("val_loss"),
                "val_metric": last_eval.get("val_metric"),
            },
            "decay": s.probes.decay(),
            "metric_name": self.task.metric_name,
            "baseline": self.task.baseline(self.cfg.length),
            "wall_s": s.wall_s,
            **extra,
        }


def _row_text(cfg: RunConfig, task, row: dict) -> str:
    return (
        f"step {row['step']}/{cfg.steps}  loss {row['loss']:.4g}  "
        f"val_loss {row['val_loss']:.4g}  val_{task.metric_name} {row['val_metric']:.4g}"
    )
