"""The study API a notebook uses (seqvg.study): grids, KEY=VALUE texts, the
checks and the confirm hook before any run, the summary table. No training."""

import re
from pathlib import Path

import pytest

from seqvg import memory, rundir
from seqvg.config import ConfigError
from seqvg.study import grid_study, parse_assignments, run_study, summary_table, workload


def test_parse_assignments_reads_toml_values():
    assert parse_assignments(["steps=300", "lr=1e-3", "early-stop=false", "cell=lstm", "x=[1, 2]", "e="]) == \
        {"steps": 300, "lr": 1e-3, "early_stop": False, "cell": "lstm", "x": [1, 2], "e": ""}
    assert parse_assignments(["keep-bias=1"], dashes=False) == {"keep-bias": 1}


@pytest.mark.parametrize("items, kw, message", [
    (["steps"], {}, "expected KEY=VALUE, got 'steps'"),
    (["=3"], {}, "expected KEY=VALUE, got '=3'"),
    (["n="], dict(empty=False), "expected KEY=VALUE, got 'n='"),
    (["a b=1"], dict(identifiers=True), "expected KEY=VALUE with KEY an argument name, got 'a b=1'"),
    # As text, Python's False would be a true value; a broken array would pass as a string.
    (["gate=False"], {}, "'gate=False': TOML spells it false"),
    (["gate=True"], {}, "'gate=True': TOML spells it true"),
    (["gate=None"], {}, "'gate=None': TOML has no None: leave it out to get the default"),
    (["sizes=[1, 2"], {}, "'sizes=[1, 2': not a TOML value (Unclosed array (at end of document))"),
    (['act="relu'], {}, "'act=\"relu': not a TOML value (Unterminated string (at end of document))"),
])
def test_parse_assignments_names_the_bad_item(items, kw, message):
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        parse_assignments(items, **kw)


def test_grid_study_is_the_product_of_grid_and_seeds(tmp_path):
    study = grid_study("sweep", {"cell": ["rnn", "gru"], "length": [5, 9]}, 2,
                       {"units": 4, "seed": 3, "cell": "lstm"}, tmp_path / "s")
    assert study.run_names == ("rnn-T5-s3", "rnn-T5-s4", "rnn-T9-s3", "rnn-T9-s4",
                               "gru-T5-s3", "gru-T5-s4", "gru-T9-s3", "gru-T9-s4")
    assert {c.units for c in study.configs} == {4} and study.report is None
    assert [c.length for c in study.configs[:4]] == [5, 5, 9, 9]


@pytest.mark.parametrize("grid, seeds, options, option", [
    ({"cell": []}, 1, {}, "cell"),
    ({"cell": ["rnn"]}, 0, {}, "seeds"),
    ({"cell": ["rnn", "nope"]}, 1, {}, "cell"),
    ({"cell": ["rnn"]}, 1, {"colour": 1}, "colour"),
])
def test_grid_study_errors_name_the_option(grid, seeds, options, option, tmp_path):
    with pytest.raises(ConfigError) as e:
        grid_study("x", grid, seeds, options, tmp_path)
    assert e.value.option == option


def _tiny(out: Path):
    return grid_study("t", {"cell": ["rnn"], "length": [5, 6]}, 1, {"units": 4, "steps": 3}, out)


def test_confirm_sees_the_workload_and_can_stop_before_anything_is_written(tmp_path):
    study = _tiny(tmp_path / "s")
    seen = []

    def no(runs, seconds):
        seen.append((runs, seconds))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_study(study, confirm=no)
    assert seen == [workload(study)] and seen[0][0] == 2 and seen[0][1] > 0
    assert not (tmp_path / "s").exists()


def test_run_study_checks_every_run_s_memory_first_in_the_caller_s_words(tmp_path, monkeypatch):
    monkeypatch.setattr(memory, "physical_memory_bytes", lambda: 2**30)  # a 1 GiB machine
    study = grid_study("t", {"length": [5, 6]}, 1, {"units": 4, "val_size": 10**7}, tmp_path / "s")
    with pytest.raises(ConfigError, match="^needs about .*make it smaller with --set val_size=") as e:
        run_study(study, names={"val_size": "--set val_size=..."},
                  confirm=lambda *a: pytest.fail("asked before the checks"))
    assert e.value.option is None
    assert not (tmp_path / "s").exists()


def test_run_study_refuses_an_out_holding_a_user_s_file(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "notes.txt").write_text("mine")
    with pytest.raises(rundir.NotARunError, match="notes.txt: not written by seqvg"):
        run_study(_tiny(tmp_path / "s"))
    assert [p.name for p in (tmp_path / "s").iterdir()] == ["notes.txt"]


def test_summary_table_of_a_probe_only_study(tmp_path):
    study = _tiny(tmp_path / "s")
    study = type(study)(**{**study.__dict__, "probe_only": True})
    summary = {"rate_per_100": -1.5, "horizon": 4, "ratio": 0.01, "underflow": 0}
    for cfg, d in zip(study.configs, study.run_dirs()):
        rundir.write_json(d / rundir.PROBE, {"config": cfg.to_dict(), "loss": 0.2, "summary": summary, "h": [[1.0]]})
    lines = summary_table(study).splitlines()
    assert lines[0].split() == ["run", "decay/100", "horizon", "g0/gT", "underflow"]
    assert [line.split()[0] for line in lines[1:]] == list(study.run_names)
    assert lines[1].split()[1:] == ["-1.5", "4", "0.01", "0"]


def test_make_backend_checks_the_options_that_go_together(monkeypatch):
    import sys

    from seqvg.ray_backend import make_backend

    assert make_backend("local", given={"workers"}) is None
    with pytest.raises(ConfigError, match="^--address, --gpus-per-run need --backend ray$"):
        make_backend("local", given={"gpus_per_run", "address", "workers"})
    with pytest.raises(ConfigError, match="^--workers is for --backend local"):
        make_backend("ray", given={"workers"})
    with pytest.raises(ConfigError, match="^must be at least 1, got 0$") as e:
        make_backend("ray", cpus_per_run=0)
    assert e.value.option == "cpus_per_run"
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(ImportError, match=r"pip install 'seqvg\[ray\]'"):
        make_backend("ray")


def test_verdict_of_a_check_table():
    from seqvg.expect import COLUMNS, Verdict

    ok = ["all", "solved fraction", "0", "0.00 ± 0.01", "0/1 = 0.00", "2026-11-30", "OK"]
    bad = ["T25", "solved at step", "0,1", "<= 2500", "never", "2026-11-30", "DEVIATES"]
    assert Verdict(COLUMNS, [ok, ok]).ok
    assert Verdict(COLUMNS, [ok, ok]).summary() == "check: all 2 expected outcomes as measured before"
    v = Verdict(COLUMNS, [ok, bad])
    assert not v.ok and v.deviating == [bad]
    assert v.summary() == "1 of 2 expected outcomes deviate, first: T25 solved at step: expected <= 2500, measured never"
    assert v.table().splitlines()[0].split()[:2] == ["run", "outcome"]


def test_results_writer_writes_the_csv_every_run_and_the_figure_at_most_every_n_seconds(tmp_path, monkeypatch):
    from seqvg import results

    calls = []
    monkeypatch.setattr(results, "write_results", lambda study, figure=True: calls.append(figure))
    slow = results.ResultsWriter(_tiny(tmp_path / "s"), every=3600)
    slow.run_finished()
    slow.run_finished()
    fast = results.ResultsWriter(_tiny(tmp_path / "s"), every=0)
    fast.run_finished()
    assert calls == [False, False, True]


def test_parse_assignments_refuses_a_key_given_twice():
    """`--task-arg vocab=8 --task-arg vocab=16` (--cell-arg, --set alike)
    used 16 without a word; `eval-every` and `eval_every` are one key."""
    with pytest.raises(ValueError, match=re.escape("vocab given more than once ('vocab=16' after vocab=8); "
                                                   "give it once")):
        parse_assignments(["vocab=8", "vocab=16"], dashes=False)
    with pytest.raises(ValueError, match="eval_every given more than once"):
        parse_assignments(["eval-every=10", "eval_every=20"])
    from click.testing import CliRunner

    from seqvg.cli import cli

    r = CliRunner().invoke(cli, ["generate", "recall", "-T", "5", "--task-arg", "vocab=8", "--task-arg", "vocab=16",
                                 "-o", "never.npz"])
    assert r.exit_code == 2 and "Invalid value for '--task-arg': vocab given more than once" in r.output, r.output
