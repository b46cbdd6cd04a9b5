"""Each task's data: one generator per task, drawing from an explicit ``np.random.Generator``.

    seqvg generate adding --length 100 -n 64 --seed 0 -o batch.npz

The definitions follow docs/design.md ("Tasks") exactly, so results compare
with the literature (Hochreiter & Schmidhuber 1997; Arjovsky et al. 2016; Gu &
Dao 2023; Arora et al. 2023). The same generator state gives the same data on
every machine (numpy's PCG64 stream is platform-independent). Inputs are
batch-major float32 exactly as the model sees them; adding targets are float32
of shape ``(n,)``; copy, selective-copy and recall targets int32 class ids per
step ``(n, seq_len)``; temporal-order and parity targets one int32 class id
per sample ``(n,)``. ``seqvg.tasks`` binds each generator to its task (loss,
metric, baseline); ``seqvg.mnist`` draws (p)sMNIST.
"""

from __future__ import annotations

import math

import numpy as np

COPY_SYMBOLS = 10  # symbols to remember
COPY_ALPHABET = 10  # 0 blank, 1..8 data, 9 delimiter
COPY_DELIMITER = 9


def generate_adding(rng: np.random.Generator, n: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Adding problem: returns ``x`` of shape (n, T, 2) and ``y`` of shape (n,).

    Channel 0 is U[0, 1]; channel 1 is zero except two markers, one uniform in
    ``[0, T//2)`` and one in ``[T//2, T)``; the target is the sum of the two
    marked values.
    """
    if length < 2:
        raise ValueError("the adding problem needs length >= 2")
    half = length // 2
    values = rng.uniform(0.0, 1.0, size=(n, length)).astype(np.float32)
    first = rng.integers(0, half, size=n)
    second = rng.integers(half, length, size=n)
    markers = np.zeros((n, length), dtype=np.float32)
    rows = np.arange(n)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    x = np.stack([values, markers], axis=-1)
    y = (values[rows, first] + values[rows, second]).astype(np.float32)
    return x, y


def generate_copy(rng: np.random.Generator, n: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Copy memory: returns one-hot ``x`` (n, T+20, 10) and int32 ``y`` (n, T+20).

    Input: 10 symbols from 1..8, T-1 blanks, the delimiter 9, 10 blanks.
    Target: T+10 blanks, then the 10 data symbols.
    """
    if length < 1:
        raise ValueError("the copy task needs length >= 1")
    total = length + 2 * COPY_SYMBOLS
    data = rng.integers(1, 9, size=(n, COPY_SYMBOLS))
    seq = np.zeros((n, total), dtype=np.int32)
    seq[:, :COPY_SYMBOLS] = data
    seq[:, COPY_SYMBOLS + length - 1] = COPY_DELIMITER
    y = np.zeros((n, total), dtype=np.int32)
    y[:, -COPY_SYMBOLS:] = data
    x = np.eye(COPY_ALPHABET, dtype=np.float32)[seq]
    return x, y


#: Temporal order (Hochreiter & Schmidhuber 1997, exp. 6a/6b): symbols a,b,c,d
#: are noise, X/Y the relevant ones, B and E mark start and end.
TEMPORAL_ALPHABET = ("a", "b", "c", "d", "X", "Y", "B", "E")
#: Windows (fractions of T, both ends included) of the relevant positions:
#: exp. 6a puts them in [10, 20] and [50, 60] of a ~100-step sequence, exp. 6b
#: in [10, 20], [33, 43] and [66, 76].
TEMPORAL_WINDOWS = {2: ((0.1, 0.2), (0.5, 0.6)), 3: ((0.1, 0.2), (0.33, 0.43), (0.66, 0.76))}


def _window(frac: tuple[float, float], length: int) -> tuple[int, int]:
    """The integer positions [lo, hi] (both included) of a window of T."""
    lo, hi = (int(math.floor(f * length + 0.5)) for f in frac)
    return lo, hi


def temporal_positions(length: int, symbols: int = 2) -> list[tuple[int, int]]:
    """The windows [lo, hi] (both included) of the relevant positions at length T."""
    return [_window(f, length) for f in TEMPORAL_WINDOWS[symbols]]


def generate_temporal_order(rng: np.random.Generator, n: int, length: int, symbols: int = 2
                            ) -> tuple[np.ndarray, np.ndarray]:
    """Temporal order: one-hot ``x`` (n, T, 8) and int32 class ids ``y`` (n,).

    Step 0 is B, step T-1 is E, the others are drawn from {a, b, c, d} except
    one position in each window of ``temporal_positions`` that holds X or Y.
    The class is the X/Y sequence read as binary digits (X = 0, Y = 1, the
    first position most significant): XX=0, XY=1, YX=2, YY=3 for exp. 6a.
    """
    seq = rng.integers(0, 4, size=(n, length))
    seq[:, 0], seq[:, -1] = 6, 7
    rows = np.arange(n)
    y = np.zeros(n, dtype=np.int32)
    for lo, hi in temporal_positions(length, symbols):
        pos = rng.integers(lo, hi + 1, size=n)
        bit = rng.integers(0, 2, size=n)
        seq[rows, pos] = 4 + bit
        y = 2 * y + bit.astype(np.int32)
    return np.eye(8, dtype=np.float32)[seq], y


def generate_selective_copy(rng: np.random.Generator, n: int, length: int, tokens: int = 16, vocab: int = 16
                            ) -> tuple[np.ndarray, np.ndarray]:
    """Selective copy: one-hot ``x`` (n, T+2M, V) and int32 ``y`` (n, T+2M).

    Symbols: 0 blank, 1..V-2 data, V-1 marker. The M data tokens (uniform,
    independent) sit at M random distinct positions of the first T+M steps
    (in order), the other T of those steps are blank; then M markers. The
    target is blank except at the markers, which hold the data in order.
    """
    slots = length + tokens
    data = rng.integers(1, vocab - 1, size=(n, tokens))
    # M distinct positions per row: the M smallest of T+M random keys.
    pos = np.sort(np.argsort(rng.random((n, slots)), axis=1)[:, :tokens], axis=1)
    seq = np.zeros((n, slots + tokens), dtype=np.int64)
    np.put_along_axis(seq, pos, data, axis=1)
    seq[:, slots:] = vocab - 1
    y = np.zeros((n, slots + tokens), dtype=np.int32)
    y[:, slots:] = data
    return np.eye(vocab, dtype=np.float32)[seq], y


def generate_recall(rng: np.random.Generator, n: int, length: int, pairs: int = 8, vocab: int = 64
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Multi-query associative recall: one-hot ``x`` (n, 3K+T, V+1), int32 ``y`` (n, 3K+T).

    Keys are K distinct symbols of 0..V/2-1, values K distinct symbols of
    V/2..V-1 (as Zoology's generator draws them); symbol V is blank. Input:
    k1 v1 k2 v2 ... kK vK, T blanks, then the K keys in a random order. The
    target is blank (V) except at the queries, which hold each key's value.
    """
    half = vocab // 2
    keys = np.argsort(rng.random((n, half)), axis=1)[:, :pairs]
    values = half + np.argsort(rng.random((n, half)), axis=1)[:, :pairs]
    order = np.argsort(rng.random((n, pairs)), axis=1)
    total = 3 * pairs + length
    seq = np.full((n, total), vocab, dtype=np.int64)
    seq[:, 0 : 2 * pairs : 2] = keys
    seq[:, 1 : 2 * pairs : 2] = values
    seq[:, 2 * pairs + length :] = np.take_along_axis(keys, order, axis=1)
    y = np.full((n, total), vocab, dtype=np.int32)
    y[:, 2 * pairs + length :] = np.take_along_axis(values, order, axis=1)
    return np.eye(vocab + 1, dtype=np.float32)[seq], y


def generate_parity(rng: np.random.Generator, n: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Parity: bits ``x`` (n, T, 1) in {0, 1} and int32 ``y`` (n,) = their sum mod 2."""
    bits = rng.integers(0, 2, size=(n, length))
    return bits.astype(np.float32)[:, :, None], (bits.sum(axis=1) % 2).astype(np.int32)
