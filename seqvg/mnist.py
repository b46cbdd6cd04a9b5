"""(p)sMNIST's data: MNIST read once per process from Keras's cache, one pixel per step.

    SEQVG_MNIST=~/data/mnist.npz seqvg train --task smnist --length 784

``load_mnist`` reads (or, in Keras's cache, downloads) the file and checks
it; ``generate_mnist`` draws distinct images of a split, row-major or in
psmnist's fixed pixel order.
"""

from __future__ import annotations

import errno
import os
import zipfile
from pathlib import Path

import numpy as np

#: MNIST read one pixel per step.
MNIST_PIXELS = 784
#: The pixel permutation of psmnist is ``np.random.default_rng(PSMNIST_SEED).permutation(784)``.
PSMNIST_SEED = 0
#: Where seqvg looks for MNIST when $SEQVG_MNIST is not set: Keras's cache.
MNIST_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"

_MNIST: dict = {}


def mnist_path() -> Path:
    """Where seqvg reads MNIST: $SEQVG_MNIST, else Keras's cache
    ($KERAS_HOME or ~/.keras, then datasets/mnist.npz)."""
    if os.environ.get("SEQVG_MNIST"):
        return Path(os.environ["SEQVG_MNIST"])
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "datasets" / "mnist.npz"


def _download_mnist() -> None:
    """Keras's download into its cache (needs the network)."""
    import keras

    keras.datasets.mnist.load_data()


def _bad_file(path, reason: str) -> OSError:
    # An OSError, so every command reports it in one line like any other bad file.
    return OSError(errno.EINVAL, reason, str(path))


def load_mnist() -> dict[str, np.ndarray]:
    """MNIST as uint8 images (n, 28, 28) and labels: x_train, y_train, x_test, y_test.

    Read once per process from ``mnist_path()``; a missing file in Keras's
    cache is downloaded with ``keras.datasets.mnist.load_data()``.

    Raises:
        FileNotFoundError: no file and no download; the message says where to put it.
        OSError: the file is not MNIST in Keras's format (EINVAL, naming the file).
    """
    path = mnist_path()
    if str(path) in _MNIST:
        return _MNIST[str(path)]
    if not path.exists() and not os.environ.get("SEQVG_MNIST"):
        try:
            _download_mnist()
        except Exception:  # no network, a proxy, a full disk: all end in the same advice
            pass
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, f"MNIST not found and not downloadable; put mnist.npz ({MNIST_URL}) "
                                "there, or name it with SEQVG_MNIST=FILE", str(path))
    try:
        with np.load(path) as f:
            d = {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise _bad_file(path, f"not Keras's mnist.npz ({type(e).__name__})") from None
    for split in ("train", "test"):
        x, y = d[f"x_{split}"], d[f"y_{split}"]
        if x.ndim != 3 or x.shape[1:] != (28, 28) or len(y) != len(x) or len(x) == 0:
            raise _bad_file(path, f"x_{split} has shape {x.shape}, MNIST needs (n, 28, 28) and n labels")
        if y.min() < 0 or y.max() > 9:
            raise _bad_file(path, f"y_{split} holds labels outside 0..9")
    _MNIST[str(path)] = d
    return d


def psmnist_permutation() -> np.ndarray:
    """The fixed pixel order of psmnist: ``default_rng(PSMNIST_SEED).permutation(784)``."""
    return np.random.default_rng(PSMNIST_SEED).permutation(MNIST_PIXELS)


def generate_mnist(rng: np.random.Generator, n: int, split: str = "train", permuted: bool = False
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Sequential MNIST: pixels ``x`` (n, 784, 1) in [0, 1], int32 labels ``y`` (n,).

    Training batches are n distinct images of the training split; the
    validation set ("test") is n distinct images of the test split (all of
    them, shuffled, for n = its size). Row-major pixel order, or psmnist's
    fixed permutation.
    """
    d = load_mnist()
    images, labels = d[f"x_{split}"], d[f"y_{split}"]
    if n > len(images):
        raise _bad_file(mnist_path(), f"{n} samples asked of the {split} split, which holds {len(images)}")
    idx = rng.choice(len(images), size=n, replace=False)
    x = images[idx].reshape(n, MNIST_PIXELS).astype(np.float32) / 255.0
    if permuted:
        x = x[:, psmnist_permutation()]
    return x[:, :, None], labels[idx].astype(np.int32)
