"""Modern recurrent cells, written as plain Keras 3 RNN cells.

    seqvg train --cell mingru --length 200
    python -c "import keras; from seqvg.cells.mingru import MinGRUCell; keras.layers.RNN(MinGRUCell(32))"

Each module holds one cell (a ``keras.layers.Layer`` with ``state_size`` and
``call(inputs, states)``, constructed as ``Cls(units, **kwargs)``), its
equations and its paper. They use nothing of seqvg's internals: they go
through the same custom-cell interface as a user's ``--cell file.py:Class``.
The modules import Keras, so this package does not import them eagerly;
``seqvg.config.CELL_REGISTRY`` names them by ``module:Class``.
"""

from __future__ import annotations

import importlib

from seqvg.config import CELL_REGISTRY

#: The cells of this package by their built-in name (``mingru`` ...).
BUILTIN = {name: spec for name, spec in CELL_REGISTRY.items() if spec.startswith("seqvg.cells.")}


def load(name: str):
    """The cell class of a built-in modern cell name (e.g. ``"lru"``)."""
    module, _, cls = BUILTIN[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def register_all() -> None:
    """Imports every modern cell, registering it with Keras's serialisation,
    so that ``keras.saving.load_model`` can read a model that uses one."""
    for name in BUILTIN:
        load(name)
