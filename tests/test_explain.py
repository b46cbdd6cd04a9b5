"""Why an unsolved run did not solve, and what to try."""

import shlex
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from seqvg.cli import cli
from seqvg.config import RunConfig
from seqvg.diagnose import explain, train_command
from seqvg.rundir import Run

from conftest import TINY


def _run(tmp_path, cell="rnn", length=200, rate=-5.0, val=None, status="completed", solved=None, name=None, **kw):
    """A run directory's contents built in memory: a gradient curve decaying
    ``rate`` decades per 100 steps back at the end, and a validation curve."""
    cfg = RunConfig(cell=cell, length=length, **kw).resolved()
    t = np.arange(length)
    h_end = 10.0 ** (rate * (length - 1 - t) / 100.0)
    h = np.stack([np.ones(length), h_end])[:, None].astype(np.float32)
    val = val if val is not None else [1 / 6] * 11
    rows = [{"step": 100 * i, "loss": v, "metric": v, "val_loss": v, "val_metric": v, "grad_norm": 1.0}
            for i, v in enumerate(val)]
    summary = {"status": status, "solved": solved is not None, "solved_at_step": solved, "steps_done": 100,
               "final": {"val_loss": val[-1], "val_metric": val[-1]}}
    probes = {"steps": np.array([0, 100]), "h": h, "x": np.ones((2, length), np.float32)}
    path = tmp_path / (name or f"adding-{cell}-T{length}-s0")
    return Run(path, {"config": cfg.to_dict()}, summary, list(rows[0]), rows, probes)


def _parse(command: str) -> RunConfig:
    """The config `seqvg train` would run for a command line (click's own parser)."""
    from seqvg.cli_options import run_config
    from seqvg.cli_runs import train

    words = shlex.split(command)
    assert words[:2] == ["seqvg", "train"]
    ctx = train.make_context("train", words[2:])
    return run_config(ctx.params)


def test_vanilla_rnn_at_the_baseline_explains_vanishing_and_offers_gated_cells(tmp_path):
    e = explain(_run(tmp_path))
    assert "reaches back only 61 of 200 steps" in e.why and "-5.0 decades/100 steps" in e.why
    assert "first marker" in e.why and "trivial baseline" in e.why
    assert [r.command for r in e.remedies] == [
        "seqvg train --cell lstm --length 200", "seqvg train --cell gru --length 200",
        "seqvg train --cell irnn --length 200"]
    assert e.remedies[0].spec == "tasks/assignment-2-gating.toml"
    assert e.remedies[2].spec == "tasks/remedies.toml"


def test_keras_init_lstm_is_offered_chrono_init_first(tmp_path):
    run = _run(tmp_path, cell="lstm", gate_init="keras", rate=-8.0)
    e = explain(run)
    assert "reaches back only 38 of 200 steps" in e.why
    first = e.remedies[0]
    assert first.command == f"seqvg train --cell lstm --length 200 --chrono 200 --out {run.path}-chrono200"
    assert _parse(first.command) == RunConfig(cell="lstm", length=200).resolved()
    assert any("--steps 10000" in r.command for r in e.remedies)


def test_chrono_lstm_still_falling_gets_more_steps_first(tmp_path):
    val = list(np.linspace(0.17, 0.03, 11))
    run = _run(tmp_path, cell="lstm", rate=-0.5, val=val, name="my-run")
    e = explain(run)
    assert "reaches all 200 steps" in e.why and "still falling" in e.why
    assert e.remedies[0].command == f"seqvg train --cell lstm --length 200 --steps 10000 --out {run.path}-steps10000"
    assert "--clip 1" in e.remedies[1].command and e.remedies[1].spec == "tasks/remedies.toml"
    # The more-steps run keeps the default probe schedule (steps/20), not the old one.
    assert _parse(e.remedies[0].command).probe_every == 500


@pytest.mark.parametrize("val,over", [([0.5, 0.4], "over the last 2 evaluations"),
                                      ([0.5, 0.45, 0.4, 0.38], "over the last 3 evaluations")])
def test_the_loss_is_averaged_over_the_evaluations_there_are(tmp_path, val, over):
    """A run with fewer than three evaluations says how many it averaged."""
    e = explain(_run(tmp_path, cell="lstm", rate=-0.5, val=val))
    assert f"val loss {np.mean(val[-3:]):.3g} {over}" in e.why


def test_exploding_gradient_offers_clipping(tmp_path):
    e = explain(_run(tmp_path, cell="gru", length=100, rate=3.0, val=[0.3] * 11))
    assert "exploding" in e.why
    assert any(r.command.endswith("--clip 1 --out " + str(tmp_path / "adding-gru-T100-s0-clip1"))
               for r in e.remedies)


def test_plateau_at_the_partial_solution_is_named(tmp_path):
    e = explain(_run(tmp_path, cell="rnn", length=100, rate=-4.0, val=[1 / 12] * 11))
    assert "1/12" not in e.why and "0.0833 plateau" in e.why and "near marker" in e.why


def test_solved_and_unfinished_runs_need_no_explanation(tmp_path):
    assert explain(_run(tmp_path, val=[0.17] * 10 + [0.005], solved=1000)) is None
    assert explain(_run(tmp_path, status="diverged")) is None
    assert explain(_run(tmp_path, status="interrupted")) is None


@pytest.mark.parametrize("kw", [
    dict(cell="lstm", length=300),
    dict(cell="gru", task="copy", length=50, gate_init="keras", clip=1.0, steps=200),
    dict(cell="rnn", length=50, activation="relu", layers=2, residual=True, lr=3e-4, early_stop=False),
    dict(cell="lstm", forget_bias=3.0, probe_every=7, seed=4),
])
def test_train_command_runs_the_same_config(kw):
    cfg = RunConfig(**kw).resolved()
    assert _parse(train_command(cfg)) == cfg


def test_cli_summary_and_diagnose_explain_an_unsolved_run(tmp_path):
    out = tmp_path / "adding-rnn-T10-s0"
    args = []
    for k, v in {**TINY, "cell": "rnn"}.items():
        args += [f"--{k.replace('_', '-')}", str(v)]
    r = CliRunner().invoke(cli, ["train", *args, "--out", str(out), "-q"])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    why = [line for line in lines if line.startswith("why       not solved: ")]
    tries = [line for line in lines if "# " in line and "seqvg train" in line]
    assert len(why) == 1 and 2 <= len(tries) <= 3
    assert all("see tasks/" in line for line in tries)
    d = CliRunner().invoke(cli, ["diagnose", str(out)])
    assert d.exit_code == 0 and "- why not solved: " in d.output and "- try: seqvg train " in d.output


def test_remedy_commands_paste_into_a_shell(tmp_path):
    """A run directory with a space, a custom cell's --cell-arg values and an
    lr of many digits: diagnose's and the report's commands give the same
    config back. They wrote ``--out my runs/x-clip1`` (three words),
    ``--task-arg keep_bias=1.0`` for a cell argument, ``flag=True`` (refused:
    TOML spells it true) and ``--lr 0.00123457``."""
    from seqvg.report_text import train_command as report_command

    cell = tmp_path / "my_gru.py"
    cell.write_text((Path(__file__).parents[1] / "docs" / "examples" / "my_gru.py").read_text())
    cfg = RunConfig(cell=f"{cell}:MyGRU", length=30, lr=0.00123456789,
                    cell_args={"keep_bias": 1.0, "flag": True, "name": "3", "sizes": [1, "a b"]}).resolved()
    command = train_command(cfg, str(tmp_path / "my runs" / "x-clip1"))
    words = shlex.split(command)
    assert words[-2:] == ["--out", str(tmp_path / "my runs" / "x-clip1")]
    assert "--task-arg" not in words and "flag=true" in words and 'name="3"' in words
    assert _parse(" ".join(shlex.quote(w) for w in words[:-2])) == cfg
    assert _parse(report_command(cfg.to_dict())) == cfg
    recall = RunConfig(task="recall", task_args={"pairs": 3}, length=7, cell="rnn").resolved()
    assert "--task-args" not in report_command(recall.to_dict())
    assert _parse(report_command(recall.to_dict())) == recall


def test_a_gradient_that_fades_within_the_horizon_is_not_said_to_arrive(tmp_path):
    """T=20 at -8 decades/100 steps: the gradient stays above the horizon's
    1e-3 (g0/gT 0.03) but falls 1.5 decades. diagnose's verdict says
    "vanishing"; the explanation said "the gradient reaches all 20 steps, so
    the signal arrives". Now it says how much it fades."""
    e = explain(_run(tmp_path, cell="rnn", length=20, rate=-8.0))
    assert "reaches all 20 steps but fades on the way: -1.5 decades over them" in e.why, e.why
    assert "first marker sends a weak learning signal" in e.why and "signal arrives" not in e.why
    e = explain(_run(tmp_path, cell="rnn", length=20, rate=-2.0, name="mild"))
    assert "reaches all 20 steps (-2.0 decades/100 steps), so the signal arrives" in e.why, e.why


def test_a_run_with_only_its_untrained_probe_has_no_final_decay():
    """A run that diverged at step 2 has one probe, the untrained one;
    summary.json's decay "final" repeated it and `seqvg train` printed it
    as "gradient final decay 47.2 ...", as if measured after training."""
    from seqvg.diagnose import format_run_summary
    from seqvg.probelog import ProbeLog, ProbeRecord

    h = np.array([10.0 ** (0.5 * (19 - np.arange(20)))])
    log = ProbeLog([ProbeRecord(0, h, h[0], 1.0, None, {}, None)])
    assert log.decay()["final"] is None and log.decay()["init"]["horizon"] == 20
    log.records.append(ProbeRecord(10, h, h[0], 1.0, None, {}, None))
    assert log.decay()["final"] == log.decay()["init"]
    summary = {"status": "diverged", "steps_done": 2, "wall_s": 0.5, "final": {"val_loss": 1.0, "val_metric": 1.0},
               "metric_name": "mse", "baseline": 1 / 6, "decay": {"init": log.decay()["init"], "final": None}}
    lines = format_run_summary(Path("run"), summary).splitlines()
    assert lines[-1] == "gradient  final -  (no probe after the untrained one)", lines
