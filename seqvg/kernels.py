"""seqvg's LSTM ops: compiled once per machine, loaded into TensorFlow.

    python -m seqvg.kernels          # build (or find) them and say which

Keras's LSTM on a CPU runs about fourteen small ops per timestep, each paying
TensorFlow's per-op cost. ``csrc/lstm_cell.cc`` holds seqvg's own: the whole
sequence as one op forward and one backward (``lstm_seq``, seqvg's training
loop), and one step's elementwise maths (``lstm_cell``, the gradient probe's
loop, which must tap every state). They are compiled with the C++ compiler
and TensorFlow's own headers (``tf.sysconfig``) into a per-machine cache
(``$SEQVG_CACHE_DIR``, else ``$XDG_CACHE_HOME/seqvg``, else ``~/.cache/seqvg``),
keyed by the source, TensorFlow's version and the CPU, and written
atomically, so concurrent first runs cannot load a half-written library.

Where they cannot be built (no compiler, other headers), or with
``SEQVG_KERNELS=0``, seqvg runs the same maths as plain TensorFlow ops,
slower; ``kernel_status()`` says which and why.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SOURCE = Path(__file__).parent / "csrc" / "lstm_cell.cc"
#: Set to 0 to run the plain-TensorFlow LSTM step instead of the op.
ENV_SWITCH = "SEQVG_KERNELS"
# Most specific first. -march=native: Eigen's AVX-512 logistic/tanh take the
# step from 68 us (SSE2) to 18 us. GCC 12 cannot compile Eigen's AVX512-FP16
# code, hence -mno-avx512fp16 where the compiler knows the flag.
_ARCH_FLAGS = (["-march=native", "-mno-avx512fp16"], ["-march=native"], [])


def cache_dir() -> Path:
    """Where compiled ops are kept (see the module docstring)."""
    if os.environ.get("SEQVG_CACHE_DIR"):
        return Path(os.environ["SEQVG_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "seqvg"


def _cpu_key() -> str:
    """The CPU's model and features: a library built with -march=native runs only there."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return "\n".join(sorted({ln for ln in lines if ln.startswith(("flags", "model name"))}))
    except OSError:
        return f"{platform.machine()} {platform.processor()}"


def _library_path(tf) -> Path:
    key = hashlib.sha256(
        b"\0".join(s.encode() for s in (SOURCE.read_text(), tf.__version__, sys.version, _cpu_key()))
    ).hexdigest()[:16]
    return cache_dir() / f"lstm_cell-{key}.so"


def build(tf, target: Path) -> None:
    """Compiles ``SOURCE`` into ``target`` (atomically), trying ``_ARCH_FLAGS`` in turn.

    Raises:
        RuntimeError: no compiler, or every attempt failed (the last error).
    """
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")
    if cxx is None:
        raise RuntimeError("no C++ compiler found (set CXX, or install g++)")
    target.parent.mkdir(parents=True, exist_ok=True)
    error = ""
    for arch in _ARCH_FLAGS:
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
        os.close(fd)
        cmd = [cxx, "-shared", "-fPIC", "-O3", "-DNDEBUG", "-w", *arch, *tf.sysconfig.get_compile_flags(),
               str(SOURCE), "-o", tmp, *tf.sysconfig.get_link_flags()]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            proc, error = None, str(exc)
        if proc is not None and proc.returncode == 0:
            os.replace(tmp, target)
            return
        os.unlink(tmp)
        if proc is not None:
            lines = (proc.stderr or proc.stdout).strip().splitlines() or ["(no output)"]
            error = f"{' '.join(cmd[:2 + len(arch)])} ...: {lines[-1]}"
    raise RuntimeError(f"compiling {SOURCE.name} failed: {error}")


# The (module, message) loaded in this process, at most one.
_registered: list = []


@functools.cache
def _load():
    """(module or None, message); built on first use, then cached for the process."""
    if os.environ.get(ENV_SWITCH, "1").strip() == "0":
        return None, f"disabled ({ENV_SWITCH}=0)"
    import tensorflow as tf

    if _registered:
        # One library per process: two registering the same kernel make
        # TensorFlow refuse to run it.
        return _registered[0]
    try:
        path = _library_path(tf)
        if not path.exists():
            # A first run pauses here; say why (once per machine).
            print(f"seqvg: compiling its LSTM ops into {path.parent} (once, ~30 s)", file=sys.stderr)
            build(tf, path)
        module = tf.load_op_library(str(path))
    except (RuntimeError, OSError, tf.errors.NotFoundError) as exc:
        return None, f"unavailable: {exc}"
    _register_gradient(tf, module)
    _registered.append((module, f"loaded from {path}"))
    return _registered[0]


def _empty_if_zero(tf, grad, dtype):
    """``grad``, or an empty tensor where it is None or a constant zero the
    tape filled in: the kernels then skip it."""
    static = None if grad is None else tf.get_static_value(grad)
    if grad is None or (static is not None and not static.any()):
        return tf.zeros([0], dtype)
    return grad


def _register_gradient(tf, module) -> None:
    @tf.RegisterGradient("SeqvgLstmCell")
    def _cell_grad(op, dh, dc, dact):
        c_prev, eps = op.inputs[1], op.inputs[2]
        dh = tf.zeros_like(c_prev) if dh is None else dh
        dc = tf.zeros_like(c_prev) if dc is None else dc
        # The tape hands a zero gradient for the cache `act` (only this
        # function reads it).
        dact = _empty_if_zero(tf, dact, c_prev.dtype)
        with_eps = eps.shape.num_elements() != 0
        dz, dc_prev, d_eps = module.seqvg_lstm_cell_grad(op.outputs[2], c_prev, dh, dc, dact, with_eps=with_eps)
        return dz, dc_prev, d_eps

    @tf.RegisterGradient("SeqvgLstmSeq")
    def _seq_grad(op, dh_seq, dh_last, dc_last, *_caches):
        h0 = op.inputs[1]
        dh_last = tf.zeros_like(h0) if dh_last is None else dh_last
        dc_last = tf.zeros_like(h0) if dc_last is None else dc_last
        # Nothing reads the sequence (no return_sequences, or a zero the tape
        # filled in).
        dh_seq = _empty_if_zero(tf, dh_seq, h0.dtype)
        return module.seqvg_lstm_seq_grad(*op.outputs[3:], dh_seq, dh_last, dc_last)


def lstm_cell_ops():
    """The loaded op module (``seqvg_lstm_cell``), or None where it is unavailable."""
    return _load()[0]


def kernel_status() -> str:
    """One line: whether seqvg's LSTM ops are in use, and why not if not."""
    return f"seqvg's LSTM ops: {_load()[1]}"


def lstm_cell(z, c_prev, eps=None):
    """One LSTM step's elementwise maths, transposed (see ``csrc/lstm_cell.cc``).

    Args:
        z: (4u, batch) float32 pre-activations, row blocks [i, f, g, o].
        c_prev: (u, batch) float32 cell state.
        eps: None, or (u, batch) zeros added to c_t, whose gradient is the
            total dL/dc_t (the gradient probe's perturbation).

    Returns:
        (h, c, act): the new states, and the (5u, batch) cache
        [i, f, g, o, tanh(c)] the gradient reads.
    """
    import tensorflow as tf

    if eps is None:
        eps = tf.zeros([0], c_prev.dtype)
    return lstm_cell_ops().seqvg_lstm_cell(z, c_prev, eps)


def lstm_seq(x, h0, c0, kernel, recurrent_kernel, bias, return_sequences: bool = False, max_threads: int = 0):
    """An LSTM over a whole sequence, forward and backward one op each (see ``csrc/lstm_cell.cc``).

    Args:
        x: (batch, T, d) float32 inputs.
        h0, c0: (batch, u) initial states.
        kernel, recurrent_kernel, bias: Keras's (d, 4u), (u, 4u), (4u,), gate order [i, f, c, o].
        return_sequences: whether to return every h_t.
        max_threads: at most this many threads (0: TensorFlow's intra-op threads).

    Returns:
        (h_seq, h_T, c_T): h_seq is (batch, T, u), or (batch, 0, u) without
        return_sequences.
    """
    h_seq, h_last, c_last, *_ = lstm_cell_ops().seqvg_lstm_seq(
        x, h0, c0, kernel, recurrent_kernel, bias, return_sequences=return_sequences, max_threads=max_threads)
    return h_seq, h_last, c_last


def squared_norms(tensors: list):
    """(len(tensors),) float64 sums of squares of float32 tensors (the probe's norms)."""
    return lstm_cell_ops().seqvg_squared_norms(tensors)


if __name__ == "__main__":
    print(kernel_status())
