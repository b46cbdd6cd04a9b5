"""Report pages, the data they draw, diagnosis verdicts, compare."""

import math
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from click.testing import CliRunner

from seqvg.cli import cli
from seqvg.config import RunConfig
from seqvg.diagnose import diagnose, gradient_verdict
from seqvg.probe import decay_summary
from seqvg.report import PAGES, make_report
from seqvg.report_flow import gradient_page, heatmap_page
from seqvg.rundir import Run, load_run

from conftest import TINY


@pytest.fixture(scope="module")
def runs(tiny_run):
    """Two finished runs and one that diverged (shared with other test files)."""
    return [tiny_run(cell="rnn"), tiny_run(cell="lstm"),
            tiny_run(cell="irnn", optimizer="sgd", lr=1e12)]


@pytest.fixture(scope="module")
def report_pdf(runs, tmp_path_factory):
    """The report of ``runs``, written once: (its titles, the PDF, the PNG directory)."""
    d = tmp_path_factory.mktemp("report")
    return make_report(runs, d / "a.pdf", d / "png"), d / "a.pdf", d / "png"


def test_report_pages_and_determinism(runs, report_pdf, tmp_path):
    titles, pdf_path, png_dir = report_pdf
    # The runs differ by cell: the study page follows the title; the why
    # pages follow the gradient flow.
    flow = [t for t, _ in PAGES[1:]]
    at = flow.index("Gradient flow") + 1
    assert titles == ["Title", "Study"] + flow[:at] + ["Why: the carry path", "Spectrum"] + flow[at:]
    assert len(titles) == 9
    assert len(list(png_dir.glob("*.png"))) == 9
    make_report(runs[::-1], tmp_path / "b.pdf")
    assert pdf_path.read_bytes() == (tmp_path / "b.pdf").read_bytes()
    pdf = pdf_path.read_bytes()
    assert len(re.findall(rb"/Type\s*/Page\b(?!s)", pdf)) == 9
    one = [t for t, _ in PAGES]
    one[one.index("Gradient flow") + 1:one.index("Gradient flow") + 1] = ["Why: the carry path", "Spectrum"]
    assert make_report(runs[:1], tmp_path / "one.pdf") == one
    # The README's page count of the demo (three runs that differ by cell) is this report's.
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    words = re.findall(r"(\w+)-page PDF", readme)
    number = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"]
    assert words and {number.index(w) + 1 for w in words} == {len(titles)}


def test_every_page_has_a_caption_and_the_title_page_the_outcome(runs):
    from seqvg.report import pages
    from seqvg.report_text import outcome_rows

    loaded = [load_run(p) for p in runs]
    for title, draw in pages(loaded):
        fig = plt.figure(figsize=(11, 8.5))
        draw(fig)
        assert _caption_of(fig), f"{title}: no caption"
        if title == "Title":
            text = "\n".join(t.get_text() for t in fig.texts)
            cells = {c.get_text().get_text() for ax in fig.axes for tb in ax.tables for c in tb.get_celld().values()}
            assert set(outcome_rows(loaded)[0]) <= cells
            assert "Findings" in text and "None" not in text
            # Runs that train() made with no command: the seqvg train command that remakes them.
            assert "seqvg train --length 10" in text
        plt.close(fig)


@pytest.mark.skipif(shutil.which("pdfinfo") is None, reason="poppler-utils not installed")
def test_report_renders(report_pdf, tmp_path):
    _, pdf_path, _ = report_pdf
    info = subprocess.run(["pdfinfo", str(pdf_path)], capture_output=True, text=True, check=True).stdout
    assert "Pages:          9" in info
    subprocess.run(["pdftoppm", "-png", "-r", "20", str(pdf_path), str(tmp_path / "p")], check=True)
    assert len(list(tmp_path.glob("p-*.png"))) == 9


def test_gradient_page_draws_the_run_data(runs):
    loaded = [load_run(p) for p in runs]
    fig = plt.figure()
    gradient_page(fig, loaded)
    ax_h = fig.axes[0]
    lines = {line.get_label(): line for line in ax_h.get_lines()}
    rnn = loaded[0]
    init = lines["rnn s0 init"].get_ydata()
    h0 = rnn.probes["h"][0][0]
    np.testing.assert_array_equal(np.where(h0 > 0, h0, np.nan), init)
    final_label = f"rnn s0 step {int(rnn.probes['steps'][-1])}"
    np.testing.assert_array_equal(lines[final_label].get_ydata(), rnn.probes["h"][-1][0])
    assert ax_h.get_yscale() == "log"
    assert len(fig.axes) == 2  # the LSTM adds the cell-state panel
    plt.close(fig)


def test_heatmap_shares_one_colour_scale(runs):
    loaded = [load_run(p) for p in runs]
    fig = plt.figure()
    heatmap_page(fig, loaded)
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == len(loaded)
    assert len({im.get_clim() for im in images}) == 1
    np.testing.assert_allclose(images[0].get_array().data, np.log10(loaded[0].probes["h"][:, 0, :]), rtol=1e-6)
    plt.close(fig)


def test_underflow_drawn_at_floor(tmp_path):
    run = _constructed(tmp_path, h_init=np.r_[np.zeros(3), np.logspace(-20, 0, 7)])
    fig = plt.figure()
    gradient_page(fig, [run])
    ax = fig.axes[0]
    xs = [line for line in ax.get_lines() if line.get_marker() == "x"]
    assert xs and np.array_equal(xs[0].get_xdata(), [0, 1, 2])
    assert (xs[0].get_ydata() > 0).all() and (xs[0].get_ydata() < 1e-20).all()
    plt.close(fig)


def _constructed(tmp_path, *, h_init=None, h_final=None, val=None, status="completed", solved=None,
                 columns_extra=None, cell="rnn", length=10):
    """A Run built from arrays, to test verdicts on known data."""
    steps = np.arange(0, 110, 10)
    ones = np.ones(length)
    h = np.stack([h_init if h_init is not None else ones] + [h_final if h_final is not None else ones] * 1)[:, None]
    val = val if val is not None else [0.5] * len(steps)
    rows = [{"step": int(s), "loss": v, "metric": v, "val_loss": v, "val_metric": v, "grad_norm": 1.0,
             "weight_change/rnn_1": 0.1, "weight_change/head": 0.1} for s, v in zip(steps, val)]
    columns = ["step", "loss", "metric", "val_loss", "val_metric", "grad_norm", "weight_change/rnn_1",
               "weight_change/head"]
    if columns_extra:
        columns, rows = columns_extra(columns, rows)
    cfg = RunConfig(cell=cell, length=length).resolved().to_dict()
    summary = {"status": status, "solved": solved is not None, "solved_at_step": solved, "steps_done": 100,
               "final": {"val_loss": val[-1], "val_metric": val[-1]}}
    probes = {"steps": np.array([0, 100]), "h": h.astype(np.float32), "x": np.ones((2, length), np.float32)}
    return Run(tmp_path / "constructed", {"config": cfg}, summary, columns, rows, probes)


def _keys(run):
    return [v.key for v in diagnose(run)]


def test_verdict_vanishing_exploding_healthy():
    t = np.arange(50)
    assert gradient_verdict(decay_summary(0.5 ** (49 - t)), 50, "init").key == "vanishing"
    assert gradient_verdict(decay_summary(1.2 ** (49 - t)), 50, "init").key == "exploding"
    assert gradient_verdict(decay_summary(np.ones(50)), 50, "init").key == "healthy"
    v = gradient_verdict(decay_summary(np.r_[0.0, 0.5 ** (48 - t[1:])]), 50, "init")
    assert v.key == "vanishing" and "underflow" in v.text
    assert gradient_verdict(decay_summary(np.zeros(50)), 50, "init").key == "unknown"


def test_verdict_flat_plateau_solved(tmp_path):
    assert "flat" in _keys(_constructed(tmp_path, val=[0.17] * 11))
    assert "plateau" in _keys(_constructed(tmp_path, val=[0.085] * 11))
    solved = _constructed(tmp_path, val=[0.17] * 10 + [0.005], solved=100)
    assert "solved" in _keys(solved) and "flat" not in _keys(solved)


def test_verdict_stalled_lower_layer(tmp_path):
    def two_layers(columns, rows):
        for r in rows:
            r["weight_change/rnn_1"] = 1e-4
            r["weight_change/rnn_2"] = 0.1
        return columns[:-1] + ["weight_change/rnn_2", "weight_change/head"], rows

    assert "stalled" in _keys(_constructed(tmp_path, columns_extra=two_layers))
    assert "stalled" not in _keys(_constructed(tmp_path))


def test_verdict_diverged_and_interrupted(runs, tmp_path):
    assert "diverged" in _keys(load_run(runs[2]))
    assert "interrupted" in _keys(_constructed(tmp_path, status="interrupted"))


def test_findings_do_not_count_a_stopped_run_as_ended(tmp_path):
    """A run killed at step 100 has no final loss: the title page's first
    finding must not say it 'ended at or above 90% of the baseline'."""
    import dataclasses

    from seqvg.report_findings import findings

    stopped = _constructed(tmp_path, val=[0.5] * 11, status="running")
    stopped = dataclasses.replace(stopped, summary={**stopped.summary, "final": {"val_loss": None}})
    first = findings([stopped])[0]
    assert first == "No run has finished, so none is counted as solved or not: rnn s0 (running at step 100)."
    done = _constructed(tmp_path / "b", val=[0.17] * 11, length=20)
    first = findings([stopped, done])[0]
    assert first.startswith("0 of 1 finished runs solved adding at T=10, 20 (val mse < 0.01). Not finished, so not "
                            "counted: T=10 s0 (running at step 100). The unsolved run ended at or above 90%"), first


def test_findings_name_diverged_runs_and_gradients_that_overflowed(tmp_path):
    """Runs whose loss became NaN/Inf (--recurrent-gain 3 and 50 on a ReLU
    RNN) were counted among those that "ended at or above 90% of the trivial
    baseline and learned nothing long-range" (final val loss 8.41e+26 and
    "-"), and one whose probe overflowed at init led the second finding as
    "G=50 - -> - (reaches only 0 of 30 steps)"."""
    import dataclasses

    from seqvg.report_findings import findings

    plain = _constructed(tmp_path / "a", val=[0.5] * 11)
    big = _constructed(tmp_path / "b", val=[0.5] * 10 + [8e26], h_init=np.geomspace(1e-12, 1.0, 10))
    big = dataclasses.replace(big, summary={**big.summary, "status": "diverged", "diverged_at_step": 1},
                              config={"config": {**big.cfg, "clip": 1.0}})
    inf = np.full(10, np.inf)
    over = _constructed(tmp_path / "c", val=[0.5] * 11, h_init=inf, h_final=inf)
    over = dataclasses.replace(over, summary={**over.summary, "status": "diverged", "diverged_at_step": 1,
                                              "final": {"val_loss": None, "val_metric": None}},
                               config={"config": {**over.cfg, "clip": 2.0}})
    first, second, _ = findings([plain, big, over])
    assert ("Diverged (the loss became NaN or Inf, which ended the run): clip=1 s0 at step 1, clip=2 s0 at step 1. "
            "The unsolved run ended at or above 90%") in first, first
    assert "8e+26" not in first
    assert second.endswith("clip=2: no finite gradient to measure (NaN or Inf in the probe)."), second
    assert "reaches only 0" not in second


def _drawn_tables(monkeypatch) -> list[tuple[str, list[list[str]]]]:
    """Records, for every page the report writes, its first axes title and
    the text of each table row, as the page goes into the PDF."""
    from matplotlib.backends.backend_pdf import PdfPages

    pages_seen = []
    real = PdfPages.savefig

    def savefig(self, figure=None, **kw):
        title = next((ax.get_title() for ax in figure.axes if ax.get_title()), "")
        title = title or (figure._suptitle.get_text() if figure._suptitle else "")
        rows = []
        for ax in figure.axes:
            for table in ax.tables:
                cells = table.get_celld()
                for r in sorted({r for r, _ in cells}):
                    rows.append([cells[r, c].get_text().get_text() for c in sorted(c for rr, c in cells if rr == r)])
        pages_seen.append((title, rows))
        return real(self, figure, **kw)

    monkeypatch.setattr(PdfPages, "savefig", savefig)
    return pages_seen


def test_report_shows_diverged_status(runs, tmp_path, monkeypatch):
    drawn = _drawn_tables(monkeypatch)
    r = CliRunner().invoke(cli, ["report", *map(str, runs), "-o", str(tmp_path / "r.pdf")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "r.pdf").read_bytes().startswith(b"%PDF")
    # The summary table, as written into the PDF: one row per run, its status
    # in the second column; the diverged run's row says so.
    tables = [rows for _, rows in drawn if rows and rows[0][:2] == ["run", "status"]]
    assert tables, [title for title, _ in drawn]
    names = {r.name for r in runs}
    statuses = {row[-1]: row[1] for row in tables[0][1:] if row[-1] in names}  # run directory -> status
    assert statuses == {runs[0].name: "completed", runs[1].name: "completed", runs[2].name: "diverged"}
    d = CliRunner().invoke(cli, ["diagnose", str(runs[2])])
    assert d.exit_code == 0 and "diverged" in d.output


@pytest.mark.parametrize("damage,needle", [("metrics", "metrics.csv"), ("probes", "probes.npz"),
                                           ("summary", "summary.json"), ("config", "config.json")])
def test_corrupt_run_dir_names_the_file(runs, tmp_path, damage, needle):
    bad = tmp_path / "bad"
    shutil.copytree(runs[0], bad)
    target = {"metrics": "metrics.csv", "probes": "probes.npz", "summary": "summary.json",
              "config": "config.json"}[damage]
    (bad / target).write_bytes(b"\x00garbage,1,2\n3")
    for cmd in (["report", str(bad), "-o", str(tmp_path / "r.pdf")], ["diagnose", str(bad)]):
        r = CliRunner().invoke(cli, cmd)
        assert r.exit_code == 2, r.output
        assert needle in r.output and "Traceback" not in r.output
    assert not (tmp_path / "r.pdf").exists()


def test_compare_trains_reports_and_resumes(tmp_path):
    args = ["compare", "--cells", "rnn,gru", "--out", str(tmp_path / "cmp"), "-q"]
    for k, v in TINY.items():
        args += [f"--{k.replace('_', '-')}", str(v)]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "cmp" / "report.pdf").exists()
    assert "rnn s0" in r.output and "gru s0" in r.output
    # diagnose, like report, takes the study's directory for all its runs.
    d = CliRunner().invoke(cli, ["diagnose", str(tmp_path / "cmp"), str(tmp_path / "cmp" / "results.csv")])
    assert d.exit_code == 0, d.output
    assert f"{tmp_path / 'cmp' / 'gru-s0'}:" in d.output and f"{tmp_path / 'cmp' / 'rnn-s0'}:" in d.output
    assert "results.csv: a file, not a run directory; left out" in d.output
    nothing = CliRunner().invoke(cli, ["diagnose", str(tmp_path / "cmp" / "results.csv")])
    assert nothing.exit_code == 2 and "nothing to diagnose" in nothing.output
    before = (tmp_path / "cmp" / "gru-s0" / "metrics.csv").read_bytes()
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0
    assert (tmp_path / "cmp" / "gru-s0" / "metrics.csv").read_bytes() == before
    changed = CliRunner().invoke(cli, [*args, "--lr", "0.01"])
    assert changed.exit_code == 2 and "other options" in changed.output


def _study_run(tmp_path, name: str, **options) -> Run:
    """A finished run built from numbers that depend on its options (no training)."""
    cfg = RunConfig(**{**TINY, **options}).resolved().to_dict()
    length, seed = cfg["length"], cfg["seed"]
    rate = {"rnn": 0.05, "lstm": 0.1, "gru": 0.2}[cfg["cell"]] * (0.5 if cfg.get("forget_bias") else 1.0)
    t = np.arange(length)
    h_init = 10.0 ** (-rate * (length - 1 - t)) * (1 + 0.1 * seed)
    h = np.stack([h_init, h_init * 2, h_init ** 0.5])[:, None].astype(np.float32)
    steps = np.arange(0, 40, 10)
    val = 0.2 / (1 + steps / (10.0 * (1 + seed))) * (length / 10)
    rows = [{"step": int(s), "loss": v, "metric": v, "val_loss": v, "val_metric": v, "grad_norm": 1.0 + seed,
             "weight_change/rnn_1": 0.1 / (1 + s), "weight_change/head": 0.05} for s, v in zip(steps, val)]
    columns = ["step", "loss", "metric", "val_loss", "val_metric", "grad_norm", "weight_change/rnn_1",
               "weight_change/head"]
    solved = bool(val[-1] < 0.01)
    summary = {"status": "completed", "solved": solved, "solved_at_step": int(steps[-1]) if solved else None,
               "steps_done": int(steps[-1]), "final": {"val_loss": float(val[-1]), "val_metric": float(val[-1])}}
    probes = {"steps": np.array([0, 20, 30]), "h": h, "x": np.ones((3, length), np.float32)}
    if cfg["cell"] == "lstm":
        probes["c"] = h * 3
    config = {"config": cfg, "created": "2026-11-30T00:00:00", "command": f"seqvg train ({name})"}
    return Run(tmp_path / name, config, summary, columns, rows, probes)


STUDIES = {
    "length only": [dict(cell="rnn", length=t, seed=s) for t in (20, 10, 40) for s in (0, 1)],
    "variant only": [dict(cell="lstm"), dict(cell="lstm", forget_bias=3.0), dict(cell="gru", chrono=30),
                     dict(cell="rnn", clip=1.0), dict(cell="rnn")],
    "cell x length x seed": [dict(cell=c, length=t, seed=s) for c in ("gru", "rnn", "lstm") for t in (10, 30, 20)
                             for s in (0, 1)],
    "task and cell": [dict(task="copy", cell="gru"), dict(task="adding", cell="rnn"), dict(task="copy", cell="rnn")],
}


def _caption_of(fig) -> str | None:
    """The page's one-line 'What to look for' caption (figure text at its foot)."""
    texts = [t for t in fig.texts if t.get_text().startswith("What to look for:")]
    assert len(texts) <= 1
    return texts[0].get_text() if texts and texts[0].get_position()[1] < 0.05 else None


def _legend_texts(fig) -> list[list[str]]:
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    return [[t.get_text() for t in legend.get_texts()] for legend in legends]


@pytest.mark.parametrize("study", list(STUDIES))
def test_every_page_names_every_run_once(study, tmp_path):
    from seqvg.report import pages
    from seqvg.report_view import view

    runs = [_study_run(tmp_path, f"run{i}", **kw) for i, kw in enumerate(STUDIES[study])]
    v = view(runs)
    names = [lab.label for lab in v.labels]
    groups = [name for name, _ in v.groups]
    assert len(set(names)) == len(names)
    assert v.grouped == (study == "cell x length x seed")
    titles = []
    for title, draw in pages(runs):
        fig = plt.figure(figsize=(11, 8.5))
        draw(fig)
        titles.append(title)
        for texts in _legend_texts(fig):
            assert len(set(texts)) == len(texts), (title, texts)
        for ax in fig.axes:
            for table in ax.tables:
                cells = table.get_celld()
                first = [cells[r, 0].get_text().get_text() for r in range(1, max(r for r, _ in cells) + 1)]
                assert len(set(first)) == len(first), (title, first)
                if title.startswith("Summary"):
                    assert set(first) <= set(names)
        if title in ("Learning curves", "Gradient flow", "Weight graph"):
            shown = {t for texts in _legend_texts(fig) for t in texts}
            assert set(groups if v.grouped else names) <= shown, title
        assert _caption_of(fig), f"{title}: no caption"
        plt.close(fig)
    assert titles[:2] == ["Title", "Study"]
    if v.grouped:  # every run on its own: learning curve, gradient flow, heatmap
        for kind in ("learning curves", "gradient flow", "gradient flow over training"):
            assert f"Appendix {kind} 1" in titles


def test_report_order_and_labels_for_a_length_study(tmp_path):
    from seqvg.report_text import summary_rows

    runs = [_study_run(tmp_path, f"run{i}", **kw) for i, kw in enumerate(STUDIES["length only"])]
    assert [row[0] for row in summary_rows(runs)] == ["T=10 s0", "T=10 s1", "T=20 s0", "T=20 s1", "T=40 s0",
                                                      "T=40 s1"]


def test_study_report_is_byte_identical_whatever_the_input_order(tmp_path):
    from seqvg.report import write_report

    # Cells, lengths and seeds each given out of order, in 12 runs (each
    # report of "cell x length x seed"'s 18 cost some 20 s of CPU).
    grid = [dict(cell=c, length=t, seed=s) for c in ("gru", "rnn", "lstm") for t in (20, 10) for s in (1, 0)]
    runs = [_study_run(tmp_path, f"run{i}", **kw) for i, kw in enumerate(grid)]
    write_report(runs, tmp_path / "a.pdf")
    write_report(runs[::-1], tmp_path / "b.pdf")
    assert (tmp_path / "a.pdf").read_bytes() == (tmp_path / "b.pdf").read_bytes()


def test_outcome_table_and_findings_match_the_runs(tmp_path):
    from seqvg.report_findings import findings
    from seqvg.report_text import outcome_rows
    from seqvg.report_view import view
    from seqvg.tasks import get_task

    runs = [_study_run(tmp_path, f"run{i}", **kw) for i, kw in enumerate(STUDIES["variant only"])]
    v = view(runs)
    rows = outcome_rows(runs)
    assert [row[0] for row in rows] == [lab.label for lab in v.labels]
    base = get_task("adding").baseline(TINY["length"])
    for row, r in zip(rows, v.runs):
        final = r.summary["final"]
        assert row[3] == (f"solved at step {r.summary['solved_at_step']}" if r.summary["solved"]
                          else f"not solved in {r.summary['steps_done']} steps")
        assert row[4] == f"{final['val_metric']:.4g}"
        assert row[5] == f"{final['val_loss']:.3g} / {base:.3g}"
        assert row[6] == f"{decay_summary(r.probes['h'][0][0])['rate_per_100']:+.2f}"
        assert row[7] == f"{decay_summary(r.probes['h'][-1][0])['rate_per_100']:+.2f}"
    # These runs all end at val loss 0.05 (under 90% of the 1/6 baseline), none solved.
    first, second, third = findings(runs)
    assert first.startswith(f"0 of {len(runs)} runs solved adding at T={TINY['length']} (val mse < 0.01).")
    assert f"The {len(runs)} unsolved ended below the trivial baseline (val loss {base:.3g}" in first
    lstm = next(r for r, lab in zip(v.runs, v.labels) if lab.label == "lstm s0")
    assert f"lstm {decay_summary(lstm.probes['h'][0][0])['rate_per_100']:+.2f} -> " in second
    h = lstm.probes["h"][0][0].astype(np.float64)  # the measured gain, geometric mean over the steps
    assert f"lstm {np.exp(np.mean(np.log(h[:-1] / h[1:]))):.3f}" in third

    # One seed solves, one stays at the baseline: counted per group (medians) and in words.
    seeds = [_study_run(tmp_path, f"s{i}", cell="gru", seed=i) for i in range(2)]
    seeds[0].summary.update(solved=True, solved_at_step=30)
    seeds[1].summary["final"]["val_loss"] = base
    grouped = outcome_rows(seeds, by_group=True)
    assert len(grouped) == 1 and grouped[0][3] == "1/2 solved, median step 30"
    assert grouped[0][4] == f"{np.median([s.summary['final']['val_metric'] for s in seeds]):.4g}"
    first = findings(seeds)[0]
    assert first.startswith("1 of 2 runs solved") and "The unsolved run ended at or above 90% of the trivial baseline" in first


def test_title_page_prints_the_recorded_command(tmp_path):
    from seqvg.report import _title_page

    runs = [_study_run(tmp_path, f"run{i}", cell=c) for i, c in enumerate(("rnn", "gru"))]
    for r in runs:
        r.config["command"] = "seqvg run tasks/demo.toml"
    fig = plt.figure(figsize=(11, 8.5))
    _title_page(fig, runs)
    text = [t.get_text() for t in fig.texts]
    assert any(t.endswith("\nseqvg run tasks/demo.toml") for t in text)  # once, for both runs
    assert not any("None" in t for t in text)
    plt.close(fig)


def test_title_page_names_the_execution_paths_recorded(tmp_path):
    """One line: each recorded path once, read from new and from older
    config.json alike; none for runs that record no path."""
    from seqvg.execpath import ExecutionPath
    from seqvg.report import _title_page

    runs = [_study_run(tmp_path, f"run{i}", cell=c) for i, c in enumerate(("lstm", "lstm", "gru", "rnn"))]
    fig = plt.figure(figsize=(11, 8.5))
    _title_page(fig, runs)
    assert not any(t.get_text().startswith("execution path") for t in fig.texts)
    plt.close(fig)
    runs[0].config["numerics"] = {"execution_path": ExecutionPath("lstm", "tf-ops", True).to_dict()}
    runs[1].config["numerics"] = {"lstm_path": "tf-ops-unrolled", "gru_path": None}  # as older runs wrote it
    runs[2].config["numerics"] = {"lstm_path": None, "gru_path": "seqvg-op"}
    fig = plt.figure(figsize=(11, 8.5))
    _title_page(fig, runs)
    (line,) = [t.get_text() for t in fig.texts if t.get_text().startswith("execution path")]
    assert line == "execution path: LSTM: seqvg's loop of TensorFlow ops, unrolled; GRU: seqvg's sequence op"
    plt.close(fig)


def test_a_report_named_as_an_image_is_refused(tiny_run, tmp_path, monkeypatch):
    """``report -o out.png`` wrote a PDF named .png (no viewer opens it), and
    ``-o pages/01-title.png`` replaced seqvg's own page PNG with a PDF. Now a
    usage error before any page is drawn, nothing written; a compare's
    ``--report r.svg`` alike, before any run."""
    monkeypatch.chdir(tmp_path)
    run = tiny_run(cell="rnn")
    r = CliRunner().invoke(cli, ["report", str(run), "-o", "r.pdf", "--png", "pages"])
    assert r.exit_code == 0, r.output
    page = (tmp_path / "pages" / "01-title.png").read_bytes()
    for name in ("out.png", "pages/01-title.png", "x.JPG"):
        r = CliRunner().invoke(cli, ["report", str(run), "-o", name])
        assert r.exit_code == 2, r.output
        assert (f"Error: Invalid value for '--out' / '-o': {name}: a report is a PDF, not a "
                f"{Path(name).suffix} image; give a name ending in .pdf") in r.output
    assert (tmp_path / "pages" / "01-title.png").read_bytes() == page
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pages", "r.pdf"]
    r = CliRunner().invoke(cli, ["compare", "--cells", "rnn", "--length", "10", "--units", "4", "--steps", "10",
                                 "--out", "cmp", "--report", "r.svg", "-q"])
    assert r.exit_code == 2 and "Invalid value for '--report': r.svg: a report is a PDF" in r.output, r.output
    assert not (tmp_path / "cmp").exists() and not (tmp_path / "r.svg").exists()


def test_a_short_sequence_with_mild_decay_is_not_called_vanishing():
    """A T=20 run whose gradient keeps half its size over the sequence
    (-1.5 decades/100 steps, g0/gT 0.5): diagnose said "vanishing gradient",
    beside explain's "the gradient reaches all 20 steps, so the signal
    arrives". Now healthy, with the decades over the sequence; a decade or
    more lost over the sequence is still vanishing, and T >= 100 is unchanged."""
    t = np.arange(20)
    v = gradient_verdict(decay_summary(10 ** (-0.015 * (19 - t))), 20, "init")
    assert v.key == "healthy" and "(-0.29 decades over the 20 steps)" in v.text, v.text
    assert gradient_verdict(decay_summary(10 ** (0.015 * (19 - t))), 20, "init").key == "healthy"
    assert gradient_verdict(decay_summary(10 ** (-0.08 * (19 - t))), 20, "init").key == "vanishing"
    assert gradient_verdict(decay_summary(10 ** (0.08 * (19 - t))), 20, "init").key == "exploding"
    t = np.arange(200)
    assert gradient_verdict(decay_summary(10 ** (-0.015 * (199 - t))), 200, "init").key == "vanishing"


def test_settings_table_counts_the_steps_a_stopped_run_did(tiny_run, tmp_path):
    """A run killed at step 20 of 30: its summary.json still says what it said
    at the start (running, 0 steps done), and the Summary page's settings
    table printed 0 steps beside the diagnosis's "stopped at step 20"."""
    import json

    from seqvg.report_text import SETTINGS_COLUMNS, settings_rows

    from conftest import copy_run

    run = copy_run(tiny_run(cell="rnn"), tmp_path / "run")
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "status": "running", "steps_done": 0}))
    lines = (run / "metrics.csv").read_text().splitlines(keepends=True)
    (run / "metrics.csv").write_text("".join(lines[:-1]))  # the rows of steps 0, 10, 20
    steps = SETTINGS_COLUMNS.index("steps")
    assert settings_rows([load_run(run)])[0][steps] == "20 of 30"
    assert settings_rows([load_run(tiny_run(cell="rnn"))])[0][steps] == "30"


def test_a_run_with_one_evaluation_is_drawn_on_the_learning_curves(tiny_run, tmp_path):
    """A run that diverged before its second evaluation has one metrics row:
    its curves were lines of one point, which matplotlib does not draw, on
    an axis ticked -0.045 .. 0.045 steps. Now a marker, on whole steps."""
    import json

    from seqvg.report_training import curves_page

    from conftest import copy_run

    run = copy_run(tiny_run(cell="rnn"), tmp_path / "run")
    lines = (run / "metrics.csv").read_text().splitlines(keepends=True)
    (run / "metrics.csv").write_text("".join(lines[:2]))  # the header and step 0's row
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "status": "diverged", "diverged_at_step": 2}))
    fig = plt.figure()
    curves_page(fig, [load_run(run)])
    for ax in fig.axes[:2]:
        drawn = [line for line in ax.lines if len(line.get_xdata()) == 1 and line.get_label() == "rnn s0"]
        assert drawn and drawn[0].get_marker() == "o"
        assert all(float(t).is_integer() for t in ax.get_xticks())
    plt.close(fig)


def test_the_title_page_uses_the_runs_task_parameters(tiny_run):
    """A recall run with --task-arg pairs=2 --task-arg vocab=8: its trivial
    baseline is ln 4 = 1.39, but the title page took the default task's
    (ln 32 = 3.47), said a run at 2.05 "ended below the trivial baseline:
    learned part of the task", and listed its default chrono (16, recall's
    3K+T) as a remedy "chrono 16" (it computed 3*8+10 = 34)."""
    from seqvg.report_findings import findings
    from seqvg.report_text import outcome_rows, remedies

    run = load_run(tiny_run(cell="gru", task="recall", task_args={"pairs": 2, "vocab": 8}))
    loss = run.summary["final"]["val_loss"]
    row = outcome_rows([run])[0]
    assert row[5].endswith(" / 1.39"), row
    assert remedies(run.cfg) == [] and row[2] == "gates: chrono 16", row
    first = findings([run])[0]
    assert "val loss 1.39: a model with no memory" in first and "3.47" not in first, first
    assert ("ended at or above 90%" in first) == (loss >= 0.9 * math.log(4)), first


def test_findings_say_a_diverged_run_diverged(tiny_run, tmp_path):
    """A run that diverged at step 2 (val loss 2.75e+17 at step 0): the title
    page's first finding said it "ended at or above 90% of the trivial
    baseline and learned nothing long-range. Final val loss: rnn 2.75e+17"."""
    import json

    from seqvg.report_findings import findings

    from conftest import copy_run

    run = copy_run(tiny_run(cell="rnn"), tmp_path / "run")
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "status": "diverged", "diverged_at_step": 2,
                                                  "final": {**summary["final"], "val_loss": 2.75e17}}))
    first = findings([load_run(run)])[0]
    assert "Diverged (the loss became NaN or Inf, which ended the run): rnn s0 at step 2." in first, first
    assert "learned nothing" not in first and "2.75e+17" not in first, first


def test_a_study_of_task_parameters_names_them_and_uses_each_runs_baseline(tmp_path):
    """temporal-order with symbols=2 and symbols=3 (a [grid] of task_args):
    runs were labelled "task_args={'symbols': 3} s0" (Python's dict), and the
    outcome table and first finding gave both the baseline of the default
    parameters, ln 4 = 1.39, where symbols=3's is ln 8 = 2.08."""
    from seqvg.labels import run_labels
    from seqvg.report_findings import findings
    from seqvg.report_text import outcome_rows

    runs = [_study_run(tmp_path, f"symbols{k}-s0", cell="rnn", task="temporal-order", length=20,
                       task_args={"symbols": k}) for k in (2, 3)]
    assert [lab.label for lab in run_labels([r.cfg for r in runs])] == ["symbols=2 s0", "symbols=3 s0"]
    rows = outcome_rows(runs)
    assert [row[0] for row in rows] == ["symbols=2 s0", "symbols=3 s0"]
    assert [row[5].split(" / ")[1] for row in rows] == ["1.39", "2.08"]
    assert "trivial baseline (val loss 1.39, 2.08:" in findings(runs)[0]
    assert "task_args=" not in " ".join(findings(runs))


def test_study_page_marks_diverged_runs_and_keeps_the_solved_line_in_view(tmp_path):
    """A diverged run's last val MSE (8e+26) stretched the outcome axis over
    28 decades: the solved line at 0.01 fell below it, its label over the x
    tick labels, and nothing said which runs diverged. Now a diverged run is a
    cross at the top ("diverged (NaN/Inf loss)"), and the axis holds 0.01."""
    import dataclasses

    from seqvg.report_study import study_page

    plain = _study_run(tmp_path, "a", cell="rnn", length=20)
    bad = _study_run(tmp_path, "b", cell="rnn", length=20, clip=1.0)
    bad = dataclasses.replace(bad, summary={**bad.summary, "status": "diverged", "diverged_at_step": 1,
                                            "final": {"val_loss": 8e26, "val_metric": 8e26}})
    fig = plt.figure(figsize=(11, 8.5))
    study_page(fig, [plain, bad])
    ax_out = fig.axes[0]
    low, high = ax_out.get_ylim()
    assert low <= 0.01 / 1.5 and high < 100, (low, high)
    crosses = [line for line in ax_out.get_lines() if line.get_marker() == "X"]
    assert len(crosses) == 1
    assert "diverged (NaN/Inf loss)" in [t for texts in _legend_texts(fig) for t in texts]
    plt.close(fig)


def test_diagnose_of_a_study_lists_its_runs_by_length_like_the_report(tmp_path, tiny_run):
    """`seqvg diagnose runs/assignment-1-vanishing` listed T100, T200, T25,
    T50 (the directory listing's order); the report sorts by length. Runs
    named one by one keep the order given."""
    import shutil

    study = tmp_path / "study"
    shutil.copytree(tiny_run(cell="rnn", length=10), study / "T10-s0")
    shutil.copytree(tiny_run(cell="rnn", length=9), study / "T9-s0")
    result = CliRunner().invoke(cli, ["diagnose", str(study)])
    assert result.exit_code == 0, result.output
    heads = [line for line in result.output.splitlines() if line.endswith(":") and "-s0" in line]
    assert heads == [f"{study / 'T9-s0'}:", f"{study / 'T10-s0'}:"]
    result = CliRunner().invoke(cli, ["diagnose", str(study / "T10-s0"), str(study / "T9-s0")])
    heads = [line for line in result.output.splitlines() if line.endswith(":") and "-s0" in line]
    assert heads == [f"{study / 'T10-s0'}:", f"{study / 'T9-s0'}:"]


def test_learning_curves_mark_a_run_that_diverged_at_once(tmp_path):
    """A run that diverged at step 1 has one metrics row (step 0, val MSE
    8e+26): a curve of one point, which draws nothing, while it stretched the
    axes over 28 decades and left the solved line below them. Now its last
    finite value is a cross, the caption names it, and 0.01 stays in view."""
    import dataclasses

    from seqvg.report_training import curves_page

    plain = _study_run(tmp_path, "a", cell="rnn", length=20)
    bad = _study_run(tmp_path, "b", cell="rnn", length=20, clip=1.0)
    row = {**bad.metrics[0], "val_loss": 8e26, "val_metric": 8e26}
    bad = dataclasses.replace(bad, metrics=[row], summary={**bad.summary, "status": "diverged",
                                                           "diverged_at_step": 1})
    fig = plt.figure(figsize=(11, 8.5))
    curves_page(fig, [plain, bad])
    ax_loss, ax_metric = fig.axes[:2]
    for ax in (ax_loss, ax_metric):
        assert [line.get_marker() for line in ax.get_lines()].count("X") == 1
    assert ax_metric.get_ylim()[0] <= 0.01 and ax_loss.get_ylim()[0] <= 1 / 12
    assert any("A cross: the last finite value of a run that diverged (clip=1 s0)." in t.get_text()
               for t in fig.texts)
    plt.close(fig)


def test_gradient_flow_says_which_runs_have_no_finite_gradient(tmp_path):
    """A run whose every probe overflowed (--recurrent-gain 50) has no curve:
    the page showed its legend entry over nothing, and no word of why."""
    import dataclasses

    plain = _study_run(tmp_path, "a", cell="rnn", length=20)
    over = _study_run(tmp_path, "b", cell="rnn", length=20, clip=1.0)
    over = dataclasses.replace(over, probes={**over.probes, "h": np.full_like(over.probes["h"], np.inf)})
    fig = plt.figure(figsize=(11, 8.5))
    gradient_page(fig, [plain, over])
    assert any(t.get_text().endswith("No finite gradient to draw (NaN or Inf in every probe): clip=1.")
               for t in fig.texts), [t.get_text() for t in fig.texts]
    plt.close(fig)
    fig = plt.figure(figsize=(11, 8.5))
    gradient_page(fig, [plain])
    assert not any("No finite gradient" in t.get_text() for t in fig.texts)
    plt.close(fig)


def test_why_page_labels_do_not_run_into_each_other(tmp_path):
    """Four rows of panels: the right panels' y label, the definition
    "g_t = ||dL/ds_{t-1}|| / ||dL/ds_t||", was taller than a panel and ran into
    the next row's; the two-line title touched the first row's panel titles."""
    from seqvg.report_why import carry_page

    runs = [_study_run(tmp_path, f"T{t}", cell="rnn", length=t) for t in (10, 12, 14, 16, 18)]
    fig = plt.figure(figsize=(11, 8.5))
    carry_page(fig, runs)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    labels = [ax.yaxis.label.get_window_extent(renderer) for ax in fig.axes]
    for a in labels:
        for b in labels:
            assert a is b or not a.overlaps(b), (a, b)
    title = fig._suptitle.get_window_extent(renderer)
    assert all(title.y0 > ax.title.get_window_extent(renderer).y1 for ax in fig.axes)
    plt.close(fig)


def test_weight_graph_draws_runs_that_logged_one_row(tmp_path):
    """`--set steps=20` logs the weight change and gradient norm once (step
    0 has none): every curve was one point, which a line does not draw, and
    the weight graph was two empty axes under a caption quoting the values."""
    import dataclasses

    from seqvg.report_training import weights_page

    runs = []
    for seed in (0, 1):
        r = _study_run(tmp_path, f"s{seed}", cell="rnn", length=20, seed=seed)
        rows = [{**row, "weight_change/rnn_1": math.nan, "weight_change/head": math.nan, "grad_norm": math.nan}
                if row["step"] == 0 else row for row in r.metrics[:2]]
        runs.append(dataclasses.replace(r, metrics=rows))
    fig = plt.figure(figsize=(11, 8.5))
    weights_page(fig, runs)
    drawn = [line for ax in fig.axes for line in ax.get_lines() if len(line.get_xdata()) == 1]
    assert drawn and all(line.get_marker() == "o" for line in drawn)
    plt.close(fig)


def test_the_last_appendix_page_keeps_a_full_pages_panel_size(tmp_path):
    """13 runs: the appendix's second page held one run, drawn as a single
    panel the page's whole height (learning curves) or width (heatmaps)."""
    from seqvg.report import pages

    runs = [_study_run(tmp_path, f"T{t}-s{s}", cell="rnn", length=t, seed=s) for t in (10, 12, 14, 16, 18)
            for s in (0, 1, 2)][:13]
    sizes: dict[str, list[tuple[float, float]]] = {}
    for title, draw in pages(runs):
        if not title.startswith("Appendix"):
            continue
        fig = plt.figure(figsize=(11, 8.5))
        draw(fig)
        box = [ax for ax in fig.axes if ax.get_visible() and ax.axison][0].get_position()
        sizes.setdefault(title.rsplit(" ", 1)[0], []).append((round(box.width, 3), round(box.height, 3)))
        plt.close(fig)
    assert set(sizes) == {"Appendix learning curves", "Appendix gradient flow",
                          "Appendix gradient flow over training"}, sizes
    for kind, got in sizes.items():
        assert len(got) == 2 and got[0] == got[1], (kind, got)


def test_findings_speak_of_one_unsolved_run_in_the_singular(tmp_path):
    """"The 1 unsolved ended below the trivial baseline ...: they learned part of the task"."""
    from seqvg.report_findings import findings

    first = findings([_constructed(tmp_path, val=[0.1] * 11)])[0]
    assert "The unsolved run ended below the trivial baseline" in first and "it learned part of the task." in first
    first = findings([_constructed(tmp_path / "a", val=[0.1] * 11), _constructed(tmp_path / "b", val=[0.1] * 11,
                                                                                 length=20)])[0]
    assert "The 2 unsolved ended below" in first and "they learned part of the task." in first
    # At the baseline: "Of the 1 unsolved, 1 ended at or above 90%" (the demo's title page) reads singular too.
    first = findings([_constructed(tmp_path / "c", val=[0.2] * 11)])[0]
    assert "The unsolved run ended at or above 90% of the trivial baseline" in first, first
    assert "Of the 1 unsolved" not in first, first
