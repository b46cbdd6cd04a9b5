"""Expected outcomes of a study (a spec's ``[expect]`` tables) and their check.

    seqvg run tasks/assignment-1-vanishing.toml --check

A spec may state, per run point (a run's directory name without its seed:
``T25``, ``lstm-fb3``, ``rnn-T100``; ``all`` when the spec has neither grid
nor variants), the outcomes that were measured, with the seeds and the date::

    [expect.T25]
    measured_seeds = [0, 1, 2]
    measured_on = "2026-11-30"
    solved_fraction = 1.0                          # or { value = 0.67, tolerance = 0.34 }
    solved_before = 2500                           # median step at which solved <= 2500
    final_val_metric = [0.005, 0.0099]             # median over the seeds, a range
    init_decay = [-2.6, -2.0]                      # median decades per 100 steps at init

Every outcome is taken over the runs of ``measured_seeds`` only: a fraction
of seeds, or a median (the spread, min to max, is shown beside it).

A spec that runs one seed (the demo, the tour) can still rest its claim on
several: ``measured_seeds`` may name seeds the spec does not run (measured
with ``seqvg run --seeds N``), and ``check`` then takes the outcome over the seeds
that ran. Such an expectation must hold seed by seed: its solved_fraction is
0 or 1, and its ranges cover every measured seed, not just their median.
``check``
compares them with what the study's run directories hold, one line per
outcome; the console table of ``seqvg run --check`` and the report's
"Expected and measured" page are both ``check_table``.
"""

from __future__ import annotations

import datetime
import math
import re
import textwrap
from dataclasses import dataclass, replace

#: Outcomes an [expect] table may state, in the order lines are shown.
OUTCOMES = ("solved_fraction", "solved_before", "final_val_metric", "init_decay")
#: Outcomes of a trained model (a probe-only study has none).
TRAINING_OUTCOMES = ("solved_fraction", "solved_before", "final_val_metric")
#: Keys that say what was measured.
META = ("measured_seeds", "measured_on")
#: Tolerance of a solved_fraction written as a plain number (two decimals: 0.67 for 2/3).
FRACTION_TOLERANCE = 0.01
#: The name of the single point of a spec with neither grid nor variants.
ALL = "all"
#: Columns of ``check_table``.
COLUMNS = ["run", "outcome", "seeds", "expected", "measured", "measured on", "result"]


class ExpectError(ValueError):
    """An [expect] table that cannot be checked; the message is one line."""


@dataclass(frozen=True)
class Expectation:
    """One expected outcome of one run point.

    Attributes:
        point: the run point (run directory name without ``-sN``).
        outcome: one of OUTCOMES.
        low, high: the closed interval the measured value must lie in.
        shown: the expectation as written, for tables ("1 ± 0.01", "<= 2500").
        seeds: the seeds it was measured with.
        measured_on: the date it was measured (YYYY-MM-DD).
        checked: the seeds it is checked on: those of ``seeds`` that the
            spec runs (all of them, unless the spec runs fewer seeds).
    """

    point: str
    outcome: str
    low: float
    high: float
    shown: str
    seeds: tuple[int, ...]
    measured_on: str
    checked: tuple[int, ...] = ()

    def __post_init__(self):
        if not self.checked:
            object.__setattr__(self, "checked", self.seeds)


@dataclass(frozen=True)
class Line:
    """One line of the check: an expectation, what was measured, whether it holds."""

    expectation: Expectation
    measured: str
    ok: bool
    metric_name: str | None = None  # the point's own task metric (a spec may mix tasks)


def point_of(run_name: str, seed: int) -> str:
    """The run point of a run directory name: the name without its seed part."""
    suffix = f"s{seed}"
    if run_name == suffix:
        return ALL
    return run_name[: -len(suffix) - 1] if run_name.endswith("-" + suffix) else run_name


def points(run_names, seeds) -> dict[str, list[int]]:
    """Run point -> the seeds of its runs, in spec order."""
    out: dict[str, list[int]] = {}
    for name, seed in zip(run_names, seeds):
        out.setdefault(point_of(name, seed), []).append(seed)
    return out


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _g(v: float) -> str:
    return f"{v:.3g}"


def _parse_one(point: str, key: str, value, where: str, seeds: tuple[int, ...], on: str) -> Expectation:
    if key == "solved_fraction":
        tol = FRACTION_TOLERANCE
        if isinstance(value, dict):
            extra = sorted(set(value) - {"value", "tolerance"})
            if extra or "value" not in value:
                raise ExpectError(f"{where}: expected a fraction or {{ value = F, tolerance = D }}, got {value!r}")
            value, tol = value["value"], value.get("tolerance", FRACTION_TOLERANCE)
            if not _number(tol) or tol < 0:
                raise ExpectError(f"{where}: tolerance must be a number >= 0, got {tol!r}")
        if not _number(value) or not 0 <= value <= 1:
            raise ExpectError(f"{where}: expected a fraction between 0 and 1, got {value!r}")
        return Expectation(point, key, max(0.0, value - tol), min(1.0, value + tol), f"{value:.2f} ± {tol:g}",
                           seeds, on)
    if key == "solved_before":
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ExpectError(f"{where}: expected a step (an int >= 1), got {value!r}")
        return Expectation(point, key, -math.inf, float(value), f"<= {value}", seeds, on)
    # final_val_metric, init_decay: a range [low, high]
    if not (isinstance(value, list) and len(value) == 2 and all(_number(v) for v in value)
            and value[0] <= value[1]):
        raise ExpectError(f"{where}: expected a range [low, high] of two numbers with low <= high, got {value!r}")
    return Expectation(point, key, float(value[0]), float(value[1]), f"{_g(value[0])} to {_g(value[1])}", seeds, on)


def parse_expect(doc, run_points: dict[str, list[int]], probe_only: bool, where) -> tuple[Expectation, ...]:
    """Validates a spec's ``expect`` value against its runs.

    Args:
        doc: the parsed TOML value of ``expect`` (a table of tables), or None.
        run_points: ``points(...)`` of the study's runs.
        probe_only: the study trains nothing (only init_decay can be expected).
        where: ``where(key, table)`` -> "file:line: [table] key" for messages.

    Raises:
        ExpectError: one line naming the table and key.
    """
    if doc is None:
        return ()
    if not isinstance(doc, dict):
        raise ExpectError(f"{where('expect')}: expected [expect.POINT] tables")
    out = []
    for point, table in doc.items():
        name = f"expect.{point}" if re.fullmatch(r"[A-Za-z0-9_-]+", point) else f'expect."{point}"'
        if not isinstance(table, dict):
            raise ExpectError(f"{where(point, 'expect')}: expected a table [{name}]")
        at = where("", name).rstrip()  # no such key: the table's header line
        if point not in run_points:
            known = ", ".join(run_points)
            raise ExpectError(f"{at}: no run point {point!r} in this spec (a run's directory "
                              f"name without -sN); its points: {known}")
        for key in table:
            if key not in OUTCOMES + META:
                raise ExpectError(f"{where(key, name)}: unknown key; an [expect] table takes "
                                  + ", ".join(OUTCOMES + META))
        seeds = table.get("measured_seeds")
        if not (isinstance(seeds, list) and seeds and all(isinstance(s, int) and not isinstance(s, bool)
                                                          for s in seeds)) or len(set(seeds)) != len(seeds):
            raise ExpectError(f"{where('measured_seeds', name)}: required: the seeds the outcomes were measured "
                              f"with, a list of distinct ints, got {seeds!r}")
        checked = tuple(s for s in seeds if s in run_points[point])
        if not checked:
            raise ExpectError(f"{where('measured_seeds', name)}: none of the seeds {seeds} is among this spec's "
                              f"seeds {run_points[point]}")
        on = table.get("measured_on")
        if type(on) is datetime.date:  # TOML's own date, measured_on = 2026-11-30 (unquoted): the same day
            on = on.isoformat()
        if not (isinstance(on, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", on)):
            shown = on.isoformat() if isinstance(on, (datetime.date, datetime.time)) else repr(on)
            raise ExpectError(f"{where('measured_on', name)}: required: the date measured, \"YYYY-MM-DD\", "
                              f"got {shown}")
        stated = [k for k in OUTCOMES if k in table]
        if not stated:
            raise ExpectError(f"{at}: states no outcome; give one of "
                              + ", ".join(OUTCOMES))
        for key in stated:
            if probe_only and key in TRAINING_OUTCOMES:
                raise ExpectError(f"{where(key, name)}: a probe-only study trains nothing; it can expect only "
                                  "init_decay")
            e = _parse_one(point, key, table[key], where(key, name), tuple(seeds), on)
            fraction = table[key]["value"] if isinstance(table[key], dict) else table[key]
            if len(checked) < len(seeds) and key == "solved_fraction" and fraction not in (0, 1):
                # A fraction of the measured seeds says nothing about one of them.
                raise ExpectError(f"{where(key, name)}: measured on seeds {seeds} but checked on {list(checked)} "
                                  f"(the seeds this spec runs), so it must hold seed by seed: 0 or 1, got {fraction!r}")
            out.append(replace(e, checked=checked))
    return tuple(out)


# -- checking -------------------------------------------------------------------
def _median(values: list[float]) -> float:
    values = sorted(values)
    n = len(values)
    return values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2


def _measure(e: Expectation, rows: list[dict], probe_only: bool) -> tuple[float | None, str]:
    """The measured value of ``e`` over its seeds' rows and how it is shown."""
    if e.outcome == "solved_fraction":
        solved = [r["solved"] in (True, "True") for r in rows]
        return sum(solved) / len(solved), f"{sum(solved)}/{len(solved)} = {sum(solved) / len(solved):.2f}"
    if e.outcome == "solved_before":
        steps = [r["solved_at_step"] if r["solved"] in (True, "True") and r["solved_at_step"] is not None
                 else math.inf for r in rows]
        m = _median(steps)
        show = lambda s: "never" if s == math.inf else f"{s:g}"  # noqa: E731
        if len(steps) == 1:
            return m, show(m)
        return m, f"median {show(m)} ({show(min(steps))} to {show(max(steps))})"
    column = {"final_val_metric": "final_val_metric",
              "init_decay": "h_rate_per_100" if probe_only else "init_rate_per_100"}[e.outcome]
    values = [float(r[column]) for r in rows if r.get(column) is not None and math.isfinite(float(r[column]))]
    if not values:
        return None, "none finite"
    m = _median(values)
    fmt = "{:+.2f}" if e.outcome == "init_decay" else "{:.3g}"
    if len(values) == 1:
        return m, fmt.format(m)
    return m, f"median {fmt.format(m)} ({fmt.format(min(values))} to {fmt.format(max(values))})"


def check(expectations, rows: list[dict], probe_only: bool) -> list[Line]:
    """Compares each expectation with the results rows (``results.results_rows``).

    A point whose measured seeds have not all finished deviates ("not run").
    """
    by_run: dict[tuple[str, int], dict] = {}
    for r in rows:
        by_run[(point_of(r["run"], int(r["seed"])), int(r["seed"]))] = r
    lines = []
    for e in expectations:
        mine = [by_run.get((e.point, s)) for s in e.checked]
        if any(r is None for r in mine):
            done = sum(r is not None for r in mine)
            lines.append(Line(e, f"not run ({done} of {len(mine)} seeds finished)", False))
            continue
        value, shown = _measure(e, mine, probe_only)
        lines.append(Line(e, shown, value is not None and e.low <= value <= e.high,
                          next((r["metric_name"] for r in mine if r.get("metric_name")), None)))
    return lines


def outcome_name(outcome: str, metric_name: str = "metric") -> str:
    """How an outcome is named in the table."""
    return {"solved_fraction": "solved fraction", "solved_before": "solved at step",
            "final_val_metric": f"final val {metric_name}", "init_decay": "decay/100 at init"}[outcome]


def check_table(lines: list[Line], metric_name: str = "metric") -> tuple[list[str], list[list[str]]]:
    """The expected-vs-measured table (COLUMNS, rows of strings) of ``check``'s lines.

    The console (``seqvg run --check``) and the report page show exactly this.
    """
    rows = []
    for line in lines:
        e = line.expectation
        seeds = ",".join(map(str, e.checked))
        if e.checked != e.seeds:
            seeds += " of " + ",".join(map(str, e.seeds))
        rows.append([e.point, outcome_name(e.outcome, line.metric_name or metric_name), seeds, e.shown,
                     line.measured, e.measured_on, "OK" if line.ok else "DEVIATES"])
    return COLUMNS, rows


@dataclass(frozen=True)
class Verdict:
    """A check table (``check_table``) and what it comes to.

    Attributes:
        columns, rows: the expected-vs-measured table; a row's last column is
            OK or DEVIATES.
    """

    columns: list[str]
    rows: list[list[str]]

    @property
    def deviating(self) -> list[list[str]]:
        """The rows whose outcome is not what was measured before."""
        return [r for r in self.rows if r[-1] != "OK"]

    @property
    def ok(self) -> bool:
        return not self.deviating

    def table(self) -> str:
        """The table as plain text (what ``seqvg run --check`` prints)."""
        return format_table(self.columns, self.rows)

    def summary(self) -> str:
        """One line: every outcome as measured before, or how many deviate and the first."""
        bad = self.deviating
        if not bad:
            return f"check: all {len(self.rows)} expected outcomes as measured before"
        return (f"{len(bad)} of {len(self.rows)} expected outcomes deviate, first: {bad[0][0]} {bad[0][1]}: "
                f"expected {bad[0][3]}, measured {bad[0][4]}")


def format_table(columns: list[str], rows: list[list[str]]) -> str:
    """A plain-text table with aligned columns."""
    widths = [max(len(str(x)) for x in col) for col in zip(columns, *rows)]
    return "\n".join("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip() for row in [columns, *rows])


#: Table lines per report page.
PAGE_ROWS = 24


def expected_figures(columns: list[str], rows: list[list[str]], study_name: str) -> list[tuple[str, object]]:
    """The report's "Expected and measured" page(s): (title, matplotlib Figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from seqvg.report_view import PAGE, caption

    deviating = sum(r[-1] != "OK" for r in rows)
    chunks = [rows[i:i + PAGE_ROWS] for i in range(0, len(rows), PAGE_ROWS)] or [[]]
    out = []
    for part, chunk in enumerate(chunks):
        fig = plt.figure(figsize=PAGE)
        # Below the three lines of text at 0.915 (they reach about 0.865): at 0.87 the table's header touched them.
        ax = fig.add_axes([0.04, 0.1, 0.92, 0.74])
        ax.axis("off")
        if chunk:
            table = ax.table(cellText=chunk, colLabels=columns, loc="upper center", cellLoc="center")
            table.auto_set_font_size(False)
            table.set_fontsize(9.5)
            table.auto_set_column_width(list(range(len(columns))))
            table.scale(1, 1.45)
            for i, row in enumerate(chunk, start=1):
                if row[-1] != "OK":
                    for j in range(len(columns)):
                        table[i, j].set_facecolor("#f8d0c8")
                    table[i, len(columns) - 1].get_text().set_weight("bold")
        verdict = (f"all {len(rows)} expected outcomes as measured before" if not deviating
                   else f"{deviating} of {len(rows)} expected outcomes DEVIATE from what was measured before")
        fig.text(0.04, 0.915, textwrap.fill(
            f"{study_name}: {verdict}. Each outcome is taken over the seeds listed: a fraction of them, or the "
            "median with the seeds' range (min to max) in brackets." + (
                " '0 of 0,1,2': the spec ran seed 0 of the seeds the outcome was measured on, and the outcome "
                "holds for each of them." if any(" of " in r[2] for r in rows) else ""),
            140), fontsize=10, color="0.15", va="top")
        caption(fig, "a shaded row DEVIATES from the spec's [expect] table (measured on the date shown, with "
                      "those seeds; 'solved at step' counts an unsolved seed as never). The same seed gives the same "
                      "numbers on one machine, but other numerics (another CPU, a new fast path) can move a seed near "
                      "the edge of the budget: hence outcomes over several seeds.")
        title = "Expected and measured" + (f" ({part + 1}/{len(chunks)})" if len(chunks) > 1 else "")
        fig.suptitle(title, fontsize=14, weight="bold")
        out.append((title, fig))
    return out
