"""What a training run writes into its run directory, and reads back to resume.

    from seqvg.runfiles import RunFiles, write_config
    write_config(out, cfg, command="seqvg train ...")   # config.json, first
    files = RunFiles(out, columns)
    files.write_metrics(rows); files.write_probes(log); files.write_summary(summary)

The names and formats are those of ``seqvg.rundir`` (docs/design.md, "The
run directory"); every file is written whole and atomically. A checkpoint
is written only right after a metrics row, so ``read_rows`` and
``read_probes`` can give back exactly what the run held at its step.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seqvg import rundir
from seqvg.config import RunConfig
from seqvg.execpath import ExecutionPath
from seqvg.probelog import ProbeLog
from seqvg.rundir import RunDirError
from seqvg.tasks import get_task


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
    (so ``threads`` and ``inter_op_threads`` are only informative), but not across TensorFlow versions,
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
        # 1 where the process runs only seqvg's ops (execpath.settle_inter_op); 0: TensorFlow's default.
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "identical_across": "thread counts and processes; not across TensorFlow versions, "
                            "CPU instruction sets, execution paths (seqvg's ops, Keras's loop, XLA) or devices",
    }


def write_config(out: Path, cfg: RunConfig, command: str | None) -> None:
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


def config_to_resume(out: Path) -> RunConfig:
    """The resolved config of the run in ``out``, which is to be resumed."""
    if not out.is_dir():
        raise RunDirError(f"{out}: no such run directory to resume")
    if not (out / rundir.CONFIG).exists() and (out / rundir.PROBE).is_file():
        raise RunDirError(f"{out}: a probe-only run (probe.json: the probe at init of a study with probe_only); "
                          "nothing was trained, so there is nothing to resume")
    if not (out / rundir.CONFIG).exists():
        raise RunDirError(
            f"{out}: not a complete seqvg run (config.json missing: it was stopped before it started); "
            "nothing to resume: run the original command again"
        )
    return rundir.read_config(out)


@dataclass(frozen=True)
class Checkpoint:
    """checkpoints/state.npz: where the loop stood, and the weights and
    optimizer slots in the order of ``model.weights`` and ``optimizer.variables``."""

    step: int
    wall_s: float
    solved_at_step: int | None
    weights: list[np.ndarray]
    slots: list[np.ndarray]


class RunFiles:
    """Writes (and reads back) one training run's files.

    Args:
        out: the run directory (config.json already written).
        columns: metrics.csv's header.
    """

    def __init__(self, out: Path, columns: list[str]):
        self.out = out
        self.columns = columns

    def record_numerics(self, path: ExecutionPath) -> None:
        """Adds what the run's bit-identity depends on to config.json (once:
        a resumed run keeps what its first start recorded)."""
        config = rundir.read_json(self.out / rundir.CONFIG)
        if "numerics" not in config:
            rundir.write_json(self.out / rundir.CONFIG, {**config, "numerics": numerics(path)})

    def recorded_path(self) -> ExecutionPath | None:
        """The execution path config.json records, if any."""
        from seqvg.execpath import recorded

        return recorded(rundir.read_json(self.out / rundir.CONFIG))

    def write_metrics(self, rows: list[dict]) -> None:
        rundir.write_csv(self.out / rundir.METRICS, self.columns, rows)

    def write_probes(self, log: ProbeLog) -> None:
        rundir.write_npz(self.out / rundir.PROBES, **log.to_arrays())

    def write_summary(self, summary: dict) -> dict:
        rundir.write_json(self.out / rundir.SUMMARY, summary)
        return summary

    def write_checkpoint(self, checkpoint: Checkpoint) -> None:
        arrays = {
            "step": np.int64(checkpoint.step),
            "wall_s": np.float64(checkpoint.wall_s),
            "solved_at_step": np.int64(-1 if checkpoint.solved_at_step is None else checkpoint.solved_at_step),
        }
        arrays.update({f"weight_{i}": w for i, w in enumerate(checkpoint.weights)})
        arrays.update({f"opt_{i}": v for i, v in enumerate(checkpoint.slots)})
        rundir.write_npz(self.out / rundir.CHECKPOINTS / rundir.STATE, **arrays)

    def read_checkpoint(self, n_weights: int, n_slots: int) -> Checkpoint | None:
        """The last checkpoint, or None if the run was killed before its first.

        Raises:
            RunDirError: it does not hold ``n_weights`` weights and ``n_slots`` slots.
        """
        path = self.out / rundir.CHECKPOINTS / rundir.STATE
        if not path.exists():
            return None
        ck = rundir.read_npz(path)
        if sum(k.startswith("weight_") for k in ck) != n_weights or sum(k.startswith("opt_") for k in ck) != n_slots:
            raise RunDirError(f"{path}: corrupt (weights do not match the run's model)")
        solved = int(ck["solved_at_step"])
        return Checkpoint(int(ck["step"]), float(ck["wall_s"]), None if solved < 0 else solved,
                          [ck[f"weight_{i}"] for i in range(n_weights)], [ck[f"opt_{i}"] for i in range(n_slots)])

    def read_rows(self, up_to_step: int) -> list[dict]:
        """metrics.csv's rows up to ``up_to_step``, which must end with that step's row."""
        # A row cut short lies after the checkpoint (seqvg writes whole
        # files), so it is dropped and re-run like any row after it.
        _, rows = rundir.read_csv(self.out / rundir.METRICS, drop_cut_row=True)
        rows = [r for r in rows if r["step"] <= up_to_step]
        if not rows or rows[-1]["step"] != up_to_step:
            raise RunDirError(f"{self.out / rundir.METRICS}: corrupt (no row for the checkpoint's step {up_to_step}); "
                              "the run cannot be resumed exactly")
        return rows

    def read_probes(self, up_to_step: int) -> ProbeLog:
        """probes.npz's records up to ``up_to_step``, which must start with the step-0 probe."""
        log = ProbeLog.from_arrays(rundir.read_npz(self.out / rundir.PROBES), up_to_step)
        if not log.records or log.records[0].step != 0:
            raise RunDirError(f"{self.out / rundir.PROBES}: corrupt (no step-0 probe); the run cannot be resumed")
        return log

    def save_model(self, model) -> None:
        """model.keras; Keras insists on the .keras suffix, so the temp name keeps it."""
        tmp, target = self.out / ".model.tmp.keras", self.out / rundir.MODEL
        try:
            model.save(tmp)
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)  # as atomic_write_bytes: the bytes are on disk before the name
            finally:
                os.close(fd)
            os.replace(tmp, target)
        except BaseException as e:
            # A full disk (or a file-size limit) inside Keras's save: no temp
            # file left behind, and the error names model.keras, not nothing.
            tmp.unlink(missing_ok=True)
            if isinstance(e, OSError) and e.errno is not None:
                raise OSError(e.errno, e.strerror or os.strerror(e.errno), str(target)) from None
            raise
