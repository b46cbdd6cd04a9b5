"""seqvg's LSTM, GRU and vanilla RNN ops: compiled once per machine, loaded into TensorFlow.

    python -m seqvg.kernels             # build (or find) them and say which
    python -m seqvg.kernels --rebuild   # forget a remembered failure, build again

Keras's LSTM on a CPU runs about fourteen small ops per timestep, each paying
TensorFlow's per-op cost. ``csrc/lstm_ops.cc`` holds seqvg's own: the whole
sequence as one op forward and one backward (``lstm_seq`` and ``gru_seq``,
seqvg's training loops and, with their ``taps``, the gradient probe's;
``rnn_seq``, a tanh vanilla RNN, the probe's only), and ``step_sigma`` and
``gate_stats``, the step Jacobian's norm and the gates' statistics of
``seqvg.why``. They are compiled with
the C++ compiler and TensorFlow's own headers
(``tf.sysconfig``) into a per-machine cache (``$SEQVG_CACHE_DIR``, else
``$XDG_CACHE_HOME/seqvg``, else ``~/.cache/seqvg``), keyed by the source,
TensorFlow's and Python's versions, the CPU and the compiler. They are
built for this CPU (``-march=native``: AVX-512 where there is, else AVX2);
``SEQVG_MARCH=haswell`` (any ``-march`` value, a key of its own) builds
them for another instruction set, e.g. a cluster's oldest CPU, or AVX2 on
an AVX-512 machine, which is how the tests run the AVX2 code.

The build happens at most once per machine and key, and only when a model
with an LSTM or a GRU is about to run, or a tanh vanilla RNN to be probed: a lock makes concurrent first runs (a study's
workers) wait for one compile instead of each running their own; the
library is written atomically, with the compiler's warnings on seqvg's
source beside it (``.log``); a failed build leaves a ``.failed`` note with
its reason, so later processes fall back at once instead of retrying (a new
key, e.g. another compiler, or ``--rebuild`` tries again); a cached library
that does not load is rebuilt once.

A process whose every run is an LSTM or a GRU on these ops runs TensorFlow
with one inter-op thread (``execpath.settle_inter_op``, before TensorFlow starts).

Where they cannot be built (no compiler, other headers), or with
``SEQVG_KERNELS=0``, seqvg runs the same maths as plain TensorFlow ops
(the GRU: Keras's own loop), slower; ``kernel_status()`` says which and why.

It is long because it is one job whole: the build's cache key, lock, failure note and rebuild, and
the Python face of each op (its wrapper and registered gradient); the ops' maths is in csrc/.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SOURCE = Path(__file__).parent / "csrc" / "lstm_ops.cc"
#: Set to 0 to run the plain-TensorFlow loops instead of the ops.
ENV_SWITCH = "SEQVG_KERNELS"
#: Set to a ``-march`` value to build for that instruction set, not this CPU's.
ENV_MARCH = "SEQVG_MARCH"
# Most specific first. -march=native: Eigen's logistic and tanh then use the
# CPU's widest vectors (AVX-512 where there is, not SSE2). GCC 12 cannot
# compile Eigen's AVX512-FP16 code, hence -mno-avx512fp16 where the compiler
# knows the flag.
_ARCH_FLAGS = (["-march=native", "-mno-avx512fp16"], ["-march=native"], [])
# Warnings on for seqvg's own source (TensorFlow's headers stay quiet, as
# system headers): the build's log (next to the library) holds them.
_WARNINGS = ["-Wall", "-Wextra"]


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


def compiler() -> str | None:
    """The C++ compiler seqvg builds with: ``$CXX``, else g++, c++ or clang++ on PATH."""
    return os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")


def _compiler_key(cxx: str | None) -> str:
    """The compiler and its version line (part of the cache key)."""
    if cxx is None:
        return "no compiler"
    try:
        out = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    return f"{cxx} {(out.splitlines() or [''])[0]}"


def _march() -> str:
    """``ENV_MARCH``'s value, or "" where it is not set."""
    return os.environ.get(ENV_MARCH, "").strip()


def _arch_flags() -> tuple[list[str], ...]:
    """The -march flags to try, most specific first (``ENV_MARCH`` alone where set)."""
    return ([f"-march={_march()}"],) if _march() else _ARCH_FLAGS


def _library_path(tf) -> Path:
    parts = (SOURCE.read_text(), tf.__version__, sys.version, _cpu_key(), _compiler_key(compiler()), *_WARNINGS,
             *(" ".join(flags) for flags in _arch_flags()))
    key = hashlib.sha256(b"\0".join(s.encode() for s in parts)).hexdigest()[:16]
    return cache_dir() / f"lstm_ops-{key}.so"


def build(tf, target: Path) -> str:
    """Compiles ``SOURCE`` into ``target`` (atomically), trying ``_arch_flags()`` in turn.

    Args:
        tf: the tensorflow module (its headers and flags).
        target: the library to write.

    Returns:
        The compiler's diagnostics (``-Wall -Wextra`` on seqvg's source).

    Raises:
        RuntimeError: no compiler, or every attempt failed (the last error).
    """
    cxx = compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler found (set CXX, or install g++)")
    target.parent.mkdir(parents=True, exist_ok=True)
    # TensorFlow's headers warn by the hundred; as -isystem they stay quiet
    # and seqvg's own source can be held to -Wall -Wextra.
    flags = [f"-isystem{f[2:]}" if f.startswith("-I") else f for f in tf.sysconfig.get_compile_flags()]
    error = ""
    for arch in _arch_flags():
        fd, tmp = tempfile.mkstemp(prefix=f"{target.stem}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        cmd = [cxx, "-shared", "-fPIC", "-O3", "-DNDEBUG", *_WARNINGS, *arch, *flags,
               str(SOURCE), "-o", tmp, *tf.sysconfig.get_link_flags()]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            proc, error = None, str(exc)
        if proc is not None and proc.returncode == 0:
            os.replace(tmp, target)
            return proc.stderr
        os.unlink(tmp)
        if proc is not None:
            lines = (proc.stderr or proc.stdout).strip().splitlines() or ["(no output)"]
            # The first error says what went wrong; notes follow it.
            first = next((ln for ln in lines if "error:" in ln), lines[-1])
            error = f"{' '.join(cmd[:2 + len(arch)])} ...: {first}"
    setting = f" ({ENV_MARCH}={_march()})" if _march() else ""
    raise RuntimeError(f"compiling {SOURCE.name} failed{setting}: {error}")


# The (module, message) loaded in this process, at most one.
_registered: list = []


class _Lock:
    """An exclusive lock on a file of the cache, held while building."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(path, "a")

    def __enter__(self):
        fcntl.flock(self.file, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()


def _failure_note(path: Path) -> Path:
    return path.with_suffix(".failed")


def build_log(path: Path) -> Path:
    """The compiler's diagnostics of the build that wrote the library ``path``."""
    return path.with_suffix(".log")


def _obtain(tf, path: Path, rebuild: bool = False) -> Path:
    """The built library at ``path``, compiling it first if no one has.

    Raises:
        RuntimeError: the build failed, now or (remembered) in an earlier process.
    """
    note = _failure_note(path)
    if path.exists() and not rebuild:
        return path
    with _Lock(path.with_suffix(".lock")):
        if rebuild:
            # Only files seqvg wrote under this key.
            path.unlink(missing_ok=True)
            note.unlink(missing_ok=True)
            build_log(path).unlink(missing_ok=True)
        if path.exists():  # another process built it while this one waited
            return path
        if note.exists():
            raise RuntimeError(
                f"{note.read_text().strip()} (remembered from an earlier attempt; "
                "`python -m seqvg.kernels --rebuild` tries again)"
            )
        # A first run pauses here; say why (once per machine).
        print(f"seqvg: compiling its LSTM ops into {path.parent} (once, ~30 s)", file=sys.stderr)
        from seqvg.rundir import atomic_write_bytes

        try:
            diagnostics = build(tf, path)
        except RuntimeError as exc:
            atomic_write_bytes(note, f"{exc}\n".encode())  # the lock is held
            raise
        atomic_write_bytes(build_log(path), diagnostics.encode())
    return path


def _remember_failure(path: Path, reason: str) -> None:
    """Replaces the library at ``path`` (seqvg's own) by a note of why it failed."""
    from seqvg.rundir import atomic_write_bytes

    with _Lock(path.with_suffix(".lock")):
        atomic_write_bytes(_failure_note(path), f"{reason}\n".encode())
        path.unlink(missing_ok=True)
        build_log(path).unlink(missing_ok=True)


def _open(tf, path: Path):
    return tf.load_op_library(str(path))


@functools.cache
def _load(rebuild: bool = False):
    """(module or None, message); built on first use, then cached for the process."""
    if os.environ.get(ENV_SWITCH, "1").strip() == "0":
        return None, f"disabled ({ENV_SWITCH}=0)"
    import tensorflow as tf

    if _registered:
        # One library per process: two registering the same kernel make
        # TensorFlow refuse to run it.
        return _registered[0]
    try:
        path = _obtain(tf, _library_path(tf), rebuild)
        try:
            module = _open(tf, path)
        except (OSError, tf.errors.NotFoundError) as exc:
            # A cached library that does not load (truncated, damaged): build
            # it again, once; if that does not load either, say so.
            print(f"seqvg: the cached LSTM ops did not load ({exc}); rebuilding them", file=sys.stderr)
            path = _obtain(tf, path, rebuild=True)
            try:
                module = _open(tf, path)
            except (OSError, tf.errors.NotFoundError) as again:
                _remember_failure(path, f"the rebuilt library does not load either: {again}")
                raise RuntimeError(f"the rebuilt library does not load either: {again}") from None
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
    for name in ("SeqvgStepSigma", "SeqvgGateStats"):  # statistics of the probe, never differentiated
        tf.no_gradient(name)
    for cell, states in (("lstm", 2), ("gru", 1), ("rnn", 1)):
        grad_op = getattr(module, f"seqvg_{cell}_seq_grad")
        tf.RegisterGradient(f"Seqvg{cell.capitalize()}Seq")(_sequence_grad(tf, grad_op, states))


def _sequence_grad(tf, grad_op, states: int):
    """The registered gradient of a sequence op with ``states`` states
    (``csrc/lstm_ops.cc``): its gradient op on the forward's caches."""

    def grad(op, dh_seq, *rest):
        h0 = op.inputs[1]
        d_last = [tf.zeros_like(h0) if d is None else d for d in rest[:states]]
        # Nothing reads the sequence (no return_sequences, or a zero the tape
        # filled in).
        dh_seq = _empty_if_zero(tf, dh_seq, h0.dtype)
        taps = op.inputs[-1]
        # The taps' gradient (the probe's squared norms) only where the probe
        # passes taps; the weights' only where someone may read it.
        *grads, d_taps = grad_op(*op.outputs[1 + states:], dh_seq, *d_last, weight_grad=op.get_attr("weight_grad"),
                                 with_taps=taps.shape.num_elements() != 0)
        return (*grads, tf.ensure_shape(d_taps, taps.shape))

    return grad


def op_module():
    """The loaded module of seqvg's ops (``seqvg_lstm_seq``, ...), or None where they are unavailable."""
    return _load()[0]


def kernel_status() -> str:
    """One line: whether seqvg's LSTM ops are in use, and why not if not."""
    return f"seqvg's LSTM ops: {_load()[1]}"


def _sequence_op(cell: str, x, initial: list, weights: list, return_sequences: bool, max_threads: int, taps,
                 weight_grad: bool, with_caches: bool):
    """Runs ``seqvg_<cell>_seq``: (h_seq, the last states), and the caches
    (its blocks first) with ``with_caches``; the arguments as ``lstm_seq``'s."""
    import tensorflow as tf

    taps = tf.zeros([0], tf.float64) if taps is None else taps
    outputs = getattr(op_module(), f"seqvg_{cell}_seq")(
        x, *initial, *weights, taps, return_sequences=return_sequences, max_threads=max_threads,
        weight_grad=weight_grad)
    head, caches = tuple(outputs[:1 + len(initial)]), list(outputs[1 + len(initial):])
    return (*head, caches) if with_caches else head


def lstm_seq(x, h0, c0, kernel, recurrent_kernel, bias, return_sequences: bool = False, max_threads: int = 0,
             taps=None, weight_grad: bool = True, with_caches: bool = False):
    """An LSTM over a whole sequence, forward and backward one op each (see ``csrc/lstm_ops.cc``).

    Args:
        x: (batch, T, d) float32 inputs.
        h0, c0: (batch, u) initial states.
        kernel, recurrent_kernel, bias: Keras's (d, 4u), (u, 4u), (4u,), gate order [i, f, c, o].
        return_sequences: whether to return every h_t.
        max_threads: at most this many threads (0: TensorFlow's intra-op threads).
        taps: None, or (T, 2) float64 zeros (static shape) whose gradient is,
            per step t, the squared norms of the total dL/dh_t and dL/dc_t
            (the gradient probe's).
        weight_grad: False makes the weights' gradients zeros, not computed
            (the probe, which never reads them).
        with_caches: also return what the forward pass keeps for the
            backward (read with ``sequence_internals``).

    Returns:
        (h_seq, h_T, c_T), and the caches with ``with_caches``: h_seq is
        (batch, T, u), or (batch, 0, u) without return_sequences.
    """
    return _sequence_op("lstm", x, [h0, c0], [kernel, recurrent_kernel, bias], return_sequences, max_threads, taps,
                        weight_grad, with_caches)


def gru_seq(x, h0, kernel, recurrent_kernel, bias, return_sequences: bool = False, max_threads: int = 0,
            taps=None, weight_grad: bool = True, with_caches: bool = False):
    """Keras's GRU (``reset_after=True``) over a whole sequence, one op each way (``csrc/lstm_ops.cc``).

    Args:
        x: (batch, T, d) float32 inputs.
        h0: (batch, u) initial state.
        kernel, recurrent_kernel, bias: Keras's (d, 3u), (u, 3u), (2, 3u), gate order [z, r, h].
        return_sequences, max_threads, weight_grad, with_caches: as ``lstm_seq``.
        taps: None, or (T, 1) float64 zeros whose gradient is the squared
            norms of the total dL/dh_t.

    Returns:
        (h_seq, h_T), and the caches with ``with_caches``: h_seq is (batch,
        T, u), or (batch, 0, u) without return_sequences.
    """
    return _sequence_op("gru", x, [h0], [kernel, recurrent_kernel, bias], return_sequences, max_threads, taps,
                        weight_grad, with_caches)


def rnn_seq(x, h0, kernel, recurrent_kernel, bias, return_sequences: bool = False, max_threads: int = 0,
            taps=None, weight_grad: bool = True, with_caches: bool = False):
    """Keras's SimpleRNN with tanh over a whole sequence, one op each way (``csrc/lstm_ops.cc``).

    The gradient probe's (a vanilla layer trains on Keras's loop).

    Args:
        x: (batch, T, d) float32 inputs.
        h0: (batch, u) initial state.
        kernel, recurrent_kernel, bias: Keras's (d, u), (u, u), (u,).
        return_sequences, max_threads, weight_grad, with_caches: as ``lstm_seq``.
        taps: None, or (T, 1) float64 zeros whose gradient is the squared
            norms of the total dL/dh_t.

    Returns:
        (h_seq, h_T), and the caches with ``with_caches``: h_seq is (batch,
        T, u), or (batch, 0, u) without return_sequences.
    """
    return _sequence_op("rnn", x, [h0], [kernel, recurrent_kernel, bias], return_sequences, max_threads, taps,
                        weight_grad, with_caches)


def step_sigma(kind: str, cell, x, s, v0, dim: int, max_threads: int = 0):
    """Per row, ||J||_2 of one step of ``cell`` linearised in its state, by
    ``dim`` Lanczos steps on J^T J (``csrc/lstm_ops.cc``).

    For the cells the sequence ops run (``fastlstm.covered``, a tanh
    SimpleRNN): the same maths, and the products of
    ``stepstats.step_coefficients`` and ``stepstats.jacobian_products``.

    Args:
        kind: "rnn", "gru" or "lstm".
        cell: the Keras cell (its kernel, recurrent kernel and bias).
        x: (rows, d) each row's input.
        s: (rows, state width) each row's entering state ([h; c] for the LSTM).
        v0: (rows, state width) start vectors.
        dim: Krylov dimension, at most the state width.
        max_threads: as ``lstm_seq``'s; the rows are cut into blocks fixed
            by their number, so any thread count gives the same numbers.

    Returns:
        (rows,) float32: the square root of the largest eigenvalue of each
        row's Lanczos matrix of J^T J (``stepstats.lanczos_tridiagonal``).
    """
    return op_module().seqvg_step_sigma(x, s, cell.kernel, cell.recurrent_kernel, cell.bias, v0, cell=kind,
                                            dim=dim, max_threads=max_threads)


def gate_stats(kind: str, blocks, values, units: int, max_threads: int = 0):
    """Per step, the mean and 10/50/90th percentiles of the gates in a
    sequence op's cache, computed in place (``csrc/lstm_ops.cc``).

    ``why.gate_stats``'s numbers, bit for bit, from the values that
    ``gate_views`` reads (the RNN's through its h -> 1 - h^2).

    Args:
        kind: "lstm", "gru" or "rnn".
        blocks, values: ``sequence_internals``'s cache: the op's unit blocks
            and its ``act`` (the RNN's ``s``).
        units: the layer's units u.
        max_threads: as ``lstm_seq``'s; each step's numbers are one
            thread's, so any thread count gives the same.

    Returns:
        (gates, 4, T) float32: the gates of ``why.GATES[kind]`` in order,
        ``why.STATS`` along axis 1.
    """
    return op_module().seqvg_gate_stats(values, blocks, cell=kind, units=units, max_threads=max_threads)


def sequence_internals(kind: str, caches: list, units: int, points):
    """What the probe reads from a sequence op's forward pass (in the graph).

    Reads the caches of ``lstm_seq``, ``gru_seq`` or ``rnn_seq``
    (``with_caches``) in their layout (``csrc/lstm_ops.cc``): ``s`` (T+1, u+d+1, batch) holds
    [h_t; x_t; 1] with h_t the state entering step t, the LSTM's ``c`` (T+1,
    u, batch) likewise, ``act`` (T, G*u, batch) per block of units the G
    rows [i, f, g, o, tanh c] (LSTM) or [z, r, hh, hr] (GRU), each one row
    per unit of the block.

    Args:
        kind: "lstm", "gru" or "rnn".
        caches: the ops' caches, as ``with_caches`` returns them.
        units: the layer's units u.
        points: (J,) int32 timesteps.

    Returns:
        ({"blocks", "values"}: the cache that holds the gate values (the
        RNN's: s), for ``gate_views`` outside the graph (no copy of them is
        made here), [the states entering steps ``points``, each (J, batch,
        u)]: [h, c] or [h].
    """
    import tensorflow as tf

    if kind == "rnn":  # tanh's derivative comes from h_t: s is the cache
        blocks, _, s = caches
        entering, act = [tf.gather(s, points)[:, :units]], s
    elif kind == "lstm":
        blocks, _, s, c, act = caches
        entering = [tf.gather(s, points)[:, :units], tf.gather(c, points)]
    else:
        blocks, _, _, s, act = caches
        entering = [tf.gather(s, points)[:, :units]]
    return {"blocks": blocks, "values": act}, [tf.transpose(state, [0, 2, 1]) for state in entering]


def gate_views(kind: str, blocks: int, values, units: int) -> dict:
    """The gate values of every step in a sequence op's cache, as numpy views.

    Args:
        kind: "lstm", "gru" or "rnn".
        blocks: the op's unit blocks (its ``blocks`` output).
        values: the cache as numpy (``sequence_internals``): ``act`` (T,
            G*u, batch), the RNN's ``s``.
        units: the layer's units u.

    Returns:
        {gate name: ((T, ...) strided view, transform)}: LSTM ``forget``
        and ``input``, GRU ``keep`` (Keras's z), the RNN's ``dphi``
        (tanh'(a_t)), each holding the batch x units values of every step
        in some order; the transform (None, or the RNN's h -> 1 - h^2) is
        ``why.gate_stats``'s.
    """
    if kind == "rnn":
        # s (T+1, u+d+1, batch): h_t = tanh(a_t) in rows [0, u) of s[t+1];
        # tanh'(a_t) = 1 - h_t^2, as TensorFlow's TanhGrad computes it.
        return {"dphi": (values[1:, :units], lambda h: 1.0 - h * h)}
    rows, per_unit = ({"forget": 1, "input": 0}, 5) if kind == "lstm" else ({"keep": 0}, 4)
    per_block = values.reshape(values.shape[0], blocks, per_unit, units // blocks * values.shape[-1])
    return {name: (per_block[:, :, row], None) for name, row in rows.items()}


def main(argv: list[str] | None = None) -> int:
    """``python -m seqvg.kernels [--rebuild]``: build or find the ops, say which."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m seqvg.kernels", description=main.__doc__)
    parser.add_argument("--rebuild", action="store_true",
                        help="forget a remembered failure or a cached library and compile again")
    args = parser.parse_args(argv)
    module, message = _load(rebuild=args.rebuild)
    print(f"seqvg's LSTM ops: {message}")
    return 0 if module is not None else 1


if __name__ == "__main__":
    sys.exit(main())
