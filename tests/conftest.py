"""Shared test settings: headless plotting, quiet TensorFlow, tiny configs, shared runs."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# numpy's OpenBLAS on its own thread pool beside TensorFlow's (which keeps
# spinning between ops) runs a 256 x 256 SVD ten times slower on 2 cores;
# the tests' numpy oracles are small, so one thread. Set before numpy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# Nothing in the tests downloads MNIST: without a file of one's own, the MNIST
# tasks find none (tests that need one make a small synthetic mnist.npz).
os.environ.setdefault("SEQVG_MNIST", os.path.join(os.sep, "nonexistent", "seqvg-tests", "mnist.npz"))

import fcntl  # noqa: E402
import hashlib  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from seqvg.config import RunConfig  # noqa: E402

#: Options of a run small enough for a test: seconds on 2 cores.
TINY = dict(length=10, units=8, steps=30, eval_every=10, val_size=64, batch_size=16, probe_batch=8)


def pytest_configure(config):
    """Under pytest-xdist, the controller (which runs no test) starts
    `python -m seqvg.kernels` at once: on a machine without the ops in its
    cache, the one build (seqvg's lock: once per machine) runs while the
    workers import and collect, instead of one worker compiling while the
    other waits for the lock at its first LSTM."""
    if getattr(config.option, "numprocesses", None) and "PYTEST_XDIST_WORKER" not in os.environ:
        config.seqvg_kernel_build = subprocess.Popen([sys.executable, "-m", "seqvg.kernels"],
                                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def pytest_unconfigure(config):
    build = getattr(config, "seqvg_kernel_build", None)
    if build is not None:
        build.wait()


@pytest.fixture
def tiny_cfg():
    """Factory for a tiny RunConfig; keyword arguments override."""

    def make(**kw):
        return RunConfig(**{**TINY, **kw})

    return make


@pytest.fixture
def xla_always(monkeypatch):
    """A tiny run of a custom cell that declares XLA pays for it (seqvg_xla)
    takes XLA as a run long enough to repay it does (execpath.XLA_MIN_WORK):
    for the tests of that path."""
    from seqvg import execpath

    monkeypatch.setattr(execpath, "XLA_MIN_WORK", 0)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """Factory: the directory of a finished tiny run (TINY plus keyword
    arguments), trained once per session and shared by every test that asks
    for the same options, in every pytest-xdist worker (the first to ask
    trains it under a lock, the others wait for it). Read it only; a test
    that changes a run copies it first with ``copy_run``.
    """
    from seqvg.training import train

    # Under xdist each worker has its own basetemp; their parent is this session's.
    shared = os.environ.get("PYTEST_XDIST_WORKER") is not None
    base = tmp_path_factory.getbasetemp()
    base = (base.parent if shared else base) / "shared-runs"
    base.mkdir(exist_ok=True)

    def get(**kw):
        cfg = RunConfig(**{**TINY, **kw})
        out = base / ("run-" + hashlib.sha256(repr(cfg).encode()).hexdigest()[:16])
        with open(f"{out}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not Path(f"{out}.done").exists():
                shutil.rmtree(out, ignore_errors=True)  # a worker that died half-way
                train(cfg, out, progress=False)
                Path(f"{out}.done").touch()
        return out

    return get


def copy_run(src, dst):
    """A private copy of a shared run, to change or resume."""
    shutil.copytree(src, dst)
    return dst


#: How `make test` (pytest-xdist, --dist loadgroup) hands tests to its two
#: workers: each test file is one unit (its module fixtures built once), except
#: the tests named here, which are many independent, long cases: each case is
#: a unit of its own, so the two workers share them instead of one worker
#: running the whole file while the other idles. (The spec tests share the
#: runs they repeat across workers: test_study._run_once.) "report-drawn"
#: holds test_report.py's reports of runs made of numbers, which need no
#: compiled op: listed first, they run while a new machine's one build of the
#: ops (pytest_configure) holds back every test that trains or probes.
SPLIT = {
    "test_spec_runs_with_a_tiny_budget": lambda case: "spec-" + case,
    "test_random_kill9_and_resume_equals_uninterrupted": lambda case: "kill-9",
    "test_every_page_names_every_run_once": lambda case: "report-drawn",
    "test_study_report_is_byte_identical_whatever_the_input_order": lambda case: "report-drawn",
}

#: Units in the order the workers take them: the longest first, so that the
#: last unit to finish is a short one and neither worker idles long at the
#: end. Measured in CPU seconds per unit on the loaded 2-core machine
#: (2026-11-30, a CPU-time plugin over `make test`'s command), 35-42 s down to
#: 8 s; test_ray.py by its wall time (its Ray workers' CPU is not the test
#: process's); "report-drawn" first (see SPLIT) and test_ray.py second: the
#: other worker starts its Ray cluster, which is mostly waiting, while a new
#: machine's build of the ops runs (its reference sweep then waits for the
#: build like any test that trains). A unit not listed keeps its place after
#: these; a stale list costs time, not results. After test_ray.py come the
#: other units that never load the ops (custom and modern cells run Keras's
#: loop; checked by running each file alone with an empty kernel cache and
#: watching for a build), so that a new machine's build holds back neither
#: worker; the tiny ones stay at the end, where they even out the finish.
SLOW_FIRST = ["report-drawn", "test_ray.py", "test_customcell.py", "test_cells.py", "test_assignment3.py",
              "test_estimate.py", "test_benchmarks.py", "test_training.py", "test_report.py", "test_determinism.py",
              "test_probe.py", "spec-remedies", "test_study.py", "test_faults.py", "test_why.py", "test_fastlstm.py",
              "spec-modern-cells", "spec-tour", "kill-9", "test_new_tasks.py",
              "test_expect.py", "test_mixed_study.py", "test_kernels.py",
              "spec-assignment-2-gating", "spec-tcn-table1", "test_execpath.py"]


def _unit(item) -> str:
    """The xdist group of ``item``: its file, or a case of a SPLIT test."""
    name = getattr(item, "originalname", item.name)
    if name in SPLIT:
        return SPLIT[name](item.callspec.id if hasattr(item, "callspec") else "")
    return item.path.name


# First: pytest-xdist's worker reads the xdist_group markers in its own
# hook of this name, and a marker added after it is ignored (each test would
# then be a unit of its own, its file's module fixtures built in both workers).
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}

    def order(item):
        unit = _unit(item)
        return rank.get(unit, rank.get(item.path.name, len(SLOW_FIRST)))

    items.sort(key=order)  # stable: a unit's own order stays
    for item in items:
        item.add_marker(pytest.mark.xdist_group(_unit(item)))
