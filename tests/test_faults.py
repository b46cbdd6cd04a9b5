"""The fault suite: what a hostile new user can do to seqvg, and what seqvg promises.

Every case in CASES is one exact command, its exit status (2 usage error,
1 runtime fault) and the first line of its error message (the first output
line starting with "Error"), run in a copy of a small world of files: a
finished tiny run, a dataset, specs, a user's thesis directory. Each case
hashes the whole world before and after: no file may change, appear or
vanish. docs/faults.md lists the cases and the promise behind each.

Kills (kill -9 at random moments, a live run overwritten) and two-process
cases run real subprocesses; everything else runs in-process with CliRunner.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from seqvg import rundir
from seqvg.cli import cli
from seqvg.config import ConfigError, RunConfig
from seqvg.datasets import write_dataset
from seqvg.training import train

from conftest import TINY

RUN_OPTS = ["--length", "10", "--units", "8", "--steps", "20", "--eval-every", "10", "--val-size", "16",
            "--batch-size", "8", "--probe-batch", "4", "-q"]
SPEC = """name = "s"
length = 10
units = 8
steps = 10
eval_every = 5
val_size = 16
batch_size = 8
probe_batch = 4

[grid]
cell = ["rnn", "gru"]
"""
VARIANT_SPEC = """name = "v"
length = 10

[[variant]]
label = "a"
units = 8

[[variant]]
label = "b"
cell = "gru"
forget_bias = 2.0
"""
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg"}


# -- the world each case runs in ---------------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_run) -> Path:
    """Files a user might have: a finished run, data, specs, their own work."""
    w = tmp_path_factory.mktemp("world")
    shutil.copytree(tiny_run(cell="rnn"), w / "run")  # steps 0, 10, 20, 30
    # The lock records its last holder's PID (rundir.locked), which a command
    # refused after taking it writes again. The shared run may come from the
    # other xdist worker: record this process, as for a run trained here, so
    # that an unchanged tree means unchanged files.
    (w / "run" / ".lock").write_text(f"{os.getpid()}\n")
    write_dataset(w / "data.npz", "adding", 10, 4, 0)
    (w / "spec.toml").write_text(SPEC)
    (w / "variant.toml").write_text(VARIANT_SPEC)
    (w / "thesis").mkdir()
    (w / "thesis" / "thesis.tex").write_text("\\chapter{Years of work}\n")
    (w / "notes.txt").write_text("my notes\n")
    return w


def tree_hash(root: Path) -> dict[str, str]:
    """Every file and directory under ``root`` with its content hash."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root) + "/"] = "dir"
        for f in filenames:
            p = os.path.join(dirpath, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def error_line(output: str) -> str:
    """The first line of the error: the first output line starting with 'Error'."""
    return next((line for line in output.splitlines() if line.startswith("Error")), "")


# -- setups: how a case changes its copy of the world before the command ---------------
def cut_last_row(w: Path) -> None:
    """metrics.csv's last row cut mid-number, the run marked as still running."""
    p = w / "run" / "metrics.csv"
    p.write_bytes(p.read_bytes()[:-7])
    rundir.write_json(w / "run" / "summary.json", {**json.loads((w / "run" / "summary.json").read_text()),
                                                   "status": "running"})


def cut_report_row(w: Path) -> None:
    p = w / "run" / "metrics.csv"
    p.write_bytes(p.read_bytes()[:-7])


def nan_data(w: Path) -> None:
    d = dict(np.load(w / "data.npz"))
    d["x"][0, 3, 0] = np.nan
    np.savez(w / "nan.npz", **d)


def pickled_data(w: Path) -> None:
    (w / "pickled.npz").write_bytes(pickle.dumps({"x": [1, 2, 3]}))


def text_data(w: Path) -> None:
    (w / "data.csv").write_text("x,y\n1,2\n")


def object_npy(w: Path) -> None:
    np.save(w / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)


def missing_keys(w: Path) -> None:
    np.savez(w / "xonly.npz", x=np.zeros((2, 10, 2), np.float32))


def notes_in_run(w: Path) -> None:
    (w / "run" / "notes.txt").write_text("mine\n")


def corrupt_config(w: Path) -> None:
    (w / "run" / "config.json").write_text('{"config": {"cell": ')
    rundir.write_json(w / "run" / "summary.json", {"status": "running"})


def config_value(key: str, value) -> Callable[[Path], None]:
    """A run whose config.json holds ``value`` for option ``key`` (a hand edit, a newer seqvg)."""
    def setup(w: Path) -> None:
        d = json.loads((w / "run" / "config.json").read_text())
        d["config"][key] = value
        (w / "run" / "config.json").write_text(json.dumps(d))
    return setup


def config_without_options(w: Path) -> None:
    (w / "run" / "config.json").write_text('{"seed": 0}')


def spec_with(*lines: str) -> Callable[[Path], None]:
    """A spec x.toml: SPEC plus top-level ``lines``."""
    def setup(w: Path) -> None:
        (w / "x.toml").write_text(SPEC.replace("[grid]", "\n".join(lines) + "\n\n[grid]"))
    return setup


def spec_named_by_file(w: Path) -> None:
    (w / "my study.toml").write_text(SPEC.replace('name = "s"\n', ""))


def metrics_header_only(w: Path) -> None:
    p = w / "run" / "metrics.csv"
    p.write_text(p.read_text().splitlines()[0] + "\n")


def probes_without_rows(w: Path) -> None:
    p = w / "run" / "probes.npz"
    with np.load(p) as f:
        arrays = {k: f[k] for k in f.files}
    k = arrays["steps"].shape[0]
    np.savez(p, **{name: a[:0] if a.ndim and a.shape[0] == k else a for name, a in arrays.items()})


def probe_only_run(w: Path) -> None:
    """A probe-only study's run: probe.json alone."""
    (w / "po").mkdir()
    (w / "po" / "probe.json").write_text('{"config": {}}')


def lock_only_and_empty(w: Path) -> None:
    """A run killed before config.json (its lock alone), and an empty directory."""
    (w / "killed").mkdir()
    (w / "killed" / ".lock").write_text("12345\n")
    (w / "empty").mkdir()


def truncated_probes(w: Path) -> None:
    p = w / "run" / "probes.npz"
    p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])


def garbage_summary(w: Path) -> None:
    (w / "run" / "summary.json").write_text("\x00\x01 not json")


def summary_value(key: str, value) -> Callable[[Path], None]:
    """A run whose summary.json holds ``value`` for ``key`` (a hand edit); None removes the key."""
    def setup(w: Path) -> None:
        d = json.loads((w / "run" / "summary.json").read_text())
        if value is None:
            d.pop(key, None)
        else:
            d[key] = value
        rundir.write_json(w / "run" / "summary.json", d)
    return setup


def study_of_run_without(key: str) -> Callable[[Path], None]:
    """one.toml, a study of one run (the world's run, as study/s0), whose summary.json lost ``key``."""
    def setup(w: Path) -> None:
        opts = "\n".join(f"{k} = {v}" for k, v in {**TINY, "cell": '"rnn"'}.items())
        (w / "one.toml").write_text(f'name = "one"\n{opts}\n')
        shutil.copytree(w / "run", w / "study" / "s0")
        d = json.loads((w / "study" / "s0" / "summary.json").read_text())
        d.pop(key)
        rundir.write_json(w / "study" / "s0" / "summary.json", d)
    return setup


def study_with_results_png(w: Path) -> None:
    """study/: the world's run as study/rnn-s0, and the results.png seqvg draws for a study."""
    import matplotlib.pyplot as plt

    from seqvg.pdf import write_png

    shutil.copytree(w / "run", w / "study" / "rnn-s0")
    fig = plt.figure()
    write_png(w / "study" / "results.png", fig)
    plt.close(fig)


def study_with_png_named_figure(w: Path) -> None:
    """study_with_results_png, and a copy of its results.png named study/figure (no suffix)."""
    study_with_results_png(w)
    shutil.copy(w / "study" / "results.png", w / "study" / "figure")


def bad_lr_spec(w: Path) -> None:
    (w / "bad.toml").write_text('name = "bad"\nlr = nan\n')


def study_with_notes(w: Path) -> None:
    (w / "study").mkdir()
    (w / "study" / "todo.txt").write_text("mine\n")


def studies_dir(w: Path) -> None:
    """A directory of studies: an earlier study's OUT (a run and results.csv) inside."""
    shutil.copytree(w / "run", w / "studies" / "old" / "rnn-s0")
    (w / "studies" / "old" / "results.csv").write_text("run,label,status\nrnn-s0,rnn,completed\n")


def png_is_file(w: Path) -> None:
    (w / "pages").write_text("a file, not a directory\n")


def study_holding_other_run(w: Path) -> None:
    """spec.toml's study directory whose rnn-s0 holds a run of other options."""
    shutil.copytree(w / "run", w / "study" / "rnn-s0")


def spec_seed_twice(w: Path) -> None:
    (w / "twice.toml").write_text(SPEC.replace("[grid]", "seeds = [0, 1, 0]\n\n[grid]"))


def users_page_png(w: Path) -> None:
    """A PNG of the user's own where a report's first page would go."""
    (w / "pages").mkdir()
    (w / "pages" / "01-title.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20 + b"the user's picture")


@dataclass
class Case:
    id: str
    args: list[str]
    code: int
    first: str  # the error's first line starts with this
    setup: Callable[[Path], None] | None = None


BIG = ",".join(str(t) for t in range(2, 103))  # 101 lengths: a study of 101 runs

CASES = [
    # -- non-finite and impossible numbers: usage errors, nothing written
    Case("lr-inf", ["train", "--lr", "inf", "--out", "new"], 2,
         "Error: Invalid value for '--lr': --lr must be a finite number, got inf"),
    Case("lr-nan", ["train", "--lr", "nan", "--out", "new"], 2,
         "Error: Invalid value for '--lr': --lr must be a finite number, got nan"),
    Case("forget-bias-nan", ["train", "--forget-bias", "nan", "--out", "new"], 2,
         "Error: Invalid value for '--forget-bias': --forget-bias must be a finite number, got nan"),
    Case("clip-nan", ["train", "--clip", "nan", "--out", "new"], 2,
         "Error: Invalid value for '--clip': --clip must be a finite number, got nan"),
    Case("chrono-inf", ["train", "--chrono", "inf", "--out", "new"], 2,
         "Error: Invalid value for '--chrono': 'inf' is not a valid integer."),
    Case("clip-negative", ["train", "--clip", "-1", "--out", "new"], 2,
         "Error: Invalid value for '--clip': --clip must be >= 0 (0 = off), got -1.0"),
    Case("units-zero", ["train", "--units", "0", "--out", "new"], 2,
         "Error: Invalid value for '--units': --units must be positive, got 0"),
    Case("val-size-huge", ["train", "--val-size", "1000000000000", "--out", "new"], 2,
         "Error: Invalid value for '--val-size': needs about"),
    Case("probe-batch-huge", ["train", "--probe-batch", "1000000000", "--out", "new"], 2,
         "Error: Invalid value for '--probe-batch': needs about"),
    Case("seed-negative", ["train", "--seed", "-1", "--out", "new"], 2,
         "Error: Invalid value for '--seed': --seed must be between 0 and 4294967295, got -1"),
    Case("generate-seed-negative", ["generate", "adding", "-T", "10", "--seed", "-1", "-o", "g.npz"], 2,
         "Error: Invalid value for '--seed': -1 is not in the range 0<=x<=4294967295."),
    Case("length-huge", ["train", "--length", "100000000", "--out", "new"], 2,
         "Error: Invalid value for '--length': needs about"),
    Case("probe-huge", ["probe", "--probe-batch", "100000000", "--length", "1000"], 2,
         "Error: Invalid value for '--probe-batch': needs about"),
    Case("probe-no-batch-size", ["probe", "--batch-size", "8"], 2, "Error: No such option '--batch-size'."),
    Case("probe-forget-bias-nan", ["probe", "--forget-bias", "nan"], 2,
         "Error: Invalid value for '--forget-bias': --forget-bias must be a finite number, got nan"),
    Case("generate-huge", ["generate", "adding", "-T", "100000", "-n", "100000000", "-o", "g.npz"], 2,
         "Error: Invalid value for '-n': 100000000 samples of adding T=100000 need about"),
    Case("generate-short", ["generate", "adding", "-T", "1", "-o", "g.npz"], 2,
         "Error: Invalid value for '--length': must be at least 2, got 1"),
    Case("set-lr-inf", ["run", "spec.toml", "--set", "lr=inf", "--out", "new"], 2,
         "Error: --set lr: --lr must be a finite number, got inf"),
    Case("set-chrono-inf", ["run", "spec.toml", "--set", "chrono=inf", "--out", "new"], 2,
         "Error: --set chrono: expected int, got float inf"),
    Case("set-seeds", ["run", "spec.toml", "--set", "seeds=3", "--out", "new"], 2,
         "Error: --set seeds: unknown option; use --seeds N"),
    Case("set-out", ["run", "spec.toml", "--set", "out=x", "--out", "new"], 2,
         "Error: --set out: unknown option; use --out"),
    Case("spec-lr-nan", ["run", "bad.toml", "--out", "new"], 2,
         "Error: bad.toml:2: lr: --lr must be a finite number, got nan", bad_lr_spec),
    Case("variant-line", ["run", "variant.toml", "--out", "new"], 2,
         "Error: variant.toml:11: [variant] forget_bias: --forget-bias applies to --cell lstm only, not gru"),
    Case("set-val-size-huge", ["run", "spec.toml", "--set", "val_size=100000000000", "--out", "new"], 2,
         "Error: needs about"),
    Case("sweep-val-size-huge", ["sweep", "--val-size", "100000000000", "--cells", "rnn", "--lengths", "10",
                                 "--out", "new"], 2, "Error: needs about"),
    Case("sweep-length-one", ["sweep", "--cells", "rnn", "--lengths", "1", "--out", "new"], 2,
         "Error: Invalid value for '--lengths': must be at least 2, got 1"),
    Case("large-study", ["sweep", "--cells", "rnn", "--lengths", BIG, "--out", "new"], 2,
         "Error: sweep: 101 runs to do, roughly"),
    # -- directories that hold other people's files
    Case("overwrite-thesis", ["train", *RUN_OPTS, "--out", "thesis", "--overwrite"], 2,
         "Error: thesis: holds thesis.tex, not written by seqvg;"),
    Case("train-into-thesis", ["train", *RUN_OPTS, "--out", "thesis"], 2,
         "Error: thesis: holds thesis.tex, not written by seqvg;"),
    Case("overwrite-cwd", ["train", *RUN_OPTS, "--out", ".", "--overwrite"], 2, "Error: .: holds "),
    Case("overwrite-run-with-notes", ["train", *RUN_OPTS, "--out", "run", "--overwrite"], 2,
         "Error: run: holds notes.txt, not written by seqvg;", notes_in_run),
    Case("existing-run", ["train", *RUN_OPTS, "--out", "run"], 2,
         "Error: run: already holds a run of other options (--cell rnn, not lstm; --batch-size 16, not 8;"),
    # The same options: the message says what --resume would (and would not) do.
    Case("existing-same-run", ["train", "--cell", "rnn", "--length", "10", "--units", "8", "--steps", "30",
                               "--eval-every", "10", "--val-size", "64", "--batch-size", "16", "--probe-batch", "8",
                               "--out", "run"], 2,
         "Error: run: already holds this run, completed; pass --overwrite to run it again"),
    Case("study-out-with-notes", ["run", "spec.toml", "--out", "study"], 2,
         "Error: study/todo.txt: not written by seqvg;", study_with_notes),
    Case("study-run-of-other-options", ["run", "spec.toml", "--out", "study"], 2,
         "Error: study/rnn-s0: holds a run with other options (--batch-size 16, not 8; --steps 30, not 10;",
         study_holding_other_run),
    Case("study-out-holds-a-study", ["run", "spec.toml", "--out", "studies"], 2,
         "Error: studies/old: another seqvg study's directory; a study's output directory holds its own runs, "
         "results.csv and results.png, not other studies: choose another --out", studies_dir),
    Case("compare-report-over-results-png", ["compare", *RUN_OPTS, "--cells", "rnn", "--out", "new", "--report",
                                             "new/results.png"], 2,
         "Error: Invalid value for '--report': new/results.png: the study writes its results.png there; choose "
         "another name for the report"),
    Case("diagnose-dir-of-studies", ["diagnose", "studies"], 2,
         "Error: nothing to diagnose: studies: a directory of studies, not a run or a study; left out: give a "
         "study's directory (studies/old, ...) or run directories", studies_dir),
    Case("overwrite-study-dir", ["train", *RUN_OPTS, "--out", "studies/old", "--overwrite"], 2,
         "Error: studies/old: a seqvg study's directory (its runs and results.csv), not a run;", studies_dir),
    Case("compare-seeds-past-max", ["compare", *RUN_OPTS, "--cells", "rnn", "--seed", "4294967295", "--seeds", "2",
                                    "--out", "new"], 2,
         "Error: Invalid value for '--seeds': seeds 4294967295..4294967296 run past the largest --seed, 4294967295"),
    Case("compare-cell-twice", ["compare", *RUN_OPTS, "--cells", "rnn,gru,rnn"], 2,
         "Error: Invalid value for '--cells': rnn given more than once"),
    Case("compare-two-cells-one-class-name", ["compare", *RUN_OPTS, "--cells", "a/cell.py:MyCell,b/cell.py:MyCell"],
         2, "Error: Invalid value for '--cells': a/cell.py:MyCell and b/cell.py:MyCell would share the run name MyCell "
            "(a custom cell's runs are named by its class)"),
    Case("compare-one-cell-two-spellings", ["compare", *RUN_OPTS, "--cells", "a/cell.py:MyCell,./a/cell.py:MyCell"],
         2, "Error: Invalid value for '--cells': ./a/cell.py:MyCell, a/cell.py:MyCell given more than once"),
    Case("compare-cell-arg-without-custom-cell", ["compare", *RUN_OPTS, "--cells", "rnn,gru", "--cell-arg", "x=1"], 2,
         "Error: Invalid value for '--cell-arg': --cell-arg is for custom cells (module:Class, file.py:Class); none "
         "of rnn, gru is one"),
    Case("sweep-length-twice", ["sweep", "--cells", "rnn", "--lengths", "50,50", "--out", "new"], 2,
         "Error: Invalid value for '--lengths': 50 given more than once"),
    Case("spec-seed-twice", ["run", "twice.toml", "--out", "new"], 2,
         "Error: twice.toml:10: seeds: 0 given more than once", spec_seed_twice),
    Case("compare-into-thesis", ["compare", *RUN_OPTS, "--cells", "rnn", "--out", "thesis"], 2,
         "Error: thesis/thesis.tex: not written by seqvg;"),
    Case("train-out-is-file", ["train", *RUN_OPTS, "--out", "notes.txt"], 2,
         "Error: Invalid value for '--out' / '-o': Directory 'notes.txt' is a file."),
    # -- files: missing, truncated, corrupt
    Case("resume-missing", ["train", "--resume", "--out", "nothing"], 2,
         "Error: nothing: no such run directory to resume"),
    Case("resume-corrupt-config", ["train", "--resume", "--out", "run"], 2,
         "Error: run/config.json: corrupt JSON", corrupt_config),
    Case("resume-cut-row", ["train", "--resume", "--out", "run"], 2,
         "Error: run/metrics.csv: corrupt (no row for the checkpoint's step 30)", cut_last_row),
    Case("report-cut-row", ["report", "run", "-o", "r.pdf"], 2,
         "Error: run/metrics.csv: corrupt at line 5 (row cut short: no line end)", cut_report_row),
    Case("report-metrics-header-only", ["report", "run", "-o", "r.pdf"], 2,
         "Error: run/metrics.csv: corrupt (no rows: not even step 0's)", metrics_header_only),
    Case("diagnose-probes-without-rows", ["diagnose", "run"], 2,
         "Error: run/probes.npz: corrupt (no probes: not even step 0's)", probes_without_rows),
    Case("probe-a-probe-only-run", ["probe", "po"], 2,
         "Error: po: a probe-only run: its probe at init is po/probe.json; seqvg probe RUN probes a trained run's",
         probe_only_run),
    Case("resume-a-probe-only-run", ["train", "--resume", "--out", "po"], 2,
         "Error: po: a probe-only run (probe.json: the probe at init of a study with probe_only); nothing was "
         "trained", probe_only_run),
    Case("diagnose-lock-only", ["diagnose", "killed"], 2,
         "Error: nothing to diagnose: killed: a run stopped before it started (its lock alone); left out, run the "
         "original command again", lock_only_and_empty),
    Case("diagnose-empty-dir", ["diagnose", "empty"], 2,
         "Error: nothing to diagnose: empty: an empty directory, not a run or a study; left out", lock_only_and_empty),
    Case("diagnose-truncated-probes", ["diagnose", "run"], 2, "Error: run/probes.npz: corrupt", truncated_probes),
    Case("report-garbage-summary", ["report", "run", "-o", "r.pdf"], 2, "Error: run/summary.json: corrupt JSON",
         garbage_summary),
    # summary.json's fields have types too: a hand edit was a KeyError or TypeError traceback.
    Case("report-summary-solved-not-bool", ["report", "run", "-o", "r.pdf"], 2,
         "Error: run/summary.json: corrupt (solved must be true or false, got 'yes')", summary_value("solved", "yes")),
    Case("diagnose-summary-solved-without-step", ["diagnose", "run"], 2,
         "Error: run/summary.json: corrupt (solved is true but solved_at_step is missing)",
         lambda w: (summary_value("solved", True)(w), summary_value("solved_at_step", None)(w))),
    Case("report-summary-final-text", ["report", "run", "-o", "r.pdf"], 2,
         "Error: run/summary.json: corrupt (final must be an object, got 'x')", summary_value("final", "x")),
    Case("study-summary-without-metric-name", ["run", "one.toml", "--out", "study", "--report", "r.pdf"], 2,
         "Error: study/s0/summary.json: corrupt (no metric_name)", study_of_run_without("metric_name")),
    Case("diagnose-missing", ["diagnose", "nothing"], 2, "Error: nothing: does not exist"),
    Case("diagnose-config-wrong-type", ["diagnose", "run"], 2,
         "Error: run/config.json: corrupt (units must be an int, got str 'x')", config_value("units", "x")),
    Case("report-config-wrong-type", ["report", "run", "-o", "r.pdf"], 2,
         "Error: run/config.json: corrupt (units must be an int, got str 'x')", config_value("units", "x")),
    Case("probe-config-wrong-type", ["probe", "run"], 2,
         "Error: run/config.json: corrupt (units must be an int, got str 'x')", config_value("units", "x")),
    Case("report-config-unknown-key", ["report", "run", "-o", "r.pdf"], 2,
         "Error: run/config.json: corrupt or written by a newer seqvg (unknown config keys: zzz)",
         config_value("zzz", 1)),
    Case("probe-config-no-options", ["probe", "run"], 2, "Error: run/config.json: corrupt (no 'config' object)",
         config_without_options),
    Case("resume-config-wrong-type", ["train", "--resume", "--out", "run"], 2,
         "Error: run/config.json: corrupt (units must be an int, got str 'x')", config_value("units", "x")),
    Case("probe-nan-data", ["probe", "--length", "10", "--units", "8", "--data", "nan.npz"], 2,
         "Error: nan.npz: x holds NaN or Inf; the probe needs finite inputs and targets", nan_data),
    Case("probe-pickled-data", ["probe", "--length", "10", "--data", "pickled.npz"], 2,
         "Error: pickled.npz: not an .npz file (it holds pickled Python objects, which seqvg does not load)",
         pickled_data),
    Case("probe-object-npy", ["probe", "--length", "10", "--data", "obj.npy"], 2,
         "Error: obj.npy: not an .npz file (it holds pickled Python objects, which seqvg does not load)",
         object_npy),
    Case("probe-text-data", ["probe", "--length", "10", "--data", "data.csv"], 2,
         "Error: data.csv: not an .npz file", text_data),
    Case("probe-missing-keys", ["probe", "--length", "10", "--data", "xonly.npz"], 2,
         "Error: xonly.npz: not a seqvg dataset (missing y, task, length)", missing_keys),
    Case("run-missing-spec", ["run", "nothing.toml"], 2, "Error: nothing.toml: no such spec file"),
    Case("spec-report-not-a-path", ["run", "x.toml", "--out", "new"], 2,
         "Error: x.toml:10: report: expected a path (a non-empty string), got True", spec_with("report = true")),
    Case("spec-out-not-a-path", ["run", "x.toml"], 2,
         "Error: x.toml:10: out: expected a path (a non-empty string), got 5", spec_with("out = 5")),
    Case("spec-out-empty", ["run", "x.toml"], 2,
         "Error: x.toml:10: out: expected a path (a non-empty string), got ''", spec_with('out = ""')),
    Case("spec-variant-not-tables", ["run", "x.toml", "--out", "new"], 2,
         "Error: x.toml:10: variant: expected [[variant]] tables, got 1", spec_with("variant = [1, 2]")),
    Case("spec-seed-negative", ["run", "x.toml", "--out", "new"], 2,
         "Error: x.toml:10: seeds: a seed must be between 0 and 4294967295, got -1", spec_with("seeds = [0, -1]")),
    Case("spec-file-name-not-a-name", ["run", "my study.toml", "--out", "new"], 2,
         "Error: my study.toml: the study is named after the file, 'my study', which is not a simple name",
         spec_named_by_file),
    # -- outputs over a file of the user's: refused before the work, the file kept
    Case("generate-over-users-file", ["generate", "adding", "-T", "10", "-n", "4", "-o", "notes.txt"], 1,
         "Error: notes.txt: exists and is not a dataset seqvg wrote"),
    Case("report-over-users-file", ["report", "run", "-o", "notes.txt"], 1,
         "Error: notes.txt: exists and seqvg did not write it as a report or page;"),
    Case("report-png-over-users-page", ["report", "run", "-o", "r.pdf", "--png", "pages"], 1,
         "Error: pages/01-title.png: exists and seqvg did not write it as a page (or wrote it before it signed its "
         "PNGs)", users_page_png),
    Case("report-over-run-config", ["report", "run", "-o", "run/config.json"], 2,
         "Error: Invalid value for '--out': run/config.json: inside the run directory run, which holds only the "
         "run's own files"),
    # A report or its pages inside a run directory made the study owning it refuse its whole directory
    # ("not written by seqvg"); -o over a study's results.png wrote a PDF there under that name.
    Case("report-into-a-run", ["report", "run", "-o", "run/r.pdf"], 2,
         "Error: Invalid value for '--out': run/r.pdf: inside the run directory run, which holds only the run's "
         "own files"),
    Case("report-png-into-a-run", ["report", "run", "-o", "r.pdf", "--png", "run/pages"], 2,
         "Error: Invalid value for '--png': run/pages: inside the run directory run, which holds only the run's "
         "own files"),
    Case("study-report-into-a-run", ["run", "spec.toml", "--out", "new", "--report", "run/r.pdf"], 2,
         "Error: Invalid value for '--report': run/r.pdf: inside the run directory run, which holds only the run's "
         "own files"),
    Case("report-over-results-png", ["report", "study", "-o", "study/results.png"], 2,
         "Error: Invalid value for '--out' / '-o': study/results.png: a report is a PDF, not a .png image",
         study_with_results_png),
    # A PNG of seqvg's under a name without an image suffix is not replaced by a report either.
    Case("report-over-a-seqvg-png-named-otherwise", ["report", "study", "-o", "study/figure"], 1,
         "Error: study/figure: exists and is a PNG seqvg wrote (a page, or a study's results.png), not a PDF; "
         "seqvg replaces a file only with one of its own kind", study_with_png_named_figure),
    Case("study-report-over-users-file", ["run", "spec.toml", "--out", "new", "--report", "notes.txt"], 1,
         "Error: notes.txt: exists and seqvg did not write it as a report or page;"),
    # -- outputs that cannot be written: runtime faults, checked before the work
    Case("report-proc", ["report", "run", "-o", "/proc/x.pdf"], 1, "Error: /proc/x.pdf: No such file or directory"),
    Case("report-png-is-file", ["report", "run", "-o", "r.pdf", "--png", "pages"], 2,
         "Error: Invalid value for '--png': Directory 'pages' is a file.", png_is_file),
    Case("report-png-proc", ["report", "run", "-o", "r.pdf", "--png", "/proc/pages"], 1,
         "Error: /proc/pages: No such file or directory"),
    Case("generate-proc", ["generate", "adding", "-T", "10", "-o", "/proc/x/g.npz"], 1,
         "Error: /proc/x/g.npz: No such file or directory"),
    Case("study-report-proc", ["run", "spec.toml", "--out", "new", "--report", "/proc/r.pdf"], 1,
         "Error: /proc/r.pdf: No such file or directory"),
    Case("train-out-proc", ["train", *RUN_OPTS, "--out", "/proc/seqvg-run"], 1,
         "Error: /proc/seqvg-run: No such file or directory"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case(case, world, tmp_path, monkeypatch):
    w = tmp_path / "w"
    shutil.copytree(world, w)
    if case.setup:
        case.setup(w)
    monkeypatch.chdir(w)
    before = tree_hash(w)
    r = CliRunner().invoke(cli, case.args)
    assert r.exit_code == case.code, r.output
    assert error_line(r.output).startswith(case.first), r.output
    assert "Traceback" not in r.output
    assert tree_hash(w) == before


def test_at_least_forty_cases():
    assert len(CASES) + len(EXTRA_CASES) >= 40


# -- read-only and permission-denied directories -----------------------------------
def unwritable(monkeypatch, root: Path, code: int) -> None:
    """Makes writes under ``root`` fail with ``code`` (EROFS/EACCES).

    chmod does not stop root, and tests may run as root, so the system calls
    that create or replace files are refused under ``root`` instead: what a
    read-only mount or a directory without write permission does.
    """
    root = str(root.resolve())
    real_open, real_mkdir, real_replace = os.open, os.mkdir, os.replace

    def under(p) -> bool:
        return os.path.abspath(os.fspath(p)).startswith(root)

    def fail(p):
        raise OSError(code, os.strerror(code), os.fspath(p))

    def fake_open(p, flags, *a, **k):
        if under(p) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            fail(p)
        return real_open(p, flags, *a, **k)

    def fake_mkdir(p, *a, **k):
        if under(p):
            fail(p)
        return real_mkdir(p, *a, **k)

    def fake_replace(src, dst, *a, **k):
        if under(dst):
            fail(dst)
        return real_replace(src, dst, *a, **k)

    monkeypatch.setattr(os, "open", fake_open)
    monkeypatch.setattr(os, "mkdir", fake_mkdir)
    monkeypatch.setattr(os, "replace", fake_replace)


EXTRA_CASES = [
    ("resume-read-only", ["train", "--resume", "--out", "run"], errno.EROFS,
     "Error: run/.lock: Read-only file system; files kept: fix that, then continue with: "
     "seqvg train --resume --out run"),
    ("train-permission-denied", ["train", *RUN_OPTS, "--out", "run/../locked/new"], errno.EACCES,
     "Error: run/../locked/new: Permission denied"),
    ("report-read-only", ["report", "run", "-o", "locked/r.pdf"], errno.EROFS,
     "Error: locked/r.pdf: Read-only file system"),
    ("generate-permission-denied", ["generate", "adding", "-T", "10", "-o", "locked/g.npz"], errno.EACCES,
     "Error: locked/g.npz: Permission denied"),
    ("study-read-only", ["run", "spec.toml", "--out", "locked/s", "--report", "r.pdf"], errno.EROFS,
     "Error: locked/s: Read-only file system"),
]


@pytest.mark.parametrize("case", EXTRA_CASES, ids=[c[0] for c in EXTRA_CASES])
def test_unwritable(case, world, tmp_path, monkeypatch):
    name, args, code, first = case
    w = tmp_path / "w"
    shutil.copytree(world, w)
    (w / "locked").mkdir()
    rundir.write_json(w / "run" / "summary.json", {**json.loads((w / "run" / "summary.json").read_text()),
                                                   "status": "running"})
    monkeypatch.chdir(w)
    before = tree_hash(w)
    unwritable(monkeypatch, w / ("run" if name == "resume-read-only" else "locked"), code)
    r = CliRunner().invoke(cli, args)
    monkeypatch.undo()
    assert r.exit_code == 1, r.output
    assert error_line(r.output).startswith(first), r.output
    assert "Traceback" not in r.output
    assert tree_hash(w) == before


# -- disk full half-way through a write ---------------------------------------------
def test_disk_full_half_way_keeps_files_and_resumes(world, tmp_path, monkeypatch):
    """ENOSPC in the middle of the 4th metrics.csv write: one-line error, exit
    1, the old metrics.csv intact, no temp file left; once space is free the
    run resumes to exactly the uninterrupted run's files."""
    out = tmp_path / "r"
    real_fdopen = os.fdopen
    writes = {"n": 0}

    class HalfWriter:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(data[: len(data) // 2])
            self.f.flush()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, name):
            return getattr(self.f, name)

    def fake_fdopen(fd, *a, **k):
        f = real_fdopen(fd, *a, **k)
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith(".metrics.csv."):
            writes["n"] += 1
            if writes["n"] == 4:
                return HalfWriter(f)
        return f

    monkeypatch.setattr(os, "fdopen", fake_fdopen)
    args = ["train", *RUN_OPTS[:-1], "--cell", "rnn", "--eval-every", "2", "--steps", "20", "-q", "--out", str(out)]
    r = CliRunner().invoke(cli, args)
    monkeypatch.undo()
    assert r.exit_code == 1, r.output
    assert error_line(r.output) == (f"Error: {out}/metrics.csv: No space left on device; files kept: fix that, "
                                    f"then continue with: seqvg train --resume --out {out}")
    assert [p.name for p in out.iterdir() if rundir.is_temp_name(p.name)] == []
    _, rows = rundir.read_csv(out / "metrics.csv")
    assert [row["step"] for row in rows] == [0, 2, 4]
    r = CliRunner().invoke(cli, ["train", "--resume", "--out", str(out), "-q"])
    assert r.exit_code == 0, r.output
    ref = tmp_path / "ref"
    assert CliRunner().invoke(cli, args[:-1] + [str(ref)]).exit_code == 0
    assert_same_run(out, ref)


# -- resume windows and kill -9 --------------------------------------------------------
def test_full_disk_inside_keras_save_names_model_keras_and_resumes(tmp_path, monkeypatch):
    """EFBIG (a file-size limit; ENOSPC alike) half-way through Keras's own
    model.save: the error names model.keras, no temp file is left, and
    --resume then writes the model."""
    import keras

    out = tmp_path / "r"
    real_save = keras.Model.save

    def half_save(self, path, *a, **k):
        real_save(self, path, *a, **k)
        data = Path(path).read_bytes()
        Path(path).write_bytes(data[: len(data) // 2])
        raise OSError(errno.EFBIG, os.strerror(errno.EFBIG))  # zipfile's error names no file

    monkeypatch.setattr(keras.Model, "save", half_save)
    r = CliRunner().invoke(cli, ["train", *RUN_OPTS, "--cell", "rnn", "--out", str(out)])
    monkeypatch.undo()
    assert r.exit_code == 1, r.output
    assert error_line(r.output) == (f"Error: {out}/model.keras: File too large; files kept: fix that, then "
                                    f"continue with: seqvg train --resume --out {out}")
    assert sorted(p.name for p in out.iterdir()) == [".lock", "checkpoints", "config.json", "metrics.csv",
                                                     "probes.npz", "summary.json"]
    r = CliRunner().invoke(cli, ["train", "--resume", "--out", str(out), "-q"])
    assert r.exit_code == 0, r.output
    assert keras.saving.load_model(out / "model.keras", compile=False) is not None
    assert json.loads((out / "summary.json").read_text())["status"] == "completed"


def metrics_without_wall(path: Path) -> list[dict]:
    _, rows = rundir.read_csv(path / "metrics.csv")
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]


def assert_same_run(a: Path, b: Path) -> None:
    """Same metrics.csv (all columns but wall_s) and probes.npz."""
    ma, mb = metrics_without_wall(a), metrics_without_wall(b)
    assert [r["step"] for r in ma] == [r["step"] for r in mb]
    np.testing.assert_equal(ma, mb)
    pa, pb = rundir.read_npz(a / "probes.npz"), rundir.read_npz(b / "probes.npz")
    assert sorted(pa) == sorted(pb)
    for k in pa:
        np.testing.assert_array_equal(pa[k], pb[k], err_msg=k)
    assert json.loads((a / "summary.json").read_text())["status"] == "completed"


class Killed(BaseException):
    """Stands in for kill -9 in-process: nothing after it runs, no cleanup."""


WINDOWS = {
    # (method, call number): die right after that call returned
    "after-step-0-checkpoint": ("_checkpoint", 1),
    "after-row-before-checkpoint": ("_log_row", 2),
    "after-probe-before-row": ("_probe", 2),
    "after-second-checkpoint": ("_checkpoint", 2),
    # and then its metrics.csv's last row (after the checkpoint) cut mid-number
    "row-after-checkpoint-cut": ("_log_row", 3),
}


WINDOW_CFG = RunConfig(**{**TINY, "cell": "gru", "steps": 12, "eval_every": 4, "probe_every": 3})


@pytest.fixture(scope="module")
def window_ref(tmp_path_factory) -> Path:
    ref = tmp_path_factory.mktemp("window") / "ref"
    train(WINDOW_CFG, ref, progress=False)
    return ref


@pytest.mark.parametrize("window", list(WINDOWS))
def test_resume_is_exact_in_every_window(window, window_ref, tmp_path, monkeypatch):
    from seqvg.training import _Run

    cfg, ref = WINDOW_CFG, window_ref
    name, nth = WINDOWS[window]
    real = getattr(_Run, name)
    calls = {"n": 0}

    def dying(self, *a, **k):
        result = real(self, *a, **k)
        calls["n"] += 1
        if calls["n"] == nth:
            raise Killed
        return result

    monkeypatch.setattr(_Run, name, dying)
    out = tmp_path / "run"
    with pytest.raises(Killed):
        train(cfg, out, progress=False)
    monkeypatch.undo()
    if window == "row-after-checkpoint-cut":
        p = out / "metrics.csv"
        p.write_bytes(p.read_bytes()[:-5])
    r = CliRunner().invoke(cli, ["diagnose", str(out)])
    if window == "row-after-checkpoint-cut":  # reported as corrupt; resume drops and re-runs the row
        assert r.exit_code == 2 and error_line(r.output).endswith("metrics.csv: corrupt at line 4 (row cut short: "
                                                                  "no line end)"), r.output
    else:
        assert r.exit_code == 0, r.output
        reached = max(row["step"] for row in rundir.read_csv(out / "metrics.csv")[1])
        assert f"running: the run stopped at step {reached} (resume with seqvg train --resume --out {out})" \
            in r.output
    train(None, out, resume=True, progress=False)
    assert_same_run(out, ref)


def _spawn(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "seqvg", *args], env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def _wait_for_lock(path: Path, proc: subprocess.Popen, timeout: float = 120) -> bool:
    """Waits until ``proc`` holds the run lock (it has started its run)."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        try:
            if (path / rundir.LOCK).read_text().strip() == str(proc.pid):
                return True
        except OSError:
            pass
        time.sleep(0.01)
    return False


KILL_RUN = ["--cell", "rnn", "--length", "8", "--units", "4", "--steps", "120", "--eval-every", "2",
            "--probe-every", "3", "--val-size", "8", "--batch-size", "4", "--probe-batch", "2", "-q"]


def _rows(out: Path) -> int:
    try:
        return len(rundir.read_csv(out / "metrics.csv")[1])
    except rundir.RunDirError:
        return 0


#: A process that imports TensorFlow and seqvg once, then forks one child per
#: line on stdin ("fresh" or "resume") that runs seqvg's train() on argv[1]
#: and prints the child's PID; the test kill -9s the child. Forking skips
#: ten TensorFlow imports (4 s of CPU each); the child is a real process, so
#: the kill is real. The parent runs no TensorFlow op, so the fork is safe.
ZYGOTE = """
import os, sys
from seqvg.tfsetup import import_tensorflow_quietly
import_tensorflow_quietly()
import keras
from seqvg.config import RunConfig
from seqvg.training import train
cfg = RunConfig(**dict(cell="rnn", length=8, units=4, steps=120, eval_every=2, probe_every=3, val_size=8,
                       batch_size=4, probe_batch=2))
print("ready", flush=True)
for line in sys.stdin:
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            train(cfg if line.strip() == "fresh" else None, sys.argv[1], resume=line.strip() == "resume",
                  progress=False)
            code = 0
        finally:
            os._exit(code)
    print(pid, flush=True)
    print("exit", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
"""


def test_random_kill9_and_resume_equals_uninterrupted(tmp_path):
    """kill -9 at 10 random moments of one run, resuming after each: the end
    result equals an uninterrupted run (every row and probe, wall_s aside).

    Every fourth kill lands at a random moment of the start-up (restore, model
    build); the others 1 to 4 rows into the training plus a random fraction
    of a row, where the row, probe and checkpoint writes are.
    """
    rng = random.Random(17)
    ref = tmp_path / "ref"
    r = CliRunner().invoke(cli, ["train", *KILL_RUN, "--out", str(ref)])
    assert r.exit_code == 0, r.output
    out = tmp_path / "run"
    zygote = subprocess.Popen([sys.executable, "-c", ZYGOTE, str(out)], env=ENV, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert zygote.stdout.readline().strip() == "ready"
        kills, how = 0, "fresh"
        while True:
            zygote.stdin.write(how + "\n")
            zygote.stdin.flush()
            child = int(zygote.stdout.readline())
            if kills == 10:
                break
            deadline = time.time() + 120
            while time.time() < deadline and rundir.lock_holder(out) != f"PID {child}":
                time.sleep(0.005)
            if kills % 4 == 0:
                time.sleep(rng.uniform(0.0, 0.5))
            else:
                target = _rows(out) + rng.randint(1, 4)
                while _rows(out) < target and time.time() < deadline:
                    time.sleep(0.005)
                time.sleep(rng.uniform(0.0, 0.05))
            os.kill(child, signal.SIGKILL)
            status = zygote.stdout.readline().split()
            assert status == ["exit", "-9"], f"the run ended before kill {kills + 1}: {status}"
            kills += 1
            # Killed between taking the lock and config.json: nothing to resume, start again.
            how = "resume" if (out / "config.json").exists() else "fresh"
        assert zygote.stdout.readline().split() == ["exit", "0"]
    finally:
        zygote.kill()
        zygote.wait()
    assert kills == 10
    assert_same_run(out, ref)


# -- two processes --------------------------------------------------------------------
HOLDER = ("import sys, time; from seqvg import rundir\n"
          "with rundir.locked(sys.argv[1]):\n"
          "    print('held', flush=True); time.sleep(120)\n")


@pytest.fixture
def holder():
    """A second process holding a directory's run lock (as a live run does)."""
    procs = []

    def hold(path: Path) -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, env=ENV)
        assert p.stdout.readline().strip() == b"held"
        procs.append(p)
        return p

    yield hold
    for p in procs:
        p.kill()
        p.wait()
        p.stdout.close()


@pytest.mark.parametrize("how", ["plain", "overwrite", "resume", "study"])
def test_directory_in_use_is_refused(how, world, tmp_path, monkeypatch, holder):
    w = tmp_path / "w"
    shutil.copytree(world, w)
    monkeypatch.chdir(w)
    if how == "study":
        target = w / "study" / "rnn-s0"
        target.mkdir(parents=True)
        args = ["run", "spec.toml", "--out", "study"]
        where = "study/rnn-s0"
    else:
        target = w / "run"
        args = {"plain": ["train", *RUN_OPTS, "--out", "run"],
                "overwrite": ["train", *RUN_OPTS, "--out", "run", "--overwrite"],
                "resume": ["train", "--resume", "--out", "run"]}[how]
        where = "run"
    p = holder(target)
    before = tree_hash(w)
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 2, r.output
    assert error_line(r.output) == (f"Error: {where}: in use by PID {p.pid} (a seqvg run is writing it); "
                                    "wait for it to end or stop it")
    assert tree_hash(w) == before


def test_diagnose_says_how_to_resume_a_stopped_run_and_that_a_live_one_is_live(world, tmp_path, monkeypatch,
                                                                               holder):
    w = tmp_path / "w"
    shutil.copytree(world, w)
    monkeypatch.chdir(w)
    summary = json.loads((w / "run" / "summary.json").read_text())
    rundir.write_json(w / "run" / "summary.json", {**summary, "status": "running"})
    r = CliRunner().invoke(cli, ["diagnose", "run"])
    assert r.exit_code == 0, r.output
    # The command it gives must work as typed: --resume needs --out.
    assert "running: the run stopped at step 30 (resume with seqvg train --resume --out run)" in r.output
    p = holder(w / "run")
    r = CliRunner().invoke(cli, ["diagnose", "run"])
    assert r.exit_code == 0, r.output
    assert f"running: at step 30 so far (in use by PID {p.pid}, which is writing it)" in r.output
    assert "--resume" not in r.output


def test_a_run_before_its_first_results_is_left_out_of_a_study_report(world, tmp_path, monkeypatch, holder):
    """A run writes config.json, then builds and traces its model (seconds)
    before metrics.csv and probes.npz: a report of its study made then, or
    after a kill then, leaves it out with a note instead of refusing the study."""
    w = tmp_path / "w"
    shutil.copytree(world, w)
    monkeypatch.chdir(w)
    (w / "study" / "b").mkdir(parents=True)
    shutil.copytree(w / "run", w / "study" / "a")
    shutil.copy(w / "run" / "config.json", w / "study" / "b" / "config.json")
    r = CliRunner().invoke(cli, ["report", "study", "-o", "r.pdf"])
    assert r.exit_code == 0, r.output
    assert "study/b: stopped before its first results (resume with seqvg train --resume --out study/b); left out" \
        in r.output
    r = CliRunner().invoke(cli, ["diagnose", "study/b"])
    assert r.exit_code == 2, r.output
    assert error_line(r.output) == ("Error: nothing to diagnose: study/b: stopped before its first results (resume "
                                    "with seqvg train --resume --out study/b); left out")
    p = holder(w / "study" / "b")
    r = CliRunner().invoke(cli, ["diagnose", "study"])
    assert r.exit_code == 0, r.output
    assert f"study/b: started, no results yet (in use by PID {p.pid}, which is writing it); left out" in r.output
    # A finished run that lost a file is corrupt, not "not started".
    (w / "study" / "a" / "probes.npz").unlink()
    r = CliRunner().invoke(cli, ["diagnose", "study/a"])
    assert r.exit_code == 2 and error_line(r.output) == "Error: study/a/probes.npz: missing", r.output


def test_one_run_given_twice_is_one_run(world, tmp_path, monkeypatch):
    """`seqvg diagnose run ../w/run` (or report): one run, not two rows."""
    w = tmp_path / "w"
    shutil.copytree(world, w)
    monkeypatch.chdir(w)
    r = CliRunner().invoke(cli, ["diagnose", "run", "../w/run", str(w / "run"), "run/"])
    assert r.exit_code == 0, r.output
    assert r.output.count(" at init: decay ") == 1, r.output  # the gradient verdict at init: one run
    assert "../w/run: the same directory as run; left out" in r.output
    assert f"{w / 'run'}: the same directory as run; left out" in r.output


def test_a_report_seqvg_wrote_in_a_study_directory_is_not_a_foreign_file(world, tmp_path):
    """compare writes OUT/report.pdf by default; the same study run again with
    --report elsewhere must not call that PDF 'not written by seqvg'."""
    import matplotlib.pyplot as plt

    from seqvg.pdf import write_pdf
    from seqvg.study import check_study_dir, parse_spec

    out = tmp_path / "study"
    out.mkdir()
    write_pdf(out / "report.pdf", "seqvg report", [plt.figure()])
    study = parse_spec(SPEC, "spec.toml", out=out, report=tmp_path / "elsewhere.pdf")
    check_study_dir(study)  # does not raise
    (out / "mine.pdf").write_bytes(b"%PDF-1.4 a PDF of the user's\n")
    with pytest.raises(rundir.NotARunError, match="mine.pdf: not written by seqvg"):
        check_study_dir(study)


def test_a_report_seqvg_wrote_in_a_run_directory_is_named_as_such(tiny_cfg, tmp_path):
    """--overwrite of a run holding a report seqvg wrote there: refused (the
    report is not the run's, and is kept), but not called 'not written by
    seqvg'; a file of the user's beside it still is."""
    import hashlib

    import matplotlib.pyplot as plt

    from seqvg.pdf import write_pdf
    from seqvg.training import train

    out = tmp_path / "run"
    train(tiny_cfg(steps=10), out, progress=False)
    write_pdf(out / "report.pdf", "seqvg report", [plt.figure()])
    before = hashlib.sha256((out / "report.pdf").read_bytes()).hexdigest()
    with pytest.raises(rundir.NotARunError, match="holds report.pdf, which seqvg wrote as a report, not as part of"):
        train(tiny_cfg(steps=10), out, overwrite=True, progress=False)
    assert hashlib.sha256((out / "report.pdf").read_bytes()).hexdigest() == before
    (out / "notes.txt").write_text("mine")
    with pytest.raises(rundir.NotARunError, match="holds notes.txt, report.pdf, not written by seqvg"):
        train(tiny_cfg(steps=10), out, overwrite=True, progress=False)


def test_overwrite_of_a_live_run_is_refused_and_the_run_finishes(tmp_path):
    """A real training process; --overwrite from a second one must not touch it."""
    out = tmp_path / "live"
    args = [*KILL_RUN[:-1], "--steps", "120", "-q"]
    proc = _spawn(["train", *args, "--out", str(out)])
    assert _wait_for_lock(out, proc), proc.stderr.read().decode()
    r = CliRunner().invoke(cli, ["train", *args, "--out", str(out), "--overwrite"])
    assert r.exit_code == 2, r.output
    assert error_line(r.output).startswith(f"Error: {out}: in use by PID {proc.pid}")
    proc.wait()
    assert proc.returncode == 0, proc.stderr.read().decode()
    proc.stderr.close()
    assert json.loads((out / "summary.json").read_text())["status"] == "completed"
    assert (out / "config.json").exists()


# -- the Python API ----------------------------------------------------------------------
@pytest.mark.parametrize("kw,field", [(dict(units="8"), "units"), (dict(steps=2.5), "steps"),
                                      (dict(lr=float("inf")), "lr"), (dict(clip=float("nan")), "clip"),
                                      (dict(early_stop="yes"), "early_stop"), (dict(chrono=3.0), "chrono")])
def test_run_config_rejects_wrong_types(kw, field):
    with pytest.raises(ConfigError) as e:
        RunConfig(**kw)
    assert e.value.option == field and field in str(e.value).replace("-", "_")


def test_overwrite_deletes_only_seqvg_files(world, tmp_path):
    """--overwrite of a seqvg run replaces it; the files around it stay."""
    w = tmp_path / "w"
    shutil.copytree(world, w)
    outside = {k: v for k, v in tree_hash(w).items() if not k.startswith("run")}
    r = CliRunner().invoke(cli, ["train", *RUN_OPTS, "--cell", "gru", "--out", str(w / "run"), "--overwrite"])
    assert r.exit_code == 0, r.output
    assert json.loads((w / "run" / "config.json").read_text())["config"]["cell"] == "gru"
    assert {k: v for k, v in tree_hash(w).items() if not k.startswith("run")} == outside


def test_outputs_seqvg_wrote_are_replaced(world, tmp_path, monkeypatch):
    """A report, its page PNGs and a dataset written again over seqvg's own
    files: replaced; an earlier report's extra pages removed, the user's kept."""
    from seqvg.pdf import written_by_seqvg

    w = tmp_path / "w"
    shutil.copytree(world, w)
    monkeypatch.chdir(w)
    (w / "pages").mkdir()
    (w / "pages" / "notes-01.png").write_bytes(b"the user's, not a page name")
    runner = CliRunner()
    for _ in range(2):
        r = runner.invoke(cli, ["report", "run", "-o", "r.pdf", "--png", "pages"])
        assert r.exit_code == 0, r.output
        r = runner.invoke(cli, ["generate", "adding", "-T", "10", "-n", "4", "-o", "data.npz"])
        assert r.exit_code == 0, r.output
    pages = sorted(p.name for p in (w / "pages").iterdir())
    assert written_by_seqvg(w / "r.pdf") and all(written_by_seqvg(w / "pages" / p) for p in pages[:-1])
    stale = w / "pages" / "99-an-old-page.png"
    shutil.copy(w / "pages" / pages[0], stale)
    r = runner.invoke(cli, ["report", "run", "-o", "r.pdf", "--png", "pages"])
    assert r.exit_code == 0, r.output
    assert not stale.exists()
    assert sorted(p.name for p in (w / "pages").iterdir()) == pages
    assert (w / "pages" / "notes-01.png").read_bytes() == b"the user's, not a page name"


def test_written_by_seqvg_reads_the_signature(tmp_path):
    """Only seqvg's signed PDFs and PNGs count: not matplotlib's own, not text."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from seqvg.pdf import write_pdf, write_png, written_by_seqvg

    fig = plt.figure()
    write_png(tmp_path / "ours.png", fig)
    fig.savefig(tmp_path / "theirs.png")
    fig.savefig(tmp_path / "theirs.pdf")
    write_pdf(tmp_path / "ours.pdf", "t", [fig])
    (tmp_path / "notes.txt").write_text("/Creator (seqvg) Software seqvg\n")
    assert written_by_seqvg(tmp_path / "ours.png") and written_by_seqvg(tmp_path / "ours.pdf")
    assert not any(written_by_seqvg(tmp_path / n) for n in ("theirs.png", "theirs.pdf", "notes.txt"))


def test_study_records_its_command(world, tmp_path, monkeypatch):
    w = tmp_path / "w"
    shutil.copytree(world, w)
    monkeypatch.chdir(w)
    monkeypatch.setattr(sys, "argv", ["seqvg", "run", "spec.toml", "--out", "s", "-q", "--set", "steps=5"])
    r = CliRunner().invoke(cli, sys.argv[1:])
    assert r.exit_code == 0, r.output
    for d in ("rnn-s0", "gru-s0"):
        assert json.loads((w / "s" / d / "config.json").read_text())["command"] == \
            "seqvg run spec.toml --out s -q --set steps=5"


def test_overwrite_killed_half_way_can_be_overwritten_again(world, tmp_path, monkeypatch):
    """A kill in the middle of --overwrite's deletions leaves a directory that
    is still recognisably seqvg's (config.json goes last)."""
    w = tmp_path / "w"
    shutil.copytree(world, w)
    real_unlink, calls = Path.unlink, {"n": 0}

    def dying_unlink(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise Killed
        return real_unlink(self, *a, **k)

    monkeypatch.setattr(Path, "unlink", dying_unlink)
    with pytest.raises(Killed):
        rundir.remove_run(w / "run")
    monkeypatch.undo()
    assert (w / "run" / "config.json").exists()
    rundir.remove_run(w / "run")
    assert [p.name for p in (w / "run").iterdir()] == [".lock"]


def test_report_pages_inside_a_study_directory_are_seqvgs(world, tmp_path, monkeypatch):
    """`seqvg report study --png study/pages`, then the same study again: it
    was refused, `study/pages: not written by seqvg` (every file in it is
    seqvg's page), and report/diagnose called the directory "a run not
    started yet". A file of the user's among the pages is still refused."""
    w = tmp_path / "w"
    shutil.copytree(world, w)
    study_of_run_without("wall_s")(w)  # one.toml: the world's run as study/s0 (a key report does not need)
    monkeypatch.chdir(w)
    runner = CliRunner()
    r = runner.invoke(cli, ["report", "study", "-o", "r.pdf", "--png", "study/pages"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["run", "one.toml", "--out", "study", "--report", "r2.pdf"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["diagnose", "study"])
    assert r.exit_code == 0 and "study/pages: report pages (PNG), not a run; left out" in r.output, r.output
    (w / "study" / "pages" / "mine.png").write_bytes(b"\x89PNG\r\n\x1a\n the user's")
    r = runner.invoke(cli, ["run", "one.toml", "--out", "study", "--report", "r2.pdf"])
    assert r.exit_code == 2 and "study/pages: not written by seqvg" in r.output, r.output
