"""MNIST: IDX reader on the committed fixture and the real files, the CSV layout, the full
50k/10k/10k split, class filtering, output forms, and the checksum-gated pickle."""

import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from mnist_fixtures import FIX, fixture_digits, mnist_layout, write_pixel_csv

import normalizingflows.data as nfd
from normalizingflows.data.files import verify_checksum
from normalizingflows.data.mnist import IDX_FILES, read_idx, read_pixel_csv

SHARED = Path(os.environ.get("NF_SHARED_DATA",
                             Path(__file__).resolve().parents[2] / "shared" / "data"))
REAL = SHARED / "mnist"
needs_real = pytest.mark.skipif(not (REAL / "t10k-images-idx3-ubyte.gz").is_file(),
                                reason="shared/data/mnist absent")


def test_fixture_idx():
    x = read_idx(FIX / "t10k-images-300-idx3-ubyte.gz")
    y = read_idx(FIX / "t10k-labels-300-idx1-ubyte.gz")
    assert x.shape == (300, 28, 28) and x.dtype == np.uint8
    assert np.bincount(y, minlength=10).tolist() == [24, 41, 32, 24, 37, 29, 24, 34, 21, 34]
    assert int(x.sum(dtype=np.int64)) == 7_198_101


@needs_real
def test_real_test_idx_checksum_and_counts():
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        assert verify_checksum(REAL / name, IDX_FILES[name])
    y = read_idx(REAL / "t10k-labels-idx1-ubyte.gz")
    assert np.bincount(y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    x = read_idx(REAL / "t10k-images-idx3-ubyte.gz")
    np.testing.assert_array_equal(x[:300], read_idx(FIX / "t10k-images-300-idx3-ubyte.gz"))


@needs_real
def test_real_partialmnist_layout():
    s = nfd.load("mnist", data_dir=SHARED)
    assert s.info["source"] == "partial" and s.info["partial"]
    assert s.train.shape == (4167, 784) and s.val.shape == (833, 784)
    assert s.test.shape == (10_000, 784) and s.train.dtype == np.uint8
    ytr, yva, yte = s.labels
    assert np.bincount(np.concatenate([ytr, yva])).tolist() == [500] * 10
    assert s.info["label_counts"]["test"][1] == 1135
    sub = nfd.load("mnist", data_dir=SHARED, classes=(2, 4, 7, 8), form="dequantized",
                   flatten=False)
    assert set(np.unique(sub.labels[2])) == {2, 4, 7, 8}
    assert len(sub.test) == 1032 + 982 + 1028 + 974
    assert sub.train.shape[1:] == (28, 28, 1) and sub.train.dtype == np.float32
    assert 0 <= sub.train.min() and sub.train.max() < 1


def test_full_idx_split(tmp_path):
    mnist_layout(tmp_path)
    s = nfd.load("mnist", data_dir=tmp_path)
    assert s.info["source"] == "idx" and not s.info["partial"]
    assert (len(s.train), len(s.val), len(s.test)) == (50_000, 10_000, 300)
    assert s.labels[1][0] == 50_000 % 10  # validation = last 10,000 training images
    lg = nfd.load("mnist", data_dir=tmp_path, form="logit", classes=[0])
    assert lg.train.dtype == np.float32 and np.isfinite(lg.train).all()
    assert abs(lg.train.min()) < 14.6 and lg.info["lam"] == 1e-6


def test_csv_layout_and_errors(tmp_path):
    d = mnist_layout(tmp_path, n_train=0)
    x, y = fixture_digits()
    x = x.reshape(300, -1)
    rows = np.column_stack([x, y]).astype(int)
    write_pixel_csv(d / "mnist_5k.csv.gz", rows)
    cx, cy = read_pixel_csv(d / "mnist_5k.csv.gz")
    np.testing.assert_array_equal(cx, x)
    np.testing.assert_array_equal(cy, y)
    s = nfd.load("mnist", data_dir=tmp_path, seed=1)
    assert (len(s.train), len(s.val)) == (250, 50)
    s2 = nfd.load("mnist", data_dir=tmp_path, seed=1)
    np.testing.assert_array_equal(s.train, s2.train)
    with pytest.raises(nfd.MissingDataError, match="train-images"):
        nfd.load("mnist", data_dir=tmp_path, source="idx")
    write_pixel_csv(d / "mnist_5k.csv.gz", rows[:, 1:])
    with pytest.raises(nfd.DataFormatError, match="785"):
        nfd.load("mnist", data_dir=tmp_path)


def test_truncated_idx_and_missing(tmp_path):
    with pytest.raises(nfd.MissingDataError, match="download=True"):
        nfd.load("mnist", data_dir=tmp_path)
    d = mnist_layout(tmp_path, n_train=100)
    blob = (d / "train-images-idx3-ubyte").read_bytes()
    (d / "train-images-idx3-ubyte").write_bytes(blob[:-10])
    with pytest.raises(nfd.DataFormatError, match="truncated"):
        nfd.load("mnist", data_dir=tmp_path)
    (d / "train-images-idx3-ubyte").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(nfd.DataFormatError, match="not an IDX"):
        nfd.load("mnist", data_dir=tmp_path)


def test_maf_pickle_is_gated(tmp_path):
    d = tmp_path / "mnist"
    d.mkdir()
    rng = np.random.default_rng(0)
    parts = []
    for n in (50, 10, 10):
        k = rng.integers(0, 256, (n, 784))
        parts.append(((k / 255.0).astype(np.float32), rng.integers(0, 10, n)))
    with gzip.open(d / "mnist.pkl.gz", "wb") as f:
        pickle.dump(tuple(parts), f, protocol=2)
    with pytest.raises(nfd.PickleRefusedError, match="trust_pickle"):
        nfd.load("mnist", data_dir=tmp_path)
    s = nfd.load("mnist", data_dir=tmp_path, trust_pickle=True)
    assert s.info["source"] == "pickle"
    assert (len(s.train), len(s.val), len(s.test)) == (50, 10, 10)
    np.testing.assert_array_equal(s.train, np.rint(parts[0][0] * 255).astype(np.uint8))
    np.testing.assert_array_equal(s.labels[0], parts[0][1])


def test_tfds_optional(tmp_path):
    try:
        import tensorflow_datasets  # noqa: F401
        pytest.skip("tensorflow_datasets installed; the absent-package path is not testable")
    except ImportError:
        pass
    with pytest.raises(nfd.MissingDataError, match="tensorflow_datasets"):
        nfd.load("mnist", data_dir=tmp_path, source="tfds")
    with pytest.raises(ValueError, match="classes"):
        mnist_layout(tmp_path, n_train=20)
        nfd.load("mnist", data_dir=tmp_path, classes=(11,))
