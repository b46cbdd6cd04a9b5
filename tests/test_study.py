"""Studies: specs in tasks/, seqvg run, seqvg sweep (resume after a kill, workers)."""

import csv
import dataclasses
import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from seqvg import rundir
from seqvg.cli import cli
from seqvg.report_text import summary_rows
from seqvg.study import SpecError, load_spec, parse_spec

TASKS = Path(__file__).resolve().parents[1] / "tasks"
SPECS = sorted(TASKS.glob("*.toml"))
#: --set overrides that shrink any spec to seconds.
TINY_SET = ["steps=4", "eval_every=2", "val_size=16", "units=4", "batch_size=8", "length=6", "probe_batch=4"]


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_shipped_specs_are_there():
    names = {p.stem for p in SPECS}
    assert {"demo", "remedies", "init-gradients", "tcn-table1", "assignment-1-vanishing",
            "assignment-2-gating"} <= names
    assert (TASKS / "README.md").exists()


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_spec_parses_with_its_comment_block(spec):
    study = load_spec(spec)
    assert study.configs and len(set(study.run_names)) == len(study.run_names)
    text = spec.read_text()
    # Each spec opens with a comment block saying what it shows and its time.
    assert text.startswith("#") and "Time" in text


def _fewer_seeds(study):
    """The study with each configuration's first seed, and the first
    configuration's second seed too (so seeds are still summarised): more
    seeds run the same code on other numbers, at 3 s of CPU a run."""
    seeds = sorted({c.seed for c in study.configs})
    first = dataclasses.replace(study.configs[0], seed=seeds[0])
    keep = [i for i, c in enumerate(study.configs)
            if c.seed == seeds[0] or (c.seed in seeds[1:2] and dataclasses.replace(c, seed=seeds[0]) == first)]
    return _subset(study, keep)


def _subset(study, keep):
    return dataclasses.replace(study, configs=tuple(study.configs[i] for i in keep),
                               run_names=tuple(study.run_names[i] for i in keep))


#: Options that are a number fed to one code path, not a path of their own:
#: two of their values still make a study vary along them (its labels and
#: figures, e.g. the gain figure of a probe-only study over recurrent_gain).
PARAMETERS = ("activation", "recurrent_gain")
#: Gate options, written into each cell's own bias layout (seqvg.models):
#: counted per cell, forget_bias and chrono as set or not (chrono's value
#: follows the length).
PER_CELL = ("gate_init", "forget_bias", "chrono")


def _covering(study):
    """The runs that cover every value of every option the study varies (a
    variant's options or a grid value, after _fewer_seeds), not the whole
    product: each kept run brings a value no run before it had, so a grid of
    tasks x cells runs each task and each cell, not every pair (PARAMETERS
    and PER_CELL say how those count). Every option value still trains (or
    probes), through the same study, results and report code."""
    study = _fewer_seeds(study)
    fields = [f.name for f in dataclasses.fields(study.configs[0]) if f.name != "seed"]
    value = lambda c, k: repr(getattr(c, k))  # noqa: E731 (dicts such as task_args are not hashable)
    varied = [k for k in fields if len({value(c, k) for c in study.configs}) > 1]
    first_two = {k: list(dict.fromkeys(value(c, k) for c in study.configs))[:2] for k in PARAMETERS}

    def feature(c, k):
        if k in PER_CELL:
            return k, c.cell, value(c, k) if k == "gate_init" else getattr(c, k) is not None
        return (k, value(c, k)) if k not in PARAMETERS or value(c, k) in first_two[k] else None

    seen, keep = set(), []
    for i, c in enumerate(study.configs):
        features = {feature(c, k) for k in varied} - {None}
        if not keep or not features <= seen or c.seed != study.configs[0].seed:
            keep.append(i)
            seen |= features
    return _subset(study, keep)


@pytest.fixture(scope="session")
def finished_runs(tmp_path_factory):
    """The directory where the tiny-budget spec tests keep each run they
    trained, shared by every pytest-xdist worker (see _run_once)."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER") is not None:  # each worker's basetemp; their parent is the session's
        base = base.parent
    base = base / "spec-runs"
    base.mkdir(exist_ok=True)
    return base


def _run_once(monkeypatch, done):
    """Patches study.run_one, for one test, to train each configuration once
    per session: one that any spec test already ran (after --set, demo's
    three runs are defaults', and most specs hold the same rnn) is copied
    from ``done``, not trained again; its numbers would be the same (same
    config and seed, same metrics: test_training.py::test_same_seed_same_metrics).
    The first to need a configuration trains it under a lock, the others
    wait for it. In-process runs only (a spec test runs one worker)."""
    from seqvg import study as study_module

    runner = sys.modules[study_module.run_study.__module__]  # where run_study finds run_one
    real = runner.run_one

    def run_one(cfg, path, probe_only=False, *args, **kwargs):
        kept = done / ("run-" + hashlib.sha256(repr((cfg, probe_only)).encode()).hexdigest()[:16])
        with open(f"{kept}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not Path(f"{kept}.done").exists():
                status = real(cfg, path, probe_only, *args, **kwargs)
                shutil.rmtree(kept, ignore_errors=True)  # a worker that died half-way
                shutil.copytree(path, kept)
                Path(f"{kept}.done").write_text(status)
                return status
        shutil.copytree(kept, path, dirs_exist_ok=True)
        return Path(f"{kept}.done").read_text()

    monkeypatch.setattr(runner, "run_one", run_one)


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_spec_runs_with_a_tiny_budget(spec, tmp_path, monkeypatch, finished_runs):
    """Every shipped spec, through `seqvg run` with --set overrides: every
    value of every option its grid and variants vary (see _covering)."""
    from seqvg import study as study_module

    if any(c.task in ("smnist", "psmnist") for c in load_spec(spec).configs):
        pytest.skip("MNIST reads 784 steps whatever --set length says; tests/test_new_tasks.py trains it on a "
                    "synthetic mnist.npz")
    real_load_spec = study_module.load_spec
    monkeypatch.setattr(study_module, "load_spec", lambda *a, **k: _covering(real_load_spec(*a, **k)))
    _run_once(monkeypatch, finished_runs)
    args = ["run", str(spec), "--out", str(tmp_path / "runs"), "--report", str(tmp_path / "r.pdf"), "-q"]
    for s in TINY_SET:
        args += ["--set", s]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    study = _covering(load_spec(spec, overrides={k: int(v) for k, v in (s.split("=") for s in TINY_SET)}))
    rows = _rows(tmp_path / "runs" / "results.csv")
    assert [r["run"] for r in rows] == list(study.run_names)
    if not study.probe_only:  # results.csv names each run as the report does
        runs = [rundir.load_run(tmp_path / "runs" / r["run"]) for r in rows]
        assert sorted(r["label"] for r in rows) == sorted(row[0] for row in summary_rows(runs))
        assert len({r["label"] for r in rows}) == len(rows)
    assert (tmp_path / "runs" / "results.png").stat().st_size > 0
    assert (tmp_path / "r.pdf").read_bytes().startswith(b"%PDF")


def test_demo_spec_is_what_make_demo_runs():
    study = load_spec(TASKS / "demo.toml")
    assert [c.cell for c in study.configs] == ["rnn", "lstm", "gru"]
    assert study.report == Path("reports/demo.pdf")
    assert "tasks/demo.toml" in (TASKS.parent / "Makefile").read_text()


@pytest.mark.parametrize("text, where", [
    ("cell = 'rnn'\nunits = 8\nbogus = 1\n", "s.toml:3: bogus: unknown option"),
    ("units = 'many'\n", "s.toml:1: units: expected int, got str"),
    ("[grid]\ncell = []\n", "s.toml:2: [grid] cell: expected a non-empty list"),
    ("[grid]\ncolour = ['red']\n", "s.toml:2: [grid] colour: unknown option"),
    ("seed = 3\n", "s.toml:1: seed: unknown option; the seed is set by 'seeds'"),
    # seed and seeds in [grid] or a [[variant]]: it said "unknown option" alone, of a `seqvg train` option
    ("[grid]\nseed = [0, 1]\n", "s.toml:2: [grid] seed: unknown option; the seed is set by 'seeds' at the top"),
    ("[grid]\nseeds = [0, 1]\n", "s.toml:2: [grid] seeds: unknown option; 'seeds' is the study's, set once at "
                                  "the top of the spec, not in [grid]"),
    ("[[variant]]\nlabel = 'a'\nseeds = 2\n", "s.toml:3: [variant] seeds: unknown option; 'seeds' is the "
                                                "study's, set once at the top of the spec, not in [variant]"),
    ("[[variant]]\nlabel = 'a'\nout = 'x'\n", "s.toml:3: [variant] out: unknown option; 'out' is the study's"),
    ("seeds = 0\n", "s.toml:1: seeds: must be at least 1"),
    ("cell = 'gru'\nforget_bias = 3.0\n", "s.toml:2: forget_bias: --forget-bias applies to --cell lstm only"),
    ("[grid]\nlength = [10, 1]\n", "s.toml:2: [grid] length: --length must be at least 2"),
    ("[[variant]]\nlabel = 'a'\n[[variant]]\ncell = 'gru'\n", "s.toml:3: [variant] label: each [[variant]] needs a label"),
    ("[[variant]]\nlabel = 'a'\n[[variant]]\nlabel = 'b'\nlr = 'fast'\n", "s.toml:5: [variant] lr: expected float"),
    ("units = \n", "s.toml: not valid TOML"),
    # a task_args value twice: it was a TypeError traceback (a dict is unhashable)
    ("task = 'temporal-order'\nlength = 20\n[grid]\ntask_args = [{symbols = 2}, {symbols = 2}]\n",
     "s.toml:4: [grid] task_args: {symbols = 2} given more than once"),
])
def test_spec_errors_name_file_line_and_key(text, where):
    with pytest.raises(SpecError) as e:
        parse_spec(text, "s.toml")
    assert str(e.value).startswith(where), str(e.value)


def test_spec_out_and_report_expand_the_home_directory(monkeypatch, tmp_path):
    """TOML has no shell: out = "~/runs/x" is the home directory's, not a directory named "~"."""
    monkeypatch.setenv("HOME", str(tmp_path))
    study = parse_spec("out = '~/runs/x'\nreport = '~/r.pdf'\n", "s.toml")
    assert study.out == tmp_path / "runs" / "x" and study.report == tmp_path / "r.pdf"


def test_spec_error_is_a_usage_error(tmp_path):
    spec = tmp_path / "bad.toml"
    spec.write_text("task = 'adding'\nunits = -3\n")
    result = CliRunner().invoke(cli, ["run", str(spec)])
    assert result.exit_code == 2
    assert "bad.toml:2: units: --units must be positive" in result.output
    assert "Traceback" not in result.output
    result = CliRunner().invoke(cli, ["run", str(tmp_path / "missing.toml")])
    assert result.exit_code == 2 and "no such spec file" in result.output
    result = CliRunner().invoke(cli, ["run", str(spec), "--set", "nonsense"])
    assert result.exit_code == 2 and "KEY=VALUE" in result.output


def test_grid_times_variants_times_seeds():
    study = parse_spec("task = 'adding'\nseeds = [3, 4]\n[grid]\nlength = [5, 9]\n"
                       "[[variant]]\nlabel = 'fb3'\ncell = 'lstm'\nforget_bias = 3.0\n"
                       "[[variant]]\nlabel = 'g'\ncell = 'gru'\n", "x.toml")
    assert study.run_names == ("fb3-T5-s3", "fb3-T5-s4", "fb3-T9-s3", "fb3-T9-s4",
                               "g-T5-s3", "g-T5-s4", "g-T9-s3", "g-T9-s4")
    assert [c.forget_bias for c in study.configs[:4]] == [3.0] * 4
    assert study.out == Path("runs/x") and study.report == Path("reports/x.pdf")


def test_a_variant_option_also_in_the_grid_is_refused_not_dropped(tmp_path):
    """[grid] clip = [1, 2] beside a [[variant]] clip = 3: the grid replaced
    the variant's 3 in every run, silently, and the runs named "c" had clip 1
    and 2. Now a spec error at the variant's line; --set clip=... (which
    removes the key from both) still runs."""
    text = "task = 'adding'\nlength = 10\n[grid]\nclip = [1.0, 2.0]\n[[variant]]\nlabel = 'c'\nclip = 3.0\n"
    with pytest.raises(SpecError, match=r"x.toml:7: \[variant\] clip: also in \[grid\], whose values would "
                                        r"replace variant c's clip = 3.0 in every run"):
        parse_spec(text, "x.toml")
    assert [c.clip for c in parse_spec(text, "x.toml", overrides={"clip": 0.5}).configs] == [0.5]
    spec = tmp_path / "x.toml"
    spec.write_text(text)
    result = CliRunner().invoke(cli, ["run", str(spec), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "also in [grid]" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


SWEEP = ["sweep", "--cells", "rnn,gru", "--lengths", "8,12", "--units", "8", "--steps", "60",
         "--eval-every", "10", "--val-size", "32", "--batch-size", "16", "--probe-batch", "8", "-q"]


@pytest.fixture(scope="module")
def parallel_sweep(tmp_path_factory):
    """The sweep run clean, on two worker processes: (its directory, its report)."""
    d = tmp_path_factory.mktemp("sweep")
    result = CliRunner().invoke(cli, SWEEP + ["--out", str(d / "par"), "--workers", "2", "--report", str(d / "s.pdf")])
    assert result.exit_code == 0, result.output
    return d / "par", d / "s.pdf"


def test_sweep_with_two_workers(parallel_sweep):
    out, report = parallel_sweep
    rows = _rows(out / "results.csv")
    assert [r["run"] for r in rows] == ["rnn-T8-s0", "rnn-T12-s0", "gru-T8-s0", "gru-T12-s0"]
    assert all(r["status"] == "completed" for r in rows)
    assert report.read_bytes().startswith(b"%PDF")


def test_sweep_killed_half_way_resumes_to_the_same_results(parallel_sweep, tmp_path):
    """Killed, then resumed in one process: the same results.csv as the clean
    two-worker sweep (which run ran where does not change a number)."""
    expected = _rows(parallel_sweep[0] / "results.csv")
    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "seqvg", *SWEEP, "--out", str(killed)]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Kill the whole process group once the second run has checkpointed.
    deadline = time.time() + 120
    while time.time() < deadline:
        if (killed / "rnn-T12-s0" / rundir.CHECKPOINTS / rundir.STATE).exists():
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = _rows(killed / "results.csv") if (killed / "results.csv").exists() else []
    assert len(partial) < 4
    result = CliRunner().invoke(cli, SWEEP + ["--out", str(killed)])
    assert result.exit_code == 0, result.output
    assert "already finished" in result.output
    assert _rows(killed / "results.csv") == expected


def test_sweep_bad_options():
    r = CliRunner().invoke(cli, ["sweep", "--lengths", "10,x"])
    assert r.exit_code == 2 and "--lengths" in r.output
    r = CliRunner().invoke(cli, ["sweep", "--cells", "rnn", "--lengths", "10", "--forget-bias", "3"])
    assert r.exit_code == 2 and "--forget-bias" in r.output
    r = CliRunner().invoke(cli, ["sweep", "--workers", "0", "--lengths", "5", "--steps", "1"])
    assert r.exit_code == 2
    r = CliRunner().invoke(cli, ["sweep", "--length", "50"])
    assert r.exit_code == 2 and "takes --lengths, not --length" in r.output


def test_a_probe_only_study_counts_whole_sequence_horizons_with_its_task_parameters(tmp_path, monkeypatch):
    """recall with pairs=2 reads 3*2 + T steps, not the default 3*8 + T: the
    results figure's caption compared each horizon with the default's length
    and said "0 of 1 probes keep it ... over the whole sequence"."""
    import seqvg.report_view

    said = []
    real = seqvg.report_view.caption
    monkeypatch.setattr(seqvg.report_view, "caption", lambda fig, text: (said.append(text), real(fig, text))[1])
    spec = tmp_path / "po.toml"
    spec.write_text('name = "po"\ntask = "recall"\nlength = 10\nunits = 8\nprobe_batch = 4\nprobe_only = true\n'
                    'cell = "lstm"\n[task_args]\npairs = 2\nvocab = 8\n')
    result = CliRunner().invoke(cli, ["run", str(spec), "--out", str(tmp_path / "po"), "--report",
                                      str(tmp_path / "po.pdf"), "-q"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(open(tmp_path / "po" / "results.csv")))
    assert rows[0]["h_horizon"] == "16"  # the whole sequence: 3 * 2 + 10
    assert any("1 of 1 probes keep it above 1e-3" in text for text in said), said


def test_results_figure_marks_diverged_runs_instead_of_plotting_their_loss(tmp_path, monkeypatch):
    """A ReLU RNN at --recurrent-gain 50 diverges at step 1. results.png
    plotted its last val loss (1e26 and more) on the log axis of final losses,
    so every other run sat in one corner, and said nothing of the divergence.
    Now a cross at the top with "1 diverged", and the caption counts it."""
    import seqvg.report_view
    import seqvg.results

    figs, said = [], []
    real_figure, real_caption = seqvg.results.results_figure, seqvg.report_view.caption
    monkeypatch.setattr(seqvg.results, "results_figure", lambda study, rows: figs.append(real_figure(study, rows))
                        or figs[-1])
    monkeypatch.setattr(seqvg.report_view, "caption", lambda fig, text: (said.append(text), real_caption(fig, text))[1])
    spec = tmp_path / "div.toml"
    spec.write_text('name = "div"\nlength = 30\nunits = 8\nsteps = 20\neval_every = 10\nval_size = 16\n'
                    'batch_size = 8\nprobe_batch = 4\ncell = "rnn"\nactivation = "relu"\nrecurrent_init = "identity"\n'
                    '[grid]\nrecurrent_gain = [1.0, 50.0]\n')
    result = CliRunner().invoke(cli, ["run", str(spec), "--out", str(tmp_path / "o"), "--report",
                                      str(tmp_path / "r.pdf"), "-q"])
    assert result.exit_code == 0, result.output
    assert "diverged" in (tmp_path / "o" / "results.csv").read_text()
    ax_loss = figs[-1].axes[1]
    assert ax_loss.get_ylim()[1] < 1e3, ax_loss.get_ylim()
    assert [line.get_marker() for line in ax_loss.get_lines()].count("X") == 1
    assert "1 diverged" in [t.get_text() for t in ax_loss.texts]
    assert any("1 diverged (a NaN/Inf loss: crosses at the top)" in text for text in said), said


def test_a_spec_report_naming_a_directory_is_a_spec_error(tmp_path, monkeypatch):
    """report = "runs/x" (an existing directory) in a spec stopped the study
    with "Error: runs/x: is a directory", exit 1 as if the system had failed,
    naming neither the spec nor the key; out = a file alike."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "x").mkdir(parents=True)
    (tmp_path / "s.toml").write_text('name = "x"\nreport = "runs/x"\nlength = 10\n')
    result = CliRunner().invoke(cli, ["run", "s.toml"])
    assert result.exit_code == 2, result.output
    assert "Error: s.toml:2: report: runs/x is a directory; report is the PDF to write, e.g. runs/x/x.pdf" \
        in result.output
    (tmp_path / "t.toml").write_text('name = "t"\nout = "s.toml"\nlength = 10\n')
    result = CliRunner().invoke(cli, ["run", "t.toml"])
    assert result.exit_code == 2 and "Error: t.toml:2: out: s.toml is a file; out is the directory of the runs" \
        in result.output, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs", "s.toml", "t.toml"]


def test_a_grid_of_task_args_with_the_defaults_names_that_run():
    """[grid] task_args = [{symbols = 3}, {}]: the defaults' run was named
    "-s0", a directory name that every command reads as an option."""
    study = parse_spec("task = 'temporal-order'\nlength = 20\n[grid]\ntask_args = [{symbols = 3}, {}]\n", "s.toml")
    assert study.run_names == ("symbols3-s0", "task-defaults-s0")


def test_results_figure_of_several_tasks_marks_diverged_runs():
    """The several-task results.png (a tour) plotted a diverged run's last
    val MSE, 8e+26, on the adding panel's log axis; now a counted cross."""
    from seqvg.results_figures import tasks_figure

    study = parse_spec("length = 10\n[grid]\ntask = ['adding', 'parity']\ncell = ['rnn', 'gru']\n", "t.toml")
    rows = []
    for name, cfg in zip(study.run_names, study.configs):
        bad = cfg.task == "adding" and cfg.cell == "rnn"
        rows.append({"run": name, "task": cfg.task, "task_args": "", "length": cfg.length, "cell": cfg.cell,
                     "solved": False, "solved_at_step": None, "status": "diverged" if bad else "completed",
                     "final_val_metric": 8e26 if bad else (0.2 if cfg.task == "adding" else 0.5)})
    fig = tasks_figure(study, rows)
    adding = next(ax for ax in fig.axes if ax.get_title().startswith("adding"))
    assert adding.get_ylim()[1] < 1e3, adding.get_ylim()
    assert [line.get_marker() for line in adding.get_lines()].count("X") == 1
    assert "1 diverged" in [t.get_text() for t in adding.texts]
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_grid_commands_do_not_list_the_singular_options_they_refuse():
    """`seqvg compare --help` listed --cell [default: lstm], and `sweep --help`
    --cell and --length [default: 100], which both refuse ("takes --cells,
    not --cell")."""
    help_compare = CliRunner().invoke(cli, ["compare", "--help"]).output
    help_sweep = CliRunner().invoke(cli, ["sweep", "--help"]).output
    assert "--cells" in help_compare and "--cell-arg" in help_compare and "--cell CELL" not in help_compare
    assert "--length" in help_compare  # compare's one length
    assert "--cell CELL" not in help_sweep and "-T, --length" not in help_sweep and "--lengths" in help_sweep
    result = CliRunner().invoke(cli, ["sweep", "--length", "50"])
    assert result.exit_code == 2 and "sweep takes --lengths, not --length" in result.output
