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
"""

from __future__ import annotations

import importlib.util
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seqvg import rundir, why
from seqvg.config import ConfigError, RunConfig, check_memory, default_run_name, is_custom_cell  # noqa: F401 (re-exported)
from seqvg.customcell import check_cell
from seqvg.execpath import ExecutionPath, resolve
from seqvg.rundir import RunDirError
from seqvg.tasks import STREAM_TRAIN, STREAM_VAL, get_task, probe_batch, stream

EVAL_CHUNK = 256  # validation samples per forward pass (bounds memory)


class RunExistsError(RunDirError):
    """The output directory holds a run and --overwrite was not given."""


def versions() -> dict:
    """Versions of seqvg and the packages that decide its numbers."""
    import keras
    import tensorflow as tf

    from seqvg import __version__

    return {
        "seqvg": __version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def device_description() -> str:
    """The device TensorFlow computes on, in words."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"GPU: {details.get('device_name', gpus[0].name)}"
    return f"CPU: {platform.machine()}, {os.cpu_count()} cores"


def cpu_isa() -> str:
    """The CPU's widest vector instruction set, which decides float rounding
    of oneDNN's and seqvg's compiled kernels (e.g. ``x86_64 avx512f``)."""
    try:
        flags = next(
            (ln.split(":", 1)[1].split() for ln in open("/proc/cpuinfo") if ln.startswith(("flags", "Features"))), []
        )
    except OSError:
        flags = []
    widest = next((f for f in ("avx512f", "avx2", "avx", "sse4_2", "asimd", "neon") if f in flags), "")
    return f"{platform.machine()} {widest}".strip()


def numerics(path: ExecutionPath) -> dict:
    """What a run's bit-identity depends on, for config.json.

    The same config and seed give identical metrics whatever the thread count
    (so ``threads`` is only informative), but not across TensorFlow versions,
    CPU instruction sets, execution paths (``path``) or a GPU.
    ``lstm_path`` and ``gru_path`` say ``path`` in the words older runs use.
    """
    import tensorflow as tf

    return {
        "execution_path": path.to_dict(),
        "lstm_path": path.lstm_path,
        "gru_path": path.gru_path,
        "cpu_isa": cpu_isa(),
        "threads": tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count(),
        "identical_across": "thread counts and processes; not across TensorFlow versions, "
                            "CPU instruction sets, LSTM or GRU paths or devices",
    }


def make_train_step(model, task, optimizer):
    """The compiled training step ``(x, y) -> (loss, metric, grad_norm)``.

    ``grad_norm`` is the global norm of the weight gradient before clipping:
    the exploding-gradient symptom is this number.
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

    return tf.function(step)


@dataclass
class _State:
    """What a checkpoint restores besides weights."""

    step: int = 0
    wall_s: float = 0.0
    solved_at_step: int | None = None
    rows: list[dict] = field(default_factory=list)
    probe_steps: list[int] = field(default_factory=list)
    probe_h: list[np.ndarray] = field(default_factory=list)
    probe_c: list[np.ndarray] = field(default_factory=list)
    probe_x: list[np.ndarray] = field(default_factory=list)
    probe_loss: list[float] = field(default_factory=list)
    probe_summary: list[dict] = field(default_factory=list)
    probe_why: list[dict] = field(default_factory=list)
    #: a custom cell's states after h (and c): name -> one (layers, T) array per probe
    probe_states: dict[str, list[np.ndarray]] = field(default_factory=dict)


def _weight_groups(model) -> list:
    """(column name, layer) for every layer with weights, bottom to top."""
    return [(f"weight_change/{layer.name}", layer) for layer in model.layers if layer.weights]


def _flat_weights(layer) -> np.ndarray:
    return np.concatenate([np.ravel(w) for w in layer.get_weights()]).astype(np.float64)


#: The step at which a run estimates its duration and, past LONG_RUN_S, says so.
ESTIMATE_AT = 20
LONG_RUN_S = 15 * 60


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """Where a run is: steps/s, ETA and the latest validation metric.

    On a terminal one line redrawn in place; otherwise (piped) one plain line
    per logged row; disabled (``-q``) nothing. At step ``ESTIMATE_AT`` a run
    whose remaining steps would take more than ``LONG_RUN_S`` says so once.
    The rate leaves out the first step (it builds the graph).
    """

    def __init__(self, cfg: RunConfig, start: int, enabled: bool, stream=None, tty: bool | None = None,
                 clock=time.perf_counter):
        self.cfg = cfg
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.tty = enabled and (self.stream.isatty() if tty is None else tty)
        self.clock = clock
        self.start = self.step_now = start
        self.t0: float | None = None  # after the first step
        self.text = ""
        self.warned = False
        self.last_draw = -math.inf
        self.width = 0

    def rate(self) -> float | None:
        """Steps per second since the first step, or None before two steps."""
        if self.t0 is None or self.step_now <= self.start + 1:
            return None
        elapsed = self.clock() - self.t0
        return (self.step_now - self.start - 1) / elapsed if elapsed > 0 else None

    def eta(self) -> float | None:
        """Seconds left to the step budget at the current rate (early stop may come sooner)."""
        rate = self.rate()
        return None if not rate else (self.cfg.steps - self.step_now) / rate

    def step(self, n: int = 1) -> None:
        self.step_now += n
        if self.t0 is None:
            self.t0 = self.clock()
        if not self.warned and self.step_now >= self.start + ESTIMATE_AT:
            self.warned = True
            eta = self.eta()
            if self.enabled and eta is not None and eta > LONG_RUN_S:
                self._line(f"note: a long run: {self.cfg.steps - self.step_now} steps left at {self.rate():.1f} "
                           f"steps/s take about {eta / 60:.0f} minutes (less if it solves early); fewer --steps "
                           "or a shorter --length finish sooner")
        if self.tty and self.clock() - self.last_draw >= 0.2:
            self._draw()

    def status(self) -> str:
        """The progress line: step, steps/s, ETA and the latest row's text."""
        cfg, rate, eta = self.cfg, self.rate(), self.eta()
        done = self.step_now / cfg.steps
        bar = "#" * int(10 * done) + "-" * (10 - int(10 * done))
        parts = [f"{cfg.cell} T={cfg.length} [{bar}] {self.step_now}/{cfg.steps}",
                 f"{rate:.1f} steps/s" if rate else "-- steps/s", f"ETA {_clock(eta)}" if eta is not None else "ETA --"]
        if self.text:
            parts.append(self.text)
        return " ".join(parts)

    def _draw(self) -> None:
        import shutil

        self.last_draw = self.clock()
        line = self.status()[: max(20, shutil.get_terminal_size().columns - 1)]
        self.stream.write("\r" + line.ljust(self.width))
        self.stream.flush()
        self.width = len(line)

    def _line(self, text: str) -> None:
        if self.tty and self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.width = 0
        print(text, file=self.stream, flush=True)
        if self.tty:
            self._draw()

    def row(self, text: str, short: str | None = None) -> None:
        """A logged row: ``short`` (else ``text``) joins the line on a terminal;
        piped, ``text`` is printed."""
        self.text = short or text
        if self.tty:
            self._draw()
        elif self.enabled:
            rate = self.rate()
            print(text + (f"  {rate:.1f} steps/s" if rate else ""), file=self.stream, flush=True)

    def close(self) -> None:
        if self.tty and self.width:
            self._draw()
            self.stream.write("\n")
            self.stream.flush()
            self.width = 0


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
        cfg = _config_to_resume(out)
        if is_custom_cell(cfg.cell):
            from seqvg.customcell import bind_run

            bind_run(cfg, out, warn=lambda m: print(m, file=sys.stderr))
    else:
        cfg = cfg.resolved()
    # Every check before anything is written or deleted.
    check_memory(cfg)
    check_cell(cfg)
    if cfg.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise ConfigError("--tensorboard needs the tensorboard package: pip install 'seqvg[tensorboard]'", "tensorboard")
    if out.exists():
        rundir.check_not_in_use(out)
    if not resume and rundir.has_content(out):
        rundir.check_own_run(out)
        if not overwrite:
            raise RunExistsError(f"{out}: already holds a run; pass --overwrite to replace it or --resume")
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
            _write_config(out, cfg, command)
        if is_custom_cell(cfg.cell) and not (out / rundir.CELL_DIR / "cell.json").exists():
            from seqvg.customcell import write_run_files

            write_run_files(cfg, out)  # a new run, or one stopped before its cell was recorded
        return _Run(cfg, out).run(resume=resume, progress=progress)


def _write_config(out: Path, cfg: RunConfig, command: str | None) -> None:
    """config.json: written first, right after the lock, so that a run killed
    at any later moment can be resumed."""
    task = get_task(cfg.task, cfg.task_args)
    rundir.write_json(
        out / rundir.CONFIG,
        {
            "config": cfg.to_dict(),
            "seed": cfg.seed,
            "versions": versions(),
            "device": device_description(),
            "command": command,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "seq_len": cfg.seq_len,
            "baseline": task.baseline(cfg.length),
            "metric_name": task.metric_name,
        },
    )


def _config_to_resume(out: Path) -> RunConfig:
    if not out.is_dir():
        raise RunDirError(f"{out}: no such run directory to resume")
    if not (out / rundir.CONFIG).exists():
        raise RunDirError(
            f"{out}: not a complete seqvg run (config.json missing: it was stopped before it started); "
            "nothing to resume: run the original command again"
        )
    try:
        return RunConfig.from_dict(rundir.read_json(out / rundir.CONFIG)["config"]).resolved()
    except (KeyError, TypeError, ValueError) as e:
        raise RunDirError(f"{out / rundir.CONFIG}: corrupt ({e})") from None


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
        self._train_step = make_train_step(self.model, self.task, self.optimizer)

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


class _Run(Trainer):
    """The state and files of one training run (see ``train``)."""

    def __init__(self, cfg: RunConfig, out: Path):
        import tensorflow as tf

        from seqvg.probe import Prober

        super().__init__(cfg)
        self.out = out
        self.prober = Prober(self.model, self.task, self.path)
        self.groups = _weight_groups(self.model)
        self.columns = ["step", "loss", "metric", "val_loss", "val_metric", "grad_norm", "grad_norm_max", "wall_s"]
        self.columns += [name for name, _ in self.groups]
        # sMNIST validates on the test split; the synthetic tasks ignore the split.
        self.val = self.task.generate(stream(cfg.seed, STREAM_VAL), cfg.val_size, cfg.length, split="test")
        self.probe_xy = probe_batch(cfg)
        self.state = _State()
        self._predict = tf.function(lambda x: self.model(x, training=False), reduce_retracing=True)
        self.tb = None

    def evaluate(self) -> tuple[float, float]:
        """Validation loss and metric over the fixed validation set."""
        import tensorflow as tf

        x, y = self.val
        total_loss = total_metric = 0.0
        for i in range(0, len(x), EVAL_CHUNK):
            xb, yb = x[i : i + EVAL_CHUNK], y[i : i + EVAL_CHUNK]
            pred = self._predict(tf.constant(xb))
            n = len(xb)
            total_loss += float(self.task.loss_fn(yb, pred)) * n
            total_metric += float(self.task.metric_fn(yb, pred)) * n
        return total_loss / len(x), total_metric / len(x)

    # -- files ---------------------------------------------------------------
    def _record_numerics(self) -> None:
        """Adds what the run's bit-identity depends on to config.json, which
        is written before the model exists (``numerics``)."""
        config = rundir.read_json(self.out / rundir.CONFIG)
        if "numerics" not in config:
            rundir.write_json(self.out / rundir.CONFIG, {**config, "numerics": numerics(self.path)})

    def _write_probes(self) -> None:
        s = self.state
        arrays = {
            "steps": np.asarray(s.probe_steps, dtype=np.int64),
            "h": np.stack(s.probe_h).astype(np.float32),
            "x": np.stack(s.probe_x).astype(np.float32),
            "loss": np.asarray(s.probe_loss, dtype=np.float32),
        }
        if s.probe_c:
            arrays["c"] = np.stack(s.probe_c).astype(np.float32)
        for name, values in s.probe_states.items():
            arrays[f"state_{name}"] = np.stack(values).astype(np.float32)
        # Gates and step Jacobians (seqvg.why), only when every row has them:
        # a run begun before they existed and resumed now goes on without.
        if len(s.probe_why) == len(s.probe_steps):
            arrays.update(why.npz_arrays(s.probe_why))
        rundir.write_npz(self.out / rundir.PROBES, **arrays)

    def _write_summary(self, status: str, **extra) -> dict:
        s = self.state
        last = s.rows[-1] if s.rows else {}
        evals = [r for r in s.rows if not math.isnan(r.get("val_loss", math.nan))]
        last_eval = evals[-1] if evals else {}
        summary = {
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
            "decay": {
                "init": s.probe_summary[0] if s.probe_summary else None,
                "final": s.probe_summary[-1] if s.probe_summary else None,
            },
            "metric_name": self.task.metric_name,
            "baseline": self.task.baseline(self.cfg.length),
            "wall_s": s.wall_s,
        }
        summary.update(extra)
        rundir.write_json(self.out / rundir.SUMMARY, summary)
        return summary

    def _checkpoint(self) -> None:
        s = self.state
        arrays = {
            "step": np.int64(s.step),
            "wall_s": np.float64(s.wall_s),
            "solved_at_step": np.int64(-1 if s.solved_at_step is None else s.solved_at_step),
        }
        for i, w in enumerate(self.model.get_weights()):
            arrays[f"weight_{i}"] = w
        for i, v in enumerate(self.optimizer.variables):
            arrays[f"opt_{i}"] = np.asarray(v.numpy())
        rundir.write_npz(self.out / rundir.CHECKPOINTS / rundir.STATE, **arrays)

    def _restore(self) -> bool:
        """Loads the last checkpoint and drops rows/probes written after it.

        Returns:
            False if there is no checkpoint yet (the run starts over).
        """
        path = self.out / rundir.CHECKPOINTS / rundir.STATE
        if not path.exists():
            return False  # killed before the first checkpoint: start over
        ck = rundir.read_npz(path)
        n_w = len(self.model.weights)
        n_o = len(self.optimizer.variables)
        if sum(k.startswith("weight_") for k in ck) != n_w or sum(k.startswith("opt_") for k in ck) != n_o:
            raise RunDirError(f"{path}: corrupt (weights do not match the run's model)")
        self.model.set_weights([ck[f"weight_{i}"] for i in range(n_w)])
        for i, v in enumerate(self.optimizer.variables):
            v.assign(ck[f"opt_{i}"])
        s = self.state
        s.step = int(ck["step"])
        s.wall_s = float(ck["wall_s"])
        s.solved_at_step = None if int(ck["solved_at_step"]) < 0 else int(ck["solved_at_step"])
        # A row cut short lies after the checkpoint (seqvg writes whole
        # files), so it is dropped and re-run like any row after it.
        _, rows = rundir.read_csv(self.out / rundir.METRICS, drop_cut_row=True)
        s.rows = [r for r in rows if r["step"] <= s.step]
        if not s.rows or s.rows[-1]["step"] != s.step:
            raise RunDirError(f"{self.out / rundir.METRICS}: corrupt (no row for the checkpoint's step {s.step}); "
                              "the run cannot be resumed exactly")
        probes = rundir.read_npz(self.out / rundir.PROBES)
        keep = probes["steps"] <= s.step
        s.probe_steps = [int(v) for v in probes["steps"][keep]]
        s.probe_h = list(probes["h"][keep])
        s.probe_x = list(probes["x"][keep])
        s.probe_loss = [float(v) for v in probes["loss"][keep]]
        if "c" in probes:
            s.probe_c = list(probes["c"][keep])
        s.probe_states = {key[len("state_"):]: list(v[keep]) for key, v in probes.items() if key.startswith("state_")}
        s.probe_summary = [_summary_of(h) for h in s.probe_h]
        s.probe_why = why.from_npz(probes, keep)
        if not s.probe_steps or s.probe_steps[0] != 0:
            raise RunDirError(f"{self.out / rundir.PROBES}: corrupt (no step-0 probe); the run cannot be resumed")
        return True

    # -- the loop ------------------------------------------------------------
    def _probe(self) -> None:
        r = self.prober(*self.probe_xy)
        s = self.state
        s.probe_steps.append(s.step)
        s.probe_h.append(r.h)
        s.probe_x.append(r.x)
        s.probe_loss.append(r.loss)
        if r.c is not None:
            s.probe_c.append(r.c)
        for name, values in (r.states or {}).items():
            s.probe_states.setdefault(name, []).append(values)
        s.probe_summary.append(r.summary())
        if r.why is not None:
            s.probe_why.append(r.why)
        self._write_probes()

    def _log_row(self, window: dict, prev_weights: list[np.ndarray]) -> dict:
        s = self.state
        val_loss, val_metric = self.evaluate()
        row = {
            "step": s.step,
            "loss": float(np.mean(window["loss"])) if window["loss"] else math.nan,
            "metric": float(np.mean(window["metric"])) if window["metric"] else math.nan,
            "val_loss": val_loss,
            "val_metric": val_metric,
            "grad_norm": float(np.mean(window["gnorm"])) if window["gnorm"] else math.nan,
            "grad_norm_max": float(np.max(window["gnorm"])) if window["gnorm"] else math.nan,
            "wall_s": s.wall_s,
        }
        for (name, layer), prev in zip(self.groups, prev_weights):
            now = _flat_weights(layer)
            denom = np.linalg.norm(prev)
            row[name] = float(np.linalg.norm(now - prev) / denom) if s.rows and denom > 0 else math.nan
        s.rows.append(row)
        rundir.write_csv(self.out / rundir.METRICS, self.columns, s.rows)
        if self.tb is not None:
            import tensorflow as tf

            with self.tb.as_default():
                for k, v in row.items():
                    if k != "step" and math.isfinite(v):
                        tf.summary.scalar(k, v, step=s.step)
            self.tb.flush()
        return row

    def run(self, *, resume: bool, progress: bool) -> dict:
        """Runs (or resumes) the loop and returns the summary."""
        import tensorflow as tf

        cfg, s = self.cfg, self.state
        self._record_numerics()
        restored = resume and self._restore()
        if cfg.tensorboard:
            self.tb = tf.summary.create_file_writer(str(self.out / "tensorboard"))
        self._write_summary("running")
        if not restored:
            # Step 0: the untrained model, the reference for everything later.
            self._log_row({"loss": [], "metric": [], "gnorm": []}, [_flat_weights(layer) for _, layer in self.groups])
            self._probe()
            self._checkpoint()
        bar = Progress(cfg, s.step, progress)
        prev_weights = [_flat_weights(layer) for _, layer in self.groups]
        window: dict = {"loss": [], "metric": [], "gnorm": []}
        t_last = time.perf_counter()
        try:
            while s.step < cfg.steps and not (cfg.early_stop and s.solved_at_step is not None):
                loss, metric, gnorm = self.train_batch(s.step + 1)
                s.step += 1
                window["loss"].append(loss)
                window["metric"].append(metric)
                window["gnorm"].append(gnorm)
                bar.step()
                if not (math.isfinite(loss) and math.isfinite(gnorm)):
                    return self._diverged(window, bar, t_last)
                if s.step % cfg.eval_every == 0 or s.step == cfg.steps:
                    now = time.perf_counter()
                    s.wall_s += now - t_last
                    t_last = now
                    row = self._log_row(window, prev_weights)
                    if s.solved_at_step is None and self.task.is_solved(row["val_metric"]):
                        s.solved_at_step = s.step
                    if s.step % cfg.probe_every == 0:
                        self._probe()
                    bar.row(_row_text(cfg, self.task, row), f"val_{self.task.metric_name} {row['val_metric']:.4g}")
                    window = {"loss": [], "metric": [], "gnorm": []}
                    prev_weights = [_flat_weights(layer) for _, layer in self.groups]
                    self._checkpoint()
                elif s.step % cfg.probe_every == 0:
                    self._probe()
        except KeyboardInterrupt:
            bar.close()
            self._write_summary("interrupted")
            raise
        bar.close()
        if s.probe_steps[-1] != s.step:
            self._probe()
        self._save_model()
        self._checkpoint()
        return self._write_summary("completed")

    def _save_model(self) -> None:
        # Keras insists on the .keras suffix, so the temp name keeps it.
        tmp = self.out / ".model.tmp.keras"
        self.model.save(tmp)
        os.replace(tmp, self.out / rundir.MODEL)

    def _diverged(self, window: dict, bar: Progress, t_last: float) -> dict:
        """Ends a run whose loss or gradient went NaN/Inf, keeping its files."""
        s = self.state
        bar.close()
        s.wall_s += time.perf_counter() - t_last
        row = {
            "step": s.step,
            "loss": float(np.mean(window["loss"])),
            "metric": float(np.mean(window["metric"])),
            "grad_norm": float(np.mean(window["gnorm"])),
            "grad_norm_max": float(np.max(window["gnorm"])),
            "wall_s": s.wall_s,
        }
        s.rows.append(row)
        rundir.write_csv(self.out / rundir.METRICS, self.columns, s.rows)
        # No model.keras: its weights are NaN. The last checkpoint is kept.
        return self._write_summary("diverged", diverged_at_step=s.step)


def _summary_of(h: np.ndarray) -> dict:
    from seqvg.decay import decay_summary

    return decay_summary(h[0])


def _row_text(cfg: RunConfig, task, row: dict) -> str:
    return (
        f"step {row['step']}/{cfg.steps}  loss {row['loss']:.4g}  "
        f"val_loss {row['val_loss']:.4g}  val_{task.metric_name} {row['val_metric']:.4g}"
    )
