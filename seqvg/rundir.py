"""The run directory: the one contract between training and reporting.

    runs/<name>/config.json  metrics.csv  probes.npz  summary.json
                model.keras  checkpoints/state.npz

A study (``seqvg run``, ``sweep``, ``compare``) keeps one such directory per
run in its OUT, beside results.csv and results.png (and compare's
report.pdf); a probe-only study's run directory holds probe.json alone.

File names and keys are the public format of docs/design.md. Every file is written
atomically (temp file in the same directory, fsync, rename), so a reader sees
either the old or the new complete file, never half of one, whenever the
writer is killed. The module is long because it is the whole contract in one
place: the names, the atomic writers, readers that name a corrupt file, and
the checks that keep a user's own files and a live run safe.
"""

from __future__ import annotations

import csv
import errno
import fcntl
import io
import json
import math
import os
import shlex
import tempfile
from contextlib import contextmanager
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
LOCK = ".lock"
TENSORBOARD = "tensorboard"
#: A custom cell's record (cell/cell.json) and, for a file cell, its copy (cell/NAME.py).
CELL_DIR = "cell"
#: A probe-only study's run: the probe at init (config, norms, decay summary).
PROBE = "probe.json"
#: A study's OUT: one row per finished run, and its figure.
RESULTS_CSV = "results.csv"
RESULTS_PNG = "results.png"
#: The report ``seqvg compare`` writes into its OUT unless told otherwise.
COMPARE_REPORT = "report.pdf"

STATUSES = ("completed", "diverged", "interrupted", "running")


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class RunDirError(Exception):
    """A run directory that is missing, corrupt or half-written."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Writes ``data`` to ``path`` so that no reader ever sees a partial file.

    Raises:
        OSError: naming ``path`` (not the temp file) when the disk is full,
            read-only or not writable; the old ``path`` is left as it was.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        # mkstemp makes the file private (0600); a run's files are for sharing.
        os.chmod(tmp, 0o666 & ~_current_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno is not None:
            # The temp file's name means nothing to a user; the target does.
            raise OSError(e.errno, e.strerror or os.strerror(e.errno), str(path)) from None
        raise


def is_temp_name(name: str) -> bool:
    """A temp file of ``atomic_write_bytes`` or of the model save."""
    return (name.startswith(".") and name.endswith(".tmp")) or name == ".model.tmp.keras"


def json_clean(obj):
    """Replaces non-finite floats by None (JSON has no NaN)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        return json_clean(obj.item())
    return obj


def write_json(path: Path, obj) -> None:
    """Atomically writes ``obj`` as indented JSON (NaN/Inf become null)."""
    atomic_write_bytes(path, (json.dumps(json_clean(obj), indent=2, sort_keys=False) + "\n").encode())


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


def read_csv(path: Path, drop_cut_row: bool = False) -> tuple[list[str], list[dict]]:
    """Reads metrics.csv into (columns, rows of floats; empty cells are NaN).

    seqvg ends every row with a line end, so a last line without one was cut
    mid-write (by another tool: seqvg's own writes are atomic). It is an error,
    or dropped with ``drop_cut_row`` (resume re-runs it).
    """
    try:
        with open(path, newline="") as f:
            text = f.read()
    except FileNotFoundError:
        raise RunDirError(f"{path}: missing") from None
    except UnicodeDecodeError:
        raise RunDirError(f"{path}: corrupt (not text)") from None
    except IsADirectoryError:
        raise RunDirError(f"{path}: not a file") from None
    lines = text.splitlines(keepends=True)
    if len(lines) > 1 and not text.endswith("\n"):
        if not drop_cut_row:
            raise RunDirError(f"{path}: corrupt at line {len(lines)} (row cut short: no line end)")
        lines = lines[:-1]
    reader = csv.reader(lines)
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
    except OSError as e:
        raise RunDirError(f"{path}: cannot read ({e.strerror or e})") from None
    except Exception as e:  # zipfile/pickle/value errors all mean "corrupt"
        if "pickle" in str(e) and _starts_with(path, (b"\x80", b"\x93NUMPY")):
            # numpy's message advises allow_pickle=True, i.e. running code from the file: never.
            # (numpy says "pickled" of any file it cannot read; only a real
            # pickle or an object array is called one here.)
            raise RunDirError(f"{path}: not an .npz file (it holds pickled Python objects, "
                              "which seqvg does not load)") from None
        if not zipfile_like(path):
            raise RunDirError(f"{path}: not an .npz file") from None
        raise RunDirError(f"{path}: corrupt ({type(e).__name__}: {e})") from None


def _starts_with(path: Path, prefixes: tuple[bytes, ...]) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(8).startswith(prefixes)
    except OSError:
        return False


def zipfile_like(path: Path) -> bool:
    """True if ``path`` starts like a zip archive (what an .npz is)."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def is_finished(path: Path, probe_only: bool = False) -> bool:
    """Whether the run in ``path`` is done: probed (probe-only studies), or
    trained to its end (completed or diverged); False for a missing or
    unreadable summary, which the run's next start resumes or refuses."""
    if probe_only:
        return (path / PROBE).exists()
    try:
        return read_json(path / SUMMARY).get("status") in ("completed", "diverged")
    except RunDirError:
        return False


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


def read_config(path: Path, resolve: bool = True):
    """The ``RunConfig`` a run directory's config.json records (resolved).

    Raises:
        RunDirError: config.json is missing, not JSON, has no "config"
            object, or one seqvg cannot take (a wrong type, an unknown key).
    """
    source = Path(path) / CONFIG
    config = read_json(source)
    return config_of(config, source, resolve)


def config_of(config: dict, source: Path, resolve: bool = True):
    """The ``RunConfig`` of config.json's contents ``config``, read from ``source``.

    Raises:
        RunDirError: naming ``source``.
    """
    from seqvg.config import ConfigError, RunConfig

    if not isinstance(config.get("config"), dict):
        raise RunDirError(f"{source}: corrupt (no 'config' object)")
    try:
        cfg = RunConfig.from_dict(config["config"])
        return cfg.resolved() if resolve else cfg
    except ConfigError as e:
        newer = " or written by a newer seqvg" if str(e).startswith("unknown config keys") else ""
        raise RunDirError(f"{source}: corrupt{newer} ({e})") from None


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_summary(summary: dict, source: Path) -> None:
    """Checks the fields of summary.json that the report and diagnose read.

    seqvg writes them with these types; a hand edit or another tool may not,
    and a report formatting ``"solved": "yes"`` would fail with a traceback.

    Raises:
        RunDirError: naming ``source`` and the first field of a wrong type.
    """
    def corrupt(what: str) -> RunDirError:
        return RunDirError(f"{source}: corrupt ({what})")

    if summary.get("status") not in STATUSES:
        raise corrupt(f"status {summary.get('status')!r}")
    solved = summary.get("solved")
    if not isinstance(solved, bool):
        raise corrupt(f"solved must be true or false, got {solved!r}")
    for key in ("solved_at_step", "steps_done", "diverged_at_step"):
        value = summary.get(key)
        if value is not None and not (_is_int(value) and value >= 0):
            raise corrupt(f"{key} must be a step (an int >= 0), got {value!r}")
    if solved and summary.get("solved_at_step") is None:
        raise corrupt("solved is true but solved_at_step is missing")
    final = summary.get("final")
    if final is not None:
        if not isinstance(final, dict):
            raise corrupt(f"final must be an object, got {final!r}")
        for key, value in final.items():
            if value is not None and not _is_number(value):
                raise corrupt(f"final.{key} must be a number or null, got {value!r}")
    decay = summary.get("decay")
    if decay is not None and not (isinstance(decay, dict)
                                  and all(d is None or isinstance(d, dict) for d in decay.values())):
        raise corrupt(f"decay must be an object of init and final figures, got {decay!r}")


def load_run(path: Path) -> Run:
    """Reads and checks a run directory.

    Raises:
        RunDirError: naming the missing or corrupt file.
    """
    path = Path(path)
    if not path.is_dir():
        raise RunDirError(f"{path}: {'not a directory' if path.exists() else 'does not exist'}")
    config = read_json(path / CONFIG)
    # Its options' types and names (the report and diagnose read them); not
    # resolved(), whose rules may have grown stricter since an old run was made.
    cfg = config_of(config, path / CONFIG, resolve=False)
    summary = read_json(path / SUMMARY)
    check_summary(summary, path / SUMMARY)
    columns, rows = read_csv(path / METRICS)
    if not rows:  # a run's first row (step 0) comes before anything is reported
        raise RunDirError(f"{path / METRICS}: corrupt (no rows: not even step 0's)")
    probes = read_npz(path / PROBES)
    for key in ("steps", "h", "x"):
        if key not in probes:
            raise RunDirError(f"{path / PROBES}: corrupt (no array {key!r})")
    k = probes["steps"].shape[0] if probes["steps"].ndim == 1 else 0
    if k == 0:
        raise RunDirError(f"{path / PROBES}: corrupt (no probes: not even step 0's)")
    if probes["h"].ndim != 3 or probes["h"].shape[0] != k or probes["x"].shape[0] != k:
        raise RunDirError(f"{path / PROBES}: corrupt (array shapes disagree)")
    # The curves must be the run's: their length is what diagnose calls the
    # sequence (horizon 5/5 of a T=20 run otherwise) and the report's t axis.
    try:
        steps = cfg.seq_len
    except ValueError:  # task parameters config_of does not check: reported by whoever resolves them
        steps = probes["h"].shape[-1]
    if probes["h"].shape[1:] != (cfg.layers, steps) or probes["x"].shape != (k, steps):
        raise RunDirError(f"{path / PROBES}: corrupt (h has shape {probes['h'].shape}, x {probes['x'].shape}; "
                          f"the run's {cfg.layers} layer(s) over {steps} timesteps need ({k}, {cfg.layers}, "
                          f"{steps}) and ({k}, {steps}))")
    # seqvg.why's arrays, where present: one row per probe, like h.
    why = [key for key in probes if key.startswith(("gate_", "state_")) or key in ("jac_sigma", "sigma_w")]
    if any(probes[key].ndim < 2 or probes[key].shape[0] != k for key in why) or (
            "jac_sigma" in probes and ("jac_t" not in probes or probes["jac_sigma"].shape[-1] != probes["jac_t"].shape[0])):
        raise RunDirError(f"{path / PROBES}: corrupt (gate or Jacobian arrays disagree with the probe steps)")
    return Run(path, config, summary, columns, rows, probes)


# -- ownership and locking ------------------------------------------------------
#: What seqvg writes at the top of a run directory (besides temp files).
RUN_FILES = (CONFIG, METRICS, PROBES, SUMMARY, MODEL)


def find_runs(paths: list, what: str = "report") -> tuple[list[Path], list[str]]:
    """The run directories that ``paths`` (the arguments of ``seqvg report``
    and ``seqvg diagnose``) name, and a note for each path left out.

    A run directory stands for itself. A study's directory (the OUT of
    ``seqvg run``, ``sweep`` or ``compare``: no config.json of its own, run
    directories in it) stands for its runs, in name order. A file, such as
    the results.csv that the glob ``runs/demo/*`` also matches, is left out
    with a note, as is a probe-only run (probe.json alone: its study's PDF
    shows it) and a study's run that has not started.

    Raises:
        RunDirError: nothing left to ``what`` (the notes say why).
    """
    found, notes = [], []
    for path in map(Path, paths):
        if path.is_file():
            notes.append(f"{path}: a file, not a run directory; left out")
            continue
        runs = sorted(p for p in path.iterdir() if p.is_dir()) \
            if path.is_dir() and not (path / CONFIG).exists() else []
        if runs and all((p / PROBE).is_file() for p in runs):
            notes.append(f"{path}: a probe-only study (its runs hold probe.json alone); left out, the PDF "
                         "that seqvg run writes shows it")
            continue
        if not any((p / CONFIG).exists() for p in runs):
            if (path / PROBE).is_file() and not (path / CONFIG).exists():
                notes.append(f"{path}: a probe-only run (probe.json); left out, its study's PDF shows it")
            elif (path / CONFIG).exists() and _before_first_results(path):
                notes.append(_before_first_results(path))
            elif path.is_dir() and not (path / CONFIG).exists() and runs and not is_study_dir(path) and \
                    any(is_study_dir(p) for p in runs):
                notes.append(f"{path}: a directory of studies, not a run or a study; left out: give a study's "
                             f"directory ({runs[0]}, ...) or run directories")
            elif path.is_dir() and not (path / CONFIG).exists() and not has_content(path):
                if (path / LOCK).exists():
                    notes.append(f"{path}: a run stopped before it started (its lock alone); left out, run the "
                                 "original command again")
                else:
                    notes.append(f"{path}: an empty directory, not a run or a study; left out")
            else:
                found.append(path)  # a run, or load_run's message says what is missing
            continue
        for run in runs:
            if (run / CONFIG).exists() and _before_first_results(run):
                notes.append(_before_first_results(run))
            elif (run / CONFIG).exists():
                found.append(run)
            elif (run / PROBE).is_file():
                notes.append(f"{run}: a probe-only run (probe.json); left out, its study's PDF shows it")
            elif is_pages_dir(run):
                notes.append(f"{run}: report pages (PNG), not a run; left out")
            else:
                notes.append(f"{run}: no config.json (a run not started yet); left out")
    if not found:
        more = f" (and {len(notes) - 1} more left out)" if len(notes) > 1 else ""
        raise RunDirError(f"nothing to {what}: {notes[0]}{more}" if notes else "no run directories given")
    # One directory given twice (runs/a and ./runs/a/, or a run and its study) is one run.
    unique: dict[Path, Path] = {}
    for run in found:
        first = unique.setdefault(run.resolve(), run)
        if first is not run and first != run:
            notes.append(f"{run}: the same directory as {first}; left out")
    return list(unique.values()), notes


def _before_first_results(run: Path) -> str | None:
    """A note for a run that has started (config.json) but has not yet written
    its step-0 results (metrics.csv and probes.npz; the model is built and
    traced first, seconds): live, or killed then. None for any other run,
    whose files load_run checks."""
    if (run / METRICS).exists() and (run / PROBES).exists() or (run / CHECKPOINTS / STATE).exists():
        return None
    try:
        status = read_json(run / SUMMARY).get("status") if (run / SUMMARY).exists() else None
    except RunDirError:
        return None
    if status not in (None, "running", "interrupted"):
        return None  # a finished run missing a file: corrupt, and load_run says so
    holder = lock_holder(run)
    if holder:
        return f"{run}: started, no results yet (in use by {holder}, which is writing it); left out"
    return (f"{run}: stopped before its first results (resume with seqvg train --resume --out "
            f"{shlex.quote(str(run))}); left out")


class NotARunError(RunDirError):
    """A directory holding files seqvg did not write: seqvg never replaces it."""


def is_seqvg_config(path: Path) -> bool:
    """True if ``path`` is a config.json as seqvg writes it."""
    try:
        obj = read_json(path)
    except (RunDirError, OSError):
        return False
    return isinstance(obj.get("config"), dict) and isinstance(obj.get("versions"), dict) \
        and "seqvg" in obj["versions"]


def foreign_entries(path: Path) -> list[str]:
    """Entries of a run directory that seqvg did not write (sorted, relative).

    A directory with data files but no seqvg config.json is foreign as a
    whole: seqvg writes config.json first.
    """
    path = Path(path)
    foreign = []
    data = False
    for p in sorted(path.iterdir()):
        name = p.name
        if name == LOCK or is_temp_name(name):
            if p.is_dir():
                foreign.append(name)
            continue
        if name in RUN_FILES and p.is_file() and not p.is_symlink():
            data = True
            continue
        if name in (CHECKPOINTS, TENSORBOARD, CELL_DIR) and p.is_dir() and not p.is_symlink():
            ok = {CHECKPOINTS: lambda n: n == STATE or is_temp_name(n),
                  TENSORBOARD: lambda n: n.startswith("events.out.tfevents."),
                  CELL_DIR: lambda n: n == "cell.json" or n.endswith(".py") or is_temp_name(n)}[name]
            inner = [q for q in sorted(p.iterdir()) if not (ok(q.name) and q.is_file() and not q.is_symlink())]
            foreign += [f"{name}/{q.name}" for q in inner]
            data = True
            continue
        foreign.append(name)
    if data and not foreign and not is_seqvg_config(path / CONFIG):
        foreign.append(CONFIG if (path / CONFIG).exists() else "(files without a seqvg config.json)")
    return foreign


def has_content(path: Path) -> bool:
    """True if ``path`` exists and holds more than a lock and temp files."""
    path = Path(path)
    if not path.exists():
        return False
    if not path.is_dir():
        raise NotARunError(f"{path}: exists and is not a directory")
    return any(p.name != LOCK and not is_temp_name(p.name) for p in path.iterdir())


def run_holding(path: Path) -> Path | None:
    """The seqvg run directory that ``path`` is, or lies inside, else None.

    A run directory holds only the run's own files (``--overwrite`` and a
    study run again refuse anything else), so nothing else is written there.
    """
    full = Path(path).resolve()  # resolved: "../r.pdf" from inside a run lies outside it
    for d in [full, *full.parents]:
        if (d / PROBE).is_file() or ((d / CONFIG).is_file() and is_seqvg_config(d / CONFIG)):
            return d.relative_to(Path.cwd().resolve()) if d.is_relative_to(Path.cwd().resolve()) else d
    return None


def inside_run_problem(shown, where: Path) -> str | None:
    """Why ``shown`` (a report, or pages, to be written in ``where``) cannot
    go there: ``where`` is a run directory or lies inside one; else None."""
    run = run_holding(where)
    if run is None:
        return None
    return (f"{shown}: inside the run directory {run}, which holds only the run's own files (a study run again, "
            "or --overwrite, refuses anything else there); choose a directory outside it")


def is_pages_dir(path: Path) -> bool:
    """Whether ``path`` is a directory of report pages: PNG files alone
    (``seqvg report STUDY --png STUDY/pages``). Whether seqvg wrote them is
    ``seqvg.pdf.written_by_seqvg``'s to say."""
    path = Path(path)
    if not path.is_dir() or path.is_symlink():
        return False
    entries = list(path.iterdir())
    return bool(entries) and all(q.is_file() and not q.is_symlink() and q.suffix == ".png" for q in entries)


def is_study_dir(path: Path) -> bool:
    """Whether ``path`` is a study's OUT: it holds a study's results.csv, or
    run directories and nothing but a study's files."""
    path = Path(path)
    try:
        with open(path / RESULTS_CSV, "rb") as f:
            if f.readline().startswith(b"run,label,"):
                return True
    except OSError:
        pass
    if not path.is_dir():
        return False
    entries = list(path.iterdir())

    def run(q: Path) -> bool:
        return q.is_dir() and ((q / CONFIG).is_file() or (q / PROBE).is_file())

    return any(map(run, entries)) and all(run(q) or q.name in (LOCK, RESULTS_PNG) or is_temp_name(q.name)
                                          for q in entries)


def check_own_run(path: Path, signed=None) -> None:
    """Raises NotARunError unless everything in ``path`` is a seqvg run's own file.

    Args:
        signed: file -> whether seqvg wrote it as a report or figure
            (``pdf.written_by_seqvg``, which this module cannot import): such
            files are not a run's, and are kept, but the message says whose
            they are.
    """
    foreign = foreign_entries(path)
    if foreign and not (path / CONFIG).exists() and is_study_dir(path):
        raise NotARunError(f"{path}: a seqvg study's directory (its runs and results.csv), not a run; a run is "
                           "written only into a new or empty directory or over its own run: choose another --out")
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        if signed is not None and all((path / f).is_file() and signed(path / f) for f in foreign):
            raise NotARunError(f"{path}: holds {shown}, which seqvg wrote as a report, not as part of a run; "
                               "seqvg replaces only a run's own files: move it out, or choose another --out")
        raise NotARunError(f"{path}: holds {shown}, not written by seqvg; seqvg writes a run only into a new "
                           "or empty directory or over its own run: choose another --out")


def remove_run(path: Path) -> None:
    """Deletes a seqvg run's files from ``path``, keeping the lock; nothing else.

    Raises:
        NotARunError: ``path`` holds anything seqvg did not write.
    """
    path = Path(path)
    check_own_run(path)
    # config.json last: a directory killed half-way stays recognisably seqvg's.
    for p in sorted(path.iterdir(), key=lambda p: p.name == CONFIG):
        if p.name == LOCK:
            continue
        if p.is_dir():
            for q in p.iterdir():
                q.unlink()
            p.rmdir()
        else:
            p.unlink()


def lock_holder(path: Path) -> str | None:
    """Who holds the run lock of ``path`` ("PID 123"), or None if nobody."""
    lock = Path(path) / LOCK
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.read(fd, 32).decode(errors="replace").strip()
            return f"PID {pid}" if pid.isdigit() else "another seqvg process"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def in_use_error(path: Path, holder: str) -> RunDirError:
    return RunDirError(f"{path}: in use by {holder} (a seqvg run is writing it); wait for it to end or stop it")


def check_not_in_use(path: Path) -> None:
    """Raises RunDirError if another seqvg process holds ``path``'s lock."""
    holder = lock_holder(path)
    if holder:
        raise in_use_error(path, holder)


@contextmanager
def locked(path: Path):
    """Holds an exclusive lock on a run directory for the life of a run.

    The lock file records the holder's PID, so that a second process can say
    who holds it. Opening without truncating keeps the holder's PID readable.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT, 0o666 & ~_current_umask())
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.read(fd, 32).decode(errors="replace").strip()
            raise in_use_error(path, f"PID {pid}" if pid.isdigit() else "another seqvg process") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def check_writable(path: Path, is_dir: bool = False) -> None:
    """Checks, before any work, that ``path`` (a file, or a directory) can be written.

    Probes the nearest existing directory with a temp file that is removed
    again, so it answers for read-only filesystems, permissions and /proc alike.

    Raises:
        OSError: naming ``path``.
    """
    path = Path(path)
    if path.exists():
        if is_dir != path.is_dir():
            raise OSError(errno.EISDIR if path.is_dir() else errno.ENOTDIR,
                          "is a directory" if path.is_dir() else "not a directory", str(path))
    where = path if is_dir and path.exists() else path.parent
    while not where.exists():
        if where.parent == where:
            break
        where = where.parent
    if not where.is_dir():
        raise OSError(errno.ENOTDIR, "not a directory", str(where))
    try:
        fd, tmp = tempfile.mkstemp(dir=where, prefix=".seqvg-write-check.", suffix=".tmp")
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(path)) from None
    os.close(fd)
    os.unlink(tmp)
