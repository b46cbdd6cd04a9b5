"""Where a training run is: steps/s, ETA and the latest validation metric, on stderr.

    seqvg train --cell lstm --length 200      # one line, redrawn in place
    seqvg train --cell lstm --length 200 2>log   # piped: one line per logged row
"""

from __future__ import annotations

import math
import sys
import time

from seqvg.config import RunConfig

#: The step at which a run estimates its duration and, past LONG_RUN_S, says so.
ESTIMATE_AT = 20
LONG_RUN_S = 15 * 60


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """Where a run is: steps/s, ETA and the latest validation metric.

    On a terminal one line redrawn in place; otherwise (piped) one plain line
    per logged row; disabled (``-q``) nothing. At step ``ESTIMATE_AT`` a run
    whose remaining steps would take more than ``LONG_RUN_S`` says so once.
    The rate leaves out the first step (it builds the graph).
    """

    def __init__(self, cfg: RunConfig, start: int, enabled: bool, stream=None, tty: bool | None = None,
                 clock=time.perf_counter):
        self.cfg = cfg
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.tty = enabled and (self.stream.isatty() if tty is None else tty)
        self.clock = clock
        self.start = self.step_now = start
        self.t0: float | None = None  # after the first step
        self.text = ""
        self.warned = False
        self.last_draw = -math.inf
        self.width = 0

    def rate(self) -> float | None:
        """Steps per second since the first step, or None before two steps."""
        if self.t0 is None or self.step_now <= self.start + 1:
            return None
        elapsed = self.clock() - self.t0
        return (self.step_now - self.start - 1) / elapsed if elapsed > 0 else None

    def eta(self) -> float | None:
        """Seconds left to the step budget at the current rate (early stop may come sooner)."""
        rate = self.rate()
        return None if not rate else (self.cfg.steps - self.step_now) / rate

    def step(self, n: int = 1) -> None:
        self.step_now += n
        if self.t0 is None:
            self.t0 = self.clock()
        if not self.warned and self.step_now >= self.start + ESTIMATE_AT:
            self.warned = True
            eta = self.eta()
            if self.enabled and eta is not None and eta > LONG_RUN_S:
                self._line(f"note: a long run: {self.cfg.steps - self.step_now} steps left at {self.rate():.1f} "
                           f"steps/s take about {eta / 60:.0f} minutes (less if it solves early); fewer --steps "
                           "or a shorter --length finish sooner")
        if self.tty and self.clock() - self.last_draw >= 0.2:
            self._draw()

    def status(self) -> str:
        """The progress line: step, steps/s, ETA and the latest row's text."""
        cfg, rate, eta = self.cfg, self.rate(), self.eta()
        done = self.step_now / cfg.steps
        bar = "#" * int(10 * done) + "-" * (10 - int(10 * done))
        parts = [f"{cfg.cell} T={cfg.length} [{bar}] {self.step_now}/{cfg.steps}",
                 f"{rate:.1f} steps/s" if rate else "-- steps/s", f"ETA {_clock(eta)}" if eta is not None else "ETA --"]
        if self.text:
            parts.append(self.text)
        return " ".join(parts)

    def _draw(self) -> None:
        import shutil

        self.last_draw = self.clock()
        line = self.status()[: max(20, shutil.get_terminal_size().columns - 1)]
        self.stream.write("\r" + line.ljust(self.width))
        self.stream.flush()
        self.width = len(line)

    def _line(self, text: str) -> None:
        if self.tty and self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.width = 0
        print(text, file=self.stream, flush=True)
        if self.tty:
            self._draw()

    def row(self, text: str, short: str | None = None) -> None:
        """A logged row: ``short`` (else ``text``) joins the line on a terminal;
        piped, ``text`` is printed."""
        self.text = short or text
        if self.tty:
            self._draw()
        elif self.enabled:
            rate = self.rate()
            print(text + (f"  {rate:.1f} steps/s" if rate else ""), file=self.stream, flush=True)

    def close(self) -> None:
        if self.tty and self.width:
            self._draw()
            self.stream.write("\n")
            self.stream.flush()
            self.width = 0

