"""``python -m seqvg`` runs the command line (same as ``seqvg``)."""

from seqvg.cli import cli

cli()
