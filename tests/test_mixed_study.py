"""A study over several tasks, as a user meets it: `seqvg run`'s console
summary, its results.png, and `seqvg report` of its directory (or a shell
glob over it, which also matches results.csv and results.png).

The study's two runs are the session's shared tiny runs, copied into place,
so `seqvg run` finds them finished and trains nothing.
"""

import matplotlib.pyplot as plt
import pytest
from click.testing import CliRunner

from seqvg.cli import cli
from seqvg.results import results_rows
from seqvg.results_figures import results_figure
from seqvg.study import load_spec

from conftest import TINY, copy_run

SPEC = "\n".join(['name = "mixed"', "seeds = 1", 'cell = "rnn"', *(f"{k} = {v}" for k, v in TINY.items()),
                  "", "[grid]", 'task = ["adding", "parity"]', ""])


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory, tiny_run):
    """(the spec, its OUT, what `seqvg run` printed, the PDF it wrote) of the finished two-task study."""
    d = tmp_path_factory.mktemp("mixed")
    spec = d / "mixed.toml"
    spec.write_text(SPEC)
    out = d / "runs"
    study = load_spec(spec, out=out)
    for cfg, run in zip(study.configs, study.run_dirs()):
        copy_run(tiny_run(task=cfg.task, cell="rnn"), run)
    r = CliRunner().invoke(cli, ["run", str(spec), "--out", str(out), "--report", str(d / "run.pdf"), "-q"])
    assert r.exit_code == 0, r.output
    assert "2 of 2 runs already finished" in r.output  # nothing trained here
    return spec, out, r.stdout, d / "run.pdf"


def test_run_summary_names_each_row_s_own_metric(study_dir):
    _, _, stdout, _ = study_dir
    lines = stdout.splitlines()
    header = next(line for line in lines if line.startswith("run "))
    assert "val metric" in header and "val mse" not in header and "val acc" not in header
    rows = {line.split()[0]: line for line in lines[lines.index(header) + 1:] if line.startswith(("adding", "parity"))}
    assert set(rows) == {"adding", "parity"}
    assert " mse " in rows["adding"] and " acc " not in rows["adding"]
    assert " acc " in rows["parity"] and " mse " not in rows["parity"]


def test_results_figure_of_several_tasks_has_a_panel_per_task_in_its_metric(study_dir):
    spec, out, _, _ = study_dir
    study = load_spec(spec, out=out)
    fig = results_figure(study, results_rows(study))
    panels = [ax for ax in fig.axes if ax.get_visible()]
    titles = [ax.get_title() for ax in panels]
    assert [t.splitlines()[0] for t in titles] == ["adding", "parity"], titles
    for title in titles:  # the settings the task's runs share, lr among them
        assert "T=10" in title and "lr=0.001" in title and "30 steps" in title, title
    assert [ax.get_ylabel() for ax in panels] == ["final validation mse", "final validation acc"]
    assert [[t.get_text() for t in ax.get_xticklabels()] for ax in panels] == [["rnn"], ["rnn"]]
    plt.close(fig)


def test_report_of_a_study_directory_reports_its_runs(study_dir, tmp_path):
    _, out, _, run_pdf = study_dir
    r = CliRunner().invoke(cli, ["report", str(out), "-o", str(tmp_path / "dir.pdf")])
    assert r.exit_code == 0, r.output
    assert "left out" not in r.output  # the study's own files are not news
    # The same report `seqvg run` wrote of the same runs (byte-identical).
    assert (tmp_path / "dir.pdf").read_bytes() == run_pdf.read_bytes()


def test_report_of_a_glob_leaves_out_the_study_s_files_with_a_note(study_dir, tmp_path):
    _, out, _, run_pdf = study_dir
    paths = sorted(str(p) for p in out.iterdir())  # what the shell makes of runs/mixed/*
    assert any(p.endswith("results.csv") for p in paths)
    r = CliRunner().invoke(cli, ["report", *paths, "-o", str(tmp_path / "glob.pdf")])
    assert r.exit_code == 0, r.output
    assert "Traceback" not in r.output
    assert f"{out / 'results.csv'}: a file, not a run directory; left out" in r.stderr
    assert f"{out / 'results.png'}: a file, not a run directory; left out" in r.stderr
    assert (tmp_path / "glob.pdf").read_bytes() == run_pdf.read_bytes()


def test_report_of_files_alone_is_a_usage_error(study_dir, tmp_path):
    _, out, _, _ = study_dir
    r = CliRunner().invoke(cli, ["report", str(out / "results.csv"), "-o", str(tmp_path / "x.pdf")])
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert "nothing to report" in r.output and "results.csv: a file, not a run directory" in r.output
    assert not (tmp_path / "x.pdf").exists()


def test_report_of_a_probe_only_study_says_where_its_report_is(tmp_path):
    for name in ("rnn-s0", "lstm-s0"):
        (tmp_path / "probes" / name).mkdir(parents=True)
        (tmp_path / "probes" / name / "probe.json").write_text("{}")
    (tmp_path / "probes" / "results.csv").write_text("run,label\n")
    r = CliRunner().invoke(cli, ["report", str(tmp_path / "probes"), "-o", str(tmp_path / "x.pdf")])
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert "nothing to report" in r.output and "a probe-only study" in r.output and "seqvg run" in r.output
