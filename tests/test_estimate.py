"""The run-time estimate a large study states before it starts, against a measured time."""

import re
from pathlib import Path

from click.testing import CliRunner

from seqvg import study
from seqvg.cli import cli

TOUR = Path(__file__).resolve().parents[1] / "tasks" / "tour.toml"


def test_large_study_estimate_matches_the_tour_s_measured_time(tmp_path, monkeypatch):
    """tasks/tour.toml's comment gives its wall time with --workers 2 on an
    idle 2-core machine; six seeds of it are six times that work (108 runs,
    so `seqvg run` states its estimate and, without --yes and a terminal,
    stops). The estimate assumes every run uses its whole step budget, where
    the tour's runs stop early when solved, so it may err high, not low."""
    monkeypatch.setattr(study.os, "cpu_count", lambda: 2)  # the machine it was measured on
    text = TOUR.read_text()
    minutes, seconds = re.search(r"Time: (\d+) min (\d+) s wall", text).groups()
    measured = 6 * (60 * int(minutes) + int(seconds))
    spec = tmp_path / "tour6.toml"
    spec.write_text(text.replace("\nseeds = 1\n", "\nseeds = 6\n"))
    r = CliRunner().invoke(cli, ["run", str(spec), "--workers", "2", "--out", str(tmp_path / "runs")])
    assert r.exit_code == 2, r.output
    said = re.search(r"tour: 108 runs to do, roughly (\d+) minutes with --workers 2", r.output)
    assert said, r.output
    assert measured <= 60 * int(said.group(1)) <= 1.5 * measured
    assert not (tmp_path / "runs").exists()
