"""Importing TensorFlow without its start-up noise, and its thread pools, for
the CLI and study workers.

    from seqvg.tfsetup import import_tensorflow_quietly, settle_inter_op
    import_tensorflow_quietly()
    settle_inter_op(["lstm"])   # before TensorFlow starts: one inter-op thread

A leaf module (only ``settle_inter_op`` reads ``seqvg.kernels``, when
called): the CLI and the study's worker processes both call it, and neither
may import the other.
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


#: The cells that run, and are probed, as seqvg's whole-sequence ops.
OP_CELLS = ("lstm", "gru")


def settle_inter_op(cells) -> bool:
    """One TensorFlow inter-op thread for a process whose every run is an
    LSTM or a GRU on seqvg's ops (a CPU where they are built).

    On a 2-core machine TensorFlow's second inter-op thread spins while an
    op's threads meet at their per-timestep barriers: a third of the ops'
    passes then took 12-20 ms instead of about 8, and the probe/step ratio
    of benchmarks/probe.py, 0.90-0.99 at the median, reached 1.17 at its
    upper quartile. With one thread its quartiles stay within 0.89-0.98
    (README, Benchmarks); the steps themselves hardly change. Keras's loop
    (the vanilla RNN's step, custom cells) is 15% slower with it, so a
    process with any other cell keeps TensorFlow's default. TensorFlow takes
    the setting only before it starts its pools: later (or where the user set
    TF_NUM_INTEROP_THREADS) this changes nothing. Threads do not change any
    number, only time.

    Args:
        cells: the ``--cell`` of every run the process will train or probe.

    Returns:
        Whether the process now has one inter-op thread by this call.
    """
    cells = list(cells)
    if not cells or any(c not in OP_CELLS for c in cells) or os.environ.get("TF_NUM_INTEROP_THREADS"):
        return False
    import_tensorflow_quietly()
    import tensorflow as tf

    from seqvg import kernels

    # Neither loading the ops nor listing the physical devices starts
    # TensorFlow's pools; a GPU runs cuDNN, not seqvg's ops.
    if tf.config.list_physical_devices("GPU") or kernels.op_module() is None:
        return False
    try:
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow has started: too late, and harmless
        return False
    return True
