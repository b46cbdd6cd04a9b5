"""Expected outcomes: [expect] tables in specs, their check, seqvg run --check."""

import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from seqvg.cli import cli
from seqvg.expect import check, check_table, expected_figures, format_table, point_of, points
from seqvg.study import SpecError, expectation_table, load_spec, parse_spec

TASKS = Path(__file__).resolve().parents[1] / "tasks"
SPECS = sorted(TASKS.glob("*.toml"))
GRID = "task = 'adding'\ncell = 'rnn'\nseeds = 3\n[grid]\nlength = [25, 50]\n"
MEASURED = "measured_seeds = [0, 1, 2]\nmeasured_on = '2026-11-30'\n"


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_shipped_expectations_parse_and_name_runs_of_the_spec(spec):
    study = load_spec(spec)  # parsing validates points, keys, ranges and seeds
    run_points = points(study.run_names, [c.seed for c in study.configs])
    for e in study.expectations:
        assert e.point in run_points and e.checked and set(e.checked) <= set(run_points[e.point])
        # Robust claims: an expected outcome rests on at least 3 seeds.
        assert len(e.seeds) >= 3, f"{spec.name}: [expect.{e.point}] measured on {len(e.seeds)} seed(s)"


def test_the_assignments_state_their_outcomes():
    study = load_spec(TASKS / "assignment-1-vanishing.toml")
    stated = {(e.point, e.outcome) for e in study.expectations}
    for point in ("T25", "T50", "T100", "T200"):
        assert {(point, "solved_fraction"), (point, "final_val_metric"), (point, "init_decay")} <= stated
    study = load_spec(TASKS / "assignment-2-gating.toml")
    assert {"rnn", "gru", "gru-chrono"} <= {e.point for e in study.expectations}


@pytest.mark.parametrize("text, message", [
    ("[expect.T30]\n" + MEASURED + "solved_fraction = 1.0\n",
     "s.toml:6: [expect.T30]: no run point 'T30' in this spec (a run's directory name without -sN); "
     "its points: T25, T50"),
    ("[expect.T25]\n" + MEASURED + "solved = 1.0\n",
     "s.toml:9: [expect.T25] solved: unknown key; an [expect] table takes solved_fraction, solved_before, "
     "final_val_metric, init_decay, measured_seeds, measured_on"),
    ("[expect.T25]\n" + MEASURED + "final_val_metric = [0.2, 0.1]\n",
     "s.toml:9: [expect.T25] final_val_metric: expected a range [low, high] of two numbers with low <= high, "
     "got [0.2, 0.1]"),
    ("[expect.T25]\n" + MEASURED + "init_decay = -2.0\n",
     "s.toml:9: [expect.T25] init_decay: expected a range [low, high] of two numbers with low <= high, got -2.0"),
    ("[expect.T25]\n" + MEASURED + "solved_fraction = 1.5\n",
     "s.toml:9: [expect.T25] solved_fraction: expected a fraction between 0 and 1, got 1.5"),
    ("[expect.T25]\n" + MEASURED + "solved_before = 0\n",
     "s.toml:9: [expect.T25] solved_before: expected a step (an int >= 1), got 0"),
    ("[expect.T25]\nmeasured_seeds = [5, 6]\nmeasured_on = '2026-11-30'\nsolved_fraction = 1.0\n",
     "s.toml:7: [expect.T25] measured_seeds: none of the seeds [5, 6] is among this spec's seeds [0, 1, 2]"),
    ("[expect.T25]\nmeasured_seeds = [0, 1, 2, 3]\nmeasured_on = '2026-11-30'\nsolved_fraction = 0.75\n",
     "s.toml:9: [expect.T25] solved_fraction: measured on seeds [0, 1, 2, 3] but checked on [0, 1, 2] (the seeds "
     "this spec runs), so it must hold seed by seed: 0 or 1, got 0.75"),
    ("[expect.T25]\nmeasured_on = '2026-11-30'\nsolved_fraction = 1.0\n",
     "s.toml:6: [expect.T25] measured_seeds: required: the seeds the outcomes were measured with, "
     "a list of distinct ints, got None"),
    ("[expect.T25]\nmeasured_seeds = [0]\nsolved_fraction = 1.0\n",
     "s.toml:6: [expect.T25] measured_on: required: the date measured, \"YYYY-MM-DD\", got None"),
    ("[expect.T25]\n" + MEASURED, "s.toml:6: [expect.T25]: states no outcome; give one of solved_fraction, "
     "solved_before, final_val_metric, init_decay"),
])
def test_expect_errors_are_one_line_with_file_line_and_key(text, message):
    with pytest.raises(SpecError) as e:
        parse_spec(GRID + text, "s.toml")
    assert str(e.value) == message


def test_measured_on_may_be_a_toml_date():
    """measured_on = 2026-11-30, unquoted, is TOML's own date: it was refused
    with Python's repr, "got datetime.date(2026, 11, 30)"; it is that day."""
    study = parse_spec(GRID + "[expect.T25]\nmeasured_seeds = [0, 1, 2]\nmeasured_on = 2026-11-30\n"
                              "solved_fraction = 1.0\n", "s.toml")
    assert [e.measured_on for e in study.expectations] == ["2026-11-30"]
    with pytest.raises(SpecError) as e:  # a date with a time is not a day: refused, in TOML's spelling
        parse_spec(GRID + "[expect.T25]\nmeasured_seeds = [0]\nmeasured_on = 2026-11-30T10:00:00\n"
                          "solved_fraction = 1.0\n", "s.toml")
    assert str(e.value).endswith('"YYYY-MM-DD", got 2026-11-30T10:00:00')


def test_probe_only_specs_expect_only_the_init_decay():
    text = GRID.replace("seeds = 3", "seeds = 3\nprobe_only = true") + "[expect.T25]\n" + MEASURED
    assert parse_spec(text + "init_decay = [-3.0, -1.0]\n", "s.toml").expectations
    with pytest.raises(SpecError, match="probe-only study trains nothing"):
        parse_spec(text + "solved_fraction = 0.0\n", "s.toml")


def test_check_takes_fractions_and_medians_over_the_measured_seeds():
    study = parse_spec(GRID + "[expect.T25]\nmeasured_seeds = [0, 1, 2]\nmeasured_on = '2026-11-30'\n"
                       "solved_fraction = { value = 0.67, tolerance = 0.34 }\nsolved_before = 900\n"
                       "final_val_metric = [0.004, 0.006]\ninit_decay = [-2.5, -2.4]\n"
                       "[expect.T50]\nmeasured_seeds = [1]\nmeasured_on = '2026-11-30'\nsolved_fraction = 1.0\n",
                       "s.toml")
    row = lambda run, seed, solved, at, metric, decay: dict(  # noqa: E731
        run=run, seed=seed, solved=solved, solved_at_step=at, final_val_metric=metric, init_rate_per_100=decay)
    rows = [row("T25-s0", 0, True, 800, 0.005, -2.45), row("T25-s1", 1, False, None, 0.02, -2.6),
            row("T25-s2", 2, True, 1200, 0.004, -2.3), row("T50-s0", 0, False, None, 0.1, -2.0)]
    lines = check(study.expectations, rows, probe_only=False)
    measured = [(line.expectation.outcome, line.measured, line.ok) for line in lines]
    assert measured == [
        ("solved_fraction", "2/3 = 0.67", True),
        ("solved_before", "median 1200 (800 to never)", False),  # steps 800, 1200, never: median 1200 > 900
        ("final_val_metric", "median 0.005 (0.004 to 0.02)", True),
        ("init_decay", "median -2.45 (-2.60 to -2.30)", True),
        ("solved_fraction", "not run (0 of 1 seeds finished)", False),  # seed 1 of T50 not in the rows
    ]
    columns, table = check_table(lines, "MSE")
    assert table[2] == ["T25", "final val MSE", "0,1,2", "0.004 to 0.006", "median 0.005 (0.004 to 0.02)",
                        "2026-11-30", "OK"]
    assert [r[-1] for r in table] == ["OK", "DEVIATES", "OK", "OK", "DEVIATES"]
    assert point_of("lstm-fb3-s12", 12) == "lstm-fb3" and point_of("s0", 0) == "all"
    assert math.isclose(study.expectations[0].low, 0.33) and study.expectations[0].high == 1.0


def test_a_one_seed_spec_checks_its_seed_against_a_claim_measured_on_more():
    # The demo runs one seed; its claim rests on five (seqvg run --seeds 5).
    text = GRID.replace("seeds = 3", "seeds = 1") + (
        "[expect.T25]\nmeasured_seeds = [0, 1, 2, 3, 4]\nmeasured_on = '2026-11-30'\nsolved_fraction = 1.0\n"
        "final_val_metric = [0.004, 0.006]\n")
    [frac, final] = parse_spec(text, "s.toml").expectations
    assert frac.seeds == (0, 1, 2, 3, 4) and frac.checked == (0,)
    rows = [dict(run="T25-s0", seed=0, solved=True, solved_at_step=800, final_val_metric=0.005, metric_name="mse")]
    lines = check([frac, final], rows, probe_only=False)
    assert [(line.measured, line.ok) for line in lines] == [("1/1 = 1.00", True), ("0.005", True)]
    _, table = check_table(lines)
    assert [r[2] for r in table] == ["0 of 0,1,2,3,4"] * 2
    # Run with all five seeds (seqvg run --seeds 5), the same table checks all five.
    [frac5, _] = parse_spec(text, "s.toml", seeds=5).expectations
    assert frac5.checked == (0, 1, 2, 3, 4)
    assert len(parse_spec(text, "s.toml", seeds=5).configs) == 10  # 2 lengths x 5 seeds
    assert check([frac5], rows, probe_only=False)[0].measured == "not run (1 of 5 seeds finished)"


def test_each_point_names_its_own_task_metric():
    # A spec may mix tasks (the tour): a point's final metric is named after
    # its own runs' metric, not the first task's.
    study = parse_spec("cell = 'rnn'\nseeds = 3\n[[variant]]\nlabel = 'a'\ntask = 'adding'\n"
                       "[[variant]]\nlabel = 'b'\ntask = 'parity'\nlength = 4\n"
                       "[expect.a]\n" + MEASURED + "final_val_metric = [0.1, 0.2]\n"
                       "[expect.b]\n" + MEASURED + "final_val_metric = [0.4, 0.6]\n", "s.toml")
    rows = [dict(run=f"{p}-s{s}", seed=s, solved=False, solved_at_step=None, final_val_metric=v, metric_name=m)
            for p, v, m in (("a", 0.15, "mse"), ("b", 0.5, "acc")) for s in (0, 1, 2)]
    _, table = check_table(check(study.expectations, rows, probe_only=False), "mse")
    assert [r[1] for r in table] == ["final val mse", "final val acc"]


def test_the_report_page_shows_the_console_table():
    columns = ["run", "outcome", "seeds", "expected", "measured", "measured on", "result"]
    rows = [["T25", "solved fraction", "0,1,2", "1.00 ± 0.01", "3/3 = 1.00", "2026-11-30", "OK"],
            ["T50", "solved fraction", "0,1,2", "1.00 ± 0.01", "0/3 = 0.00", "2026-11-30", "DEVIATES"]]
    [(title, fig)] = expected_figures(columns, rows, "s")
    table = fig.axes[0].tables[0]
    cells = table.get_celld()
    shown = [[cells[i, j].get_text().get_text() for j in range(len(columns))] for i in range(len(rows) + 1)]
    assert title == "Expected and measured" and shown == [columns, *rows]


TINY_SPEC = """# tiny: a spec for the --check test
task = "adding"
cell = "rnn"
length = 6
steps = 4
eval_every = 2
val_size = 16
units = 4
batch_size = 8
probe_batch = 4
seeds = 1

[expect.all]
measured_seeds = [0]
measured_on = "2026-11-30"
init_decay = [-1000.0, 1000.0]
solved_fraction = {fraction}
"""


def test_check_fails_with_a_readable_line_and_passes_once_right(tmp_path):
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY_SPEC.format(fraction="1.0"))  # deliberately wrong: 4 steps solve nothing
    args = ["run", str(spec), "--out", str(tmp_path / "runs"), "--report", str(tmp_path / "r.pdf"), "-q", "--check"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 1, r.output
    assert "Error: 1 of 2 expected outcomes deviate, first: all solved fraction: expected 1.00 ± 0.01, " \
           "measured 0/1 = 0.00" in r.output
    study = load_spec(spec, out=tmp_path / "runs")
    assert format_table(*expectation_table(study)) in r.output  # the page's table, line for line
    assert "DEVIATES" in r.output and (tmp_path / "r.pdf").read_bytes().startswith(b"%PDF")
    spec.write_text(TINY_SPEC.format(fraction="0.0"))
    r = CliRunner().invoke(cli, args)  # the run is finished: read, not run again
    assert r.exit_code == 0, r.output
    assert "check: all 2 expected outcomes as measured before" in r.output and "DEVIATES" not in r.output
    assert "1 of 1 runs already finished" in r.output


def test_check_usage_errors(tmp_path):
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY_SPEC.format(fraction="0.0"))
    r = CliRunner().invoke(cli, ["run", str(spec), "--check", "--set", "steps=2"])
    assert r.exit_code == 2 and "--check compares with the spec's [expect] tables" in r.output
    spec.write_text(TINY_SPEC.split("[expect")[0])
    r = CliRunner().invoke(cli, ["run", str(spec), "--check"])
    assert r.exit_code == 2 and "no [expect] table, so --check has nothing to compare" in r.output


def test_seeds_runs_the_spec_with_more_seeds_and_checks_them_all(tmp_path):
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY_SPEC.format(fraction="0.0").replace("measured_seeds = [0]", "measured_seeds = [0, 1]"))
    args = ["run", str(spec), "--out", str(tmp_path / "runs"), "--report", str(tmp_path / "r.pdf"), "-q", "--check"]
    r = CliRunner().invoke(cli, args)  # the spec runs seed 0 of the two measured
    assert r.exit_code == 0, r.output
    assert "0 of 0,1" in r.output and "0/1 = 0.00" in r.output
    r = CliRunner().invoke(cli, args + ["--seeds", "2"])  # seed 0 is kept, seed 1 is run
    assert r.exit_code == 0, r.output
    assert "1 of 2 runs already finished" in r.output and "0/2 = 0.00" in r.output and " of 0,1" not in r.output
    assert sorted(p.name for p in (tmp_path / "runs").glob("s*")) == ["s0", "s1"]
    r = CliRunner().invoke(cli, args + ["--seeds", "0"])
    assert r.exit_code == 2 and "--seeds" in r.output


def test_expected_page_table_clears_its_text_and_fits_the_page():
    """The table's header touched the last of the three lines of text above
    it (the axes began at 0.87 of the page, the text ended near 0.865); a full
    page of rows must still end above the caption."""
    import matplotlib.pyplot as plt

    from seqvg.expect import COLUMNS, PAGE_ROWS

    rows = [["rnn-T100", "solved fraction", "0 of 0,1,2", "0.00 ± 0.01", "0/1 = 0.00", "2026-11-30", "DEVIATES"]]
    for n in (1, PAGE_ROWS):
        (_, fig), *_ = expected_figures(COLUMNS, rows * n, "s")
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        table = fig.axes[0].tables[0].get_window_extent(renderer)
        text = [t for t in fig.texts if t.get_text().startswith("s: ")][0].get_window_extent(renderer)
        assert text.y0 > table.y1 + 2, (n, text, table)  # pixels, y upwards
        caption = [t for t in fig.texts if t.get_text().startswith("What to look for")][0].get_window_extent(renderer)
        assert table.y0 > caption.y1, (n, table, caption)
        plt.close(fig)
