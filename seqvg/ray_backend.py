"""Studies on a Ray cluster: one run = one Ray task, resumed after a lost worker.

    ray start --head                      # on one node; `ray start --address HEAD:6379` on the others
    seqvg sweep --cells rnn,lstm,gru --lengths 50,100,200 --seeds 3 --backend ray --out /shared/runs/sweep

    from seqvg.ray_backend import RayBackend
    from seqvg.study import load_spec, run_study
    run_study(load_spec("tasks/demo.toml"), backend=RayBackend(address="head:6379"))

Ray is an optional extra (``pip install 'seqvg[ray]'``); this module imports
it only when a study runs. A run is the same picklable call as on the local
process pool (``study.run_one``: config in, run directory out), so the run
directories, results.csv and the report are the same whichever backend ran
them. The output directory must be one every node sees at the same path
(NFS or similar); that is checked on every node before any run starts.

A worker process or node that dies mid-run makes Ray retry the task
(``MAX_RETRIES``); the retried run finds its config.json and resumes from its
last checkpoint, dropping the metrics rows written after it. A run that
raises is not retried: its error is reported, the other runs go on, and the
study ends with exit status 1 naming it.
"""

from __future__ import annotations

import math
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

#: Times Ray reruns a run whose worker process or node died.
MAX_RETRIES = 3
#: Seconds a node has to answer the shared-directory check.
CHECK_TIMEOUT_S = 60.0
INSTALL_HINT = "pip install 'seqvg[ray]'"


class BackendError(RuntimeError):
    """The cluster cannot run the study (unreachable, too small, output not shared)."""


class RunsFailed(RuntimeError):
    """Some runs raised; the others finished and are in results.csv."""


def require_ray():
    """Imports Ray.

    Raises:
        ImportError: with the install command in its message.
    """
    try:
        import ray
    except ImportError:
        raise ImportError(f"--backend ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


#: Options that only the Ray backend reads (``--workers`` is the local pool's).
RAY_OPTIONS = ("address", "cpus_per_run", "gpus_per_run")


def make_backend(backend: str = "local", address: str | None = None, cpus_per_run: int | None = None,
                 gpus_per_run: float = 0.0, given=()) -> RayBackend | None:
    """The backend a study's options ask for: None (the local process pool) or a RayBackend.

    Args:
        backend: "local" or "ray".
        address, cpus_per_run, gpus_per_run: the Ray options (see RayBackend).
        given: names of the options the user set (of "workers" and
            RAY_OPTIONS): a Ray option without Ray, or workers with Ray, is
            a mistake worth saying rather than ignoring.

    Raises:
        ConfigError: options that do not fit together or a bad value (its
            ``option`` names the one at fault, if one is).
        ImportError: Ray is not installed (the message says how to install it).
    """
    from seqvg.config import ConfigError

    given = set(given)
    if backend == "local":
        ray_only = [k for k in RAY_OPTIONS if k in given]
        if ray_only:
            raise ConfigError(", ".join("--" + k.replace("_", "-") for k in ray_only)
                              + (" needs" if len(ray_only) == 1 else " need") + " --backend ray")
        return None
    if "workers" in given:
        raise ConfigError("--workers is for --backend local; on Ray, --cpus-per-run sets the share of a node")
    if cpus_per_run is not None and cpus_per_run < 1:
        raise ConfigError(f"must be at least 1, got {cpus_per_run}", "cpus_per_run")
    if gpus_per_run < 0:
        raise ConfigError(f"must be at least 0, got {gpus_per_run:g}", "gpus_per_run")
    require_ray()
    return RayBackend(address, cpus_per_run, gpus_per_run)


def _set_threads(threads: int, gpus: float) -> None:
    """TensorFlow threads = the run's CPUs (a reused worker keeps its count)."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    from seqvg.study import set_worker_threads

    try:
        set_worker_threads(threads)
    except RuntimeError:
        # TF in this worker was initialised with another count: the numbers
        # are bit-identical on any thread count, only the speed differs.
        pass
    if gpus:
        import tensorflow as tf

        # Runs sharing a GPU (--gpus-per-run < 1): TensorFlow would
        # otherwise take all of its memory for the first one.
        for gpu in tf.config.list_physical_devices("GPU"):
            try:
                tf.config.experimental.set_memory_growth(gpu, True)
            except RuntimeError:
                pass


def _run_task(cfg, path: str, probe_only: bool, threads: int, gpus: float = 0.0) -> str:
    """One run in a Ray worker (resumes a started run, see ``study.run_one``)."""
    from seqvg.study import run_one

    _set_threads(threads, gpus)
    return run_one(cfg, Path(path), probe_only, False)


def _check_task(out: str, name: str, token: str) -> str:
    """On one node: reads the driver's marker in OUT and writes this node's own.

    Returns:
        "" if the node sees the driver's marker, else why not.
    """
    import ray

    node = ray.get_runtime_context().get_node_id()
    marker = Path(out) / name
    try:
        seen = marker.read_text()
    except OSError as e:
        return f"cannot read {marker} ({e.strerror or e})"
    if seen != token:
        return f"{marker} holds something else there"
    reply = Path(out) / f"{name}-{node}"
    try:
        reply.write_text(node)
        if reply.read_text() != node:
            return f"{reply} reads back differently"
    except OSError as e:
        return f"cannot write {reply} ({e.strerror or e})"
    return ""


@dataclass(frozen=True)
class RayBackend:
    """Where and how a study's runs go on Ray.

    Attributes:
        address: the cluster (``HOST:PORT``); None: ``RAY_ADDRESS``, else the
            Ray instance started on this machine with ``ray start``, else a
            new one for this study (stopped at its end).
        cpus_per_run: CPUs (and TensorFlow threads) per run; None: the
            cluster's CPUs / runs to do, at least 1, at most the smallest
            node's CPUs so every node can take runs.
        gpus_per_run: GPUs per run (0: none).
    """

    address: str | None = None
    cpus_per_run: int | None = None
    gpus_per_run: float = 0.0

    def run(self, study, todo: list, done: int, total: int, echo) -> None:
        """Runs ``todo`` ((config, run directory) pairs) on the cluster.

        Writes results.csv after every finished run, as the local backend
        does; returns when every run has finished.

        Raises:
            BackendError: before any run starts (cluster unreachable, too
                small, or a node that does not see the output directory).
            RunsFailed: after the other runs finished, if some raised.
            KeyboardInterrupt: after cancelling the runs, each of which ends
                'interrupted' and resumes next time.
        """
        ray = require_ray()
        started_here = not ray.is_initialized()
        if started_here:
            self._connect(ray, echo)
        try:
            cpus = self._cpus_per_run(ray, len(todo))
            self._check_shared(ray, study.out, cpus)
            self._run_all(ray, study, todo, done, total, cpus, echo)
        finally:
            if started_here:
                ray.shutdown()

    # -- connecting and checking ---------------------------------------------
    def _connect(self, ray, echo) -> None:
        import logging

        t0 = time.perf_counter()
        _check_reachable(self.address)
        try:
            ctx = ray.init(address=self.address, logging_level=logging.WARNING)
        except Exception as e:  # Ray raises ConnectionError, ValueError, RuntimeError...
            where = self.address or os.environ.get("RAY_ADDRESS") or "this machine"
            raise BackendError(f"cannot connect to Ray at {where}: {e}") from None
        nodes = _alive_nodes(ray)
        cpus = sum(n["Resources"].get("CPU", 0) for n in nodes)
        gpus = sum(n["Resources"].get("GPU", 0) for n in nodes)
        address = ctx.address_info.get("gcs_address") or ctx.address_info.get("address") or "?"
        line = (f"ray: {len(nodes)} node{'s' * (len(nodes) != 1)}, {cpus:g} CPUs"
                + (f", {gpus:g} GPUs" if gpus else "") + f" at {address}"
                + f" (connected in {time.perf_counter() - t0:.1f} s)")
        if getattr(ctx, "dashboard_url", None):
            line += f"; dashboard http://{ctx.dashboard_url}"
        echo(line)

    def _cpus_per_run(self, ray, n_runs: int) -> int:
        """The CPUs per run, checked against the nodes (refused if no node fits)."""
        nodes = [n for n in _alive_nodes(ray) if n["Resources"].get("CPU", 0) >= 1]
        if not nodes:
            raise BackendError("the Ray cluster has no node with a CPU")
        node_cpus = [int(n["Resources"]["CPU"]) for n in nodes]
        if self.cpus_per_run is None:
            cpus = max(1, min(sum(node_cpus) // max(1, n_runs), min(node_cpus)))
        else:
            cpus = self.cpus_per_run
            if cpus > max(node_cpus):
                raise BackendError(f"--cpus-per-run {cpus}: no node of the Ray cluster has that many CPUs "
                                   f"(the largest has {max(node_cpus)})")
        if self.gpus_per_run > 0:
            most = max((n["Resources"].get("GPU", 0) for n in nodes), default=0)
            if most < self.gpus_per_run:
                raise BackendError(f"--gpus-per-run {self.gpus_per_run:g}: no node of the Ray cluster has "
                                   f"that many GPUs (the most any node has is {most:g})")
        return cpus

    def _check_shared(self, ray, out: Path, cpus: int) -> None:
        """Every node that can take a run writes and reads a marker in OUT.

        Raises:
            BackendError: naming the nodes that do not see OUT as this
                machine does.
        """
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        out = Path(out).resolve()
        out.mkdir(parents=True, exist_ok=True)
        nodes = [n for n in _alive_nodes(ray) if n["Resources"].get("CPU", 0) >= cpus
                 and n["Resources"].get("GPU", 0) >= self.gpus_per_run]
        token = uuid.uuid4().hex
        name = f".seqvg-node-check-{token[:12]}"
        marker = out / name
        marker.write_text(token)
        check = ray.remote(_check_task)
        refs = {check.options(num_cpus=0, max_retries=0, scheduling_strategy=NodeAffinitySchedulingStrategy(
                    n["NodeID"], soft=False)).remote(str(out), name, token): n for n in nodes}
        problems = []
        try:
            ready, late = ray.wait(list(refs), num_returns=len(refs), timeout=CHECK_TIMEOUT_S)
            for ref in late:
                ray.cancel(ref, force=True)
                problems.append(f"{_node_name(refs[ref])}: no answer within {CHECK_TIMEOUT_S:g} s")
            for ref in ready:
                node = refs[ref]
                try:
                    why = ray.get(ref)
                except Exception as e:  # the node could not even run seqvg (not installed there?)
                    why = f"could not run seqvg's check ({_one_line(e)}); is seqvg installed on every node?"
                reply = out / f"{name}-{node['NodeID']}"
                if not why and not (reply.exists() and reply.read_text() == node["NodeID"]):
                    why = f"wrote its marker where this machine does not see it ({reply} missing)"
                if why:
                    problems.append(f"{_node_name(node)}: {why}")
        finally:
            for path in [marker, *(out / f"{name}-{n['NodeID']}" for n in nodes)]:
                try:
                    path.unlink()
                except FileNotFoundError:
                    pass
        if problems:
            raise BackendError(
                f"{out} is not shared by every node of the Ray cluster; it must be on a filesystem every node "
                "mounts at the same path (NFS or similar). No run started. " + "; ".join(problems))

    # -- running ----------------------------------------------------------------
    def _run_all(self, ray, study, todo: list, done: int, total: int, cpus: int, echo) -> None:
        from seqvg.study import ResultsWriter, run_cost

        task = ray.remote(_run_task).options(num_cpus=cpus, num_gpus=self.gpus_per_run,
                                             max_retries=MAX_RETRIES, retry_exceptions=False)
        # Longest runs first, so no node is left with a long run at the end.
        todo = sorted(todo, key=lambda item: -run_cost(item[0]))
        refs = {task.remote(cfg, str(Path(d).resolve()), study.probe_only, cpus, self.gpus_per_run): Path(d)
                for cfg, d in todo}
        pending = list(refs)
        failed = []
        results = ResultsWriter(study)
        try:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                for ref in ready:
                    name = refs[ref].name
                    try:
                        status = ray.get(ref)
                    except ray.exceptions.RayError as e:
                        failed.append(f"{name}: {_one_line(e)}")
                        status = f"failed ({_one_line(e)})"
                    done += 1
                    echo(f"[{done}/{total}] {name}: {status}  ({_in_flight(ray, len(pending), cpus)} in flight)")
                    results.run_finished()
        except BaseException:
            # Ctrl-C: a cancelled run gets KeyboardInterrupt in its worker,
            # writes its 'interrupted' summary and resumes next time.
            for ref in pending:
                ray.cancel(ref)
            ray.wait(pending, num_returns=len(pending), timeout=60)
            raise
        if failed:
            raise RunsFailed(f"{len(failed)} of {len(todo)} runs failed (not retried): " + "; ".join(failed)
                             + ". The others are in results.csv; the same command reruns the failed ones.")


def _check_reachable(address: str | None) -> None:
    """Refuses an address nothing listens at (Ray itself would retry for minutes).

    Raises:
        BackendError: naming the address and where it came from.
    """
    import socket

    source = "--address" if address else "RAY_ADDRESS" if os.environ.get("RAY_ADDRESS") else None
    target = address or os.environ.get("RAY_ADDRESS")
    if target is None:
        try:  # no address: Ray's own choice, the last `ray start` on this machine (or a new instance)
            from ray._private.services import canonicalize_bootstrap_address

            target = canonicalize_bootstrap_address(None)
            source = "the last `ray start` on this machine (run `ray stop` if that cluster is gone)"
        except Exception:  # an internal helper that moved: let ray.init decide
            return
    if target is None or target in ("auto", "local") or "://" in target:
        return
    host, _, port = target.rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=10).close()
    except (OSError, ValueError) as e:
        raise BackendError(f"cannot connect to Ray at {target} (from {source}): {e.strerror or e}; start the "
                           "cluster with `ray start --head` or pass --address HOST:PORT") from None


def _alive_nodes(ray) -> list[dict]:
    return [n for n in ray.nodes() if n.get("Alive")]


def _node_name(node: dict) -> str:
    return f"node {node.get('NodeManagerAddress', '?')} ({node['NodeID'][:8]})"


def _in_flight(ray, pending: int, cpus: int) -> int:
    """Runs the cluster is computing now: its CPUs in use / CPUs per run."""
    used = ray.cluster_resources().get("CPU", 0) - ray.available_resources().get("CPU", 0)
    return min(pending, max(0, math.floor(used / cpus + 0.5)))


def _one_line(e: BaseException) -> str:
    """The cause of a Ray error in one line (a run's own exception if it raised)."""
    cause = getattr(e, "cause", None)
    if isinstance(cause, BaseException):
        e = cause
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[-1] if text else ''}".rstrip(": ")
