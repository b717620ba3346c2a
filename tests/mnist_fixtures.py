"""MNIST layouts for tests, built in a temporary folder from the committed 300-digit fixture
(``tests/fixtures/mnist``): the IDX test files under their real names, optionally random IDX
training files (the full layout) or the 300 fixture digits as the CSV of the partial layout."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np

from normalizingflows.data.mnist import read_idx, write_idx

FIX = Path(__file__).resolve().parent / "fixtures" / "mnist"


def fixture_digits() -> tuple[np.ndarray, np.ndarray]:
    """The fixture's 300 test digits (uint8, 300 x 28 x 28) and their labels."""
    return (read_idx(FIX / "t10k-images-300-idx3-ubyte.gz"),
            read_idx(FIX / "t10k-labels-300-idx1-ubyte.gz"))


def mnist_layout(tmp_path: Path, n_train: int = 60_000) -> Path:
    """``tmp_path/mnist`` with the fixture as the test set and, when ``n_train``, random IDX
    training images with labels ``arange(n_train) % 10``."""
    d = tmp_path / "mnist"
    d.mkdir()
    for name in ("t10k-images-300-idx3-ubyte.gz", "t10k-labels-300-idx1-ubyte.gz"):
        shutil.copy(FIX / name, d / name.replace("-300", ""))
    rng = np.random.default_rng(0)
    if n_train:
        write_idx(d / "train-images-idx3-ubyte", rng.integers(0, 256, (n_train, 28, 28)))
        write_idx(d / "train-labels-idx1-ubyte", np.arange(n_train) % 10)
    return d


def write_pixel_csv(path: Path, rows: np.ndarray) -> None:
    """The partial layout's gzip CSV: one digit a row, 784 pixels then (usually) the label."""
    with gzip.open(path, "wt") as f:
        np.savetxt(f, rows, fmt="%d", delimiter=",")


def csv_layout(tmp_path: Path) -> Path:
    """The partial layout: the fixture digits as ``mnist_5k.csv.gz`` (pixels, label) and as
    the test set, so ``nf.data.load("mnist")`` splits 250 training / 50 validation digits."""
    d = mnist_layout(tmp_path, n_train=0)
    x, y = fixture_digits()
    write_pixel_csv(d / "mnist_5k.csv.gz", np.column_stack([x.reshape(300, -1), y]).astype(int))
    return d
