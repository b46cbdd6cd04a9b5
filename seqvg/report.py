"""Multi-page PDF report (and PNG figures) from run directories alone.

    seqvg report runs/demo -o reports/demo.pdf --png reports/demo-png

Pages, in the order of the story: the title page (the outcome per run or
group, three findings computed from the runs, the pages that follow, the
commands that made the runs); a study page when the runs differ by more
than their seed (outcome and gradient decay rate against what varies, every
seed a point); learning curves (with the task's baselines), gradient flow
at init and end, why it flows (carry gates, per-step gain, the spectrum;
seqvg.why), gradient flow over training (heatmaps on one shared colour
scale), the weight graph, and the summary table with each run's diagnosis
in words (on further pages when it does not fit). Every page ends with a
"What to look for" caption, with the runs' numbers where it states any.
Every run is named by the options that tell it apart from the others
("T=25 s0", "rnn clip=1 s0", see seqvg.labels) and drawn in a colour that
means something: one hue per cell or variant, light to dark along a varied
length or size. With more than a handful of runs the seeds of each group
are drawn as a median with a band, and appendix pages show every run on its
own.
The same runs give a byte-identical PDF, whatever their order on the command
line: the creation date is fixed and taken from the runs themselves.

This module assembles the report (which pages, in which order, the title
page that lists them, the writer); the pages live by topic in
report_training (curves, weights), report_flow (gradient flow),
report_why (carry path, spectrum), report_study (study page, appendix) and
report_summary (summary, diagnosis); their words in report_findings and
report_text; what they share (order, names, colours, legend, caption) in
report_view.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from seqvg.execpath import recorded
from seqvg.report_findings import findings
from seqvg.report_flow import gradient_page, heatmap_page
from seqvg.report_study import appendix_page, study_page
from seqvg.report_summary import diagnosis_page, summary_layout, summary_page
from seqvg.report_text import common_settings, outcome_columns, outcome_rows, train_command
from seqvg.report_training import curves_page, weights_page
from seqvg.report_view import APPENDIX_PANELS, PAGE, caption, draw_table, view
from seqvg.report_why import why_pages
from seqvg.rundir import Run, load_run
from seqvg.tasks import get_task


def _title_page(fig, runs: list[Run]) -> None:
    """What a reader needs first: the outcome per run, the findings in words,
    the pages that follow and the commands that made the runs."""
    import textwrap

    v = view(runs)
    cfgs = [r.cfg for r in v.runs]
    tasks = list(dict.fromkeys(f"{c['task']} T={c['length']}" for c in sorted(cfgs, key=lambda c: c["length"])))
    created = max((r.config.get("created") or "") for r in runs) or "unknown"
    fig.text(0.05, 0.95, "seqvg report: gradient flow in recurrent networks", fontsize=18, weight="bold", va="top")
    fig.text(0.05, 0.905, f"task: {', '.join(tasks)}    runs: {len(runs)}    cells: "
             f"{', '.join(dict.fromkeys(c['cell'] for c in cfgs))}", fontsize=11, va="top")
    fig.text(0.05, 0.878, "settings: " + common_settings(cfgs), fontsize=9, va="top")
    versions = runs[0].config.get("versions", {})
    fig.text(0.05, 0.857, "versions: " + ", ".join(f"{k} {versions[k]}" for k in sorted(versions))
             + f"    device: {runs[0].config.get('device', '?')}    newest run: {created}", fontsize=8, va="top",
             color="0.3")
    paths = dict.fromkeys(p.describe() for p in map(recorded, (r.config for r in runs)) if p is not None)
    if paths:
        fig.text(0.05, 0.842, "execution path: " + "; ".join(paths), fontsize=8, va="top", color="0.3")
    task = get_task(v.runs[0].cfg["task"], v.runs[0].cfg.get("task_args"))
    fig.text(0.05, 0.825, "Outcome", fontsize=12, weight="bold", va="top")
    rows = outcome_rows(runs)
    shown = rows[:TITLE_ROWS]
    what = "group" if v.grouped else "run"
    y = draw_table(fig, 0.795, outcome_columns(task.metric_name), shown, fontsize=8.5)
    note = ("decay: the gradient's decay rate, decades per 100 steps back (negative = vanishing), fitted to "
            "||dL/dh_t||" + ("; a group's numbers: medians over its seeds" if v.grouped else ""))
    if len(rows) > len(shown):
        more = len(rows) - len(shown)
        note = f"... and {more} more {what}{'s' if more > 1 else ''} (every run is in the Summary).  " + note
    fig.text(0.05, y - 0.012, note, fontsize=8, color="0.3", va="top")
    y -= 0.05
    fig.text(0.05, y, "Findings", fontsize=12, weight="bold", va="top")
    y -= 0.03
    for k, text in enumerate(findings(runs), start=1):
        wrapped = textwrap.fill(text, 138, initial_indent=f"{k}. ", subsequent_indent="    ")
        fig.text(0.05, y, wrapped, fontsize=10, va="top", linespacing=1.4)
        y -= 0.025 * (wrapped.count("\n") + 1) + 0.012
    titles = [title for title, _ in pages(runs)]
    listed = [(f"{n}. {title}", PAGE_GUIDE.get(_guide_key(title)))
              for n, title in enumerate(titles, start=1) if n > 1 and not title.startswith("Appendix")]
    appendix = sum(title.startswith("Appendix") for title in titles)
    if appendix:
        listed.append((f"{len(titles) - appendix + 1}-{len(titles)}. Appendix", "every run on its own"))
    commands = sorted({r.config.get("command") or train_command(r.cfg) for r in runs})
    lines = [c if len(c) <= 190 else c[:187] + "..." for c in commands[:3]]
    if len(commands) > 3:
        lines.append(f"... and {len(commands) - 3} more")
    fig.text(0.05, 0.06, "Commands that made these runs:\n" + "\n".join(lines), fontsize=7.5, color="0.3",
             va="bottom")
    # The list of pages fits between the findings and the commands: a line
    # per page, else the titles only, else (a long outcome table) not at all.
    floor = 0.06 + 0.0165 * (len(lines) + 1) + 0.01
    story = [name + (f": {what}" if what else "") for name, what in listed]
    if y - 0.04 - 0.0215 * len(story) < floor:
        story = textwrap.wrap("  |  ".join(name.replace(" ", "\u00a0") for name, _ in listed), 160)
    if y - 0.04 - 0.0215 * len(story) >= floor:
        fig.text(0.05, y - 0.01, "The pages that follow", fontsize=12, weight="bold", va="top")
        fig.text(0.05, y - 0.04, "\n".join(story), fontsize=9, va="top", linespacing=1.45)
    caption(fig, "which runs solved the task (outcome) and how fast their gradient decays; the pages that follow "
             "show the gradient flow behind each outcome and why it flows (or does not).")


#: Outcome rows on the title page (the rest are in the Summary).
TITLE_ROWS = 8
#: One line per page for the title page's list of what follows.
PAGE_GUIDE = {
    "Study": "the outcome and the gradient's decay rate against what varies, every seed a point",
    "Learning curves": "validation loss and metric over training; dotted = trivial baseline (no memory), "
                       "star = solved",
    "Gradient flow": "||dL/dh_t|| at every timestep t, untrained and trained: a line falling to the left = "
                     "the gradient vanishes",
    "Why: the carry path": "what multiplies the gradient per step back: the carry gate (LSTM forget, GRU keep) "
                           "or sigma_max(W) and phi'",
    "Spectrum": "the norm of one step back (the step Jacobian), or the init gradient ratio against "
                "--recurrent-gain",
    "Gradient flow over training": "the gradient-flow curve at every probe, as colour, one scale for all runs",
    "Weight graph": "how much each layer's weights move; a flat, low line = the layer stopped learning",
    "Summary": "decay rates and horizons per run, the run directories, and the diagnosis in words",
    "Diagnosis": "per run: what went wrong (or right), why, and the commands to try next",
}


def _guide_key(title: str) -> str:
    """A page title without its part number ("Summary 2" -> "Summary")."""
    return re.sub(r" \d+$", "", title)


PAGES = [
    ("Title", _title_page),
    ("Learning curves", curves_page),
    ("Gradient flow", gradient_page),
    ("Gradient flow over training", heatmap_page),
    ("Weight graph", weights_page),
    ("Summary", summary_page),
]


def _runs_by_task(runs: list[Run]) -> dict[str, list[Run]]:
    """Runs grouped by task and task parameters, named like "recall pairs=2 vocab=8"."""
    out: dict[str, list[Run]] = {}
    for r in runs:
        args = r.cfg.get("task_args") or {}
        name = " ".join([r.cfg["task"], *(f"{k}={v}" for k, v in sorted(args.items()))])
        out.setdefault(name, []).append(r)
    return out


def pages(runs: list[Run]) -> list[tuple[str, object]]:
    """The report's pages for these runs: (title, draw(fig)) in order.

    PAGES always; the study page after the title when runs differ by more
    than their seed; summary and diagnosis pages as many as the runs need;
    the appendix (every run on its own) when seeds are summarised.
    """
    from functools import partial

    v = view(runs)
    out = [(title, partial(draw, runs=runs)) for title, draw in PAGES[:-1]]
    by_task = _runs_by_task(runs)
    if len(by_task) > 1:  # each task its own curves: its loss, metric, baseline and solved line
        at = [title for title, _ in out].index("Learning curves")
        out[at:at + 1] = [(f"Learning curves: {name}",
                           partial(curves_page, runs=group, title=f"Learning curves: {name}"))
                          for name, group in by_task.items()]
    if len(v.groups) > 1:
        out.insert(1, ("Study", partial(study_page, runs=runs)))
    # The story: gradient flow, then why it flows (or not), then over training.
    at = [title for title, _ in out].index("Gradient flow") + 1
    out[at:at] = why_pages(runs)
    n_summary, parts = summary_layout(runs)
    for part in range(n_summary):
        out.append((f"Summary {part + 1}" if part else "Summary", partial(summary_page, runs=runs, part=part)))
    for part in range(len(parts) - 1):
        out.append((f"Diagnosis {part + 1}", partial(diagnosis_page, runs=runs, part=part)))
    if v.grouped:
        chunks = range(math.ceil(len(runs) / APPENDIX_PANELS))
        for kind, name in (("curves", "learning curves"), ("gradients", "gradient flow")):
            for part in chunks:
                chunk = v.runs[part * APPENDIX_PANELS:(part + 1) * APPENDIX_PANELS]
                out.append((f"Appendix {name} {part + 1}",
                            partial(appendix_page, runs=chunk, v=v, kind=kind)))
        if len(runs) > APPENDIX_PANELS:  # the main heatmap page showed groups
            out += [(f"Appendix gradient flow over training {part + 1}", partial(heatmap_page, runs=runs, part=part))
                    for part in chunks]
    return out


def make_report(run_dirs: list, out: str | Path, png_dir: str | Path | None = None) -> list:
    """Writes the PDF (and optionally one PNG per page); returns the figures' titles.

    Raises:
        RunDirError: a run directory is missing or corrupt (names the file).
    """
    return write_report([load_run(Path(p)) for p in run_dirs], out, png_dir)


def write_report(runs: list[Run], out: str | Path, png_dir: str | Path | None = None,
                 extra_figures: list | None = None) -> list:
    """``make_report`` for runs already loaded with ``load_run``, in any order.

    ``extra_figures``: (title, matplotlib Figure) pages appended at the end.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from seqvg.pdf import check_replaceable, page_png, pdf_document, remove_stale_pages, write_png

    out = Path(out)
    planned = pages(runs)
    pngs = [] if png_dir is None else [page_png(png_dir, i, title) for i, (title, _) in enumerate(planned, start=1)]
    check_replaceable(out, "pdf")
    for path in pngs:  # before drawing: no page is drawn that could not be saved
        check_replaceable(path, "png")
    if png_dir is not None:
        Path(png_dir).mkdir(parents=True, exist_ok=True)
    titles = []
    with plt.rc_context({"font.size": 9, "axes.titlesize": 10, "svg.hashsalt": "seqvg"}), \
            pdf_document(out, "seqvg report") as pdf:
        for i, (title, draw) in enumerate(planned):
            fig = plt.figure(figsize=PAGE)
            draw(fig)
            titles.append(title)
            pdf.savefig(fig)
            if png_dir is not None:
                write_png(pngs[i], fig)
            plt.close(fig)
        for title, fig in extra_figures or []:
            titles.append(title)
            pdf.savefig(fig)
            plt.close(fig)
    if png_dir is not None:
        remove_stale_pages(png_dir, keep=pngs)
    return titles
