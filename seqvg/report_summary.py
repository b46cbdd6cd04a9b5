"""The report's closing pages: the summary table with each run's directory,
settings and diagnosis, continued on Diagnosis pages when it does not fit.

    seqvg report runs/demo -o reports/demo.pdf
"""

from __future__ import annotations

import math

from seqvg.decay import decay_summary
from seqvg.report_text import SETTINGS_COLUMNS, diagnosis_lines, settings_rows, summary_columns, summary_rows
from seqvg.report_view import CAPTION_ROOM, caption, draw_table, view
from seqvg.rundir import Run

#: Summary table rows per page.
SUMMARY_ROWS = 26
#: Height (figure fraction) of a summary table row and of a diagnosis line, and the table's top.
SUMMARY_ROW_H = 0.0235
DIAGNOSIS_LINE_H = 0.0155
SUMMARY_TOP = 0.915
#: Diagnosis lines on a page of their own.
DIAGNOSIS_LINES = 56


def summary_page(fig, runs: list[Run], part: int = 0) -> None:
    """The summary table (with each run's directory), SUMMARY_ROWS runs a page;
    under the last part's table the diagnosis of as many runs as fit (the
    rest follow on Diagnosis pages)."""
    v = view(runs)
    cols = summary_columns(runs) + ["run directory"]
    rows = [row + [r.name] for row, r in zip(summary_rows(runs), v.runs)]
    n_pages, parts = summary_layout(runs)
    fig.text(0.04, 0.935, "decay: decades per 100 steps back in time (negative = vanishing); "
             "horizon: steps back until ||dL/dh_t|| < 1e-3 of the last step's", fontsize=8.5, color="0.3")
    bottom = draw_table(fig, SUMMARY_TOP, cols, rows[part * SUMMARY_ROWS:(part + 1) * SUMMARY_ROWS], fontsize=8.5,
                    left=0.04, width=0.92, scale=1.3)
    if part == n_pages - 1 and parts[0]:
        more = " (continued on the next pages)" if len(parts) > 1 else ""
        fig.text(0.04, bottom - 0.025, "Diagnosis" + more, fontsize=12, weight="bold", va="top")
        lines = diagnosis_lines([v.runs[i] for i in parts[0]], [v.labels[i] for i in parts[0]])
        _diagnosis_text(fig, lines, bottom - 0.06)
        bottom -= 0.06 + DIAGNOSIS_LINE_H * len(lines)
    settings = settings_rows(runs)
    if part == n_pages - 1 and bottom - 0.08 - SUMMARY_ROW_H * (len(settings) + 1) > CAPTION_ROOM + 0.01:
        fig.text(0.04, bottom - 0.025, "Settings per run", fontsize=12, weight="bold", va="top")
        draw_table(fig, bottom - 0.06, SETTINGS_COLUMNS, settings, fontsize=8, left=0.04, width=0.92, scale=1.2)
    fig.suptitle("Summary" + (f" ({part + 1}/{n_pages})" if n_pages > 1 else ""), fontsize=14, weight="bold")
    ends = [(decay_summary(r.probes["h"][-1][0])["horizon"], int(r.probes["h"].shape[-1])) for r in v.runs]
    whole = sum(h is not None and h >= t for h, t in ends)
    caption(fig, f"a horizon shorter than the sequence means its first inputs send no learning signal: {whole} of "
             f"{len(runs)} runs end with the gradient reaching the whole sequence; the diagnosis says why in words "
             "and what to try.")


def summary_layout(runs: list[Run]) -> tuple[int, list[list[int]]]:
    """How many summary pages, and the runs (indices in report order) whose
    diagnosis goes under the last summary table, then on each Diagnosis page
    (whole runs, as many as fit)."""
    v = view(runs)
    n_pages = math.ceil(len(runs) / SUMMARY_ROWS)
    last_rows = len(runs) - (n_pages - 1) * SUMMARY_ROWS
    room = int((SUMMARY_TOP - SUMMARY_ROW_H * (last_rows + 1) - 0.06 - CAPTION_ROOM - 0.02) / DIAGNOSIS_LINE_H)
    parts, used = [[]], 0
    for i in range(len(v.runs)):
        n = len(diagnosis_lines(v.runs[i:i + 1], v.labels[i:i + 1]))
        if used + n > room and (parts[-1] or len(parts) == 1):
            parts.append([])
            used, room = 0, DIAGNOSIS_LINES
        parts[-1].append(i)
        used += n
    return n_pages, parts


def _diagnosis_text(fig, lines: list[str], top: float) -> None:
    fig.text(0.04, top, "\n".join(lines), fontsize=7.5, va="top", family="monospace", linespacing=1.25)


def diagnosis_page(fig, runs: list[Run], part: int) -> None:
    v = view(runs)
    idx = summary_layout(runs)[1][part + 1]
    _diagnosis_text(fig, diagnosis_lines([v.runs[i] for i in idx], [v.labels[i] for i in idx]), 0.92)
    fig.suptitle(f"Diagnosis per run, continued ({part + 1}/{len(summary_layout(runs)[1]) - 1})", fontsize=14,
                 weight="bold")
    caption(fig, "each verdict comes from the run's own numbers (decay rate, horizon, gates, loss against the "
             "trivial baseline); an unsolved run says why and which commands to try next.")
