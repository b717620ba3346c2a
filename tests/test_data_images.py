"""BSDS300 patches (real images, HDF5, cache) and the CelebA tf.data pipeline."""

import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import normalizingflows.data as nfd
from normalizingflows.data.bsds300 import extract_patches

SHARED = Path(os.environ.get("NF_SHARED_DATA",
                             Path(__file__).resolve().parents[2] / "shared" / "data"))
has_bsds = (SHARED / "BSDS300/images/train").is_dir()
has_celeba = (SHARED / "celeba/img_align_celeba").is_dir()


def test_extract_patches_recipe():
    img = np.arange(20 * 30, dtype=np.int64).reshape(20, 30) % 256
    p = extract_patches([img.astype(np.uint8)], 500, np.random.default_rng(0), dtype=np.float64)
    assert p.shape == (500, 63)
    last = -p.sum(axis=1)  # the dropped pixel restores a zero patch mean
    full = np.column_stack([p, last])
    np.testing.assert_allclose(full.mean(axis=1), 0, atol=1e-12)
    assert np.abs(full).max() < 1.0


@pytest.mark.skipif(not has_bsds, reason="shared/data/BSDS300 absent")
def test_real_bsds300_patches(tmp_path):
    import shutil

    shutil.copytree(SHARED / "BSDS300", tmp_path / "BSDS300")
    kw = dict(data_dir=tmp_path, n_train=5000, n_val=500, n_test=2000, seed=7)
    s = nfd.load("bsds300", **kw)
    assert s.train.shape == (5000, 63) and s.val.shape == (500, 63)
    assert s.test.shape == (2000, 63) and s.train.dtype == np.float32
    assert s.info["images"] == {"train": 200, "test": 100}
    for a in s[:3]:
        full = np.column_stack([a, -a.sum(axis=1)])
        assert np.abs(full.mean(axis=1)).max() < 1e-5  # per-patch mean 0
        assert -1 < a.min() and a.max() < 1
    assert 0.01 < s.train.std() < 0.5
    cache = Path(s.info["cache"])
    assert cache.is_file() and not list(cache.parent.glob("*.tmp"))
    again = nfd.load("bsds300", **kw)  # from the cache
    np.testing.assert_array_equal(again.train, s.train)
    other = nfd.load("bsds300", **{**kw, "seed": 8, "cache": False})
    assert not np.allclose(other.train[:10], s.train[:10])


def test_bsds300_hdf5_and_missing(tmp_path):
    with pytest.raises(nfd.MissingDataError, match="iids"):
        nfd.load("bsds300", data_dir=tmp_path)
    h5py = pytest.importorskip("h5py")
    (tmp_path / "BSDS300").mkdir()
    rng = np.random.default_rng(0)
    with h5py.File(tmp_path / "BSDS300/BSDS300.hdf5", "w") as f:
        for k, n in (("train", 100), ("validation", 10), ("test", 20)):
            f[k] = rng.normal(size=(n, 63))
    s = nfd.load("bsds300", data_dir=tmp_path)
    assert s.info["source"] == "hdf5"
    assert (s.train.shape, s.val.shape, s.test.shape) == ((100, 63), (10, 63), (20, 63))
    with h5py.File(tmp_path / "BSDS300/BSDS300.hdf5", "w") as f:
        f["train"] = np.zeros((3, 62))
    with pytest.raises(nfd.DataFormatError):
        nfd.load("bsds300", data_dir=tmp_path)


def test_bsds300_missing_listed_image(tmp_path):
    d = tmp_path / "BSDS300"
    (d / "images/train").mkdir(parents=True)
    (d / "iids_train.txt").write_text("1\n2\n")
    with pytest.raises(nfd.MissingDataError, match="2 of 2"):
        nfd.load("bsds300", data_dir=tmp_path, n_train=5, n_val=1, n_test=1)


@pytest.mark.skipif(not has_celeba, reason="shared/data/celeba absent")
def test_real_celeba_pipeline():
    s = nfd.load("celeba", data_dir=SHARED, seed=0)
    assert s.info["sizes"] == {"train": 3000, "val": 500, "test": 500}
    assert isinstance(s.train, tf.data.Dataset)
    x = next(iter(s.val))
    assert x.shape == (64, 64, 3) and x.dtype == tf.uint8
    small = nfd.load("celeba", data_dir=SHARED, size=32, limit=40, as_numpy=True, cache=None)
    assert small.train.shape == (40, 32, 32, 3) and small.train.dtype == np.uint8
    assert 40 < small.train.mean() < 220
    batched = nfd.load("celeba", data_dir=SHARED, limit=16, batch_size=8, cache=None)
    assert next(iter(batched.train)).shape == (8, 64, 64, 3)


def _jpeg(path, array):
    path.write_bytes(tf.io.encode_jpeg(array, quality=100).numpy())


def test_celeba_central_crop_fixture(tmp_path):
    d = tmp_path / "celeba/img_align_celeba"
    d.mkdir(parents=True)
    img = np.zeros((218, 178, 3), np.uint8)  # black border, white central 148x148
    img[35:183, 15:163] = 255
    for i in (1, 2, 3):
        _jpeg(d / f"00000{i}.jpg", img)
    (tmp_path / "celeba/list_eval_partition.txt").write_text(
        "000001.jpg 0\n000002.jpg 1\n000003.jpg 2\n")
    s = nfd.load("celeba", data_dir=tmp_path, as_numpy=True)
    assert s.train.shape == (1, 64, 64, 3)
    assert s.train.min() >= 240  # only the white square survives the crop
    (tmp_path / "celeba/list_eval_partition.txt").write_text("000009.jpg 0\n")
    with pytest.raises(nfd.MissingDataError, match="000009"):
        nfd.load("celeba", data_dir=tmp_path)
    (tmp_path / "celeba/list_eval_partition.txt").write_text("000001.jpg train\n")
    with pytest.raises(nfd.DataFormatError, match="list_eval_partition"):
        nfd.load("celeba", data_dir=tmp_path)


def test_celeba_missing_and_options(tmp_path):
    with pytest.raises(nfd.MissingDataError, match="img_align_celeba"):
        nfd.load("celeba", data_dir=tmp_path)
    with pytest.raises(ValueError, match="size"):
        nfd.load("celeba", data_dir=tmp_path, size=48)


def test_image_rows_bits_per_dim_and_pixels_back(tmp_path):
    d = tmp_path / "celeba/img_align_celeba"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in (1, 2, 3):
        _jpeg(d / f"00000{i}.jpg", rng.integers(0, 256, (218, 178, 3), dtype=np.uint8))
    (tmp_path / "celeba/list_eval_partition.txt").write_text(
        "000001.jpg 0\n000002.jpg 1\n000003.jpg 2\n")
    s = nfd.images.load_image_rows("celeba32", data_dir=tmp_path, seed=0)
    assert s.train.shape == (1, 32 * 32 * 3) and s.train.dtype == np.float32
    assert s.info["image_shape"] == (32, 32, 3) and s.info["lam"] == 0.05
    raw = nfd.load("celeba", data_dir=tmp_path, size=32, as_numpy=True, cache=None).train
    # Rows are dequantised pixels in logit space: back in [0, 1] they lie in their pixel's bin.
    pixels = nfd.images.to_pixels(s.train, s.info)
    assert pixels.shape == (1, 32, 32, 3)
    k = np.floor(pixels * 256 + 1e-4)
    np.testing.assert_array_equal(k, raw.astype(np.float64))
    # A density uniform over [0, 1)^D in pixel space is 8 bits/dim; in logit space its log
    # density is minus the logit's log-Jacobian.
    x = nfd.preprocess.inverse_logit_transform(s.train.astype(np.float64), 0.05)
    lp = -nfd.preprocess.logit_log_det_jacobian(x, 0.05)
    np.testing.assert_allclose(nfd.images.bits_per_dim(lp, s.train, s.info), 8.0, atol=1e-4)
    # Without a logit (binary shapes): uniform on [0, 1)^D is log2(2) = 1 bit/dim.
    info = {"lam": None, "levels": 2, "image_shape": (2, 2, 1)}
    np.testing.assert_allclose(nfd.images.bits_per_dim(np.zeros(3), np.zeros((3, 4)), info), 1.0)
    with pytest.raises(ValueError, match="unknown image dataset"):
        nfd.images.load_image_rows("cifar10")


def test_bits_per_dim_summary_shows_the_image_that_dominates_the_mean():
    s = nfd.images.bits_per_dim_summary([1.0, 1.2, 1.1, 97.0], "test_bpd")
    assert s["test_bpd"] == pytest.approx(25.075)
    assert s["test_bpd_se"] == pytest.approx(np.std([1.0, 1.2, 1.1, 97.0]) / 2)
    assert s["test_bpd_median"] == pytest.approx(1.15)
    assert (s["test_bpd_worst"], s["test_bpd_worst_index"]) == (97.0, 3)
