"""Importing TensorFlow without its start-up noise, for the CLI and study workers.

    from seqvg.tfsetup import import_tensorflow_quietly
    import_tensorflow_quietly()

A leaf module: the CLI and the study's worker processes both call it, and
neither may import the other.
"""

from __future__ import annotations

import os
import sys

# TensorFlow's C++ log lines hide the output a user asked for. Level 3 (not
# 2) because TF 2.21's graph optimiser logs a harmless "E0000 ... has an empty
# op name" for every ReLU recurrent cell; real failures still raise Python
# exceptions with their message. Set TF_CPP_MIN_LOG_LEVEL=0 to see everything.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

#: What to do when TensorFlow is missing: on Linux it comes with an extra.
TENSORFLOW_MISSING = ("seqvg needs TensorFlow, which is not installed: pip install 'seqvg[cpu]', "
                      "or 'seqvg[gpu]' for an NVIDIA GPU on Linux")


def import_tensorflow_quietly() -> None:
    """Imports TensorFlow with its C++ start-up lines kept off the terminal.

    TF 2.21 logs through absl before any log-level setting applies, so the
    process's stderr (fd 2) is parked in a temp file during the import and
    replayed only if the import fails.

    Raises:
        ModuleNotFoundError: TensorFlow is not installed (the message says how
            to install it).
    """
    if sys.modules.get("tensorflow") is not None:
        return
    import tempfile

    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        except BaseException as e:
            if isinstance(e, ModuleNotFoundError) and e.name == "tensorflow":
                raise ModuleNotFoundError(TENSORFLOW_MISSING, name="tensorflow") from None
            os.dup2(saved, 2)
            tmp.seek(0)
            sys.stderr.write(tmp.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)

