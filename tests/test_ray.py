"""Studies on Ray (--backend ray) against a real local cluster, not a mock.

The module starts one cluster with `ray start`: a head and a second worker
node, one CPU each, in a temp dir of their own. On it: a sweep gives the same
results.csv, byte for byte, as the local backend; a worker process killed
with SIGKILL mid-run is retried and its run resumes from the last checkpoint
(no duplicated metrics rows); a run that raises is reported and not
retried; a third node started in a mount namespace of its own, where the
output directory is an empty tmpfs, makes the study be refused before any
run starts. The cluster tests are skipped where Ray is not installed.
"""

import csv
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from seqvg import rundir
from seqvg.cli import cli

SWEEP = ["sweep", "--cells", "rnn,gru", "--lengths", "10", "--units", "8", "--steps", "100", "--eval-every", "10",
         "--val-size", "32", "--batch-size", "16", "--probe-batch", "8", "-q"]
RUNS = ["rnn-T10-s0", "gru-T10-s0"]
#: No usage reports, and no token auth on this loopback cluster (Ray turns it
#: on when ~/.ray/auth_token exists; the nodes and drivers must agree).
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
ENV = {**os.environ, **RAY_ENV, "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive_nodes(address: str) -> int:
    import ray

    ray.init(address=address, logging_level="ERROR", log_to_driver=False)
    try:
        return sum(1 for n in ray.nodes() if n["Alive"])
    finally:
        ray.shutdown()


def _wait_nodes(address: str, n: int, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while _alive_nodes(address) != n:
        assert time.time() < deadline, f"the Ray cluster did not reach {n} nodes"
        time.sleep(0.5)


class _Cluster:
    """`ray start` nodes, each its own process group, stopped by killing it."""

    def __init__(self):
        # A short temp dir: Ray's socket paths must stay under 107 characters.
        self.temp = tempfile.mkdtemp(prefix="sqr", dir="/tmp")
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.procs = []
        self.ray = str(Path(sys.executable).with_name("ray"))

    def start(self, args: list[str], wrap: list[str] = (), log: str = "node") -> subprocess.Popen:
        cmd = [*wrap, self.ray, "start", "--node-ip-address", "127.0.0.1", "--num-cpus", "1",
               "--object-store-memory", str(80 * 2**20), "--temp-dir", self.temp, "--block", *args]
        with open(Path(self.temp) / f"{log}.log", "w") as f:
            proc = subprocess.Popen(cmd, env=ENV, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen) -> None:
        # SIGKILL at once (SIGTERM makes a node drain for up to 30 s); the
        # node's raylet, workers and, on the head, GCS share its group.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)

    def close(self) -> None:
        for proc in reversed(self.procs):
            self.stop(proc)
        shutil.rmtree(self.temp, ignore_errors=True)


@pytest.fixture(scope="module")
def nodes():
    """The head and the second node, started (not yet waited for)."""
    pytest.importorskip("ray")
    saved = {k: os.environ.get(k) for k in RAY_ENV}
    os.environ.update(RAY_ENV)  # for the drivers this process runs (CliRunner)
    c = _Cluster()
    try:
        c.start(["--head", "--port", str(c.port), "--include-dashboard=false",
                 "--ray-client-server-port", str(_free_port()), "--dashboard-port", str(_free_port())], log="head")
        c.start(["--address", c.address], log="worker")
        yield c
    finally:
        c.close()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    """The same sweep on the local backend: the reference."""
    out = tmp_path_factory.mktemp("local") / "sweep"
    result = CliRunner().invoke(cli, SWEEP + ["--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def cluster(nodes, local_sweep):
    """The running two-node cluster. The local reference sweep trains while
    the nodes start (mostly waiting on Ray's start-up), then both nodes are
    waited for."""
    _wait_nodes(nodes.address, 2)
    return nodes


def _metrics(path: Path) -> list[list[str]]:
    """metrics.csv without wall_s (the one column that may differ)."""
    with open(path / rundir.METRICS, newline="") as f:
        rows = list(csv.reader(f))
    wall = rows[0].index("wall_s")
    return [r[:wall] + r[wall + 1:] for r in rows]


def _lock_holder(lock: Path) -> int | None:
    """The pid of the process that has the run's lock file open (the worker running it)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == str(lock):
                    return int(pid)
        except OSError:
            continue
    return None


def test_sweep_on_ray_equals_local(cluster, local_sweep, tmp_path):
    out = tmp_path / "ray"
    result = CliRunner().invoke(cli, SWEEP + ["--out", str(out), "--backend", "ray", "--address", cluster.address])
    assert result.exit_code == 0, result.output
    assert "ray: 2 nodes, 2 CPUs" in result.output
    assert "[2/2] " in result.output and " in flight)" in result.output
    assert (out / "results.csv").read_bytes() == (local_sweep / "results.csv").read_bytes()
    for run in RUNS:
        assert _metrics(out / run) == _metrics(local_sweep / run)
    assert not list(out.glob(".seqvg-node-check*"))  # the check's markers are removed
    # Run again: every run is found finished, whichever backend ran it.
    again = CliRunner().invoke(cli, SWEEP + ["--out", str(local_sweep), "--backend", "ray",
                                             "--address", cluster.address])
    assert again.exit_code == 0 and "2 of 2 runs already finished" in again.output


def test_killed_worker_is_retried_and_resumes(cluster, local_sweep, tmp_path):
    out = tmp_path / "killed"
    run = out / "gru-T10-s0"  # the longer run: scheduled first
    state = run / rundir.CHECKPOINTS / rundir.STATE
    seen = {}

    def kill_after_first_checkpoint():
        """SIGKILLs the worker process running `run` once it checkpointed after training began."""
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                step = int(np.load(state)["step"])
            except (OSError, ValueError, KeyError):
                step = -1
            pid = _lock_holder(run / ".lock") if step >= 10 else None
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                while os.path.exists(f"/proc/{pid}"):
                    time.sleep(0.01)
                seen["pid"], seen["step"] = pid, int(np.load(state)["step"])
                with open(run / rundir.METRICS, newline="") as f:
                    seen["kept"] = [r for r in csv.DictReader(f) if int(r["step"]) <= seen["step"]]
                return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_after_first_checkpoint, daemon=True)
    killer.start()
    result = CliRunner().invoke(cli, SWEEP + ["--out", str(out), "--backend", "ray", "--address", cluster.address])
    killer.join(10)
    assert result.exit_code == 0, result.output
    assert seen and seen["pid"] != os.getpid(), "the run's worker was never killed"
    assert 10 <= seen["step"] < 100, "the run finished before the kill; the test proves nothing"
    assert (out / "results.csv").read_bytes() == (local_sweep / "results.csv").read_bytes()
    steps = [row[0] for row in _metrics(run)[1:]]
    assert len(steps) == len(set(steps)) == 11  # steps 0, 10, ..., 100: none twice
    assert _metrics(run) == _metrics(local_sweep / run.name)
    # Resumed from the checkpoint, not started over: the rows written before
    # the kill are still there, with their original wall times.
    with open(run / rundir.METRICS, newline="") as f:
        assert [r for r in csv.DictReader(f) if int(r["step"]) <= seen["step"]] == seen["kept"]
    assert rundir.read_json(run / rundir.SUMMARY)["status"] == "completed"


def test_run_that_raises_is_reported_not_retried(cluster, local_sweep, tmp_path):
    # A started run whose checkpoint is corrupt: resuming it raises in the worker.
    run = tmp_path / "broken" / "gru-T10-s0"
    shutil.copytree(local_sweep / run.name, run)
    rundir.write_json(run / rundir.SUMMARY, {**rundir.read_json(run / rundir.SUMMARY), "status": "interrupted"})
    (run / rundir.CHECKPOINTS / rundir.STATE).write_bytes(b"not a checkpoint")
    sweep = [a if a != "rnn,gru" else "gru" for a in SWEEP]
    result = CliRunner().invoke(cli, sweep + ["--out", str(run.parent), "--backend", "ray",
                                              "--address", cluster.address])
    assert result.exit_code == 1, result.output
    assert "[1/1] gru-T10-s0: failed (RunDirError: " in result.output and "state.npz: not an .npz file" in result.output
    assert "1 of 1 runs failed (not retried)" in result.output
    assert (run / rundir.CHECKPOINTS / rundir.STATE).read_bytes() == b"not a checkpoint"  # nothing overwritten


def test_backend_options_need_each_other(tmp_path):
    r = CliRunner().invoke(cli, SWEEP + ["--out", str(tmp_path / "x"), "--address", "127.0.0.1:1"])
    assert r.exit_code == 2 and "--address needs --backend ray" in r.output
    r = CliRunner().invoke(cli, SWEEP + ["--out", str(tmp_path / "x"), "--backend", "ray", "--workers", "2"])
    assert r.exit_code == 2 and "--workers is for --backend local" in r.output
    r = CliRunner().invoke(cli, SWEEP + ["--out", str(tmp_path / "x"), "--backend", "ray", "--cpus-per-run", "0"])
    assert r.exit_code == 2 and "--cpus-per-run" in r.output


def test_backend_ray_without_ray_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail as if not installed
    r = CliRunner().invoke(cli, SWEEP + ["--out", str(tmp_path / "x"), "--backend", "ray"])
    assert r.exit_code == 2 and "pip install 'seqvg[ray]'" in r.output
    assert not (tmp_path / "x").exists()


def test_unreachable_address_is_refused_at_once(tmp_path):
    pytest.importorskip("ray")
    t0 = time.time()
    r = CliRunner().invoke(cli, SWEEP + ["--out", str(tmp_path / "x"), "--backend", "ray",
                                         "--address", f"127.0.0.1:{_free_port()}"])
    assert r.exit_code == 1 and "cannot connect to Ray at 127.0.0.1:" in r.output
    assert time.time() - t0 < 15
    assert not (tmp_path / "x").exists()  # the study directory it made is not left behind, empty


def test_node_that_does_not_see_the_output_is_refused(cluster, tmp_path):
    if subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("needs `unshare -m` (root) to give a node its own view of the filesystem")
    shared = tmp_path / "shared"
    shared.mkdir()
    # A third node that sees an empty tmpfs where this machine sees `shared`.
    odd = cluster.start(["--address", cluster.address],
                        wrap=["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=1m seqvg-test {shared} && "
                              'exec "$0" "$@"'], log="odd")
    try:
        _wait_nodes(cluster.address, 3)
        out = shared / "sweep"
        result = CliRunner().invoke(cli, SWEEP + ["--out", str(out), "--backend", "ray",
                                                  "--address", cluster.address])
        assert result.exit_code == 1, result.output
        assert "is not shared by every node" in result.output and "No run started" in result.output
        assert "cannot read" in result.output
        assert not out.exists()  # no run started, no marker left, and the empty OUT it made removed
    finally:
        cluster.stop(odd)
