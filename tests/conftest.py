"""Shared test settings: headless plotting, quiet TensorFlow, tiny configs, shared runs."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Nothing in the tests downloads MNIST: without a file of one's own, the MNIST
# tasks find none (tests that need one make a small synthetic mnist.npz).
os.environ.setdefault("SEQVG_MNIST", os.path.join(os.sep, "nonexistent", "seqvg-tests", "mnist.npz"))

import fcntl  # noqa: E402
import hashlib  # noqa: E402
import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from seqvg.config import RunConfig  # noqa: E402

#: Options of a run small enough for a test: seconds on 2 cores.
TINY = dict(length=10, units=8, steps=30, eval_every=10, val_size=64, batch_size=16, probe_batch=8)


@pytest.fixture
def tiny_cfg():
    """Factory for a tiny RunConfig; keyword arguments override."""

    def make(**kw):
        return RunConfig(**{**TINY, **kw})

    return make


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


#: The slowest test files, slowest first (seconds on an idle 2-core machine,
#: 2026-11-30). `make test` hands files to its two workers in collection order
#: (--no-loadscope-reorder): the long ones start first, so the last file to
#: finish is a short one and neither worker idles long at the end. A file not
#: listed keeps its place after these; a stale list costs time, not results.
SLOW_FIRST = ["test_study.py", "test_faults.py", "test_probe.py", "test_training.py", "test_report.py",
              "test_benchmarks.py", "test_kernels.py", "test_ray.py", "test_new_tasks.py", "test_determinism.py",
              "test_customcell.py", "test_why.py", "test_fastlstm.py", "test_assignment3.py", "test_expect.py"]


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(SLOW_FIRST)))  # stable: a file's own order stays
