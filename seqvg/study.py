"""Studies: many runs from one spec or grid, run resumably (and in parallel).

    seqvg run tasks/demo.toml
    seqvg sweep --task adding --cells rnn,lstm,gru --lengths 50,100,200 --seeds 3 --workers 2

A spec (``tasks/*.toml``) names run options at the top level (the base of
every run), a ``[grid]`` of option lists whose product is run, optional
``[[variant]]`` tables (named option sets, crossed with the grid), the seeds,
and where the runs and the report go. Every run gets its own run directory
under OUT; finished runs are skipped and interrupted ones resumed, so the
same command after a crash or Ctrl-C finishes the work without repeating it.
OUT/results.csv (one row per run) and OUT/results.png are rewritten
atomically after every finished run.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from seqvg.config import ConfigError, RunConfig, cell_label, is_custom_cell
from seqvg.tasks import get_task

#: Spec keys that are not run options.
STUDY_KEYS = {"name", "description", "seeds", "probe_only", "out", "report", "grid", "variant", "expect"}
_FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}
#: Run options a spec may set (the seed comes from ``seeds``).
OPTION_KEYS = set(_FIELDS) - {"seed"}


class SpecError(ValueError):
    """A spec that cannot be run; the message names file, line and key."""


@dataclass(frozen=True)
class Study:
    """A parsed study: the runs' configs, their directory names and outputs."""

    name: str
    configs: tuple[RunConfig, ...]
    run_names: tuple[str, ...]
    out: Path
    report: Path | None
    probe_only: bool = False
    description: str = ""
    command: str | None = None  # recorded in every run's config.json
    expectations: tuple = ()  # seqvg.expect.Expectation: the spec's [expect] tables

    def run_dirs(self) -> list[Path]:
        """Every run's directory, in spec order."""
        return [self.out / n for n in self.run_names]


# -- parsing ------------------------------------------------------------------
def _line_of(text: str, key: str, table: str | None, index: int = 0) -> int | None:
    """1-based line of ``key = ...`` in ``[table]`` (or the top level), if found.

    ``index`` picks the n-th ``[[table]]`` for arrays of tables. A key missing
    from a table points at the table's header line instead.
    """
    current, seen, header_line = None, -1, None
    for i, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        header = re.match(r"^\[\[?\s*([A-Za-z0-9_.-]+)\s*\]\]?", stripped)
        if header:
            current = header.group(1)
            if current == table:
                seen = seen + 1 if stripped.startswith("[[") else 0
                if seen == index:
                    header_line = i
            continue
        if current == table and (table is None or seen == index) and re.match(rf"^{re.escape(key)}\s*=", stripped):
            return i
    return header_line


class _Where:
    """Builds 'file:line: key' prefixes for messages."""

    def __init__(self, path: str, text: str):
        self.path, self.text = path, text

    def __call__(self, key: str, table: str | None = None, index: int = 0) -> str:
        line = _line_of(self.text, key, table, index)
        shown = f"[{table}] {key}" if table else key
        return f"{self.path}:{line}: {shown}" if line else f"{self.path}: {shown}"


def _check_type(name: str, value, where: str):
    """Checks a TOML value against the RunConfig field's type."""
    kind = str(_FIELDS[name].type)
    base = kind.split("|")[0].strip()
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "str": isinstance(value, str),
        "bool": isinstance(value, bool),
        "dict": isinstance(value, dict),  # task_args: a [task_args] table or an inline {key = value}
    }[base]
    if not ok:
        raise SpecError(f"{where}: expected {base}, got {type(value).__name__} {value!r}")
    return float(value) if base == "float" else value


def _options(table: dict, where, table_name: str | None, index: int = 0, skip=()) -> dict:
    out = {}
    for key, value in table.items():
        if key in skip:
            continue
        if key not in OPTION_KEYS:
            hint = "; the seed is set by 'seeds'" if key == "seed" else ""
            raise SpecError(f"{where(key, table_name, index)}: unknown option{hint}")
        out[key] = _check_type(key, value, where(key, table_name, index))
    return out


def _seeds(value, where) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise SpecError(f"{where('seeds')}: must be at least 1, got {value}")
        return list(range(value))
    if isinstance(value, list) and value and all(isinstance(s, int) and not isinstance(s, bool) for s in value):
        return list(value)
    raise SpecError(f"{where('seeds')}: expected a count (int) or a non-empty list of ints, got {value!r}")


def _value_name(key: str, value) -> str:
    if key == "cell":
        return cell_label(str(value))
    if key == "length":
        return f"T{value}"
    if isinstance(value, dict):  # task_args
        return "-".join(f"{k}{v}" for k, v in sorted(value.items()))
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return f"{key.replace('_', '-')}{text}"


def expand(base: dict, grid: dict[str, list], variants: list[tuple[str, dict]], seeds: list[int]):
    """The product variants x grid x seeds as (run name, RunConfig) pairs.

    Raises:
        ConfigError: a combination of options is invalid (names the option).
    """
    keys = list(grid)
    out = []
    for label, opts in variants or [("", {})]:
        for values in itertools.product(*(grid[k] for k in keys)):
            for seed in seeds:
                d = {**base, **opts, **dict(zip(keys, values)), "seed": seed}
                if "cell" in keys and not is_custom_cell(d["cell"]):
                    d.pop("cell_args", None)  # a grid of cells: the arguments are the custom cells'
                cfg = RunConfig(**d).resolved()
                parts = ([label] if label else []) + [_value_name(k, v) for k, v in zip(keys, values)]
                out.append(("-".join(parts + [f"s{seed}"]), cfg))
    return out


def parse_spec(text: str, path: str = "<spec>", overrides: dict | None = None, out: Path | None = None,
               report: Path | None = None) -> Study:
    """Parses a spec's text; ``overrides`` replace options in every run.

    Raises:
        SpecError: with file, line and key.
    """
    where = _Where(path, text)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{path}: not valid TOML ({e})") from None
    name = doc.get("name", Path(path).stem)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise SpecError(f"{where('name')}: expected a simple name (letters, digits, _ . -), got {name!r}")
    base = _options({k: v for k, v in doc.items() if k not in STUDY_KEYS}, where, None)
    grid_doc = doc.get("grid", {})
    if not isinstance(grid_doc, dict):
        raise SpecError(f"{where('grid')}: expected a table [grid]")
    grid = {}
    for key, values in grid_doc.items():
        if key not in OPTION_KEYS:
            raise SpecError(f"{where(key, 'grid')}: unknown option")
        if not isinstance(values, list) or not values:
            raise SpecError(f"{where(key, 'grid')}: expected a non-empty list of values, got {values!r}")
        grid[key] = [_check_type(key, v, where(key, "grid")) for v in values]
    variants = []
    raw_variants = doc.get("variant", [])
    if not isinstance(raw_variants, list):
        raise SpecError(f"{where('variant')}: expected [[variant]] tables")
    for i, v in enumerate(raw_variants):
        label = v.get("label")
        if not isinstance(label, str) or not re.fullmatch(r"[A-Za-z0-9_.+=-]+", label):
            raise SpecError(f"{where('label', 'variant', i)}: each [[variant]] needs a label "
                            f"(letters, digits, _ . + = -), got {label!r}")
        variants.append((label, _options(v, where, "variant", i, skip=("label",))))
    labels = [label for label, _ in variants]
    if len(set(labels)) != len(labels):
        raise SpecError(f"{path}: [[variant]] labels must differ, got {labels}")
    # A cell file's path is relative to the spec file.
    base_dir = Path(path).parent
    for opts, table, index in [(base, None, 0), *((o, "variant", i) for i, (_, o) in enumerate(variants))]:
        if isinstance(opts.get("cell"), str) and is_custom_cell(opts["cell"]):
            opts["cell"] = _spec_cell(opts["cell"], base_dir, where("cell", table, index))
    if "cell" in grid:
        grid["cell"] = [_spec_cell(c, base_dir, where("cell", "grid")) if is_custom_cell(c) else c
                        for c in grid["cell"]]
    seeds = _seeds(doc.get("seeds", 1), where)
    probe_only = doc.get("probe_only", False)
    if not isinstance(probe_only, bool):
        raise SpecError(f"{where('probe_only')}: expected true or false")
    for key, value in (overrides or {}).items():
        if key not in OPTION_KEYS:
            raise SpecError(f"--set {key}: unknown option")
        value = _check_type(key, value, f"--set {key}")
        base[key] = value
        grid.pop(key, None)
        for _, opts in variants:
            opts.pop(key, None)
    try:
        runs = expand(base, grid, variants, seeds)
    except ConfigError as e:
        key = e.option or ""
        loc = where(key, "grid") if key in grid else where(key)
        for i, (_, opts) in enumerate(variants):
            if key not in grid and key in opts:
                try:
                    expand(base, grid, [variants[i]], seeds)
                except ConfigError:
                    loc = where(key, "variant", i)  # the first [[variant]] that fails
                    break
        if key in (overrides or {}):
            loc = f"--set {key}"
        raise SpecError(f"{loc}: {e}") from None
    out_dir = out or Path(doc.get("out", f"runs/{name}"))
    report_path = report or Path(doc.get("report", f"reports/{name}.pdf"))
    from seqvg.expect import ExpectError, parse_expect, points

    expectations = ()
    if not overrides:  # they describe the spec's own runs; --set makes other runs (and points)
        try:
            expectations = parse_expect(doc.get("expect"), points([n for n, _ in runs], [c.seed for _, c in runs]),
                                        probe_only, where)
        except ExpectError as e:
            raise SpecError(str(e)) from None
    return Study(name, tuple(c for _, c in runs), tuple(n for n, _ in runs), Path(out_dir), Path(report_path),
                 probe_only, str(doc.get("description", "")), expectations=expectations)


def _spec_cell(cell: str, base_dir: Path, where: str) -> str:
    from seqvg.config import absolute_cell_spec

    try:
        return absolute_cell_spec(cell, base_dir)
    except ConfigError as e:
        raise SpecError(f"{where}: {e}") from None


def load_spec(path: str | os.PathLike, **kwargs) -> Study:
    """Reads and parses a spec file (see ``parse_spec``)."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise SpecError(f"{path}: no such spec file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"{path}: cannot read ({e})") from None
    return parse_spec(text, str(path), **kwargs)


# -- running --------------------------------------------------------------------
PROBE_FILE = "probe.json"


def _finished(path: Path, probe_only: bool) -> bool:
    from seqvg import rundir

    if probe_only:
        return (path / PROBE_FILE).exists()
    try:
        return rundir.read_json(path / rundir.SUMMARY).get("status") in ("completed", "diverged")
    except rundir.RunDirError:
        return False


def _worker_init(threads: int) -> None:
    """Caps a worker's TensorFlow threads so the workers share the cores."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    from seqvg.tfsetup import import_tensorflow_quietly

    import_tensorflow_quietly()
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def run_one(cfg: RunConfig, path: Path, probe_only: bool = False, progress: bool = False,
            command: str | None = None) -> str:
    """Trains (or, probe-only, probes at init) one run of a study; returns its status.

    A started run is resumed; a directory holding a run with other options
    is refused (RunExistsError) rather than overwritten. ``command`` (the
    study's command line) goes into the run's config.json.
    """
    from seqvg import rundir
    from seqvg.training import train

    path = Path(path)
    if probe_only:
        from seqvg.probe import probe_untrained

        result, _ = probe_untrained(cfg)
        rundir.write_json(path / PROBE_FILE, {"config": cfg.to_dict(), **result.to_json(),
                                              "c_summary": _c_summary(result)})
        return "probed"
    _check_same(cfg, path, probe_only=False)
    return train(cfg, path, resume=(path / rundir.CONFIG).exists(), progress=progress, command=command)["status"]


def _check_same(cfg: RunConfig, path: Path, probe_only: bool) -> None:
    """Refuses a directory that holds a run (or probe) of other options.

    Raises:
        RunExistsError: naming the directory.
    """
    from seqvg import rundir
    from seqvg.training import RunExistsError

    source = path / (PROBE_FILE if probe_only else rundir.CONFIG)
    if path.exists():
        rundir.check_not_in_use(path)
    if not source.exists():
        if not probe_only and rundir.has_content(path):
            rundir.check_own_run(path)
        return
    try:
        held = RunConfig.from_dict(rundir.read_json(source)["config"])
    except (KeyError, TypeError, ConfigError) as e:
        raise rundir.RunDirError(f"{source}: corrupt ({e})") from None
    if held != cfg:
        raise RunExistsError(f"{path}: holds a run with other options; use another output directory")


def _c_summary(result) -> dict | None:
    from seqvg.decay import decay_summary

    return None if result.c is None else decay_summary(result.c[0])


def run_study(study: Study, workers: int = 1, progress: bool = True, echo=print, backend=None) -> list[Path]:
    """Runs every unfinished run of a study, then writes its results.

    Args:
        study: the parsed study.
        workers: parallel processes; each gets cores/workers TensorFlow
            threads so that together they use the cores without
            oversubscribing them. 1 runs in this process.
        progress: per-run progress bars (only with one worker).
        echo: where one line per finished run goes.
        backend: where the runs go instead of this machine's processes, e.g.
            ``seqvg.ray_backend.RayBackend()`` (its ``run`` takes the runs to do).

    Returns:
        The run directories in spec order.
    """
    dirs = study.run_dirs()
    check_study_dir(study)
    for cfg, d in zip(study.configs, dirs):
        _check_same(cfg, d, study.probe_only)
    todo = [(cfg, d) for cfg, d in zip(study.configs, dirs) if not _finished(d, study.probe_only)]
    done = len(dirs) - len(todo)
    if done:
        echo(f"{done} of {len(dirs)} runs already finished in {study.out}; {len(todo)} to run")
    study.out.mkdir(parents=True, exist_ok=True)
    if backend is not None:
        if todo:
            backend.run(study, todo, done, len(dirs), echo)
    elif workers <= 1 or len(todo) <= 1:
        for cfg, d in todo:
            status = run_one(cfg, d, study.probe_only, progress, study.command)
            done += 1
            echo(f"[{done}/{len(dirs)}] {d.name}: {status}")
            write_results(study)
    else:
        _run_parallel(study, todo, workers, done, len(dirs), echo)
    write_results(study)
    return dirs


def check_study_dir(study: Study) -> None:
    """Refuses an output directory holding anything a seqvg study does not write.

    A study writes run directories, results.csv, results.png and (compare)
    report.pdf into OUT; a user's own file there could be overwritten, so a
    directory holding one is refused before any work.

    Raises:
        rundir.NotARunError: naming the first foreign entry.
    """
    from seqvg import rundir

    out = study.out
    if not out.exists():
        return
    if not out.is_dir():
        raise rundir.NotARunError(f"{out}: exists and is not a directory")
    own = {"results.png"} | ({study.report.name} if study.report and study.report.parent == out else set())
    for p in sorted(out.iterdir()):
        name = p.name
        if rundir.is_temp_name(name) or name == rundir.LOCK:
            continue
        if name == "results.csv" and p.is_file():
            with open(p, "rb") as f:
                if f.readline().startswith(b"run,label,"):
                    continue
        elif name in own and p.is_file():
            continue
        elif p.is_dir() and not p.is_symlink() and (p / PROBE_FILE).is_file() \
                and all(q.name == PROBE_FILE or rundir.is_temp_name(q.name) for q in p.iterdir()):
            continue
        elif p.is_dir() and not p.is_symlink() and not rundir.foreign_entries(p):
            continue  # a seqvg run (of this study or not), or an empty directory
        raise rundir.NotARunError(f"{out / name}: not written by seqvg; a study writes its runs, results.csv "
                                  "and results.png into its output directory, so it must hold only seqvg's "
                                  "files: choose another --out")


#: Training speed that turns ``_cost`` into seconds: seqvg's LSTM at T=200
#: (cost 200 x 4 gates x 128 units per step) trains 27.6 steps/s on 2 cores
#: (README, train_speed); evaluation and probes add about a third.
_COST_PER_SECOND = 200 * 4 * 128 * 27.6 / 1.33


def estimate_seconds(configs, workers: int = 1) -> float:
    """A rough wall time of training ``configs`` on this kind of machine."""
    total = sum(_cost(c) * c.batch_size / 64 for c in configs) / _COST_PER_SECOND
    return total / max(1, workers)


def unfinished(study: Study) -> list[RunConfig]:
    """The configs of the runs not finished yet."""
    return [c for c, d in zip(study.configs, study.run_dirs()) if not _finished(d, study.probe_only)]


def _cost(cfg: RunConfig) -> float:
    """Relative cost of a run: steps x timesteps x layers x gate matmul width."""
    gates = {"lstm": 4, "gru": 3}.get(cfg.cell, 1)
    return float(cfg.steps * cfg.seq_len * cfg.layers * gates * cfg.units)


def _run_parallel(study: Study, todo, workers: int, done: int, total: int, echo) -> None:
    import multiprocessing
    import signal
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    threads = max(1, (os.cpu_count() or 1) // workers)
    ctx = multiprocessing.get_context("spawn")  # no TensorFlow state forked into workers
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init, initargs=(threads,))
    # Longest runs first, so no worker is left with a long run at the end.
    todo = sorted(todo, key=lambda item: -_cost(item[0]))
    futures = {pool.submit(run_one, cfg, d, study.probe_only, False, study.command): d for cfg, d in todo}
    try:
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in finished:
                status = f.result()  # re-raises a worker's error here
                done += 1
                echo(f"[{done}/{total}] {futures[f].name}: {status}")
                write_results(study)
    except BaseException:
        # Ctrl-C (or a failed run): stop the workers; each one's run writes
        # its 'interrupted' summary on SIGINT and resumes next time.
        for f in futures:
            f.cancel()
        for proc in list(getattr(pool, "_processes", {}).values()):
            if proc.is_alive():
                os.kill(proc.pid, signal.SIGINT)
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


# -- results --------------------------------------------------------------------
OPTION_COLUMNS = ["task", "task_args", "length", "cell", "units", "layers", "activation", "recurrent_init", "recurrent_gain",
                  "gate_init", "forget_bias", "chrono", "layer_norm", "batch_norm", "residual",
                  "clip", "optimizer", "lr", "batch_size", "steps", "seed"]
DECAY = ("rate_per_100", "horizon", "ratio", "underflow")
TRAIN_COLUMNS = ["run", "label", *OPTION_COLUMNS, "status", "solved", "solved_at_step", "steps_done",
                 "final_val_loss", "final_val_metric", "metric_name", "baseline", "baseline_metric",
                 "solved_criterion",
                 *[f"init_{k}" for k in DECAY], *[f"final_{k}" for k in DECAY]]
PROBE_COLUMNS = ["run", "label", *OPTION_COLUMNS, "loss", *[f"h_{k}" for k in DECAY], *[f"c_{k}" for k in DECAY]]


def study_labels(study: Study) -> list:
    """Every run's RunLabel (seqvg.labels), computed over all the study's runs:
    the names its report gives them."""
    from seqvg.labels import run_labels

    return run_labels([c.to_dict() for c in study.configs], list(study.run_names))


def label_of(study: Study, index: int) -> str:
    """A run's label as the report names it, e.g. "rnn T=50 s1"."""
    return study_labels(study)[index].label


def results_rows(study: Study) -> list[dict]:
    """One row per finished run, in spec order (no wall times: reruns compare equal)."""
    from seqvg import rundir

    rows = []
    labels = study_labels(study)
    for i, (cfg, d) in enumerate(zip(study.configs, study.run_dirs())):
        if not _finished(d, study.probe_only):
            continue
        row = {"run": d.name, "label": labels[i].label, **{k: getattr(cfg, k) for k in OPTION_COLUMNS}}
        row["task_args"] = " ".join(f"{k}={v}" for k, v in sorted(cfg.task_args.items()))
        if study.probe_only:
            p = rundir.read_json(d / PROBE_FILE)
            row["loss"] = p["loss"]
            for k in DECAY:
                row[f"h_{k}"] = p["summary"][k]
                row[f"c_{k}"] = (p.get("c_summary") or {}).get(k)
        else:
            s = rundir.read_json(d / rundir.SUMMARY)
            row.update(status=s["status"], solved=s["solved"], solved_at_step=s["solved_at_step"],
                       steps_done=s["steps_done"], final_val_loss=s["final"]["val_loss"],
                       final_val_metric=s["final"]["val_metric"], metric_name=s["metric_name"],
                       baseline=s["baseline"])
            task = get_task(cfg.task, cfg.task_args)
            row.update(baseline_metric=task.baseline_metric(cfg.length), solved_criterion=task.criterion)
            for when in ("init", "final"):
                for k in DECAY:
                    row[f"{when}_{k}"] = (s["decay"].get(when) or {}).get(k)
        rows.append(row)
    return rows


def write_results(study: Study) -> list[dict]:
    """Atomically (re)writes OUT/results.csv and OUT/results.png."""
    from seqvg import rundir

    rows = results_rows(study)
    columns = PROBE_COLUMNS if study.probe_only else TRAIN_COLUMNS
    rundir.write_csv(study.out / "results.csv", columns, rows)
    if rows:
        fig = results_figure(study, rows)
        import io

        import matplotlib.pyplot as plt

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
        plt.close(fig)
        rundir.atomic_write_bytes(study.out / "results.png", buf.getvalue())
    return rows


def _series_of(study: Study) -> dict[str, str]:
    """Run name -> the curve it belongs to across lengths: its label without
    the length, the other numeric options and the seed ("rnn", "lstm fb=3")."""
    series = {}
    for name, lab in zip(study.run_names, study_labels(study)):
        parts = [p for p in lab.group.split(" ") if not p.startswith("T=")] if "length" not in lab.axes \
            else None
        series[name] = lab.series if parts is None else " ".join(parts)
    return series


def _groups(study: Study, rows: list[dict]) -> dict[str, list[dict]]:
    series = _series_of(study)
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(series[row["run"]] or row["cell"], []).append(row)
    return groups


def results_figure(study: Study, rows: list[dict]):
    """Training studies: solved fraction and median final loss against length, per
    cell/variant. Probe-only studies: decay rate and horizon against length.

    With one length only, the x axis lists the cells/variants instead.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.ticker import NullLocator

    from seqvg.report import STYLES

    def median(values):
        values = [v for v in values if v is not None and np.isfinite(v)]
        return float(np.median(values)) if values else np.nan

    if study.probe_only and len({r["recurrent_gain"] for r in rows}) > 1:
        return _recurrent_gain_figure(study, rows)
    groups = _groups(study, rows)
    all_lengths = sorted({r["length"] for r in rows})
    by_label = len(all_lengths) == 1
    if study.probe_only:
        left, right = "h_rate_per_100", "h_horizon"
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.8), constrained_layout=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, group) in enumerate(groups.items()):
        lengths = sorted({r["length"] for r in group})
        style = {"color": colors[i % len(colors)], "linestyle": STYLES[i % len(STYLES)],
                 "marker": "os^vD<>"[i % 7], "label": label}
        at = {t: [r for r in group if r["length"] == t] for t in lengths}
        xs = [i] if by_label else lengths
        if study.probe_only:
            y1 = [median([r[left] for r in at[t]]) for t in lengths]
            y2 = [median([r[right] for r in at[t]]) for t in lengths]
        else:
            y1 = [float(np.mean([r["solved"] in (True, "True") for r in at[t]])) for t in lengths]
            y2 = [median([r["final_val_loss"] for r in at[t]]) for t in lengths]
        ax1.plot(xs, y1, **style)
        ax2.plot(xs, y2, **style)
        if not study.probe_only:  # the seeds' spread around the median
            for x, t in zip(xs, lengths):
                seeds = [r["final_val_loss"] for r in at[t] if r["final_val_loss"] is not None]
                ax2.plot([x] * len(seeds), seeds, marker=style["marker"], color=style["color"], markersize=3.5,
                         alpha=0.55, linestyle="none")
        if study.probe_only:
            for x, t, y in zip(xs, lengths, y2):
                under = sum(r["h_underflow"] for r in at[t])
                if under:
                    ax2.annotate(f"{under} zeros", (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    where = f" (T = {all_lengths[0]})" if by_label else " against length"
    if study.probe_only:
        ax1.axhline(0, color="0.6", lw=0.8)
        ax1.set(ylabel="decades per 100 steps back (negative = vanishing)", title="Gradient decay rate at init" + where)
        ax2.set(ylabel="steps back until g_t < 1e-3 g_{T-1}", title="Gradient horizon at init" + where)
    else:
        ax1.set(ylabel="fraction of seeds solved", ylim=(-0.05, 1.05), title="Solved fraction" + where)
        ax2.set(ylabel="final validation loss (line: median, dots: seeds)", title="Final loss" + where)
        baselines = sorted({(r["length"], r["baseline"]) for r in rows if r.get("baseline") is not None})
        if baselines and len({b for _, b in baselines}) == 1:
            ax2.axhline(baselines[0][1], color="0.4", ls=":", lw=1)
            ax2.annotate("baseline", (0, baselines[0][1]), xycoords=("axes fraction", "data"), fontsize=7,
                         xytext=(3, 3), textcoords="offset points", color="0.3")
        finite = [r["final_val_loss"] for r in rows if r["final_val_loss"] is not None]
        if finite and min(finite) > 0:
            ax2.set_yscale("log")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        if by_label:
            ax.set_xticks(range(len(groups)), list(groups), rotation=30, ha="right")
            ax.set_xlim(-0.6, len(groups) - 0.4)
        else:
            ax.set_xlabel("length T")
            if len(all_lengths) > 1:
                ax.set_xscale("log")
                ax.set_xticks(all_lengths, [str(t) for t in all_lengths])
                ax.xaxis.set_minor_locator(NullLocator())  # not y: its labels may all be minor
    if not by_label:
        ax2.legend(fontsize=8, loc="best")
    fig.suptitle(f"{study.name}: {len(rows)} runs", fontsize=11)
    _results_caption(fig, study, rows)
    return fig


def _results_caption(fig, study: Study, rows: list[dict]) -> None:
    """The results figure's "What to look for" line, with the study's counts."""
    from seqvg.report import _caption
    from seqvg.tasks import get_task

    fig.get_layout_engine().set(rect=(0, 0.07, 1, 0.93))
    if study.probe_only:
        whole = sum((r["h_horizon"] or 0) >= get_task(r["task"]).seq_len(r["length"]) for r in rows)
        _caption(fig, "where the decay rate (left) drops below 0 the gradient shrinks on its way back; "
                 f"{whole} of {len(rows)} probes keep it above 1e-3 of the last step's over the whole sequence.")
    else:
        solved = sum(r["solved"] in (True, "True") for r in rows)
        _caption(fig, f"which cells and lengths solve the task: {solved} of {len(rows)} runs did; the final loss "
                 "(right) against the trivial baseline shows how close the others came.")


def _recurrent_gain_figure(study: Study, rows: list[dict]):
    """Probe-only studies over --recurrent-gain: g_0/g_{T-1} against G (seqvg.report)."""
    from seqvg.report import recurrent_gain_figure

    series = _series_of(study)
    lengths = sorted({r["length"] for r in rows})
    def name(r):  # the curve: the run's series without its gain
        words = [w for w in (series[r["run"]] or r["cell"]).split() if not w.startswith("G=")]
        act = r["activation"] if r["activation"] and r["activation"] not in words else None
        return " ".join(words + ([act] if act else []) + ([f"T={r['length']}"] if len(lengths) > 1 else []))

    points = [{"series": name(r),
               "gain": r["recurrent_gain"], "ratio": r["h_ratio"], "seed": r["seed"]} for r in rows]
    return recurrent_gain_figure(points, lengths[-1], f"{study.name}: {len(rows)} probes at init, T = "
                                 + ", ".join(str(t) for t in lengths))


def probe_curves_figure(study: Study):
    """Probe-only studies: g_t / g_{T-1} against steps back, one panel per length."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from seqvg import rundir
    from seqvg.report import STYLES

    series = _series_of(study)
    runs = [(series[d.name] or cfg.cell, cfg, d) for cfg, d in zip(study.configs, study.run_dirs())
            if cfg.seed == study.configs[0].seed and _finished(d, True)]
    lengths = sorted({cfg.length for _, cfg, _ in runs})
    fig, axes = plt.subplots(1, max(1, len(lengths)), figsize=(12, 4.6), layout="constrained", squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    curves = {}
    for label, cfg, d in runs:
        g = np.asarray(rundir.read_json(d / PROBE_FILE)["h"][0], dtype=np.float64)
        curves[(label, cfg.length)] = g / g[-1] if g[-1] > 0 else g
    positive = [c[c > 0].min() for c in curves.values() if (c > 0).any()]
    floor = min(positive) / 10 if positive else 1e-30
    groups = list(dict.fromkeys(label for label, _, _ in runs))
    for ax, length in zip(axes[0], lengths):
        for (label, t), n in curves.items():
            if t != length:
                continue
            k = groups.index(label)
            back = np.arange(len(n))[::-1]
            zero = n == 0
            style = {"color": colors[k % len(colors)], "linestyle": STYLES[k % len(STYLES)]}
            ax.plot(back, np.where(zero, np.nan, n), label=groups[k], **style)
            if zero.any():
                ax.plot(back[zero], np.full(zero.sum(), floor), "x", ms=3, color=style["color"])
        ax.set_yscale("log")
        ax.axhline(floor, color="0.7", lw=0.6)
        ax.text(0, floor, " underflow (exact 0)", fontsize=7, va="bottom", color="0.4")
        ax.set(xlabel="steps back from the last step", title=f"T = {length}")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("||dL/dh_t|| / ||dL/dh_{T-1}||")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="outside right upper")
    fig.suptitle(f"{study.name}: gradient norm at init against steps back (seed {study.configs[0].seed})",
                 fontsize=11)
    from seqvg.report import _caption

    fig.get_layout_engine().set(rect=(0, 0.07, 1, 0.93))
    ends = sorted((float(c[0]), label + (f" T={t}" if len(lengths) > 1 else "")) for (label, t), c in curves.items()
                  if c[0] > 0)
    spread = (f"; g_0/g_(T-1) from {ends[0][0]:.1g} ({ends[0][1]}) to {ends[-1][0]:.1g} ({ends[-1][1]})"
              if len(ends) > 1 else "")
    _caption(fig, "the further a curve falls from 1 at the last step, the less gradient reaches the first input"
             + spread + ".")
    return fig


def expectation_table(study: Study) -> tuple[list[str], list[list[str]]]:
    """The spec's expected outcomes against the measured ones (seqvg.expect):
    the table that ``seqvg run --check`` prints and the report's "Expected
    and measured" page shows; its last column is OK or DEVIATES."""
    from seqvg.expect import check, check_table

    rows = results_rows(study)
    metric = next((r["metric_name"] for r in rows if r.get("metric_name")), "metric")
    return check_table(check(study.expectations, rows, study.probe_only), metric)


def write_study_report(study: Study) -> Path:
    """Writes the study's PDF: the runs' report pages (training studies) and
    the results figure; for probe-only studies the curves and the results.
    A spec with [expect] tables adds the "Expected and measured" page last."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    from seqvg import rundir

    rows = results_rows(study)
    expected = []
    if study.expectations:
        from seqvg.expect import expected_figures

        expected = expected_figures(*expectation_table(study), study.name)
    if study.probe_only:
        buf = io.BytesIO()
        metadata = {"Title": f"seqvg study {study.name}", "Creator": "seqvg", "Producer": "seqvg",
                    "CreationDate": None}
        with PdfPages(buf, metadata=metadata) as pdf:
            for fig in (probe_curves_figure(study), results_figure(study, rows), *(f for _, f in expected)):
                pdf.savefig(fig)
                plt.close(fig)
        rundir.atomic_write_bytes(study.report, buf.getvalue())
    else:
        from seqvg.report import write_report

        runs = [rundir.load_run(d) for d in study.run_dirs()]
        # The report's own Study page plots the outcome against what varies.
        write_report(runs, study.report, extra_figures=expected)
    return study.report
