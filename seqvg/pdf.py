"""Writes figures to files: the one place that makes seqvg's PDFs and PNGs.

    seqvg report runs/a runs/b -o reports/r.pdf --png reports/r
    seqvg run tasks/init-gradients.toml      # a probe-only study's PDF

Both the run report (``seqvg.report``) and a study's report and results figure
(``seqvg.results``) are written here, so they share two promises: the same
figures give byte-identical files (no creation date, no software version), and
a file is replaced atomically (``rundir.atomic_write_bytes``), so a reader
never sees half of one and an error while drawing leaves the old file as it
was.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from seqvg.rundir import atomic_write_bytes


@contextmanager
def pdf_document(path: str | Path, title: str) -> Iterator:
    """A ``PdfPages`` to add pages to; the PDF is written when the block ends.

    Nothing is written if the block raises.

    Example:
        with pdf_document("r.pdf", "seqvg report") as pdf:
            pdf.savefig(fig)
    """
    from matplotlib.backends.backend_pdf import PdfPages

    buf = io.BytesIO()
    # No creation date: the same pages give a byte-identical PDF.
    metadata = {"Title": title, "Creator": "seqvg", "Producer": "seqvg", "CreationDate": None}
    with PdfPages(buf, metadata=metadata) as pdf:
        yield pdf
    atomic_write_bytes(Path(path), buf.getvalue())


def write_pdf(path: str | Path, title: str, figures: Iterable) -> None:
    """Writes ``figures`` as the pages of one PDF, closing each once saved."""
    import matplotlib.pyplot as plt

    with pdf_document(path, title) as pdf:
        for fig in figures:
            pdf.savefig(fig)
            plt.close(fig)


def write_png(path: str | Path, fig, dpi: int = 100) -> None:
    """Writes ``fig`` as a PNG without the software version, atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    atomic_write_bytes(Path(path), buf.getvalue())
