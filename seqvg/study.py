"""Running a study: every unfinished run of a Study, resumably, in parallel.

    seqvg run tasks/demo.toml
    seqvg sweep --task adding --cells rnn,lstm,gru --lengths 50,100,200 --seeds 3 --workers 2

From a notebook, the same as ``seqvg run``::

    from seqvg.study import load_spec, run_study, write_study_report, summary_table
    study = load_spec("tasks/demo.toml", overrides={"steps": 300})
    run_study(study, workers=2)
    write_study_report(study)
    print(summary_table(study))

Every run gets its own run directory under the study's OUT; finished runs
are skipped and interrupted ones resumed, so the same call after a crash or
Ctrl-C finishes the work without repeating it. OUT/results.csv is rewritten
atomically after every finished run, OUT/results.png every two minutes
while the study runs and when it ends (``results.ResultsWriter``). This
module is the study API: it also offers the names of ``seqvg.spec`` (specs
and grids into a Study), ``seqvg.results`` (results.csv, the study's PDF and
tables) and ``seqvg.results_figures`` (results.png).
"""

from __future__ import annotations

import os
from pathlib import Path

from seqvg import rundir
from seqvg.config import ConfigError, RunConfig, option_differences
from seqvg.pdf import check_replaceable, image_name_problem, written_by_seqvg
from seqvg.results import (  # noqa: F401 (the study API)
    DECAY,
    OPTION_COLUMNS,
    PROBE_COLUMNS,
    TRAIN_COLUMNS,
    ResultsWriter,
    check_expectations,
    expectation_table,
    results_rows,
    summary_table,
    write_results,
    write_study_report,
)
from seqvg.results_figures import probe_curves_figure, results_figure  # noqa: F401 (the study API)
from seqvg.spec import (  # noqa: F401 (the study API)
    OPTION_KEYS,
    STUDY_KEYS,
    SpecError,
    Study,
    expand,
    grid_study,
    label_of,
    load_spec,
    parse_assignments,
    parse_spec,
    study_labels,
)


def set_worker_threads(threads: int) -> None:
    """Caps a worker's TensorFlow threads so the workers share the cores."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    from seqvg.tfsetup import import_tensorflow_quietly

    import_tensorflow_quietly()
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def _worker_init(threads: int, pids) -> None:
    """A local worker process: says its pid (``pids``, a queue), then sets its threads."""
    pids.put(os.getpid())
    set_worker_threads(threads)


def run_one(cfg: RunConfig, path: Path, probe_only: bool = False, progress: bool = False,
            command: str | None = None) -> str:
    """Trains (or, probe-only, probes at init) one run of a study; returns its status.

    A started run is resumed; a directory holding a run with other options
    is refused (RunExistsError) rather than overwritten. ``command`` (the
    study's command line) goes into the run's config.json.
    """
    from seqvg.training import train

    path = Path(path)
    if probe_only:
        from seqvg.probe import probe_untrained

        result, _ = probe_untrained(cfg)
        rundir.write_json(path / rundir.PROBE, {"config": cfg.to_dict(), **result.to_json(),
                                              "c_summary": _c_summary(result)})
        return "probed"
    _check_same(cfg, path, probe_only=False)
    return train(cfg, path, resume=(path / rundir.CONFIG).exists(), progress=progress, command=command)["status"]


def _check_same(cfg: RunConfig, path: Path, probe_only: bool) -> None:
    """Refuses a directory that holds a run (or probe) of other options.

    Raises:
        RunExistsError: naming the directory.
    """
    from seqvg.training import RunExistsError

    source = path / (rundir.PROBE if probe_only else rundir.CONFIG)
    if path.exists():
        rundir.check_not_in_use(path)
    if not source.exists():
        if not probe_only and rundir.has_content(path):
            rundir.check_own_run(path, signed=written_by_seqvg)
        return
    held = rundir.config_of(rundir.read_json(source), source, resolve=False)
    if held != cfg:
        raise RunExistsError(f"{path}: holds a run with other options ({option_differences(held, cfg)}); use "
                             "another output directory")


def _c_summary(result) -> dict | None:
    from seqvg.decay import decay_summary

    return None if result.c is None else decay_summary(result.c[0])


def run_study(study: Study, workers: int = 1, progress: bool = True, echo=print, backend=None,
              names: dict[str, str] | None = None, confirm=None) -> list[Path]:
    """Checks a study (``check_study``), runs every unfinished run, then writes its results.

    Args:
        study: the parsed study.
        workers: parallel processes; each gets cores/workers TensorFlow
            threads so that together they use the cores without
            oversubscribing them. 1 runs in this process.
        progress: per-run progress bars (only with one worker).
        echo: where one line per finished run goes.
        backend: where the runs go instead of this machine's processes, e.g.
            ``seqvg.ray_backend.RayBackend()`` (its ``run`` takes the runs to do).
        names: how the caller spells each option, for the checks' messages
            (see ``memory.check_memory``).
        confirm: called as ``confirm(runs_to_do, seconds)`` (``workload``)
            once the checks pass and before any run starts; raising stops
            the study there (``seqvg`` asks before a large study).

    Returns:
        The run directories in spec order.

    Raises:
        ConfigError: a run's options cannot run here (custom cell, memory).
        RunDirError: OUT or a run directory holds what this study must not
            touch (another run, a user's files, a live run).
        OSError: OUT or the report cannot be written.
    """
    dirs = study.run_dirs()
    check_study(study, names)
    for cfg, d in zip(study.configs, dirs):
        _check_same(cfg, d, study.probe_only)
    if confirm is not None:
        confirm(*workload(study, workers))
    todo = [(cfg, d) for cfg, d in zip(study.configs, dirs) if not rundir.is_finished(d, study.probe_only)]
    done = len(dirs) - len(todo)
    if done:
        echo(f"{done} of {len(dirs)} runs already finished in {study.out}; {len(todo)} to run")
    created = not study.out.exists()
    study.out.mkdir(parents=True, exist_ok=True)
    if backend is not None:
        try:
            if todo:
                backend.run(study, todo, done, len(dirs), echo)
        except BaseException:
            # A cluster that cannot be reached leaves no empty OUT behind (a
            # directory this call made and nothing wrote into).
            if created and not any(study.out.iterdir()):
                study.out.rmdir()
            raise
    elif workers <= 1 or len(todo) <= 1:
        from seqvg.execpath import settle_inter_op

        settle_inter_op(cfg.cell for cfg, _ in todo)  # all of them LSTMs or GRUs: one inter-op thread
        results = ResultsWriter(study)
        for cfg, d in todo:
            status = run_one(cfg, d, study.probe_only, progress, study.command)
            done += 1
            echo(f"[{done}/{len(dirs)}] {d.name}: {status}")
            results.run_finished()
    else:
        _run_parallel(study, todo, workers, done, len(dirs), echo)
    write_results(study)
    return dirs


def check_study(study: Study, names: dict[str, str] | None = None) -> None:
    """Refuses, before anything is written, a study that cannot run to its end.

    Every custom cell is imported and run on one sample; OUT and the report
    must be writable; OUT may hold only what a study writes
    (``check_study_dir``); and every run's arrays must fit in memory, the
    check ``training.train`` makes for each run, made here for all of them
    before the first starts.

    Args:
        names: how the caller spells each option in messages, e.g.
            ``{"steps": "--set steps=..."}`` (default ``--steps``).

    Raises:
        ConfigError, RunDirError, OSError: naming the option, directory or file.
    """
    from seqvg.config import check_split_sizes, is_custom_cell
    from seqvg.customcell import CELL_DIR, CELL_JSON, bind_run, check_cell, unbind
    from seqvg.memory import check_memory

    for cfg, d in zip(study.configs, study.run_dirs()):
        if rundir.is_finished(d, study.probe_only):
            continue  # nothing of it runs again: a cell file edited since cannot stop the study
        if is_custom_cell(cfg.cell) and not study.probe_only and (d / CELL_DIR / CELL_JSON).exists():
            bind_run(cfg, d)  # a started run resumes from its own copy of the cell file
            try:
                check_cell(cfg)
            finally:
                unbind(cfg.cell)
        else:
            check_cell(cfg)
    rundir.check_writable(study.out, is_dir=True)
    if study.report is not None:
        if study.report.parent.resolve() == study.out.resolve() and \
                study.report.name in (rundir.RESULTS_CSV, rundir.RESULTS_PNG):
            raise ConfigError(f"{study.report}: the study writes its {study.report.name} there; choose another "
                              "name for the report", "report")
        if problem := image_name_problem(study.report) or rundir.inside_run_problem(study.report,
                                                                                     study.report.parent):
            raise ConfigError(problem, "report")
        rundir.check_writable(study.report)
        check_replaceable(study.report, "pdf")
    check_study_dir(study)
    for cfg in study.configs:
        check_memory(cfg, training=not study.probe_only, names=names)
        check_split_sizes(cfg, training=not study.probe_only)


def check_study_dir(study: Study) -> None:
    """Refuses an output directory holding anything a seqvg study does not write.

    A study writes run directories, results.csv, results.png and (compare)
    report.pdf into OUT; a user's own file there could be overwritten, so a
    directory holding one is refused before any work.

    Raises:
        rundir.NotARunError: naming the first foreign entry.
    """
    out = study.out
    if not out.exists():
        return
    if not out.is_dir():
        raise rundir.NotARunError(f"{out}: exists and is not a directory")
    own = {rundir.RESULTS_PNG} | ({study.report.name} if study.report and study.report.parent == out else set())
    for p in sorted(out.iterdir()):
        name = p.name
        if rundir.is_temp_name(name) or name == rundir.LOCK:
            continue
        if name == rundir.RESULTS_CSV and p.is_file():
            with open(p, "rb") as f:
                if f.readline().startswith(b"run,label,"):
                    continue
        elif name in own and p.is_file():
            continue
        elif p.is_file() and not p.is_symlink() and written_by_seqvg(p):
            continue  # a report seqvg wrote here before (compare's report.pdf, an earlier --report)
        elif p.is_dir() and not p.is_symlink() and (p / rundir.PROBE).is_file() \
                and all(q.name == rundir.PROBE or rundir.is_temp_name(q.name) for q in p.iterdir()):
            continue
        elif p.is_dir() and not p.is_symlink() and not rundir.foreign_entries(p):
            continue  # a seqvg run (of this study or not), or an empty directory
        elif rundir.is_pages_dir(p) and all(written_by_seqvg(q) for q in p.iterdir()):
            continue  # the pages of a report of this study (seqvg report OUT --png OUT/pages)
        if p.is_dir() and not p.is_symlink() and rundir.is_study_dir(p):
            raise rundir.NotARunError(f"{out / name}: another seqvg study's directory; a study's output directory "
                                      "holds its own runs, results.csv and results.png, not other studies: choose "
                                      "another --out")
        raise rundir.NotARunError(f"{out / name}: not written by seqvg; a study writes its runs, results.csv "
                                  "and results.png into its output directory, so it must hold only seqvg's "
                                  "files: choose another --out")


#: Seconds of one training step on one TensorFlow thread: a fixed part and a
#: part per unit of ``run_cost`` (evaluation and probes spread over the
#: steps). Fitted by least squares to the 18 runs of tasks/tour.toml (rnn,
#: lstm and gru, 4 to 120 timesteps; each run's wall_s over its steps_done;
#: 2026-11-30, idle 2-core machine, --workers 2, so one thread per run):
#: every run within 0.6-1.3x of its fit, 691 s fitted against 704 s measured
#: in all.
_STEP_SECONDS = 8.4e-3
_COST_SECONDS = 9.3e-7
#: Seconds a run costs beyond its steps (building and tracing the model,
#: saving it, the results): that study took 437 s of wall time with 2
#: workers, where its runs' wall_s add up to 704 s: (2 x 437 - 704) / 18.
_RUN_SECONDS = 9.4


def estimate_seconds(configs, workers: int = 1) -> float:
    """A rough wall time of training ``configs`` with ``workers`` processes.

    Runs at one thread each, as many at a time as there are workers and cores
    (see _STEP_SECONDS). With fewer workers than cores it errs high for the
    LSTM and GRU, whose ops use every thread of a run.
    """
    total = sum(_RUN_SECONDS + c.steps * _STEP_SECONDS + run_cost(c) * c.batch_size / 64 * _COST_SECONDS
                for c in configs)
    return total / max(1, min(workers, os.cpu_count() or 1))


def unfinished(study: Study) -> list[RunConfig]:
    """The configs of the runs not finished yet."""
    return [c for c, d in zip(study.configs, study.run_dirs()) if not rundir.is_finished(d, study.probe_only)]


def workload(study: Study, workers: int = 1) -> tuple[int, float]:
    """The runs still to do and roughly how many seconds they take with ``workers``."""
    import dataclasses

    todo = unfinished(study)
    if study.probe_only:  # a probe costs about as much as a few training steps
        todo = [dataclasses.replace(c, steps=3) for c in todo]
    return len(todo), estimate_seconds(todo, workers)


def run_cost(cfg: RunConfig) -> float:
    """Relative cost of a run: steps x timesteps x layers x gate matmul width."""
    gates = {"lstm": 4, "gru": 3}.get(cfg.cell, 1)
    return float(cfg.steps * cfg.seq_len * cfg.layers * gates * cfg.units)


def _run_parallel(study: Study, todo, workers: int, done: int, total: int, echo) -> None:
    import multiprocessing
    import signal
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    threads = max(1, (os.cpu_count() or 1) // workers)
    ctx = multiprocessing.get_context("spawn")  # no TensorFlow state forked into workers
    pids = ctx.SimpleQueue()  # each worker's pid, to pass Ctrl-C on to the runs
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init, initargs=(threads, pids))
    # Longest runs first, so no worker is left with a long run at the end.
    todo = sorted(todo, key=lambda item: -run_cost(item[0]))
    futures = {pool.submit(run_one, cfg, d, study.probe_only, False, study.command): d for cfg, d in todo}
    results = ResultsWriter(study)
    try:
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in finished:
                status = f.result()  # re-raises a worker's error here
                done += 1
                echo(f"[{done}/{total}] {futures[f].name}: {status}")
                results.run_finished()
    except BaseException:
        # Ctrl-C (or a failed run): stop the workers; each one's run writes
        # its 'interrupted' summary on SIGINT and resumes next time.
        for f in futures:
            f.cancel()
        while not pids.empty():
            try:
                os.kill(pids.get(), signal.SIGINT)
            except ProcessLookupError:  # a worker that has ended
                pass
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
