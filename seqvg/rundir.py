"""The run directory: the one contract between training and reporting.

    runs/<name>/config.json  metrics.csv  probes.npz  summary.json
                model.keras  checkpoints/state.npz

File names and keys are the public format of docs/design.md. Every file is written
atomically (temp file in the same directory, fsync, rename), so a reader sees
either the old or the new complete file, never half of one, whenever the
writer is killed.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CONFIG = "config.json"
METRICS = "metrics.csv"
PROBES = "probes.npz"
SUMMARY = "summary.json"
MODEL = "model.keras"
CHECKPOINTS = "checkpoints"
STATE = "state.npz"

STATUSES = ("completed", "diverged", "interrupted", "running")


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class RunDirError(Exception):
    """A run directory that is missing, corrupt or half-written."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Writes ``data`` to ``path`` so that no reader ever sees a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file private (0600); a run's files are for sharing.
        os.chmod(tmp, 0o666 & ~_current_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _json_clean(obj):
    """Replaces non-finite floats by None (JSON has no NaN)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        return _json_clean(obj.item())
    return obj


def write_json(path: Path, obj) -> None:
    """Atomically writes ``obj`` as indented JSON (NaN/Inf become null)."""
    atomic_write_bytes(path, (json.dumps(_json_clean(obj), indent=2, sort_keys=False) + "\n").encode())


def write_npz(path: Path, **arrays) -> None:
    """Atomically writes arrays as an uncompressed .npz file."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    """Atomically writes ``rows``; missing or NaN values are empty cells."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for row in rows:
        w.writerow([_csv_cell(row.get(c)) for c in columns])
    atomic_write_bytes(path, buf.getvalue().encode())


def _csv_cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    return str(v)


def read_json(path: Path) -> dict:
    """Reads a JSON object, raising RunDirError naming the file on failure."""
    try:
        with open(path) as f:
            obj = json.load(f)
    except FileNotFoundError:
        raise RunDirError(f"{path}: missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunDirError(f"{path}: corrupt JSON ({e})") from None
    if not isinstance(obj, dict):
        raise RunDirError(f"{path}: expected a JSON object")
    return obj


def read_csv(path: Path) -> tuple[list[str], list[dict]]:
    """Reads metrics.csv into (columns, rows of floats; empty cells are NaN)."""
    try:
        with open(path, newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if not header or header[0] != "step":
                raise RunDirError(f"{path}: corrupt (no header starting with 'step')")
            rows = []
            for i, rec in enumerate(reader, start=2):
                if len(rec) != len(header):
                    raise RunDirError(f"{path}: corrupt at line {i} ({len(rec)} cells, header has {len(header)})")
                try:
                    rows.append({k: (float(v) if v != "" else math.nan) for k, v in zip(header, rec)})
                except ValueError:
                    raise RunDirError(f"{path}: corrupt at line {i} (not a number)") from None
    except FileNotFoundError:
        raise RunDirError(f"{path}: missing") from None
    except UnicodeDecodeError:
        raise RunDirError(f"{path}: corrupt (not text)") from None
    for row in rows:
        row["step"] = int(row["step"])
    return header, rows


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Loads every array of an .npz file, raising RunDirError on failure."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise RunDirError(f"{path}: missing") from None
    except Exception as e:  # zipfile/pickle/value errors all mean "corrupt"
        raise RunDirError(f"{path}: corrupt ({type(e).__name__}: {e})") from None


@dataclass
class Run:
    """A run directory loaded for reporting (no TensorFlow needed)."""

    path: Path
    config: dict
    summary: dict
    columns: list[str]
    metrics: list[dict]
    probes: dict[str, np.ndarray]

    @property
    def cfg(self) -> dict:
        """The resolved run options (config.json's "config")."""
        return self.config["config"]

    @property
    def name(self) -> str:
        return self.path.name


def load_run(path: Path) -> Run:
    """Reads and checks a run directory.

    Raises:
        RunDirError: naming the missing or corrupt file.
    """
    path = Path(path)
    if not path.is_dir():
        raise RunDirError(f"{path}: not a directory")
    config = read_json(path / CONFIG)
    if not isinstance(config.get("config"), dict):
        raise RunDirError(f"{path / CONFIG}: corrupt (no 'config' object)")
    summary = read_json(path / SUMMARY)
    if summary.get("status") not in STATUSES:
        raise RunDirError(f"{path / SUMMARY}: corrupt (status {summary.get('status')!r})")
    columns, rows = read_csv(path / METRICS)
    probes = read_npz(path / PROBES)
    for key in ("steps", "h", "x"):
        if key not in probes:
            raise RunDirError(f"{path / PROBES}: corrupt (no array {key!r})")
    k = probes["steps"].shape[0]
    if probes["h"].ndim != 3 or probes["h"].shape[0] != k or probes["x"].shape[0] != k:
        raise RunDirError(f"{path / PROBES}: corrupt (array shapes disagree)")
    # seqvg.why's arrays, where present: one row per probe, like h.
    why = [key for key in probes if key.startswith("gate_") or key in ("jac_sigma", "sigma_w")]
    if any(probes[key].ndim < 2 or probes[key].shape[0] != k for key in why) or (
            "jac_sigma" in probes and ("jac_t" not in probes or probes["jac_sigma"].shape[-1] != probes["jac_t"].shape[0])):
        raise RunDirError(f"{path / PROBES}: corrupt (gate or Jacobian arrays disagree with the probe steps)")
    return Run(path, config, summary, columns, rows, probes)
