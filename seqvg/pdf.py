"""Writes figures to files: the one place that makes seqvg's PDFs and PNGs.

    seqvg report runs/a runs/b -o reports/r.pdf --png reports/r
    seqvg run tasks/init-gradients.toml      # a probe-only study's PDF

Both the run report (``seqvg.report``) and a study's report and results figure
(``seqvg.results``) are written here, so they share two promises: the same
figures give byte-identical files (no creation date, no software version), and
a file is replaced atomically (``rundir.atomic_write_bytes``), so a reader
never sees half of one and an error while drawing leaves the old file as it
was. And a file is replaced only if seqvg wrote it (its metadata says so:
``check_replaceable``), so a typo in ``-o`` never overwrites a user's own file.
"""

from __future__ import annotations

import errno
import io
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from seqvg.rundir import atomic_write_bytes

#: What every PDF and PNG seqvg writes carries: the PDF's /Creator, the PNG's Software text.
CREATOR = "seqvg"

#: How much of a PDF's end ``written_by_seqvg`` reads for the Info dictionary.
_PDF_TAIL = 1 << 20

#: The names of a report's page PNGs (``page_png``): "01-title.png".
PAGE_PNG = re.compile(r"^\d{2,}-[a-z0-9-]*\.png$")


def page_png(png_dir: str | Path, number: int, title: str) -> Path:
    """The PNG of page ``number`` (from 1) titled ``title``: "03-gradient-flow.png"."""
    return Path(png_dir) / f"{number:02d}-{re.sub('[^a-z0-9-]', '', title.lower().replace(' ', '-'))}.png"


def written_by_seqvg(path: str | Path) -> bool:
    """Whether the file at ``path`` is a PDF or PNG that seqvg wrote.

    A PDF: its Info dictionary, which matplotlib writes as plain text near
    the end, names seqvg as /Creator. A PNG: a ``Software`` text chunk
    before the image data says seqvg (PNGs written before that chunk
    existed do not count). Reads the start, and the PDF's last megabyte or
    the PNG's chunk headers, never a whole large file of the user's.
    """
    with open(path, "rb") as f:
        head = f.read(8)
        if head.startswith(b"%PDF-"):
            size = f.seek(0, 2)
            f.seek(max(0, size - _PDF_TAIL))
            return f"/Creator ({CREATOR})".encode() in f.read()
        if head != b"\x89PNG\r\n\x1a\n":
            return False
        signature = b"Software\x00" + CREATOR.encode()
        while len(header := f.read(8)) == 8:
            size, kind = int.from_bytes(header[:4], "big"), header[4:]
            if kind == b"IDAT":
                return False
            if kind == b"tEXt" and size == len(signature):
                if f.read(size) == signature:
                    return True
                f.seek(4, 1)  # its CRC
            else:
                f.seek(size + 4, 1)  # its data and CRC
    return False


#: Names of image formats: a report given one would be a PDF under an image's name.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".svg", ".svgz",
                            ".eps", ".ps", ".pgf", ".raw", ".rgba"})


def image_name_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be a report's name, or None.

    The report is always a PDF: ``-o report.png`` wrote a PDF named .png,
    which image viewers refuse and which replaced a page PNG of seqvg's.
    """
    suffix = Path(path).suffix
    if suffix.lower() in IMAGE_SUFFIXES:
        return (f"{path}: a report is a PDF, not a {suffix} image; give a name ending in .pdf "
                f"(seqvg report --png DIR writes each page as a PNG)")
    return None


def check_replaceable(path: str | Path, kind: str | None = None) -> None:
    """Refuses to let seqvg replace a file it did not write.

    ``kind`` ("pdf" or "png"): what is about to be written; a file of the
    other kind, though seqvg's (a study's results.png under a report's
    ``-o``), is not replaced by it either.

    Raises:
        FileExistsError: ``path`` exists and is not one of seqvg's PDFs or
            PNGs (``written_by_seqvg``), or is one of the other kind; naming
            it and what to do.
    """
    path = Path(path)
    if not path.is_file():
        return
    with open(path, "rb") as f:
        png = f.read(8) == b"\x89PNG\r\n\x1a\n"
    if kind is not None and written_by_seqvg(path) and png != (kind == "png"):
        what = "a PNG seqvg wrote (a page, or a study's results.png), not a PDF" if png else \
            "a PDF seqvg wrote (a report), not a PNG"
        raise FileExistsError(errno.EEXIST, f"exists and is {what}; seqvg replaces a file only with one of its "
                              "own kind: choose another name", str(path))
    if not written_by_seqvg(path):
        # Say what seqvg did not write: config.json, say, is seqvg's, but not a report.
        what = "as a page (or wrote it before it signed its PNGs)" if png else "as a report or page"
        raise FileExistsError(errno.EEXIST, f"exists and seqvg did not write it {what}; seqvg replaces only its "
                              "own reports and pages: remove it or choose another name", str(path))


def remove_stale_pages(directory: str | Path, keep: Iterable) -> None:
    """Removes the page PNGs of an earlier report from ``directory``: those
    seqvg wrote (``written_by_seqvg``) that are not in ``keep``, so the
    directory holds this report's pages only."""
    keep = {Path(p).name for p in keep}
    for path in Path(directory).iterdir():
        if PAGE_PNG.match(path.name) and path.name not in keep and path.is_file() and written_by_seqvg(path):
            path.unlink()


@contextmanager
def pdf_document(path: str | Path, title: str) -> Iterator:
    """A ``PdfPages`` to add pages to; the PDF is written when the block ends.

    Nothing is written if the block raises, and nothing is drawn if
    ``path`` is a file seqvg did not write (``check_replaceable``).

    Example:
        with pdf_document("r.pdf", "seqvg report") as pdf:
            pdf.savefig(fig)
    """
    from matplotlib.backends.backend_pdf import PdfPages

    check_replaceable(path, "pdf")
    buf = io.BytesIO()
    # No creation date: the same pages give a byte-identical PDF.
    metadata = {"Title": title, "Creator": CREATOR, "Producer": CREATOR, "CreationDate": None}
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


def write_png(path: str | Path, fig, dpi: int = 100, check: bool = True) -> None:
    """Writes ``fig`` as a PNG, atomically, unless ``path`` is a file seqvg did not write.

    Its Software text says seqvg, without a version: the same figure gives
    the same bytes, and ``check_replaceable`` knows the file as seqvg's.
    ``check=False`` where the caller has vouched for the path already (a
    study's own directory, ``study.check_study_dir``).
    """
    if check:
        check_replaceable(path, "png")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": CREATOR})
    atomic_write_bytes(Path(path), buf.getvalue())
