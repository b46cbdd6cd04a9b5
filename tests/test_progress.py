"""The training progress display: steps/s, ETA, latest metric, the long-run note."""

import io

import pytest

from seqvg.config import RunConfig
from seqvg.progress import LONG_RUN_S, Progress


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _drive(steps_per_s, enabled=True, tty=False, steps=5000, n=60):
    clock, stream = _Clock(), io.StringIO()
    p = Progress(RunConfig(cell="gru", length=200, steps=steps), 0, enabled, stream=stream, tty=tty, clock=clock)
    for i in range(1, n + 1):
        clock.now += 30.0 if i == 1 else 1.0 / steps_per_s  # the first step builds the graph
        p.step()
        if i % 50 == 0:
            p.row(f"step {i}/{steps}  val_mse 0.1", "val_mse 0.1")
    p.close()
    return p, stream.getvalue()


def test_progress_warns_once_about_a_long_run():
    p, text = _drive(steps_per_s=4.0)  # 5000 steps at 4/s: about 21 minutes
    assert p.rate() == pytest.approx(4.0)
    notes = [line for line in text.splitlines() if line.startswith("note:")]
    # Estimated at step 20: 4980 steps left / 4 per second = 1245 s.
    assert len(notes) == 1 and "4980 steps left" in notes[0] and "about 21 minutes" in notes[0]
    assert 4980 / 4.0 > LONG_RUN_S


def test_progress_quiet_and_fast_runs_say_nothing_extra():
    assert _drive(steps_per_s=4.0, enabled=False)[1] == ""
    _, text = _drive(steps_per_s=20.0)  # 5000 steps at 20/s: about 4 minutes
    assert "note:" not in text
    assert text.splitlines() == ["step 50/5000  val_mse 0.1  20.0 steps/s"]  # piped: plain lines


def test_progress_on_a_terminal_shows_rate_eta_and_metric():
    p, text = _drive(steps_per_s=20.0, tty=True)
    last = text.rstrip("\n").split("\r")[-1]
    assert "60/5000" in last and "20.0 steps/s" in last and "ETA 4:07" in last and "val_mse 0.1" in last
    assert "\r" in text and text.endswith("\n")
